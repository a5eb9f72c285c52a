-- Each TSP's health as the hub's checks found it (the state, the failures in a row, the last
-- check's latency and time, the last change) and when the TSP last checked the hub; written when
-- the state or the failure count changes and now and then otherwise, so every node can show it.
CREATE TABLE tsp_health (
    tsp_id                TEXT PRIMARY KEY REFERENCES tsps (tsp_id),
    state                 TEXT NOT NULL,
    consecutive_failures  INTEGER NOT NULL,
    consecutive_successes INTEGER NOT NULL,
    latency_ms            INTEGER,
    last_check_ms         INTEGER,
    last_change_ms        INTEGER,
    last_hub_check_ms     INTEGER,
    updated_ms            INTEGER NOT NULL
);
