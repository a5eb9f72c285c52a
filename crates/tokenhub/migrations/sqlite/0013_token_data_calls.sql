-- One record per applied /data or /newData call: how a retry (same correlation id, same element
-- names in any order) is recognised, by its key, whatever the length of the token's history.
-- `names_digest`: the first 8 bytes of the SHA-256 of the call's names, sorted and comma-joined,
-- so the key stays short. `element_names`: the names as the call listed them, kept only for the
-- calls this migration found (their digest is a placeholder: minus a part's seq, or 0 for a call
-- known only by its event, whose names are ''). `part_held`: its sealed part is still held. `completed`: the call completed
-- the token's data (a personalization was queued from it). Without a rowid: one b-tree, the key's,
-- so a call's record costs its commit the pages of one tree, not two.
CREATE TABLE token_data_calls (
    token_id        TEXT NOT NULL,
    correlation_id  TEXT NOT NULL,
    names_digest    BIGINT NOT NULL,
    element_names   TEXT NOT NULL DEFAULT '',
    operation       TEXT NOT NULL,
    part_held       BIGINT NOT NULL,
    completed       BIGINT NOT NULL,
    created_ms      BIGINT NOT NULL,
    PRIMARY KEY (token_id, correlation_id, names_digest)
) WITHOUT ROWID;

-- The parts held: their names as the call listed them (a retry lists them the same way).
INSERT INTO token_data_calls (token_id, correlation_id, names_digest, element_names, operation, part_held, completed, created_ms)
SELECT token_id, correlation_id, -MIN(seq), element_names, MIN(operation), 1, 0, MIN(created_ms)
FROM token_data GROUP BY token_id, correlation_id, element_names;

-- Calls whose parts were deleted once the device held the profile: known by their events.
INSERT INTO token_data_calls (token_id, correlation_id, names_digest, element_names, operation, part_held, completed, created_ms)
SELECT token_id, correlation_id, 0, '', MIN(CASE WHEN event LIKE 'newData received:%' THEN 'newData' ELSE 'data' END), 0, 0, MIN(at_ms)
FROM token_events
WHERE (event LIKE 'data received:%' OR event LIKE 'newData received:%')
  AND NOT EXISTS (SELECT 1 FROM token_data d WHERE d.token_id = token_events.token_id AND d.correlation_id = token_events.correlation_id)
GROUP BY token_id, correlation_id;

-- A recovery whose data came in whole: a re-personalization was built from it.
UPDATE token_data_calls SET completed = 1
WHERE operation = 'newData' AND EXISTS (
    SELECT 1 FROM personalizations p
    WHERE p.token_id = token_data_calls.token_id
      AND p.correlation_id = token_data_calls.correlation_id AND p.kind = 'REPERSO');
