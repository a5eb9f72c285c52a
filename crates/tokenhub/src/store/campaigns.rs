//! Re-personalization campaigns and the tokens each covers, step by step.

use super::{query, query_scalar, Row, Store, StoreError, Tx};
use crate::domain::campaign::{Campaign, CampaignState, ReportLine, Step};

pub(super) const COLUMNS: &str = "campaign_id, issuer_id, product_id, profile_version, state, state_reason, \
    rate_per_second, max_in_flight, canary_percent, canary_size, canary_max_failure_percent, total, \
    created_ms, updated_ms, finished_ms, canary_passed_ms";

pub(super) fn from_row(r: &Row) -> Result<Campaign, StoreError> {
    Ok(Campaign {
        campaign_id: r.get("campaign_id")?,
        issuer_id: r.get("issuer_id")?,
        product_id: r.get("product_id")?,
        profile_version: r.get("profile_version")?,
        state: r.get("state")?,
        state_reason: r.get("state_reason")?,
        rate_per_second: r.get("rate_per_second")?,
        max_in_flight: r.get("max_in_flight")?,
        canary_percent: r.get("canary_percent")?,
        canary_size: r.get("canary_size")?,
        canary_max_failure_percent: r.get("canary_max_failure_percent")?,
        total: r.get("total")?,
        created_ms: r.get("created_ms")?,
        updated_ms: r.get("updated_ms")?,
        finished_ms: r.get("finished_ms")?,
        canary_passed_ms: r.get("canary_passed_ms")?,
    })
}

