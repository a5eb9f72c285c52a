//! The token lifecycle after personalization: updates the TSP sends
//! (`POST /trapi/v2.0/tokens/{tokenId}/updates`, `docs/tsp-api.md`) and the issuer's own
//! actions (suspend, resume, delete, renew or replace the card). Decisions only; the flows apply
//! them.
//!
//! Rules:
//! - an update is applied only if its `lastUpdateTimestamp` is newer than the one the hub holds
//!   for the token (compared at millisecond precision); an older or equal one is acknowledged and
//!   not applied, so a TSP's retry is harmless;
//! - nothing leaves DELETED: a newer update that would change a DELETED token is refused (432);
//! - ACTIVE and SUSPENDED apply to a personalized token (ACTIVE or SUSPENDED); DELETED to any.

use super::ids::{LastDigits, Mmyy};
use super::{IssuerId, Rejection, TokenState};
use serde_json::{Map, Value};

/// The funding card as the token's requestor is told of it (never its number).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardInfo {
    pub last_digits: Option<String>,
    /// MMYY.
    pub expiry_date: Option<String>,
    pub art_id: Option<String>,
}

/// A change to a token: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenChange {
    pub state: Option<TokenState>,
    /// MMYY.
    pub token_exp: Option<String>,
    pub token_last4: Option<String>,
    pub card: CardInfo,
}

impl TokenChange {
    fn changes_anything_but_state(&self) -> bool {
        self.token_exp.is_some() || self.token_last4.is_some() || self.card != CardInfo::default()
    }
}

/// A token update from the TSP, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TspUpdate {
    pub issuer_id: IssuerId,
    /// `lastUpdateTimestamp`, ms since the epoch.
    pub last_update_ms: i64,
    pub change: TokenChange,
}

/// What the hub knows of a token when a change comes.
#[derive(Debug, Clone, Copy)]
pub struct Current {
    pub state: TokenState,
    pub last_update_ms: Option<i64>,
}

/// What to do with an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Apply it and record its timestamp.
    Apply,
    /// Not newer than what the hub holds (or nothing to change on a DELETED token): acknowledge,
    /// change nothing.
    Ignore,
}

/// Parses the body of `POST /tokens/{tokenId}/updates` with the contract's codes: 111 for a
/// missing `issuerId` or `lastUpdateTimestamp`, 112 for a field that breaks its format.
pub fn parse_tsp_update(body: &[u8]) -> Result<TspUpdate, Rejection> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| Rejection::format("the body is not valid JSON"))?;
    let Value::Object(obj) = value else {
        return Err(Rejection::format("the body must be a JSON object"));
    };
    let issuer_id = IssuerId::parse(required_str(&obj, "issuerId")?)?;
    let ts = required_str(&obj, "lastUpdateTimestamp")?;
    let last_update_ms = chrono::DateTime::parse_from_rfc3339(ts)
        .map_err(|_| {
            Rejection::format("lastUpdateTimestamp must be an ISO 8601 date-time with its offset")
        })?
        .timestamp_millis();
    let state = match optional_str(&obj, "tokenState")? {
        None => None,
        Some(s @ ("ACTIVE" | "SUSPENDED" | "DELETED")) => TokenState::parse(s),
        Some(_) => {
            return Err(Rejection::format(
                "tokenState must be ACTIVE, SUSPENDED or DELETED",
            ))
        }
    };
    let mmyy = |field: &str| -> Result<Option<String>, Rejection> {
        optional_str(&obj, field)?
            .map(|s| Mmyy::parse(field, s).map(|m| m.as_str().to_string()))
            .transpose()
    };
    let digits = |field: &str| -> Result<Option<String>, Rejection> {
        optional_str(&obj, field)?
            .map(|s| LastDigits::parse(field, s, 2, 5).map(|d| d.as_str().to_string()))
            .transpose()
    };
    let card = parse_card(
        ("cardLastDigits", optional_str(&obj, "cardLastDigits")?),
        ("cardExpiryDate", optional_str(&obj, "cardExpiryDate")?),
        ("cardArtId", optional_str(&obj, "cardArtId")?),
    )?;
    Ok(TspUpdate {
        issuer_id,
        last_update_ms,
        change: TokenChange {
            state,
            token_exp: mmyy("tokenExpiryDate")?,
            token_last4: digits("tokenLastDigits")?,
            card,
        },
    })
}

