"""Silence on the real stack: parcels shipped and never picked up turn red and raise one alert each,
with no event about them ever arriving, and only those. Business rules: a set published to the control
topic decides on exactly those orders. Arrivals: the day's deliveries come back to the job as legs, and
the orders of a later day are estimated from what they taught."""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.simulator import payloads
from connectors.simulator.world import WAREHOUSES
from jobs.cli import clickhouse
from jobs.settings import Settings
from schemas import topics
from tests.support import move_event_time_to, orderscope, records_on, simulated_day_run

pytestmark = pytest.mark.integration

ORDERS = 600
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


LEFT_BEHIND = {
    "version": "integration-1",
    "rules": [
        {
            "id": "left_behind",
            "version": 3,
            "description": "red for want of a carrier pick-up",
            "when": "no_pickup in health.factors and health.color >= red",
            "then": {"tag": "left_behind", "alert": "yellow", "recommend": "switch carrier", "priority": "high"},
        }
    ],
}


@pytest.fixture(scope="module")
def quiet_parcels(stack_env: dict[str, str]) -> tuple[dict[str, Any], Any, dict[str, str]]:
    folder = Path(stack_env["ORDERSCOPE_STATE_DIR"])
    rules = folder / "left_behind.yaml"
    rules.write_text(yaml.safe_dump(LEFT_BEHIND), encoding="utf-8")
    orderscope(stack_env, "rules", "publish", str(rules))
    truth = simulated_day_run(stack_env, "never_picked_up", ORDERS, seed=8, scenario="never_picked_up")
    recording = folder / "never_picked_up.jsonl"
    # Event time goes on as later traffic arrives: two days after the day's last record.
    last = max(json.loads(line)["ts_ms"] for line in recording.open(encoding="utf-8"))
    move_event_time_to(stack_env, min(last + 2 * DAY_MS, int(time.time() * 1000)))
    return truth, clickhouse(Settings.from_env(stack_env)).connect(), stack_env


def test_every_parcel_never_picked_up_has_one_open_red_alert_and_no_other_order_has_one(
    quiet_parcels: tuple[dict[str, Any], Any, dict[str, str]],
) -> None:
    truth, client, _ = quiet_parcels
    never_picked_up = set(truth["incidents"]["never_picked_up"])
    assert len(never_picked_up) >= 10, "the scenario should leave parcels unpicked"
    open_alerts = client.query(
        "SELECT channel || '|' || order_id, count() FROM alerts FINAL "
        "WHERE alert_type = 'no_pickup' AND resolved_at IS NULL GROUP BY channel, order_id"
    ).result_rows
    assert dict(open_alerts) == dict.fromkeys(never_picked_up, 1)
    severities = client.query("SELECT DISTINCT severity, rule_id FROM alerts FINAL WHERE alert_type = 'no_pickup'")
    assert severities.result_rows == [("red", "health.no_pickup")]


def test_a_published_rule_decides_on_exactly_the_orders_it_matches_and_names_its_version(
    quiet_parcels: tuple[dict[str, Any], Any, dict[str, str]],
) -> None:
    truth, client, _ = quiet_parcels
    never_picked_up = set(truth["incidents"]["never_picked_up"])
    decided = client.query(
        "SELECT channel || '|' || order_id, rules, tags, recommendations, priority, rules_version FROM orders "
        "WHERE has(rules, 'left_behind@3')"
    ).result_rows
    assert {key for key, *_ in decided} == never_picked_up
    assert {tuple(map(str, rest)) for _, *rest in decided} == {
        ("['left_behind@3']", "['left_behind']", "['switch carrier']", "high", "integration-1")
    }
    alerts = client.query(
        "SELECT channel || '|' || order_id, severity, rule_id, reason FROM alerts FINAL "
        "WHERE alert_type = 'rule.left_behind' AND resolved_at IS NULL"
    ).result_rows
    assert sorted(key for key, *_ in alerts) == sorted(never_picked_up)
    assert {tuple(rest) for _, *rest in alerts} == {("yellow", "left_behind@3", "red for want of a carrier pick-up")}
    assert client.query("SELECT version FROM rule_sets FINAL").result_rows == [("integration-1",)]


