"""The tables the job writes, as declared in schemas/tables.py, are the tables the migrations create."""

from __future__ import annotations

import dataclasses

import pytest

from connectors.clickhouse import ClickHouseTarget, migrate
from jobs.cli import SQL_DIR
from schemas.tables import TABLES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def migrated(clickhouse_server: ClickHouseTarget) -> ClickHouseTarget:
    target = dataclasses.replace(clickhouse_server, database="tables_match_schema")
    migrate(target, SQL_DIR, report=print)
    return target


@pytest.mark.parametrize("name", sorted(TABLES))
def test_declared_columns_and_types_are_the_migrated_ones_in_order(migrated: ClickHouseTarget, name: str) -> None:
    described = migrated.connect().query(f"DESCRIBE TABLE {name}").result_rows
    assert [(column, kind) for column, kind, *_ in described] == list(TABLES[name].columns)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_declared_identity_is_the_tables_sorting_key(migrated: ClickHouseTarget, name: str) -> None:
    [(sorting_key,)] = (
        migrated.connect()
        .query(
            "SELECT sorting_key FROM system.tables WHERE database = currentDatabase() AND name = {name:String}",
            parameters={"name": name},
        )
        .result_rows
    )
    assert tuple(part.strip() for part in sorting_key.split(",")) == TABLES[name].identity
