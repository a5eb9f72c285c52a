-- A campaign's counts per step, kept as its tokens move, so that the runner and the admin API read
-- a handful of rows instead of counting the campaign's tokens (a GROUP BY that grew with the
-- campaign, on every tick). SQLite has one writer: triggers update the counts in place.
-- campaign_step_changes is PostgreSQL's queue of changes not yet folded into the counts; it stays
-- empty here, and exists so that both dialects read the counts with the same query.
CREATE TABLE campaign_step_counts (
    campaign_id TEXT NOT NULL,
    step        TEXT NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, step)
);
CREATE TABLE campaign_step_changes (
    campaign_id TEXT NOT NULL,
    step        TEXT NOT NULL,
    delta       INTEGER NOT NULL
);
CREATE INDEX campaign_step_changes_by_campaign ON campaign_step_changes (campaign_id);

INSERT INTO campaign_step_counts (campaign_id, step, n)
    SELECT campaign_id, step, COUNT(*) FROM campaign_tokens GROUP BY campaign_id, step;

CREATE TRIGGER campaign_tokens_counted_on_insert AFTER INSERT ON campaign_tokens
BEGIN
    INSERT INTO campaign_step_counts (campaign_id, step, n) VALUES (NEW.campaign_id, NEW.step, 1)
        ON CONFLICT (campaign_id, step) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER campaign_tokens_counted_on_update AFTER UPDATE OF step ON campaign_tokens
WHEN OLD.step <> NEW.step
BEGIN
    UPDATE campaign_step_counts SET n = n - 1 WHERE campaign_id = OLD.campaign_id AND step = OLD.step;
    INSERT INTO campaign_step_counts (campaign_id, step, n) VALUES (NEW.campaign_id, NEW.step, 1)
        ON CONFLICT (campaign_id, step) DO UPDATE SET n = n + 1;
END;

-- The canary is judged once: after it passed, the runner no longer looks at its tokens.
ALTER TABLE campaigns ADD COLUMN canary_passed_ms INTEGER;
