-- Business rules (schemas/rules.py, schemas/rules.yaml, R8): what they decided.
--
-- orders_current and order_health_history gain, at each assessment, the rules
-- that matched (id@version, so that a past decision names the exact rule), the
-- highest priority they set ('' if none), their tags and recommended fallbacks,
-- and the version of the rule set in force. A rule whose action is an alert
-- writes its incidents to `alerts` with alert_type rule.<id> and rule_id id@version.
ALTER TABLE orders_current
    ADD COLUMN IF NOT EXISTS priority        LowCardinality(String),
    ADD COLUMN IF NOT EXISTS tags            Array(LowCardinality(String)),
    ADD COLUMN IF NOT EXISTS recommendations Array(String),
    ADD COLUMN IF NOT EXISTS rules           Array(LowCardinality(String)),
    ADD COLUMN IF NOT EXISTS rules_version   LowCardinality(String);

ALTER TABLE order_health_history
    ADD COLUMN IF NOT EXISTS priority        LowCardinality(String),
    ADD COLUMN IF NOT EXISTS tags            Array(LowCardinality(String)),
    ADD COLUMN IF NOT EXISTS recommendations Array(String),
    ADD COLUMN IF NOT EXISTS rules           Array(LowCardinality(String)),
    ADD COLUMN IF NOT EXISTS rules_version   LowCardinality(String);

CREATE OR REPLACE VIEW orders AS
SELECT * FROM orders_current FINAL;

-- rule_sets: every rule set the job read from topic orderscope.rules (the set in
-- force is the last one published; before any, schemas/rules.yaml), as published.
-- Keyed by version and publication: the same record read again (a replay) is one
-- row under FINAL, and a set published twice is two.
CREATE TABLE IF NOT EXISTS rule_sets
(
    version      String,
    spec         String,                   -- the rule set, JSON
    published_at DateTime64(3, 'UTC')      -- when `orderscope rules publish` sent it
)
ENGINE = ReplacingMergeTree
ORDER BY (version, published_at);
