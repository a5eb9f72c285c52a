//! The simulated TSP's token vault: every token it created, with the clear data it generated, in
//! memory (a simulator forgets everything on restart). Later operations (cryptogram validation,
//! recovery for re-personalization) look tokens up here.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::derived::{DerivedTokens, DerivedVault};
use super::elements::{ClearElements, TokenInfo};

/// One token as the TSP knows it.
#[derive(Debug)]
pub(crate) struct SimToken {
    pub(crate) token_id: String,
    pub(crate) issuer_id: String,
    pub(crate) info: TokenInfo,
    pub(crate) clear: ClearElements,
    pub(crate) delivery: PersonalizationState,
    /// When createToken answered, for the window in which the hub may not know the token yet.
    pub(crate) answered_at: Instant,
    /// The token's state as the TSP applies it to transactions; only the hub's
    /// `updateTokenState` changes it.
    pub(crate) state: TspTokenState,
    /// The highest ATC accepted so far; `None` before the first transaction and after a
    /// re-personalization's `newDataStatus` SUCCESS (the device restarts at ATC 0).
    pub(crate) last_atc: Option<u16>,
    /// The `x-correlation-id` of the `newDataStatus` SUCCESS that last reset the ATC, so that
    /// the hub's retry of that same call does not reset it a second time (which would let the
    /// ATCs used since then be replayed).
    pub(crate) last_reset_by: Option<String>,
    pub(crate) approved: u64,
    pub(crate) declined: u64,
    /// The recoveries `repersoToken` asked for, by `x-correlation-id`: a repeat of one that is
    /// in progress or done starts nothing. At most [`MAX_RECOVERIES_KEPT`] are remembered.
    pub(crate) recoveries: Vec<(String, RecoveryState)>,
}

/// How many recoveries a token remembers (the oldest is forgotten first): a hub repeats a
/// `repersoToken` only shortly after sending it, and a simulator of millions of tokens must not
/// grow without bound.
pub(crate) const MAX_RECOVERIES_KEPT: usize = 4;

/// Where one recovery (`repersoToken` → `/newData`) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecoveryState {
    InFlight,
    /// Every `/newData` call was accepted.
    Delivered,
    /// A call was refused for good, or the simulator stopped: the same `x-correlation-id`
    /// again starts the recovery over.
    Failed,
    /// Answered but never sent, on purpose ([`crate::tsp::Misbehaviour::drop_reperso`]).
    Dropped,
}

/// What [`SimToken::begin_recovery`] decided.
pub(crate) enum RecoveryStart {
    /// A new recovery (or a failed one started over): send this data.
    Start(Box<ClearElements>),
    /// The same `x-correlation-id` is in progress, done or dropped: do nothing.
    Repeat(RecoveryState),
}

/// A token's state at the TSP. A new token is `INACTIVE` until the hub's `updateTokenState`
/// makes it `ACTIVE` (the device holds it then); only `ACTIVE` tokens can pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TspTokenState {
    Inactive,
    Active,
    Suspended,
    /// Terminal: no change leaves it.
    Deleted,
}

impl TspTokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inactive => "INACTIVE",
            Self::Active => "ACTIVE",
            Self::Suspended => "SUSPENDED",
            Self::Deleted => "DELETED",
        }
    }
}

/// What the simulator tells about one token (`GET /sim/tokens/{tokenId}`,
/// [`crate::TspSimHandle::token`]): never its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimTokenView {
    pub token_id: String,
    pub state: TspTokenState,
    /// The highest ATC accepted; `null` when none was since creation or the last reset.
    pub last_atc: Option<u16>,
    /// Transactions approved and declined for this token.
    pub approved: u64,
    pub declined: u64,
}

impl SimToken {
    /// A token just created: `INACTIVE`, no ATC seen.
    pub(crate) fn new(
        token_id: String,
        issuer_id: String,
        clear: ClearElements,
        answered_at: Instant,
    ) -> Self {
        Self {
            token_id,
            issuer_id,
            info: clear.token_info(),
            clear,
            delivery: PersonalizationState::InFlight,
            answered_at,
            state: TspTokenState::Inactive,
            last_atc: None,
            last_reset_by: None,
            approved: 0,
            declined: 0,
            recoveries: Vec::new(),
        }
    }

