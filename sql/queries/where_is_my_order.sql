-- Where is this order, and why is it yellow (or red)?
-- Its state now, the health reasons a support agent reads, the estimate against
-- the promise, the vehicle's last position, and every milestone so far.
-- Parameters: order_id, and channel ('' for any channel).
SELECT
    o.channel,
    o.order_id,
    o.status,
    o.status_at,
    o.health_color,
    o.health_score,
    o.health_reasons,
    o.promised_at,
    o.eta,
    o.eta_p10,
    o.eta_p90,
    o.promise_at_risk,
    o.eta_basis,
    o.carrier,
    o.waybills,
    (o.position_lat, o.position_lon, o.position_at) AS last_position,
    j.milestones
FROM orders AS o
LEFT JOIN
(
    SELECT channel, order_id, arraySort(groupArray((at, status, source, detail))) AS milestones
    FROM
    (
        SELECT channel, order_id, at, status, source, detail
        FROM order_journey
        WHERE order_id = {order_id:String} AND ({channel:String} = '' OR channel = {channel:String})
        LIMIT 1 BY event_id
    )
    GROUP BY channel, order_id
) AS j USING (channel, order_id)
WHERE o.order_id = {order_id:String} AND ({channel:String} = '' OR o.channel = {channel:String})
ORDER BY o.channel;
