//! Re-personalization campaigns: deploying a profile version with a campaign re-personalizes
//! every token that is ACTIVE on the product at that moment ([`create`]); the runner
//! ([`tick`], driven by `workers`) starts tokens at the campaign's rate, keeps at most
//! `maxInFlight` under way, runs a canary first (the first `canaryPercent` %: the campaign pauses
//! by itself when their failure rate passes `canaryMaxFailurePercent`), and completes when every
//! token is settled.
//!
//! What the campaign does not cover: a token SUSPENDED or DELETED when its turn comes is SKIPPED
//! (left on its version; the report lists it); a token provisioned while the campaign runs is built
//! with the deployed version already, so it needs no re-personalization.

use crate::domain::campaign::{Campaign, CampaignState, ReportLine, Step};
use crate::error::Error;
use crate::hub::Hub;
use crate::store::Tx;
use std::collections::HashMap;
use tracing::Instrument;

/// The settings a deploy may carry.
#[derive(Debug, Clone, Copy, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CampaignSettings {
    /// Tokens started (repersoToken calls to the TSP) per second.
    #[serde(default = "default_rate")]
    pub rate_per_second: u32,
    /// Tokens under way at once.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: u32,
    /// The first this-many percent of the tokens run first, as a canary.
    #[serde(default)]
    pub canary_percent: u32,
    /// The campaign pauses by itself when more than this percent of the canary fails.
    #[serde(default = "default_canary_failure")]
    pub canary_max_failure_percent: u32,
}

fn default_rate() -> u32 {
    50
}
fn default_in_flight() -> u32 {
    200
}
fn default_canary_failure() -> u32 {
    10
}

impl CampaignSettings {
    pub fn check(&self) -> Result<(), String> {
        if self.rate_per_second == 0 || self.max_in_flight == 0 {
            return Err("ratePerSecond and maxInFlight must be at least 1".into());
        }
        if self.canary_percent > 100 || self.canary_max_failure_percent > 100 {
            return Err(
                "canaryPercent and canaryMaxFailurePercent are percentages (0 to 100)".into(),
            );
        }
        Ok(())
    }
}

/// Inside the deploy's transaction: creates the campaign over the product's ACTIVE tokens.
pub async fn create(
    conn: &mut Tx,
    issuer_id: &str,
    product_id: &str,
    version: &str,
    s: CampaignSettings,
    now: i64,
) -> Result<Campaign, Error> {
    let mut c = Campaign {
        campaign_id: format!("cmp_{}", uuid::Uuid::new_v4().simple()),
        issuer_id: issuer_id.to_string(),
        product_id: product_id.to_string(),
        profile_version: version.to_string(),
        state: CampaignState::Running,
        state_reason: None,
        rate_per_second: s.rate_per_second as i64,
        max_in_flight: s.max_in_flight as i64,
        canary_percent: s.canary_percent as i64,
        canary_size: 0,
        canary_max_failure_percent: s.canary_max_failure_percent as i64,
        total: 0,
        created_ms: now,
        updated_ms: now,
        finished_ms: None,
        canary_passed_ms: None,
    };
    c.total = conn.create_campaign(&c).await?;
    c.canary_size = (c.total * c.canary_percent + 99) / 100;
    conn.set_campaign_canary_size(&c.campaign_id, c.canary_size)
        .await?;
    Ok(c)
}

/// One step of every running campaign; whether one runs.
pub async fn tick(hub: &Hub) -> Result<bool, Error> {
    let running = hub.store.running_campaigns().await?;
    for id in &running {
        let now = hub.now_ms();
        let campaign_id = id.clone();
        let allowance = {
            let Some(c) = hub.store.campaign(id).await? else {
                continue;
            };
            hub.campaign_pacer.allowance(id, c.rate_per_second, now)
        };
        let started = hub
            .store
            .transact(move |conn| {
                let span = tracing::info_span!("campaign", campaign_id = %campaign_id);
                Box::pin(
                    async move { step_campaign(conn, &campaign_id, allowance, now).await }
                        .instrument(span),
                )
            })
            .await?;
        hub.campaign_pacer.spend(id, started);
        if started > 0 {
            hub.outbox_wake.notify_one();
        }
    }
    Ok(!running.is_empty())
}

async fn step_campaign(
    conn: &mut Tx,
    campaign_id: &str,
    allowance: i64,
    now: i64,
) -> Result<i64, Error> {
    let Some(c) = conn.lock_campaign(campaign_id).await? else {
        return Ok(0);
    };
    if c.state != CampaignState::Running {
        return Ok(0);
    }
    conn.fold_step_changes(campaign_id).await?;
    let counts: HashMap<Step, i64> = conn
        .campaign_steps(campaign_id)
        .await?
        .into_iter()
        .collect();
    let count = |s: Step| counts.get(&s).copied().unwrap_or(0);
    let in_flight = count(Step::Recovering) + count(Step::Delivering);
    let queued = count(Step::Queued);
    if queued == 0 && in_flight == 0 {
        conn.set_campaign_state(campaign_id, CampaignState::Completed, None, now)
            .await?;
        tracing::info!("campaign completed");
        return Ok(0);
    }
    let started_so_far = c.total - queued;
    let mut limit = allowance.min(c.max_in_flight - in_flight).min(queued);
    if c.canary_passed_ms.is_some() {
        // Judged and passed: the canary is behind.
    } else if c.canary_size > 0 && started_so_far >= c.canary_size {
        let (failed, finished) = conn.canary_outcome(campaign_id, c.canary_size).await?;
        if finished < c.canary_size {
            // The canary is still running: nothing else starts until it is judged.
            limit = 0;
        } else if failed * 100 > c.canary_max_failure_percent * c.canary_size {
            let why = format!(
                "{CANARY_REASON} {failed} of {} failed, over the {}% allowed",
                c.canary_size, c.canary_max_failure_percent
            );
            tracing::warn!(reason = %why, "campaign paused by its canary");
            conn.set_campaign_state(campaign_id, CampaignState::Paused, Some(&why), now)
                .await?;
            return Ok(0);
        } else {
            conn.set_canary_passed(campaign_id, now).await?;
        }
    } else if c.canary_size > 0 {
        limit = limit.min(c.canary_size - started_so_far);
    }
    if limit <= 0 {
        return Ok(0);
    }
    start_tokens(conn, campaign_id, &c.profile_version, limit, now).await
}

