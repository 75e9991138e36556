"""Which write errors are the rows' fault (split the batch, dead-letter the row) and which are an
outage (retry, then fail the task so Flink restores the batch)."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

from connectors.clickhouse import is_content_error


@pytest.mark.parametrize(
    ("error", "content"),
    [
        (DataError("Unable to create native array for column `at`"), True),
        (TypeError("int() argument must be a string"), True),
        (OverflowError("int too big to convert"), True),
        (DatabaseError("Cannot parse input", code=27), True),
        (DatabaseError("Value out of range", code=321), True),
        (DatabaseError("Too many parts", code=252), False),
        (DatabaseError("Memory limit exceeded", code=241), False),
        (DatabaseError("HTTP 502", code=None), False),
        (OperationalError("Error HTTPConnectionPool: connection refused"), False),
        (ConnectionResetError("reset by peer"), False),
        (RuntimeError("a bug of ours"), False),
        (KeyError("column"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_only_errors_about_the_rows_are_taken_for_bad_rows(error: Exception, content: bool) -> None:
    assert is_content_error(error) is content
