//! The software keystore: the master key's versions (32 bytes each, from `TOKENHUB_MASTER_KEY` or
//! a `master.key` file) in the hub's memory, expanded for AES-256-GCM; the fingerprint key
//! (derived from version 1, kept wrapped in the store once a rotation retires that version); the
//! shared keys wrapped under the master key in the store and held clear (behind `secrecy`) once
//! loaded.
//!
//! The key file and the variable hold either one key (64 hex digits: version 1) or one
//! `version:hex` entry per version (lines in the file, commas in the variable).

use super::gcm::Gcm;
use super::keystore::{Keystore, LoadedKey, OBJECT_PREFIX};
use super::{open, seal, write_private, KeyError};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use tokenhub_crypto::Algorithm;
use zeroize::Zeroizing;

/// Master keys by version, clear (only while read or written).
pub type MasterKeys = BTreeMap<i64, Zeroizing<[u8; 32]>>;

pub struct Software {
    /// Each version, expanded once (aws-lc holds it, and cleanses it when dropped).
    masters: RwLock<BTreeMap<i64, Arc<Gcm>>>,
    /// The key file the versions come from (new versions are written to it), or none (the
    /// variable: a new version is added there by the operator).
    file: Option<PathBuf>,
    /// Keys the fingerprints of data elements (HMAC-SHA256).
    fingerprint: RwLock<Option<SecretBox<[u8; 32]>>>,
}

/// Reads `hex` (version 1) or `version:hex` entries separated by commas or lines.
pub fn parse_master_keys(text: &str) -> Result<MasterKeys, KeyError> {
    let text = text.trim();
    let mut out = MasterKeys::new();
    if !text.contains(':') {
        out.insert(1, decode_key(text)?);
        return Ok(out);
    }
    for entry in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (version, hex) = entry.split_once(':').ok_or(KeyError::BadMasterKey)?;
        let version: i64 = version.trim().parse().map_err(|_| KeyError::BadMasterKey)?;
        if version < 1 || out.insert(version, decode_key(hex)?).is_some() {
            return Err(KeyError::BadMasterKey);
        }
    }
    if out.is_empty() {
        return Err(KeyError::BadMasterKey);
    }
    Ok(out)
}

fn decode_key(hex_key: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let bytes = Zeroizing::new(hex::decode(hex_key.trim()).map_err(|_| KeyError::BadMasterKey)?);
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(KeyError::BadMasterKey);
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

fn derive_fingerprint_key(master: &[u8; 32]) -> Result<[u8; 32], KeyError> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(master).map_err(|_| KeyError::BadMasterKey)?;
    mac.update(b"tokenhub/fingerprint-key/v1");
    Ok(mac.finalize().into_bytes().into())
}

impl Software {
    pub fn new(keys: &MasterKeys, file: Option<PathBuf>) -> Result<Self, KeyError> {
        let fingerprint = match keys.get(&1) {
            Some(v1) => Some(SecretBox::new(Box::new(derive_fingerprint_key(v1)?))),
            None => None,
        };
        let software = Self {
            masters: RwLock::new(BTreeMap::new()),
            file,
            fingerprint: RwLock::new(fingerprint),
        };
        software.adopt(keys)?;
        Ok(software)
    }

    fn adopt(&self, keys: &MasterKeys) -> Result<(), KeyError> {
        let mut masters = self.masters.write().unwrap_or_else(|p| p.into_inner());
        for (version, key) in keys {
            if !masters.contains_key(version) {
                let gcm = Gcm::new(&**key).map_err(|_| KeyError::BadMasterKey)?;
                masters.insert(*version, Arc::new(gcm));
            }
        }
        Ok(())
    }

    fn master(&self, version: i64) -> Result<Arc<Gcm>, KeyError> {
        let masters = self.masters.read().unwrap_or_else(|p| p.into_inner());
        masters
            .get(&version)
            .cloned()
            .ok_or(KeyError::MissingVersion(version))
    }

    fn read_file(&self) -> Result<Option<MasterKeys>, KeyError> {
        let Some(path) = &self.file else {
            return Ok(None);
        };
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|e| KeyError::KeyFile {
                    path: path.display().to_string(),
                    why: e.to_string(),
                })?,
            );
        parse_master_keys(&text).map(Some)
    }

    /// Writes `keys` to the key file in place of what it held (a new file renamed over it).
    fn write_file(&self, keys: &MasterKeys) -> Result<(), KeyError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let err = |e: std::io::Error| KeyError::KeyFile {
            path: path.display().to_string(),
            why: e.to_string(),
        };
        let mut text = Zeroizing::new(String::new());
        for (version, key) in keys {
            text.push_str(&format!("{version}:{}\n", hex::encode(**key)));
        }
        let next = path.with_extension("key.next");
        let _ = std::fs::remove_file(&next);
        write_private(&next, text.as_bytes()).map_err(err)?;
        std::fs::rename(&next, path).map_err(err)?;
        if let Some(dir) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
            dir.sync_all().map_err(err)?;
        }
        Ok(())
    }
}

