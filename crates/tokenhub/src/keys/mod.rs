//! The only place that sees clear key material.
//!
//! - A **keystore** holds the keys and does the operations with them: the software one (the
//!   master key in memory) or an HSM through PKCS#11 ([`keystore`] is the seam).
//! - The **master key** (`TOKENHUB_MASTER_KEY`, 32 bytes, or an HSM's) wraps what the store keeps:
//!   the keys shared with TSPs and each token's data key. Wrapping is AES-256-GCM with a random
//!   nonce and an associated-data label that binds the wrapped key to its purpose and owner, so a
//!   wrapped key copied onto another row does not open.
//! - **Shared keys** (KEK/DEK by `keyIndex`, from a key ceremony) decrypt the elements a TSP sends;
//!   they are cached loaded here by owning TSP and `keyIndex`, with their purpose and state
//!   (clear behind `secrecy`, zeroized when dropped, or the HSM object that holds them).
//! - A **data key** per token (AES-256-GCM) seals the token's data elements at rest; it is
//!   unwrapped for the length of one call and zeroized right after. The store keeps it wrapped in
//!   its keyring and destroys it with the data it sealed.

use crate::domain::{KeyPurpose, KeyState, StoredKey, Wrapped};
use rand::RngCore;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::RwLock;
use tokenhub_crypto::{Algorithm, SharedKey};
use zeroize::Zeroizing;

mod device_seal;
mod elements;
mod gcm;
pub mod keystore;
pub mod pkcs11;
mod profile;
mod rotation;
#[cfg(any(test, feature = "test-hooks"))]
pub mod softhsm;
mod software;
pub mod wallet_keys;
pub mod webhooks;

pub use elements::CheckedCall;
pub use keystore::{Keystore, KeystoreKind};
pub use pkcs11::Pkcs11Config;
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
    /// The HSM cannot be reached now (the TSP API answers 921; the call may be retried).
    #[error("the keystore is unavailable: {0}")]
    Unavailable(String),
    #[error("the HSM refused the operation: {0}")]
    Refused(String),
    #[error(
        "the key is held by the other keystore (software or pkcs11) than the one the hub runs with"
    )]
    OtherKeystore,
    #[error("the shared key {0} is not in the HSM's token")]
    MissingObject(String),
    #[error("master-key version {0} is not in the keystore")]
    MissingVersion(i64),
    #[error("master-key version {0} cannot be made here: add it to TOKENHUB_MASTER_KEY (`1:<hex>,{0}:<hex>`, 64 hex digits each) on every node and restart each")]
    NotInVariable(i64),
    #[error("the software keystore has no fingerprint key (version 1 of the master key is gone and the store holds none wrapped)")]
    NoFingerprintKey,
    #[error("master-key version {0} in this keystore is not the store's (its check value does not open)")]
    VersionMismatch(i64),
}

use gcm::{Gcm, NONCE_LEN};

struct HeldKey {
    algorithm: Algorithm,
    purpose: KeyPurpose,
    active: bool,
    key: keystore::LoadedKey,
}

/// A shared key's place in the cache: its owning TSP and its `keyIndex`.
type SharedKeyId = (String, String);

/// The hub's keys: the keystore that holds them, the master-key version new wraps are made
/// under, and the loaded shared keys.
pub struct Keys {
    keystore: Box<dyn Keystore>,
    kind: KeystoreKind,
    current: AtomicI64,
    shared: RwLock<HashMap<SharedKeyId, HeldKey>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

impl Keys {
    /// The software keystore from `TOKENHUB_MASTER_KEY`'s value: one key (version 1) or
    /// `version:hex` entries separated by commas.
    pub fn from_master_hex(text: &str) -> Result<Self, KeyError> {
        let masters = software::parse_master_keys(text)?;
        let software = software::Software::new(&masters, None)?;
        Ok(Self::with_keystore(
            Box::new(software),
            KeystoreKind::Software,
        ))
    }

    /// The keys of an HSM's token (made there at first start).
    pub fn pkcs11(config: Pkcs11Config) -> Result<Self, KeyError> {
        let hsm = pkcs11::Pkcs11::open(config)?;
        Ok(Self::with_keystore(Box::new(hsm), KeystoreKind::Pkcs11))
    }

    fn with_keystore(keystore: Box<dyn Keystore>, kind: KeystoreKind) -> Self {
        Self {
            keystore,
            kind,
            current: AtomicI64::new(1),
            shared: RwLock::new(HashMap::new()),
        }
    }

    /// The master-key version new wraps are made under.
    pub fn master_version(&self) -> i64 {
        self.current.load(Ordering::Acquire)
    }

    /// Which keystore holds the keys.
    pub fn kind(&self) -> KeystoreKind {
        self.kind
    }

    /// Runs `f`, whose key operations may wait on an HSM, handing the runtime's worker over once
    /// for all of them (the software keystore never waits).
    fn on_keystore<T>(&self, f: impl FnOnce() -> T) -> T {
        match self.kind {
            KeystoreKind::Software => f(),
            KeystoreKind::Pkcs11 => keystore::blocking(f),
        }
    }

