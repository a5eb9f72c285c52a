//! API keys of the hub's callers: wallet providers' `twk_<keyId>_<secret>` and token requestors'
//! `trk_<keyId>_<secret>`, the secret 32 random bytes (base64url). The
//! hub keeps only the SHA-256 of the secret (a high-entropy secret needs no slow hash) and
//! compares it in constant time; the key itself is shown once, when it is made.

use base64::Engine;
use rand::RngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

const PREFIX: &str = "twk_";
/// Token requestors' keys (the requestor API).
pub const REQUESTOR_PREFIX: &str = "trk_";

/// A key just made: its id, the key to hand over once, and what the store keeps.
pub struct NewApiKey {
    pub key_id: String,
    pub api_key: SecretString,
    pub secret_hash: Vec<u8>,
}

/// A presented key, split: its id (to find its record) and its secret's hash (to compare).
pub struct PresentedKey<'a> {
    pub key_id: &'a str,
    secret_hash: [u8; 32],
}

/// Makes a provider's API key.
pub fn new_api_key() -> NewApiKey {
    new_key_with(PREFIX)
}

/// Makes an API key with `prefix` (e.g. [`REQUESTOR_PREFIX`]).
pub fn new_key_with(prefix: &str) -> NewApiKey {
    let mut id = [0u8; 8];
    let mut secret = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut *secret);
    let key_id = hex::encode(id);
    let secret = Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(*secret));
    NewApiKey {
        secret_hash: Sha256::digest(secret.as_bytes()).to_vec(),
        api_key: SecretString::from(format!("{prefix}{key_id}_{}", secret.as_str())),
        key_id,
    }
}

/// Splits a presented key; `None` when it does not have a key's form.
pub fn parse_api_key(presented: &str) -> Option<PresentedKey<'_>> {
    parse_key_with(PREFIX, presented)
}

/// Splits a presented key of `prefix`; `None` when it does not have that key's form.
pub fn parse_key_with<'a>(prefix: &str, presented: &'a str) -> Option<PresentedKey<'a>> {
    let (key_id, secret) = presented.strip_prefix(prefix)?.split_once('_')?;
    if key_id.len() != 16 || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) || secret.is_empty() {
        return None;
    }
    Some(PresentedKey {
        key_id,
        secret_hash: Sha256::digest(secret.as_bytes()).into(),
    })
}

impl PresentedKey<'_> {
    /// Whether the secret is the one whose hash is stored, in constant time.
    pub fn matches(&self, stored_hash: &[u8]) -> bool {
        self.secret_hash.ct_eq(stored_hash).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn a_new_key_matches_its_hash_and_nothing_else_does() {
        let k = new_api_key();
        let p = parse_api_key(k.api_key.expose_secret()).unwrap();
        assert_eq!(p.key_id, k.key_id);
        assert!(p.matches(&k.secret_hash));
        let other = new_api_key();
        assert!(!p.matches(&other.secret_hash));
        assert!(!p.matches(&[]));
        let tampered = format!("{}x", k.api_key.expose_secret());
        assert!(!parse_api_key(&tampered).unwrap().matches(&k.secret_hash));
    }

    #[test]
    fn a_requestor_key_is_not_a_wallet_key_nor_the_reverse() {
        let requestor = new_key_with(REQUESTOR_PREFIX);
        let wallet = new_api_key();
        let (r, w) = (
            requestor.api_key.expose_secret(),
            wallet.api_key.expose_secret(),
        );
        assert!(r.starts_with("trk_") && w.starts_with("twk_"));
        assert!(parse_api_key(r).is_none());
        assert!(parse_key_with(REQUESTOR_PREFIX, w).is_none());
        let p = parse_key_with(REQUESTOR_PREFIX, r).unwrap();
        assert!(p.matches(&requestor.secret_hash));
    }

    #[test]
    fn what_is_not_a_key_does_not_parse() {
        for s in [
            "",
            "twk_",
            "twk_0123456789abcdef_",
            "abc_0123456789abcdef_x",
            "twk_short_x",
        ] {
            assert!(parse_api_key(s).is_none(), "{s}");
        }
    }
}
