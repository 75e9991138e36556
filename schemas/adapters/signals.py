"""External signals: weather warnings, port congestion, traffic incidents."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.events import CanonicalEvent, Signal
from schemas.fields import Rejected, iso_time_ms, json_object, number, required
from schemas.mapping import SpecChecker
from schemas.privacy import Pseudonymizer
from schemas.recent import RecentScans


@dataclass(frozen=True)
class Signals:
    topic: str
    warning_levels: tuple[str, ...]  # lowest first
    phenomena: frozenset[str]

    def adapt(self, raw: str, ids: Pseudonymizer, source: str, recent: RecentScans) -> list[CanonicalEvent]:
        payload = json_object(raw)
        kind = required(payload, "type", str)
        reader = self._readers().get(kind)
        if reader is None:
            raise Rejected("unknown_code", f"field 'type' has unknown code {kind!r}")
        return [reader(payload)]

    def _readers(self) -> dict[str, Callable[[dict[str, Any]], Signal]]:
        return {
            "weather_warning": self._weather,
            "port_congestion": _port,
            "traffic_incident": _traffic,
        }

    def _weather(self, payload: dict[str, Any]) -> Signal:
        level = required(payload, "level", str)
        phenomenon = required(payload, "phenomenon", str)
        if level not in self.warning_levels:
            raise Rejected("unknown_code", f"warning level {level!r} is not one of {', '.join(self.warning_levels)}")
        if phenomenon not in self.phenomena:
            raise Rejected("unknown_code", f"phenomenon {phenomenon!r} is unknown")
        return Signal(
            kind=f"weather_{phenomenon}",
            subject=required(payload, "region_code", str),
            at_ms=iso_time_ms(required(payload, "issued_at", str), "issued_at"),
            until_ms=iso_time_ms(required(payload, "expires_at", str), "expires_at"),
            level=level,
        )


def _port(payload: dict[str, Any]) -> Signal:
    index = number(payload, "index")
    if not 0 <= index <= 100:
        raise Rejected("out_of_range", f"congestion index {index} is outside 0..100")
    return Signal(
        kind="port_congestion",
        subject=required(payload, "port", str),
        at_ms=iso_time_ms(required(payload, "ts", str), "ts"),
        until_ms=None,
        level=f"{index:g}",
    )


MAX_DELAY_MIN = 30 * 24 * 60


def _traffic(payload: dict[str, Any]) -> Signal:
    severity, delay_min = required(payload, "severity", int), required(payload, "expected_delay_min", int)
    lat, lon = number(payload, "lat"), number(payload, "lon")
    if not (1 <= severity <= 4 and -90 <= lat <= 90 and -180 <= lon <= 180 and 0 <= delay_min <= MAX_DELAY_MIN):
        raise Rejected("out_of_range", "severity must be 1..4, lat/lon within range, the delay 0..30 days")
    return Signal(
        kind="traffic_incident",
        subject=required(payload, "road", str),
        at_ms=iso_time_ms(required(payload, "ts", str), "ts"),
        until_ms=None,
        level=str(severity),
        lat=lat,
        lon=lon,
        delay_min=delay_min,
    )


def from_spec(path: Path, spec: dict[str, Any]) -> Signals:
    check = SpecChecker(path)
    levels, phenomena = spec.get("warning_levels"), spec.get("phenomena")
    if not isinstance(levels, list) or not levels:
        raise check.fail("warning_levels", "required, the warning colours from lowest to highest")
    if not isinstance(phenomena, list) or not phenomena:
        raise check.fail("phenomena", "required, the weather phenomena")
    return Signals(check.text(spec, "topic"), tuple(map(str, levels)), frozenset(map(str, phenomena)))
