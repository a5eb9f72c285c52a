//! Transactions: the simulated TSP authorizes payments the way a network's token vault checks
//! them — the token must be `ACTIVE`, the cryptogram must be the one its card master key gives
//! (see [`crate::emv`]), and the ATC must be greater than the last one accepted (anything else is
//! a replay).
//!
//! `POST /sim/transactions` `{"tokenId", "atc", "amount", "currency", "unpredictableNumber",
//! "cryptogram"}` → `200 {"approved", "reason"}`. A body that does not parse is answered
//! `400 {"approved": false, "reason": "FORMAT_ERROR"}`, counted like a decline.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::vault::{SimToken, TspTokenState};
use super::SimState;
use crate::emv::{self, TxnData, ARQC_LEN};

/// Where the simulator takes transactions, on its own root (not under the TSP API prefix).
pub const TRANSACTIONS_PATH: &str = "/sim/transactions";

/// A transaction as a device submits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionRequest {
    pub token_id: String,
    /// The ATC the payment application used (it increments before each transaction).
    pub atc: u16,
    /// 12 decimal digits, minor units.
    pub amount: String,
    /// ISO 4217 numeric code, 4 decimal digits.
    pub currency: String,
    /// 8 hexadecimal digits.
    pub unpredictable_number: String,
    /// The ARQC, 16 hexadecimal digits.
    pub cryptogram: String,
}

/// The TSP's answer. `reason` is `APPROVED` or a decline reason ([`TxnReason`]); kept as text so
/// that a client reads a reason it does not know yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionAnswer {
    pub approved: bool,
    pub reason: String,
}

/// Why a transaction was approved or declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnReason {
    Approved,
    /// The ATC is not greater than the last one accepted for the token.
    Replay,
    /// The cryptogram is not the one the token's card master key gives for this data and ATC.
    BadCryptogram,
    UnknownToken,
    /// The token is not `ACTIVE` at the TSP (not yet activated, suspended or deleted).
    TokenNotActive,
    /// The request itself is malformed.
    FormatError,
}

impl TxnReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "APPROVED",
            Self::Replay => "REPLAY",
            Self::BadCryptogram => "BAD_CRYPTOGRAM",
            Self::UnknownToken => "UNKNOWN_TOKEN",
            Self::TokenNotActive => "TOKEN_NOT_ACTIVE",
            Self::FormatError => "FORMAT_ERROR",
        }
    }

    fn answer(self) -> TransactionAnswer {
        TransactionAnswer {
            approved: self == Self::Approved,
            reason: self.as_str().to_string(),
        }
    }
}

/// The checks, in the order a TSP runs them: state, cryptogram, then ATC. The ATC is compared
/// only once the cryptogram proves the application computed it, and recorded only when the
/// transaction is approved, so a forged or replayed transaction never moves it.
pub(crate) fn authorize(token: &mut SimToken, txn: &TxnData, cryptogram: &[u8]) -> TxnReason {
    let reason = if token.state != TspTokenState::Active {
        TxnReason::TokenNotActive
    } else if !emv::verify(&token.clear.cmk_ac, txn, cryptogram) {
        TxnReason::BadCryptogram
    } else if txn.atc <= token.last_atc.unwrap_or(0) {
        // A fresh application starts at ATC 0 and increments before its first transaction, so
        // ATC 0 is never legitimate either.
        TxnReason::Replay
    } else {
        token.last_atc = Some(txn.atc);
        TxnReason::Approved
    };
    if reason == TxnReason::Approved {
        token.approved += 1;
    } else {
        token.declined += 1;
    }
    reason
}

/// The request's fields decoded; `None` when any is malformed.
fn decode(body: &[u8]) -> Option<(String, TxnData, [u8; ARQC_LEN])> {
    let req: TransactionRequest = serde_json::from_slice(body).ok()?;
    let txn = TxnData::parse(
        req.atc,
        &req.amount,
        &req.currency,
        &req.unpredictable_number,
    )
    .ok()?;
    let mut cryptogram = [0u8; ARQC_LEN];
    emv::fixed_hex("cryptogram", &req.cryptogram, &mut cryptogram).ok()?;
    if req.token_id.is_empty() || req.token_id.chars().count() > 48 {
        return None;
    }
    Some((req.token_id, txn, cryptogram))
}

