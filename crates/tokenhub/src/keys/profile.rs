//! A token's profile: its data elements opened and recovered in their canonical form, built into
//! the profile of its version and encrypted to the device; and the fingerprints that recognise
//! the values later.

use super::{device_seal, KeyError, Keys};
use crate::domain::cps::{self, BuildError, ClearValue};
use crate::domain::data_part;
use crate::domain::perso::{self, IncomingElement};
use crate::domain::ProfileDefinition;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// A token's data elements as the hub holds them: the parts sealed under its data key, and the
/// elements of a call being applied, already parsed and checked (a recovery's `/newData`, compared
/// with what the token was personalized with before it is stored).
#[derive(Clone, Copy)]
pub struct TokenData<'a> {
    /// The TSP of the token's issuer: its keys decrypt the stored values (a key retired since
    /// the values were taken still does).
    pub tsp_id: &'a str,
    pub token_id: &'a str,
    pub data_key: &'a crate::domain::Wrapped,
    pub sealed: &'a [Vec<u8>],
    pub incoming: &'a [IncomingElement],
}

/// A profile encrypted to a device with HPKE (RFC 9180): mode base, DHKEM(X25519, HKDF-SHA256),
/// HKDF-SHA256, AES-256-GCM; `info` = [`PROFILE_HPKE_INFO`], `aad` = the personalization id.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedProfile {
    /// The encapsulated key.
    pub enc: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedProfile({} bytes)", self.ciphertext.len())
    }
}

pub const PROFILE_HPKE_INFO: &[u8] = b"tokenhub/profile/v1";

/// A keyed fingerprint of one element's clear value: enough to recognise the same value later,
/// useless to recover it.
pub type Fingerprint = [u8; 32];

/// What [`Keys::personalize`] produced.
#[derive(Debug)]
pub struct Personalized {
    pub profile: SealedProfile,
    /// Per element name, the fingerprint of the value placed in the profile.
    pub fingerprints: BTreeMap<String, Fingerprint>,
}

#[derive(Debug, thiserror::Error)]
pub enum PersoError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("the stored data of the token is not readable: {0}")]
    Stored(String),
    #[error("element {0}: {1}")]
    Element(String, String),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("the device's public key is not a valid X25519 key")]
    DeviceKey,
}

impl Keys {
    /// Opens a token's sealed data parts, adds the elements of the call being applied (later
    /// parts override earlier ones, the incoming elements override them all), recovers each
    /// element's clear value in its canonical form. Elements the profile version does not define
    /// are left out.
    fn clear_values(
        &self,
        data: &TokenData<'_>,
        def: &ProfileDefinition,
    ) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, PersoError> {
        self.on_keystore(|| self.clear_values_now(data, def))
    }

    fn clear_values_now(
        &self,
        data: &TokenData<'_>,
        def: &ProfileDefinition,
    ) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, PersoError> {
        let mut opened: Vec<Vec<IncomingElement>> = Vec::with_capacity(data.sealed.len());
        for part in data.sealed {
            let clear = self.open_for_token(data.token_id, data.data_key, part)?;
            opened.push(data_part::decode_part(&clear).map_err(PersoError::Stored)?);
        }
        let mut elements: BTreeMap<&str, &IncomingElement> = BTreeMap::new();
        for e in opened.iter().flatten().chain(data.incoming) {
            elements.insert(&e.name, e);
        }
        let shared = self.shared.read().unwrap_or_else(|p| p.into_inner());
        let mut out = BTreeMap::new();
        for (&name, e) in &elements {
            let Some(element_def) = def.element(name) else {
                continue;
            };
            let fail = |why: &str| PersoError::Element(name.to_string(), why.to_string());
            let bytes = match &e.key_index {
                None => cps::canonical_bytes(element_def, ClearValue::Text(&e.value)),
                Some(index) => {
                    let ct = perso::decode_hex(&e.value).ok_or_else(|| fail("not hex"))?;
                    let key = shared
                        .get(&(data.tsp_id.to_string(), index.clone()))
                        .ok_or_else(|| fail("its keyIndex is not a known key of the TSP"))?;
                    if ct.is_empty() || ct.len() % key.algorithm.block_len() != 0 {
                        return Err(fail("does not decrypt"));
                    }
                    let raw = self
                        .keystore
                        .decrypt_blocks(Some(&key.key), key.algorithm, &ct)?;
                    let (clear, padded) = tokenhub_crypto::unpad_m2_ct(key.algorithm, raw);
                    if !bool::from(padded) {
                        return Err(fail("does not decrypt"));
                    }
                    cps::canonical_bytes(element_def, ClearValue::Bytes(&clear))
                }
            }
            .map_err(|why| fail(&why))?;
            out.insert(name.to_string(), bytes);
        }
        Ok(out)
    }

