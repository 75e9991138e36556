-- operator_stats: where the job spends its time, as each Python operator instance
-- measures it: calls (micro-batches), items handled, and seconds spent in Python
-- (for the writer: in ClickHouse inserts), cumulative since the instance opened.
-- Reported every few seconds; one row per operator instance under FINAL.
-- `make bench` reads it for its per-record cost breakdown.
CREATE TABLE IF NOT EXISTS operator_stats
(
    operator    LowCardinality(String),        -- e.g. normalize-0, track orders-1, clickhouse writer-0
    calls       UInt64,
    items       UInt64,                        -- raw records, events or rows, whichever the operator takes
    busy_s      Float64,
    updated_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY operator;
