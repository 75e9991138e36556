-- orders_current: the latest known state of every order, one row per
-- (channel, order_id) when read with FINAL (or through the `orders` view).
-- The job writes a new row version each time an order's state changes and may
-- write a version twice after a restart; ReplacingMergeTree(version) keeps the
-- highest, so replays and retries never show an order twice.
CREATE TABLE IF NOT EXISTS orders_current
(
    channel      LowCardinality(String),
    order_id     String,                       -- exactly as the channel sent it
    customer_id  String,                       -- keyed pseudonym, never a clear identifier
    status       LowCardinality(String),       -- canonical status (schemas/lifecycle.py)
    status_at    DateTime64(3, 'UTC'),         -- when the order entered that status
    updated_at   DateTime64(3, 'UTC'),         -- time of the latest event about the order
    waybills     Array(String),
    amount_fen   Nullable(Int64),
    region_code  Nullable(String),
    promised_at  Nullable(DateTime64(3, 'UTC')),
    version      UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (channel, order_id);

-- What analysts and dashboards read: one row per order, duplicates resolved.
CREATE VIEW IF NOT EXISTS orders AS
SELECT * FROM orders_current FINAL;
