-- The console lists campaigns newest first, a page at a time: read from this index, a page costs
-- its own rows whatever the number of campaigns.
CREATE INDEX campaigns_by_created ON campaigns (created_ms, campaign_id);
