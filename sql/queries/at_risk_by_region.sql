-- Which destination regions have orders at risk right now, and which orders?
-- Open orders whose health is red or yellow, per region, worst first, with up to
-- three of its lowest-scored orders and their first reason.
-- Parameters: none.
SELECT
    ifNull(region_code, '') AS region_code,
    countIf(health_color = 'red') AS red,
    countIf(health_color = 'yellow') AS yellow,
    arraySlice(arraySort(x -> (x.1, x.2), groupArray((health_score, order_id, channel, health_reasons[1]))), 1, 3)
        AS worst
FROM at_risk_orders
GROUP BY region_code
ORDER BY red DESC, yellow DESC, region_code;