impl Keystore for Software {
    fn holds(&self, version: i64) -> Result<bool, KeyError> {
        if self.master(version).is_ok() {
            return Ok(true);
        }
        if let Some(keys) = self.read_file()? {
            self.adopt(&keys)?;
        }
        Ok(self.master(version).is_ok())
    }

    fn create(&self, version: i64) -> Result<(), KeyError> {
        if self.holds(version)? {
            return Ok(());
        }
        let Some(mut keys) = self.read_file()? else {
            return Err(KeyError::NotInVariable(version));
        };
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *key);
        keys.insert(version, key);
        self.write_file(&keys)?;
        self.adopt(&keys)
    }

    fn destroy(&self, version: i64) -> Result<(), KeyError> {
        if let Some(mut keys) = self.read_file()? {
            if keys.remove(&version).is_some() {
                self.write_file(&keys)?;
            }
        }
        let mut masters = self.masters.write().unwrap_or_else(|p| p.into_inner());
        masters.remove(&version);
        Ok(())
    }

    fn wrap(&self, version: i64, label: &[u8], clear: &[u8]) -> Result<Vec<u8>, KeyError> {
        seal(&*self.master(version)?, label, clear)
    }

    fn unwrap(
        &self,
        version: i64,
        label: &[u8],
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        open(&*self.master(version)?, label, wrapped)
    }

    fn seal_secret(&self, version: i64, label: &[u8], clear: &[u8]) -> Result<Vec<u8>, KeyError> {
        seal(&*self.master(version)?, label, clear)
    }

    fn open_secret(
        &self,
        version: i64,
        label: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        open(&*self.master(version)?, label, sealed)
    }

    fn fingerprint_key(&self) -> Option<Zeroizing<[u8; 32]>> {
        let key = self.fingerprint.read().unwrap_or_else(|p| p.into_inner());
        key.as_ref().map(|k| Zeroizing::new(*k.expose_secret()))
    }

    fn set_fingerprint_key(&self, key: &[u8]) -> Result<(), KeyError> {
        let key: [u8; 32] = key.try_into().map_err(|_| KeyError::Unwrap)?;
        *self.fingerprint.write().unwrap_or_else(|p| p.into_inner()) =
            Some(SecretBox::new(Box::new(key)));
        Ok(())
    }

    fn fingerprints(&self, messages: &[Vec<u8>]) -> Result<Vec<[u8; 32]>, KeyError> {
        let key = self.fingerprint.read().unwrap_or_else(|p| p.into_inner());
        let key = key.as_ref().ok_or(KeyError::NoFingerprintKey)?;
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret())
            .map_err(|_| KeyError::BadMasterKey)?;
        Ok(messages
            .iter()
            .map(|m| {
                let mut mac = mac.clone();
                mac.update(m);
                mac.finalize().into_bytes().into()
            })
            .collect())
    }

    fn import_shared(
        &self,
        version: i64,
        label: &[u8],
        _algorithm: Algorithm,
        clear: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        seal(&*self.master(version)?, label, clear)
    }

    fn load_shared(
        &self,
        version: i64,
        label: &[u8],
        _algorithm: Algorithm,
        stored: &[u8],
    ) -> Result<LoadedKey, KeyError> {
        if stored.starts_with(OBJECT_PREFIX) {
            return Err(KeyError::OtherKeystore);
        }
        let clear = open(&*self.master(version)?, label, stored)?;
        Ok(LoadedKey::Clear(SecretBox::new(Box::new(clear.to_vec()))))
    }

    fn kcv(&self, key: &LoadedKey, algorithm: Algorithm) -> Result<[u8; 3], KeyError> {
        let LoadedKey::Clear(clear) = key else {
            return Err(KeyError::OtherKeystore);
        };
        tokenhub_crypto::kcv(algorithm, clear.expose_secret())
            .map_err(|_| KeyError::KeyLength(algorithm))
    }

    fn decrypt_blocks(
        &self,
        key: Option<&LoadedKey>,
        algorithm: Algorithm,
        blocks: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        const STAND_IN: [u8; 16] = [0; 16];
        let (algorithm, key) = match key {
            Some(LoadedKey::Clear(k)) => (algorithm, k.expose_secret().as_slice()),
            Some(LoadedKey::Object(_)) => return Err(KeyError::OtherKeystore),
            None => (Algorithm::Aes128, STAND_IN.as_slice()),
        };
        tokenhub_crypto::decrypt_cbc_raw(algorithm, key, blocks)
            .map_err(|_| KeyError::KeyLength(algorithm))
    }
}
