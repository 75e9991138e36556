-- How recently, how often and how much does each customer buy, and which segment
-- are they in? Paid orders up to a moment, across all channels (one customer
-- across channels). R, F and M are terciles (3 = most recent, most orders, most
-- spent); ties go by customer id, so the same data always gives the same answer.
-- Segments: champion (R and F 3), new (one order, R 3), one-off (one order),
-- slipping away (repeat buyer, R 1), loyal (any other repeat buyer).
-- Parameters: as_of (UTC).
WITH per_customer AS
(
    SELECT
        customer_id,
        dateDiff('day', max(paid_at), {as_of:DateTime64(3, 'UTC')}) AS recency_days,
        count() AS orders,
        sum(ifNull(amount_fen, 0)) AS spent_fen,
        uniqExact(channel) AS channels
    FROM orders
    WHERE paid_at <= {as_of:DateTime64(3, 'UTC')} AND status != 'cancelled' AND customer_id != ''
    GROUP BY customer_id
)
SELECT
    customer_id,
    recency_days,
    orders,
    spent_fen,
    channels,
    ntile(3) OVER (ORDER BY recency_days DESC, customer_id) AS r,
    ntile(3) OVER (ORDER BY orders, customer_id) AS f,
    ntile(3) OVER (ORDER BY spent_fen, customer_id) AS m,
    multiIf(
        r = 3 AND f = 3, 'champion',
        orders = 1 AND r = 3, 'new',
        orders = 1, 'one-off',
        r = 1, 'slipping away',
        'loyal'
    ) AS segment
FROM per_customer
ORDER BY customer_id;
