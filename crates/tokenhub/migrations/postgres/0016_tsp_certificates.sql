-- How the hub recognises a TSP's client certificates (the CAs they are issued from, and the
-- leaf's subject and/or SHA-256 pins of its public key, comma-separated hex), and the CA the
-- TSP's server certificate is issued from. NULL: not set.
ALTER TABLE tsps ADD COLUMN client_ca_pem TEXT;
ALTER TABLE tsps ADD COLUMN client_subject TEXT;
ALTER TABLE tsps ADD COLUMN client_spki_sha256 TEXT;
ALTER TABLE tsps ADD COLUMN server_ca_pem TEXT;
