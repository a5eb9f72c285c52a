-- The delivery sweep looks for pending personalizations that expired or ran out of tries: one
-- index for each, so that a sweep costs what is overdue, not every personalization pending.
CREATE INDEX personalizations_expiring ON personalizations (state, expires_ms);
CREATE INDEX personalizations_out_of_tries ON personalizations (state, tries, next_offer_ms);
