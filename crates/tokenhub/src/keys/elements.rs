//! A call's elements checked against the profile version with the hub's shared keys, and sealed
//! under the token's data key: each encrypted value is decrypted once, outside the store's writer.

use super::{Fingerprint, KeyError, Keys, TokenData};
use crate::domain::data_part;
use crate::domain::perso::{self, DecryptFault, ElementDecryptor, IncomingElement};
use crate::domain::{ProfileDefinition, Rejection};
use secrecy::ExposeSecret;
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
        let sizes = match self.check_elements(profile, elements) {
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
        let fingerprints = if fingerprint {
            let data = TokenData {
                token_id,
                wrapped_data_key,
                sealed: &[],
                incoming: elements,
            };
            match self.fingerprints(data, profile) {
                Ok(f) => Some(f),
                Err(super::PersoError::Keys(k)) => return Err(k),
                Err(e) => {
                    return Ok(Err(Rejection::new(
                        crate::domain::Code::InvalidPersoData,
                        format!("the recovered data cannot be read: {e}"),
                    )))
                }
            }
        } else {
            None
        };
        Ok(Ok(CheckedCall {
            sizes,
            sealed: Some(sealed),
            fingerprints,
        }))
    }

    /// [`perso::check_elements`] with the hub's keys: each encrypted value is decrypted, checked
    /// and its clear bytes zeroized at once.
    pub fn check_elements(
        &self,
        profile: &ProfileDefinition,
        elements: &[IncomingElement],
    ) -> Result<perso::ElementSizes, Rejection> {
        perso::check_elements(profile, elements, &Checker(self))
    }
}

/// Decrypts with the hub's keys for [`perso::check_elements`].
struct Checker<'a>(&'a Keys);

impl ElementDecryptor for Checker<'_> {
    fn check_decrypted(
        &self,
        key_index: &str,
        ciphertext: &[u8],
        check: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<Result<(), String>, DecryptFault> {
        let clear = self.0.decrypt(key_index, ciphertext)?;
        Ok(check(&clear))
    }
}

