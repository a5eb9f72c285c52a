//! The software keystore: the master key (32 bytes, from `TOKENHUB_MASTER_KEY` or a `master.key`
//! file) in the hub's memory, expanded for AES-256-GCM; the fingerprint key derived from it; the
//! shared keys wrapped under it in the store and held clear (behind `secrecy`) once loaded.

use super::gcm::Gcm;
use super::keystore::{Keystore, LoadedKey, OBJECT_PREFIX};
use super::{open, seal, KeyError};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;
use tokenhub_crypto::Algorithm;
use zeroize::Zeroizing;

pub struct Software {
    /// The master key, expanded once (aws-lc holds it, and cleanses it when dropped).
    master: Gcm,
    /// Keys the fingerprints of data elements (HMAC-SHA256), derived from the master key.
    fingerprint: SecretBox<[u8; 32]>,
}

impl Software {
    pub fn from_master(key: &[u8; 32]) -> Result<Self, KeyError> {
        let fingerprint = {
            let mut mac =
                <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| KeyError::BadMasterKey)?;
            mac.update(b"tokenhub/fingerprint-key/v1");
            let out: [u8; 32] = mac.finalize().into_bytes().into();
            out
        };
        Ok(Self {
            master: Gcm::new(key).map_err(|_| KeyError::BadMasterKey)?,
            fingerprint: SecretBox::new(Box::new(fingerprint)),
        })
    }
}

impl Keystore for Software {
    fn wrap(&self, label: &[u8], clear: &[u8]) -> Result<Vec<u8>, KeyError> {
        seal(&self.master, label, clear)
    }

    fn unwrap(&self, label: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        open(&self.master, label, wrapped)
    }

    fn seal_secret(&self, label: &[u8], clear: &[u8]) -> Result<Vec<u8>, KeyError> {
        seal(&self.master, label, clear)
    }

    fn open_secret(&self, label: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        open(&self.master, label, sealed)
    }

    fn fingerprints(&self, messages: &[Vec<u8>]) -> Result<Vec<[u8; 32]>, KeyError> {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(self.fingerprint.expose_secret())
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
        label: &[u8],
        _algorithm: Algorithm,
        clear: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        seal(&self.master, label, clear)
    }

    fn load_shared(
        &self,
        label: &[u8],
        _algorithm: Algorithm,
        stored: &[u8],
    ) -> Result<LoadedKey, KeyError> {
        if stored.starts_with(OBJECT_PREFIX) {
            return Err(KeyError::OtherKeystore);
        }
        let clear = open(&self.master, label, stored)?;
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
