"""The real stack end to end: a recording into Kafka, the Flink job, results in ClickHouse."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from connectors import kafka
from jobs.cli import clickhouse, local_stack
from jobs.settings import Settings
from schemas import topics
from tests.support import CONTRACT_EXAMPLES, example, move_event_time_to, orderscope, records_on

pytestmark = pytest.mark.integration

TMALL_ORDER = "3910028811452201538"
JOB_TIMEOUT_S = 300
FAILED_WRITE = re.compile(r"writing \d+ rows to \w+ failed")


def database(env: dict[str, str]) -> Client:
    return clickhouse(Settings.from_env(env)).connect()


DEPARTED_MS = 1795266000000  # the example manifest's departed_at
PINGS = [  # the example vehicle after its departure; the last one has no fix
    {"vehicle_id": "浙A·D3K21", "ts": DEPARTED_MS + 600_000, "lat": 30.21, "lon": 120.21, "speed_kmh": 60.0},
    {"vehicle_id": "浙A·D3K21", "ts": DEPARTED_MS + 1_200_000, "lat": 30.25, "lon": 120.13, "speed_kmh": 42.5},
    {"vehicle_id": "浙A·D3K21", "ts": DEPARTED_MS + 1_300_000, "lat": 0.0, "lon": 0.0, "speed_kmh": 0.0},
]


SHARED_PHONE = "13912345678"  # typed in for every walk-in member: one more than identity.yaml's limit


def app_orders_poisoning_identity() -> list[dict[str, object]]:
    """Six members with one phone (the sixth turns it degenerate), and two with the placeholder "N/A"."""
    app = example("app.json")[0]
    shared = [{**app, "order_id": f"APP-SHARED-{n}", "member_id": f"M-SHARED-{n}", "phone": SHARED_PHONE}
              for n in range(6)]  # fmt: skip
    placeholder = [{**app, "order_id": f"APP-NA-{n}", "member_id": f"M-NA-{n}", "phone": "N/A"} for n in range(2)]
    return [{**order, "device_id": None} for order in shared + placeholder]


def other_sources_recording(folder: Path) -> Path:
    """The contract examples of the sources orders.jsonl does not tell, and orders that try to poison
    identity resolution, as one recording."""
    messages = [
        *(("raw.orders.app", p) for p in app_orders_poisoning_identity()),
        *(("raw.logistics.manifest", p) for p in example("manifest.json")),
        *(("raw.logistics.gps", p) for p in PINGS),
        *(("raw.oms.modifications", p) for p in example("modifications.json")),
        *(("raw.cs.messages", p) for p in example("cs_messages.json")),
        *(("raw.signals", p) for p in example("signals.json")),
    ]
    path = folder / "other_sources.jsonl"
    lines = (
        json.dumps({"topic": topic, "key": None, "value": json.dumps(payload, ensure_ascii=False), "ts_ms": 0})
        for topic, payload in messages
    )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def first_run(stack_env: dict[str, str]) -> dict[str, str]:
    orderscope(stack_env, "replay", str(CONTRACT_EXAMPLES / "orders.jsonl"))
    orderscope(stack_env, "replay", str(other_sources_recording(Path(stack_env["ORDERSCOPE_STATE_DIR"]))))
    output = orderscope(stack_env, "job", "run", "--until-idle", "3", "--fresh")
    assert "all output written" in output
    return stack_env


def test_replayed_tmall_order_is_delivered_once_with_its_waybill(first_run: dict[str, str]) -> None:
    rows = database(first_run).query(
        "SELECT channel, status, waybills, amount_fen FROM orders_current FINAL WHERE order_id = {id:String}",
        parameters={"id": TMALL_ORDER},
    )
    assert rows.result_rows == [("tmall", "delivered", ["YT7781234455661"], 25900)]


def test_carrier_scans_repeated_in_every_push_are_in_the_journey_once(first_run: dict[str, str]) -> None:
    rows = database(first_run).query(
        "SELECT status, detail FROM order_events FINAL "
        "WHERE order_id = {id:String} AND source = 'raw.logistics.carrier' ORDER BY at",
        parameters={"id": TMALL_ORDER},
    )
    assert rows.result_rows == [
        ("in_transit", "西湖区文三路营业部"),
        ("in_transit", "杭州转运中心"),
        ("out_for_delivery", "西湖区文三路营业部"),
        ("delivered", "浙江,杭州市,西湖区"),
    ]


def test_vehicle_positions_reach_the_order_through_manifest_and_waybill(first_run: dict[str, str]) -> None:
    client = database(first_run)
    journey = client.query(
        "SELECT source, toUnixTimestamp64Milli(at), detail FROM order_events FINAL "
        "WHERE order_id = {id:String} AND source IN ('raw.logistics.manifest', 'raw.logistics.gps') ORDER BY at",
        parameters={"id": TMALL_ORDER},
    )
    departure, *fixes = journey.result_rows
    assert departure == ("raw.logistics.manifest", DEPARTED_MS, "HZ-HUB-1 → HZ-XH-STATION-3, vehicle 浙A·D3K21")
    # Pings may be read before the manifest; then only the newest waits for it. The ping without a fix never counts.
    fix_times = [at for _, at, _ in fixes]
    assert fix_times[-1] == DEPARTED_MS + 1_200_000
    assert set(fix_times) <= {DEPARTED_MS + 600_000, DEPARTED_MS + 1_200_000}
    assert {detail for _, _, detail in fixes} == {"vehicle 浙A·D3K21"}


def test_order_position_is_the_newest_fix_read_longitude_first(first_run: dict[str, str]) -> None:
    position = database(first_run).query(
        "SELECT position_lat, position_lon FROM orders WHERE order_id = {id:String}", parameters={"id": TMALL_ORDER}
    )
    assert position.result_rows == [(30.259324, 120.130203)]  # the signature scan's areaCenter "120.130203,30.259324"


def test_modifications_messages_and_signals_land_in_their_tables(first_run: dict[str, str]) -> None:
    client = database(first_run)
    assert client.query("SELECT channel, kind, succeeded, error FROM modifications FINAL ORDER BY at").result_rows == [
        ("douyin", "address_change", True, ""),
        ("tmall", "expedite", False, "SYSTEM_LOCKED"),
    ]
    messages = client.query("SELECT channel, intents FROM service_messages FINAL ORDER BY at")
    assert messages.result_rows == [("douyin", ["urgent"]), ("tmall", ["chase"])]
    assert client.query("SELECT kind FROM signals FINAL ORDER BY kind").result_rows == [
        ("port_congestion",),
        ("traffic_incident",),
        ("weather_rainstorm",),
    ]


def test_buyer_message_without_order_resolves_to_the_customer_of_the_buyers_order(first_run: dict[str, str]) -> None:
    rows = database(first_run).query(
        "SELECT o.customer_id, l.customer_id FROM service_messages AS m FINAL "
        "JOIN customer_links AS l FINAL ON l.identity = m.identity "
        "JOIN orders AS o ON o.customer_id = l.customer_id "
        "WHERE m.channel = 'tmall' AND m.order_id = ''"
    )
    assert len(rows.result_rows) == 1
    order_customer, message_customer = rows.result_rows[0]
    assert order_customer == message_customer != ""


def test_a_phone_shared_beyond_the_limit_stops_joining_and_placeholders_join_no_one(
    first_run: dict[str, str],
) -> None:
    client = database(first_run)
    customers = dict(
        client.query(
            "SELECT order_id, customer_id FROM orders WHERE order_id LIKE 'APP-SHARED-%' OR order_id LIKE 'APP-NA-%'"
        ).result_rows
    )
    shared = [customers[f"APP-SHARED-{n}"] for n in range(6)]
    assert len(set(shared)) == 2  # five joined before the phone turned degenerate; the sixth stays apart
    assert customers["APP-NA-0"] != customers["APP-NA-1"]
    degenerate = client.query("SELECT kind, crowded_kind, distinct_seen FROM degenerate_identifiers FINAL")
    assert degenerate.result_rows == [("phone", "member_id", 6)]


def test_truncated_carrier_payload_is_a_dead_letter_with_reason(first_run: dict[str, str]) -> None:
    rows = database(first_run).query(
        "SELECT reason, detail, raw FROM dead_letters FINAL WHERE source_topic = 'raw.logistics.carrier'"
    )
    assert len(rows.result_rows) == 1
    reason, detail, raw = rows.result_rows[0]
    assert (reason, raw) == ("malformed_json", '{"status": "polling", "lastResult": {"nu": "YT77812')
    assert "not valid JSON" in detail


def test_dead_letters_are_also_published_to_their_topic(first_run: dict[str, str]) -> None:
    records = records_on(topics.DEAD_LETTERS, Settings.from_env(first_run).bootstrap_servers)
    truncated = [r for r in records if r["source_topic"] == "raw.logistics.carrier"]
    assert truncated and truncated[0]["reason"] == "malformed_json"
    assert base64.b64decode(truncated[0]["raw_base64"]) == b'{"status": "polling", "lastResult": {"nu": "YT77812'


def test_restart_resumes_from_checkpoint_and_duplicates_change_nothing(first_run: dict[str, str]) -> None:
    client = database(first_run)

    def rows_written() -> int:
        """Every insert takes a new block number and merges keep the highest: it moves only on a write."""
        return int(
            client.query(
                "SELECT max(max_block_number) FROM system.parts "
                "WHERE database = currentDatabase() AND table = 'orders_current'"
            ).result_rows[0][0]
        )

    # Event time first passes every check (the examples' sources end at different times, and the orders' own
    # partitions read again alone would move it on, as live traffic would): what follows has nothing to find.
    move_event_time_to(first_run, int(time.time() * 1000))
    before, orders = rows_written(), client.query("SELECT * FROM orders ORDER BY channel, order_id").result_rows
    output = orderscope(first_run, "job", "run", "--until-idle", "2")
    assert "resuming from" in output
    assert rows_written() == before, "input was processed twice: orders_current was written"

    orderscope(first_run, "replay", str(CONTRACT_EXAMPLES / "orders.jsonl"))  # the same traffic again
    orderscope(first_run, "job", "run", "--until-idle", "2")
    assert rows_written() == before, "the same traffic again was written again"
    assert client.query("SELECT * FROM orders ORDER BY channel, order_id").result_rows == orders


def job_logs(settings: Settings) -> str:
    return "".join(log.read_text() for log in settings.flink_log_dir.glob("*.log"))


def test_clickhouse_outage_delays_output_but_loses_and_duplicates_nothing(first_run: dict[str, str]) -> None:
    settings = Settings.from_env(first_run)
    server = local_stack(settings).part("clickhouse")
    client = database(first_run)
    dead_letters_before = client.query("SELECT count() FROM dead_letters FINAL").result_rows[0][0]
    orders_before = client.query("SELECT * FROM orders ORDER BY channel, order_id").result_rows
    server.stop()
    orderscope(first_run, "replay", str(CONTRACT_EXAMPLES / "orders.jsonl"))
    job = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "job", "run", "--until-idle", "2"],
        env={**os.environ, **first_run},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not FAILED_WRITE.search(job_logs(settings)):  # the writer retries with backoff; checkpoints wait for it
        assert job.poll() is None, "the job ended during the ClickHouse outage"
        assert time.monotonic() < deadline, "the job never tried to write during the outage"
        time.sleep(1)
    assert job.poll() is None, "the job gave up at its first failed write"
    server.start()
    output, _ = job.communicate(timeout=JOB_TIMEOUT_S)
    assert job.returncode == 0, output[-3000:]
    client = database(first_run)
    assert client.query("SELECT count() FROM dead_letters FINAL").result_rows[0][0] == dead_letters_before + 1
    assert client.query("SELECT * FROM orders ORDER BY channel, order_id").result_rows == orders_before


def test_a_fresh_run_forgets_the_offsets_an_earlier_run_committed(first_run: dict[str, str]) -> None:
    settings = Settings.from_env(first_run)
    probe = kafka.OffsetProbe(settings.bootstrap_servers)
    try:
        assert probe.committed_offsets(settings.consumer_group), "the earlier runs committed offsets"
        kafka.forget_group_offsets(settings.bootstrap_servers, settings.consumer_group)
        assert probe.committed_offsets(settings.consumer_group) == {}
    finally:
        probe.close()
