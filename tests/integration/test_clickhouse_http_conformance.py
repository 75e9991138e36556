"""The embedded server speaks ClickHouse's HTTP interface: clickhouse-connect drives it unchanged.

Each test names one behaviour of a ClickHouse server that a client relies on.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from connectors.clickhouse import ClickHouseTarget
from tests.conftest import PASSWORD

pytestmark = pytest.mark.integration

COMPRESSIONS = [False, True, "lz4", "zstd", "gzip"]


@pytest.fixture(params=COMPRESSIONS, ids=lambda c: f"compress={c}")
def client(request: pytest.FixtureRequest, clickhouse_server: ClickHouseTarget) -> Iterator[Client]:
    connection = clickhouse_server.connect(compress=request.param)
    yield connection
    connection.close()


@pytest.fixture
def table(client: Client) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    client.command(
        f"CREATE TABLE {name} (id UInt64, big Int64, name String, at DateTime64(3, 'UTC'), "
        "price Decimal(18, 2), score Nullable(Float64), tags Array(String)) ENGINE = MergeTree ORDER BY id"
    )
    yield name
    client.command(f"DROP TABLE {name}")


ROWS = [
    [1, 3910028811452201538, "杭州 'quoted' \t tab", datetime(2026, 11, 21, 2, 0, 2, tzinfo=UTC), Decimal("259.00"),
     None, ["a", "b"]],
    [2, -(2**63), "", datetime(2026, 11, 22, 8, 2, 40, 123000, tzinfo=UTC), Decimal("0.01"), 1.5, []],
]  # fmt: skip
COLUMNS = ["id", "big", "name", "at", "price", "score", "tags"]


def test_insert_rows_and_query_them_back_exactly(client: Client, table: str) -> None:
    summary = client.insert(table, ROWS, column_names=COLUMNS)
    assert summary.written_rows == 2
    rows = client.query(f"SELECT * FROM {table} ORDER BY id", settings={"session_timezone": "UTC"}).result_rows
    # clickhouse-connect returns UTC columns as naive datetimes (its tz handling, not the server's)
    assert [[*row[:3], row[3].replace(tzinfo=UTC), *row[4:]] for row in rows] == ROWS


def test_insert_df_and_query_df_round_trip(client: Client, table: str) -> None:
    frame = pd.DataFrame(
        {"id": [7], "big": [2**62], "name": ["x"], "at": [pd.Timestamp("2026-01-01", tz="UTC")],
         "price": [Decimal("1.25")], "score": [2.5], "tags": [["t"]]}
    )  # fmt: skip
    client.insert_df(table, frame)
    result = client.query_df(f"SELECT id, big, name, score FROM {table}")
    assert result.to_dict("records") == [{"id": 7, "big": 2**62, "name": "x", "score": 2.5}]


def test_insert_arrow_and_query_arrow_round_trip(client: Client, table: str) -> None:
    batch = pa.table({"id": pa.array([1, 2, 3], pa.uint64()), "name": ["a", "b", "c"]})
    client.insert_arrow(table, batch)
    result = client.query_arrow(f"SELECT id, name FROM {table} ORDER BY id")
    assert result.column("name").to_pylist() == ["a", "b", "c"]


def test_streaming_query_delivers_every_block(client: Client) -> None:
    with client.query_row_block_stream("SELECT number FROM numbers(200000)") as stream:
        assert sum(row[0] for block in stream for row in block) == sum(range(200000))


def test_raw_query_passes_any_output_format_through(client: Client) -> None:
    assert client.raw_query("SELECT 1 AS one, 'x' AS s", fmt="JSONEachRow") == b'{"one":1,"s":"x"}\n'
    assert client.raw_query("SELECT 1, 'x'", fmt="TSV") == b"1\tx\n"


def test_server_side_and_client_side_parameters_bind(client: Client) -> None:
    assert client.query("SELECT {n:UInt64} * 2", parameters={"n": 21}).result_rows == [(42,)]
    assert client.query("SELECT %(s)s", parameters={"s": "it's"}).result_rows == [("it's",)]


def test_settings_apply_to_one_query_only(client: Client) -> None:
    setting = "SELECT value FROM system.settings WHERE name = 'max_block_size'"
    assert client.query(setting, settings={"max_block_size": 1234}).result_rows == [("1234",)]
    assert client.query(setting).result_rows != [("1234",)]


def test_session_keeps_set_statements_between_requests(clickhouse_server: ClickHouseTarget) -> None:
    session = clickhouse_server.connect(session_id=str(uuid.uuid4()))
    other = clickhouse_server.connect(session_id=str(uuid.uuid4()))
    session.command("SET max_block_size = 4321")
    setting = "SELECT value FROM system.settings WHERE name = 'max_block_size'"
    assert str(session.command(setting)) == "4321"
    assert str(other.command(setting)) != "4321"


def test_database_parameter_scopes_unqualified_names(clickhouse_server: ClickHouseTarget) -> None:
    admin = clickhouse_server.connect()
    admin.command("CREATE DATABASE IF NOT EXISTS conformance_db")
    scoped = clickhouse_server.connect(database="conformance_db")
    assert scoped.command("SELECT currentDatabase()") == "conformance_db"
    assert admin.command("SELECT currentDatabase()") == "default"


def test_unknown_table_is_a_404_with_clickhouse_error_text(client: Client) -> None:
    with pytest.raises(DatabaseError, match=r"Code: 60\. DB::Exception: .*UNKNOWN_TABLE"):
        client.query("SELECT * FROM no_such_table")


def http(
    target: ClickHouseTarget, query: str, *, method: str = "POST", password: str = PASSWORD
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        f"{target.url}/?user=default&password={password}",
        data=query.encode() if method == "POST" else None,
        method=method,
    )
    if method == "GET":
        request.full_url += "&query=" + urllib.request.quote(query)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("SELECT * FROM no_such_table", 404, "60"),
        ("SELEC 1", 400, "62"),
        ("SELECT no_such_function(1)", 404, "46"),
        ("SELECT 1 SETTINGS no_such_setting = 1", 404, "115"),
    ],
    ids=["unknown-table", "syntax", "unknown-function", "unknown-setting"],
)
def test_errors_carry_http_status_and_exception_code_header(
    clickhouse_server: ClickHouseTarget, query: str, status: int, code: str
) -> None:
    got_status, headers, body = http(clickhouse_server, query)
    assert (got_status, headers["X-ClickHouse-Exception-Code"]) == (status, code)
    assert body.startswith(f"Code: {code}. DB::Exception:".encode())


def test_wrong_password_is_refused(clickhouse_server: ClickHouseTarget) -> None:
    status, headers, body = http(clickhouse_server, "SELECT 1", password="wrong")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "516")
    assert b"Authentication failed" in body


def test_get_is_read_only(clickhouse_server: ClickHouseTarget) -> None:
    assert http(clickhouse_server, "SELECT 2", method="GET")[2] == b"2\n"
    status, headers, _ = http(clickhouse_server, "CREATE TABLE g (x UInt8) ENGINE = Memory", method="GET")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (500, "164")


def test_insert_with_inline_data_in_the_body(clickhouse_server: ClickHouseTarget) -> None:
    http(clickhouse_server, "CREATE TABLE inline_data (a UInt8, b String) ENGINE = MergeTree ORDER BY a")
    http(clickhouse_server, "INSERT INTO inline_data FORMAT CSV\n1,one\n2,two\n")
    http(clickhouse_server, "INSERT INTO inline_data VALUES (3, 'three')")
    status, headers, body = http(clickhouse_server, "SELECT a, b FROM inline_data ORDER BY a FORMAT JSONEachRow")
    assert status == 200
    assert headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert [json.loads(line)["b"] for line in body.splitlines()] == ["one", "two", "three"]


def test_ping_and_query_id_echo(clickhouse_server: ClickHouseTarget) -> None:
    with urllib.request.urlopen(f"{clickhouse_server.url}/ping", timeout=5) as response:
        assert response.read() == b"Ok.\n"
    client = clickhouse_server.connect()
    query_id = str(uuid.uuid4())
    result = client.query("SELECT 1", settings={"query_id": query_id})
    assert result.query_id == query_id