pub(crate) async fn submit(
    State(state): State<Arc<SimState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let decoded = body.ok().and_then(|body| decode(&body));
    let Some((token_id, txn, cryptogram)) = decoded else {
        state
            .counters
            .transaction_declined(TxnReason::FormatError.as_str());
        return (
            StatusCode::BAD_REQUEST,
            Json(TxnReason::FormatError.answer()),
        )
            .into_response();
    };
    let reason = state
        .vault
        .with_token(&token_id, |token| authorize(token, &txn, &cryptogram))
        .unwrap_or(TxnReason::UnknownToken);
    if reason == TxnReason::Approved {
        state.counters.transaction_approved();
    } else {
        state.counters.transaction_declined(reason.as_str());
    }
    tracing::debug!(%token_id, atc = txn.atc, reason = reason.as_str(), "transaction");
    Json(reason.answer()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsp::elements::{ClearElements, YearMonth};
    use rand::{rngs::StdRng, SeedableRng};
    use std::time::Instant;

    fn active_token() -> SimToken {
        let clear = ClearElements::generate(
            &mut StdRng::seed_from_u64(9),
            YearMonth {
                year: 2025,
                month: 6,
            },
        );
        let mut token = SimToken::new("T1".into(), "ISSUER0001".into(), clear, Instant::now());
        token.state = TspTokenState::Active;
        token
    }

    fn pay(token: &mut SimToken, atc: u16) -> TxnReason {
        let txn = TxnData::parse(atc, "000000001000", "0978", "01020304").unwrap();
        let cryptogram = emv::application_cryptogram(&token.clear.cmk_ac, &txn);
        authorize(token, &txn, &cryptogram)
    }

    #[test]
    fn increasing_atcs_are_approved_and_remembered() {
        let mut token = active_token();
        assert_eq!(pay(&mut token, 1), TxnReason::Approved);
        assert_eq!(pay(&mut token, 2), TxnReason::Approved);
        assert_eq!(pay(&mut token, 10), TxnReason::Approved, "gaps are fine");
        assert_eq!(token.last_atc, Some(10));
        assert_eq!((token.approved, token.declined), (3, 0));
    }

    #[test]
    fn an_atc_not_greater_than_the_last_accepted_is_a_replay_and_changes_nothing() {
        let mut token = active_token();
        assert_eq!(pay(&mut token, 0), TxnReason::Replay, "ATC 0 never pays");
        assert_eq!(token.last_atc, None);
        assert_eq!(pay(&mut token, 5), TxnReason::Approved);
        assert_eq!(pay(&mut token, 5), TxnReason::Replay);
        assert_eq!(pay(&mut token, 4), TxnReason::Replay);
        assert_eq!(token.last_atc, Some(5));
        assert_eq!(pay(&mut token, 6), TxnReason::Approved);
        assert_eq!((token.approved, token.declined), (2, 3));
    }

    #[test]
    fn a_wrong_cryptogram_is_declined_without_moving_the_atc() {
        let mut token = active_token();
        let txn = TxnData::parse(3, "000000001000", "0978", "01020304").unwrap();
        let mut cryptogram = emv::application_cryptogram(&token.clear.cmk_ac, &txn);
        cryptogram[0] ^= 1;
        assert_eq!(
            authorize(&mut token, &txn, &cryptogram),
            TxnReason::BadCryptogram
        );
        assert_eq!(token.last_atc, None);
        // Another token's key does not pass either.
        let other = TxnData { atc: 4, ..txn };
        let foreign = emv::application_cryptogram(&[7u8; 16], &other);
        assert_eq!(
            authorize(&mut token, &other, &foreign),
            TxnReason::BadCryptogram
        );
        assert_eq!(pay(&mut token, 1), TxnReason::Approved);
    }

    #[test]
    fn only_active_tokens_pay() {
        for state in [
            TspTokenState::Inactive,
            TspTokenState::Suspended,
            TspTokenState::Deleted,
        ] {
            let mut token = active_token();
            token.state = state;
            assert_eq!(pay(&mut token, 1), TxnReason::TokenNotActive, "{state:?}");
            assert_eq!(token.last_atc, None);
        }
    }

    #[test]
    fn malformed_requests_do_not_decode() {
        let good = serde_json::json!({"tokenId": "T1", "atc": 1, "amount": "000000001000",
            "currency": "0978", "unpredictableNumber": "01020304", "cryptogram": "0011223344556677"});
        assert!(decode(good.to_string().as_bytes()).is_some());
        for (field, value) in [
            ("atc", serde_json::json!(65536)),
            ("atc", serde_json::json!(-1)),
            ("atc", serde_json::json!("1")),
            ("amount", serde_json::json!("1000")),
            ("currency", serde_json::json!("EUR")),
            ("unpredictableNumber", serde_json::json!("0102030")),
            ("cryptogram", serde_json::json!("00112233445566")),
            ("cryptogram", serde_json::json!("00112233445566ZZ")),
            ("tokenId", serde_json::json!("")),
            ("tokenId", serde_json::json!("T".repeat(49))),
            ("tokenId", serde_json::Value::Null),
        ] {
            let mut bad = good.clone();
            bad[field] = value;
            assert!(decode(bad.to_string().as_bytes()).is_none(), "{bad}");
        }
        assert!(decode(b"").is_none());
        assert!(decode(b"[]").is_none());
    }
}
