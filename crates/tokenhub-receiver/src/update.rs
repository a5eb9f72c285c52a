//! The body of a token update: the token's full current state (a snapshot, not a delta).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The longest identifier (`tokenId`, `merchantId`) accepted.
const MAX_ID_LEN: usize = 256;

/// A token's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TokenState {
    /// Usable for payments.
    Active,
    /// Temporarily unusable.
    Suspended,
    /// Gone for good.
    Deleted,
}

impl TokenState {
    /// `ACTIVE`, `SUSPENDED` or `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "ACTIVE",
            TokenState::Suspended => "SUSPENDED",
            TokenState::Deleted => "DELETED",
        }
    }
}

impl fmt::Display for TokenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TokenState {
    type Err = UpdateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ACTIVE" => Ok(TokenState::Active),
            "SUSPENDED" => Ok(TokenState::Suspended),
            "DELETED" => Ok(TokenState::Deleted),
            _ => Err(UpdateError::Invalid("tokenState")),
        }
    }
}

/// A body that is not a token update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// Not JSON of the expected shape (serde's message: a position and what was expected).
    #[error("the body is not a token update: {0}")]
    Json(String),
    /// A field has an unusable value.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// One token update as the hub sends it to `POST /notify-token-update`.
///
/// JSON in camelCase; every field but `tokenId`, `merchantId` and `lastUpdateTimestamp` may be
/// null or absent. `lastUpdateTimestamp` is an RFC 3339 date-time; it is kept both parsed
/// ([`TokenUpdate::last_update_timestamp`], for ordering) and as sent
/// ([`TokenUpdate::last_update_timestamp_text`], which serializing writes back unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Wire", into = "Wire")]
pub struct TokenUpdate {
    /// `tokenId`.
    pub token_id: String,
    /// `merchantId`.
    pub merchant_id: String,
    /// `tokenState`.
    pub token_state: Option<TokenState>,
    /// `tokenLastDigits`: the last digits of the token PAN.
    pub token_last_digits: Option<String>,
    /// `tokenExpiryDate`, MMYY.
    pub token_expiry_date: Option<String>,
    /// `cardLastDigits`: the last digits of the card PAN.
    pub card_last_digits: Option<String>,
    /// `cardExpiryDate`, MMYY.
    pub card_expiry_date: Option<String>,
    /// `cardArtId`.
    pub card_art_id: Option<String>,
    /// `lastUpdateTimestamp`, parsed: the order of updates of one token.
    pub last_update_timestamp: DateTime<Utc>,
    /// `lastUpdateTimestamp` as it was sent.
    pub last_update_timestamp_text: String,
}

impl TokenUpdate {
    /// Parses a request body.
    pub fn from_json(body: &[u8]) -> Result<Self, UpdateError> {
        let wire: Wire =
            serde_json::from_slice(body).map_err(|e| UpdateError::Json(e.to_string()))?;
        Self::try_from(wire)
    }

    /// The JSON body, as the hub would send it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a token update serializes")
    }

    /// Whether this update's `tokenLastDigits` differs from `previous`'s, both being known: the
    /// token PAN changed, a copy of the old one must go.
    pub fn token_pan_changed_from(&self, previous: &TokenUpdate) -> bool {
        match (&previous.token_last_digits, &self.token_last_digits) {
            (Some(before), Some(after)) => before != after,
            _ => false,
        }
    }
}

/// Parses an RFC 3339 date-time into UTC.
pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, UpdateError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| UpdateError::Invalid("lastUpdateTimestamp"))
}

/// The JSON as it travels.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    token_id: String,
    merchant_id: String,
    #[serde(default)]
    token_state: Option<TokenState>,
    #[serde(default)]
    token_last_digits: Option<String>,
    #[serde(default)]
    token_expiry_date: Option<String>,
    #[serde(default)]
    card_last_digits: Option<String>,
    #[serde(default)]
    card_expiry_date: Option<String>,
    #[serde(default)]
    card_art_id: Option<String>,
    last_update_timestamp: String,
}

impl TryFrom<Wire> for TokenUpdate {
    type Error = UpdateError;

