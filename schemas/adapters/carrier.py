"""Tracking-aggregator pushes: the waybill's state now, dated by its newest scan.

Its code table lives in schemas/sources/carrier.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.adapters.fields import Rejected, china_time_ms, code, json_object, required
from schemas.events import CanonicalEvent, ShipmentEvent
from schemas.lifecycle import Status
from schemas.mapping import SpecChecker
from schemas.privacy import Pseudonymizer


@dataclass(frozen=True)
class CarrierTracking:
    topic: str
    states: Mapping[str, Status]

    def adapt(self, raw: str, ids: Pseudonymizer, source: str) -> list[CanonicalEvent]:
        result = required(json_object(raw), "lastResult", dict)
        scans = required(result, "data", list)
        if not scans or not isinstance(scans[0], dict):
            raise Rejected("missing_field", "lastResult.data holds no scan")
        return [
            ShipmentEvent(
                waybill=required(result, "nu", str),
                carrier=required(result, "com", str),
                status=code(self.states, required(result, "state", (str, int)), "state"),
                at_ms=china_time_ms(required(scans[0], "time", str), "time"),
                source=source,
            )
        ]


def carrier_tracking(path: Path, spec: dict[str, Any]) -> CarrierTracking:
    check = SpecChecker(path)
    states = spec.get("states")
    if not isinstance(states, dict) or not states:
        raise check.fail("states", "required, a mapping of carrier state code to canonical status")
    codes: dict[str, Status] = {}
    for state, value in states.items():
        status = check.status(value, f"states.{state}")
        if status is None:
            raise check.fail(f"states.{state}", "every carrier state needs a canonical status")
        codes[str(state)] = status
    return CarrierTracking(check.text(spec, "topic"), codes)
