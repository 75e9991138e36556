-- Windowed KPIs computed by the job, and the channels' circuit breakers (R3, R9, R13;
-- schemas/kpi.py, schemas/kpi.yaml). docs/data-dictionary.md names every column.

-- kpi_windows: per channel, carrier, warehouse and destination region ('' where not
-- known yet), what happened in each 1-minute window and each 5-minute window sliding
-- by a minute, in event time. A window is written when the watermark passes its end
-- and again each time a late fact (within the allowed lateness) changes it; a restore
-- writes it again. Each write holds all the window's facts so far, so
-- ReplacingMergeTree(facts) keeps the most complete one: read it with FINAL (or
-- through kpi_rates). Keyed by dimension and key first: a dashboard reads one
-- channel's, carrier's or warehouse's recent windows, one range.
CREATE TABLE IF NOT EXISTS kpi_windows
(
    window                 Enum8('1m' = 1, '5m' = 5),
    window_start           DateTime64(3, 'UTC'),
    window_end             DateTime64(3, 'UTC'),
    dimension              Enum8('channel' = 1, 'carrier' = 2, 'region' = 3, 'warehouse' = 4),
    key                    LowCardinality(String),
    orders                 UInt32,     -- bought: paid, or sold (POS)
    gmv_fen                Int64,      -- their amounts, once known
    first_updates          UInt32,     -- first logistics updates after a payment
    first_update_p50_ms    Nullable(Int64),  -- payment to first update, nearest rank
    first_update_p95_ms    Nullable(Int64),
    shipped                UInt32,
    exceptions             UInt32,     -- carrier exception scans
    delivered              UInt32,
    delivered_with_promise UInt32,
    on_time                UInt32,     -- delivered by the promise
    modifications          UInt32,
    modifications_failed   UInt32,
    dwell_ms               Map(LowCardinality(String), Int64),  -- step -> mean time there before the next step
    facts                  UInt32      -- facts counted: the version
)
ENGINE = ReplacingMergeTree(facts)
ORDER BY (dimension, key, window, window_start);

-- kpi_late_facts: facts that came after their windows' allowed lateness (or stamped
-- more than a day ahead of event time), counted per day of their event time rather
-- than dropped unseen. Each write holds the count so
-- far: ReplacingMergeTree(facts) keeps the highest.
CREATE TABLE IF NOT EXISTS kpi_late_facts
(
    dimension     Enum8('channel' = 1, 'carrier' = 2, 'region' = 3, 'warehouse' = 4),
    key           LowCardinality(String),
    day           DateTime64(3, 'UTC'),
    facts         UInt64,
    max_behind_ms Int64    -- the furthest a fact's time was behind the watermark when it came
)
ENGINE = ReplacingMergeTree(facts)
ORDER BY (dimension, key, day);

-- channel_breakers: each time a channel's breaker opened, with the window that opened
-- it, and when it closed (NULL while open). Written at opening and again at closing:
-- ReplacingMergeTree(updated_at) keeps the closing. Keyed by channel: a channel's
-- history is one range.
CREATE TABLE IF NOT EXISTS channel_breakers
(
    channel           LowCardinality(String),
    opened_at         DateTime64(3, 'UTC'),           -- the end of the window that opened it
    closed_at         Nullable(DateTime64(3, 'UTC')), -- the end of the last calm window
    failure_rate      Float64,                        -- of that window
    modifications     UInt32,
    failed            UInt32,
    open_above_rate   Float64,                        -- schemas/kpi.yaml, as then
    min_modifications UInt32,
    config_version    LowCardinality(String),
    updated_at        DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (channel, opened_at);

-- kpi_rates: the windows with their rates (NULL where nothing was measured).
CREATE VIEW IF NOT EXISTS kpi_rates AS
SELECT
    window, window_start, window_end, dimension, key, orders, gmv_fen, first_updates,
    first_update_p50_ms, first_update_p95_ms, shipped, exceptions, delivered, delivered_with_promise,
    on_time, modifications, modifications_failed, dwell_ms,
    round(modifications_failed / nullIf(modifications, 0), 4) AS modification_failure_rate,
    round(on_time / nullIf(delivered_with_promise, 0), 4) AS on_time_rate,
    round(exceptions / nullIf(shipped, 0), 4) AS exception_rate
FROM kpi_windows FINAL;

-- channel_breaker_state: each channel's latest breaker, open or closed.
CREATE VIEW IF NOT EXISTS channel_breaker_state AS
SELECT channel, opened_at, closed_at, closed_at IS NULL AS is_open, failure_rate
FROM channel_breakers FINAL
ORDER BY channel, opened_at DESC
LIMIT 1 BY channel;

-- modifications_for_review: the modifications requested while their channel's
-- breaker was open, for manual review (R9).
CREATE VIEW IF NOT EXISTS modifications_for_review AS
SELECT m.channel, m.order_id, m.at, m.kind, m.succeeded, m.error, b.opened_at AS breaker_opened_at
FROM modifications AS m FINAL
INNER JOIN channel_breakers AS b FINAL ON m.channel = b.channel
WHERE m.at >= b.opened_at AND (b.closed_at IS NULL OR m.at < b.closed_at);
