"""The canonical order lifecycle and the rule that merges what sources say about it.

An order's status only moves forward along the lifecycle, whatever order the
events arrive in; a side state (cancelled, exception, returning, returned)
holds until a later event (by event time) says otherwise. The merge depends
only on the set of events seen, so replays and duplicates give the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.compact import compact_pickle


class Status(StrEnum):
    CREATED = "created"
    PAID = "paid"
    ALLOCATED = "allocated"
    PICKED = "picked"
    PACKED = "packed"
    SHIPPED = "shipped"
    IN_TRANSIT = "in_transit"
    CUSTOMS = "customs"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXCEPTION = "exception"
    RETURNING = "returning"
    RETURNED = "returned"

    # Set on each member below: read on every event, so attributes rather than properties.
    rank: int  # position on the lifecycle; side states have none (-1)
    is_side_state: bool


LIFECYCLE = (
    Status.CREATED, Status.PAID, Status.ALLOCATED, Status.PICKED, Status.PACKED, Status.SHIPPED,
    Status.IN_TRANSIT, Status.CUSTOMS, Status.OUT_FOR_DELIVERY, Status.DELIVERED, Status.COMPLETED,
)  # fmt: skip
_LIFECYCLE_RANK = {status: rank for rank, status in enumerate(LIFECYCLE)}
for _status in Status:
    _status.rank = _LIFECYCLE_RANK.get(_status, -1)
    _status.is_side_state = _status not in _LIFECYCLE_RANK
# Two side states stamped with the same time: the more final one wins, whatever arrived first.
_SIDE_PRECEDENCE = {
    status: rank for rank, status in enumerate((Status.EXCEPTION, Status.RETURNING, Status.CANCELLED, Status.RETURNED))
}


@compact_pickle
@dataclass(frozen=True, slots=True)
class StatusTrack:
    """The furthest lifecycle step reached and the latest side state, each with its time."""

    furthest: Status | None = None
    furthest_at_ms: int = 0
    side: Status | None = None
    side_at_ms: int = 0

    def observe(self, status: Status, at_ms: int) -> StatusTrack:
        if status.is_side_state:
            if self.side is None or (at_ms, _SIDE_PRECEDENCE[status]) > (self.side_at_ms, _SIDE_PRECEDENCE[self.side]):
                return StatusTrack(self.furthest, self.furthest_at_ms, status, at_ms)
            return self
        if self.furthest is None or status.rank > self.furthest.rank:
            return StatusTrack(status, at_ms, self.side, self.side_at_ms)
        if status == self.furthest and at_ms < self.furthest_at_ms:
            return StatusTrack(status, at_ms, self.side, self.side_at_ms)  # the step happened when first seen
        return self

    @property
    def current(self) -> tuple[Status, int] | None:
        """The status to show and when it began; a side state wins a tie in time."""
        if self.side is not None and (self.furthest is None or self.side_at_ms >= self.furthest_at_ms):
            return self.side, self.side_at_ms
        if self.furthest is not None:
            return self.furthest, self.furthest_at_ms
        return None
