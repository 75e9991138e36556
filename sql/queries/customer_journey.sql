-- What has this customer done, across every channel, in order? Each order's
-- milestones, the modifications they asked for, and their messages to customer
-- service (intents only: the text is never stored).
-- Parameters: customer_id (the pseudonym in orders.customer_id).
WITH
    their_orders AS (SELECT channel, order_id FROM orders WHERE customer_id = {customer_id:String}),
    their_identities AS (
        SELECT identity FROM customer_links FINAL WHERE customer_id = {customer_id:String}
    )
SELECT at, channel, order_id, what, detail
FROM
(
    SELECT at, channel, order_id, toString(status) AS what, detail
    FROM order_journey
    WHERE (channel, order_id) IN (SELECT channel, order_id FROM their_orders)
    LIMIT 1 BY channel, order_id, event_id

    UNION ALL

    SELECT at, channel, order_id, concat(toString(kind), if(succeeded, ' succeeded', ' failed')), error
    FROM modifications FINAL
    WHERE (channel, order_id) IN (SELECT channel, order_id FROM their_orders)

    UNION ALL

    SELECT at, channel, order_id, 'message', arrayStringConcat(intents, ', ')
    FROM service_messages FINAL
    WHERE identity IN (SELECT identity FROM their_identities)
       OR (channel, order_id) IN (SELECT channel, order_id FROM their_orders)
)
ORDER BY at, channel, order_id, what;
