-- Data keys apart from the tokens and the data they seal (crypto-shredding), in the keyring:
-- `keyring`, a file of its own beside the database (`<name>.keyring.db`), attached to every
-- connection of the hub, so that a backup of the database holds no key. A token's data key is a
-- row made when data arrives for the token and deleted in the transaction that deletes the data
-- it sealed: the parts left in free pages, the log or a backup no longer open. Each wrap records
-- the master-key version it was made under.
CREATE TABLE keyring.token_keys (
    token_id        TEXT PRIMARY KEY,
    wrapped         BLOB NOT NULL,
    master_version  INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL
) WITHOUT ROWID;

-- Only tokens that hold data keep a key; the others' keys sealed nothing that is still held.
INSERT INTO keyring.token_keys (token_id, wrapped, master_version, created_ms)
SELECT t.token_id, t.data_key, 1, t.created_ms FROM tokens t
WHERE EXISTS (SELECT 1 FROM token_data d WHERE d.token_id = t.token_id);

ALTER TABLE tokens DROP COLUMN data_key;

-- The shred sweep: DELETED tokens by the time they were deleted, parts by token.
CREATE INDEX tokens_deleted ON tokens (updated_ms) WHERE state = 'DELETED';
