-- The only query by product and state asks for the ACTIVE tokens (a campaign's selection): a
-- partial index of those replaces the index of every token by (issuer, product, state). A token
-- whose data completes (PENDING_DATA -> PERSONALIZING) no longer moves an index entry: two pages
-- less written per completing call; it gets its entry once, when it becomes ACTIVE.
CREATE INDEX tokens_active_by_product ON tokens (issuer_id, product_id) WHERE state = 'ACTIVE';
DROP INDEX IF EXISTS tokens_by_product_state;
