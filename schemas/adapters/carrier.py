"""Tracking-aggregator pushes: every scan of the waybill's repeated history.

Each push repeats the whole history, newest first; every scan becomes one
ShipmentEvent with a stable scan_id, so the job counts each scan once however
often it is repeated; scans this normalizer read recently are skipped before
their events are built (RecentScans). The newest scan takes the push's `state` code; older
ones their wording. Code tables live in schemas/sources/carrier.yaml.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.events import CanonicalEvent, ShipmentEvent
from schemas.fields import Rejected, china_time_ms, code, json_object, required
from schemas.lifecycle import Status
from schemas.mapping import SpecChecker
from schemas.privacy import Pseudonymizer
from schemas.recent import RecentScans


@dataclass(frozen=True)
class CarrierTracking:
    topic: str
    states: Mapping[str, Status]
    scan_statuses: Mapping[str, Status]

    def adapt(self, raw: str, ids: Pseudonymizer, source: str, recent: RecentScans) -> list[CanonicalEvent]:
        result = required(json_object(raw), "lastResult", dict)
        waybill = required(result, "nu", str)
        carrier = required(result, "com", str)
        scans = required(result, "data", list)
        if not scans:
            raise Rejected("missing_field", "lastResult.data holds no scan")
        state = code(self.states, required(result, "state", (str, int)), "state")
        events: list[CanonicalEvent] = []
        seen, keys = recent.seen(waybill), []
        for index, scan in enumerate(scans):
            if not isinstance(scan, dict):
                raise Rejected("wrong_type", "a scan in lastResult.data is not an object")
            time = required(scan, "time", str)
            context = scan["context"] if isinstance(scan.get("context"), str) else ""
            keys.append(f"{time}|{context}")
            if index == 0 or keys[-1] not in seen:  # the newest is always read: the push's state speaks of it
                events.append(self._scan(waybill, carrier, scan, time, context, state if index == 0 else None, source))
        recent.remember(waybill, keys)
        return events

    def _scan(
        self,
        waybill: str,
        carrier: str,
        scan: dict[str, Any],
        time: str,
        context: str,
        state: Status | None,
        source: str,
    ) -> ShipmentEvent:
        location = scan.get("location") or scan.get("areaName") or ""
        return ShipmentEvent(
            waybill=waybill,
            carrier=carrier,
            status=state or self.scan_statuses.get(str(scan.get("status"))),
            at_ms=china_time_ms(time, "time"),
            source=source,
            scan_id=hashlib.blake2b(f"{waybill}|{time}|{context}".encode(), digest_size=12).hexdigest(),
            location=str(location),
            position=_area_center(scan.get("areaCenter")),
        )


def _area_center(value: object) -> tuple[float, float] | None:
    """`areaCenter` is "lon,lat", longitude first; returned as (lat, lon). Absent is fine, malformed is not."""
    if value is None or value == "":
        return None
    try:
        lon_text, lat_text = str(value).split(",")
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        raise Rejected("bad_coordinates", f"areaCenter {value!r} is not 'lon,lat'") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise Rejected("bad_coordinates", f"areaCenter {value!r} is out of range")
    return lat, lon


def from_spec(path: Path, spec: dict[str, Any]) -> CarrierTracking:
    check = SpecChecker(path)
    return CarrierTracking(
        check.text(spec, "topic"),
        _status_table(check, spec, "states"),
        _status_table(check, spec, "scan_statuses"),
    )


def _status_table(check: SpecChecker, spec: dict[str, Any], key: str) -> dict[str, Status]:
    table = spec.get(key)
    if not isinstance(table, dict) or not table:
        raise check.fail(key, "required, a mapping of carrier code to canonical status")
    statuses: dict[str, Status] = {}
    for carrier_code, value in table.items():
        status = check.status(value, f"{key}.{carrier_code}")
        if status is None:
            raise check.fail(f"{key}.{carrier_code}", "needs a canonical status")
        statuses[str(carrier_code)] = status
    return statuses
