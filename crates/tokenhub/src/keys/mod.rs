//! The only place that sees clear key material.
//!
//! - The **master key** (`TOKENHUB_MASTER_KEY`, 32 bytes) wraps everything else the store keeps:
//!   the keys shared with TSPs and each token's data key. Wrapping is AES-256-GCM with a random
//!   nonce and an associated-data label that binds the wrapped key to its purpose and owner, so a
//!   wrapped key copied onto another row does not open.
//! - **Shared keys** (KEK/DEK by `keyIndex`, from a key ceremony) decrypt the elements a TSP sends;
//!   they are cached unwrapped here, behind `secrecy`, and zeroized when dropped.
//! - A **data key** per token (AES-256-GCM) seals the token's data elements at rest; it is
//!   unwrapped for the length of one call and zeroized right after. The store keeps it wrapped in
//!   its keyring and destroys it with the data it sealed.

use crate::domain::StoredKey;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::SecretBox;
use sha2::Sha256;
use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;
use tokenhub_crypto::{Algorithm, SharedKey};
use zeroize::Zeroizing;

mod device_seal;
mod elements;
mod gcm;
mod profile;
pub mod wallet_keys;
pub mod webhooks;

pub use elements::CheckedCall;
pub use profile::{
    Fingerprint, PersoError, Personalized, SealedProfile, TokenData, PROFILE_HPKE_INFO,
};

/// Errors of this module. None carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("TOKENHUB_MASTER_KEY must be 64 hex digits")]
    BadMasterKey,
    #[error("a wrapped key or sealed value does not open under the master key (wrong master key, or the row was tampered with)")]
    Unwrap,
    #[error("AES-GCM did not seal the value (no random nonce, or over 64 GiB)")]
    Seal,
    #[error("the key check value does not match the key")]
    KcvMismatch,
    #[error("the key is not valid for {0}")]
    KeyLength(Algorithm),
    #[error("the key is not hex")]
    NotHex,
    #[error("the key file {path}: {why}")]
    KeyFile { path: String, why: String },
}

use gcm::{Gcm, NONCE_LEN};

/// The version of the master key new wraps are made under (recorded beside each data key).
pub const MASTER_KEY_VERSION: i64 = 1;

struct ClearKey {
    algorithm: Algorithm,
    key: SecretBox<Vec<u8>>,
}

/// The hub's keys: the master key and the unwrapped shared keys.
pub struct Keys {
    /// The master key, expanded for AES-256-GCM once (aws-lc holds it, and cleanses it when
    /// dropped).
    master: Gcm,
    /// Keys the fingerprints of data elements (HMAC-SHA256), derived from the master key.
    fingerprint: SecretBox<[u8; 32]>,
    shared: RwLock<HashMap<String, ClearKey>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

impl Keys {
    pub fn from_master_hex(hex_key: &str) -> Result<Self, KeyError> {
        let bytes =
            Zeroizing::new(hex::decode(hex_key.trim()).map_err(|_| KeyError::BadMasterKey)?);
        let arr: Zeroizing<[u8; 32]> = Zeroizing::new(
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::BadMasterKey)?,
        );
        let fingerprint = {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(arr.as_slice())
                .map_err(|_| KeyError::BadMasterKey)?;
            mac.update(b"tokenhub/fingerprint-key/v1");
            let out: [u8; 32] = mac.finalize().into_bytes().into();
            out
        };
        Ok(Self {
            master: Gcm::new(arr.as_slice()).map_err(|_| KeyError::BadMasterKey)?,
            fingerprint: SecretBox::new(Box::new(fingerprint)),
            shared: RwLock::new(HashMap::new()),
        })
    }

