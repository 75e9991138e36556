"""docs/data-dictionary.md names every table, view and column the migrations create."""

from __future__ import annotations

import dataclasses
import re

import pytest

from connectors.clickhouse import ClickHouseTarget, migrate
from jobs.cli import SQL_DIR
from jobs.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

DICTIONARY = PROJECT_ROOT / "docs" / "data-dictionary.md"


def sections() -> dict[str, str]:
    """Each '### ' section's text, by each name its heading gives in backquotes."""
    parts = re.split(r"^### (.*)$", DICTIONARY.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {
        name: text
        for heading, text in zip(parts[1::2], parts[2::2], strict=True)
        for name in re.findall(r"`(\w+)", heading)
    }


def test_every_table_view_and_column_is_described(clickhouse_server: ClickHouseTarget) -> None:
    target = dataclasses.replace(clickhouse_server, database="data_dictionary")
    migrate(target, SQL_DIR)
    client = target.connect()
    tables = client.query(
        "SELECT name, engine FROM system.tables WHERE database = currentDatabase() ORDER BY name"
    ).result_rows
    described, text = sections(), DICTIONARY.read_text(encoding="utf-8")
    feeds = [name for name, engine in tables if engine == "MaterializedView"]
    assert feeds and [name for name in feeds if f"`{name}`" not in text] == []
    missing: list[str] = []
    invented: list[str] = []
    for name, engine in tables:
        if engine == "MaterializedView":
            continue
        columns = client.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {table:String}",
            parameters={"table": name},
        ).result_rows
        section = described.get(name)
        if section is None:
            missing.append(name)
            continue
        missing += [f"{name}.{column}" for (column,) in columns if f"`{column}`" not in section]
        if columns:  # a parameterized view's columns are not in system.columns
            named = {column for (column,) in columns}
            invented += [f"{name}.{row}" for row in _table_rows(section) if row not in named]
    assert missing == []
    assert invented == []


def _table_rows(section: str) -> list[str]:
    """The names a section's table describes: the backquoted names in each row's first cell."""
    return [
        name for cell in re.findall(r"^\| ([^|]+) \|", section, re.MULTILINE) for name in re.findall(r"`(\w+)`", cell)
    ]
