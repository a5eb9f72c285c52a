//! Re-personalization campaigns: a new profile version rolled out over a product's tokens, token
//! by token.

use super::named::named_enum;

named_enum! {
    /// Where a campaign stands.
    pub enum CampaignState ("a campaign state") {
        Running = "RUNNING",
        Paused = "PAUSED",
        Completed = "COMPLETED",
        Cancelled = "CANCELLED",
    }
}

impl CampaignState {
    /// Whether the campaign is over (no command changes it any more).
    pub fn is_finished(self) -> bool {
        matches!(self, CampaignState::Completed | CampaignState::Cancelled)
    }
}

named_enum! {
    /// Where one token of a campaign stands.
    pub enum Step ("a campaign step") {
        /// Waiting for its turn.
        Queued = "QUEUED",
        /// `repersoToken` sent (or queued); waiting for the TSP's `/newData`.
        Recovering = "RECOVERING",
        /// Rebuilt with the new version; waiting for the device.
        Delivering = "DELIVERING",
        Done = "DONE",
        Failed = "FAILED",
        /// Not ACTIVE (or busy) when its turn came: left on its version.
        Skipped = "SKIPPED",
        /// The campaign was cancelled before its turn.
        Cancelled = "CANCELLED",
    }
}

/// A campaign's settings and state.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub campaign_id: String,
    pub issuer_id: String,
    pub product_id: String,
    pub profile_version: String,
    pub state: CampaignState,
    pub state_reason: Option<String>,
    pub rate_per_second: i64,
    pub max_in_flight: i64,
    pub canary_percent: i64,
    pub canary_size: i64,
    pub canary_max_failure_percent: i64,
    pub total: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub finished_ms: Option<i64>,
    /// When the canary was judged and passed (the runner stops looking at it).
    pub canary_passed_ms: Option<i64>,
}

/// One failed (or skipped) token of a campaign, for the report.
#[derive(Debug, Clone)]
pub struct ReportLine {
    pub token_id: String,
    pub step: Step,
    pub reason: String,
}
