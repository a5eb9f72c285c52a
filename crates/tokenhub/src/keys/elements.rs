//! A call's elements checked against the profile version with the hub's shared keys, and sealed
//! under the token's data key: each encrypted value is decrypted once, outside the store's writer.

use super::{Fingerprint, KeyError, Keys, KeystoreKind};
use crate::domain::cps::{self, ClearValue};
use crate::domain::data_part;
use crate::domain::perso::{self, DecryptFault, ElementDecryptor, IncomingElement};
use crate::domain::{KeyPurpose, ProfileDefinition, Rejection};
use std::cell::RefCell;
use std::collections::BTreeMap;
use tokenhub_crypto::Algorithm;
use zeroize::Zeroizing;

/// An encrypted value as a call sent it: the key it names, the purpose its element asks of that
/// key, and its bytes.
pub(super) struct Encrypted {
    pub key_index: String,
    pub purpose: KeyPurpose,
    pub ciphertext: Vec<u8>,
}

/// An encrypted value to decrypt, borrowed.
#[derive(Clone, Copy)]
pub(super) struct Asked<'a> {
    pub key_index: &'a str,
    pub purpose: KeyPurpose,
    pub ciphertext: &'a [u8],
}

impl Encrypted {
    pub(super) fn asked(&self) -> Asked<'_> {
        Asked {
            key_index: &self.key_index,
            purpose: self.purpose,
            ciphertext: &self.ciphertext,
        }
    }
}

/// A value decrypted: its clear bytes, and what was wrong with it, if anything.
pub(super) type Decrypted = (Zeroizing<Vec<u8>>, Option<DecryptFault>);

/// A call's elements once checked: their sizes in a profile, their part sealed under the token's
/// data key (`None` for a call with no element) and, for a recovery, their fingerprints.
pub struct CheckedCall {
    pub sizes: perso::ElementSizes,
    pub sealed: Option<Vec<u8>>,
    pub fingerprints: Option<BTreeMap<String, Fingerprint>>,
}

impl Keys {
    /// Decrypts an element's value doing the same work whatever is wrong with it (see
    /// [`Keys::decrypt_all`]).
    pub(super) fn decrypt_whatever(
        &self,
        tsp_id: &str,
        key_index: &str,
        purpose: KeyPurpose,
        ciphertext: &[u8],
    ) -> Result<Decrypted, KeyError> {
        let asked = Asked {
            key_index,
            purpose,
            ciphertext,
        };
        let mut one = self.decrypt_all(tsp_id, &[asked])?;
        one.pop()
            .ok_or_else(|| KeyError::Refused("CBC: no value decrypted".into()))
    }

