"""Canonical events: what every source's payload becomes after normalization.

Times are epoch milliseconds in UTC. Identifiers are strings, kept exactly as
the source sent them (integers beyond 2^53 included). Nothing here holds
personal data in clear: customers are named by keyed pseudonyms.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from schemas.compact import compact_pickle
from schemas.lifecycle import Status


@compact_pickle
@dataclass(frozen=True, slots=True)
class OrderRef:
    channel: str
    order_id: str

    @property
    def key(self) -> str:
        return f"{self.channel}|{self.order_id}"

    @classmethod
    def from_key(cls, key: str) -> OrderRef:
        channel, order_id = key.split("|", 1)
        return cls(channel, order_id)


@compact_pickle
@dataclass(frozen=True, slots=True)
class OrderEvent:
    """Something a source says about one order."""

    order: OrderRef
    at_ms: int
    source: str
    status: Status | None = None
    identities: tuple[str, ...] = ()  # keyed pseudonyms of the buyer's identifiers, strongest first
    waybills: tuple[str, ...] = ()
    amount_fen: int | None = None
    region_code: str | None = None
    promised_at_ms: int | None = None
    detail: str = ""  # what the journey shows beside the status, e.g. a scan's location
    position: tuple[float, float] | None = None  # (lat, lon) of the vehicle carrying the order
    carrier: str = ""  # the carrier of the order's parcel, as the tracking aggregator names it
    warehouse: str = ""  # the warehouse that fulfils it, as the WMS names it

    @property
    def event_id(self) -> str:
        """Deterministic identity: the same fact told twice has the same id, and events that differ in
        anything an order's view takes from them differ (so a view never depends on arrival order)."""
        fact = (
            (
                f"{self.source}|{self.order.key}|{self.status}|{self.at_ms}|{self.detail}|{self.waybills}|"
                f"{self.amount_fen}|{self.region_code}|{self.promised_at_ms}|{self.position}"
            )
            + (f"|{self.carrier}" if self.carrier else "")
            + (f"|wh:{self.warehouse}" if self.warehouse else "")
        )
        return hashlib.blake2b(fact.encode(), digest_size=12).hexdigest()

    @property
    def fact_id(self) -> int:
        """The event id as a number (its first 8 bytes): what an order remembers of each fact."""
        return fact_id_of(self.event_id)


def fact_id_of(event_id: str) -> int:
    return int(event_id[:16], 16)


def _fact_id_of_fields(*fields: object) -> int:
    """The fact id of a mark (a message or modification an order keeps): from everything it says."""
    return int.from_bytes(hashlib.blake2b("|".join(map(str, fields)).encode(), digest_size=8).digest())


@compact_pickle
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
    position: tuple[float, float] | None = None  # (lat, lon) of the scan's area


@compact_pickle
@dataclass(frozen=True, slots=True)
class WaybillLink:
    """A waybill belongs to an order (said by a channel's ship event or the WMS)."""

    waybill: str
    order: OrderRef
    at_ms: int  # event time of the source event that told it


@compact_pickle
@dataclass(frozen=True, slots=True)
class VehicleLoad:
    """A line-haul manifest: these waybills left origin_hub on this vehicle."""

    vehicle_id: str
    waybills: tuple[str, ...]
    origin_hub: str
    dest_hub: str
    departed_at_ms: int


@compact_pickle
@dataclass(frozen=True, slots=True)
class VehiclePing:
    """A telematics fix (pings without a fix are dropped by the adapter)."""

    vehicle_id: str
    at_ms: int
    lat: float
    lon: float
    speed_kmh: float


@compact_pickle
@dataclass(frozen=True, slots=True)
class WaybillPosition:
    """Where a waybill is, known from the vehicle that carries it; routed to its order."""

    waybill: str
    at_ms: int
    lat: float
    lon: float
    vehicle_id: str


@compact_pickle
@dataclass(frozen=True, slots=True)
class OrderModification:
    """An attempt to change an order (address, expedite, cancel, items) and how it ended."""

    order: OrderRef
    at_ms: int
    kind: str
    succeeded: bool
    error: str
    source: str

    @property
    def fact_id(self) -> int:
        return _fact_id_of_fields("modification", self.order.key, self.at_ms, self.kind, self.succeeded, self.error)


@compact_pickle
@dataclass(frozen=True, slots=True)
class ServiceMessage:
    """A buyer's message to customer service, reduced to its intents (the text is not kept)."""

    channel: str
    order_id: str  # empty when the buyer named no order
    identity: str  # pseudonym of the buyer's identifier; customer_links names its customer
    at_ms: int
    intents: tuple[str, ...]

    @property
    def order(self) -> OrderRef:
        return OrderRef(self.channel, self.order_id)

    @property
    def fact_id(self) -> int:
        return _fact_id_of_fields("message", self.channel, self.order_id, self.identity, self.at_ms, self.intents)


@compact_pickle
@dataclass(frozen=True, slots=True)
class Signal:
    """An external condition: a weather warning, port congestion or a traffic incident."""

    kind: str
    subject: str  # region code, port code or road
    at_ms: int
    until_ms: int | None
    level: str  # warning colour, congestion index or incident severity, as text
    lat: float | None = None
    lon: float | None = None
    delay_min: int | None = None


@compact_pickle
@dataclass(frozen=True, slots=True)
class CustomerAssignment:
    """The order belongs to this customer (identity resolution; changes when customers merge)."""

    order: OrderRef
    customer_id: str  # a merge only moves an order to a smaller customer id (schemas/identity.py)
    at_ms: int  # event time of the event that made the assignment


@compact_pickle
@dataclass(frozen=True, slots=True)
class CustomerLink:
    """An identifier (as its pseudonym) belongs to this customer."""

    identity: str
    kind: str
    customer_id: str
    strong: bool
    version: int  # the customer's rank (schemas/identity.py): the final customer's is the highest


@compact_pickle
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


CanonicalEvent = (
    OrderEvent | ShipmentEvent | WaybillLink | VehicleLoad | VehiclePing | OrderModification | ServiceMessage | Signal
)
