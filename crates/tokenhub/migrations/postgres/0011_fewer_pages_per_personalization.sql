-- Fewer pages written by the call that completes a token's data (the SQLite migration of the same
-- number says why; the schema stays the same on both engines):
--
-- 1. A token's fingerprints in one row (names and fingerprints in one blob, see
--    `store::deliveries::encode_fingerprints`) instead of one row per element.
CREATE TABLE token_fingerprint_sets (
    token_id      TEXT PRIMARY KEY REFERENCES tokens (token_id),
    fingerprints  BYTEA NOT NULL
);
INSERT INTO token_fingerprint_sets (token_id, fingerprints)
SELECT token_id,
       string_agg(
           int2send(octet_length(name)::int2) || convert_to(name, 'UTF8')
               || int2send(octet_length(fingerprint)::int2) || fingerprint,
           ''::bytea ORDER BY name)
FROM token_fingerprints
GROUP BY token_id;
DROP TABLE token_fingerprints;

-- 2. (SQLite only: its events table loses AUTOINCREMENT. Here `id` is a BIGSERIAL.)

-- 3. A call's repeat is looked up among the token's few parts by the primary key
--    (token_id, seq).
DROP INDEX IF EXISTS token_data_by_correlation;
