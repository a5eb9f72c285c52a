//! The sessions of one loaded PKCS#11 module: the token's slot, the hub's own keys in it (found by
//! label, generated when missing), a pool of logged-in sessions, and what tells a lost HSM from a
//! refused operation.

use super::{Pkcs11Config, OBJECT_ID_LEN};
use cryptoki::context::{CInitializeArgs, Pkcs11 as Module};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use secrecy::ExposeSecret;
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

const FINGERPRINT_LABEL: &str = "tokenhub/fingerprint-key/v1";
const STAND_IN_LABEL: &str = "tokenhub/stand-in-key/v1";

/// A master-key version's objects: the master key and the webhook-secret key.
#[derive(Clone, Copy)]
pub(super) struct VersionKeys {
    pub(super) master: ObjectHandle,
    pub(super) secrets: ObjectHandle,
}

fn master_label(version: i64) -> String {
    format!("tokenhub/master-key/v{version}")
}

fn secrets_label(version: i64) -> String {
    format!("tokenhub/webhook-secret-key/v{version}")
}

/// The hub's keys in one loaded module, and its idle logged-in sessions.
pub(super) struct Connection {
    /// Never finalized by the hub: another user of the module in the process (or a newer
    /// connection) may still need it initialized.
    module: ManuallyDrop<Module>,
    slot: Slot,
    idle: Mutex<Vec<Session>>,
    pub(super) fingerprint: ObjectHandle,
    pub(super) stand_in: ObjectHandle,
    /// The master key's and the webhook-secret key's handles by version, found once per
    /// connection.
    versions: RwLock<HashMap<i64, VersionKeys>>,
    /// Shared keys' object handles by `CKA_ID` (handles belong to the module's current life).
    shared: RwLock<HashMap<[u8; OBJECT_ID_LEN], ObjectHandle>>,
    /// Set when the module or its sessions were lost: the idle sessions' handles may then name
    /// another connection's sessions, so they are forgotten rather than closed.
    pub(super) lost: AtomicBool,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
        if self.lost.load(Ordering::Relaxed) {
            std::mem::forget(idle);
        }
    }
}

impl Connection {
    pub(super) fn checkout(&self, config: &Pkcs11Config) -> Result<Session, CkError> {
        if let Some(s) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(s);
        }
        open_session(&self.module, self.slot, config)
    }

    pub(super) fn checkin(&self, session: Session) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(session);
    }

    /// The objects of master-key version `version`, `None` when the token does not hold them.
    pub(super) fn version(
        &self,
        s: &Session,
        version: i64,
    ) -> Result<Option<VersionKeys>, CkError> {
        if let Some(k) = self
            .versions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&version)
        {
            return Ok(Some(*k));
        }
        let (Some(master), Some(secrets)) = (
            find_one(s, &master_label(version))?,
            find_one(s, &secrets_label(version))?,
        ) else {
            return Ok(None);
        };
        let keys = VersionKeys { master, secrets };
        self.versions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(version, keys);
        Ok(Some(keys))
    }

    /// The objects of master-key version `version` (a refusal when the token does not hold them).
    pub(super) fn version_keys(&self, s: &Session, version: i64) -> Result<VersionKeys, CkError> {
        self.version(s, version)?.ok_or(CkError::InvalidValue)
    }

    /// Generates master-key version `version` in the token (what of it is there is kept).
    pub(super) fn create_version(&self, s: &Session, version: i64) -> Result<(), CkError> {
        find_or_make(s, &master_label(version), &|s, l| generate_aes(s, l, 32))?;
        find_or_make(s, &secrets_label(version), &|s, l| generate_aes(s, l, 32))?;
        Ok(())
    }

    /// Destroys master-key version `version`'s objects.
    pub(super) fn destroy_version(&self, s: &Session, version: i64) -> Result<(), CkError> {
        self.versions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&version);
        for label in [master_label(version), secrets_label(version)] {
            for h in s.find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(label.into_bytes()),
            ])? {
                s.destroy_object(h)?;
            }
        }
        Ok(())
    }

    /// The handle of the shared key whose `CKA_ID` is `id` (the token may not hold it: a
    /// refusal, not a lost HSM).
    pub(super) fn shared_key(
        &self,
        s: &Session,
        id: &[u8; OBJECT_ID_LEN],
    ) -> Result<ObjectHandle, CkError> {
        self.find_shared(s, id)?.ok_or(CkError::InvalidValue)
    }

    /// [`Connection::shared_key`], `None` when the token does not hold it; found once per
    /// connection.
    pub(super) fn find_shared(
        &self,
        s: &Session,
        id: &[u8; OBJECT_ID_LEN],
    ) -> Result<Option<ObjectHandle>, CkError> {
        if let Some(h) = self
            .shared
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return Ok(Some(*h));
        }
        let found = s.find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Id(id.to_vec()),
        ])?;
        let Some(&h) = found.first() else {
            return Ok(None);
        };
        self.shared
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*id, h);
        Ok(Some(h))
    }
}

/// Whether an error says the session, the module or the token is gone (so a new connection may
/// succeed), rather than that the HSM refused the operation's input. A general failure is both
/// (SoftHSM2 answers a GCM tag that does not match with `CKR_GENERAL_ERROR`): the session then
/// tells, by answering or not.
pub(super) fn is_lost(e: &CkError, session: &Session) -> bool {
    is_gone(e)
        || matches!(
            e,
            CkError::Pkcs11(
                RvError::GeneralError
                    | RvError::FunctionFailed
                    | RvError::DeviceError
                    | RvError::DeviceMemory,
                _
            )
        ) && session.get_session_info().is_err()
}

