//! The PKCS#11 keystore: every key the hub holds is an object of an HSM token, sensitive and not
//! extractable, and the HSM does each operation with it. The hub's own keys (the master key, the
//! fingerprint key, the webhook-secret key and a stand-in key for unknown `keyIndex`es) are found
//! by label and generated in the token at first start; the shared keys of a key ceremony are
//! created in it at import, and the store's row names the object (`pkcs11:` + its `CKA_ID`).
//!
//! Sessions are pooled in a [`Connection`] (one per loaded module); a call that finds the session
//! or the module gone (closed sessions, a finalized or restarted module, a removed token) retires
//! the connection and is tried once more on a new one, so the hub recovers without a restart.
//! While the HSM stays unreachable every key operation fails with
//! [`KeyError::Unavailable`] (the TSP API answers 921) and a new connection is tried at most
//! every [`RECONNECT_PAUSE`].

use crate::keys::keystore::{blocking, Keystore, LoadedKey, OBJECT_PREFIX};
use crate::keys::KeyError;

mod connection;
use connection::{connect, is_gone, is_lost, kept_secret, Connection};
use cryptoki::error::Error as CkError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use secrecy::SecretString;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokenhub_crypto::Algorithm;
use zeroize::Zeroizing;

/// The length of the `CKA_ID` given to a shared key's object.
pub const OBJECT_ID_LEN: usize = 16;

/// How long after a failed connection the next one is tried (calls in between fail at once).
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

const NONCE_LEN: usize = 12;

/// Where the HSM is and how to log in to it.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (a shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The label of the token holding the hub's keys.
    pub token_label: String,
    /// The user PIN (from `TOKENHUB_PKCS11_PIN` or `TOKENHUB_PKCS11_PIN_FILE`, never a flag).
    pub pin: SecretString,
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .finish_non_exhaustive()
    }
}

pub struct Pkcs11 {
    config: Pkcs11Config,
    current: Mutex<Current>,
}

#[derive(Default)]
struct Current {
    connection: Option<Arc<Connection>>,
    failed_at: Option<Instant>,
}

impl Pkcs11 {
    /// Connects to the token (so a wrong module, label or PIN stops the start) and makes the
    /// hub's keys in it if they are not there yet.
    pub fn open(config: Pkcs11Config) -> Result<Self, KeyError> {
        let connection = blocking(|| connect(&config))
            .map_err(|e| KeyError::Unavailable(format!("token {:?}: {e}", config.token_label)))?;
        Ok(Self {
            config,
            current: Mutex::new(Current {
                connection: Some(Arc::new(connection)),
                failed_at: None,
            }),
        })
    }

    fn connection(&self) -> Result<Arc<Connection>, KeyError> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = &current.connection {
            return Ok(c.clone());
        }
        if current
            .failed_at
            .is_some_and(|at| at.elapsed() < RECONNECT_PAUSE)
        {
            return Err(KeyError::Unavailable(
                "the HSM was unreachable moments ago".into(),
            ));
        }
        match connect(&self.config) {
            Ok(c) => {
                tracing::info!(token = %self.config.token_label, "connected to the HSM again");
                let c = Arc::new(c);
                current.connection = Some(c.clone());
                current.failed_at = None;
                Ok(c)
            }
            Err(e) => {
                current.failed_at = Some(Instant::now());
                tracing::warn!(token = %self.config.token_label, error = %e, "the HSM is unreachable");
                Err(KeyError::Unavailable(e))
            }
        }
    }

    fn retire(&self, connection: &Arc<Connection>, why: &CkError) {
        connection.lost.store(true, Ordering::Relaxed);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current
            .connection
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, connection))
        {
            tracing::warn!(token = %self.config.token_label, error = %why, "lost the HSM's sessions; reconnecting");
            current.connection = None;
        }
    }

    /// Runs `op` on a pooled session: the outer error when the HSM cannot be reached (after one
    /// more try on a new connection), the inner one when the HSM refused the operation itself.
    fn run<T>(
        &self,
        op: impl Fn(&Session, &Connection) -> Result<T, CkError>,
    ) -> Result<Result<T, CkError>, KeyError> {
        blocking(|| {
            let mut last = None;
            for _ in 0..2 {
                let connection = self.connection()?;
                let session = match connection.checkout(&self.config) {
                    Ok(s) => s,
                    Err(e) if is_gone(&e) => {
                        self.retire(&connection, &e);
                        last = Some(e);
                        continue;
                    }
                    Err(e) => return Err(KeyError::Unavailable(e.to_string())),
                };
                match op(&session, &connection) {
                    Err(e) if is_lost(&e, &session) => {
                        // Its handle may be reused by the module's next life: never closed.
                        std::mem::forget(session);
                        self.retire(&connection, &e);
                        last = Some(e);
                    }
                    outcome => {
                        connection.checkin(session);
                        return Ok(outcome);
                    }
                }
            }
            Err(KeyError::Unavailable(
                last.map_or_else(|| "no session".into(), |e| e.to_string()),
            ))
        })
    }

    fn gcm_encrypt(&self, key: Key, label: &[u8], clear: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| KeyError::Seal)?;
        let sealed = self.run(|s, c| {
            let mut iv = nonce;
            let params = GcmParams::new(&mut iv, label, 128.into())?;
            s.encrypt(&Mechanism::AesGcm(params), key.of(s, c)?, clear)
        })?;
        let sealed = sealed.map_err(|e| match e {
            CkError::InvalidValue => KeyError::MissingVersion(key.version()),
            _ => KeyError::Seal,
        })?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn gcm_decrypt(
        &self,
        key: Key,
        label: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(KeyError::Unwrap);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let clear = self.run(|s, c| {
            let mut iv = [0u8; NONCE_LEN];
            iv.copy_from_slice(nonce);
            let params = GcmParams::new(&mut iv, label, 128.into())?;
            s.decrypt(&Mechanism::AesGcm(params), key.of(s, c)?, ct)
        })?;
        clear.map(Zeroizing::new).map_err(|e| match e {
            CkError::InvalidValue => KeyError::MissingVersion(key.version()),
            _ => KeyError::Unwrap,
        })
    }
}

