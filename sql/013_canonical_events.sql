-- Canonical events by day, and the milestones of each order in orders_current (R11, R13).
--
-- order_events becomes the canonical event log: every fact a source told about an
-- order, with the canonical fields analysts group by (amount, destination region,
-- carrier; '' where the event told none). It is partitioned by day of event time
-- so that a retention limit drops whole days (ttl_only_drop_parts): `orderscope db
-- migrate` sets its TTL from ORDERSCOPE_EVENTS_TTL_DAYS. ReplacingMergeTree on the
-- fact's identity, as before; a fact told twice has one event time, so its copies
-- share a partition. A replay may span more than 100 days: inserts lift ClickHouse's
-- limit of partitions per insert (connectors/clickhouse.py, and below).
--
-- ClickHouse cannot change a table's partition key in place: a new table is filled
-- from the old one, then swapped in. Run it before the job starts (`make run` and
-- `db migrate` do): rows written during the copy would stay behind. A failed run can
-- be run again: it starts by dropping what it left (before the swap, a partial copy;
-- after it, the old table, already copied).
DROP TABLE IF EXISTS order_events_by_day;

CREATE TABLE order_events_by_day
(
    channel     LowCardinality(String),
    order_id    String,
    at          DateTime64(3, 'UTC'),
    event_id    String,                        -- deterministic hash of the fact
    status      LowCardinality(String),        -- canonical status, or '' for a step that changes none
    source      LowCardinality(String),        -- the raw topic it came from
    detail      String,                        -- e.g. the scan's location
    amount_fen  Nullable(Int64),
    region_code LowCardinality(String),
    carrier     LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(at)
ORDER BY (channel, order_id, at, event_id)
SETTINGS ttl_only_drop_parts = 1;

INSERT INTO order_events_by_day (channel, order_id, at, event_id, status, source, detail)
SETTINGS max_partitions_per_insert_block = 0
SELECT channel, order_id, at, event_id, status, source, detail FROM order_events;

EXCHANGE TABLES order_events AND order_events_by_day;

DROP TABLE order_events_by_day;

-- orders_current gains the carrier of the order's parcel (from warehouse and carrier
-- scans; '' until one tells it) and the event times of the milestones KPIs measure,
-- each the first time the step was reached: payment (as told: a POS sale tells
-- none), purchase (payment, or for a sale that told none, its first later step),
-- the first logistics update after payment (the first later step: the seeds' 15
-- minutes; NULL unless payment was told), and delivery. Orders last written before
-- this migration have none of them until the job writes them again.
ALTER TABLE orders_current
    ADD COLUMN IF NOT EXISTS carrier         LowCardinality(String),
    ADD COLUMN IF NOT EXISTS paid_at         Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS purchased_at    Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS first_update_at Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS delivered_at    Nullable(DateTime64(3, 'UTC'));

CREATE OR REPLACE VIEW orders AS
SELECT * FROM orders_current FINAL;
