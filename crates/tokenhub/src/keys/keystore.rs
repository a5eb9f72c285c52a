//! The seam between [`Keys`](super::Keys) and where the keys live: the key operations the hub
//! needs, each done by a backend that holds the keys: [`Software`](super::software::Software)
//! (keys in the hub's memory, from the master key) or [`Pkcs11`](super::pkcs11::Pkcs11) (keys in
//! an HSM, which does the operations and never lets a key out).
//!
//! Both backends wrap with AES-256-GCM (`nonce || ciphertext || tag`, the associated data a label
//! naming the wrapped key's purpose and owner), so the formats are the same; a value wrapped by
//! one backend opens only under that backend's keys.

use super::KeyError;
use secrecy::SecretBox;
use tokenhub_crypto::Algorithm;
use zeroize::Zeroizing;

/// Which backend holds the keys (`--keystore`, `TOKENHUB_KEYSTORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeystoreKind {
    /// The master key from `TOKENHUB_MASTER_KEY` or a `master.key` file; every key in memory.
    #[default]
    Software,
    /// Every key an object of a PKCS#11 token (an HSM).
    Pkcs11,
}

impl KeystoreKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "software" => Some(Self::Software),
            "pkcs11" => Some(Self::Pkcs11),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Software => "software",
            Self::Pkcs11 => "pkcs11",
        }
    }
}

/// A shared key as a backend holds it once loaded: its clear bytes (software) or the handle of
/// the HSM object that holds it.
pub enum LoadedKey {
    Clear(SecretBox<Vec<u8>>),
    /// The object's `CKA_ID` (what the store's row names).
    Object([u8; super::pkcs11::OBJECT_ID_LEN]),
}

/// The key operations of the hub, whatever holds the keys. None returns or logs key material
/// except the clear data keys and values the hub itself works with.
///
/// The master key (and, in an HSM, the webhook-secret key beside it) comes in versions: each wrap
/// names the version it was made under, and a rotation adds a version, re-wraps, then destroys
/// the old one.
pub trait Keystore: Send + Sync {
    /// Whether the keystore holds master-key version `version` (looking again where the keys
    /// live: the key file, the HSM's token).
    fn holds(&self, version: i64) -> Result<bool, KeyError>;
    /// Makes master-key version `version` where the keys live (kept if it is there already).
    fn create(&self, version: i64) -> Result<(), KeyError>;
    /// Destroys master-key version `version` where the hub can (after a rotation re-wrapped
    /// everything under a newer one).
    fn destroy(&self, version: i64) -> Result<(), KeyError>;
    /// Wraps `clear` under master-key version `version`, bound to `label`.
    fn wrap(&self, version: i64, label: &[u8], clear: &[u8]) -> Result<Vec<u8>, KeyError>;
    /// Opens what [`Keystore::wrap`] wrapped with the same version and label.
    fn unwrap(
        &self,
        version: i64,
        label: &[u8],
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError>;
    /// Seals a requestor's credentials under the webhook-secret key of `version`, bound to
    /// `label`.
    fn seal_secret(&self, version: i64, label: &[u8], clear: &[u8]) -> Result<Vec<u8>, KeyError>;
    /// Opens what [`Keystore::seal_secret`] sealed with the same version and label.
    fn open_secret(
        &self,
        version: i64,
        label: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError>;
    /// The fingerprint key to use when the keystore does not hold one of its own (software: the
    /// key is kept wrapped in the store, so that it outlives the master key it was derived from).
    /// `None` where the keystore holds it (an HSM object).
    fn fingerprint_key(&self) -> Option<Zeroizing<[u8; 32]>>;
    /// Takes the fingerprint key read from the store (software; an HSM ignores it).
    fn set_fingerprint_key(&self, key: &[u8]) -> Result<(), KeyError>;
    /// HMAC-SHA256 of each message under the fingerprint key (asked in one go: one HSM session).
    fn fingerprints(&self, messages: &[Vec<u8>]) -> Result<Vec<[u8; 32]>, KeyError>;
    /// Takes a shared key from a key ceremony (its KCV already checked) and returns what the
    /// store's row keeps of it: the key wrapped under the master key (software), or the name of
    /// the HSM object it was created as. `label` names the key (its owner, purpose and index):
    /// the wrap is bound to it.
    fn import_shared(
        &self,
        version: i64,
        label: &[u8],
        algorithm: Algorithm,
        clear: &[u8],
    ) -> Result<Vec<u8>, KeyError>;
    /// Loads a shared key from what [`Keystore::import_shared`] returned.
    fn load_shared(
        &self,
        version: i64,
        label: &[u8],
        algorithm: Algorithm,
        stored: &[u8],
    ) -> Result<LoadedKey, KeyError>;
    /// The key check value of a loaded key (for AES the CMAC of a zero block, for 3DES the
    /// encrypted zero block: the first 3 bytes).
    fn kcv(&self, key: &LoadedKey, algorithm: Algorithm) -> Result<[u8; 3], KeyError>;
    /// Decrypts whole blocks with CBC (zero IV), leaving the padding for the hub to read in
    /// constant time. `None` decrypts with a stand-in key, so that an unknown key costs the same
    /// work as a known one.
    fn decrypt_blocks(
        &self,
        key: Option<&LoadedKey>,
        algorithm: Algorithm,
        blocks: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError>;
}

/// The prefix of a store row naming an HSM object instead of holding a wrapped key.
pub(super) const OBJECT_PREFIX: &[u8] = b"pkcs11:";

thread_local! {
    /// Whether this thread runs inside [`blocking`] already (its calls then run as they are).
    static BLOCKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a call that may wait on an HSM without holding up the runtime's other tasks: on a
/// multi-threaded runtime the worker hands its tasks over while the call runs. Nested calls (the
/// HSM operations of one `/data` call, run under one) hand over once.
pub(super) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            BLOCKING.with(|b| b.set(false));
        }
    }
    if BLOCKING.with(|b| b.get()) {
        return f();
    }
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| {
                BLOCKING.with(|b| b.set(true));
                let _reset = Reset;
                f()
            })
        }
        _ => f(),
    }
}
