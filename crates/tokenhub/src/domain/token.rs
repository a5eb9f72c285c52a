//! The token lifecycle and which TSP operations each state allows.

use super::ids::{Code, Rejection};
use super::lifecycle::{CardInfo, TokenChange};
use serde::{Deserialize, Serialize};

/// Token states, as the admin API reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TokenState {
    /// Created at the TSP, waiting for its data preparation (`/data`).
    PendingData,
    /// Every required element is in; the profile is being built and delivered to the device.
    Personalizing,
    Active,
    Suspended,
    /// Terminal.
    Deleted,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingData => "PENDING_DATA",
            Self::Personalizing => "PERSONALIZING",
            Self::Active => "ACTIVE",
            Self::Suspended => "SUSPENDED",
            Self::Deleted => "DELETED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PENDING_DATA" => Self::PendingData,
            "PERSONALIZING" => Self::Personalizing,
            "ACTIVE" => Self::Active,
            "SUSPENDED" => Self::Suspended,
            "DELETED" => Self::Deleted,
            _ => return None,
        })
    }
}

/// What the hub knows of a token when a TSP operation arrives: enough to decide, nothing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSnapshot {
    pub state: TokenState,
    /// Until when (ms since the epoch) the hub accepts `/data` after `createToken`.
    pub data_deadline_ms: i64,
}

/// May `/data` be applied to this token now? (432 once personalized or deleted,
/// 321 while its profile is being delivered, 322 after the time to live.)
pub fn check_submit_data(token: &TokenSnapshot, now_ms: i64) -> Result<(), Rejection> {
    match token.state {
        TokenState::PendingData if now_ms > token.data_deadline_ms => Err(Rejection::new(
            Code::Expired,
            "the time to live for this token's data preparation has expired",
        )),
        TokenState::PendingData => Ok(()),
        TokenState::Personalizing => Err(Rejection::new(
            Code::Ongoing,
            "the token's profile is being delivered to the device",
        )),
        TokenState::Active | TokenState::Suspended => Err(Rejection::new(
            Code::StateForbids,
            "the token is already personalized",
        )),
        TokenState::Deleted => Err(Rejection::new(Code::StateForbids, "the token is deleted")),
    }
}

/// May `/newData` be applied to this token now? It replaces the data of a personalized token (a
/// recovery the hub asked for, or a renewal the TSP starts); a token still waiting for its first
/// data must get `/data`.
pub fn check_submit_new_data(token: &TokenSnapshot) -> Result<(), Rejection> {
    match token.state {
        TokenState::Active | TokenState::Suspended => Ok(()),
        TokenState::Personalizing => Err(Rejection::new(
            Code::Ongoing,
            "the token's profile is being delivered to the device",
        )),
        TokenState::PendingData => Err(Rejection::new(
            Code::StateForbids,
            "the token is not personalized yet: send its data with /data",
        )),
        TokenState::Deleted => Err(Rejection::new(Code::StateForbids, "the token is deleted")),
    }
}

/// A token as the hub holds it. Its data key is a row of its own (`store/token_keys.rs`), held
/// only while the token holds data.
#[derive(Clone)]
pub struct TokenRow {
    pub token_id: String,
    pub issuer_id: String,
    pub product_id: String,
    pub profile_version: String,
    pub device_id: String,
    pub wallet_card_ref_id: String,
    pub token_requestor_id: Option<String>,
    pub state: TokenState,
    pub token_exp: Option<String>,
    pub token_last4: Option<String>,
    pub data_deadline_ms: i64,
    /// Lower-case names of the elements held, sorted.
    pub received_elements: Vec<String>,
    pub correlation_id: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Why the token's personalization failed, if it did.
    pub failure_reason: Option<String>,
    /// The re-personalization under way, if any: the TSP was asked to recover the token's data.
    pub recovery: Option<Recovery>,
    /// What the issuer said of the funding card (never its number).
    pub card: CardInfo,
    /// The `lastUpdateTimestamp` (ms since the epoch) of the newest change the hub holds.
    pub last_update_ms: Option<i64>,
}

/// An open recovery: the hub asked the TSP (`repersoToken`) to send the token's existing data
/// again (`/newData`, same `x-correlation-id`) to rebuild it with `target_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub correlation_id: String,
    pub target_version: String,
    /// Until when `/newData` is accepted; `None` until the TSP acknowledged `repersoToken`.
    pub deadline_ms: Option<i64>,
    pub campaign_id: Option<String>,
}

impl std::fmt::Debug for TokenRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRow")
            .field("token_id", &self.token_id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl TokenRow {
    /// The token as a lifecycle change leaves it.
    pub fn with_change(&self, change: &TokenChange, last_update_ms: i64) -> TokenRow {
        let mut t = self.clone();
        let keep = |new: &Option<String>, old: &mut Option<String>| {
            if new.is_some() {
                old.clone_from(new);
            }
        };
        if let Some(s) = change.state {
            t.state = s;
        }
        keep(&change.token_exp, &mut t.token_exp);
        keep(&change.token_last4, &mut t.token_last4);
        keep(&change.card.last_digits, &mut t.card.last_digits);
        keep(&change.card.expiry_date, &mut t.card.expiry_date);
        keep(&change.card.art_id, &mut t.card.art_id);
        t.last_update_ms = Some(last_update_ms);
        t
    }

    pub fn snapshot(&self) -> TokenSnapshot {
        TokenSnapshot {
            state: self.state,
            data_deadline_ms: self.data_deadline_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(state: TokenState) -> TokenSnapshot {
        TokenSnapshot {
            state,
            data_deadline_ms: 1_000,
        }
    }

    #[test]
    fn data_is_accepted_only_while_pending_and_within_the_ttl() {
        assert!(check_submit_data(&snap(TokenState::PendingData), 1_000).is_ok());
        let expired = check_submit_data(&snap(TokenState::PendingData), 1_001).unwrap_err();
        assert_eq!(expired.code, Code::Expired);
        let cases = [
            (TokenState::Personalizing, Code::Ongoing),
            (TokenState::Active, Code::StateForbids),
            (TokenState::Suspended, Code::StateForbids),
            (TokenState::Deleted, Code::StateForbids),
        ];
        for (state, code) in cases {
            assert_eq!(check_submit_data(&snap(state), 0).unwrap_err().code, code);
        }
    }

    #[test]
    fn new_data_needs_a_personalized_token() {
        assert!(check_submit_new_data(&snap(TokenState::Active)).is_ok());
        assert!(check_submit_new_data(&snap(TokenState::Suspended)).is_ok());
        let cases = [
            (TokenState::PendingData, Code::StateForbids),
            (TokenState::Personalizing, Code::Ongoing),
            (TokenState::Deleted, Code::StateForbids),
        ];
        for (state, code) in cases {
            assert_eq!(check_submit_new_data(&snap(state)).unwrap_err().code, code);
        }
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in [
            TokenState::PendingData,
            TokenState::Personalizing,
            TokenState::Active,
            TokenState::Suspended,
            TokenState::Deleted,
        ] {
            assert_eq!(TokenState::parse(s.as_str()), Some(s));
        }
    }
}
