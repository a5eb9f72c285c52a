-- Claims, the next-due look-up, "the oldest pending update of this token" and superseding read
-- only pending updates: partial indexes of those, by requestor and due time and by token, let a
-- claim read exactly the rows it takes (a claimed row is due again only when its lease ends, so
-- rows being sent sort past "now"). The full indexes also held every delivered row; the planner
-- preferred the primary key for its id order, reading the delivered history before the first
-- pending row, and a partial index by requestor alone for the per-token check.
DROP INDEX notifications_claim;
DROP INDEX notifications_next_due;
DROP INDEX notifications_by_token;
CREATE INDEX notifications_pending ON notifications (requestor_id, next_attempt_ms, id)
    WHERE state = 'PENDING';
CREATE INDEX notifications_pending_by_token ON notifications (token_id, requestor_id, id)
    WHERE state = 'PENDING';
