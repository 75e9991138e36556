"""Canonical events: what every source's payload becomes after normalization.

Times are epoch milliseconds in UTC. Identifiers are strings, kept exactly as
the source sent them (integers beyond 2^53 included). Nothing here holds
personal data in clear: customers are named by keyed pseudonyms.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from schemas.lifecycle import Status


@dataclass(frozen=True, slots=True)
class OrderRef:
    channel: str
    order_id: str

    @property
    def key(self) -> str:
        return f"{self.channel}|{self.order_id}"


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """Something a source says about one order."""

    order: OrderRef
    at_ms: int
    source: str
    status: Status | None = None
    customer_id: str | None = None
    waybills: tuple[str, ...] = ()
    amount_fen: int | None = None
    region_code: str | None = None
    promised_at_ms: int | None = None
    detail: str = ""  # what the journey shows beside the status, e.g. a scan's location

    @property
    def event_id(self) -> str:
        """Deterministic identity: the same fact told twice has the same id."""
        fact = f"{self.source}|{self.order.key}|{self.status}|{self.at_ms}|{self.detail}"
        return hashlib.blake2b(fact.encode(), digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class ShipmentEvent:
    """One carrier scan of one waybill; it reaches its order through a WaybillLink."""

    waybill: str
    carrier: str
    status: Status | None  # None: a scan whose wording maps to no lifecycle step
    at_ms: int
    source: str
    scan_id: str
    location: str = ""


@dataclass(frozen=True, slots=True)
class WaybillLink:
    """A waybill belongs to an order (said by a channel's ship event or the WMS)."""

    waybill: str
    order: OrderRef


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A payload that could not be understood, kept as received with the reason."""

    source_topic: str
    partition: int
    offset: int
    raw: bytes
    reason: str
    detail: str
    received_at_ms: int


CanonicalEvent = OrderEvent | ShipmentEvent | WaybillLink
