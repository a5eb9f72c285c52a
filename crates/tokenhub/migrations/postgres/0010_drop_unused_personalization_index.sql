-- Nothing looks personalizations up by (state, next_offer_ms) any more: devices by device_id, the
-- delivery sweep by its two indexes of 0008. One index less to write for each personalization
-- stored, offered or settled.
DROP INDEX IF EXISTS personalizations_by_state;
