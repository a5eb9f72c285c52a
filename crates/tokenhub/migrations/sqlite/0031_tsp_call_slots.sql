-- The TSPs' call slots are a PostgreSQL table, shared by its nodes; a single SQLite node keeps
-- them in process. Nothing changes here; the file keeps the two engines' numbering aligned.
SELECT 1;
