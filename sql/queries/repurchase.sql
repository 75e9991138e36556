-- Of the customers who first bought in a period, how many bought again within N
-- days, and how many of those on another channel than the first? Per the channel
-- of their first order.
-- Parameters: since and until (days, China time, of the first purchase),
-- within_days.
WITH
    paid AS
    (
        SELECT customer_id, channel, paid_at
        FROM orders
        WHERE paid_at IS NOT NULL AND status != 'cancelled' AND customer_id != ''
    ),
    firsts AS
    (
        SELECT customer_id, argMin(channel, paid_at) AS first_channel, min(paid_at) AS first_paid
        FROM paid
        GROUP BY customer_id
        HAVING toDate(first_paid, 'Asia/Shanghai') BETWEEN {since:Date} AND {until:Date}
    ),
    per_customer AS
    (
        SELECT
            customer_id,
            first_channel,
            countIf(p.paid_at > first_paid AND p.paid_at <= first_paid + toIntervalDay({within_days:UInt32})) > 0
                AS again,
            countIf(
                p.paid_at > first_paid AND p.paid_at <= first_paid + toIntervalDay({within_days:UInt32})
                AND p.channel != first_channel
            ) > 0 AS again_elsewhere
        FROM firsts
        INNER JOIN paid AS p USING (customer_id)
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
