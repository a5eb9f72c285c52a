//! What a `/data` or `/newData` call does, given the call and what the token holds when it
//! arrives: one decision, taken before the call's transaction (outside the store's writer) and
//! again inside it on the state read under the lock.

use super::ids::{Code, Rejection};
use super::token::{check_submit_data, check_submit_new_data, TokenSnapshot};
use std::collections::BTreeMap;

/// A call's element names as a set: the same names in any order make the same call. Sorted,
/// once each, comma-joined (names never hold a comma: the profile defines them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallNames {
    sorted: String,
    listed: String,
    count: usize,
}

impl CallNames {
    pub fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let listed: Vec<&str> = names.into_iter().collect();
        let mut sorted = listed.clone();
        sorted.sort_unstable();
        sorted.dedup();
        Self {
            sorted: sorted.join(","),
            listed: listed.join(","),
            count: sorted.len(),
        }
    }

    /// The canonical form a call is recorded under.
    pub fn canonical(&self) -> &str {
        &self.sorted
    }

    /// Whether a recorded call had these names: its canonical form, or the names in the order this
    /// call lists them (the records the store's migration made from the parts it found keep the
    /// order of their call).
    pub fn matches(&self, recorded: &str) -> bool {
        recorded == self.sorted || recorded == self.listed
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The call, as the token's state at its arrival makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataCall {
    /// `/data`: the token's first data.
    Data,
    /// `/newData` answering the hub's `repersoToken` (the token has an open recovery): the data
    /// the token was personalized with, sent again.
    Recovery,
    /// `/newData` the TSP starts: the token's data replaced.
    Renewal,
}

/// What the store recorded of calls under this call's correlation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorCall {
    /// No call of this operation was applied under this correlation id.
    None,
    /// This call (the same names, in any order) was applied and its part is still held.
    Held,
    /// A call of this operation was applied under this correlation id (this one or another, or
    /// one known only from the token's history) and its part is not held.
    Applied,
}

/// What the token holds when the call arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAtCall {
    pub snapshot: TokenSnapshot,
    /// Whether the token holds data parts (it holds none once the device confirmed its profile).
    pub holds_data: bool,
    pub prior: PriorCall,
    /// A delivery of the token's profile to its device is under way.
    pub delivery_pending: bool,
    /// The open recovery's deadline (`None` also when the TSP has not acknowledged it yet).
    pub recovery_deadline_ms: Option<i64>,
    /// A `repersoToken` was sent under this call's correlation id (a recovery it answers).
    pub recovery_asked: bool,
    /// A `/newData` call under this correlation id completed the token's data.
    pub recovery_completed: bool,
    /// The fingerprints the token was personalized with.
    pub fingerprints: BTreeMap<String, Vec<u8>>,
}

/// What the call does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It repeats a call that was applied (its answer was lost): acknowledged again, nothing done.
    Repeat,
    /// Refused with this code; nothing is kept.
    Refuse(Rejection),
    /// A recovery whose data differs from what the token was personalized with (element `.0`):
    /// the re-personalization fails and the refusal is recorded.
    RefuseRecovery(String),
    /// Applied.
    Apply,
}

/// Decides a call. `recovered`: the fingerprints of a recovery's values (`None` for a call with no
/// element, or that is not a recovery).
pub fn decide(
    call: DataCall,
    token: &TokenAtCall,
    recovered: Option<&BTreeMap<String, [u8; 32]>>,
    now_ms: i64,
) -> Decision {
    // A call whose part is still held was applied: its retry is acknowledged.
    if token.holds_data && token.prior == PriorCall::Held {
        return Decision::Repeat;
    }
    // The state refuses the call (322, 321, 432) unless it repeats one that was applied: the
    // same call among the data held, or, once the data was deleted (the device confirmed its
    // profile), any call of this operation under this correlation id.
    let state = match call {
        DataCall::Data => check_submit_data(&token.snapshot, now_ms),
        DataCall::Recovery | DataCall::Renewal => check_submit_new_data(&token.snapshot),
    };
    if let Err(refusal) = state {
        let repeat = match token.prior {
            PriorCall::Held => true,
            PriorCall::Applied => !token.holds_data,
            PriorCall::None => false,
        };
        return if repeat {
            Decision::Repeat
        } else {
            Decision::Refuse(refusal)
        };
    }
    match call {
        DataCall::Data => Decision::Apply,
        DataCall::Renewal => decide_renewal(token),
        DataCall::Recovery => decide_recovery(token, recovered, now_ms),
    }
}

