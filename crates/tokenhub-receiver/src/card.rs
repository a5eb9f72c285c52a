//! A card encrypted for tokenization: the requestor encrypts it to a key the hub publishes
//! (`GET /requestor/v1/encryption-keys`, a TSP's public JWK) as a compact JWE that only that TSP
//! opens; the hub forwards it untouched, by its `kid`. An EC key gets `ECDH-ES+A256KW`, an RSA key
//! `RSA-OAEP-256`, both with `A256GCM`.

use josekit::jwe::{self, JweHeader, ECDH_ES_A256KW, RSA_OAEP_256};
use josekit::jwk::Jwk;
use serde::Serialize;
use serde_json::Value;

/// Content encryption of every card JWE.
const JWE_ENC: &str = "A256GCM";

/// Why a card could not be encrypted. Names the fault, never a value.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    /// The key is not a public EC or RSA JWK with a `kid`.
    #[error("the encryption key is not usable: {0}")]
    Key(String),
    /// The encryption failed.
    #[error("the card could not be encrypted: {0}")]
    Encrypt(String),
}

/// The card a requestor keeps on file, as the TSP reads it inside the JWE: `{"fpan", "exp":
/// MMYY, "cvv"?, "cardholderName"?}`. Its `Debug` shows the last four digits only.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct CardData {
    /// The card number (the funding PAN).
    #[serde(rename = "fpan")]
    pub pan: String,
    /// MMYY.
    #[serde(rename = "exp")]
    pub expiry: String,
    /// The card's security code, when the TSP requires it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cvv: Option<String>,
    /// The card holder's name, when the TSP requires it.
    #[serde(rename = "cardholderName", skip_serializing_if = "Option::is_none")]
    pub cardholder_name: Option<String>,
}

impl std::fmt::Debug for CardData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let last4 = self
            .pan
            .get(self.pan.len().saturating_sub(4)..)
            .unwrap_or("");
        f.debug_struct("CardData")
            .field("pan", &format_args!("…{last4}"))
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

/// Encrypts `card` to `jwk` (one of [`crate::RequestorClient::encryption_keys`]) as a compact JWE,
/// the `encryptedCard` of [`crate::RequestorClient::tokenize`].
pub fn encrypt_card(jwk: &Value, card: &CardData) -> Result<String, CardError> {
    let map = jwk
        .as_object()
        .cloned()
        .ok_or_else(|| CardError::Key("not a JSON object".into()))?;
    let jwk = Jwk::from_map(map).map_err(|e| CardError::Key(e.to_string()))?;
    let kid = jwk
        .key_id()
        .ok_or_else(|| CardError::Key("no kid".into()))?
        .to_string();
    let mut header = JweHeader::new();
    header.set_content_encryption(JWE_ENC);
    header.set_key_id(kid);
    // The clear JSON lives only for the call.
    let payload = serde_json::to_vec(card).map_err(|e| CardError::Encrypt(e.to_string()))?;
    let sealed = match jwk.key_type() {
        "EC" => ECDH_ES_A256KW
            .encrypter_from_jwk(&jwk)
            .and_then(|e| jwe::serialize_compact(&payload, &header, &e)),
        "RSA" => RSA_OAEP_256
            .encrypter_from_jwk(&jwk)
            .and_then(|e| jwe::serialize_compact(&payload, &header, &e)),
        _ => return Err(CardError::Key("neither EC nor RSA".into())),
    };
    sealed.map_err(|e| CardError::Encrypt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use josekit::jwk::alg::ec::EcCurve;

    fn card() -> CardData {
        CardData {
            pan: "4111111111111111".into(),
            expiry: "1230".into(),
            cvv: None,
            cardholder_name: Some("A HOLDER".into()),
        }
    }

    #[test]
    fn an_ec_key_gets_a_jwe_its_private_half_opens() {
        let pair = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P256).unwrap();
        let mut public = pair.to_jwk_public_key();
        public.set_key_id("tsp-key-1");
        let jwk = Value::Object(public.as_ref().clone());
        let sealed = encrypt_card(&jwk, &card()).unwrap();
        assert!(!sealed.contains("4111"));
        assert_eq!(sealed.split('.').count(), 5);
        let mut private = pair.to_jwk_key_pair();
        private.set_key_id("tsp-key-1");
        let decrypter = ECDH_ES_A256KW.decrypter_from_jwk(&private).unwrap();
        let (payload, header) = jwe::deserialize_compact(&sealed, &decrypter).unwrap();
        assert_eq!(header.algorithm(), Some("ECDH-ES+A256KW"));
        assert_eq!(header.content_encryption(), Some("A256GCM"));
        assert_eq!(header.key_id(), Some("tsp-key-1"));
        let clear: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            clear,
            serde_json::json!({"fpan": "4111111111111111", "exp": "1230",
                               "cardholderName": "A HOLDER"})
        );
    }

    #[test]
    fn a_key_without_kid_or_of_another_type_is_refused() {
        let pair = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P256).unwrap();
        let no_kid = Value::Object(pair.to_jwk_public_key().as_ref().clone());
        assert!(matches!(
            encrypt_card(&no_kid, &card()),
            Err(CardError::Key(_))
        ));
        let oct = serde_json::json!({"kty": "oct", "k": "AAAA", "kid": "k"});
        assert!(matches!(
            encrypt_card(&oct, &card()),
            Err(CardError::Key(_))
        ));
        assert!(encrypt_card(&Value::Null, &card()).is_err());
    }

    #[test]
    fn debug_shows_the_last_four_digits_only() {
        let shown = format!("{:?}", card());
        assert!(shown.contains("…1111"));
        assert!(!shown.contains("411111"));
    }
}
