-- Journeys kept for good, KPI tables fed by materialized views, and the views
-- dashboards read (R3, R11, R13). docs/data-dictionary.md names every column.
--
-- Replays: the job writes a row again after a restore, and a source may tell a fact
-- twice. A materialized view sees every insert, so each KPI table keeps only what a
-- repeated row cannot change: sets of order keys (uniqExact), a per-order map
-- (maxMap keyed by order id), or one row per order whose values merge by min or max.
-- A replayed row adds nothing, before or after merges. The last statements of this
-- file feed the tables by replaying what is already stored, the same way.

-- order_journey: every milestone (an event that tells a lifecycle status) of every
-- order, with no retention limit: what journeys, RFM and repurchase questions read
-- once the canonical events have expired. A milestone told twice is one row under
-- FINAL (or LIMIT 1 BY event_id). Keyed by order: one order's journey is one range.
CREATE TABLE IF NOT EXISTS order_journey
(
    channel     LowCardinality(String),
    order_id    String,
    at          DateTime64(3, 'UTC'),
    event_id    String,
    status      LowCardinality(String),
    source      LowCardinality(String),
    detail      String,
    amount_fen  Nullable(Int64),
    carrier     LowCardinality(String)
)
ENGINE = ReplacingMergeTree
ORDER BY (channel, order_id, at, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS order_journey_feed TO order_journey AS
SELECT channel, order_id, at, event_id, status, source, detail, amount_fen, carrier
FROM order_events
WHERE status != '';

-- kpi_channel_minute: per channel and minute of event time, the orders that reached
-- each step in that minute, what was paid (order id -> amount), and the order
-- modifications requested and failed. Ordered by minute first: dashboards read the
-- latest minutes of every channel.
CREATE TABLE IF NOT EXISTS kpi_channel_minute
(
    minute               DateTime('UTC'),
    channel              LowCardinality(String),
    created              AggregateFunction(uniqExact, String),
    paid                 AggregateFunction(uniqExact, String),
    paid_fen             AggregateFunction(maxMap, Array(String), Array(Int64)),
    shipped              AggregateFunction(uniqExact, String),
    delivered            AggregateFunction(uniqExact, String),
    exceptions           AggregateFunction(uniqExact, String),
    cancelled            AggregateFunction(uniqExact, String),
    modifications        AggregateFunction(uniqExact, Tuple(String, DateTime64(3, 'UTC'), String)),
    failed_modifications AggregateFunction(uniqExact, Tuple(String, DateTime64(3, 'UTC'), String))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, channel);

CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_channel_minute_events TO kpi_channel_minute AS
SELECT
    toStartOfMinute(at) AS minute,
    channel,
    uniqExactIfState(order_id, status = 'created') AS created,
    uniqExactIfState(order_id, status = 'paid') AS paid,
    maxMapStateIf([order_id], [assumeNotNull(amount_fen)], status = 'paid' AND amount_fen IS NOT NULL) AS paid_fen,
    uniqExactIfState(order_id, status = 'shipped') AS shipped,
    uniqExactIfState(order_id, status = 'delivered') AS delivered,
    uniqExactIfState(order_id, status = 'exception') AS exceptions,
    uniqExactIfState(order_id, status = 'cancelled') AS cancelled
FROM order_events
WHERE status != ''
GROUP BY minute, channel;

CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_channel_minute_modifications TO kpi_channel_minute AS
SELECT
    toStartOfMinute(at) AS minute,
    channel,
    uniqExactState((order_id, at, kind)) AS modifications,
    uniqExactIfState((order_id, at, kind), NOT succeeded) AS failed_modifications
FROM modifications
GROUP BY minute, channel;

-- kpi_channel_day: per channel and day of payment (China time, the business's day),
-- one row per paid order (order_key: cityHash64(channel, order_id)) with the seconds
-- from payment to its first logistics update, NULL until there is one. Rows of the
-- same order merge into one keeping the least (an earlier fact read late lowers it);
-- read with FINAL, which merges what is not merged yet. A per-order grain keeps exact
-- percentiles cheap: the 7-day range is a range of the primary key.
CREATE TABLE IF NOT EXISTS kpi_channel_day
(
    day            Date,
    channel        LowCardinality(String),
    order_key      UInt64,
    first_update_s SimpleAggregateFunction(min, Nullable(Int64))
)
ENGINE = AggregatingMergeTree
ORDER BY (day, channel, order_key);

CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_channel_day_feed TO kpi_channel_day AS
SELECT
    toDate(assumeNotNull(paid_at), 'Asia/Shanghai') AS day,
    channel,
    cityHash64(channel, order_id) AS order_key,
    if(first_update_at IS NULL, NULL, dateDiff('second', assumeNotNull(paid_at), assumeNotNull(first_update_at)))
        AS first_update_s
FROM orders_current
WHERE paid_at IS NOT NULL;

-- kpi_carrier_day: per carrier and day of delivery (China time), one row per
-- delivered order: whether it had a promise, whether it was delivered by it, and
-- the hours from payment to delivery (NULL if its payment was never told).
CREATE TABLE IF NOT EXISTS kpi_carrier_day
(
    day       Date,
    carrier   LowCardinality(String),
    order_key UInt64,
    promised  SimpleAggregateFunction(max, UInt8),
    on_time   SimpleAggregateFunction(max, UInt8),
    transit_h SimpleAggregateFunction(min, Nullable(Float64))
)
ENGINE = AggregatingMergeTree
ORDER BY (day, carrier, order_key);

CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_carrier_day_feed TO kpi_carrier_day AS
SELECT
    toDate(assumeNotNull(delivered_at), 'Asia/Shanghai') AS day,
    carrier,
    cityHash64(channel, order_id) AS order_key,
    toUInt8(promised_at IS NOT NULL) AS promised,
    toUInt8(ifNull(delivered_at <= promised_at, 0)) AS on_time,
    if(paid_at IS NULL, NULL, dateDiff('second', assumeNotNull(paid_at), assumeNotNull(delivered_at)) / 3600)
        AS transit_h
FROM orders_current
WHERE delivered_at IS NOT NULL AND carrier != '';

-- What dashboards read. Rates are NULL where nothing was there to measure.
CREATE VIEW IF NOT EXISTS channel_kpis_per_minute AS
SELECT
    minute,
    channel,
    uniqExactMerge(created) AS orders_created,
    uniqExactMerge(paid) AS orders_paid,
    arraySum(maxMapMerge(paid_fen).2) AS gmv_fen,
    uniqExactMerge(shipped) AS orders_shipped,
    uniqExactMerge(delivered) AS orders_delivered,
    uniqExactMerge(exceptions) AS orders_with_exception,
    uniqExactMerge(cancelled) AS orders_cancelled,
    uniqExactMerge(modifications) AS modifications,
    uniqExactMerge(failed_modifications) AS failed_modifications,
    round(failed_modifications / nullIf(modifications, 0), 4) AS modification_failure_rate
FROM kpi_channel_minute
GROUP BY minute, channel;

-- Payment to first logistics update per channel, for payments since a day:
-- SELECT * FROM channel_first_update(since = '2026-11-20').
CREATE VIEW IF NOT EXISTS channel_first_update AS
SELECT
    channel,
    count() AS orders_paid,
    count(first_update_s) AS orders_updated,
    round(quantileExactInclusive(0.5)(first_update_s) / 60, 1) AS p50_min,
    round(quantileExactInclusive(0.95)(first_update_s) / 60, 1) AS p95_min,
    round(countIf(first_update_s > 15 * 60) / nullIf(orders_updated, 0), 4) AS over_15_min_rate
FROM kpi_channel_day FINAL
WHERE day >= {since:Date}
GROUP BY channel;

-- The carrier scorecard, for deliveries since a day:
-- SELECT * FROM carrier_scorecard(since = '2026-11-20').
CREATE VIEW IF NOT EXISTS carrier_scorecard AS
SELECT
    carrier,
    count() AS orders_delivered,
    sum(promised) AS with_promise,
    sum(on_time) AS delivered_on_time,
    round(delivered_on_time / nullIf(with_promise, 0), 4) AS on_time_rate,
    round(quantileExactInclusive(0.5)(transit_h), 1) AS transit_p50_h,
    round(quantileExactInclusive(0.9)(transit_h), 1) AS transit_p90_h
FROM kpi_carrier_day FINAL
WHERE day >= {since:Date}
GROUP BY carrier;

-- Open orders whose health is yellow or red, most at risk first, with the reasons a
-- support agent reads. FINAL: one row per order, its newest version.
CREATE VIEW IF NOT EXISTS at_risk_orders AS
SELECT
    channel, order_id, status, health_color, health_score, health_reasons, health_at,
    region_code, carrier, promised_at, eta, eta_p90, promise_at_risk, customer_id
FROM orders_current FINAL
WHERE health_color IN ('yellow', 'red')
  AND status NOT IN ('delivered', 'completed', 'cancelled', 'returned')
ORDER BY health_score, promise_at_risk DESC;

-- Orders at risk per destination region right now.
CREATE VIEW IF NOT EXISTS at_risk_by_region AS
SELECT
    ifNull(region_code, '') AS region_code,
    countIf(health_color = 'red') AS red,
    countIf(health_color = 'yellow') AS yellow,
    min(health_score) AS lowest_score
FROM at_risk_orders
GROUP BY region_code
ORDER BY red DESC, yellow DESC;

-- Feed the new tables from what is already stored: each insert replays a table's
-- rows into the views above. The copies it makes in that table are exact duplicates
-- of rows already there, which its ReplacingMergeTree merges away.
INSERT INTO order_events SELECT * FROM order_events;

INSERT INTO modifications SELECT * FROM modifications;

INSERT INTO orders_current SELECT * FROM orders_current;
