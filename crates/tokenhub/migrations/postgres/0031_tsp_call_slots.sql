-- A TSP's agreed rate as a ceiling: instead of a token bucket (whose credit after a lull let a
-- second see more calls than the rate), each call gets a slot, evenly spaced a little under the
-- rate. The row keeps the next free slot, by the database's own clock, so the nodes' clocks do
-- not matter; every node reserves its slots from it with one statement. Only the primary key is
-- indexed and half of each page is left free, so the frequent updates of a row stay on its page
-- (HOT) and touch no index.
DROP TABLE tsp_rate_buckets;
CREATE TABLE tsp_call_slots (
    tsp_id    TEXT PRIMARY KEY REFERENCES tsps (tsp_id),
    next_slot TIMESTAMPTZ NOT NULL
) WITH (fillfactor = 50);