    /// Reads the master key from `path`, or creates it there (mode 0600) when the file does not
    /// exist. Returns the keys and whether the file was created.
    pub fn from_key_file(path: &Path) -> Result<(Self, bool), KeyError> {
        let err = |why: String| KeyError::KeyFile {
            path: path.display().to_string(),
            why,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Self::from_master_hex(&text)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new([0u8; 32]);
                rand::rngs::OsRng.fill_bytes(&mut *key);
                let text = Zeroizing::new(hex::encode(*key));
                write_private(path, text.as_bytes()).map_err(|e| err(e.to_string()))?;
                Ok((Self::from_master_hex(&text)?, true))
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Wraps a shared key from a key ceremony, after checking it against its KCV.
    pub fn wrap_shared_key(&self, key: &SharedKey) -> Result<StoredKey, KeyError> {
        let clear = key.key_bytes().map_err(|e| match e {
            tokenhub_crypto::KeySetError::NotHex => KeyError::NotHex,
            tokenhub_crypto::KeySetError::KcvMismatch => KeyError::KcvMismatch,
            tokenhub_crypto::KeySetError::Crypto(_) => KeyError::KeyLength(key.algorithm),
        })?;
        let wrapped = seal(&self.master, &shared_key_label(&key.key_index), &clear)?;
        Ok(StoredKey {
            key_index: key.key_index.clone(),
            algorithm: key.algorithm,
            kcv: key.kcv.to_ascii_uppercase(),
            wrapped,
        })
    }

    /// Unwraps stored shared keys into the cache (replacing what was there for the same index).
    pub fn load_shared_keys(&self, stored: &[StoredKey]) -> Result<(), KeyError> {
        let mut loaded = Vec::with_capacity(stored.len());
        for s in stored {
            let clear = open(&self.master, &shared_key_label(&s.key_index), &s.wrapped)?;
            let kcv = tokenhub_crypto::kcv(s.algorithm, &clear)
                .map_err(|_| KeyError::KeyLength(s.algorithm))?;
            if !hex::encode_upper(kcv).eq_ignore_ascii_case(&s.kcv) {
                return Err(KeyError::KcvMismatch);
            }
            loaded.push((
                s.key_index.clone(),
                ClearKey {
                    algorithm: s.algorithm,
                    key: SecretBox::new(Box::new(clear.to_vec())),
                },
            ));
        }
        let mut map = self.shared.write().unwrap_or_else(|p| p.into_inner());
        map.extend(loaded);
        Ok(())
    }

    pub fn knows_key(&self, key_index: &str) -> bool {
        let map = self.shared.read().unwrap_or_else(|p| p.into_inner());
        map.contains_key(key_index)
    }

    /// A fresh data key for a token, wrapped under master-key version [`MASTER_KEY_VERSION`].
    pub fn new_data_key(&self, token_id: &str) -> Result<Vec<u8>, KeyError> {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *key);
        seal(&self.master, &data_key_label(token_id), &*key)
    }

    fn data_cipher(&self, token_id: &str, wrapped: &[u8]) -> Result<Gcm, KeyError> {
        let key = open(&self.master, &data_key_label(token_id), wrapped)?;
        Gcm::new(&key).map_err(|_| KeyError::Unwrap)
    }

    /// Seals `plaintext` (a token's data elements) under the token's data key.
    pub fn seal_for_token(
        &self,
        token_id: &str,
        wrapped_data_key: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let cipher = self.data_cipher(token_id, wrapped_data_key)?;
        seal(&cipher, token_id.as_bytes(), plaintext)
    }

    /// Opens what [`Keys::seal_for_token`] sealed.
    pub fn open_for_token(
        &self,
        token_id: &str,
        wrapped_data_key: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let cipher = self.data_cipher(token_id, wrapped_data_key)?;
        open(&cipher, token_id.as_bytes(), sealed)
    }
}

fn shared_key_label(key_index: &str) -> Vec<u8> {
    format!("tokenhub/shared-key/v1/{key_index}").into_bytes()
}

fn data_key_label(token_id: &str) -> Vec<u8> {
    format!("tokenhub/data-key/v1/{token_id}").into_bytes()
}

/// `nonce || ciphertext+tag`.
fn seal(cipher: &Gcm, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
    // AWS-LC's generator (seeded from the OS, reseeded by itself): no system call per nonce, as
    // reading the OS's generator each time was (one `getrandom` per sealed part).
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| KeyError::Seal)?;
    cipher
        .seal(&nonce, nonce, aad, plaintext)
        .map_err(|_| KeyError::Seal)
}