/// Errors that only a lost session, module or token gives.
pub(super) fn is_gone(e: &CkError) -> bool {
    match e {
        CkError::Pkcs11(rv, _) => matches!(
            rv,
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::SessionCount
                | RvError::CryptokiNotInitialized
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::UserNotLoggedIn
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid
        ),
        CkError::LibraryLoading(_) => true,
        _ => false,
    }
}

pub(super) fn connect(config: &Pkcs11Config) -> Result<Connection, String> {
    let module = Module::new(&config.module)
        .map_err(|e| format!("loading {}: {e}", config.module.display()))?;
    let ours = match module.initialize(CInitializeArgs::OsThreads) {
        Ok(()) => true,
        // Initialized by another user of the module in this process (another hub, a test).
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => false,
        Err(e) => {
            std::mem::forget(module);
            return Err(format!("initializing the module: {e}"));
        }
    };
    let module = ManuallyDrop::new(module);
    match with_keys(module, config) {
        Ok(c) => Ok(c),
        Err((module, e)) => {
            // Finalized only when this attempt initialized it, so the next one starts afresh (a
            // module reads its tokens when initialized); another user's is left as it is.
            if ours {
                drop(ManuallyDrop::into_inner(module));
            }
            Err(e)
        }
    }
}

/// The connection on an initialized module: its token's slot, a logged-in session, the hub's own
/// keys (made if missing). On failure the module is handed back.
fn with_keys(
    module: ManuallyDrop<Module>,
    config: &Pkcs11Config,
) -> Result<Connection, (ManuallyDrop<Module>, String)> {
    let slot = match find_slot(&module, &config.token_label) {
        Ok(s) => s,
        Err(e) => return Err((module, e)),
    };
    let session = match open_session(&module, slot, config) {
        Ok(s) => s,
        Err(e) => return Err((module, format!("logging in: {e}"))),
    };
    let own = |label: &str, make: &dyn Fn(&Session, &str) -> Result<ObjectHandle, CkError>| {
        find_or_make(&session, label, make).map_err(|e| format!("the key {label}: {e}"))
    };
    let keys = (|| {
        Ok::<_, String>([
            own(FINGERPRINT_LABEL, &generate_hmac_key)?,
            own(STAND_IN_LABEL, &|s, l| generate_aes(s, l, 16))?,
        ])
    })();
    let [fingerprint, stand_in] = match keys {
        Ok(k) => k,
        Err(e) => {
            drop(session);
            return Err((module, e));
        }
    };
    Ok(Connection {
        module,
        slot,
        idle: Mutex::new(vec![session]),
        fingerprint,
        stand_in,
        versions: RwLock::new(HashMap::new()),
        shared: RwLock::new(HashMap::new()),
        lost: AtomicBool::new(false),
    })
}

fn find_slot(module: &Module, label: &str) -> Result<Slot, String> {
    let slots = module
        .get_slots_with_token()
        .map_err(|e| format!("listing the slots: {e}"))?;
    for slot in slots {
        let info = module
            .get_token_info(slot)
            .map_err(|e| format!("reading a token: {e}"))?;
        if info.label().trim_end() == label {
            return Ok(slot);
        }
    }
    Err(format!("no token is labelled {label:?}"))
}

fn open_session(module: &Module, slot: Slot, config: &Pkcs11Config) -> Result<Session, CkError> {
    let session = module.open_rw_session(slot)?;
    // cryptoki's own `secrecy` type; zeroized when dropped like ours.
    let pin = AuthPin::new(config.pin.expose_secret().to_string());
    match session.login(UserType::User, Some(&pin)) {
        // Logging in is per module and token: any earlier session did it for this one.
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(e) => Err(e),
    }
}

/// The one key labelled `label`, if any.
fn find_one(s: &Session, label: &str) -> Result<Option<ObjectHandle>, CkError> {
    let found = s.find_objects(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Label(label.as_bytes().to_vec()),
    ])?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        // Two hubs that started together on an empty token: refuse rather than pick one.
        _ => Err(CkError::InvalidValue),
    }
}

fn find_or_make(
    s: &Session,
    label: &str,
    make: &dyn Fn(&Session, &str) -> Result<ObjectHandle, CkError>,
) -> Result<ObjectHandle, CkError> {
    match find_one(s, label)? {
        Some(h) => Ok(h),
        None => {
            tracing::info!(label, "generating a key in the HSM");
            make(s, label)
        }
    }
}

/// The attributes every key the hub makes or imports has: kept in the token, private, sensitive,
/// never extractable.
pub(super) fn kept_secret(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

fn generate_aes(s: &Session, label: &str, len: u64) -> Result<ObjectHandle, CkError> {
    let mut template = kept_secret(label);
    template.extend([
        Attribute::ValueLen(len.into()),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
    ]);
    s.generate_key(&Mechanism::AesKeyGen, &template)
}

fn generate_hmac_key(s: &Session, label: &str) -> Result<ObjectHandle, CkError> {
    let mut template = kept_secret(label);
    template.extend([
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::ValueLen(32.into()),
        Attribute::Sign(true),
        Attribute::Verify(true),
    ]);
    s.generate_key(&Mechanism::GenericSecretKeyGen, &template)
}
