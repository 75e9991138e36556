-- order_events: every order's journey, one row per fact a source told about it
-- (channel events, warehouse steps, each carrier scan), in event time. A fact
-- told twice (a repeated push, a replay) has the same event_id and shows once
-- under FINAL.
CREATE TABLE IF NOT EXISTS order_events
(
    channel   LowCardinality(String),
    order_id  String,
    at        DateTime64(3, 'UTC'),
    event_id  String,                          -- deterministic hash of the fact
    status    LowCardinality(String),          -- canonical status, or '' for a step that changes none
    source    LowCardinality(String),          -- the raw topic it came from
    detail    String                           -- e.g. the scan's location
)
ENGINE = ReplacingMergeTree
ORDER BY (channel, order_id, at, event_id);
