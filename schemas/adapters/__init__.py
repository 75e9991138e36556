"""One adapter per source: a raw payload in, canonical events out.

Adding a source is a new module here with an `adapt(payload, ids, source)`
function, and one line in ADAPTERS naming the topic it reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas import topics
from schemas.adapters import app, carrier, tmall, wms
from schemas.events import CanonicalEvent
from schemas.privacy import Pseudonymizer

Adapter = Callable[[dict[str, Any], Pseudonymizer, str], list[CanonicalEvent]]

ADAPTERS: dict[str, Adapter] = {
    topics.RAW_ORDER_TOPICS["tmall"]: tmall.adapt,
    topics.RAW_ORDER_TOPICS["app"]: app.adapt,
    topics.RAW_WMS: wms.adapt,
    topics.RAW_CARRIER: carrier.adapt,
}
