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
    """The furthest lifecycle step reached, with its time, and the newest side states, with theirs (older
    ones still tell the status at an earlier time: cancelled before a return read ahead)."""

    furthest: Status | None = None
    furthest_at_ms: int = 0
    sides: tuple[tuple[int, int, Status], ...] = ()  # (time, precedence, side state), the newest SIDES_KEPT, sorted

    def observe(self, status: Status, at_ms: int) -> StatusTrack:
        if status.is_side_state:
            side = (at_ms, _SIDE_PRECEDENCE[status], status)
            if side in self.sides or (len(self.sides) >= SIDES_KEPT and side < self.sides[0]):
                return self
            return StatusTrack(self.furthest, self.furthest_at_ms, tuple(sorted((*self.sides, side)))[-SIDES_KEPT:])
        if self.furthest is None or status.rank > self.furthest.rank:
            return StatusTrack(status, at_ms, self.sides)
        if status == self.furthest and at_ms < self.furthest_at_ms:
            return StatusTrack(status, at_ms, self.sides)  # the step happened when first seen
        return self

    @property
    def current(self) -> tuple[Status, int] | None:
        """The status to show and when it began."""
        furthest = (self.furthest, self.furthest_at_ms) if self.furthest is not None else None
        newest = self.sides[-1] if self.sides else None
        return shown(furthest, (newest[2], newest[0]) if newest else None)

    def side_by(self, at_ms: int) -> tuple[Status, int] | None:
        """The newest side state begun by at_ms, and when."""
        begun = [side for side in self.sides if side[0] <= at_ms]
        return (begun[-1][2], begun[-1][0]) if begun else None


SIDES_KEPT = 4


def shown(furthest: tuple[Status, int] | None, side: tuple[Status, int] | None) -> tuple[Status, int] | None:
    """The status to show, of the furthest step reached and the newest side state (each with its time, or None):
    the later one, the side state on a tie."""
    if side is not None and (furthest is None or side[1] >= furthest[1]):
        return side
    return furthest
