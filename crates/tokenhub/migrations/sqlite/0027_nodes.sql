-- The hub nodes sharing this database: each running `serve` registers at start, heartbeats, and
-- marks itself stopped on a clean shutdown; a node silent for longer than the claims' lease is
-- not live. Rows of nodes stopped or silent for longer than the nodes' retention are pruned.
CREATE TABLE nodes (
    node_id       TEXT PRIMARY KEY,
    version       TEXT NOT NULL,
    started_ms    INTEGER NOT NULL,
    heartbeat_ms  INTEGER NOT NULL,
    stopped_ms    INTEGER
);

-- The node that last claimed a row: it holds the row while its lease (`locked_until_ms`) runs.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE notifications ADD COLUMN claimed_by TEXT;
