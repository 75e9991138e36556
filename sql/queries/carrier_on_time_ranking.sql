-- Which carriers deliver by the promise most often? Ranked by on-time rate over
-- the deliveries since a day, then by how many they delivered.
-- Parameters: since, the first day (China time) of deliveries counted.
SELECT
    row_number() OVER (ORDER BY on_time_rate DESC, orders_delivered DESC, carrier) AS rank,
    carrier,
    orders_delivered,
    with_promise,
    delivered_on_time,
    on_time_rate,
    transit_p50_h,
    transit_p90_h
FROM carrier_scorecard(since = {since:Date})
ORDER BY rank;
