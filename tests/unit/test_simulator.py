"""The simulator speaks every contract exactly: what it calls valid is read, what it breaks is refused."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime

from connectors.simulator.scenarios import SCENARIOS
from connectors.simulator.simulation import simulate
from schemas.events import DeadLetter
from schemas.normalize import Normalizer
from schemas.privacy import Pseudonymizer

START = datetime.fromisoformat("2026-11-21T00:00:00+08:00")


def test_same_seed_same_traffic_and_another_seed_other_traffic() -> None:
    first, again, other = simulate(150, 5, START), simulate(150, 5, START), simulate(150, 6, START)
    assert first.messages == again.messages and first.orders == again.orders
    assert first.messages != other.messages


def test_valid_payloads_are_all_understood_and_every_malformed_one_is_a_dead_letter() -> None:
    simulation = simulate(400, 9, START, "modification_failures")
    normalizer = Normalizer(Pseudonymizer("test-key"))
    dead = Counter(
        message.topic
        for message in simulation.messages
        if isinstance(
            normalizer.normalize(message.topic, 0, 0, message.value.encode("utf-8", "surrogatepass"), 0), DeadLetter
        )
    )
    assert dead == Counter(m["topic"] for m in simulation.malformed)
    assert len(simulation.malformed) > 10


def test_every_source_speaks_in_a_simulated_day() -> None:
    topics = {message.topic for message in simulate(300, 2, START).messages}
    assert topics >= {
        "raw.orders.tmall", "raw.orders.douyin", "raw.orders.xiaohongshu", "raw.orders.wechat", "raw.orders.app",
        "raw.orders.pos", "raw.wms", "raw.logistics.carrier", "raw.logistics.gps", "raw.logistics.manifest",
        "raw.signals", "raw.oms.modifications", "raw.cs.messages",
    }  # fmt: skip


def test_each_scenario_names_the_orders_its_incident_affects() -> None:
    for name, scenario in SCENARIOS.items():
        simulation = simulate(400, 4, START, name)
        for incident in scenario.incidents:
            assert simulation.incidents[incident], f"{name}: {incident} affected no order"


def test_delayed_orders_arrive_later_on_average() -> None:
    simulation = simulate(600, 8, START, "hub_backlog")
    affected = set(simulation.incidents["hub_backlog"])

    def mean_transit(in_incident: bool) -> float:
        spans = [o.delivered_at_ms - START.timestamp() * 1000 for o in simulation.orders
                 if o.delivered_at_ms and (o.key in affected) == in_incident]  # fmt: skip
        return sum(spans) / len(spans)

    assert mean_transit(True) > mean_transit(False) + 12 * 3_600_000
    late = [o for o in simulation.orders if o.key in affected and o.delivered_at_ms]
    assert late and all(
        o.delivered_at_ms - 48 * 3_600_000 <= o.breaches["hub_backlog"] <= o.delivered_at_ms - 24 * 3_600_000
        for o in late
    )  # late from when it would have arrived: the delay (24 to 48 h) before delivery


def test_only_the_orders_whose_modification_failed_have_the_incident() -> None:
    simulation = simulate(1000, 5, START, "modification_failures")
    failed = set()
    for message in simulation.messages:
        if message.topic == "raw.oms.modifications":
            try:
                change = json.loads(message.value)
            except ValueError:
                continue  # the simulator's malformed payloads
            if isinstance(change, dict) and change.get("result") == "failed":
                failed.add(f"{change['channel']}|{change['order_id']}")
    assert failed and set(simulation.incidents["modification_failures"]) == failed


def test_each_vehicle_id_names_one_trip_so_the_truth_of_silent_trackers_holds() -> None:
    """Two carriers sharing an initial once shared plates: one vehicle's pings covered the other's silence."""
    simulation = simulate(3000, 7, START, "silent_trackers")
    trips: dict[str, set[tuple[str, ...]]] = {}
    for message in simulation.messages:
        if message.topic != "raw.logistics.manifest":
            continue
        try:
            manifest = json.loads(message.value)
        except ValueError:
            continue  # a broken copy, made on purpose
        if manifest:
            trips.setdefault(manifest["vehicle_id"], set()).add(tuple(manifest["waybills"]))  # repeats: one trip
    assert trips and all(len(loads) == 1 for loads in trips.values())


def test_vehicles_reaching_a_closed_road_stand_at_it_until_it_opens_and_their_parcels_are_late_by_that() -> None:
    simulation = simulate(800, 3, START, "road_closure")
    told = [_json_or_none(m.value) for m in simulation.messages if m.topic in ("raw.signals", "raw.logistics.gps")]
    values = [value for value in told if isinstance(value, dict)]  # not the broken copies, made on purpose
    (closure,) = [value for value in values if value.get("severity") == 4]
    closes = int(datetime.fromisoformat(closure["ts"]).timestamp() * 1000)
    opens = closes + closure["expected_delay_min"] * 60_000
    at_closure = (closure["lat"], closure["lon"])
    standing = [ping for ping in values if ping.get("speed_kmh") == 0.0 and (ping["lat"], ping["lon"]) == at_closure]
    assert standing and all(closes <= ping["ts"] < opens for ping in standing)
    late_by = [
        o.delivered_at_ms - o.breaches["road_closure"] for o in simulation.orders if "road_closure" in o.incidents
    ]
    assert late_by and all(0 < late <= opens - closes for late in late_by)  # type: ignore[operator]


def _json_or_none(value: str) -> object:
    try:
        return json.loads(value)
    except ValueError:
        return None
