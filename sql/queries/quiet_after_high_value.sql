-- Who made a high-priced first purchase and has been quiet since, for a follow-up
-- task (R12)? Customers whose first purchase cost at least min_fen and who have
-- neither ordered nor written to customer service for quiet_days before as_of.
-- The sources tell no product category and no app logins: the price stands for
-- "high-priced consumable", and orders and messages for activity.
-- Parameters: min_fen, quiet_days, as_of (UTC).
WITH
    bought AS
    (
        SELECT customer_id, channel, order_id, amount_fen, purchased_at
        FROM orders
        WHERE purchased_at <= {as_of:DateTime64(3, 'UTC')} AND status != 'cancelled' AND customer_id != ''
    ),
    purchases AS
    (
        SELECT
            customer_id,
            argMin((channel, order_id, ifNull(amount_fen, 0)), purchased_at) AS first_order,
            min(purchased_at) AS first_purchase,
            max(purchased_at) AS last_purchase,
            count() AS orders
        FROM bought
        GROUP BY customer_id
    ),
    messages AS
    (
        SELECT link.customer_id AS customer_id, max(message.at) AS last_message
        FROM service_messages AS message FINAL
        INNER JOIN (SELECT identity, customer_id FROM customer_links FINAL) AS link USING (identity)
        WHERE message.at <= {as_of:DateTime64(3, 'UTC')}
        GROUP BY customer_id
    )
SELECT
    customer_id,
    first_order.1 AS channel,
    first_order.2 AS order_id,
    first_order.3 AS amount_fen,
    first_purchase,
    greatest(last_purchase, last_message) AS last_active,
    dateDiff('day', last_active, {as_of:DateTime64(3, 'UTC')}) AS days_quiet
FROM purchases
LEFT JOIN messages USING (customer_id)
WHERE amount_fen >= {min_fen:UInt64}
  AND last_active <= {as_of:DateTime64(3, 'UTC')} - toIntervalDay({quiet_days:UInt32})
ORDER BY first_purchase, customer_id;
