"""Vehicles: line-haul manifests (which waybills ride which vehicle) and GPS pings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.events import CanonicalEvent, ShipmentEvent, VehicleLoad, VehiclePing
from schemas.fields import Rejected, epoch_ms, iso_time_ms, json_object, number, required
from schemas.lifecycle import Status
from schemas.mapping import SpecChecker
from schemas.privacy import Pseudonymizer
from schemas.recent import RecentScans


@dataclass(frozen=True)
class Manifests:
    topic: str

    def adapt(self, raw: str, ids: Pseudonymizer, source: str, recent: RecentScans) -> list[CanonicalEvent]:
        payload = json_object(raw)
        waybills = required(payload, "waybills", list)
        if not waybills or not all(isinstance(w, str) and w for w in waybills):
            raise Rejected("wrong_type", "waybills must be a non-empty list of waybill numbers")
        load = VehicleLoad(
            vehicle_id=required(payload, "vehicle_id", str),
            waybills=tuple(waybills),
            origin_hub=required(payload, "origin_hub", str),
            dest_hub=required(payload, "dest_hub", str),
            departed_at_ms=iso_time_ms(required(payload, "departed_at", str), "departed_at"),
        )
        return [load, *(_departure(load, waybill, source) for waybill in load.waybills)]


@dataclass(frozen=True)
class GpsPings:
    topic: str

    def adapt(self, raw: str, ids: Pseudonymizer, source: str, recent: RecentScans) -> list[CanonicalEvent]:
        payload = json_object(raw)
        lat, lon = _coordinate(payload, "lat", 90), _coordinate(payload, "lon", 180)
        if lat == 0 and lon == 0:
            return []  # the unit had no fix: a known quirk, not a position and not an error
        return [
            VehiclePing(
                vehicle_id=required(payload, "vehicle_id", str),
                at_ms=epoch_ms(required(payload, "ts", int), "ts", unit_ms=1),
                lat=lat,
                lon=lon,
                speed_kmh=number(payload, "speed_kmh") if "speed_kmh" in payload else 0.0,
            )
        ]


def _departure(load: VehicleLoad, waybill: str, source: str) -> ShipmentEvent:
    """Each waybill on the manifest left its hub: a journey step of its order."""
    return ShipmentEvent(
        waybill=waybill,
        carrier="",
        status=Status.IN_TRANSIT,
        at_ms=load.departed_at_ms,
        source=source,
        scan_id=f"{load.vehicle_id}|{load.departed_at_ms}|{waybill}",
        location=f"{load.origin_hub} → {load.dest_hub}, vehicle {load.vehicle_id}",
    )


def _coordinate(payload: dict[str, Any], name: str, limit: float) -> float:
    value = number(payload, name)
    if not -limit <= value <= limit:
        raise Rejected("bad_coordinates", f"{name} = {value} is outside ±{limit}")
    return float(value)


def manifests_from_spec(path: Path, spec: dict[str, Any]) -> Manifests:
    return Manifests(SpecChecker(path).text(spec, "topic"))


def gps_from_spec(path: Path, spec: dict[str, Any]) -> GpsPings:
    return GpsPings(SpecChecker(path).text(spec, "topic"))
