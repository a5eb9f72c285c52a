-- The admin's reads of a requestor's or a token's updates read only the rows they return: the
-- lists newest first (a requestor's in one state, its dead letters among them; a token's), a
-- requestor's counts by state from the indexes alone, and the dead rows per requestor. Pending
-- rows have their own partial indexes (0018), which the claims follow; these hold only the
-- settled rows, so that no claim's plan can pick them (a query names `state <> 'PENDING'` to
-- use them).
CREATE INDEX notifications_settled_by_requestor ON notifications (requestor_id, state, id)
    WHERE state <> 'PENDING';
CREATE INDEX notifications_settled_by_token ON notifications (token_id, id)
    WHERE state <> 'PENDING';
