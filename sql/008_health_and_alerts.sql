-- Order health and alerts (schemas/health.py, schemas/alerts.py, schemas/health.yaml).
--
-- orders_current gains each order's latest health: a score 0-100, its colour, the
-- reasons in words, the event time it was assessed at and the configuration
-- version that scored it (R16). The row version orders assessments too, so a
-- later assessment of the same facts (an order that went quiet) wins.
ALTER TABLE orders_current
    ADD COLUMN IF NOT EXISTS health_score   Nullable(UInt8),
    ADD COLUMN IF NOT EXISTS health_color   Nullable(Enum8('green' = 1, 'yellow' = 2, 'red' = 3)),
    ADD COLUMN IF NOT EXISTS health_reasons Array(String),
    ADD COLUMN IF NOT EXISTS health_at      Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS health_config  LowCardinality(String);

-- The view's column list is fixed when it is created: made again to show the new columns.
CREATE OR REPLACE VIEW orders AS
SELECT * FROM orders_current FINAL;

-- order_health_history: every change of an order's health, at the event time
-- that caused it (an event, or the moment a step became overdue), so that any
-- past score can be explained. An assessment written twice (a restore) is one
-- row under FINAL; keyed by order first, the history of one order is one range.
CREATE TABLE IF NOT EXISTS order_health_history
(
    channel        LowCardinality(String),
    order_id       String,
    health_score   UInt8,
    health_color   Enum8('green' = 1, 'yellow' = 2, 'red' = 3),
    health_reasons Array(String),
    health_at      DateTime64(3, 'UTC'),
    health_config  LowCardinality(String)
)
ENGINE = ReplacingMergeTree
ORDER BY (channel, order_id, health_at);

-- alerts: one row per incident (an order, the factor that raised it, when it
-- opened) under FINAL: ReplacingMergeTree(revision) keeps its latest lifecycle
-- step, so `resolved_at IS NULL` lists what is open now. Every step also goes to
-- the Kafka topic orderscope.alerts, with idempotency key incident_key#revision.
CREATE TABLE IF NOT EXISTS alerts
(
    alert_id       String,                     -- hash of incident_key
    incident_key   String,                     -- channel|order_id|alert_type|opened_at (ms)
    alert_type     LowCardinality(String),     -- the health factor, e.g. no_pickup
    severity       Enum8('yellow' = 1, 'red' = 2),
    channel        LowCardinality(String),
    order_id       String,
    opened_at      DateTime64(3, 'UTC'),       -- event time it was found at
    resolved_at    Nullable(DateTime64(3, 'UTC')),
    reason         String,                     -- in words, as a support agent reads it
    rule_id        LowCardinality(String),     -- health.<factor>
    config_version LowCardinality(String),     -- schemas/health.yaml's version
    revision       UInt32,                     -- 1 when opened, +1 per later step
    step           LowCardinality(String),     -- the latest: opened, updated, resolved or expired (order left state)
    updated_at     DateTime64(3, 'UTC')        -- event time of the latest step
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY incident_key;

-- Event time is tracked per partition of each raw topic since health reads it
-- (schemas/event_time.py, split_of): one partition read ahead of the others must
-- not make their events late.
ALTER TABLE event_time
    COMMENT COLUMN source 'a raw topic''s partition (raw.wms/0), or ''*'' for the operator''s combined watermark';