/// Which of the hub's own keys an operation uses, of which master-key version.
#[derive(Clone, Copy)]
enum Key {
    Master(i64),
    Secrets(i64),
}

impl Key {
    fn of(self, s: &Session, c: &Connection) -> Result<ObjectHandle, CkError> {
        Ok(match self {
            Key::Master(v) => c.version_keys(s, v)?.master,
            Key::Secrets(v) => c.version_keys(s, v)?.secrets,
        })
    }

    fn version(self) -> i64 {
        match self {
            Key::Master(v) | Key::Secrets(v) => v,
        }
    }
}

fn object_id(stored: &[u8]) -> Option<[u8; OBJECT_ID_LEN]> {
    stored.strip_prefix(OBJECT_PREFIX)?.try_into().ok()
}

impl Keystore for Pkcs11 {
    fn holds(&self, version: i64) -> Result<bool, KeyError> {
        let found = self.run(|s, c| c.version(s, version))?;
        Ok(found
            .map_err(|e| KeyError::Refused(format!("finding the master key: {e}")))?
            .is_some())
    }

    fn create(&self, version: i64) -> Result<(), KeyError> {
        let made = self.run(|s, c| c.create_version(s, version))?;
        made.map_err(|e| KeyError::Refused(format!("generating the master key: {e}")))
    }

    fn destroy(&self, version: i64) -> Result<(), KeyError> {
        let done = self.run(|s, c| c.destroy_version(s, version))?;
        done.map_err(|e| KeyError::Refused(format!("destroying the master key: {e}")))
    }

    fn wrap(&self, version: i64, label: &[u8], clear: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.gcm_encrypt(Key::Master(version), label, clear)
    }

    fn unwrap(
        &self,
        version: i64,
        label: &[u8],
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.gcm_decrypt(Key::Master(version), label, wrapped)
    }

    fn seal_secret(&self, version: i64, label: &[u8], clear: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.gcm_encrypt(Key::Secrets(version), label, clear)
    }

    fn open_secret(
        &self,
        version: i64,
        label: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.gcm_decrypt(Key::Secrets(version), label, sealed)
    }

    fn fingerprint_key(&self) -> Option<Zeroizing<[u8; 32]>> {
        None
    }

    fn set_fingerprint_key(&self, _key: &[u8]) -> Result<(), KeyError> {
        Ok(())
    }