    /// Decrypts a call's encrypted values doing the same work whatever is wrong with them: an
    /// unknown key (or one of another TSP, of another purpose, or retired) is replaced by the
    /// keystore's stand-in, a ciphertext that is not whole blocks is decrypted on its whole
    /// blocks (one zero block when it has none), and the padding is read in constant time here,
    /// whichever keystore decrypted. The values under one key go to the keystore as one
    /// operation: CBC decrypts their blocks chained (zero IV for the first), and the first block
    /// of each later value, chained to the last ciphertext block before it, is set back to the
    /// zero IV it was encrypted with by one XOR. For each value, in order, its clear bytes
    /// (without the padding when it is right) and the fault, if any; an error only when the
    /// keystore failed.
    pub(super) fn decrypt_all(
        &self,
        tsp_id: &str,
        asked: &[Asked<'_>],
    ) -> Result<Vec<Decrypted>, KeyError> {
        let map = self.shared.read().unwrap_or_else(|p| p.into_inner());
        let found: Vec<_> = asked
            .iter()
            .map(|a| {
                map.get(&(tsp_id.to_string(), a.key_index.to_string()))
                    .filter(|k| k.active && k.purpose == a.purpose)
            })
            .collect();
        let algorithm_of = |i: usize| found[i].map_or(Algorithm::Aes128, |k| k.algorithm);
        // The blocks each value is decrypted on.
        let blocks: Vec<&[u8]> = asked
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let block = algorithm_of(i).block_len();
                let whole = a.ciphertext.len() / block * block;
                if whole == 0 {
                    &[0u8; 16][..block]
                } else {
                    &a.ciphertext[..whole]
                }
            })
            .collect();
        let mut raw: Vec<Option<Zeroizing<Vec<u8>>>> = vec![None; asked.len()];
        for i in 0..asked.len() {
            if raw[i].is_some() {
                continue;
            }
            // Every value under the same key (the stand-in counting as one key per cipher).
            let same_key = |j: usize| {
                algorithm_of(j) == algorithm_of(i)
                    && match (found[i], found[j]) {
                        (Some(a), Some(b)) => std::ptr::eq(a, b),
                        (None, None) => true,
                        _ => false,
                    }
            };
            let group: Vec<usize> = (i..asked.len()).filter(|&j| same_key(j)).collect();
            let values: Vec<&[u8]> = group.iter().map(|&j| blocks[j]).collect();
            let clear = self.decrypt_chained(found[i].map(|k| &k.key), algorithm_of(i), &values)?;
            for (j, own) in group.into_iter().zip(clear) {
                raw[j] = Some(own);
            }
        }
        let mut out = Vec::with_capacity(asked.len());
        for (i, a) in asked.iter().enumerate() {
            let raw = raw[i]
                .take()
                .ok_or_else(|| KeyError::Refused("CBC: a value was not decrypted".into()))?;
            let algorithm = algorithm_of(i);
            let whole = a.ciphertext.len() / algorithm.block_len() * algorithm.block_len();
            let (clear, padded) = tokenhub_crypto::unpad_m2_ct(algorithm, raw);
            let fault = if found[i].is_none() {
                Some(DecryptFault::UnknownKey)
            } else if whole != a.ciphertext.len() || whole == 0 {
                Some(DecryptFault::Length)
            } else if !bool::from(padded) {
                Some(DecryptFault::Padding)
            } else {
                None
            };
            out.push((clear, fault));
        }
        Ok(out)
    }

    /// Decrypts `values` (whole blocks each) under one key as one keystore operation: CBC over
    /// their blocks chained, then the first block of each value after the first XORed with the
    /// last ciphertext block before it, which stood in for its zero IV.
    fn decrypt_chained(
        &self,
        key: Option<&super::keystore::LoadedKey>,
        algorithm: Algorithm,
        values: &[&[u8]],
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, KeyError> {
        let chained: Zeroizing<Vec<u8>> =
            Zeroizing::new(values.iter().flat_map(|v| v.iter().copied()).collect());
        let clear = self.keystore.decrypt_blocks(key, algorithm, &chained)?;
        if clear.len() != chained.len() {
            return Err(KeyError::Refused("CBC: a length changed".into()));
        }
        let block = algorithm.block_len();
        let mut at = 0;
        let mut out = Vec::with_capacity(values.len());
        for value in values {
            let mut own = Zeroizing::new(clear[at..at + value.len()].to_vec());
            if at > 0 {
                let before = &chained[at - block..at];
                own[..block]
                    .iter_mut()
                    .zip(before)
                    .for_each(|(c, b)| *c ^= b);
            }
            at += value.len();
            out.push(own);
        }
        Ok(out)
    }

    /// Checks a call's elements against the profile version (431 for any fault) and seals them
    /// as one part under the token's data key. For a recovery (`fingerprint`), the fingerprints of
    /// the recovered values too, so that comparing them with those the token was personalized
    /// with needs no decryption in the store's writer.
    pub fn check_and_seal(
        &self,
        tsp_id: &str,
        token_id: &str,
        data_key: &crate::domain::Wrapped,
        profile: &ProfileDefinition,
        elements: &[IncomingElement],
        fingerprint: bool,
    ) -> Result<Result<CheckedCall, Rejection>, KeyError> {
        // One hand-over of the runtime's worker for all the keystore's operations of the call.
        self.on_keystore(|| {
            // The clear values the check decrypts are kept (zeroized when dropped) only when
            // they are fingerprinted.
            let (checked, kept) = self.run_checks(tsp_id, profile, elements, fingerprint)?;
            let sizes = match checked {
                Ok(sizes) => sizes,
                Err(refused) => return Ok(Err(logged(refused))),
            };
            if elements.is_empty() {
                return Ok(Ok(CheckedCall {
                    sizes,
                    sealed: None,
                    fingerprints: None,
                }));
            }
            let clear = Zeroizing::new(data_part::encode_part(elements));
            let sealed = self.seal_for_token(token_id, data_key, &clear)?;
            let fingerprints = match kept {
                Some(kept) => match self.fingerprints_of(token_id, profile, elements, kept)? {
                    Ok(f) => Some(f),
                    Err(why) => {
                        return Ok(Err(logged(perso::ElementsRefused {
                            rejection: Rejection::perso(perso::VALUE_REFUSED),
                            detail: format!("the recovered data cannot be read: {why}"),
                        })))
                    }
                },
                None => None,
            };
            Ok(Ok(CheckedCall {
                sizes,
                sealed: Some(sealed),
                fingerprints,
            }))
        })
    }

    /// The fingerprints of a call's values in their canonical form: clear ones from their text,
    /// encrypted ones from the clear bytes the check decrypted (`decrypted`, in the call's order).
    /// The outer error is the keystore's; the inner one says which value cannot be read.
    fn fingerprints_of(
        &self,
        token_id: &str,
        profile: &ProfileDefinition,
        elements: &[IncomingElement],
        decrypted: Vec<Zeroizing<Vec<u8>>>,
    ) -> Result<Result<BTreeMap<String, Fingerprint>, String>, KeyError> {
        match self.canonical_values(profile, elements, decrypted) {
            Ok(values) => self.fingerprints_for(token_id, values.iter()).map(Ok),
            Err(why) => Ok(Err(why)),
        }
    }

    /// The canonical form of a call's values, by element name (see [`Keys::fingerprints_of`]).
    fn canonical_values(
        &self,
        profile: &ProfileDefinition,
        elements: &[IncomingElement],
        decrypted: Vec<Zeroizing<Vec<u8>>>,
    ) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, String> {
        let mut decrypted = decrypted.into_iter();
        let mut out = BTreeMap::new();
        for e in elements {
            let Some(def) = profile.element(&e.name) else {
                continue;
            };
            let canonical = match &e.key_index {
                None => cps::canonical_bytes(def, ClearValue::Text(&e.value)),
                Some(_) => {
                    let clear = decrypted.next().ok_or("a value was not decrypted")?;
                    cps::canonical_bytes(def, ClearValue::Bytes(&clear))
                }
            }
            .map_err(|why| format!("element {}: {why}", e.name))?;
            out.insert(e.name.clone(), canonical);
        }
        Ok(out)
    }

    /// [`perso::check_elements`] with `tsp_id`'s keys: each encrypted value is decrypted, checked
    /// and its clear bytes zeroized at once. The outer error is the keystore's.
    pub fn check_elements(
        &self,
        tsp_id: &str,
        profile: &ProfileDefinition,
        elements: &[IncomingElement],
    ) -> Result<Result<perso::ElementSizes, Rejection>, KeyError> {
        let (checked, _) = self.run_checks(tsp_id, profile, elements, false)?;
        Ok(checked.map_err(logged))
    }

    /// [`perso::check_elements`] with `tsp_id`'s keys, and the clear values it decrypted (in the
    /// call's order) when `keep`. The outer error is the keystore's: a keystore that failed
    /// decided nothing about the elements, so the call is not refused.
    fn run_checks(
        &self,
        tsp_id: &str,
        profile: &ProfileDefinition,
        elements: &[IncomingElement],
        keep: bool,
    ) -> Result<Checks, KeyError> {
        // In an HSM, where each operation costs a round trip, the values the checks decrypt are
        // gathered in the order they ask for them (the same whatever the values are) and
        // decrypted together first: one operation per key. In software each is decrypted as the
        // checks reach it.
        let asked = match self.kind {
            KeystoreKind::Pkcs11 => {
                let wanted = Wanted::default();
                let _ = perso::check_elements(profile, elements, &wanted);
                wanted.asked.into_inner()
            }
            KeystoreKind::Software => Vec::new(),
        };
        let views: Vec<Asked<'_>> = asked.iter().map(Encrypted::asked).collect();
        let decrypted = self.decrypt_all(tsp_id, &views)?;
        drop(views);
        let checker = Checker {
            keys: self,
            tsp_id,
            decrypted: RefCell::new(asked.into_iter().zip(decrypted).collect()),
            kept: keep.then(|| RefCell::new(Vec::new())),
            failed: RefCell::new(None),
        };
        let checked = perso::check_elements(profile, elements, &checker);
        if let Some(e) = checker.failed.take() {
            return Err(e);
        }
        Ok((checked, checker.kept.map(RefCell::into_inner)))
    }
}