/// Card details, each `(field name, value)`: last digits 2..5 digits, expiry MMYY, art id 1..64
/// characters; a fault is 112 naming the field.
pub fn parse_card(
    last_digits: (&str, Option<&str>),
    expiry_date: (&str, Option<&str>),
    art_id: (&str, Option<&str>),
) -> Result<CardInfo, Rejection> {
    let (art_field, art) = art_id;
    Ok(CardInfo {
        last_digits: last_digits
            .1
            .map(|s| LastDigits::parse(last_digits.0, s, 2, 5).map(|d| d.as_str().to_string()))
            .transpose()?,
        expiry_date: expiry_date
            .1
            .map(|s| Mmyy::parse(expiry_date.0, s).map(|m| m.as_str().to_string()))
            .transpose()?,
        art_id: art
            .map(|s| {
                let n = s.chars().count();
                if (1..=64).contains(&n) && !s.chars().any(char::is_control) {
                    Ok(s.to_string())
                } else {
                    Err(Rejection::format(format!(
                        "{art_field} must be 1 to 64 characters"
                    )))
                }
            })
            .transpose()?,
    })
}

fn required_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, Rejection> {
    optional_str(obj, field)?.ok_or_else(|| Rejection::missing(field))
}

fn optional_str<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, Rejection> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Rejection::format(format!("{field} must be a string"))),
    }
}

/// Decides on an update from the TSP. A `lastUpdateTimestamp` more than `max_skew_ms` ahead of
/// the hub's clock is refused (112): it would make every later real-time update read as older.
pub fn decide_tsp_update(
    current: Current,
    update: &TspUpdate,
    now_ms: i64,
    max_skew_ms: i64,
) -> Result<Verdict, Rejection> {
    if update.last_update_ms > now_ms.saturating_add(max_skew_ms) {
        return Err(Rejection::format(
            "lastUpdateTimestamp is too far ahead of the hub's clock",
        ));
    }
    if current
        .last_update_ms
        .is_some_and(|held| update.last_update_ms <= held)
    {
        return Ok(Verdict::Ignore);
    }
    check_transition(current.state, &update.change)
}

fn check_transition(from: TokenState, change: &TokenChange) -> Result<Verdict, Rejection> {
    use TokenState::*;
    if from == Deleted {
        let leaves = matches!(change.state, Some(s) if s != Deleted);
        if leaves || change.changes_anything_but_state() {
            return Err(Rejection::new(
                super::Code::StateForbids,
                "the token is DELETED; nothing changes a deleted token",
            ));
        }
        return Ok(Verdict::Ignore);
    }
    match (from, change.state) {
        (_, None | Some(Deleted)) | (Active | Suspended, Some(Active | Suspended)) => {
            Ok(Verdict::Apply)
        }
        (from, Some(to)) => Err(Rejection::new(
            super::Code::StateForbids,
            format!(
                "the token is {}; {} applies only to a personalized token (ACTIVE or SUSPENDED)",
                from.as_str(),
                to.as_str()
            ),
        )),
    }
}

/// What an issuer may ask of one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerAction {
    Suspend,
    Resume,
    Delete,
}

impl IssuerAction {
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerAction::Suspend => "suspend",
            IssuerAction::Resume => "resume",
            IssuerAction::Delete => "delete",
        }
    }
}

