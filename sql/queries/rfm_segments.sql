-- How recently, how often and how much does each customer buy, and which segment
-- are they in? Purchases up to a moment (paid orders, and sales that told no
-- payment, as a POS sale), across all channels (one customer across channels).
-- R, F and M are terciles (3 = most recent, most orders, most spent) by the share of
-- customers at or below each one: customers alike share a tier, the higher one.
-- Segments: champion (R and F 3, more than one order), new (one order, R 3), one-off (one order),
-- slipping away (repeat buyer, R 1), loyal (any other repeat buyer).
-- Parameters: as_of (UTC).
WITH per_customer AS
(
    SELECT
        customer_id,
        dateDiff('day', max(purchased_at), {as_of:DateTime64(3, 'UTC')}) AS recency_days,
        count() AS orders,
        sum(ifNull(amount_fen, 0)) AS spent_fen,
        uniqExact(channel) AS channels
    FROM orders
    WHERE purchased_at <= {as_of:DateTime64(3, 'UTC')} AND status != 'cancelled' AND customer_id != ''
    GROUP BY customer_id
)
SELECT
    customer_id,
    recency_days,
    orders,
    spent_fen,
    channels,
    count() OVER () AS customers,
    toUInt8(ceil(3 * count() OVER (ORDER BY recency_days DESC RANGE UNBOUNDED PRECEDING) / customers)) AS r,
    toUInt8(ceil(3 * count() OVER (ORDER BY orders RANGE UNBOUNDED PRECEDING) / customers)) AS f,
    toUInt8(ceil(3 * count() OVER (ORDER BY spent_fen RANGE UNBOUNDED PRECEDING) / customers)) AS m,
    multiIf(
        r = 3 AND f = 3 AND orders > 1, 'champion',
        orders = 1 AND r = 3, 'new',
        orders = 1, 'one-off',
        r = 1, 'slipping away',
        'loyal'
    ) AS segment
FROM per_customer
ORDER BY customer_id;
