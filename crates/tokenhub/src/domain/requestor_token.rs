//! A card-on-file token: made for a token requestor through the requestor API, from a card the
//! requestor encrypted to the TSP. The hub keeps what the requestor may be shown (state, last
//! digits, expiries, card art) and never a PAN.

use super::TokenState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestorToken {
    pub token_id: String,
    pub requestor_id: String,
    pub tsp_id: String,
    /// The issuer the TSP named; its updates must name the same.
    pub issuer_id: String,
    /// `ACTIVE`, `SUSPENDED` or `DELETED`.
    pub state: TokenState,
    pub token_last_digits: Option<String>,
    /// MMYY.
    pub token_expiry_date: Option<String>,
    pub card_last_digits: Option<String>,
    /// MMYY.
    pub card_expiry_date: Option<String>,
    pub card_art_id: Option<String>,
    /// The requestor's own reference of the card.
    pub requestor_reference: Option<String>,
    pub idempotency_key: String,
    /// SHA-256 of the request that made the token: a key reused for another request is refused.
    pub request_hash: Vec<u8>,
    pub last_update_ms: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A transaction type a requestor may ask credentials for, as the TSP names it.
pub const TRANSACTION_TYPES: [&str; 3] = ["CIT_ECOM", "MIT_RECURRING", "MIT_UNSCHEDULED"];

/// Key management algorithms a card's JWE may use, with content encryption [`JWE_ENC`].
pub const JWE_ALGS: [&str; 2] = ["ECDH-ES+A256KW", "RSA-OAEP-256"];
pub const JWE_ENC: &str = "A256GCM";
/// A JWE larger than the TSP takes (`cipheredCardInfo`: 8196 characters).
pub const MAX_JWE_LEN: usize = 8196;

fn b64(part: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()
}

/// The `kid` of a card's compact JWE, once it has a JWE's form: five base64url parts, a
/// protected header naming an accepted `alg`, `enc` A256GCM and a `kid`, an encrypted key, a
/// 96-bit IV, a ciphertext and a 128-bit tag. Nothing is decrypted: the hub cannot.
pub fn card_key_id(jwe: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("encryptedCard is not a valid JWE: {why}"));
    if jwe.is_empty() || jwe.len() > MAX_JWE_LEN {
        return bad("empty or too long");
    }
    let parts: Vec<&str> = jwe.split('.').collect();
    let [header, key, iv, ciphertext, tag] = parts[..] else {
        return bad("not five parts (compact serialization)");
    };
    let Some(header) =
        b64(header).and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
    else {
        return bad("the protected header is not base64url JSON");
    };
    if !header["alg"]
        .as_str()
        .is_some_and(|a| JWE_ALGS.contains(&a))
    {
        return bad("alg must be ECDH-ES+A256KW or RSA-OAEP-256");
    }
    if header["enc"].as_str() != Some(JWE_ENC) {
        return bad("enc must be A256GCM");
    }
    let Some(kid) = header["kid"]
        .as_str()
        .filter(|k| !k.is_empty() && k.len() <= 64)
    else {
        return bad("kid is missing");
    };
    if b64(key).is_none_or(|k| k.is_empty()) {
        return bad("the encrypted key is missing");
    }
    if b64(iv).is_none_or(|v| v.len() != 12) {
        return bad("the IV is not 96 bits");
    }
    if b64(ciphertext).is_none_or(|c| c.is_empty()) {
        return bad("the ciphertext is missing");
    }
    if b64(tag).is_none_or(|t| t.len() != 16) {
        return bad("the tag is not 128 bits");
    }
    Ok(kid.to_string())
}

/// A TSP's card encryption key must be a public EC (P-256) or RSA JWK with a `kid`.
pub fn check_public_jwk(jwk: &serde_json::Value) -> Result<(), String> {
    let Some(obj) = jwk.as_object() else {
        return Err("the key must be a JWK object".into());
    };
    if ["d", "p", "q", "dp", "dq", "qi", "k"]
        .iter()
        .any(|f| obj.contains_key(*f))
    {
        return Err("the key must be public: it has a private part".into());
    }
    if !obj
        .get("kid")
        .and_then(|k| k.as_str())
        .is_some_and(|k| !k.is_empty() && k.len() <= 64)
    {
        return Err("the key needs a kid of 1 to 64 characters".into());
    }
    match obj.get("kty").and_then(|k| k.as_str()) {
        Some("EC") if obj.get("crv").and_then(|c| c.as_str()) == Some("P-256") => Ok(()),
        Some("RSA") if obj.contains_key("n") && obj.contains_key("e") => Ok(()),
        _ => Err("the key must be an EC P-256 or RSA JWK".into()),
    }
}