    /// Records a recovery for `correlation_id`, in flight (`Dropped` when `drop_it`), unless it
    /// is a repeat of one in progress, done or dropped. A failed one is started over.
    pub(crate) fn begin_recovery(&mut self, correlation_id: &str, drop_it: bool) -> RecoveryStart {
        let next = if drop_it {
            RecoveryState::Dropped
        } else {
            RecoveryState::InFlight
        };
        if let Some(entry) = self
            .recoveries
            .iter_mut()
            .find(|(id, _)| id == correlation_id)
        {
            if entry.1 != RecoveryState::Failed {
                return RecoveryStart::Repeat(entry.1);
            }
            entry.1 = next;
        } else {
            if self.recoveries.len() >= MAX_RECOVERIES_KEPT {
                self.recoveries.remove(0);
            }
            self.recoveries.push((correlation_id.to_string(), next));
        }
        RecoveryStart::Start(Box::new(self.clear.clone()))
    }

    /// Where the recovery for `correlation_id` stands, if the token remembers it.
    #[cfg(test)]
    pub(crate) fn recovery(&self, correlation_id: &str) -> Option<RecoveryState> {
        self.recoveries
            .iter()
            .find(|(id, _)| id == correlation_id)
            .map(|(_, state)| *state)
    }

    pub(crate) fn end_recovery(&mut self, correlation_id: &str, state: RecoveryState) {
        if let Some(entry) = self
            .recoveries
            .iter_mut()
            .find(|(id, _)| id == correlation_id)
        {
            entry.1 = state;
        }
    }

    pub(crate) fn view(&self) -> SimTokenView {
        SimTokenView {
            token_id: self.token_id.clone(),
            state: self.state,
            last_atc: self.last_atc,
            approved: self.approved,
            declined: self.declined,
        }
    }
}

/// Where the token's data preparation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PersonalizationState {
    InFlight,
    Delivered,
    /// Refused by the hub or cut short; a replayed createToken starts it again.
    Failed,
}

/// What identifies a repeated createToken: the hub retries a call it got no answer to with the
/// same `x-correlation-id` and body, and must get the same token back, not a second one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RequestKey {
    pub(crate) correlation_id: String,
    pub(crate) issuer_id: String,
    pub(crate) wallet_card_ref_id: String,
}

#[derive(Default)]
pub(crate) struct Vault {
    inner: Mutex<Inner>,
    /// Tokens known from the start, their data derived from their ids (benchmarks).
    derived: Option<DerivedVault>,
}

#[derive(Default)]
struct Inner {
    tokens: HashMap<String, SimToken>,
    requests: HashMap<RequestKey, String>,
}

/// The outcome of [`Vault::create_or_replay`].
pub(crate) enum Created {
    /// A new token was stored; its data preparation must be sent.
    New { token_id: String, info: TokenInfo },
    /// The request was seen before: same answer. `resend` says whether the earlier delivery
    /// failed, so the data must be sent again (the state is already set back to in flight).
    Replay {
        token_id: String,
        info: TokenInfo,
        resend: bool,
    },
}

