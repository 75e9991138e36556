-- Of the customers who first bought in a period, how many bought again within N
-- days, and how many of those on another channel than the first? Per the channel
-- of their first order.
-- Parameters: since and until (days, China time, of the first purchase),
-- within_days.
WITH
    purchases AS
    (
        SELECT customer_id, channel, purchased_at
        FROM orders
        WHERE purchased_at IS NOT NULL AND status != 'cancelled' AND customer_id != ''
    ),
    firsts AS
    (
        SELECT customer_id, argMin(channel, purchased_at) AS first_channel, min(purchased_at) AS first_purchase
        FROM purchases
        GROUP BY customer_id
        HAVING toDate(first_purchase, 'Asia/Shanghai') BETWEEN {since:Date} AND {until:Date}
    ),
    per_customer AS
    (
        WITH
            p.purchased_at > first_purchase
                AND p.purchased_at <= first_purchase + toIntervalDay({within_days:UInt32}) AS within
        SELECT
            customer_id,
            first_channel,
            countIf(within) > 0 AS again,
            countIf(within AND p.channel != first_channel) > 0 AS again_elsewhere
        FROM firsts
        INNER JOIN purchases AS p USING (customer_id)
        GROUP BY customer_id, first_channel
    )
SELECT
    first_channel,
    count() AS new_customers,
    countIf(again) AS bought_again,
    round(bought_again / new_customers, 4) AS repurchase_rate,
    countIf(again_elsewhere) AS bought_again_on_another_channel
FROM per_customer
GROUP BY first_channel
ORDER BY first_channel;
