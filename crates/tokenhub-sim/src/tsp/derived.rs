//! Tokens whose data derives from their id, for benchmarks of millions of tokens.
//!
//! A simulator that generates each token's data at createToken keeps it in clear, per token, for
//! as long as it runs (a few hundred bytes each): fine for a demo of thousands, not for a
//! benchmark of a million tokens that were never created through it. With
//! [`TspSimConfig::derived`](crate::TspSimConfig::derived) the simulator knows `count` tokens from
//! the start, `{prefix}{index:010}` for index `0..count`, all of the same issuer and `ACTIVE`, and
//! derives each token's clear data from its id whenever it needs it: the elements are
//! [`ClearElements::generate`] run on an RNG seeded with `AES-CMAC(seed, label || block ||
//! tokenId)` (two blocks, 32 bytes). The same seed and id always give the same data, so the
//! party that seeds the hub (the benchmark) computes the very data, and fingerprints, that the
//! simulator later recovers for `repersoToken`.
//!
//! Per token the simulator keeps only a compact record (state, last ATC, the correlation ids of
//! its last ATC reset and recoveries, transaction counts); the clear data is derived for the
//! length of one operation and zeroized after it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use aes::Aes128;
use cmac::digest::KeyInit;
use cmac::{Cmac, Mac};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokenhub_crypto::CryptoError;
use zeroize::Zeroizing;

use super::elements::{ClearElements, PersoElement, SimKeys, YearMonth};
use super::vault::{PersonalizationState, RecoveryState, SimToken, TspTokenState};

/// Decimal digits of the index in a derived token's id.
pub const DERIVED_INDEX_DIGITS: usize = 10;
const LABEL: &[u8] = b"tokenhub-sim/derived-token/v1";

/// The tokens a simulator derives (see the module documentation). Cloning is cheap.
#[derive(Clone)]
pub struct DerivedTokens {
    seed: Arc<Zeroizing<[u8; 16]>>,
    issuer_id: String,
    prefix: String,
    count: usize,
    today: YearMonth,
}

