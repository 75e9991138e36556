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

-- kpi_channel_minute: per channel and minute of event time, the orders told each
-- status in that minute (from order_events: created, shipped, delivered, exception,
-- cancelled), the orders purchased then with what they cost (from orders_current:
-- the first time each was paid, or sold), and the modifications requested and
-- failed. One order told "shipped" by the warehouse and again by its channel a few
-- minutes later is in both minutes: merging the states of a range (the view
-- channel_kpis) counts it once. Ordered by minute first: dashboards read the latest.
CREATE TABLE IF NOT EXISTS kpi_channel_minute
(
    minute               DateTime('UTC'),
    channel              LowCardinality(String),
    created              AggregateFunction(uniqExact, String),
    purchased            AggregateFunction(uniqExact, String),
    purchased_fen        AggregateFunction(maxMap, Array(String), Array(Int64)),
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
    uniqExactIfState(order_id, status = 'shipped') AS shipped,
    uniqExactIfState(order_id, status = 'delivered') AS delivered,
    uniqExactIfState(order_id, status = 'exception') AS exceptions,
    uniqExactIfState(order_id, status = 'cancelled') AS cancelled
FROM order_events
WHERE status IN ('created', 'shipped', 'delivered', 'exception', 'cancelled')
GROUP BY minute, channel;

CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_channel_minute_purchases TO kpi_channel_minute AS
SELECT
    toStartOfMinute(assumeNotNull(purchased_at)) AS minute,
    channel,
    uniqExactState(order_id) AS purchased,
    maxMapStateIf([order_id], [assumeNotNull(amount_fen)], amount_fen IS NOT NULL) AS purchased_fen
FROM orders_current
WHERE purchased_at IS NOT NULL
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
-- one row per order whose payment was told (order_key: cityHash64(channel, order_id)):
-- when it was paid and first updated after (NULL until it is), and whether it was
-- cancelled. Every row version of an order writes its row again; rows of one order
-- merge into one keeping the earliest times (a fact read late can only make a step
-- earlier). A per-order grain keeps exact percentiles cheap: a week is a range of
-- the primary key. A late fact that moves the payment across midnight leaves the
-- order a row under each day: the view groups the range's rows (and a day before it)
-- by order and places each by its earliest time.
CREATE TABLE IF NOT EXISTS kpi_channel_day
(
    day             Date,
    channel         LowCardinality(String),
    order_key       UInt64,
    paid_at         SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    first_update_at SimpleAggregateFunction(min, Nullable(DateTime64(3, 'UTC'))),
    cancelled       SimpleAggregateFunction(max, UInt8)
)
ENGINE = AggregatingMergeTree
ORDER BY (day, channel, order_key);

CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_channel_day_feed TO kpi_channel_day AS
SELECT
    toDate(assumeNotNull(o.paid_at), 'Asia/Shanghai') AS day,
    o.channel AS channel,
    cityHash64(o.channel, o.order_id) AS order_key,
    min(assumeNotNull(o.paid_at)) AS paid_at,
    min(o.first_update_at) AS first_update_at,
    max(toUInt8(o.status = 'cancelled')) AS cancelled
FROM orders_current AS o
WHERE o.paid_at IS NOT NULL
GROUP BY day, channel, order_key;

-- kpi_carrier_day: per day of delivery (China time), one row per delivered order:
-- its carrier and promise as its newest row version tells them (argMax by version: a
-- parcel handed to another carrier counts for the last one), when it was paid and
-- delivered (the earliest told). A delivery moved across midnight leaves two rows,
-- grouped by order as in kpi_channel_day.
CREATE TABLE IF NOT EXISTS kpi_carrier_day
(
    day          Date,
    order_key    UInt64,
    carrier      AggregateFunction(argMax, LowCardinality(String), UInt64),
    promised_at  AggregateFunction(argMax, Nullable(DateTime64(3, 'UTC')), UInt64),
    paid_at      SimpleAggregateFunction(min, Nullable(DateTime64(3, 'UTC'))),
    delivered_at SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (day, order_key);

CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_carrier_day_feed TO kpi_carrier_day AS
SELECT
    toDate(assumeNotNull(o.delivered_at), 'Asia/Shanghai') AS day,
    cityHash64(o.channel, o.order_id) AS order_key,
    argMaxState(o.carrier, o.version) AS carrier,
    argMaxState(o.promised_at, o.version) AS promised_at,
    min(o.paid_at) AS paid_at,
    min(assumeNotNull(o.delivered_at)) AS delivered_at
FROM orders_current AS o
WHERE o.delivered_at IS NOT NULL
GROUP BY day, order_key;

-- What dashboards read. Rates are NULL where nothing was there to measure.
-- Channel figures from since to until (UTC), in buckets of step_min minutes from since
-- (0: the whole range as one): SELECT * FROM channel_kpis(since = '2026-11-21 00:00:00',
-- until = '2026-11-21 01:00:00', step_min = 1). An order counts once per bucket.
CREATE VIEW IF NOT EXISTS channel_kpis AS
SELECT
    {since:DateTime('UTC')} + toIntervalMinute(
        if({step_min:UInt32} = 0, 0,
           intDiv(dateDiff('minute', {since:DateTime('UTC')}, minute), {step_min:UInt32}) * {step_min:UInt32})
    ) AS bucket,
    channel,
    uniqExactMerge(created) AS orders_created,
    uniqExactMerge(purchased) AS orders_purchased,
    arraySum(maxMapMerge(purchased_fen).2) AS gmv_fen,
    uniqExactMerge(shipped) AS orders_shipped,
    uniqExactMerge(delivered) AS orders_delivered,
    uniqExactMerge(exceptions) AS orders_with_exception,
    uniqExactMerge(cancelled) AS orders_cancelled,
    uniqExactMerge(modifications) AS modifications,
    uniqExactMerge(failed_modifications) AS failed_modifications,
    round(failed_modifications / nullIf(modifications, 0), 4) AS modification_failure_rate
FROM kpi_channel_minute
WHERE minute >= {since:DateTime('UTC')} AND minute < {until:DateTime('UTC')}
GROUP BY bucket, channel
ORDER BY bucket, channel;

-- Payment to first logistics update per channel, for payments since a day (China
-- time): SELECT * FROM channel_first_update(since = '2026-11-20'). Percentiles are of
-- the orders updated (NULL if none was). The rate over 15 minutes (the seeds' target)
-- is of the orders whose answer is known: updated, or waiting longer than that
-- (late too); cancelled orders never updated, and orders paid less than 15 minutes
-- ago, are neither.
CREATE VIEW IF NOT EXISTS channel_first_update AS
WITH paid_at + toIntervalMinute(15) AS due
SELECT
    channel,
    count() AS orders_paid,
    count(first_update_at) AS orders_updated,
    quantilesExactInclusive(0.5, 0.95)(dateDiff('second', paid_at, first_update_at)) AS seconds,
    if(orders_updated = 0, NULL, round(seconds[1] / 60, 1)) AS p50_min,
    if(orders_updated = 0, NULL, round(seconds[2] / 60, 1)) AS p95_min,
    countIf(first_update_at > due OR (first_update_at IS NULL AND NOT cancelled AND now64(3) > due)) AS late,
    countIf(first_update_at IS NOT NULL OR (NOT cancelled AND now64(3) > due)) AS known,
    round(late / nullIf(known, 0), 4) AS over_15_min_rate
FROM
(
    SELECT any(channel) AS channel, min(paid_at) AS paid_at, min(first_update_at) AS first_update_at,
           max(cancelled) AS cancelled
    FROM kpi_channel_day
    WHERE day >= {since:Date} - 1
    GROUP BY order_key
)
WHERE toDate(paid_at, 'Asia/Shanghai') >= {since:Date}
GROUP BY channel;

-- The carrier scorecard, for deliveries since a day (China time), each order for the
-- carrier it was last handed to; deliveries no scan named a carrier for are left out:
-- SELECT * FROM carrier_scorecard(since = '2026-11-20').
CREATE VIEW IF NOT EXISTS carrier_scorecard AS
SELECT
    carrier,
    count() AS orders_delivered,
    count(promised_at) AS with_promise,
    countIf(delivered_at <= promised_at) AS delivered_on_time,
    round(delivered_on_time / nullIf(with_promise, 0), 4) AS on_time_rate,
    quantilesExactInclusive(0.5, 0.9)(dateDiff('second', paid_at, delivered_at) / 3600) AS hours,
    if(count(paid_at) = 0, NULL, round(hours[1], 1)) AS transit_p50_h,
    if(count(paid_at) = 0, NULL, round(hours[2], 1)) AS transit_p90_h
FROM
(
    SELECT argMaxMerge(carrier) AS carrier, argMaxMerge(promised_at) AS promised_at, min(paid_at) AS paid_at,
           min(delivered_at) AS delivered_at
    FROM kpi_carrier_day
    WHERE day >= {since:Date} - 1
    GROUP BY order_key
)
WHERE toDate(delivered_at, 'Asia/Shanghai') >= {since:Date} AND carrier != ''
GROUP BY carrier;

-- Open orders whose health is yellow or red, most at risk first, with the reasons a
-- support agent reads: those health still assesses (schemas/health.py SETTLED are
-- not). FINAL: one row per order, its newest version.
CREATE VIEW IF NOT EXISTS at_risk_orders AS
SELECT
    channel, order_id, status, health_color, health_score, health_reasons, health_at,
    region_code, carrier, promised_at, eta, eta_p90, promise_at_risk, customer_id
FROM orders_current FINAL
WHERE health_color IN ('yellow', 'red')
  AND status NOT IN ('delivered', 'completed', 'cancelled', 'returning', 'returned')
ORDER BY health_score, promise_at_risk DESC;

-- Orders at risk per destination region right now, worst first, with up to three of
-- its lowest-scored orders and the first reason of each.
CREATE VIEW IF NOT EXISTS at_risk_by_region AS
SELECT
    ifNull(region_code, '') AS region_code,
    countIf(health_color = 'red') AS red,
    countIf(health_color = 'yellow') AS yellow,
    arraySlice(arraySort(groupArray((health_score, order_id, channel, health_reasons[1]))), 1, 3) AS worst
FROM at_risk_orders
GROUP BY region_code
ORDER BY red DESC, yellow DESC, region_code;

-- Feed the new tables from what is already stored: each insert replays a table's
-- rows into the views above, which a replay cannot change. The copies it makes in
-- that table are exact duplicates of rows already there, which its
-- ReplacingMergeTree merges away. Orders last written before migration 013 have no
-- milestone times or carrier (see there): their history starts when the job writes
-- them again.
INSERT INTO order_events SELECT * FROM order_events SETTINGS max_partitions_per_insert_block = 0;

INSERT INTO modifications SELECT * FROM modifications;

INSERT INTO orders_current SELECT * FROM orders_current;
