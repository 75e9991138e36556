"""GPS, manifests, modifications, service messages and signals, each as its contract sends them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.events import (
    DeadLetter,
    OrderEvent,
    OrderModification,
    ServiceMessage,
    ShipmentEvent,
    Signal,
    VehicleLoad,
    VehiclePing,
)
from schemas.lifecycle import Status
from schemas.normalize import Normalizer
from schemas.privacy import Pseudonymizer
from tests.support import example


def normalize(ids: Pseudonymizer, topic: str, payload: Any) -> list[Any] | DeadLetter:
    return Normalizer(ids).normalize(topic, 0, 0, json.dumps(payload, ensure_ascii=False).encode(), 0)


def test_gps_ping_keeps_decimal_degrees(ids: Pseudonymizer) -> None:
    assert normalize(ids, "raw.logistics.gps", example("gps.json")[1]) == [
        VehiclePing("浙A·D3K21", 1763733600456, 30.1112, 120.4521, 71.5)
    ]


def test_gps_ping_without_fix_is_dropped_not_an_error(ids: Pseudonymizer) -> None:
    assert normalize(ids, "raw.logistics.gps", example("gps.json")[2]) == []


@pytest.mark.parametrize(("lat", "lon"), [(91.0, 120.0), (30.0, 181.0), (-95.5, 0.0)])
def test_gps_out_of_range_is_a_dead_letter(ids: Pseudonymizer, lat: float, lon: float) -> None:
    outcome = normalize(ids, "raw.logistics.gps", {**example("gps.json")[0], "lat": lat, "lon": lon})
    assert isinstance(outcome, DeadLetter) and outcome.reason == "bad_coordinates"


def test_manifest_links_waybills_to_the_vehicle_and_marks_their_departure(ids: Pseudonymizer) -> None:
    outcome = normalize(ids, "raw.logistics.manifest", example("manifest.json")[0])
    assert isinstance(outcome, list)
    load, *departures = outcome
    assert isinstance(load, VehicleLoad) and load.waybills == ("YT7781234455661", "YT7781234455662")
    assert all(isinstance(d, ShipmentEvent) and d.status == Status.IN_TRANSIT for d in departures)
    assert [d.waybill for d in departures] == list(load.waybills)


def test_failed_modification_keeps_its_error_and_notes_the_journey(ids: Pseudonymizer) -> None:
    outcome = normalize(ids, "raw.oms.modifications", example("modifications.json")[1])
    assert isinstance(outcome, list)
    change, note = outcome
    assert isinstance(change, OrderModification) and (change.succeeded, change.error) == (False, "SYSTEM_LOCKED")
    assert isinstance(note, OrderEvent) and (note.status, note.detail) == (None, "expedite failed: SYSTEM_LOCKED")


def test_service_message_becomes_intents_and_the_buyer_pseudonym_of_its_channel(ids: Pseudonymizer) -> None:
    outcome = normalize(ids, "raw.cs.messages", example("cs_messages.json")[1])
    assert outcome == [
        ServiceMessage("tmall", "", ids.pseudonym("tmall_buyer", "AAHq3xYzZ0bH8k2P1m"), 1763760000_000, ("chase",))
    ]


@pytest.mark.parametrize(
    ("text", "intents"),
    [("急用！今天能发货吗？", ("urgent",)), ("要投诉，还要换货", ("exchange", "complaint")), ("谢谢", ())],
)
def test_intents_found_by_keywords(ids: Pseudonymizer, text: str, intents: tuple[str, ...]) -> None:
    outcome = normalize(ids, "raw.cs.messages", {**example("cs_messages.json")[0], "text": text})
    assert isinstance(outcome, list) and outcome[0].intents == intents


def test_signals_of_each_type(ids: Pseudonymizer) -> None:
    outcomes = [normalize(ids, "raw.signals", payload) for payload in example("signals.json")]
    assert [o[0].kind for o in outcomes if isinstance(o, list)] == [
        "weather_rainstorm",
        "port_congestion",
        "traffic_incident",
    ]
    traffic = outcomes[2]
    assert isinstance(traffic, list) and traffic[0] == Signal(
        "traffic_incident", "G15", traffic[0].at_ms, None, "3", 30.91, 121.12, 45
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({**example("signals.json")[0], "level": "purple"}, "unknown_code"),
        ({**example("signals.json")[1], "index": 140}, "out_of_range"),
        ({"type": "earthquake"}, "unknown_code"),
        ({**example("signals.json")[2], "expected_delay_min": 2**40}, "out_of_range"),
    ],
    ids=["unknown-level", "index-over-100", "unknown-type", "delay-beyond-int32"],
)
def test_bad_signals_are_dead_letters(ids: Pseudonymizer, payload: dict[str, Any], reason: str) -> None:
    outcome = normalize(ids, "raw.signals", payload)
    assert isinstance(outcome, DeadLetter) and outcome.reason == reason


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps({"channel": "tmall", "order_id": "1", "text": "寄到 张三 幸福路8号, 急用", "ts": "soon"}).encode(),
        '{"channel": "tmall", "text": "寄到 张三 幸福路8号'.encode(),  # truncated: the text cannot be cut out
    ],
    ids=["bad-field", "truncated"],
)
def test_a_dead_lettered_service_message_keeps_no_free_text(ids: Pseudonymizer, raw: bytes) -> None:
    outcome = Normalizer(ids).normalize("raw.cs.messages", 0, 0, raw, 0)
    assert isinstance(outcome, DeadLetter)
    assert "张三".encode() not in outcome.raw and "幸福路".encode() not in outcome.raw
