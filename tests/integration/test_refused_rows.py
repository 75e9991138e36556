"""A row ClickHouse refuses for its content becomes a dead letter and the rest of its batch is
written; ClickHouse out of reach is still retried and then raised, never taken for bad rows."""

from __future__ import annotations

import dataclasses

import pytest

from connectors.clickhouse import BatchWriter, ClickHouseTarget, migrate
from connectors.local.process import free_ports
from jobs.cli import SQL_DIR
from jobs.sink import TableWriters
from schemas.tables import MODIFICATIONS, REFUSED_ROWS_TOPIC

pytestmark = pytest.mark.integration

AT = 1795190648000
GOOD = [("tmall", "1", AT, "address_change", True, ""), ("tmall", "2", AT, "expedite", False, "TIMEOUT")]
BEYOND_INT64 = ("tmall", "3", 10**30, "expedite", True, "")  # a time no DateTime64 can hold


@pytest.fixture(scope="module")
def migrated(clickhouse_server: ClickHouseTarget) -> ClickHouseTarget:
    target = dataclasses.replace(clickhouse_server, database="refused_rows")
    migrate(target, SQL_DIR, report=print)
    return target


def test_a_refused_row_is_a_dead_letter_and_the_rest_of_its_batch_is_written(migrated: ClickHouseTarget) -> None:
    writers = TableWriters(migrated)
    batch = [GOOD[0], BEYOND_INT64, GOOD[1]]

    assert writers.write({MODIFICATIONS.name: batch}, now_ms=AT) == 1
    assert writers.write({MODIFICATIONS.name: batch}, now_ms=AT) == 1  # a restore writes the batch again

    client = migrated.connect()
    written = client.query("SELECT order_id FROM modifications FINAL ORDER BY order_id").result_rows
    assert written == [("1",), ("2",)]
    letters = client.query("SELECT source_topic, reason, raw, detail FROM dead_letters FINAL").result_rows
    assert len(letters) == 1
    topic, reason, raw, detail = letters[0]
    assert (topic, reason) == (REFUSED_ROWS_TOPIC, "refused_by_clickhouse")
    assert '"table": "modifications"' in raw and "column `at`" in detail


def test_clickhouse_out_of_reach_is_retried_then_raised_not_taken_for_bad_rows() -> None:
    [closed_port] = free_ports(1)
    writer = BatchWriter(
        ClickHouseTarget(f"http://127.0.0.1:{closed_port}"),
        MODIFICATIONS.name,
        MODIFICATIONS.column_names,
        MODIFICATIONS.column_types,
        give_up_after_s=1.0,
    )
    with pytest.raises(RuntimeError, match=r"writing 2 rows to modifications failed"):
        writer.write(GOOD)
