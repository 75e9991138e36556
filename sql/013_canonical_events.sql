-- Canonical events by day, and the milestones of each order in orders_current (R11, R13).
--
-- order_events becomes the canonical event log: every fact a source told about an
-- order, with the canonical fields analysts group by (amount, destination region,
-- carrier; '' where the event told none). It is partitioned by day of event time
-- so that a retention limit drops whole days: `orderscope db migrate` sets its TTL
-- from ORDERSCOPE_EVENTS_TTL_DAYS. ReplacingMergeTree on the fact's identity, as
-- before; a fact told twice has one event time, so its copies share a partition.
--
-- ClickHouse cannot change a table's partition key in place: the table is built
-- anew, filled from the old one and swapped in (run it before the job starts;
-- rows written during the copy would stay in the old table, which is dropped).
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
ORDER BY (channel, order_id, at, event_id);

INSERT INTO order_events_by_day (channel, order_id, at, event_id, status, source, detail)
SELECT channel, order_id, at, event_id, status, source, detail FROM order_events;

EXCHANGE TABLES order_events AND order_events_by_day;

DROP TABLE order_events_by_day;

-- orders_current gains the carrier of the order's parcel (from warehouse and carrier
-- scans; '' until one tells it) and the event times of the milestones KPIs measure:
-- payment, the first logistics update after it (the first step past payment: the
-- seeds' 15 minutes), and delivery. Each is the first time the step was reached,
-- so it never moves once told, whatever arrives later (except an earlier fact).
ALTER TABLE orders_current
    ADD COLUMN IF NOT EXISTS carrier         LowCardinality(String),
    ADD COLUMN IF NOT EXISTS paid_at         Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS first_update_at Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS delivered_at    Nullable(DateTime64(3, 'UTC'));

CREATE OR REPLACE VIEW orders AS
SELECT * FROM orders_current FINAL;
