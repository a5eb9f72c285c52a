-- The CA certificates (PEM) a requestor's server certificate is issued from, trusted for the
-- hub's deliveries to it besides the public roots.
ALTER TABLE token_requestors ADD COLUMN server_ca_pem TEXT;