    fn try_from(w: Wire) -> Result<Self, Self::Error> {
        if w.token_id.is_empty() || w.token_id.len() > MAX_ID_LEN {
            return Err(UpdateError::Invalid("tokenId"));
        }
        if w.merchant_id.is_empty() || w.merchant_id.len() > MAX_ID_LEN {
            return Err(UpdateError::Invalid("merchantId"));
        }
        let last_update_timestamp = parse_timestamp(&w.last_update_timestamp)?;
        Ok(TokenUpdate {
            token_id: w.token_id,
            merchant_id: w.merchant_id,
            token_state: w.token_state,
            token_last_digits: w.token_last_digits,
            token_expiry_date: w.token_expiry_date,
            card_last_digits: w.card_last_digits,
            card_expiry_date: w.card_expiry_date,
            card_art_id: w.card_art_id,
            last_update_timestamp,
            last_update_timestamp_text: w.last_update_timestamp,
        })
    }
}

impl From<TokenUpdate> for Wire {
    fn from(u: TokenUpdate) -> Self {
        Wire {
            token_id: u.token_id,
            merchant_id: u.merchant_id,
            token_state: u.token_state,
            token_last_digits: u.token_last_digits,
            token_expiry_date: u.token_expiry_date,
            card_last_digits: u.card_last_digits,
            card_expiry_date: u.card_expiry_date,
            card_art_id: u.card_art_id,
            last_update_timestamp: u.last_update_timestamp_text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_body_parses_and_round_trips() {
        let body = br#"{"tokenId":"TKN0001","merchantId":"MERCHANT-0001","tokenState":"SUSPENDED","lastUpdateTimestamp":"2026-11-25T10:00:00.000Z"}"#;
        let u = TokenUpdate::from_json(body).unwrap();
        assert_eq!(u.token_id, "TKN0001");
        assert_eq!(u.token_state, Some(TokenState::Suspended));
        assert_eq!(u.token_last_digits, None);
        assert_eq!(
            u.last_update_timestamp,
            "2026-11-25T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(u.last_update_timestamp_text, "2026-11-25T10:00:00.000Z");
        let again = TokenUpdate::from_json(u.to_json().as_bytes()).unwrap();
        assert_eq!(again, u);
        assert!(u.to_json().contains("\"2026-11-25T10:00:00.000Z\""));
    }

    #[test]
    fn nulls_offsets_and_fractions_are_understood() {
        let body = br#"{"tokenId":"T","merchantId":"M","tokenState":null,"tokenLastDigits":"1234","cardArtId":null,"lastUpdateTimestamp":"2026-11-25T11:00:00.5+01:00"}"#;
        let u = TokenUpdate::from_json(body).unwrap();
        assert_eq!(u.token_state, None);
        assert_eq!(u.token_last_digits.as_deref(), Some("1234"));
        assert_eq!(
            u.last_update_timestamp,
            "2026-11-25T10:00:00.500Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn bad_bodies_are_refused() {
        for body in [
            &br#"not json"#[..],
            br#"{"merchantId":"M","lastUpdateTimestamp":"2026-11-25T10:00:00Z"}"#,
            br#"{"tokenId":"T","merchantId":"M"}"#,
            br#"{"tokenId":"T","merchantId":"M","lastUpdateTimestamp":"yesterday"}"#,
            br#"{"tokenId":"T","merchantId":"M","lastUpdateTimestamp":"2026-11-25T10:00:00"}"#,
            br#"{"tokenId":"","merchantId":"M","lastUpdateTimestamp":"2026-11-25T10:00:00Z"}"#,
            br#"{"tokenId":"T","merchantId":"M","tokenState":"GONE","lastUpdateTimestamp":"2026-11-25T10:00:00Z"}"#,
        ] {
            assert!(
                TokenUpdate::from_json(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_pan_change_needs_both_digits_known() {
        let mut a = TokenUpdate::from_json(
            br#"{"tokenId":"T","merchantId":"M","tokenLastDigits":"1111","lastUpdateTimestamp":"2026-11-25T10:00:00Z"}"#,
        )
        .unwrap();
        let mut b = a.clone();
        assert!(!b.token_pan_changed_from(&a));
        b.token_last_digits = Some("2222".into());
        assert!(b.token_pan_changed_from(&a));
        b.token_last_digits = None;
        assert!(!b.token_pan_changed_from(&a));
        a.token_last_digits = None;
        b.token_last_digits = Some("2222".into());
        assert!(!b.token_pan_changed_from(&a));
    }
}
