-- External delays in arrival estimates (schemas/eta.py, R5, R7).
--
-- A leg also tells, per step, the worst external condition on its way from that
-- step to its delivery, as the weather and port_congestion health factors rate
-- them ('weather red', 'port yellow'), or '' if none: conditions[i] belongs to
-- steps[i]. The job learns those legs' remaining times again in lanes of their
-- condition, and estimates an order under one from them first. Legs written
-- before this column had no condition told.
ALTER TABLE eta_legs
    ADD COLUMN IF NOT EXISTS conditions Array(LowCardinality(String)) DEFAULT arrayMap(s -> '', steps);

-- eta_lane_figures gains the condition: its rows for '' count every leg of the
-- lane (as the job learns the lane), those for a condition only the steps under
-- it (the job pools these over all carriers, by region and anywhere).
CREATE OR REPLACE VIEW eta_lane_figures AS
SELECT
    carrier,
    region_code,
    condition,
    step,
    count() AS legs,
    round(sum(weight), 1) AS weighted_legs,
    arrayMap(h -> round(h, 1), quantilesTDigestWeighted(0.1, 0.5, 0.9)(remaining_ms / 3600000,
        toUInt32(weight * 1000 + 1))) AS remaining_hours_p10_p50_p90
FROM
(
    SELECT carrier, region_code, step, remaining_ms, condition,
           pow(0.5, dateDiff('second', delivered_at, newest) / (7 * 86400)) AS weight
    FROM
    (
        SELECT *, max(delivered_at) OVER (PARTITION BY carrier, region_code) AS newest
        FROM eta_legs FINAL
    )
    ARRAY JOIN steps AS step, remaining_ms, conditions AS under
    ARRAY JOIN arrayDistinct(['', under]) AS condition
)
GROUP BY carrier, region_code, condition, step;
