-- A TSP known to send parameters the TSP API does not define: /data and /newData ignore them
-- for it instead of refusing the call with 112.
ALTER TABLE tsps ADD COLUMN accepts_extra_parameters INTEGER NOT NULL DEFAULT 0;