    /// Reads the master key from `path`, or creates it there (mode 0600) when the file does not
    /// exist. Returns the keys and whether the file was created.
    pub fn from_key_file(path: &Path) -> Result<(Self, bool), KeyError> {
        let err = |why: String| KeyError::KeyFile {
            path: path.display().to_string(),
            why,
        };
        let (text, created) = match std::fs::read_to_string(path) {
            Ok(text) => (Zeroizing::new(text), false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new([0u8; 32]);
                rand::rngs::OsRng.fill_bytes(&mut *key);
                let text = Zeroizing::new(format!("1:{}\n", hex::encode(*key)));
                write_private(path, text.as_bytes()).map_err(|e| err(e.to_string()))?;
                (text, true)
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let masters = software::parse_master_keys(&text)?;
        let software = software::Software::new(&masters, Some(path.to_path_buf()))?;
        let keys = Self::with_keystore(Box::new(software), KeystoreKind::Software);
        Ok((keys, created))
    }

    /// Wraps a shared key from a key ceremony for its owning TSP and purpose, after checking it
    /// against its KCV; the wrap is bound to the owner, index and purpose.
    pub fn wrap_shared_key(
        &self,
        tsp_id: &str,
        purpose: KeyPurpose,
        key: &SharedKey,
    ) -> Result<StoredKey, KeyError> {
        let clear = key.key_bytes().map_err(|e| match e {
            tokenhub_crypto::KeySetError::NotHex => KeyError::NotHex,
            tokenhub_crypto::KeySetError::KcvMismatch => KeyError::KcvMismatch,
            tokenhub_crypto::KeySetError::Crypto(_) => KeyError::KeyLength(key.algorithm),
        })?;
        let mut stored = StoredKey {
            tsp_id: tsp_id.to_string(),
            key_index: key.key_index.clone(),
            algorithm: key.algorithm,
            purpose,
            state: KeyState::Active,
            kcv: key.kcv.to_ascii_uppercase(),
            wrapped: Vec::new(),
            master_version: self.master_version(),
            bound: true,
        };
        stored.wrapped = self.keystore.import_shared(
            stored.master_version,
            &shared_key_label(&stored),
            key.algorithm,
            &clear,
        )?;
        Ok(stored)
    }

    /// Unwraps stored shared keys into the cache (replacing what was there for the same owner and
    /// index). A key without an owner is not loaded: nothing may decrypt under it.
    pub fn load_shared_keys(&self, stored: &[StoredKey]) -> Result<(), KeyError> {
        let mut loaded = Vec::with_capacity(stored.len());
        for s in stored.iter().filter(|s| s.owned()) {
            let key = self.keystore.load_shared(
                s.master_version,
                &shared_key_label(s),
                s.algorithm,
                &s.wrapped,
            )?;
            let kcv = self.keystore.kcv(&key, s.algorithm)?;
            if !hex::encode_upper(kcv).eq_ignore_ascii_case(&s.kcv) {
                return Err(KeyError::KcvMismatch);
            }
            loaded.push((
                (s.tsp_id.clone(), s.key_index.clone()),
                HeldKey {
                    algorithm: s.algorithm,
                    purpose: s.purpose,
                    active: s.state == KeyState::Active,
                    key,
                },
            ));
        }
        let mut map = self.shared.write().unwrap_or_else(|p| p.into_inner());
        map.extend(loaded);
        Ok(())
    }

    /// Whether this node holds `key_index` of `tsp_id` (whatever its purpose and state).
    pub fn knows_key(&self, tsp_id: &str, key_index: &str) -> bool {
        let map = self.shared.read().unwrap_or_else(|p| p.into_inner());
        map.contains_key(&(tsp_id.to_string(), key_index.to_string()))
    }

    /// A fresh data key for a token, wrapped under the current master-key version.
    pub fn new_data_key(&self, token_id: &str) -> Result<Wrapped, KeyError> {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *key);
        let master_version = self.master_version();
        Ok(Wrapped {
            bytes: self
                .keystore
                .wrap(master_version, &data_key_label(token_id), &*key)?,
            master_version,
        })
    }

    fn data_cipher(&self, token_id: &str, data_key: &Wrapped) -> Result<Gcm, KeyError> {
        let key = self.keystore.unwrap(
            data_key.master_version,
            &data_key_label(token_id),
            &data_key.bytes,
        )?;
        Gcm::new(&key).map_err(|_| KeyError::Unwrap)
    }

    /// Seals `plaintext` (a token's data elements) under the token's data key.
    pub fn seal_for_token(
        &self,
        token_id: &str,
        data_key: &Wrapped,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let cipher = self.data_cipher(token_id, data_key)?;
        seal(&cipher, token_id.as_bytes(), plaintext)
    }

    /// Opens what [`Keys::seal_for_token`] sealed.
    pub fn open_for_token(
        &self,
        token_id: &str,
        data_key: &Wrapped,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let cipher = self.data_cipher(token_id, data_key)?;
        open(&cipher, token_id.as_bytes(), sealed)
    }
}

/// What a shared key's wrap is bound to: its owner, index and purpose; only its index for keys
/// wrapped before keys had owners.
fn shared_key_label(key: &StoredKey) -> Vec<u8> {
    if key.bound {
        format!(
            "tokenhub/shared-key/v2/{}:{}/{}/{}",
            key.tsp_id.len(),
            key.tsp_id,
            key.purpose,
            key.key_index
        )
        .into_bytes()
    } else {
        format!("tokenhub/shared-key/v1/{}", key.key_index).into_bytes()
    }
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
mod tests;

#[cfg(test)]
mod ownership_tests;

#[cfg(test)]
mod rotation_tests;

#[cfg(test)]
mod hsm_stress_tests;
