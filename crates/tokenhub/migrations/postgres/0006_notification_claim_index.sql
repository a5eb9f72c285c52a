-- Claims read a requestor's pending updates in id order and stop at the first due ones: an index
-- in that order keeps a claim's cost flat however long the backlog. The next due time is looked
-- up by state and time.
DROP INDEX notifications_due;
CREATE INDEX notifications_claim ON notifications (requestor_id, state, id);
CREATE INDEX notifications_next_due ON notifications (state, next_attempt_ms);
