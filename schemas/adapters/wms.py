"""Warehouse management system events (raw.wms): ISO-8601 UTC times; waybills from PACKED on."""

from __future__ import annotations

from typing import Any

from schemas.adapters.fields import code, identifier, iso_time_ms, optional, required
from schemas.events import CanonicalEvent, OrderEvent, OrderRef, WaybillLink
from schemas.lifecycle import Status
from schemas.privacy import Pseudonymizer

EVENTS = {
    "ALLOCATED": Status.ALLOCATED,
    "PICKED": Status.PICKED,
    "PACKED": Status.PACKED,
    "OUTBOUND_SCANNED": Status.SHIPPED,
    "LOADED": Status.SHIPPED,  # loaded for line-haul: still the shipped step until a carrier scan
}


def adapt(payload: dict[str, Any], ids: Pseudonymizer, source: str) -> list[CanonicalEvent]:
    ref = required(payload, "order_ref", dict)
    order = OrderRef(required(ref, "channel", str), identifier(ref, "order_id"))
    waybill = optional(payload, "waybill", str)
    event = OrderEvent(
        order=order,
        at_ms=iso_time_ms(required(payload, "ts", str), "ts"),
        source=source,
        status=code(EVENTS, required(payload, "event", str), "event"),
        waybills=(waybill,) if waybill else (),
    )
    return [event, WaybillLink(waybill, order)] if waybill else [event]