/// What [`Keys::run_checks`] found, and the clear values it kept.
type Checks = (
    Result<perso::ElementSizes, perso::ElementsRefused>,
    Option<Vec<Zeroizing<Vec<u8>>>>,
);

/// The answer to refused elements; why they were refused goes to the hub's log only (the detail
/// names elements, key indexes and rules, never a value).
fn logged(refused: perso::ElementsRefused) -> Rejection {
    tracing::info!(detail = %refused.detail, "elements refused with 431");
    refused.rejection
}

/// Records the values [`perso::check_elements`] would decrypt, decrypting none.
#[derive(Default)]
struct Wanted {
    asked: RefCell<Vec<Encrypted>>,
}

impl ElementDecryptor for Wanted {
    fn check_decrypted(
        &self,
        key_index: &str,
        purpose: KeyPurpose,
        ciphertext: &[u8],
        _: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> (Option<DecryptFault>, Result<(), String>) {
        self.asked.borrow_mut().push(Encrypted {
            key_index: key_index.to_string(),
            purpose,
            ciphertext: ciphertext.to_vec(),
        });
        (None, Ok(()))
    }
}

/// Gives [`perso::check_elements`] the values decrypted ahead (or decrypts them) with the keys of the TSP
/// `tsp_id` (the token's), keeping the clear values when `kept` is given.
struct Checker<'a> {
    keys: &'a Keys,
    tsp_id: &'a str,
    /// What was decrypted ahead, in the order the checks ask.
    decrypted: RefCell<std::collections::VecDeque<(Encrypted, Decrypted)>>,
    kept: Option<RefCell<Vec<Zeroizing<Vec<u8>>>>>,
    /// The keystore's failure, if it failed (the check's verdict is then void).
    failed: RefCell<Option<KeyError>>,
}

impl ElementDecryptor for Checker<'_> {
    fn check_decrypted(
        &self,
        key_index: &str,
        purpose: KeyPurpose,
        ciphertext: &[u8],
        check: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> (Option<DecryptFault>, Result<(), String>) {
        let ahead = self.decrypted.borrow_mut().pop_front();
        let decrypted = match ahead {
            Some((a, d))
                if a.key_index == key_index
                    && a.purpose == purpose
                    && a.ciphertext == ciphertext =>
            {
                Ok(d)
            }
            // Nothing decrypted ahead (software), or not what was (the checks asked in another
            // order): decrypted alone.
            _ => self
                .keys
                .decrypt_whatever(self.tsp_id, key_index, purpose, ciphertext),
        };
        let (clear, fault) = match decrypted {
            Ok(decrypted) => decrypted,
            Err(e) => {
                *self.failed.borrow_mut() = Some(e);
                return (None, Err("the keystore failed".into()));
            }
        };
        let checked = check(&clear);
        if let Some(kept) = &self.kept {
            kept.borrow_mut().push(clear);
        }
        (fault, checked)
    }
}