/// The state an issuer's action leads to; `Ok(None)` when the token is there already (the
/// action is repeated: nothing to do). The error says why the token's state forbids it.
pub fn decide_issuer_action(
    from: TokenState,
    action: IssuerAction,
) -> Result<Option<TokenState>, String> {
    use TokenState::*;
    match (action, from) {
        (IssuerAction::Suspend, Suspended)
        | (IssuerAction::Resume, Active)
        | (IssuerAction::Delete, Deleted) => Ok(None),
        (IssuerAction::Suspend, Active) => Ok(Some(Suspended)),
        (IssuerAction::Resume, Suspended) => Ok(Some(Active)),
        (IssuerAction::Delete, _) => Ok(Some(Deleted)),
        (action, from) => Err(format!(
            "cannot {} a token that is {}: only ACTIVE and SUSPENDED tokens can be suspended or resumed",
            action.as_str(),
            from.as_str()
        )),
    }
}

/// The `lastUpdateTimestamp` of a change the hub makes itself: now, or just after the newest one
/// it holds (so that a change always reads as newer than the one before it).
pub fn next_update_ms(held: Option<i64>, now: i64) -> i64 {
    held.map_or(now, |h| now.max(h + 1))
}

/// `lastUpdateTimestamp` as the requestors receive it: RFC 3339, UTC, milliseconds.
pub fn format_timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Code;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<TspUpdate, Rejection> {
        parse_tsp_update(v.to_string().as_bytes())
    }

    fn ok_body() -> Value {
        json!({"issuerId": "ISSUER0001", "lastUpdateTimestamp": "2026-11-25T10:00:00.000Z"})
    }

    #[test]
    fn missing_fields_are_111_and_malformed_ones_112() {
        let code = |v: Value| parse(v).unwrap_err().code;
        assert_eq!(
            code(json!({"lastUpdateTimestamp": "2026-11-25T10:00:00Z"})),
            Code::Missing
        );
        assert_eq!(code(json!({"issuerId": "ISSUER0001"})), Code::Missing);
        assert_eq!(
            code(json!({"issuerId": "SHORT", "lastUpdateTimestamp": "2026-11-25T10:00:00Z"})),
            Code::Format
        );
        for (field, bad) in [
            ("lastUpdateTimestamp", json!("yesterday")),
            ("lastUpdateTimestamp", json!("2026-11-25 10:00")),
            ("tokenState", json!("PENDING_DATA")),
            ("tokenState", json!("active")),
            ("tokenExpiryDate", json!("1328")),
            ("tokenExpiryDate", json!("12/28")),
            ("tokenLastDigits", json!("1")),
            ("tokenLastDigits", json!("123456")),
            ("tokenLastDigits", json!("12a4")),
            ("cardLastDigits", json!("")),
            ("cardExpiryDate", json!(1228)),
            ("cardArtId", json!("")),
            ("cardArtId", json!("x".repeat(65))),
        ] {
            let mut b = ok_body();
            b[field] = bad.clone();
            assert_eq!(code(b), Code::Format, "{field} = {bad}");
        }
        assert_eq!(
            parse_tsp_update(b"{not json").unwrap_err().code,
            Code::Format
        );
        assert_eq!(parse_tsp_update(b"[]").unwrap_err().code, Code::Format);
    }

    #[test]
    fn a_full_update_parses() {
        let mut b = ok_body();
        b["lastUpdateTimestamp"] = json!("2026-11-25T11:00:00.250+01:00");
        b["tokenState"] = json!("SUSPENDED");
        b["tokenExpiryDate"] = json!("1129");
        b["tokenLastDigits"] = json!("4321");
        b["cardLastDigits"] = json!("99");
        b["cardExpiryDate"] = json!("0130");
        b["cardArtId"] = json!("art-2");
        let u = parse(b).unwrap();
        assert_eq!(u.last_update_ms, 1_795_600_800_250);
        assert_eq!(u.change.state, Some(TokenState::Suspended));
        assert_eq!(u.change.card.art_id.as_deref(), Some("art-2"));
        assert_eq!(
            format_timestamp(u.last_update_ms),
            "2026-11-25T10:00:00.250Z"
        );
    }

    fn update(ms: i64, state: Option<TokenState>) -> TspUpdate {
        TspUpdate {
            issuer_id: IssuerId::parse("ISSUER0001").unwrap(),
            last_update_ms: ms,
            change: TokenChange {
                state,
                ..Default::default()
            },
        }
    }

    fn decide_tsp_update_at(current: Current, update: &TspUpdate) -> Result<Verdict, Rejection> {
        decide_tsp_update(current, update, 1_000, 60_000)
    }

    #[test]
    fn a_stamp_far_in_the_future_is_refused() {
        let cur = Current {
            state: TokenState::Active,
            last_update_ms: None,
        };
        let (now, skew) = (1_000_000, 300_000);
        assert!(decide_tsp_update(cur, &update(now + skew, None), now, skew).is_ok());
        assert_eq!(
            decide_tsp_update(cur, &update(now + skew + 1, None), now, skew)
                .unwrap_err()
                .code,
            Code::Format
        );
    }

    #[test]
    fn only_newer_updates_apply_and_nothing_leaves_deleted() {
        use TokenState::*;
        let cur = |state, held| Current {
            state,
            last_update_ms: held,
        };
        assert_eq!(
            decide_tsp_update_at(cur(Active, Some(10)), &update(10, Some(Suspended))),
            Ok(Verdict::Ignore)
        );
        assert_eq!(
            decide_tsp_update_at(cur(Active, Some(10)), &update(9, Some(Suspended))),
            Ok(Verdict::Ignore)
        );
        assert_eq!(
            decide_tsp_update_at(cur(Active, Some(10)), &update(11, Some(Suspended))),
            Ok(Verdict::Apply)
        );
        assert_eq!(
            decide_tsp_update_at(cur(Suspended, None), &update(1, Some(Active))),
            Ok(Verdict::Apply)
        );
        assert_eq!(
            decide_tsp_update_at(cur(PendingData, None), &update(1, Some(Deleted))),
            Ok(Verdict::Apply)
        );
        assert_eq!(
            decide_tsp_update_at(cur(PendingData, None), &update(1, None)),
            Ok(Verdict::Apply)
        );
        assert_eq!(
            decide_tsp_update_at(cur(Personalizing, None), &update(1, Some(Active)))
                .unwrap_err()
                .code,
            Code::StateForbids
        );
        // Out of DELETED: refused when newer, acknowledged when it is the same (or an older) news.
        assert_eq!(
            decide_tsp_update_at(cur(Deleted, Some(10)), &update(11, Some(Active)))
                .unwrap_err()
                .code,
            Code::StateForbids
        );
        let mut renew = update(11, None);
        renew.change.token_exp = Some("1230".into());
        assert_eq!(
            decide_tsp_update_at(cur(Deleted, Some(10)), &renew)
                .unwrap_err()
                .code,
            Code::StateForbids
        );
        assert_eq!(
            decide_tsp_update_at(cur(Deleted, Some(10)), &update(5, Some(Active))),
            Ok(Verdict::Ignore)
        );
        assert_eq!(
            decide_tsp_update_at(cur(Deleted, Some(10)), &update(11, Some(Deleted))),
            Ok(Verdict::Ignore)
        );
    }

    #[test]
    fn issuer_actions_follow_the_state_machine() {
        use IssuerAction::*;
        use TokenState::*;
        assert_eq!(decide_issuer_action(Active, Suspend), Ok(Some(Suspended)));
        assert_eq!(decide_issuer_action(Suspended, Suspend), Ok(None));
        assert_eq!(decide_issuer_action(Suspended, Resume), Ok(Some(Active)));
        assert_eq!(decide_issuer_action(Active, Resume), Ok(None));
        assert_eq!(decide_issuer_action(PendingData, Delete), Ok(Some(Deleted)));
        assert_eq!(decide_issuer_action(Deleted, Delete), Ok(None));
        assert!(decide_issuer_action(Deleted, Resume).is_err());
        assert!(decide_issuer_action(Personalizing, Suspend).is_err());
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_tsp_update(&body);
        }

        #[test]
        fn hub_timestamps_always_move_forward(held in proptest::option::of(0i64..1_000_000), now in 0i64..1_000_000) {
            let next = next_update_ms(held, now);
            prop_assert!(held.is_none_or(|h| next > h));
            prop_assert!(next >= now);
        }
    }
}
