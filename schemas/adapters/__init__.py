"""Adapters: a raw payload (decoded text) in, canonical events out, one per source topic.

Every source is described by a file in schemas/sources/. Order sources are
plain mappings (schemas/mapping.py); a source with a structure of its own
names its adapter with `adapter:` and keeps its code tables in the same file.
Adding a channel is a new YAML file; the README shows one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from schemas.adapters.carrier import carrier_tracking
from schemas.events import CanonicalEvent
from schemas.mapping import SOURCES_DIR, MappingError, SpecChecker, read_spec
from schemas.privacy import Pseudonymizer

Adapter = Callable[[str, Pseudonymizer, str], list[CanonicalEvent]]


def load_adapters(folder: Path = SOURCES_DIR) -> dict[str, Adapter]:
    """Every source file in folder, by topic; raises MappingError naming the bad file and key."""
    adapters: dict[str, Adapter] = {}
    for path in sorted(folder.glob("*.yaml")):
        spec = read_spec(path)
        kind = spec.pop("adapter", None)
        if kind is None:
            mapping = SpecChecker(path).order_mapping(spec)
            topic, adapter = mapping.topic, mapping.adapt
        elif kind == "carrier_tracking":
            tracking = carrier_tracking(path, spec)
            topic, adapter = tracking.topic, tracking.adapt
        else:
            raise MappingError(f"{path}: adapter: {kind!r} is unknown; known: carrier_tracking")
        if topic in adapters:
            raise MappingError(f"{path}: topic: {topic} is already read by another source file")
        adapters[topic] = adapter
    return adapters


ADAPTERS = load_adapters()