impl std::fmt::Debug for DerivedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedTokens")
            .field("issuer_id", &self.issuer_id)
            .field("prefix", &self.prefix)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl DerivedTokens {
    /// `count` tokens of `issuer_id`, ids `{prefix}{index:010}`, data derived under `seed`
    /// (keep it secret like any key: it gives every token's card master keys), expiring three
    /// years after `today`.
    pub fn new(
        seed: [u8; 16],
        issuer_id: impl Into<String>,
        prefix: impl Into<String>,
        count: usize,
        today: YearMonth,
    ) -> Self {
        Self {
            seed: Arc::new(Zeroizing::new(seed)),
            issuer_id: issuer_id.into(),
            prefix: prefix.into(),
            count,
            today,
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn issuer_id(&self) -> &str {
        &self.issuer_id
    }

    /// The id of the token at `index`.
    pub fn token_id(&self, index: usize) -> String {
        format!(
            "{}{index:0width$}",
            self.prefix,
            width = DERIVED_INDEX_DIGITS
        )
    }

    /// The index of a derived token's id; `None` for any other id.
    pub fn index_of(&self, token_id: &str) -> Option<usize> {
        let digits = token_id.strip_prefix(self.prefix.as_str())?;
        if digits.len() != DERIVED_INDEX_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<usize>().ok().filter(|i| *i < self.count)
    }

    /// The token's clear data: always the same for the same seed and id.
    pub fn clear(&self, token_id: &str) -> ClearElements {
        let mut rng_seed = Zeroizing::new([0u8; 32]);
        for (block, out) in rng_seed.chunks_mut(16).enumerate() {
            let key: &[u8; 16] = &self.seed;
            let mut mac = <Cmac<Aes128> as KeyInit>::new(key.into());
            mac.update(LABEL);
            mac.update(&[block as u8]);
            mac.update(token_id.as_bytes());
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        ClearElements::generate(&mut StdRng::from_seed(*rng_seed), self.today)
    }

    /// The token's data as `/data` (and a recovery's `/newData`) carries it.
    pub fn wire(&self, token_id: &str, keys: &SimKeys) -> Result<Vec<PersoElement>, CryptoError> {
        self.clear(token_id).to_wire(keys)
    }
}

/// What the simulator keeps of a derived token between two operations.
struct Compact {
    state: TspTokenState,
    last_atc: Option<u16>,
    last_reset_by: Option<String>,
    recoveries: Vec<(String, RecoveryState)>,
    approved: u32,
    declined: u32,
}

impl Default for Compact {
    fn default() -> Self {
        Self {
            // The hub personalized the token and told the TSP before the benchmark began.
            state: TspTokenState::Active,
            last_atc: None,
            last_reset_by: None,
            recoveries: Vec::new(),
            approved: 0,
            declined: 0,
        }
    }
}

/// The derived tokens' records, in the vault.
pub(crate) struct DerivedVault {
    tokens: DerivedTokens,
    records: Mutex<Vec<Compact>>,
}

impl DerivedVault {
    pub(crate) fn new(tokens: DerivedTokens) -> Self {
        let mut records = Vec::new();
        records.resize_with(tokens.count, Compact::default);
        Self {
            tokens,
            records: Mutex::new(records),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Compact>> {
        // Every record is written back whole: a poisoned lock is still consistent.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the token, materialized from its record and its derived data, then keeps what
    /// `f` changed. `None` when `token_id` is not a derived token.
    pub(crate) fn with_token<R>(
        &self,
        token_id: &str,
        f: impl FnOnce(&mut SimToken) -> R,
    ) -> Option<R> {
        let index = self.tokens.index_of(token_id)?;
        let clear = self.tokens.clear(token_id);
        let mut records = self.lock();
        let record = records.get_mut(index)?;
        let mut token = SimToken {
            token_id: token_id.to_string(),
            issuer_id: self.tokens.issuer_id.clone(),
            info: clear.token_info(),
            clear,
            delivery: PersonalizationState::Delivered,
            answered_at: Instant::now(),
            state: record.state,
            last_atc: record.last_atc,
            last_reset_by: record.last_reset_by.take(),
            approved: u64::from(record.approved),
            declined: u64::from(record.declined),
            recoveries: std::mem::take(&mut record.recoveries),
        };
        let out = f(&mut token);
        record.state = token.state;
        record.last_atc = token.last_atc;
        record.last_reset_by = token.last_reset_by.take();
        record.recoveries = std::mem::take(&mut token.recoveries);
        record.recoveries.shrink_to_fit();
        record.approved = u32::try_from(token.approved).unwrap_or(u32::MAX);
        record.declined = u32::try_from(token.declined).unwrap_or(u32::MAX);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsp::vault::RecoveryStart;
    use tokenhub_crypto::KeySet;

    fn tokens(seed: u8) -> DerivedTokens {
        DerivedTokens::new(
            [seed; 16],
            "ISSUER0001",
            "TKNB",
            1000,
            YearMonth {
                year: 2026,
                month: 3,
            },
        )
    }

    #[test]
    fn ids_and_indexes_round_trip_and_nothing_else_is_derived() {
        let t = tokens(1);
        assert_eq!(t.token_id(42), "TKNB0000000042");
        assert_eq!(t.index_of("TKNB0000000042"), Some(42));
        assert_eq!(t.index_of(&t.token_id(999)), Some(999));
        assert_eq!(t.index_of(&t.token_id(1000)), None, "beyond count");
        assert_eq!(t.index_of("TKNB000000042"), None);
        assert_eq!(t.index_of("TKNA0000000042"), None);
        assert_eq!(t.index_of("TKNB00000000x2"), None);
        assert_eq!(t.index_of("TKNB+000000042"), None);
    }

    #[test]
    fn the_same_seed_and_id_give_the_same_data_and_the_wire_form_too() {
        let keys = SimKeys::from_key_set(&KeySet::generate()).unwrap();
        let (a, b, other) = (tokens(1), tokens(1), tokens(2));
        let id = a.token_id(7);
        let wire = |t: &DerivedTokens, id: &str| {
            t.wire(id, &keys)
                .unwrap()
                .into_iter()
                .map(|e| e.value)
                .collect::<Vec<_>>()
        };
        assert_eq!(wire(&a, &id), wire(&b, &id));
        assert_ne!(wire(&a, &id), wire(&a, &a.token_id(8)));
        assert_ne!(wire(&a, &id), wire(&other, &id));
        assert_eq!(*a.clear(&id).cmk_ac, *b.clear(&id).cmk_ac);
        assert_ne!(*a.clear(&id).cmk_ac, *a.clear(&id).cmk_rp);
    }

    #[test]
    fn a_derived_token_keeps_its_state_and_recoveries_between_operations() {
        let vault = DerivedVault::new(tokens(3));
        let id = "TKNB0000000005";
        assert_eq!(
            vault.with_token(id, |t| (t.state, t.issuer_id.clone())),
            Some((TspTokenState::Active, "ISSUER0001".to_string()))
        );
        assert!(vault.with_token("TKNB0000001000", |_| ()).is_none());
        let started = vault.with_token(id, |t| t.begin_recovery("corr-1", false));
        let Some(RecoveryStart::Start(clear)) = started else {
            panic!("a first recovery starts");
        };
        assert_eq!(
            *clear.cmk_ac,
            *tokens(3).clear(id).cmk_ac,
            "the existing data"
        );
        assert!(matches!(
            vault.with_token(id, |t| t.begin_recovery("corr-1", false)),
            Some(RecoveryStart::Repeat(RecoveryState::InFlight))
        ));
        vault.with_token(id, |t| {
            t.last_atc = Some(9);
            t.last_reset_by = Some("corr-1".into());
            t.state = TspTokenState::Suspended;
        });
        assert_eq!(
            vault.with_token(id, |t| (t.last_atc, t.last_reset_by.clone(), t.state)),
            Some((Some(9), Some("corr-1".into()), TspTokenState::Suspended))
        );
        assert_eq!(
            vault.with_token("TKNB0000000006", |t| t.state),
            Some(TspTokenState::Active),
            "other tokens are untouched"
        );
    }
}
