"""Adapters: a raw payload (decoded text) in, canonical events out, one per source topic.

Every source is described by a file in schemas/sources/. Order sources are
plain mappings (schemas/mapping.py); a source with a structure of its own
names its adapter with `adapter:` and keeps its code tables in the same file.
Adding a channel is a new YAML file; the README shows one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from schemas.adapters import carrier, logistics, service, signals
from schemas.eta import read_leg
from schemas.events import CanonicalEvent
from schemas.kpi import read_breaker
from schemas.mapping import SOURCES_DIR, MappingError, SpecChecker, read_spec
from schemas.privacy import Pseudonymizer
from schemas.recent import RecentScans
from schemas.rules import read_published
from schemas.topics import BREAKERS, ETA_LEGS, RULES

Adapter = Callable[[str, Pseudonymizer, str, RecentScans], list[CanonicalEvent]]


class Source(Protocol):
    @property
    def topic(self) -> str: ...

    def adapt(self, raw: str, ids: Pseudonymizer, source: str, recent: RecentScans) -> list[CanonicalEvent]: ...


# Sources with a structure of their own, by the `adapter:` name their file gives.
STRUCTURED: dict[str, Callable[[Path, dict[str, Any]], Source]] = {
    "carrier_tracking": carrier.from_spec,
    "gps_pings": logistics.gps_from_spec,
    "manifests": logistics.manifests_from_spec,
    "modifications": service.modifications_from_spec,
    "service_messages": service.service_messages_from_spec,
    "signals": signals.from_spec,
}


def load_adapters(folder: Path = SOURCES_DIR) -> dict[str, Adapter]:
    """Every source file in folder, by topic; raises MappingError naming the bad file and key."""
    adapters: dict[str, Adapter] = {}
    for path in sorted(folder.glob("*.yaml")):
        spec = read_spec(path)
        kind = spec.pop("adapter", None)
        if kind is None:
            source: Source = SpecChecker(path).order_mapping(spec)
        elif kind in STRUCTURED:
            source = STRUCTURED[kind](path, spec)
        else:
            raise MappingError(f"{path}: adapter: {kind!r} is unknown; known: {', '.join(STRUCTURED)}")
        if source.topic in adapters:
            raise MappingError(f"{path}: topic: {source.topic} is already read by another source file")
        adapters[source.topic] = source.adapt
    return adapters


# The sources' topics, the job's own legs read back (each lane learns arrivals from every delivery) and breakers
# (each lane's orders of the channel carry it), and the business rule sets published to it.
ADAPTERS = {**load_adapters(), ETA_LEGS: read_leg, RULES: read_published, BREAKERS: read_breaker}