fn open(cipher: &Gcm, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    if sealed.len() < NONCE_LEN {
        return Err(KeyError::Unwrap);
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    cipher.open(nonce, aad, ct).map_err(|_| KeyError::Unwrap)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cps;
    use crate::domain::perso::{DecryptFault, IncomingElement};
    use crate::domain::ProfileDefinition;
    use hpke::Deserializable;

    fn keys() -> Keys {
        Keys::from_master_hex(&"11".repeat(32)).unwrap()
    }

    #[test]
    fn a_data_key_seals_and_opens_only_for_its_token() {
        let k = keys();
        let wrapped = k.new_data_key("T1").unwrap();
        let sealed = k
            .seal_for_token("T1", &wrapped, b"secret elements")
            .unwrap();
        assert_eq!(
            &*k.open_for_token("T1", &wrapped, &sealed).unwrap(),
            b"secret elements"
        );
        assert!(k.open_for_token("T2", &wrapped, &sealed).is_err());
        let other = Keys::from_master_hex(&"22".repeat(32)).unwrap();
        assert!(other.open_for_token("T1", &wrapped, &sealed).is_err());
    }

    #[test]
    fn shared_keys_are_checked_wrapped_and_decrypt_elements() {
        let k = keys();
        let shared = SharedKey::generate("KEK01", Algorithm::Aes128, "kek");
        let stored = k.wrap_shared_key(&shared).unwrap();
        assert!(!stored
            .wrapped
            .windows(16)
            .any(|w| hex::encode_upper(w) == shared.hex[..32]));
        k.load_shared_keys(&[stored]).unwrap();
        let clear = shared.key_bytes().unwrap();
        let ct = tokenhub_crypto::encrypt_cbc_m2(Algorithm::Aes128, &clear, b"1234").unwrap();
        let (clear, fault) = k.decrypt_whatever("KEK01", &ct);
        assert_eq!((clear.as_slice(), fault), (&b"1234"[..], None));
        assert_eq!(
            k.decrypt_whatever("NOPE", &ct).1,
            Some(DecryptFault::UnknownKey)
        );
        assert_eq!(
            k.decrypt_whatever("KEK01", &ct[..15]).1,
            Some(DecryptFault::Length)
        );
        assert_eq!(
            k.decrypt_whatever("KEK01", &[]).1,
            Some(DecryptFault::Length)
        );
        let mut bad = ct.clone();
        bad[15] ^= 1;
        let (clear, fault) = k.decrypt_whatever("KEK01", &bad);
        assert_eq!((clear.len(), fault), (16, Some(DecryptFault::Padding)));
    }

    #[test]
    fn a_profile_is_built_from_sealed_parts_and_only_the_device_can_open_it() {
        use hpke::{Kem as _, Serializable};
        type Kem = hpke::kem::X25519HkdfSha256;
        let k = keys();
        let kek = SharedKey::generate("KEK01", Algorithm::Aes128, "kek");
        k.load_shared_keys(&[k.wrap_shared_key(&kek).unwrap()])
            .unwrap();
        let cmk = [0x42u8; 16];
        let ct =
            tokenhub_crypto::encrypt_cbc_m2(Algorithm::Aes128, &kek.key_bytes().unwrap(), &cmk)
                .unwrap();
        let def: ProfileDefinition = serde_json::from_value::<ProfileDefinition>(serde_json::json!({
            "dataElements": [
                {"name": "cmk_ac", "required": true, "format": "hex", "sensitive": true, "dgi": "8001"},
                {"name": "psn", "required": true, "format": "digits", "dgi": "0101", "tag": "5F34"}
            ],
            "template": [{"dgi": "9102", "data": "A5"}]
        }))
        .unwrap()
        .validate()
        .unwrap();
        let wrapped = k.new_data_key("T1").unwrap();
        let part = |els: serde_json::Value| {
            let els: Vec<IncomingElement> = serde_json::from_value(els).unwrap();
            let clear = crate::domain::data_part::encode_part(&els);
            k.seal_for_token("T1", &wrapped, &clear).unwrap()
        };
        let parts = vec![
            part(serde_json::json!([{"name": "psn", "value": "07"}])),
            part(
                serde_json::json!([{"name": "cmk_ac", "value": hex::encode_upper(&ct), "keyIndex": "KEK01"},
                                    {"name": "psn", "value": "01"}]),
            ),
        ];
        let data = |sealed, incoming| TokenData {
            token_id: "T1",
            wrapped_data_key: &wrapped,
            sealed,
            incoming,
        };
        let (sk, pk) = Kem::gen_keypair(&mut rand::rngs::OsRng);
        let out = k
            .personalize(data(&parts, &[]), &def, &pk.to_bytes(), "prs_1")
            .unwrap();
        assert_eq!(out.fingerprints.len(), 2);
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&out.profile.enc).unwrap();
        let open = |aad: &[u8]| {
            hpke::single_shot_open::<hpke::aead::AesGcm256, hpke::kdf::HkdfSha256, Kem>(
                &hpke::OpModeR::Base,
                &sk,
                &enc,
                PROFILE_HPKE_INFO,
                &out.profile.ciphertext,
                aad,
            )
        };
        assert!(open(b"prs_2").is_err(), "bound to its personalization id");
        let dgis = cps::decode(&open(b"prs_1").unwrap()).unwrap();
        let key_dgi = dgis.iter().find(|d| d.id == 0x8001).unwrap();
        assert_eq!(key_dgi.value, cmk);
        let record = dgis.iter().find(|d| d.id == 0x0101).unwrap();
        assert_eq!(
            record.value,
            vec![0x70, 0x04, 0x5F, 0x34, 0x01, 0x01],
            "the later psn wins"
        );
        // The same values give the same fingerprints; another value another one.
        let again = k.fingerprints(data(&parts, &[]), &def).unwrap();
        assert_eq!(again, out.fingerprints);
        let other = k.fingerprints(data(&parts[..1], &[]), &def).unwrap();
        assert_ne!(other["psn"], out.fingerprints["psn"]);
        // Elements not sealed yet count as the latest part.
        let incoming: Vec<IncomingElement> =
            serde_json::from_value(serde_json::json!([{"name": "psn", "value": "01"}])).unwrap();
        let from_incoming = k.fingerprints(data(&parts[..1], &incoming), &def).unwrap();
        assert_eq!(from_incoming["psn"], out.fingerprints["psn"]);
    }

    #[test]
    fn a_wrong_kcv_is_refused_at_import() {
        let mut shared = SharedKey::generate("K", Algorithm::Tdes, "dek");
        shared.kcv = "ABCDEF".into();
        assert!(matches!(
            keys().wrap_shared_key(&shared),
            Err(KeyError::KcvMismatch)
        ));
    }

    #[test]
    fn the_key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let (k1, created) = Keys::from_key_file(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (k2, created) = Keys::from_key_file(&path).unwrap();
        assert!(!created);
        let wrapped = k1.new_data_key("T").unwrap();
        let sealed = k1.seal_for_token("T", &wrapped, b"x").unwrap();
        assert_eq!(&*k2.open_for_token("T", &wrapped, &sealed).unwrap(), b"x");
    }
}