fn digits(text: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

fn mmyy(text: &str) -> bool {
    digits(text, 4, 4)
        && matches!(
            &text[..2],
            "01" | "02" | "03" | "04" | "05" | "06" | "07" | "08" | "09" | "10" | "11" | "12"
        )
}

/// What the TSP answered for a new token follows the contract (digits, MMYY, lengths).
pub fn check_answer(t: &RequestorToken) -> Result<(), String> {
    if t.token_id.is_empty() || t.token_id.len() > 48 || t.issuer_id.chars().count() != 10 {
        return Err("tokenId or issuerId".into());
    }
    let ok_digits = |d: &Option<String>| d.as_deref().is_none_or(|d| digits(d, 2, 10));
    let ok_date = |d: &Option<String>| d.as_deref().is_none_or(mmyy);
    if !ok_digits(&t.token_last_digits) || !ok_digits(&t.card_last_digits) {
        return Err("last4".into());
    }
    if !ok_date(&t.token_expiry_date) || !ok_date(&t.card_expiry_date) {
        return Err("exp".into());
    }
    Ok(())
}

/// A transaction's token PAN and expiry have their forms (the message never holds them).
pub fn check_credentials(token_pan: &str, expiry: &str) -> Result<(), String> {
    if !digits(token_pan, 13, 19) {
        return Err("transactionCredentials: tokenPan is not 13 to 19 digits".into());
    }
    if !mmyy(expiry) {
        return Err("transactionCredentials: tokenExpiryDate is not MMYY".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn part(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn jwe(header: &str, iv: usize, tag: usize) -> String {
        format!(
            "{}.{}.{}.{}.{}",
            part(header.as_bytes()),
            part(&[1; 40]),
            part(&vec![2; iv]),
            part(&[3; 30]),
            part(&vec![4; tag])
        )
    }

    const GOOD: &str = r#"{"alg":"ECDH-ES+A256KW","enc":"A256GCM","kid":"k1","epk":{}}"#;

    #[test]
    fn a_compact_jwe_gives_its_kid_and_anything_else_is_refused() {
        assert_eq!(card_key_id(&jwe(GOOD, 12, 16)).unwrap(), "k1");
        let rsa = r#"{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k2"}"#;
        assert_eq!(card_key_id(&jwe(rsa, 12, 16)).unwrap(), "k2");
        for header in [
            r#"{"alg":"none","enc":"A256GCM","kid":"k1"}"#,
            r#"{"alg":"RSA1_5","enc":"A256GCM","kid":"k1"}"#,
            r#"{"alg":"ECDH-ES+A256KW","enc":"A128CBC-HS256","kid":"k1"}"#,
            r#"{"alg":"ECDH-ES+A256KW","enc":"A256GCM"}"#,
            "not json",
        ] {
            assert!(card_key_id(&jwe(header, 12, 16)).is_err(), "{header}");
        }
        assert!(card_key_id(&jwe(GOOD, 8, 16)).is_err());
        assert!(card_key_id(&jwe(GOOD, 12, 8)).is_err());
        assert!(card_key_id("a.b.c").is_err());
        assert!(card_key_id("").is_err());
        assert!(card_key_id(r#"{"fpan":"4111111111111111"}"#).is_err());
        assert!(card_key_id(&"a.".repeat(5000)).is_err());
    }

    #[test]
    fn only_public_ec_or_rsa_keys_with_a_kid_are_card_keys() {
        let ec = serde_json::json!({"kty":"EC","crv":"P-256","x":"a","y":"b","kid":"k"});
        assert!(check_public_jwk(&ec).is_ok());
        let mut private = ec.clone();
        private["d"] = "secret".into();
        assert!(check_public_jwk(&private).is_err());
        let mut no_kid = ec.clone();
        no_kid.as_object_mut().unwrap().remove("kid");
        assert!(check_public_jwk(&no_kid).is_err());
        assert!(check_public_jwk(&serde_json::json!({"kty":"oct","k":"x","kid":"k"})).is_err());
        assert!(check_public_jwk(&serde_json::json!("EC")).is_err());
    }

    #[test]
    fn credentials_are_checked_for_their_forms() {
        assert!(check_credentials("4895370000000001", "1229").is_ok());
        assert!(check_credentials("48953700", "1229").is_err());
        assert!(check_credentials("4895370000000001", "1329").is_err());
        assert!(check_credentials("489537000000000X", "1229").is_err());
    }
}
