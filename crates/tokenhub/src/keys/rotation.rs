//! The master key's versions: the first one recorded at first start, a new one made by a
//! rotation, each checked against the store's record of it (a check value wrapped under it) before
//! it is used, and what an older version wrapped re-wrapped under the newest.

use super::{data_key_label, shared_key_label, KeyError, Keys};
use crate::domain::master_key::{current, MasterKeyState, MasterKeyVersion};
use crate::domain::{StoredKey, Wrapped};
use std::sync::atomic::Ordering;
use zeroize::Zeroizing;

const CHECK_TEXT: &[u8] = b"tokenhub master-key check";

fn check_label(version: i64) -> Vec<u8> {
    format!("tokenhub/master-key-check/v{version}").into_bytes()
}

fn fingerprint_key_label(version: i64) -> Vec<u8> {
    format!("tokenhub/fingerprint-key/wrapped/v{version}").into_bytes()
}

impl Keys {
    /// The record of master-key version `version`, made under it: its check value and, for the
    /// software keystore, the fingerprint key wrapped under it. The keystore must hold the
    /// version already.
    fn record(&self, version: i64, now: i64) -> Result<MasterKeyVersion, KeyError> {
        let check = self
            .keystore
            .wrap(version, &check_label(version), CHECK_TEXT)?;
        let fingerprint_key = match self.keystore.fingerprint_key() {
            Some(k) => Some(
                self.keystore
                    .wrap(version, &fingerprint_key_label(version), &*k)?,
            ),
            None => None,
        };
        Ok(MasterKeyVersion {
            version,
            state: MasterKeyState::Active,
            check,
            fingerprint_key,
            created_ms: now,
            retired_ms: None,
        })
    }

    /// Version 1's record, for a store that has none yet (its first start, or one from before
    /// keys had versions). An HSM makes the key if its token lacks it.
    pub fn first_version(&self, now: i64) -> Result<MasterKeyVersion, KeyError> {
        self.keystore.create(1)?;
        self.record(1, now)
    }

    /// A new master-key version after the newest of `versions`, made in the keystore (an HSM's
    /// token, the key file) and recorded; new wraps use it once the store holds its record.
    pub fn next_version(
        &self,
        versions: &[MasterKeyVersion],
        now: i64,
    ) -> Result<MasterKeyVersion, KeyError> {
        let version = versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        self.keystore.create(version)?;
        self.record(version, now)
    }

    /// Takes the store's versions: each one not retired must be held by the keystore and open its
    /// check value; the software keystore takes its fingerprint key from the newest it holds; new
    /// wraps use the newest active version.
    pub fn adopt_versions(&self, versions: &[MasterKeyVersion]) -> Result<(), KeyError> {
        // A version retired on another node (or before a crash here) is destroyed here too.
        for v in versions
            .iter()
            .filter(|v| v.state == MasterKeyState::Retired)
        {
            if self.keystore.holds(v.version)? {
                self.keystore.destroy(v.version)?;
                tracing::info!(
                    version = v.version,
                    "destroyed a retired master-key version"
                );
            }
        }
        for v in versions
            .iter()
            .filter(|v| v.state != MasterKeyState::Retired)
        {
            if !self.keystore.holds(v.version)? {
                return Err(KeyError::MissingVersion(v.version));
            }
            let opened = self
                .keystore
                .unwrap(v.version, &check_label(v.version), &v.check)
                .map_err(|_| KeyError::VersionMismatch(v.version))?;
            if opened.as_slice() != CHECK_TEXT {
                return Err(KeyError::VersionMismatch(v.version));
            }
        }
        let newest_fingerprint = versions
            .iter()
            .filter(|v| v.state != MasterKeyState::Retired)
            .filter_map(|v| Some((v.version, v.fingerprint_key.as_ref()?)))
            .max_by_key(|(version, _)| *version);
        if let Some((version, wrapped)) = newest_fingerprint {
            let key = self
                .keystore
                .unwrap(version, &fingerprint_key_label(version), wrapped)?;
            self.keystore.set_fingerprint_key(&key)?;
        }
        if let Some(version) = current(versions) {
            self.current.store(version, Ordering::Release);
        }
        Ok(())
    }

    /// Destroys a retired version where the hub can (the key file, the HSM's token).
    pub fn destroy_version(&self, version: i64) -> Result<(), KeyError> {
        self.on_keystore(|| self.keystore.destroy(version))
    }

    /// The token's data key re-wrapped under version `to`.
    pub fn rewrap_data_key(
        &self,
        token_id: &str,
        key: &Wrapped,
        to: i64,
    ) -> Result<Wrapped, KeyError> {
        let label = data_key_label(token_id);
        let clear = self
            .keystore
            .unwrap(key.master_version, &label, &key.bytes)?;
        Ok(Wrapped {
            bytes: self.keystore.wrap(to, &label, &clear)?,
            master_version: to,
        })
    }

    /// A requestor's sealed credentials sealed again under version `to`'s webhook-secret key.
    pub fn rewrap_credentials(
        &self,
        requestor_id: &str,
        sealed: &Wrapped,
        to: i64,
    ) -> Result<Wrapped, KeyError> {
        let label = super::webhooks::label(requestor_id);
        let clear: Zeroizing<Vec<u8>> =
            self.keystore
                .open_secret(sealed.master_version, &label, &sealed.bytes)?;
        Ok(Wrapped {
            bytes: self.keystore.seal_secret(to, &label, &clear)?,
            master_version: to,
        })
    }

    /// A shared key's row re-wrapped under version `to` (an HSM's row names its object and
    /// only takes the version).
    pub fn rewrap_shared_key(&self, key: &StoredKey, to: i64) -> Result<StoredKey, KeyError> {
        let mut out = key.clone();
        out.master_version = to;
        if key.wrapped.starts_with(super::keystore::OBJECT_PREFIX) {
            return Ok(out);
        }
        let label = shared_key_label(key);
        let clear = self
            .keystore
            .unwrap(key.master_version, &label, &key.wrapped)?;
        out.wrapped = self.keystore.wrap(to, &label, &clear)?;
        Ok(out)
    }

    /// Runs `f` (key operations that may wait on an HSM) off the runtime's worker.
    pub fn blocking<T>(&self, f: impl FnOnce(&Self) -> T) -> T {
        self.on_keystore(|| f(self))
    }
}
