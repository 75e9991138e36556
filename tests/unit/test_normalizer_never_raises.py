"""Property: whatever bytes arrive on a topic, the normalizer yields events or one dead letter."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.adapters import ADAPTERS
from schemas.events import DeadLetter, OrderEvent, ShipmentEvent, WaybillLink
from schemas.normalize import Normalizer
from schemas.privacy import Pseudonymizer
from tests.support import example

NORMALIZER = Normalizer(Pseudonymizer("test-key"))
VALID = [
    (topic, payload)
    for topic, name in (
        ("raw.orders.tmall", "tmall.json"),
        ("raw.orders.douyin", "douyin.json"),
        ("raw.orders.xiaohongshu", "xiaohongshu.json"),
        ("raw.orders.wechat", "wechat.json"),
        ("raw.orders.app", "app.json"),
        ("raw.wms", "wms.json"),
        ("raw.logistics.carrier", "carrier.json"),
    )
    for payload in example(name)
]
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = scalars | st.lists(scalars, max_size=3) | st.dictionaries(st.text(max_size=8), scalars, max_size=3)


def assert_well_formed(outcome: Any) -> None:
    if isinstance(outcome, DeadLetter):
        assert outcome.reason and outcome.detail
    else:
        assert all(isinstance(event, OrderEvent | ShipmentEvent | WaybillLink) for event in outcome)


@settings(max_examples=300)
@given(st.sampled_from(sorted(ADAPTERS)), st.binary(max_size=300))
def test_random_bytes_never_raise(topic: str, raw: bytes) -> None:
    assert_well_formed(NORMALIZER.normalize(topic, 0, 0, raw, 0))


@settings(max_examples=500)
@given(st.sampled_from(VALID), st.data())
def test_mutated_payloads_never_raise(valid: tuple[str, dict[str, Any]], data: st.DataObject) -> None:
    topic, payload = valid
    mutated = dict(payload)
    key = data.draw(st.sampled_from(sorted(mutated)))
    if data.draw(st.booleans()):
        mutated[key] = data.draw(json_values)
    else:
        del mutated[key]
    assert_well_formed(NORMALIZER.normalize(topic, 0, 0, json.dumps(mutated).encode(), 0))