/// `/newData` on a token with no open recovery.
fn decide_renewal(token: &TokenAtCall) -> Decision {
    // 321: the token's profile is being delivered.
    if token.delivery_pending {
        return ongoing();
    }
    // The recovery this data answers is over: if its data came in whole, this call is the TSP's
    // retry of one whose answer was lost; otherwise its time to live ran out, or it failed,
    // before the data was whole (432: `/newData` may not answer 322).
    if token.recovery_asked {
        return if token.recovery_completed {
            Decision::Repeat
        } else {
            recovery_over()
        };
    }
    Decision::Apply
}

/// `/newData` answering an open recovery.
fn decide_recovery(
    token: &TokenAtCall,
    recovered: Option<&BTreeMap<String, [u8; 32]>>,
    now_ms: i64,
) -> Decision {
    // 321: the token's profile is being delivered.
    if token.delivery_pending {
        return ongoing();
    }
    // 432: the recovery's time to live ran out.
    if token.recovery_deadline_ms.is_some_and(|d| now_ms > d) {
        return recovery_over();
    }
    // The TSP must recover the existing data, never generate new data: a value that differs
    // from the one the token was personalized with fails the recovery.
    let differs = recovered.into_iter().flatten().find(|(name, fp)| {
        token
            .fingerprints
            .get(*name)
            .is_none_or(|stored| stored.as_slice() != fp.as_slice())
    });
    match differs {
        Some((name, _)) => Decision::RefuseRecovery(name.clone()),
        None => Decision::Apply,
    }
}

/// A late answer to a recovery. `/newData`'s contract lists no 322; the data is not invalid
/// (431), the token's state no longer takes it: 432.
fn recovery_over() -> Decision {
    Decision::Refuse(Rejection::new(
        Code::StateForbids,
        "the recovery this data answers is over (its time to live ran out or it failed)",
    ))
}

