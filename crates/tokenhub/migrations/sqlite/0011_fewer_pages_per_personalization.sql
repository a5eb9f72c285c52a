-- Fewer pages written by the call that completes a token's data (each page is 4 KiB of log, then
-- of database, per commit):
--
-- 1. A token's fingerprints in one row (names and fingerprints in one blob, see
--    `store::deliveries::encode_fingerprints`) instead of one row per element: the 40-element
--    profile of the `bench data` wrote 40 rows and 40 index entries, 4 to 8 pages per commit.
CREATE TABLE token_fingerprint_sets (
    token_id      TEXT PRIMARY KEY REFERENCES tokens (token_id),
    fingerprints  BLOB NOT NULL
);
INSERT INTO token_fingerprint_sets (token_id, fingerprints)
SELECT token_id,
       unhex(group_concat(
           printf('%04X', length(CAST(name AS BLOB))) || hex(name)
               || printf('%04X', length(fingerprint)) || hex(fingerprint),
           ''))
FROM token_fingerprints
GROUP BY token_id;
DROP TABLE token_fingerprints;

-- 2. Token events without AUTOINCREMENT: its counter is a row of `sqlite_sequence`, one more page
--    per commit. Events are never deleted, so the largest id + 1 keeps them in order all the same.
CREATE TABLE token_events_new (
    id              INTEGER PRIMARY KEY,
    token_id        TEXT NOT NULL,
    at_ms           INTEGER NOT NULL,
    event           TEXT NOT NULL,
    correlation_id  TEXT NOT NULL
);
INSERT INTO token_events_new (id, token_id, at_ms, event, correlation_id)
SELECT id, token_id, at_ms, event, correlation_id FROM token_events;
DROP TABLE token_events;
ALTER TABLE token_events_new RENAME TO token_events;
CREATE INDEX token_events_by_token ON token_events (token_id, id);

-- 3. A call's repeat is looked up among the token's few parts by the primary key
--    (token_id, seq): the index by correlation id was one more page per part stored.
DROP INDEX IF EXISTS token_data_by_correlation;
