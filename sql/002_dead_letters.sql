-- dead_letters: every payload the pipeline could not understand, as received
-- (phone numbers replaced by their pseudonyms), with a short reason code and a
-- human explanation. Keyed by its Kafka position, so a replayed record is kept
-- once under FINAL.
CREATE TABLE IF NOT EXISTS dead_letters
(
    source_topic LowCardinality(String),
    partition    Int32,
    offset       Int64,
    raw          String,
    reason       LowCardinality(String),       -- e.g. malformed_json, unknown_code, bad_time
    detail       String,
    received_at  DateTime64(3, 'UTC')          -- the Kafka record's timestamp
)
ENGINE = ReplacingMergeTree
ORDER BY (source_topic, partition, offset);

-- Dead letters per source and reason, for dashboards and alerts.
CREATE VIEW IF NOT EXISTS dead_letter_counts AS
SELECT source_topic, reason, count() AS dead_letters, max(received_at) AS latest
FROM dead_letters FINAL
GROUP BY source_topic, reason;