impl Vault {
    /// A vault that also knows the derived tokens.
    pub(crate) fn with_derived(tokens: Option<DerivedTokens>) -> Self {
        Self {
            inner: Mutex::default(),
            derived: tokens.map(DerivedVault::new),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves the maps consistent (every update is a
        // single insert), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores `make()` under `key`, unless `key` was seen before.
    pub(crate) fn create_or_replay(
        &self,
        key: RequestKey,
        make: impl FnOnce() -> SimToken,
    ) -> Created {
        let mut inner = self.lock();
        if let Some(token_id) = inner.requests.get(&key).cloned() {
            if let Some(token) = inner.tokens.get_mut(&token_id) {
                let resend = token.delivery == PersonalizationState::Failed;
                if resend {
                    token.delivery = PersonalizationState::InFlight;
                    token.answered_at = Instant::now();
                }
                return Created::Replay {
                    token_id,
                    info: token.info.clone(),
                    resend,
                };
            }
        }
        let token = make();
        let token_id = token.token_id.clone();
        let info = token.info.clone();
        inner.requests.insert(key, token_id.clone());
        inner.tokens.insert(token_id.clone(), token);
        Created::New { token_id, info }
    }

    /// Runs `f` on the token, if it exists (a token created here, or a derived one).
    pub(crate) fn with_token<R>(
        &self,
        token_id: &str,
        f: impl FnOnce(&mut SimToken) -> R,
    ) -> Option<R> {
        {
            let mut inner = self.lock();
            if let Some(token) = inner.tokens.get_mut(token_id) {
                return Some(f(token));
            }
        }
        self.derived.as_ref()?.with_token(token_id, f)
    }

    /// What the simulator shows of the token, if it exists.
    pub(crate) fn view(&self, token_id: &str) -> Option<SimTokenView> {
        self.with_token(token_id, |t| t.view())
    }

    pub(crate) fn set_delivery(&self, token_id: &str, state: PersonalizationState) {
        self.with_token(token_id, |t| t.delivery = state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsp::elements::YearMonth;

    fn token(id: &str) -> SimToken {
        let clear = ClearElements::generate(
            &mut rand::thread_rng(),
            YearMonth {
                year: 2025,
                month: 1,
            },
        );
        SimToken::new(
            id.to_string(),
            "ISSUER0001".to_string(),
            clear,
            Instant::now(),
        )
    }

    fn key(corr: &str) -> RequestKey {
        RequestKey {
            correlation_id: corr.to_string(),
            issuer_id: "ISSUER0001".to_string(),
            wallet_card_ref_id: "card-1".to_string(),
        }
    }

    #[test]
    fn a_replayed_request_gets_the_same_token_and_resends_only_after_a_failure() {
        let vault = Vault::default();
        assert!(matches!(
            vault.create_or_replay(key("c1"), || token("T1")),
            Created::New { ref token_id, .. } if token_id == "T1"
        ));
        let replay = vault.create_or_replay(key("c1"), || token("T2"));
        assert!(matches!(
            replay,
            Created::Replay { ref token_id, resend: false, .. } if token_id == "T1"
        ));

        vault.set_delivery("T1", PersonalizationState::Failed);
        let replay = vault.create_or_replay(key("c1"), || token("T3"));
        assert!(matches!(replay, Created::Replay { resend: true, .. }));
        assert_eq!(
            vault.with_token("T1", |t| t.delivery),
            Some(PersonalizationState::InFlight)
        );

        let other = vault.create_or_replay(key("c2"), || token("T4"));
        assert!(matches!(other, Created::New { ref token_id, .. } if token_id == "T4"));
        assert_eq!(vault.with_token("T2", |_| ()), None);
    }

    #[test]
    fn a_recovery_starts_once_per_correlation_id_unless_it_failed() {
        let mut t = token("T1");
        assert!(matches!(
            t.begin_recovery("r1", false),
            RecoveryStart::Start(_)
        ));
        assert!(matches!(
            t.begin_recovery("r1", false),
            RecoveryStart::Repeat(RecoveryState::InFlight)
        ));
        t.end_recovery("r1", RecoveryState::Delivered);
        assert!(matches!(
            t.begin_recovery("r1", false),
            RecoveryStart::Repeat(RecoveryState::Delivered)
        ));
        t.end_recovery("r1", RecoveryState::Failed);
        assert!(matches!(
            t.begin_recovery("r1", false),
            RecoveryStart::Start(_)
        ));
        assert_eq!(t.recovery("r1"), Some(RecoveryState::InFlight));
        assert!(matches!(
            t.begin_recovery("r2", true),
            RecoveryStart::Start(_)
        ));
        assert!(matches!(
            t.begin_recovery("r2", false),
            RecoveryStart::Repeat(RecoveryState::Dropped)
        ));
        for i in 0..10 {
            t.begin_recovery(&format!("x{i}"), false);
        }
        assert_eq!(t.recoveries.len(), MAX_RECOVERIES_KEPT);
        assert_eq!(t.recovery("r1"), None, "the oldest is forgotten");
    }
}