def test_rules_test_compares_a_candidate_with_the_set_published_to_the_topic(
    quiet_parcels: tuple[dict[str, Any], Any, dict[str, str]], tmp_path: Path
) -> None:
    truth, _, env = quiet_parcels
    recording = Path(env["ORDERSCOPE_STATE_DIR"]) / "never_picked_up.jsonl"
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(yaml.safe_dump({"version": "candidate-1", "rules": []}), encoding="utf-8")
    out = tmp_path / "trial.json"
    printed = orderscope(env, "rules", "test", str(candidate), "--recording", str(recording), "--out", str(out))
    assert "against the set in force integration-1 (topic orderscope.rules)" in printed
    trial = json.loads(out.read_text(encoding="utf-8"))
    assert set(trial["live_only"]) == set(truth["incidents"]["never_picked_up"])
    assert trial["candidate_only"] == [] and trial["flagged"]["candidate"] == {}


def test_the_quiet_orders_are_red_with_the_reason_in_words_and_their_history_shows_the_way_there(
    quiet_parcels: tuple[dict[str, Any], Any, dict[str, str]],
) -> None:
    truth, client, _ = quiet_parcels
    never_picked_up = set(truth["incidents"]["never_picked_up"])
    rows = client.query("SELECT channel || '|' || order_id, health_color, health_reasons FROM orders "
                        "WHERE status = 'shipped'").result_rows  # fmt: skip
    quiet = {key: (color, reasons) for key, color, reasons in rows if key in never_picked_up}
    assert set(quiet) == never_picked_up
    for color, reasons in quiet.values():
        assert color == "red"
        assert any(reason.startswith("no carrier pick-up ") and reason.endswith("(SLA 2 h)") for reason in reasons)
    history = client.query(
        "SELECT channel || '|' || order_id, groupArray(health_color) FROM "
        "(SELECT * FROM order_health_history FINAL ORDER BY health_at) GROUP BY channel, order_id"
    ).result_rows
    ways = {key: [c for i, c in enumerate(colors) if i == 0 or colors[i - 1] != c]  # the arrival moves too
            for key, colors in history if key in never_picked_up}  # fmt: skip
    assert set(ways) == never_picked_up
    assert all(colors[-1] == "red" for colors in ways.values()), ways
    # Found at the SLA as event time passed, yellow first, unless the order's own events already told later times.
    assert sum(colors[-2:] == ["yellow", "red"] for colors in ways.values()) >= len(ways) // 2, ways


def test_delivered_orders_are_green_without_reasons(quiet_parcels: tuple[dict[str, Any], Any, dict[str, str]]) -> None:
    _, client, _ = quiet_parcels
    colors = client.query(
        "SELECT health_color, count(), countIf(notEmpty(health_reasons)) FROM orders "
        "WHERE status IN ('delivered', 'completed') GROUP BY health_color"
    ).result_rows
    unassessed = client.query("SELECT order_id, status, updated_at FROM orders WHERE health_color IS NULL").result_rows
    assert [(color, with_reasons) for color, _, with_reasons in colors] == [("green", 0)], unassessed


def test_each_alert_step_is_on_the_alerts_topic_with_its_idempotency_key(
    quiet_parcels: tuple[dict[str, Any], Any, dict[str, str]],
) -> None:
    _, client, env = quiet_parcels
    steps = records_on(topics.ALERTS, Settings.from_env(env).bootstrap_servers)
    latest = {}
    for step in steps:  # at-least-once: a step told twice has the same idempotency key
        latest[step["incident_key"]] = max(latest.get(step["incident_key"], step), step, key=lambda s: s["revision"])
    table = client.query("SELECT incident_key, revision, step, resolved_at IS NULL FROM alerts FINAL").result_rows
    assert {key: (step["revision"], step["step"]) for key, step in latest.items()} == {
        key: (revision, step) for key, revision, step, _ in table
    }
    assert all(is_open == (step in ("opened", "updated")) for _, _, step, is_open in table)
    assert all(step["idempotency_key"] == f"{step['incident_key']}#{step['revision']}" for step in steps)


