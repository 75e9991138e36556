"""Tracking-aggregator pushes (raw.logistics.carrier), one per waybill update.

Each push repeats the waybill's whole scan history, newest first, with China
times without offset; `state` is the aggregator's code for the waybill now.
"""

from __future__ import annotations

from typing import Any

from schemas.adapters.fields import Rejected, china_time_ms, code, required
from schemas.events import CanonicalEvent, ShipmentEvent
from schemas.lifecycle import Status
from schemas.privacy import Pseudonymizer

STATES = {
    "0": Status.IN_TRANSIT,
    "1": Status.IN_TRANSIT,  # picked up
    "2": Status.EXCEPTION,
    "3": Status.DELIVERED,
    "4": Status.RETURNED,  # refused / returned-signed
    "5": Status.OUT_FOR_DELIVERY,
    "6": Status.RETURNING,
    "7": Status.IN_TRANSIT,  # transferred to another carrier
    "8": Status.CUSTOMS,
    "14": Status.RETURNING,  # rejected by recipient
}


def adapt(payload: dict[str, Any], ids: Pseudonymizer, source: str) -> list[CanonicalEvent]:
    result = required(payload, "lastResult", dict)
    scans = required(result, "data", list)
    if not scans or not isinstance(scans[0], dict):
        raise Rejected("missing_field", "lastResult.data holds no scan")
    return [
        ShipmentEvent(
            waybill=required(result, "nu", str),
            carrier=required(result, "com", str),
            status=code(STATES, required(result, "state", (str, int)), "state"),
            at_ms=china_time_ms(required(scans[0], "time", str), "time"),
            source=source,
        )
    ]
