-- Limits that hold across every node sharing this database.
--
-- A token bucket per TSP: the credit left and when it was last refilled, by the database's own
-- clock, so the nodes' clocks do not matter. Every node takes its units from this row with one
-- statement. Only the primary key is indexed and half of each page is left free, so the
-- frequent updates of a row stay on its page (HOT) and touch no index.
CREATE TABLE tsp_rate_buckets (
    tsp_id      TEXT PRIMARY KEY REFERENCES tsps (tsp_id),
    credit      DOUBLE PRECISION NOT NULL,
    refilled_at TIMESTAMPTZ NOT NULL
) WITH (fillfactor = 50);

-- A requestor's updates being sent (claimed, lease running): counted at each claim so that
-- `maxInFlight` holds across nodes. Rows waiting for a retry are not in it, so the count reads
-- only the rows in flight however long a requestor's backlog.
CREATE INDEX notifications_in_flight ON notifications (requestor_id, locked_until_ms)
    WHERE state = 'PENDING' AND locked_until_ms > 0;
