-- Predicted arrival (schemas/eta.py, R5), learned from delivered orders.
--
-- orders_current and order_health_history gain the estimate made at each
-- assessment: the median arrival, its 10th and 90th percentiles, the probability
-- of missing the channel's promise, and its basis in words (lane, step, legs).
-- None of them while no lane has learned enough. A history row is written when
-- the health changes or the estimate moves (30 minutes, or 5 points of risk),
-- so an ETA curve can be drawn from it.
ALTER TABLE orders_current
    ADD COLUMN IF NOT EXISTS eta             Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS eta_p10         Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS eta_p90         Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS promise_at_risk Nullable(Float32),
    ADD COLUMN IF NOT EXISTS eta_basis       String;

ALTER TABLE order_health_history
    ADD COLUMN IF NOT EXISTS eta             Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS eta_p10         Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS eta_p90         Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS promise_at_risk Nullable(Float32),
    ADD COLUMN IF NOT EXISTS eta_basis       String;

CREATE OR REPLACE VIEW orders AS
SELECT * FROM orders_current FINAL;

-- eta_legs: one row per delivered order (what the job learns from, also sent to
-- topic orderscope.eta_legs for every lane to read back): how long it still took
-- from each lifecycle step it reached. Keyed by order, so a leg written twice
-- (a restore) is one row under FINAL.
CREATE TABLE IF NOT EXISTS eta_legs
(
    channel      LowCardinality(String),
    order_id     String,
    carrier      LowCardinality(String),   -- as the tracking aggregator names it
    region_code  LowCardinality(String),   -- the destination's district code
    delivered_at DateTime64(3, 'UTC'),
    steps        Array(LowCardinality(String)),
    remaining_ms Array(Int64)              -- from reaching steps[i] to delivery
)
ENGINE = ReplacingMergeTree
ORDER BY (channel, order_id);

-- eta_lane_figures: what each lane (carrier, region) has learned per step: a leg
-- weighs half as much per 7 days older than the lane's newest (health.yaml's
-- eta.half_life_days; the job weighs against event time now). The job also pools
-- lanes (a carrier anywhere, a region by any carrier) for lanes with fewer than
-- eta.min_legs legs, and leaves out the legs quicker than an order's time so far.
CREATE OR REPLACE VIEW eta_lane_figures AS
SELECT
    carrier,
    region_code,
    step,
    count() AS legs,
    round(sum(weight), 1) AS weighted_legs,
    arrayMap(h -> round(h, 1), quantilesTDigestWeighted(0.1, 0.5, 0.9)(remaining_ms / 3600000,
        toUInt32(weight * 1000 + 1))) AS remaining_hours_p10_p50_p90
FROM
(
    SELECT carrier, region_code, step, remaining_ms,
           pow(0.5, dateDiff('second', delivered_at, newest) / (7 * 86400)) AS weight
    FROM
    (
        SELECT *, max(delivered_at) OVER (PARTITION BY carrier, region_code) AS newest
        FROM eta_legs FINAL
    )
    ARRAY JOIN steps AS step, remaining_ms
)
GROUP BY carrier, region_code, step;