def test_every_delivered_order_comes_back_as_one_leg_and_the_lanes_figures_count_them(
    quiet_parcels: tuple[dict[str, Any], Any, dict[str, str]],
) -> None:
    truth, client, env = quiet_parcels
    delivered = {order["channel"] + "|" + order["order_id"]: order["delivered_at_ms"] // 1000 * 1000  # scans: seconds
                 for order in truth["orders"] if order["delivered_at_ms"] is not None}  # fmt: skip
    legs = client.query("SELECT channel || '|' || order_id, toUnixTimestamp64Milli(delivered_at), steps "
                        "FROM eta_legs FINAL").result_rows  # fmt: skip
    assert {key: at for key, at, _ in legs} == delivered
    assert all({"paid", "shipped", "in_transit"} <= set(steps) for _, _, steps in legs)
    on_topic = records_on(topics.ETA_LEGS, Settings.from_env(env).bootstrap_servers)
    assert Counter(leg["channel"] + "|" + leg["order_id"] for leg in on_topic) == dict.fromkeys(delivered, 1)
    counted = client.query("SELECT sum(legs) FROM eta_lane_figures WHERE step = 'paid' AND condition = ''").result_rows
    assert counted == [(len(delivered),)]
    places = client.query("SELECT region_code, lat, lon FROM delivery_places").result_rows
    regions = client.query("SELECT DISTINCT region_code FROM eta_legs FINAL").result_rows
    assert {region for region, _, _ in places} == {region for (region,) in regions}  # every delivery scan tells one
    assert all(18 < lat < 54 and 73 < lon < 135 for _, lat, lon in places)  # in China


STORM_PER_MINUTE = 25  # douyin's order changes, one in five failing, from the storm's start to the end of the replay
STORM_MINUTES = 5 * 60


