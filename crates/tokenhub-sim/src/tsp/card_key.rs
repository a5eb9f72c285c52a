//! The key card data is encrypted to: the TSP owns an EC P-256 key pair and publishes its public
//! half (a JWK) for the hub to hand to token requestors; a requestor encrypts the card as a JWE
//! (`ECDH-ES+A256KW`, `A256GCM`) that only the TSP opens, so the hub in between never sees it.

use base64::Engine;
use josekit::jwe::{self, JweHeader, ECDH_ES_A256KW};
use josekit::jwk::alg::ec::EcCurve;
use josekit::jwk::{Jwk, KeyPair};
use zeroize::Zeroizing;

/// The only key management algorithm and content encryption accepted.
pub const JWE_ALG: &str = "ECDH-ES+A256KW";
pub const JWE_ENC: &str = "A256GCM";

pub(crate) struct CardKey {
    private: Jwk,
    public: Jwk,
}

impl std::fmt::Debug for CardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardKey")
            .field("kid", &self.public.key_id())
            .finish_non_exhaustive()
    }
}

impl CardKey {
    /// A fresh key pair named `kid`.
    pub(crate) fn generate(kid: &str) -> anyhow::Result<Self> {
        let pair = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P256)?;
        let mut private = pair.to_jwk_key_pair();
        private.set_key_id(kid);
        let mut public = pair.to_jwk_public_key();
        public.set_key_id(kid);
        public.set_algorithm(JWE_ALG);
        public.set_key_use("enc");
        Ok(Self { private, public })
    }

    pub(crate) fn public_jwk(&self) -> serde_json::Value {
        serde_json::Value::Object(self.public.as_ref().clone())
    }

    /// Opens a compact JWE made to this key with [`JWE_ALG`] and [`JWE_ENC`]; `None` for anything
    /// else (another key, another algorithm, a broken token).
    pub(crate) fn open(&self, compact: &str) -> Option<Zeroizing<Vec<u8>>> {
        // josekit hands OpenSSL whatever tag it is given, and GCM checks a truncated tag only as
        // far as it goes: the IV and tag lengths are checked here first.
        let parts: Vec<&str> = compact.split('.').collect();
        let decoded_len = |part: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .map(|b| b.len())
                .ok()
        };
        if parts.len() != 5
            || decoded_len(parts[2]) != Some(12)
            || decoded_len(parts[4]) != Some(16)
        {
            return None;
        }
        let decrypter = ECDH_ES_A256KW.decrypter_from_jwk(&self.private).ok()?;
        let (payload, header) = jwe::deserialize_compact(compact, &decrypter).ok()?;
        let payload = Zeroizing::new(payload);
        if header.algorithm() != Some(JWE_ALG) || header.content_encryption() != Some(JWE_ENC) {
            return None;
        }
        if header.key_id().is_some() && header.key_id() != self.public.key_id() {
            return None;
        }
        Some(payload)
    }
}

/// Encrypts `payload` to the public JWK `jwk` (what a requestor does; tests and the requestor
/// simulator use it).
pub fn seal_card(jwk: &serde_json::Value, payload: &[u8]) -> anyhow::Result<String> {
    let map = jwk
        .as_object()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the encryption key is not a JWK object"))?;
    let jwk = Jwk::from_map(map)?;
    let encrypter = ECDH_ES_A256KW.encrypter_from_jwk(&jwk)?;
    let mut header = JweHeader::new();
    header.set_content_encryption(JWE_ENC);
    if let Some(kid) = jwk.key_id() {
        header.set_key_id(kid);
    }
    Ok(jwe::serialize_compact(payload, &header, &encrypter)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_sealed_to_the_public_key_opens_with_the_private_one_only() {
        let key = CardKey::generate("k1").unwrap();
        let other = CardKey::generate("k1").unwrap();
        let jwe = seal_card(&key.public_jwk(), br#"{"fpan":"4111111111111111"}"#).unwrap();
        assert!(!jwe.contains("4111"));
        assert_eq!(
            key.open(&jwe).unwrap().as_slice(),
            br#"{"fpan":"4111111111111111"}"#
        );
        assert!(other.open(&jwe).is_none());
        assert!(key.open("not.a.jwe.at.all").is_none());
        assert!(key.open(&jwe[..jwe.len() - 2]).is_none(), "a truncated tag");
    }

    #[test]
    fn the_public_jwk_carries_no_private_part() {
        let key = CardKey::generate("k1").unwrap();
        let jwk = key.public_jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["kid"], "k1");
        assert!(jwk.get("d").is_none());
    }
}
