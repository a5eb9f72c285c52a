-- The rate (calls per second) a TSP agreed to take from the hub; NULL: no limit.
ALTER TABLE tsps ADD COLUMN rate_limit INTEGER;
