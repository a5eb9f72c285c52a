-- A campaign's counts per step, kept as its tokens move, so that the runner and the admin API read
-- a handful of rows instead of counting the campaign's tokens (a GROUP BY that grew with the
-- campaign, on every tick). Many transactions move tokens at once here: updating one counter row
-- from each would make them wait on that row's lock until they commit. Instead, statement
-- triggers append the changes to campaign_step_changes (no row is shared), and the campaign's
-- runner folds them into campaign_step_counts under the campaign's lock; readers add the changes
-- not folded yet.
CREATE TABLE campaign_step_counts (
    campaign_id TEXT NOT NULL,
    step        TEXT NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, step)
);
CREATE TABLE campaign_step_changes (
    campaign_id TEXT NOT NULL,
    step        TEXT NOT NULL,
    delta       BIGINT NOT NULL
);
CREATE INDEX campaign_step_changes_by_campaign ON campaign_step_changes (campaign_id);

INSERT INTO campaign_step_counts (campaign_id, step, n)
    SELECT campaign_id, step, COUNT(*) FROM campaign_tokens GROUP BY campaign_id, step;

CREATE FUNCTION campaign_tokens_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO campaign_step_changes (campaign_id, step, delta)
        SELECT campaign_id, step, COUNT(*) FROM inserted GROUP BY campaign_id, step;
    RETURN NULL;
END
$$;
CREATE TRIGGER campaign_tokens_counted_on_insert AFTER INSERT ON campaign_tokens
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION campaign_tokens_inserted();

CREATE FUNCTION campaign_tokens_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO campaign_step_changes (campaign_id, step, delta)
        SELECT campaign_id, step, SUM(d) FROM (
            SELECT campaign_id, step, -1 AS d FROM before_rows
            UNION ALL
            SELECT campaign_id, step, 1 AS d FROM after_rows
        ) moved
        GROUP BY campaign_id, step
        HAVING SUM(d) <> 0;
    RETURN NULL;
END
$$;
CREATE TRIGGER campaign_tokens_counted_on_update AFTER UPDATE ON campaign_tokens
    REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
    FOR EACH STATEMENT EXECUTE FUNCTION campaign_tokens_updated();

-- The canary is judged once: after it passed, the runner no longer looks at its tokens.
ALTER TABLE campaigns ADD COLUMN canary_passed_ms BIGINT;
