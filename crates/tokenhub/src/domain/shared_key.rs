//! A key shared with a TSP at a key ceremony, as the store keeps it: wrapped under the master key
//! (only `keys` unwraps it), owned by one TSP, for one purpose, active until retired.
//!
//! **The purpose rule.** The TSP contract encrypts card master keys under a KEK and track 2 and
//! other data under a DEK. An encrypted element needs the purpose its profile definition gives it
//! (`keyPurpose`), or else the one its placement implies: an element whose bytes are a secret
//! DGI's value (`8xxx`, no tag: a key, EMV CPS) needs a KEK; any other encrypted element a DEK.

use super::named::named_enum;
use tokenhub_crypto::Algorithm;

/// What a shared key encrypts: keys (KEK) or data (DEK). Written `kek`/`dek` in JSON (profile
/// definitions, key sets), `KEK`/`DEK` in the store and the admin API's views.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum KeyPurpose {
    Kek,
    Dek,
}

impl KeyPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kek => "KEK",
            Self::Dek => "DEK",
        }
    }

    /// `KEK` or `DEK`, either case.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "KEK" => Some(Self::Kek),
            "DEK" => Some(Self::Dek),
            _ => None,
        }
    }
}

impl std::fmt::Display for KeyPurpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

named_enum! {
    /// Whether a shared key takes new data: a retired key refuses it, as an unknown key is
    /// refused.
    pub enum KeyState ("a key state") {
        Active = "ACTIVE",
        Retired = "RETIRED",
    }
}

/// A shared key wrapped under the master key, with what identifies and checks it.
#[derive(Debug, Clone)]
pub struct StoredKey {
    /// The TSP that owns the key: only its elements decrypt under it. Empty for a key imported
    /// before keys had owners whose owner could not be told (no TSP, or several): no element
    /// decrypts under it until it is imported again for its TSP.
    pub tsp_id: String,
    pub key_index: String,
    pub algorithm: Algorithm,
    pub purpose: KeyPurpose,
    pub state: KeyState,
    /// The key check value the ceremony gave (hex), checked when the key is imported.
    pub kcv: String,
    pub wrapped: Vec<u8>,
    /// The master-key version `wrapped` was wrapped under (an HSM's object: the version when it
    /// was imported).
    pub master_version: i64,
    /// The wrap's associated data binds the key's owner, index and purpose (`true`), or only its
    /// index (keys wrapped before keys had owners).
    pub bound: bool,
}

impl StoredKey {
    /// A key whose owner is known.
    pub fn owned(&self) -> bool {
        !self.tsp_id.is_empty()
    }
}