    /// The fingerprints of a token's values (by element name, in their canonical form), asked
    /// of the keystore in one go: HMAC-SHA256 over `token id NUL name NUL value`.
    pub(super) fn fingerprints_for<'v>(
        &self,
        token_id: &str,
        values: impl Iterator<Item = (&'v String, &'v Zeroizing<Vec<u8>>)>,
    ) -> Result<BTreeMap<String, Fingerprint>, KeyError> {
        let (names, messages): (Vec<&String>, Vec<Vec<u8>>) = values
            .map(|(name, canonical)| {
                let message = [
                    token_id.as_bytes(),
                    b"\0",
                    name.as_bytes(),
                    b"\0",
                    canonical,
                ]
                .concat();
                (name, message)
            })
            .unzip();
        let messages = Zeroizing::new(messages);
        let macs = self.keystore.fingerprints(&messages)?;
        Ok(names.into_iter().cloned().zip(macs).collect())
    }

    /// The fingerprints of the token's elements (for checking recovered data).
    pub fn fingerprints(
        &self,
        data: TokenData<'_>,
        def: &ProfileDefinition,
    ) -> Result<BTreeMap<String, Fingerprint>, PersoError> {
        let values = self.clear_values(&data, def)?;
        Ok(self.fingerprints_for(data.token_id, values.iter())?)
    }

    /// Whether the token's data makes a profile of `def` (its DGIs and records within their
    /// sizes): the sizes of the elements in its stored parts (opened and decrypted only if there
    /// are any) with those of a call's `incoming` elements, as checking them gave them, over them.
    pub fn check_builds(
        &self,
        data: TokenData<'_>,
        incoming: &perso::ElementSizes,
        def: &ProfileDefinition,
    ) -> Result<(), PersoError> {
        let stored = if data.sealed.is_empty() {
            perso::ElementSizes::default()
        } else {
            let stored = TokenData {
                incoming: &[],
                ..data
            };
            let values = self.clear_values(&stored, def)?;
            perso::ElementSizes::of(def, values.iter().map(|(n, v)| (n.as_str(), v.len())))
        };
        cps::check_fits(def, &[incoming, &stored])?;
        Ok(())
    }

    /// Builds the token's profile from its data and the profile version, and encrypts it to the
    /// device: the clear profile exists only inside this call.
    pub fn personalize(
        &self,
        data: TokenData<'_>,
        def: &ProfileDefinition,
        device_public_key: &[u8],
        personalization_id: &str,
    ) -> Result<Personalized, PersoError> {
        let values = self.clear_values(&data, def)?;
        let fingerprints = self.fingerprints_for(data.token_id, values.iter())?;
        let dgis = cps::build(def, &values)?;
        let plaintext = cps::encode(&dgis);
        let sealed = device_seal::seal(
            device_public_key,
            PROFILE_HPKE_INFO,
            personalization_id.as_bytes(),
            &plaintext,
        )
        .map_err(|_| PersoError::DeviceKey)?;
        Ok(Personalized {
            profile: SealedProfile {
                enc: sealed.enc,
                ciphertext: sealed.ciphertext,
            },
            fingerprints,
        })
    }
}
