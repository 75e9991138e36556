"""What orderscope knows about one order, merged from every event about it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from schemas.events import CustomerAssignment, OrderEvent, OrderRef
from schemas.lifecycle import StatusTrack

# The columns of orders_current (sql/001_orders_current.sql), in row order.
ORDER_COLUMNS = (
    "channel", "order_id", "customer_id", "status", "status_at", "updated_at",
    "waybills", "amount_fen", "region_code", "promised_at", "version",
    "position_lat", "position_lon", "position_at",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class OrderView:
    order: OrderRef
    track: StatusTrack = StatusTrack()  # noqa: RUF009 - immutable, so one shared default is safe
    customer_id: str = ""
    waybills: tuple[str, ...] = ()
    amount_fen: int | None = None
    region_code: str | None = None
    promised_at_ms: int | None = None
    updated_at_ms: int = 0
    version: int = 0
    position: tuple[float, float, int] | None = None  # lat, lon, when

    def apply(self, event: OrderEvent | CustomerAssignment) -> OrderView:
        """The view after the event; the same object when the event changes nothing."""
        if isinstance(event, CustomerAssignment):
            return self._with_customer(event.customer_id)
        merged = replace(
            self,
            track=self.track.observe(event.status, event.at_ms) if event.status else self.track,
            waybills=self.waybills + tuple(w for w in event.waybills if w not in self.waybills),
            amount_fen=self.amount_fen if event.amount_fen is None else event.amount_fen,
            region_code=event.region_code or self.region_code,
            promised_at_ms=event.promised_at_ms or self.promised_at_ms,
            updated_at_ms=max(self.updated_at_ms, event.at_ms),
            position=self._newer_position(event),
        )
        return self if merged == self else replace(merged, version=self.version + 1)

    def _with_customer(self, customer_id: str) -> OrderView:
        if customer_id == self.customer_id:
            return self
        return replace(self, customer_id=customer_id, version=self.version + 1)

    def _newer_position(self, event: OrderEvent) -> tuple[float, float, int] | None:
        if event.position is None or (self.position is not None and self.position[2] >= event.at_ms):
            return self.position
        return (*event.position, event.at_ms)

    def row(self) -> tuple[Any, ...] | None:
        """The orders_current row, or None while no source has said what state the order is in."""
        current = self.track.current
        if current is None:
            return None
        status, status_at_ms = current
        return (
            self.order.channel,
            self.order.order_id,
            self.customer_id,
            status.value,
            utc(status_at_ms),
            utc(self.updated_at_ms),
            list(self.waybills),
            self.amount_fen,
            self.region_code,
            utc(self.promised_at_ms) if self.promised_at_ms is not None else None,
            self.version,
            *((self.position[0], self.position[1], utc(self.position[2])) if self.position else (None, None, None)),
        )


def utc(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
