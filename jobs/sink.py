"""Writing rows of every table, the job's and the baseline's way: one insert per table per flush."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from connectors.clickhouse import BatchWriter, ClickHouseTarget, RefusedRow
from schemas.tables import DEAD_LETTERS, TABLES, Row, refused_row_letter

log = logging.getLogger(__name__)


class TableWriters:
    """A BatchWriter per table (schemas/tables.py). Rows ClickHouse refuses for their content become
    dead letters and the rest of their batch is written; an outage is retried, then raised."""

    def __init__(self, target: ClickHouseTarget) -> None:
        self._writers = {t.name: BatchWriter(target, t.name, t.column_names, t.column_types) for t in TABLES.values()}

    def write(self, rows: Mapping[str, Sequence[Row]], now_ms: int) -> int:
        """Write the rows of each table; returns how many were refused (and kept as dead letters)."""
        refused = [
            r for table, table_rows in rows.items() if table_rows for r in self._writers[table].write(table_rows)
        ]
        if refused:
            self._dead_letter(refused, now_ms)
        return len(refused)

    def _dead_letter(self, refused: list[RefusedRow], now_ms: int) -> None:
        for row in refused:
            log.error("ClickHouse refused a row of %s (%s); it is kept in dead_letters", row.table, row.error[:200])
        letters = [DEAD_LETTERS.row(refused_row_letter(r.table, r.row, r.error, now_ms)) for r in refused]
        if still := self._writers[DEAD_LETTERS.name].write(letters):
            raise RuntimeError(f"the dead letters of refused rows were refused too: {still[0].error}")

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
