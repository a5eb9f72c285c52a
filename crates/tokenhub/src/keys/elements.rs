//! A call's elements checked against the profile version with the hub's shared keys, and sealed
//! under the token's data key: each encrypted value is decrypted once, outside the store's writer.

use super::{Fingerprint, KeyError, Keys};
use crate::domain::cps::{self, ClearValue};
use crate::domain::data_part;
use crate::domain::perso::{self, DecryptFault, ElementDecryptor, IncomingElement};
use crate::domain::{KeyPurpose, ProfileDefinition, Rejection};
use std::cell::RefCell;
use std::collections::BTreeMap;
use tokenhub_crypto::Algorithm;
use zeroize::Zeroizing;

/// A call's elements once checked: their sizes in a profile, their part sealed under the token's
/// data key (`None` for a call with no element) and, for a recovery, their fingerprints.
pub struct CheckedCall {
    pub sizes: perso::ElementSizes,
    pub sealed: Option<Vec<u8>>,
    pub fingerprints: Option<BTreeMap<String, Fingerprint>>,
}

impl Keys {
    /// Decrypts an element's value doing the same work whatever is wrong with it: an unknown key
    /// (or one of another TSP, of another purpose than `purpose`, or retired) is replaced by the
    /// keystore's stand-in, a ciphertext that is not whole blocks is decrypted on its whole
    /// blocks (one zero block when it has none), and the padding is read in constant time here,
    /// whichever keystore decrypted. The clear bytes (without the padding when it is right) and
    /// the fault, if any; an error only when the keystore failed.
    pub(super) fn decrypt_whatever(
        &self,
        tsp_id: &str,
        key_index: &str,
        purpose: KeyPurpose,
        ciphertext: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, Option<DecryptFault>), KeyError> {
        let map = self.shared.read().unwrap_or_else(|p| p.into_inner());
        let shared = map
            .get(&(tsp_id.to_string(), key_index.to_string()))
            .filter(|k| k.active && k.purpose == purpose);
        let known = shared.is_some();
        let algorithm = shared.map_or(Algorithm::Aes128, |k| k.algorithm);
        let block = algorithm.block_len();
        let whole = ciphertext.len() / block * block;
        let blocks: &[u8] = if whole == 0 {
            &[0; 16][..block]
        } else {
            &ciphertext[..whole]
        };
        let raw = self
            .keystore
            .decrypt_blocks(shared.map(|k| &k.key), algorithm, blocks)?;
        drop(map);
        let (clear, padded) = tokenhub_crypto::unpad_m2_ct(algorithm, raw);
        let fault = if !known {
            Some(DecryptFault::UnknownKey)
        } else if whole != ciphertext.len() || whole == 0 {
            Some(DecryptFault::Length)
        } else if !bool::from(padded) {
            Some(DecryptFault::Padding)
        } else {
            None
        };
        Ok((clear, fault))
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
        let checker = Checker {
            keys: self,
            tsp_id,
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

/// Decrypts with the keys of the TSP `tsp_id` (the token's) for [`perso::check_elements`],
/// keeping the clear values when `kept` is given.
struct Checker<'a> {
    keys: &'a Keys,
    tsp_id: &'a str,
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
        let decrypted = self
            .keys
            .decrypt_whatever(self.tsp_id, key_index, purpose, ciphertext);
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
