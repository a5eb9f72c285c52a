//! The token lifecycle and which TSP operations each state allows.

use super::ids::{Code, Rejection};
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