    fn fingerprints(&self, messages: &[Vec<u8>]) -> Result<Vec<[u8; 32]>, KeyError> {
        let macs = self.run(|s, c| {
            messages
                .iter()
                .map(|m| s.sign(&Mechanism::Sha256Hmac, c.fingerprint, m))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let macs = macs.map_err(|e| KeyError::Refused(format!("HMAC: {e}")))?;
        macs.into_iter()
            .map(|m| {
                m.try_into()
                    .map_err(|_| KeyError::Refused("HMAC: not 32 bytes".into()))
            })
            .collect()
    }

    fn import_shared(
        &self,
        _version: i64,
        name: &[u8],
        algorithm: Algorithm,
        clear: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let name = String::from_utf8_lossy(name);
        let key_type = match (algorithm, clear.len()) {
            (Algorithm::Aes128 | Algorithm::Aes256, _) => KeyType::AES,
            (Algorithm::Tdes, 16) => KeyType::DES2,
            (Algorithm::Tdes, _) => KeyType::DES3,
        };
        // The object's id is keyed by the fingerprint key over the key's name (owner, purpose,
        // index) and the key: the same key imported again finds its object, another key or the
        // same key for another owner or purpose gets another one.
        let mut message = format!("tokenhub/shared-key-id/v2\0{name}\0{algorithm}\0").into_bytes();
        message.extend_from_slice(clear);
        let message = Zeroizing::new(message);
        let label = format!("tokenhub {name}");
        let id = self.run(|s, c| {
            let mac = s.sign(&Mechanism::Sha256Hmac, c.fingerprint, &message)?;
            let mut id = [0u8; OBJECT_ID_LEN];
            id.copy_from_slice(&mac[..OBJECT_ID_LEN]);
            let found = s.find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Id(id.to_vec()),
            ])?;
            if found.is_empty() {
                let mut template = kept_secret(&label);
                template.extend([
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(key_type),
                    Attribute::Id(id.to_vec()),
                    Attribute::Value(clear.to_vec()),
                    Attribute::Decrypt(true),
                    // The KCV: CMAC of a zero block for AES, the encrypted zero block for 3DES.
                    Attribute::Sign(key_type == KeyType::AES),
                    Attribute::Encrypt(key_type != KeyType::AES),
                ]);
                s.create_object(&template)?;
            }
            Ok(id)
        })?;
        let id = id.map_err(|e| KeyError::Refused(format!("creating the key: {e}")))?;
        Ok([OBJECT_PREFIX, &id].concat())
    }

    fn load_shared(
        &self,
        _version: i64,
        name: &[u8],
        _algorithm: Algorithm,
        stored: &[u8],
    ) -> Result<LoadedKey, KeyError> {
        let id = object_id(stored).ok_or(KeyError::OtherKeystore)?;
        let found = self.run(|s, c| c.find_shared(s, &id))?;
        let found = found.map_err(|e| KeyError::Refused(format!("finding the key: {e}")))?;
        found.ok_or_else(|| KeyError::MissingObject(String::from_utf8_lossy(name).into_owned()))?;
        Ok(LoadedKey::Object(id))
    }

    fn kcv(&self, key: &LoadedKey, algorithm: Algorithm) -> Result<[u8; 3], KeyError> {
        let LoadedKey::Object(id) = key else {
            return Err(KeyError::OtherKeystore);
        };
        let out = self.run(|s, c| {
            let h = c.shared_key(s, id)?;
            match algorithm {
                Algorithm::Tdes => s.encrypt(&Mechanism::Des3Ecb, h, &[0u8; 8]),
                _ => s.sign(&Mechanism::AesCMac, h, &[0u8; 16]),
            }
        })?;
        let out = out.map_err(|e| KeyError::Refused(format!("the KCV: {e}")))?;
        out.get(..3)
            .and_then(|k| k.try_into().ok())
            .ok_or(KeyError::KeyLength(algorithm))
    }

    fn decrypt_blocks(
        &self,
        key: Option<&LoadedKey>,
        algorithm: Algorithm,
        blocks: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let id = match key {
            Some(LoadedKey::Object(id)) => Some(id),
            Some(LoadedKey::Clear(_)) => return Err(KeyError::OtherKeystore),
            None => None,
        };
        let clear = self.run(|s, c| {
            let (mechanism, h) = match id {
                Some(id) => (
                    match algorithm {
                        Algorithm::Tdes => Mechanism::Des3Cbc([0; 8]),
                        _ => Mechanism::AesCbc([0; 16]),
                    },
                    c.shared_key(s, id)?,
                ),
                None => (Mechanism::AesCbc([0; 16]), c.stand_in),
            };
            s.decrypt(&mechanism, h, blocks)
        })?;
        clear
            .map(Zeroizing::new)
            .map_err(|e| KeyError::Refused(format!("CBC: {e}")))
    }
}
