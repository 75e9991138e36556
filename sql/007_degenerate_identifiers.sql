-- degenerate_identifiers: identifiers that stopped joining customers (schemas/identity.py).
-- An identifier seen with more distinct strong identifiers of one kind than
-- `limit_per_kind` in schemas/identity.yaml (a phone typed in for every walk-in
-- member, a shared store card) joins no one from then on; the merges it made
-- before stay, so its customer is named for a look. One row per identifier
-- under FINAL: ReplacingMergeTree(distinct_seen) keeps its highest count, so the
-- rows of a replay or restore change nothing.
CREATE TABLE IF NOT EXISTS degenerate_identifiers
(
    identity      String,                      -- keyed pseudonym, never a clear identifier
    kind          LowCardinality(String),      -- its kind: phone, member_id, ...
    crowded_kind  LowCardinality(String),      -- the kind it was seen with too many of
    distinct_seen UInt32,                      -- how many of that kind (counted up to 1,000)
    customer_id   String,                      -- the customer it joined before: those merges stay
    flagged_at    DateTime64(3, 'UTC')         -- event time of the sighting that raised the count
)
ENGINE = ReplacingMergeTree(distinct_seen)
ORDER BY identity;
