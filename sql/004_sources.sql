-- What the other sources say: where an order's vehicle is (orders_current),
-- order modifications and their outcome, customer-service messages reduced to
-- intents, and external signals. Each table is keyed by the fact's identity,
-- so replays show once under FINAL.
ALTER TABLE orders_current
    ADD COLUMN IF NOT EXISTS position_lat Nullable(Float64),
    ADD COLUMN IF NOT EXISTS position_lon Nullable(Float64),
    ADD COLUMN IF NOT EXISTS position_at  Nullable(DateTime64(3, 'UTC'));

CREATE TABLE IF NOT EXISTS modifications
(
    channel   LowCardinality(String),
    order_id  String,
    at        DateTime64(3, 'UTC'),
    kind      LowCardinality(String),          -- address_change, expedite, cancel_request, item_change
    succeeded Bool,
    error     String
)
ENGINE = ReplacingMergeTree
ORDER BY (channel, order_id, at, kind);

-- The message text is never stored: only who wrote, about which order, and the intents found.
CREATE TABLE IF NOT EXISTS service_messages
(
    channel     LowCardinality(String),
    order_id    String,                        -- '' when the buyer named no order
    identity    String,                        -- pseudonym of the buyer's identifier: see customer_links
    at          DateTime64(3, 'UTC'),
    intents     Array(LowCardinality(String))  -- chase, urgent, exchange, complaint
)
ENGINE = ReplacingMergeTree
ORDER BY (channel, identity, at, order_id);

-- Which customer each identifier belongs to (identity resolution, schemas/identity.py).
-- When two customers turn out to be one, their identifiers get a new version here
-- and their orders a new customer_id in orders_current.
CREATE TABLE IF NOT EXISTS customer_links
(
    identity    String,                        -- keyed pseudonym, e.g. phone_…, tmall_buyer_…
    kind        LowCardinality(String),        -- phone, phone_token, member_id, device_id, ...
    customer_id String,
    strong      Bool,                          -- strong identifiers join customers; weak ones only follow
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY identity;

CREATE TABLE IF NOT EXISTS signals
(
    kind      LowCardinality(String),          -- weather_<phenomenon>, port_congestion, traffic_incident
    subject   String,                          -- region code, port (UN/LOCODE) or road
    at        DateTime64(3, 'UTC'),
    until     Nullable(DateTime64(3, 'UTC')),
    level     String,                          -- warning colour, congestion index, incident severity
    lat       Nullable(Float64),
    lon       Nullable(Float64),
    delay_min Nullable(Int32)
)
ENGINE = ReplacingMergeTree
ORDER BY (kind, subject, at);

-- A view's columns are fixed when it is created: recreate `orders` to show the new ones.
CREATE OR REPLACE VIEW orders AS
SELECT * FROM orders_current FINAL;
