//! A call's elements checked against the profile version with the hub's shared keys, and sealed
//! under the token's data key: each encrypted value is decrypted once, outside the store's writer.

use super::{Fingerprint, KeyError, Keys};
use crate::domain::cps::{self, ClearValue};
use crate::domain::data_part;
use crate::domain::perso::{self, DecryptFault, ElementDecryptor, IncomingElement};
use crate::domain::{ProfileDefinition, Rejection};
use secrecy::ExposeSecret;
use std::cell::RefCell;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// A call's elements once checked: their sizes in a profile, their part sealed under the token's
/// data key (`None` for a call with no element) and, for a recovery, their fingerprints.
pub struct CheckedCall {
    pub sizes: perso::ElementSizes,
    pub sealed: Option<Vec<u8>>,
    pub fingerprints: Option<BTreeMap<String, Fingerprint>>,
}

impl Keys {
    pub(super) fn decrypt(
        &self,
        key_index: &str,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, DecryptFault> {
        let map = self.shared.read().unwrap_or_else(|p| p.into_inner());
        let key = map.get(key_index).ok_or(DecryptFault::UnknownKey)?;
        tokenhub_crypto::decrypt_cbc_m2(key.algorithm, key.key.expose_secret(), ciphertext)
            .map_err(|_| DecryptFault::Undecryptable)
    }

    /// Checks a call's elements against the profile version (431 for any fault) and seals them
    /// as one part under the token's data key. For a recovery (`fingerprint`), the fingerprints of
    /// the recovered values too, so that comparing them with those the token was personalized
    /// with needs no decryption in the store's writer.
    pub fn check_and_seal(
        &self,
        token_id: &str,
        wrapped_data_key: &[u8],
        profile: &ProfileDefinition,
        elements: &[IncomingElement],
        fingerprint: bool,
    ) -> Result<Result<CheckedCall, Rejection>, KeyError> {
        // The clear values the check decrypts are kept (zeroized when dropped) only when they
        // are fingerprinted.
        let checker = Checker {
            keys: self,
            kept: fingerprint.then(|| RefCell::new(Vec::new())),
        };
        let sizes = match perso::check_elements(profile, elements, &checker) {
            Ok(sizes) => sizes,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if elements.is_empty() {
            return Ok(Ok(CheckedCall {
                sizes,
                sealed: None,
                fingerprints: None,
            }));
        }
        let clear = Zeroizing::new(data_part::encode_part(elements));
        let sealed = self.seal_for_token(token_id, wrapped_data_key, &clear)?;
        let fingerprints = match checker.kept {
            Some(kept) => {
                match self.fingerprints_of(token_id, profile, elements, kept.into_inner()) {
                    Ok(f) => Some(f),
                    Err(why) => {
                        return Ok(Err(Rejection::perso(format!(
                            "the recovered data cannot be read: {why}"
                        ))))
                    }
                }
            }
            None => None,
        };
        Ok(Ok(CheckedCall {
            sizes,
            sealed: Some(sealed),
            fingerprints,
        }))
    }

    /// The fingerprints of a call's values in their canonical form: clear ones from their text,
    /// encrypted ones from the clear bytes the check decrypted (`decrypted`, in the call's order).
    fn fingerprints_of(
        &self,
        token_id: &str,
        profile: &ProfileDefinition,
        elements: &[IncomingElement],
        decrypted: Vec<Zeroizing<Vec<u8>>>,
    ) -> Result<BTreeMap<String, Fingerprint>, String> {
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
            out.insert(
                e.name.clone(),
                self.fingerprint_of(token_id, &e.name, &canonical),
            );
        }
        Ok(out)
    }

    /// [`perso::check_elements`] with the hub's keys: each encrypted value is decrypted, checked
    /// and its clear bytes zeroized at once.
    pub fn check_elements(
        &self,
        profile: &ProfileDefinition,
        elements: &[IncomingElement],
    ) -> Result<perso::ElementSizes, Rejection> {
        let checker = Checker {
            keys: self,
            kept: None,
        };
        perso::check_elements(profile, elements, &checker)
    }
}

/// Decrypts with the hub's keys for [`perso::check_elements`], keeping the clear values when
/// `kept` is given.
struct Checker<'a> {
    keys: &'a Keys,
    kept: Option<RefCell<Vec<Zeroizing<Vec<u8>>>>>,
}

impl ElementDecryptor for Checker<'_> {
    fn check_decrypted(
        &self,
        key_index: &str,
        ciphertext: &[u8],
        check: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<Result<(), String>, DecryptFault> {
        let clear = self.keys.decrypt(key_index, ciphertext)?;
        let checked = check(&clear);
        if let Some(kept) = &self.kept {
            kept.borrow_mut().push(clear);
        }
        Ok(checked)
    }
}
