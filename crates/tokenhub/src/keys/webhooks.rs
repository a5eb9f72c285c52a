//! A token requestor's credentials: its API key and the secrets that sign the updates sent to it
//! (Standard Webhooks: `v1,` + base64 of HMAC-SHA256 over `id.timestamp.body`, keyed with the
//! base64-decoded part of a `whsec_…` secret; the signing code is `tokenhub-receiver`'s, the
//! library requestors verify with). They are stored sealed under the keystore's webhook-secret
//! key (the master key in software) and opened only here, for the length of one signature.

use super::{KeyError, Keys};
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The prefix of a Standard Webhooks signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct Credentials {
    api_key: String,
    signing_secrets: Vec<String>,
}

/// The headers that authenticate one delivery. Their values are secret-bearing: mark them
/// sensitive when they go into a request.
pub struct DeliveryAuth {
    /// `APIKEY <key>`.
    pub authorization: Zeroizing<String>,
    /// One `v1,<base64>` entry per signing secret, separated by spaces.
    pub signature: String,
}

pub(super) fn label(requestor_id: &str) -> Vec<u8> {
    format!("tokenhub/requestor-credentials/v1/{requestor_id}").into_bytes()
}

/// Checks a signing secret's form: `whsec_` + base64 of 16 to 64 bytes. The message never
/// carries the secret.
pub fn check_signing_secret(secret: &str) -> Result<(), String> {
    let Some(b64) = secret.strip_prefix(SECRET_PREFIX) else {
        return Err(format!("a signing secret starts with {SECRET_PREFIX}"));
    };
    match base64::engine::general_purpose::STANDARD.decode(b64) {
        Ok(k) if (16..=64).contains(&k.len()) => Ok(()),
        Ok(_) => Err("a signing secret holds 16 to 64 bytes".into()),
        Err(_) => Err(format!(
            "a signing secret is {SECRET_PREFIX} followed by standard base64"
        )),
    }
}

impl Keys {
    /// Seals a requestor's API key and signing secrets (checked first) for the store.
    pub fn seal_requestor_credentials(
        &self,
        requestor_id: &str,
        api_key: &str,
        signing_secrets: &[String],
    ) -> Result<crate::domain::Wrapped, String> {
        for s in signing_secrets {
            check_signing_secret(s)?;
        }
        let creds = Credentials {
            api_key: api_key.to_string(),
            signing_secrets: signing_secrets.to_vec(),
        };
        let json =
            Zeroizing::new(serde_json::to_vec(&creds).expect("credentials always serialize"));
        let master_version = self.master_version();
        let bytes = self
            .keystore
            .seal_secret(master_version, &label(requestor_id), &json)
            .map_err(|e| e.to_string())?;
        Ok(crate::domain::Wrapped {
            bytes,
            master_version,
        })
    }

    /// The authorization and signature headers of one delivery attempt.
    pub fn authenticate_delivery(
        &self,
        requestor_id: &str,
        sealed: &crate::domain::Wrapped,
        webhook_id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<DeliveryAuth, KeyError> {
        let json = self.keystore.open_secret(
            sealed.master_version,
            &label(requestor_id),
            &sealed.bytes,
        )?;
        let creds: Credentials = serde_json::from_slice(&json).map_err(|_| KeyError::Unwrap)?;
        let signature = tokenhub_receiver::Signer::new(&creds.signing_secrets)
            .map_err(|_| KeyError::Unwrap)?
            .signature_header(webhook_id, timestamp, body);
        Ok(DeliveryAuth {
            authorization: Zeroizing::new(format!("APIKEY {}", creds.api_key)),
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenhub_receiver::sign;

    /// The Standard Webhooks vectors the receiver's tests also use (computed with the reference library).
    #[test]
    fn signatures_match_the_reference_vectors() {
        let secret = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        assert_eq!(
            sign(
                secret,
                "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
                1674087231,
                br#"{"type":"example","timestamp":"2023-01-19T00:00:00Z"}"#
            )
            .unwrap(),
            "v1,2xzsMzAe4FdrykGtjKnnTR2vTId5l4T5aJ2PryHpAHc="
        );
        let body = r#"{"tokenId":"TKN0001","merchantId":"MERCHANT-0001","tokenState":"SUSPENDED","lastUpdateTimestamp":"2026-11-25T10:00:00.000Z"}"#;
        assert_eq!(
            sign(secret, "tkn-upd-0001", 1764064800, body.as_bytes()).unwrap(),
            "v1,BbIRcsxY6U6rNCZgvLBVFYsOM5M8u94VUfFEdR4k6fs="
        );
    }

    #[test]
    fn every_secret_signs_and_credentials_stay_bound_to_their_requestor() {
        let keys = Keys::from_master_hex(&"11".repeat(32)).unwrap();
        let a = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_string();
        let b = "whsec_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=".to_string();
        let sealed = keys
            .seal_requestor_credentials("r1", "key-1", &[a.clone(), b.clone()])
            .unwrap();
        let auth = keys
            .authenticate_delivery("r1", &sealed, "id", 42, b"{}")
            .unwrap();
        assert_eq!(auth.authorization.as_str(), "APIKEY key-1");
        let want = format!(
            "{} {}",
            sign(&a, "id", 42, b"{}").unwrap(),
            sign(&b, "id", 42, b"{}").unwrap()
        );
        assert_eq!(auth.signature, want);
        assert!(keys
            .authenticate_delivery("r2", &sealed, "id", 42, b"{}")
            .is_err());
    }

    #[test]
    fn malformed_secrets_are_refused_without_echoing_them() {
        for bad in ["nope", "whsec_***", "whsec_AAEC"] {
            let e = check_signing_secret(bad).unwrap_err();
            assert!(!e.contains(bad), "{e}");
        }
    }
}
