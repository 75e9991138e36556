-- How long after payment does each channel's order get its first logistics update,
-- this week? (The seeds' target: 15 minutes.) Slowest channel first.
-- Parameters: since, the first day (China time) of payments counted; this week's
-- is toMonday(today('Asia/Shanghai')).
SELECT channel, orders_paid, orders_updated, p50_min, p95_min, over_15_min_rate
FROM channel_first_update(since = {since:Date})
ORDER BY p50_min DESC, channel;
