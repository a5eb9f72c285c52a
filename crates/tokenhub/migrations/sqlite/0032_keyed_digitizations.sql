-- A digitization sent with an Idempotency-Key is found again by its correlation id (derived from
-- the key, `dgt-` and a hash): only those tokens are indexed.
CREATE INDEX tokens_keyed_digitization ON tokens (correlation_id) WHERE correlation_id LIKE 'dgt-%';