fn ongoing() -> Decision {
    Decision::Refuse(Rejection::new(
        Code::Ongoing,
        "the token's profile is being delivered to the device",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TokenState;

    fn token(state: TokenState) -> TokenAtCall {
        TokenAtCall {
            snapshot: TokenSnapshot {
                state,
                data_deadline_ms: 1_000,
            },
            holds_data: false,
            prior: PriorCall::None,
            delivery_pending: false,
            recovery_deadline_ms: None,
            recovery_asked: false,
            recovery_completed: false,
            fingerprints: BTreeMap::new(),
        }
    }

    fn refused(d: Decision) -> Code {
        match d {
            Decision::Refuse(r) => r.code,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn the_same_names_in_any_order_are_the_same_call() {
        let a = CallNames::of(["psn", "track2_data", "cmk_ac"]);
        let b = CallNames::of(["cmk_ac", "psn", "track2_data"]);
        assert_eq!(a.canonical(), b.canonical());
        assert!(a.matches("cmk_ac,psn,track2_data"));
        assert!(
            a.matches("psn,track2_data,cmk_ac"),
            "as the call lists them"
        );
        assert!(!a.matches("psn"));
        assert!(CallNames::of([]).is_empty());
    }

    #[test]
    fn data_is_applied_while_pending_and_refused_after_with_322_321_432() {
        assert_eq!(
            decide(DataCall::Data, &token(TokenState::PendingData), None, 1_000),
            Decision::Apply
        );
        let late = decide(DataCall::Data, &token(TokenState::PendingData), None, 1_001);
        assert_eq!(refused(late), Code::Expired);
        let busy = decide(DataCall::Data, &token(TokenState::Personalizing), None, 0);
        assert_eq!(refused(busy), Code::Ongoing);
        for s in [TokenState::Active, TokenState::Deleted] {
            assert_eq!(
                refused(decide(DataCall::Data, &token(s), None, 0)),
                Code::StateForbids
            );
        }
    }

    #[test]
    fn a_call_whose_part_is_held_is_a_repeat_whatever_the_state() {
        for s in [TokenState::PendingData, TokenState::Personalizing] {
            let mut t = token(s);
            t.holds_data = true;
            t.prior = PriorCall::Held;
            assert_eq!(decide(DataCall::Data, &t, None, 0), Decision::Repeat);
        }
    }

    #[test]
    fn once_the_data_is_deleted_any_call_of_the_operation_under_the_id_is_a_repeat() {
        let mut t = token(TokenState::Active);
        t.prior = PriorCall::Applied;
        assert_eq!(decide(DataCall::Data, &t, None, 0), Decision::Repeat);
        // While data is held, another call under the same id is not this one.
        t.holds_data = true;
        assert_eq!(
            refused(decide(DataCall::Data, &t, None, 0)),
            Code::StateForbids
        );
    }

    #[test]
    fn new_data_needs_a_personalized_token_and_no_delivery_under_way() {
        let pending = decide(DataCall::Renewal, &token(TokenState::PendingData), None, 0);
        assert_eq!(refused(pending), Code::StateForbids);
        let mut t = token(TokenState::Active);
        assert_eq!(decide(DataCall::Renewal, &t, None, 0), Decision::Apply);
        t.delivery_pending = true;
        assert_eq!(
            refused(decide(DataCall::Renewal, &t, None, 0)),
            Code::Ongoing
        );
        assert_eq!(
            refused(decide(DataCall::Recovery, &t, None, 0)),
            Code::Ongoing
        );
    }

    #[test]
    fn data_for_a_recovery_that_is_over_is_a_repeat_if_it_completed_else_432() {
        let mut t = token(TokenState::Active);
        t.recovery_asked = true;
        assert_eq!(
            refused(decide(DataCall::Renewal, &t, None, 0)),
            Code::StateForbids
        );
        t.recovery_completed = true;
        assert_eq!(decide(DataCall::Renewal, &t, None, 0), Decision::Repeat);
    }

    #[test]
    fn a_recovery_after_its_deadline_is_432() {
        let mut t = token(TokenState::Active);
        t.recovery_deadline_ms = Some(10);
        assert_eq!(decide(DataCall::Recovery, &t, None, 10), Decision::Apply);
        assert_eq!(
            refused(decide(DataCall::Recovery, &t, None, 11)),
            Code::StateForbids
        );
    }

    #[test]
    fn a_recovery_with_other_values_than_the_token_had_fails_it() {
        let mut t = token(TokenState::Active);
        t.fingerprints.insert("psn".into(), vec![1; 32]);
        let same = BTreeMap::from([("psn".to_string(), [1u8; 32])]);
        assert_eq!(
            decide(DataCall::Recovery, &t, Some(&same), 0),
            Decision::Apply
        );
        let other = BTreeMap::from([("psn".to_string(), [2u8; 32])]);
        assert_eq!(
            decide(DataCall::Recovery, &t, Some(&other), 0),
            Decision::RefuseRecovery("psn".into())
        );
        let unknown = BTreeMap::from([("par".to_string(), [1u8; 32])]);
        assert_eq!(
            decide(DataCall::Recovery, &t, Some(&unknown), 0),
            Decision::RefuseRecovery("par".into())
        );
    }
}
