-- A requestor's updates being sent (claimed, lease running): counted at each claim so that
-- `maxInFlight` holds however the claims are made. Rows waiting for a retry are not in it, so
-- the count reads only the rows in flight however long a requestor's backlog. (The TSP rate
-- buckets of PostgreSQL are not needed here: a single node paces in process.)
CREATE INDEX notifications_in_flight ON notifications (requestor_id, locked_until_ms)
    WHERE state = 'PENDING' AND locked_until_ms > 0;
