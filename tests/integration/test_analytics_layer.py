"""The ClickHouse layer analysts and dashboards read (sql/013-014, sql/queries/), on known data.

The same small world is stored two ways: written after the migrations, every row twice and in another order
the second time (a replay), and written before the KPI migration, which feeds its tables from what is stored.
Every figure must be the same exact answer both ways.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.clickhouse import EVENTS_TABLE, ClickHouseTarget, keep_events_for, migrate, table_engine
from jobs import cli
from jobs.cli import SQL_DIR

pytestmark = pytest.mark.integration

QUERIES = SQL_DIR / "queries"
KPI_MIGRATION = "014"

Rows = Mapping[str, Sequence[Mapping[str, Any]]]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def order(channel: str, order_id: str, version: int, **columns: Any) -> dict[str, Any]:
    """An orders_current row; purchased when paid unless told otherwise."""
    purchased = {"purchased_at": columns["paid_at"]} if "paid_at" in columns else {}
    return {"channel": channel, "order_id": order_id, "version": version, **purchased, **columns}


def event(channel: str, order_id: str, when: str, status: str, event_id: str, **columns: Any) -> dict[str, Any]:
    return {
        "channel": channel, "order_id": order_id, "at": at(when), "status": status, "event_id": event_id,
        "source": f"raw.orders.{channel}", **columns,
    }  # fmt: skip


# Ann buys on Tmall (on time with zto; an earlier payment fact read late moves her payment), then on
# Douyin (shipped as told twice, stuck, red); Bo on WeChat (handed from sf to zto, late) and in a store,
# and a cancelled Tmall order; Cy a high-priced app order never updated (yellow); Dee a high-priced
# order, then a message to customer service only days ago.
ANN_T1 = {
    "customer_id": "c-ann",
    "amount_fen": 120_000,
    "region_code": "310000",
    "promised_at": at("2026-11-22T00:00:00"),
}
ANN_D1 = {
    "customer_id": "c-ann",
    "amount_fen": 5_000,
    "region_code": "310000",
    "promised_at": at("2026-11-27T00:00:00"),
}
BO_W1 = {"customer_id": "c-bo", "amount_fen": 80_000, "region_code": "440300", "promised_at": at("2026-11-22T00:00:00")}
BO_P1 = {"customer_id": "c-bo", "amount_fen": 3_000}
BO_T2 = {"customer_id": "c-bo", "amount_fen": 999_999, "region_code": "440300"}
CY_A1 = {"customer_id": "c-cy", "amount_fen": 300_000, "region_code": "440300"}
DEE_X1 = {"customer_id": "c-dee", "amount_fen": 200_000, "region_code": "110000"}
STUCK = "no carrier scan for 40 h while in transit (red after 36 h)"
FIRST_UPDATE_LATE = "no logistics update 2 h 5 min after payment"

ORDERS = [
    order("tmall", "T1", 1, **ANN_T1, status="paid", status_at=at("2026-11-20T02:00:30"),
          updated_at=at("2026-11-20T02:00:30"), paid_at=at("2026-11-20T02:00:30"), health_color="green",
          health_score=100),
    order("tmall", "T1", 2, **ANN_T1, status="delivered", status_at=at("2026-11-21T02:00:00"),
          updated_at=at("2026-11-21T02:00:00"), paid_at=at("2026-11-20T02:00:00"),
          first_update_at=at("2026-11-20T02:10:00"), delivered_at=at("2026-11-21T02:00:00"), carrier="zto",
          health_color="green", health_score=100),
    order("douyin", "D1", 1, **ANN_D1, status="paid", status_at=at("2026-11-25T03:00:00"),
          updated_at=at("2026-11-25T03:00:00"), paid_at=at("2026-11-25T03:00:00"), health_color="green",
          health_score=100),
    order("douyin", "D1", 2, **ANN_D1, status="in_transit", status_at=at("2026-11-25T09:00:00"),
          updated_at=at("2026-11-25T09:00:00"), paid_at=at("2026-11-25T03:00:00"),
          first_update_at=at("2026-11-25T03:40:00"), carrier="sf", health_color="red", health_score=20,
          health_reasons=[STUCK]),
    order("wechat", "W1", 1, **BO_W1, status="delivered", status_at=at("2026-11-23T04:00:00"),
          updated_at=at("2026-11-23T04:00:00"), paid_at=at("2026-11-20T04:00:00"),
          first_update_at=at("2026-11-20T04:20:00"), delivered_at=at("2026-11-23T04:00:00"), carrier="sf",
          health_color="green", health_score=90),
    order("wechat", "W1", 2, **BO_W1, status="completed", status_at=at("2026-11-24T04:00:00"),
          updated_at=at("2026-11-24T04:00:00"), paid_at=at("2026-11-20T04:00:00"),
          first_update_at=at("2026-11-20T04:20:00"), delivered_at=at("2026-11-23T04:00:00"), carrier="zto",
          health_color="green", health_score=100),
    order("tmall", "T2", 1, **BO_T2, status="cancelled", status_at=at("2026-11-20T03:00:00"),
          updated_at=at("2026-11-20T03:00:00"), paid_at=at("2026-11-20T02:00:40"), health_color="green",
          health_score=100),
    order("app", "A1", 1, **CY_A1, status="paid", status_at=at("2026-11-21T05:00:00"),
          updated_at=at("2026-11-21T07:05:00"), paid_at=at("2026-11-21T05:00:00"), health_color="yellow",
          health_score=60, health_reasons=[FIRST_UPDATE_LATE]),
    order("pos", "P1", 1, **BO_P1, status="completed", status_at=at("2026-11-26T08:00:00"),
          updated_at=at("2026-11-26T08:00:00"), purchased_at=at("2026-11-26T08:00:00"), health_color="green",
          health_score=100),
    # No customer told: a Xiaohongshu parcel whose payment and delivery, read late, move across midnight in
    # China (to the 21st and the 23rd), handed from sf to yto; an app parcel no scan named a carrier for.
    order("xiaohongshu", "R1", 1, status="delivered", status_at=at("2026-11-23T16:05:00"),
          updated_at=at("2026-11-23T16:05:00"), paid_at=at("2026-11-21T16:05:00"),
          delivered_at=at("2026-11-23T16:05:00"), carrier="sf", health_color="green", health_score=100),
    order("xiaohongshu", "R1", 2, status="delivered", status_at=at("2026-11-23T15:55:00"),
          updated_at=at("2026-11-23T16:05:00"), paid_at=at("2026-11-21T15:55:00"),
          first_update_at=at("2026-11-21T16:20:00"), delivered_at=at("2026-11-23T15:55:00"), carrier="yto",
          promised_at=at("2026-11-24T00:00:00"), health_color="green", health_score=100),
    order("app", "N1", 1, status="delivered", status_at=at("2026-11-22T06:00:00"),
          updated_at=at("2026-11-22T06:00:00"), paid_at=at("2026-11-21T06:00:00"),
          first_update_at=at("2026-11-21T06:05:00"), delivered_at=at("2026-11-22T06:00:00"), health_color="green",
          health_score=100),
    order("app", "X1", 1, **DEE_X1, status="completed", status_at=at("2026-11-19T08:00:00"),
          updated_at=at("2026-11-19T08:00:00"), paid_at=at("2026-11-18T08:00:00"), health_color="green",
          health_score=100),
]  # fmt: skip
EVENTS = [
    event("tmall", "T1", "2026-11-20T01:59:30", "created", "t1-created", amount_fen=120_000),
    event("tmall", "T1", "2026-11-20T02:00:10", "paid", "t1-paid"),  # Tmall tells the amount when created only
    event("tmall", "T1", "2026-11-20T02:00:20", "paid", "t1-paid-again"),  # the same payment told again
    event("tmall", "T2", "2026-11-20T02:00:40", "paid", "t2-paid"),
    event("tmall", "T2", "2026-11-20T03:00:00", "cancelled", "t2-cancelled"),
    event("tmall", "T1", "2026-11-20T02:10:00", "allocated", "t1-allocated", source="raw.wms"),
    event("tmall", "T1", "2026-11-20T20:00:00", "", "t1-scan-without-step", source="raw.carrier"),
    event("tmall", "T1", "2026-11-21T02:00:00", "delivered", "t1-delivered", carrier="zto", source="raw.carrier"),
    event("douyin", "D1", "2026-11-25T03:00:00", "paid", "d1-paid", amount_fen=5_000),
    event("douyin", "D1", "2026-11-25T05:00:00", "shipped", "d1-outbound", source="raw.wms"),
    event("douyin", "D1", "2026-11-25T05:07:00", "shipped", "d1-shipped"),
    event("douyin", "D1", "2026-11-25T09:00:00", "in_transit", "d1-transit", detail="Hangzhou hub", carrier="sf"),
    event("douyin", "D1", "2026-11-25T10:00:00", "exception", "d1-exception", detail="address unclear"),
]  # fmt: skip
MODIFICATIONS = [
    {"channel": "douyin", "order_id": "D1", "at": at("2026-11-25T03:30:00"), "kind": "address_change",
     "succeeded": False, "error": "already shipped"},
    {"channel": "douyin", "order_id": "D1", "at": at("2026-11-25T03:31:00"), "kind": "expedite", "succeeded": True,
     "error": ""},
]  # fmt: skip
CUSTOMER_LINKS = [
    {"identity": f"id-{name}", "kind": "phone", "customer_id": f"c-{name}", "strong": True, "version": 1}
    for name in ("ann", "cy", "dee")
]
SERVICE_MESSAGES = [
    {"channel": "douyin", "order_id": "D1", "identity": "id-ann", "at": at("2026-11-26T01:00:00"),
     "intents": ["chase", "urgent"]},
    {"channel": "app", "order_id": "", "identity": "id-cy", "at": at("2026-11-22T06:00:00"), "intents": ["chase"]},
    {"channel": "app", "order_id": "", "identity": "id-dee", "at": at("2026-11-28T06:00:00"), "intents": ["chase"]},
]  # fmt: skip
WORLD: Rows = {
    "orders_current": ORDERS,
    "order_events": EVENTS,
    "modifications": MODIFICATIONS,
    "customer_links": CUSTOMER_LINKS,
    "service_messages": SERVICE_MESSAGES,
}


def write(target: ClickHouseTarget, rows: Rows) -> None:
    client = target.connect()
    for table, table_rows in rows.items():
        for row in table_rows:  # one insert per row: each is a part, as a job's many small batches are
            client.insert(table, [list(row.values())], column_names=list(row))


def replayed(rows: Rows) -> Rows:
    return {table: list(reversed(table_rows)) for table, table_rows in rows.items()}


def migrations_before(version: str, into: Path) -> Path:
    into.mkdir()
    for path in sorted(SQL_DIR.glob("*.sql")):
        if path.name < version:
            shutil.copy(path, into / path.name)
    return into


@pytest.fixture(scope="module", params=["written_twice", "stored_before_the_kpi_migration"])
def world(
    request: pytest.FixtureRequest, clickhouse_server: ClickHouseTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClickHouseTarget]:
    target = dataclasses.replace(clickhouse_server, database=f"analytics_{request.param}")
    if request.param == "written_twice":
        migrate(target, SQL_DIR)
        write(target, WORLD)
        write(target, replayed(WORLD))
    else:
        migrate(target, migrations_before(KPI_MIGRATION, tmp_path_factory.mktemp("sql") / "sql"))
        write(target, WORLD)
        migrate(target, SQL_DIR)
    yield target
    target.connect(database="default").command(f"DROP DATABASE `{target.database}`")


def named_rows(target: ClickHouseTarget, query: str, **parameters: Any) -> list[dict[str, Any]]:
    result = target.connect().query(query, parameters=parameters)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def cookbook(target: ClickHouseTarget, name: str, **parameters: Any) -> list[dict[str, Any]]:
    return named_rows(target, (QUERIES / f"{name}.sql").read_text(encoding="utf-8"), **parameters)


def channel_kpis(target: ClickHouseTarget, since: str, until: str, step_min: int) -> dict[tuple[str, str], Any]:
    query = "SELECT * FROM channel_kpis(since = {since:DateTime}, until = {until:DateTime}, step_min = {step:UInt32})"
    rows = named_rows(target, query, since=since, until=until, step=step_min)
    return {(row["channel"], row["bucket"].strftime("%d %H:%M")): row for row in rows}


def test_channel_kpis_per_minute_count_each_order_and_request_once(world: ClickHouseTarget) -> None:
    kpis = channel_kpis(world, "2026-11-19 00:00:00", "2026-11-27 00:00:00", step_min=1)
    tmall_payments = kpis["tmall", "20 02:00"]  # amounts as the orders tell them, not their paid events
    assert (tmall_payments["orders_purchased"], tmall_payments["gmv_fen"]) == (2, 120_000 + 999_999)
    assert (kpis["pos", "26 08:00"]["orders_purchased"], kpis["pos", "26 08:00"]["gmv_fen"]) == (1, 3_000)
    assert kpis["tmall", "20 01:59"]["orders_created"] == 1
    assert kpis["tmall", "20 03:00"]["orders_cancelled"] == 1
    assert kpis["douyin", "25 10:00"]["orders_with_exception"] == 1
    failed, succeeded = kpis["douyin", "25 03:30"], kpis["douyin", "25 03:31"]
    assert (failed["modifications"], failed["failed_modifications"], failed["modification_failure_rate"]) == (1, 1, 1)
    assert (succeeded["modifications"], succeeded["modification_failure_rate"]) == (1, 0)
    assert kpis["douyin", "25 03:00"]["modification_failure_rate"] is None  # nothing asked for: no rate
    assert kpis["douyin", "25 05:00"]["orders_shipped"] == kpis["douyin", "25 05:07"]["orders_shipped"] == 1


def test_channel_kpis_over_a_range_count_an_order_told_twice_once(world: ClickHouseTarget) -> None:
    [((channel, bucket), hour)] = channel_kpis(world, "2026-11-25 05:00:00", "2026-11-25 06:00:00", 0).items()
    assert (channel, bucket, hour["orders_shipped"]) == ("douyin", "25 05:00", 1)
    day = channel_kpis(world, "2026-11-20 00:00:00", "2026-11-21 00:00:00", 0)
    assert (day["tmall", "20 00:00"]["orders_purchased"], day["tmall", "20 00:00"]["gmv_fen"]) == (2, 1_119_999)


def test_first_update_latency_per_channel_is_measured_once_per_paid_order(world: ClickHouseTarget) -> None:
    rows = cookbook(world, "channel_first_update_latency", since="2026-11-20")
    assert [
        (r["channel"], r["orders_paid"], r["orders_updated"], r["p50_min"], r["over_15_min_rate"]) for r in rows
    ] == [
        ("douyin", 1, 1, 40.0, 1.0),
        ("xiaohongshu", 1, 1, 25.0, 1.0),  # once, from its earliest payment (the 21st in China)
        ("wechat", 1, 1, 20.0, 1.0),
        ("tmall", 2, 1, 10.0, 0.0),  # T1 from its earliest payment; T2 cancelled before any update: not known
        ("app", 2, 1, 5.0, 0.5),  # A1 still waiting: late
    ]
    assert [r["channel"] for r in cookbook(world, "channel_first_update_latency", since="2026-11-22")] == ["douyin"]


def test_carrier_ranking_weighs_each_delivery_once(world: ClickHouseTarget) -> None:
    yto, zto = cookbook(world, "carrier_on_time_ranking", since="2026-11-20")
    # T1 delivered in 24 h, a day early; W1 in 72 h, a day late, counted for zto that it was handed to.
    assert (zto["rank"], zto["carrier"], zto["orders_delivered"], zto["with_promise"]) == (2, "zto", 2, 2)
    assert (zto["delivered_on_time"], zto["on_time_rate"]) == (1, 0.5)
    assert (zto["transit_p50_h"], zto["transit_p90_h"]) == (48.0, 67.2)
    # R1 once, for yto, from its earliest payment to its earliest delivery; N1 named no carrier.
    assert [(yto[k]) for k in ("rank", "carrier", "orders_delivered", "on_time_rate", "transit_p50_h")] == [
        1, "yto", 1, 1.0, 48.0
    ]  # fmt: skip
    assert [r["carrier"] for r in cookbook(world, "carrier_on_time_ranking", since="2026-11-23")] == ["yto", "zto"]
    assert cookbook(world, "carrier_on_time_ranking", since="2026-11-24") == []


def test_where_is_my_order_tells_state_reasons_and_journey(world: ClickHouseTarget) -> None:
    [d1] = cookbook(world, "where_is_my_order", order_id="D1", channel="")
    assert (d1["channel"], d1["status"], d1["health_color"], d1["health_reasons"]) == (
        "douyin", "in_transit", "red", [STUCK]
    )  # fmt: skip
    assert [(when.strftime("%d %H:%M"), status, detail) for when, status, _, detail in d1["milestones"]] == [
        ("25 03:00", "paid", ""),
        ("25 05:00", "shipped", ""),
        ("25 05:07", "shipped", ""),
        ("25 09:00", "in_transit", "Hangzhou hub"),
        ("25 10:00", "exception", "address unclear"),
    ]
    assert cookbook(world, "where_is_my_order", order_id="D1", channel="tmall") == []


def test_journey_keeps_milestones_only_once(world: ClickHouseTarget) -> None:
    [(rows, milestones)] = (
        world.connect().query("SELECT count(), uniqExact(event_id) FROM order_journey FINAL").result_rows
    )
    assert rows == milestones == sum(1 for e in EVENTS if e["status"])


def test_at_risk_by_region_lists_open_orders_worst_first(world: ClickHouseTarget) -> None:
    rows = cookbook(world, "at_risk_by_region")
    assert [(r["region_code"], r["red"], r["yellow"]) for r in rows] == [("310000", 1, 0), ("440300", 0, 1)]
    assert rows[0]["worst"] == [(20, "D1", "douyin", STUCK)]
    assert rows[1]["worst"] == [(60, "A1", "app", FIRST_UPDATE_LATE)]


def test_customer_journey_spans_channels_in_time_order(world: ClickHouseTarget) -> None:
    rows = cookbook(world, "customer_journey", customer_id="c-ann")
    assert [(r["at"].strftime("%d %H:%M"), r["channel"], r["order_id"], r["what"]) for r in rows] == [
        ("20 01:59", "tmall", "T1", "created"),
        ("20 02:00", "tmall", "T1", "paid"),
        ("20 02:00", "tmall", "T1", "paid"),
        ("20 02:10", "tmall", "T1", "allocated"),
        ("21 02:00", "tmall", "T1", "delivered"),
        ("25 03:00", "douyin", "D1", "paid"),
        ("25 03:30", "douyin", "D1", "address_change failed"),
        ("25 03:31", "douyin", "D1", "expedite succeeded"),
        ("25 05:00", "douyin", "D1", "shipped"),
        ("25 05:07", "douyin", "D1", "shipped"),
        ("25 09:00", "douyin", "D1", "in_transit"),
        ("25 10:00", "douyin", "D1", "exception"),
        ("26 01:00", "douyin", "D1", "message"),
    ]
    assert rows[-1]["detail"] == "chase, urgent"


def test_rfm_segments_each_customer_across_channels(world: ClickHouseTarget) -> None:
    rows = cookbook(world, "rfm_segments", as_of="2026-11-30 00:00:00")
    assert [
        (r["customer_id"], r["recency_days"], r["orders"], r["spent_fen"], r["channels"], r["segment"]) for r in rows
    ] == [
        ("c-ann", 5, 2, 125_000, 2, "champion"),
        ("c-bo", 4, 2, 83_000, 2, "champion"),  # the store sale counts, the cancelled order does not
        ("c-cy", 9, 1, 300_000, 1, "one-off"),
        ("c-dee", 12, 1, 200_000, 1, "one-off"),
    ]
    # Customers alike share the higher tier: Ann and Bo by orders, Cy and Dee by orders.
    assert [(r["r"], r["f"], r["m"]) for r in rows] == [(3, 3, 2), (3, 3, 1), (2, 2, 3), (1, 2, 3)]


def test_repurchase_counts_a_second_order_on_another_channel(world: ClickHouseTarget) -> None:
    rows = cookbook(world, "repurchase", since="2026-11-19", until="2026-11-30", within_days=14)
    assert [tuple(r.values()) for r in rows] == [
        ("app", 1, 0, 0.0, 0),
        ("tmall", 1, 1, 1.0, 1),
        ("wechat", 1, 1, 1.0, 1),  # Bo came back in a store
    ]  # Dee's first order (the 18th) is before the period


def test_quiet_after_a_high_priced_first_purchase(world: ClickHouseTarget) -> None:
    rows = cookbook(world, "quiet_after_high_value", min_fen=100_000, quiet_days=7, as_of="2026-11-30 00:00:00")
    # Ann bought again, Dee wrote to service two days ago, Bo's first order was cheaper: only Cy is quiet.
    assert [(r["customer_id"], r["order_id"], r["amount_fen"], r["days_quiet"]) for r in rows] == [
        ("c-cy", "A1", 300_000, 8)
    ]


def test_events_expire_by_day_while_their_milestones_stay(
    clickhouse_server: ClickHouseTarget,
) -> None:
    target = dataclasses.replace(clickhouse_server, database="analytics_retention")
    migrate(target, SQL_DIR)
    keep_events_for(target, 180)
    write(target, {"order_events": [
        event("app", "OLD", "2000-01-01T00:00:00", "paid", "old-paid"),
        event("app", "NEW", datetime.now(UTC).isoformat()[:19], "paid", "new-paid"),
    ]})  # fmt: skip
    client = target.connect()
    client.command(f"OPTIMIZE TABLE {EVENTS_TABLE} FINAL")
    assert client.query(f"SELECT order_id FROM {EVENTS_TABLE}").result_rows == [("NEW",)]
    assert sorted(client.query("SELECT order_id FROM order_journey").result_rows) == [("NEW",), ("OLD",)]
    altered: list[str] = []
    for _ in range(2):  # the same again: no ALTER, which would recompute every part's expiry
        keep_events_for(target, 30, report=altered.append)
    assert "TTL toDateTime(at) + toIntervalDay(30)" in table_engine(target.connect(), EVENTS_TABLE)
    assert altered == [f"{EVENTS_TABLE} keeps 30 days of events from now on"]


def test_events_of_before_are_rebuilt_by_day_and_replayed_into_the_journey(
    clickhouse_server: ClickHouseTarget, tmp_path: Path
) -> None:
    target = dataclasses.replace(clickhouse_server, database="analytics_upgrade")
    migrate(target, migrations_before("013", tmp_path / "sql"))
    client = target.connect()
    client.command(
        f"INSERT INTO {EVENTS_TABLE} SELECT 'app', toString(number % 40), toDateTime64('2026-01-01', 3, 'UTC') "
        "+ toIntervalHour(number * 12), toString(number), ['paid', ''][number % 2 + 1], 'raw.orders.app', '' "
        "FROM numbers(300)"
    )  # 150 days: more partitions than one insert may make by default
    migrate(target, SQL_DIR)
    assert "PARTITION BY toDate(at)" in table_engine(target.connect(), EVENTS_TABLE)
    counts = "SELECT count(), uniqExact(toDate(at)) FROM {table:Identifier} FINAL"
    assert client.query(counts, parameters={"table": EVENTS_TABLE}).result_rows == [(300, 150)]
    assert client.query(counts, parameters={"table": "order_journey"}).result_rows == [(150, 150)]
    client.command(f"DROP DATABASE {target.database}")


def test_orderscope_sql_runs_a_cookbook_file_with_its_parameters(
    world: ClickHouseTarget, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in (("URL", world.url), ("PASSWORD", world.password), ("DATABASE", world.database)):
        monkeypatch.setenv(f"ORDERSCOPE_CLICKHOUSE_{name}", value)
    query = str(QUERIES / "carrier_on_time_ranking.sql")
    assert cli.main(["sql", query, "--param", "since=2026-11-20", "--format", "JSONEachRow"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(row["carrier"], row["on_time_rate"]) for row in rows] == [("yto", 1.0), ("zto", 0.5)]
    assert cli.main(["sql", query, "--param", "since"]) == 1
    assert "write it as name=value" in capsys.readouterr().out