impl Tx {
    /// Creates the campaign over every ACTIVE token of the product not on `profile_version` yet, in
    /// a fixed order (`seq`), and returns how many it covers.
    pub async fn create_campaign(&mut self, c: &Campaign) -> Result<i64, StoreError> {
        query(&format!(
        "INSERT INTO campaigns ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    ))
    .bind(&c.campaign_id)
    .bind(&c.issuer_id)
    .bind(&c.product_id)
    .bind(&c.profile_version)
    .bind(c.state)
    .bind(&c.state_reason)
    .bind(c.rate_per_second)
    .bind(c.max_in_flight)
    .bind(c.canary_percent)
    .bind(c.canary_size)
    .bind(c.canary_max_failure_percent)
    .bind(c.total)
    .bind(c.created_ms)
    .bind(c.updated_ms)
    .bind(c.finished_ms)
    .bind(c.canary_passed_ms)
    .execute(&mut *self)
    .await?;
        // One statement, however many tokens: nothing of them passes through the hub's memory. The
        // campaign's order is the order the product's index gives (no sort of every token).
        let total = query(
            "INSERT INTO campaign_tokens (campaign_id, seq, token_id, step, updated_ms) \
         SELECT $1, ROW_NUMBER() OVER () - 1, token_id, 'QUEUED', $5 FROM tokens \
         WHERE issuer_id = $2 AND product_id = $3 AND state = 'ACTIVE' AND profile_version <> $4",
        )
        .bind(&c.campaign_id)
        .bind(&c.issuer_id)
        .bind(&c.product_id)
        .bind(&c.profile_version)
        .bind(c.created_ms)
        .execute(&mut *self)
        .await?
        .rows_affected() as i64;
        query("UPDATE campaigns SET total = $2 WHERE campaign_id = $1")
            .bind(&c.campaign_id)
            .bind(total)
            .execute(self)
            .await?;
        Ok(total)
    }

    pub async fn lock_campaign(
        &mut self,
        campaign_id: &str,
    ) -> Result<Option<Campaign>, StoreError> {
        super::lock_row(
            self,
            "campaigns",
            COLUMNS,
            "campaign_id",
            campaign_id,
            from_row,
        )
        .await
    }

    /// Records how many tokens the campaign's canary holds (known once its tokens are enrolled).
    pub async fn set_campaign_canary_size(
        &mut self,
        campaign_id: &str,
        size: i64,
    ) -> Result<(), StoreError> {
        query("UPDATE campaigns SET canary_size = $2 WHERE campaign_id = $1")
            .bind(campaign_id)
            .bind(size)
            .execute(self)
            .await?;
        Ok(())
    }

    pub async fn set_campaign_state(
        &mut self,
        campaign_id: &str,
        state: CampaignState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let finished = state.is_finished().then_some(now);
        query(
        "UPDATE campaigns SET state = $2, state_reason = $3, updated_ms = $4, finished_ms = COALESCE(finished_ms, $5) \
         WHERE campaign_id = $1",
    )
    .bind(campaign_id)
    .bind(state)
    .bind(reason)
    .bind(now)
    .bind(finished)
    .execute(self)
    .await?;
        Ok(())
    }

    /// The next `limit` queued tokens, in order.
    pub async fn next_queued_tokens(
        &mut self,
        campaign_id: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        query_scalar(
        "SELECT token_id FROM campaign_tokens WHERE campaign_id = $1 AND step = 'QUEUED' ORDER BY seq LIMIT $2",
    )
    .bind(campaign_id)
    .bind(limit)
    .fetch_all(self)
    .await
    }

    pub async fn set_campaign_step(
        &mut self,
        campaign_id: &str,
        token_id: &str,
        step: Step,
        reason: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        query(
            "UPDATE campaign_tokens SET step = $3, reason = $4, updated_ms = $5, \
         started_ms = CASE WHEN $3 = 'RECOVERING' THEN $5 ELSE started_ms END \
         WHERE campaign_id = $1 AND token_id = $2",
        )
        .bind(campaign_id)
        .bind(token_id)
        .bind(step)
        .bind(reason)
        .bind(now)
        .execute(self)
        .await?;
        Ok(())
    }

    /// Cancels every queued token of the campaign.
    pub async fn cancel_queued_tokens(
        &mut self,
        campaign_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        query(
        "UPDATE campaign_tokens SET step = 'CANCELLED', updated_ms = $2 WHERE campaign_id = $1 AND step = 'QUEUED'",
    )
    .bind(campaign_id)
    .bind(now)
    .execute(self)
    .await?;
        Ok(())
    }

    /// PostgreSQL: folds the campaign's step changes into its counts. The caller holds the
    /// campaign's lock (only one transaction folds a campaign at a time). SQLite's triggers keep the
    /// counts in place: nothing to fold.
    pub async fn fold_step_changes(&mut self, campaign_id: &str) -> Result<(), StoreError> {
        if self.dialect() != super::Dialect::Postgres {
            return Ok(());
        }
        query(
        "WITH moved AS (DELETE FROM campaign_step_changes WHERE campaign_id = $1 RETURNING step, delta) \
         INSERT INTO campaign_step_counts (campaign_id, step, n) \
         SELECT $1, step, SUM(delta) FROM moved GROUP BY step \
         ON CONFLICT (campaign_id, step) DO UPDATE SET n = campaign_step_counts.n + EXCLUDED.n",
    )
    .bind(campaign_id)
    .execute(self)
    .await?;
        Ok(())
    }

    /// Counts per step (see [`step_counts`]).
    pub async fn campaign_steps(
        &mut self,
        campaign_id: &str,
    ) -> Result<Vec<(Step, i64)>, StoreError> {
        step_counts(self, campaign_id).await
    }

    /// Records that the canary passed.
    pub async fn set_canary_passed(
        &mut self,
        campaign_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        query("UPDATE campaigns SET canary_passed_ms = $2 WHERE campaign_id = $1")
            .bind(campaign_id)
            .bind(now)
            .execute(self)
            .await?;
        Ok(())
    }

    /// Failures among the first `n` tokens (the canary), and how many of them finished.
    pub async fn canary_outcome(
        &mut self,
        campaign_id: &str,
        n: i64,
    ) -> Result<(i64, i64), StoreError> {
        let row = query(
        "SELECT COALESCE(SUM(CASE WHEN step = 'FAILED' THEN 1 ELSE 0 END), 0) AS failed, \
         COALESCE(SUM(CASE WHEN step IN ('DONE', 'FAILED', 'SKIPPED') THEN 1 ELSE 0 END), 0) AS finished \
         FROM campaign_tokens WHERE campaign_id = $1 AND seq < $2",
    )
    .bind(campaign_id)
    .bind(n)
    .fetch_one(self)
    .await?;
        Ok((row.get("failed")?, row.get("finished")?))
    }
}

/// Counts per step: the kept counts plus the changes not folded into them yet (PostgreSQL).
async fn step_counts(
    conn: impl Into<super::sql::Exec<'_>>,
    campaign_id: &str,
) -> Result<Vec<(Step, i64)>, StoreError> {
    let rows = query(
        "SELECT step, CAST(SUM(n) AS BIGINT) AS n FROM ( \
             SELECT step, n FROM campaign_step_counts WHERE campaign_id = $1 \
             UNION ALL \
             SELECT step, delta FROM campaign_step_changes WHERE campaign_id = $1 \
         ) c GROUP BY step",
    )
    .bind(campaign_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.get("step")?, r.get("n")?)))
        .collect()
}

impl Store {
    pub async fn campaign(&self, campaign_id: &str) -> Result<Option<Campaign>, StoreError> {
        let row = query(&format!(
            "SELECT {COLUMNS} FROM campaigns WHERE campaign_id = $1"
        ))
        .bind(campaign_id)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn running_campaigns(&self) -> Result<Vec<String>, StoreError> {
        query_scalar(
            "SELECT campaign_id FROM campaigns WHERE state = 'RUNNING' ORDER BY created_ms",
        )
        .fetch_all(self.reader())
        .await
    }

    pub async fn campaign_steps(&self, campaign_id: &str) -> Result<Vec<(Step, i64)>, StoreError> {
        step_counts(self.reader(), campaign_id).await
    }

    /// `seq + 0`: ordered by the primary key, SQLite would read every token of the campaign to
    /// skip those that did not fail; this way it reads the failed and skipped ones from
    /// `campaign_tokens_by_step` and sorts them.
    pub async fn campaign_report(&self, campaign_id: &str) -> Result<Vec<ReportLine>, StoreError> {
        let rows = query(
            "SELECT token_id, step, COALESCE(reason, '') AS reason FROM campaign_tokens WHERE campaign_id = $1 \
             AND step IN ('FAILED', 'SKIPPED') ORDER BY seq + 0",
        )
        .bind(campaign_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReportLine {
                    token_id: r.get("token_id")?,
                    step: r.get("step")?,
                    reason: r.get("reason")?,
                })
            })
            .collect()
    }
}
