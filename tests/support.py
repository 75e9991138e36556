"""Helpers shared by the tests: the source contracts' examples and free loopback ports."""

from __future__ import annotations

import json
import socket
from typing import Any

from jobs.settings import PROJECT_ROOT

CONTRACT_EXAMPLES = PROJECT_ROOT.parent / "shared" / "contracts" / "examples"


def example(name: str) -> Any:
    return json.loads((CONTRACT_EXAMPLES / name).read_text(encoding="utf-8"))


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open together while chosen, so none repeats)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()
