-- Shared keys belong to one TSP, do one thing (KEK or DEK), and can be retired; keyIndex is
-- scoped per TSP. Keys imported before: their owner is the only TSP when there is exactly one,
-- their purpose what the index says (KEK…/DEK…, the names `keys generate` used); a key whose
-- owner or purpose cannot be told gets no owner (''): it decrypts nothing until it is imported
-- again for its TSP, and the hub names it at start. `bound` false: the wrap's associated data
-- names only the index (wrapped before keys had owners).
CREATE TABLE shared_keys_owned (
    tsp_id      TEXT NOT NULL,
    key_index   TEXT NOT NULL,
    algorithm   TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    state       TEXT NOT NULL,
    kcv         TEXT NOT NULL,
    wrapped     BYTEA NOT NULL,
    bound       BOOLEAN NOT NULL,
    created_ms  BIGINT NOT NULL,
    retired_ms  BIGINT,
    PRIMARY KEY (tsp_id, key_index)
);

INSERT INTO shared_keys_owned
    (tsp_id, key_index, algorithm, purpose, state, kcv, wrapped, bound, created_ms, retired_ms)
SELECT
    CASE
        WHEN (SELECT COUNT(*) FROM tsps) = 1
             AND (upper(key_index) LIKE 'KEK%' OR upper(key_index) LIKE 'DEK%')
        THEN (SELECT tsp_id FROM tsps)
        ELSE ''
    END,
    key_index, algorithm,
    CASE WHEN upper(key_index) LIKE 'DEK%' THEN 'DEK' ELSE 'KEK' END,
    'ACTIVE', kcv, wrapped, FALSE, created_ms, NULL
FROM shared_keys;

DROP TABLE shared_keys;
ALTER TABLE shared_keys_owned RENAME TO shared_keys;
