-- event_time: how far event time has progressed, per operator instance and source
-- (raw topic), as the job's own clock tracks it (schemas/event_time.py). The
-- watermark is the newest event time seen minus the allowed out-of-orderness; a
-- source quiet for longer than the idleness timeout is marked idle and holds no
-- one back. One row per (operator, source) under FINAL: the newest report wins.
CREATE TABLE IF NOT EXISTS event_time
(
    operator     LowCardinality(String),       -- e.g. normalize-0: the operator and its subtask
    source       LowCardinality(String),       -- a raw topic, or '*' for the operator's combined watermark
    max_event_at DateTime64(3, 'UTC'),
    watermark    DateTime64(3, 'UTC'),
    idle         Bool,
    updated_at   DateTime64(3, 'UTC')          -- processing time of the report
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (operator, source);