def storm_start(day_start_ms: int) -> int:
    return -(-(day_start_ms + 5 * HOUR_MS) // 60_000) * 60_000  # a whole minute


def modification_storm(start_ms: int) -> list[dict[str, Any]]:
    """Raw modifications (of orders of their own: the day's orders keep their health) failing far above the
    breaker's 5%, for the last five hours of the replay (its event time ends about an hour before its end)."""
    records = []
    for n in range(STORM_MINUTES * STORM_PER_MINUTE):
        at = start_ms + n * 60_000 // STORM_PER_MINUTE
        change = {"channel": "douyin", "order_id": f"storm-{n}", "kind": "address_change", "ts": payloads.iso_utc(at)}
        change |= {"result": "failed", "error": "SYSTEM_LOCKED"} if n % 5 == 0 else {"result": "succeeded"}
        records.append({"topic": topics.RAW_MODIFICATIONS, "key": None, "value": json.dumps(change), "ts_ms": at})
    return records


@pytest.fixture(scope="module")
def next_day(quiet_parcels: tuple[dict[str, Any], Any, dict[str, str]]) -> tuple[dict[str, Any], int, Any]:
    """The first ten hours of a later day, read by the job that learned from the first day's deliveries
    (none of the later day's orders is delivered within ten hours, so nothing new is learned); in its last hour,
    a storm of failing modifications on douyin."""
    _, client, env = quiet_parcels
    start = client.query("SELECT toUnixTimestamp64Milli(max(updated_at)) FROM orders").result_rows[0][0] + 3 * DAY_MS
    recording = Path(env["ORDERSCOPE_STATE_DIR"]) / "next_day.jsonl"
    orderscope(env, "simulate", "--orders", "400", "--seed", "9", "--out", str(recording),
               "--start", datetime.fromtimestamp(start / 1000, UTC).isoformat())  # fmt: skip
    first_hours = recording.with_name("next_day_first_hours.jsonl")
    with recording.open(encoding="utf-8") as day:
        lines = [line for line in day if json.loads(line)["ts_ms"] < start + 10 * HOUR_MS]
    lines += [json.dumps(record) + "\n" for record in modification_storm(storm_start(start))]
    with first_hours.open("w", encoding="utf-8") as kept:  # in time order, as sources tell them
        kept.writelines(sorted(lines, key=lambda line: json.loads(line)["ts_ms"]))
    orderscope(env, "replay", str(first_hours))
    # Every order lane hears each new minute of event time, so all assess their orders up to where it stops.
    orderscope(env, "job", "run", "--until-idle", "5")
    return json.loads(recording.with_suffix(".truth.json").read_text()), start, client


def test_orders_of_a_later_day_are_estimated_from_what_the_first_day_taught(
    next_day: tuple[dict[str, Any], int, Any],
) -> None:
    truth, start, client = next_day
    arrival = {(o["channel"], o["order_id"]): o["delivered_at_ms"] for o in truth["orders"] if o["delivered_at_ms"]}
    estimates = client.query(
        "SELECT channel, order_id, toUnixTimestamp64Milli(eta), toUnixTimestamp64Milli(eta_p10), "
        "toUnixTimestamp64Milli(eta_p90), toUnixTimestamp64Milli(promised_at), eta_basis FROM orders "
        "WHERE status != 'created'"
    ).result_rows
    # Orders are assessed at the order stage's event time, which ends where the replay's slowest source left it:
    # the orders paid more than half an hour before it (their first-update check fell due) have an estimate.
    assessed_to = client.query("SELECT toUnixTimestamp64Milli(max(health_at)) FROM orders").result_rows[0][0]
    paid = dict(client.query("SELECT (channel, order_id), toUnixTimestamp64Milli(min(at)) FROM order_events "
                             "WHERE status = 'paid' GROUP BY channel, order_id").result_rows)  # fmt: skip
    rows = [
        row for row in estimates if row[:2] in arrival and paid.get(row[:2], assessed_to) < assessed_to - HOUR_MS // 2
    ]
    assert len(rows) >= 10, f"the later day's first hours should hold paid orders (event time {assessed_to})"
    unsure = [row for row in rows if not (row[3] is not None and row[3] <= row[2] <= row[4] and row[6])]
    assert unsure == [], unsure
    covered = [p10 <= arrival[(c, o)] <= p90 for c, o, _, p10, p90, _, _ in rows]
    assert sum(covered) >= 0.6 * len(rows), f"{sum(covered)} of {len(rows)} arrived within p10..p90"
    promised = [(eta, promise, arrival[(c, o)]) for c, o, eta, _, _, promise, _ in rows if promise is not None]
    eta_error = statistics.mean(abs(eta - arrived) for eta, _, arrived in promised)
    promise_error = statistics.mean(abs(promise - arrived) for _, promise, arrived in promised)
    print(
        f"{len(rows)} orders, {sum(covered)} within p10..p90; mean error {eta_error / HOUR_MS:.1f} h against "
        f"{promise_error / HOUR_MS:.1f} h for the promise, over {len(promised)} promised"
    )
    assert eta_error < 0.7 * promise_error
    learned_later = client.query("SELECT count() FROM eta_legs FINAL WHERE toUnixTimestamp64Milli(delivered_at) >= "
                                 f"{start}").result_rows  # fmt: skip
    assert learned_later == [(0,)]


def test_a_storm_of_failing_changes_opens_the_channels_breaker_once_for_its_orders_and_its_changes(
    next_day: tuple[dict[str, Any], int, Any], stack_env: dict[str, str]
) -> None:
    _, start, client = next_day
    storm = storm_start(start)
    # The window to the storm's first minute holds 25 changes, 5 failed (20%): the breaker opens at its end.
    opened = storm + 60_000
    breakers = client.query("SELECT channel, toUnixTimestamp64Milli(opened_at), closed_at, failed, modifications "
                            "FROM channel_breakers FINAL").result_rows  # fmt: skip
    assert [row[:3] for row in breakers] == [("douyin", opened, None)]  # still failing when the replay ends
    assert breakers[0][3] >= 5 and breakers[0][3] / breakers[0][4] > 0.05
    alerts = client.query("SELECT channel, order_id, severity, toUnixTimestamp64Milli(opened_at), resolved_at, step "
                          "FROM alerts FINAL WHERE alert_type = 'channel_breaker_open'").result_rows  # fmt: skip
    assert alerts == [("douyin", "", "red", opened, None, "opened")]
    told = [step for step in records_on(topics.ALERTS, Settings.from_env(stack_env).bootstrap_servers)
            if step["alert_type"] == "channel_breaker_open"]  # fmt: skip
    assert {step["idempotency_key"] for step in told} == {f"douyin||channel_breaker_open|{opened}#1"}

    # Orders assessed since it opened, as they stood then (not those read ahead of event time: nothing of them was
    # known at their assessment).
    carrying = client.query(
        "SELECT channel, countIf(arrayExists(r -> r LIKE '%go to manual review%', health_reasons)), count() "
        f"FROM orders WHERE health_at >= fromUnixTimestamp64Milli({opened}) AND status_at <= health_at "
        "AND status NOT IN ('delivered', 'completed', 'cancelled', 'returning', 'returned') GROUP BY channel"
    ).result_rows
    by_channel = {channel: (with_reason, of) for channel, with_reason, of in carrying}
    assert by_channel["douyin"][0] == by_channel["douyin"][1] > 0, by_channel  # every open douyin order, at once
    assert all(with_reason == 0 for channel, (with_reason, _) in by_channel.items() if channel != "douyin")

    review = client.query("SELECT channel, order_id FROM modifications_for_review").result_rows
    storm_ids = {f"storm-{n}": storm + n * 60_000 // STORM_PER_MINUTE for n in range(STORM_MINUTES * STORM_PER_MINUTE)}
    reviewed = {order_id for channel, order_id in review if channel == "douyin"}
    assert {order_id for order_id, at in storm_ids.items() if at // 1000 * 1000 >= opened} <= reviewed
    assert not {order_id for order_id, at in storm_ids.items() if at < opened} & reviewed
    assert {channel for channel, _ in review} == {"douyin"}


def test_the_jobs_minute_windows_count_each_modification_once_as_clickhouse_counts_them(
    next_day: tuple[dict[str, Any], int, Any],
) -> None:
    _, _, client = next_day
    windows = dict(client.query(
        "SELECT (key, toUnixTimestamp64Milli(window_start)), (modifications, modifications_failed) "
        "FROM kpi_windows FINAL WHERE window = '1m' AND dimension = 'channel' AND modifications > 0"
    ).result_rows)  # fmt: skip
    last = max(start for _, start in windows)
    stored = dict(client.query(
        "SELECT (channel, toUnixTimestamp(toStartOfMinute(at)) * 1000) AS minute, (count(), countIf(NOT succeeded)) "
        f"FROM modifications FINAL WHERE at < fromUnixTimestamp64Milli({last}) + INTERVAL 1 MINUTE GROUP BY minute"
    ).result_rows)  # fmt: skip
    assert windows == stored  # the order changes' source tells them in time order: none came too late
    warehouses = client.query("SELECT DISTINCT key FROM kpi_windows WHERE dimension = 'warehouse' AND key != ''")
    assert {key for (key,) in warehouses.result_rows} == {warehouse.code for warehouse in WAREHOUSES}