/// Starts the next `limit` queued tokens of the campaign (those that cannot start are skipped).
/// Returns how many started.
async fn start_tokens(
    conn: &mut Tx,
    campaign_id: &str,
    version: &str,
    limit: i64,
    now: i64,
) -> Result<i64, Error> {
    let mut started = 0;
    let mut next = conn.next_queued_tokens(campaign_id, limit).await?;
    // Tokens are locked in the order of their ids, as every path that locks several.
    next.sort_unstable();
    for token_id in next {
        let token = conn.lock_token(&token_id).await?;
        let ok = match &token {
            Some(t) => {
                crate::flows::reperso::start(conn, t, version, Some(campaign_id), now).await?
            }
            None => false,
        };
        if ok {
            conn.set_campaign_step(campaign_id, &token_id, Step::Recovering, None, now)
                .await?;
            started += 1;
        } else {
            let why = match &token {
                Some(t) => format!(
                    "not re-personalized: the token is {} or busy",
                    t.state.as_str()
                ),
                None => "the token no longer exists".into(),
            };
            conn.set_campaign_step(campaign_id, &token_id, Step::Skipped, Some(&why), now)
                .await?;
        }
    }
    Ok(started)
}

/// How the reason of a campaign its canary paused begins.
const CANARY_REASON: &str = "canary:";

/// Operator commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    Cancel,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no such campaign")]
    NotFound,
    #[error("the campaign is {0}")]
    Finished(CampaignState),
    #[error(transparent)]
    Internal(#[from] Error),
}

impl From<crate::store::StoreError> for CommandError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(e.into())
    }
}

pub async fn command(hub: &Hub, campaign_id: &str, cmd: Command) -> Result<(), CommandError> {
    let now = hub.now_ms();
    let id = campaign_id.to_string();
    hub.store
        .transact(move |conn| {
            Box::pin(async move {
                let Some(c) = conn.lock_campaign(&id).await? else {
                    return Err(CommandError::NotFound);
                };
                if c.state.is_finished() {
                    return Err(CommandError::Finished(c.state));
                }
                match cmd {
                    Command::Pause => {
                        conn.set_campaign_state(
                            &id,
                            CampaignState::Paused,
                            Some("paused by the operator"),
                            now,
                        )
                        .await?
                    }
                    Command::Resume => {
                        // Resuming a campaign its canary stopped is the operator's decision to
                        // go on: the canary is not judged again.
                        if c.canary_passed_ms.is_none()
                            && c.state_reason
                                .as_deref()
                                .is_some_and(|r| r.starts_with(CANARY_REASON))
                        {
                            conn.set_canary_passed(&id, now).await?;
                        }
                        conn.set_campaign_state(&id, CampaignState::Running, None, now)
                            .await?
                    }
                    Command::Cancel => {
                        // Tokens under way finish; the others stay on their version.
                        conn.cancel_queued_tokens(&id, now).await?;
                        conn.set_campaign_state(
                            &id,
                            CampaignState::Cancelled,
                            Some("cancelled by the operator"),
                            now,
                        )
                        .await?;
                    }
                }
                Ok(())
            })
        })
        .await
}

/// A campaign and its tokens per step.
pub async fn get(
    hub: &Hub,
    campaign_id: &str,
) -> Result<Option<(Campaign, Vec<(Step, i64)>)>, Error> {
    let Some(c) = hub.store.campaign(campaign_id).await? else {
        return Ok(None);
    };
    let steps = hub.store.campaign_steps(campaign_id).await?;
    Ok(Some((c, steps)))
}

/// Every token the campaign failed or skipped, in the campaign's order; `None` if there is no
/// such campaign.
pub async fn report(hub: &Hub, campaign_id: &str) -> Result<Option<Vec<ReportLine>>, Error> {
    if hub.store.campaign(campaign_id).await?.is_none() {
        return Ok(None);
    }
    Ok(Some(hub.store.campaign_report(campaign_id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let s = |r, m, c, f| CampaignSettings {
            rate_per_second: r,
            max_in_flight: m,
            canary_percent: c,
            canary_max_failure_percent: f,
        };
        assert!(s(1, 1, 0, 0).check().is_ok());
        assert!(s(0, 1, 0, 0).check().is_err());
        assert!(s(1, 0, 0, 0).check().is_err());
        assert!(s(1, 1, 101, 0).check().is_err());
    }
}
