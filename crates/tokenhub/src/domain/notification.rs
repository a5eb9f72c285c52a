//! Token updates owed to token requestors (merchants, PSPs keeping tokens on file), and the
//! requestors themselves.

use super::named::named_enum;

named_enum! {
    /// Where a token update stands.
    pub enum NotificationState ("a notification state") {
        /// Waiting to be delivered (or being delivered, while its lease holds).
        Pending = "PENDING",
        Delivered = "DELIVERED",
        /// Refused for good (400, 401, 404, …) or out of retries: the dead-letter list, replayable.
        Dead = "DEAD",
        /// Replaced by a newer update of the same token before it was sent.
        Superseded = "SUPERSEDED",
    }
}

named_enum! {
    /// A requestor's endpoint is enabled until it answers `410 Gone` (or an operator disables it).
    pub enum RequestorState ("a requestor state") {
        Enabled = "ENABLED",
        Disabled = "DISABLED",
    }
}

/// A token requestor. `credentials` (the API key and the signing secrets) are sealed under the
/// master key; only `keys` opens them.
#[derive(Clone)]
pub struct Requestor {
    pub requestor_id: String,
    pub merchant_id: String,
    pub base_url: String,
    pub credentials: super::Wrapped,
    pub secret_count: i64,
    pub max_in_flight: i64,
    /// The CAs (PEM) its server certificate is issued from, trusted besides the public roots.
    pub server_ca_pem: Option<String>,
    pub state: RequestorState,
    pub disabled_reason: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl std::fmt::Debug for Requestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requestor")
            .field("requestor_id", &self.requestor_id)
            .field("base_url", &self.base_url)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// A token update and where its delivery stands.
#[derive(Debug, Clone)]
pub struct Notification {
    pub id: i64,
    pub webhook_id: String,
    pub requestor_id: String,
    pub token_id: String,
    pub correlation_id: String,
    /// The JSON body sent.
    pub payload: String,
    pub last_update_ms: i64,
    pub state: NotificationState,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub delivered_ms: Option<i64>,
    /// The row's claim version as read (the one a claim set, for a claimed row).
    pub claim_version: i64,
}

/// A new update to deliver.
#[derive(Debug, Clone, Copy)]
pub struct NewNotification<'a> {
    pub webhook_id: &'a str,
    pub requestor_id: &'a str,
    pub token_id: &'a str,
    pub correlation_id: &'a str,
    pub payload: &'a str,
    pub last_update_ms: i64,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    Delivered,
    /// Try again at `next_attempt_ms`.
    Retry {
        next_attempt_ms: i64,
    },
    /// Refused for good, or out of retries.
    Dead,
    /// The endpoint is gone: the update waits, untried, until the endpoint is enabled again.
    Hold,
}

/// One attempt and its outcome, to record.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub id: i64,
    /// The claim's version: the outcome is recorded only while the row still holds it.
    pub claim_version: i64,
    pub outcome: Settle,
    /// The HTTP status the requestor answered, if it answered.
    pub status: Option<i64>,
    pub error: Option<String>,
    pub started_ms: i64,
    pub ended_ms: i64,
}

/// One attempt at delivering an update.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at_ms: i64,
    pub duration_ms: i64,
    /// The HTTP status the requestor answered, if it answered.
    pub status: Option<i64>,
    pub error: Option<String>,
}

/// Which updates to list: a token's, or else a requestor's (one of the two is named).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub requestor_id: Option<String>,
    pub token_id: Option<String>,
    pub state: Option<NotificationState>,
    pub limit: i64,
}
