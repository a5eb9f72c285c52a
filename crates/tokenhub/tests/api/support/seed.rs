//! What a hub under test starts with (the TSP, the issuer, the deployed profile, the device) and
//! the data a test plays the TSP with: elements, keys, tokens in a given state.

use super::{
    TestApp, DEK, DEVICE, ISSUER, KEK, LONG_NAME, OPTIONAL_COUNT, PRODUCT, TSP_ID, VERSION,
    WALLET_PROVIDER,
};
use base64::Engine;
use serde_json::{json, Value};
use tokenhub::clock::Clock;
use tokenhub::domain::TokenState;

/// Registers the wallet provider (its key in `app.wallet`), the fake TSP, the issuer, the
/// product's profile (deployed) and the device (the provider's).
pub(crate) async fn seed(app: &mut TestApp) {
    app.wallet_key = app.register_wallet_provider(WALLET_PROVIDER).await;
    app.wallet = app.wallet_client(&app.wallet_key);
    let r = app
        .put_tsp_with_subject(TSP_ID, &app.tsp.base_url(), super::TSP_SUBJECT)
        .await;
    assert_eq!(r.status(), 200, "register the TSP");
    let r = app.put_issuer(ISSUER, "First Test Bank", TSP_ID).await;
    assert_eq!(r.status(), 200, "register the issuer");
    let r = app
        .put_profile_version(ISSUER, PRODUCT, VERSION, &profile_definition())
        .await;
    assert_eq!(r.status(), 201, "define the profile version");
    let r = app.deploy(ISSUER, PRODUCT, VERSION).await;
    assert_eq!(r.status(), 200, "deploy the profile version");
    let r = app
        .register_device(&json!({"deviceId": DEVICE, "publicKey": device_public_key()}))
        .await;
    assert_eq!(r.status(), 201, "register the device");
}

/// The product's profile version: what the TSP must and may send, and the issuer's template.
pub fn profile_definition() -> Value {
    let mut elements = vec![
        json!({"name": "cmk_ac", "required": true, "format": "hex", "maxLength": 32, "sensitive": true,
               "keyPurpose": "kek"}),
        json!({"name": "track2_data", "required": true, "format": "hex", "maxLength": 64, "sensitive": true}),
        json!({"name": "psn", "required": true, "format": "digits", "maxLength": 2}),
        json!({"name": "par", "required": false, "format": "text", "maxLength": 29}),
        // No maxLength: only the contract's 100,000-character total bounds it.
        json!({"name": "issuer_note", "format": "text"}),
        json!({"name": LONG_NAME, "format": "text", "maxLength": 8}),
    ];
    elements.extend(
        (1..=OPTIONAL_COUNT)
            .map(|i| json!({"name": optional_name(i), "format": "digits", "maxLength": 4})),
    );
    json!({
        "dataElements": elements,
        "template": [
            {"dgi": "0101", "data": "9F0702FF00"},
            {"dgi": "0D01", "data": "5F280202505F3401"}
        ]
    })
}

pub fn optional_name(i: usize) -> String {
    format!("opt{i:03}")
}

/// A 32-byte device key, base64url.
pub fn device_public_key() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32])
}

/// A fresh unique id for a call (`x-correlation-id`).
pub fn correlation_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `{"issuerId": ISSUER, "tokenPersoInfo": elements}`.
pub fn data_body(elements: &[Value]) -> Value {
    json!({"issuerId": ISSUER, "tokenPersoInfo": elements})
}

/// A clear (non-sensitive) element.
pub fn clear(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

pub fn psn() -> Value {
    clear("psn", "01")
}

/// Random bytes, for key material and track 2 data nobody else could have sent.
pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// The strings of a JSON array.
pub fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

impl TestApp {
    /// Encrypts `clear` as the TSP does (CBC, zero IV, ISO 9797-1 method 2) under `key_index`;
    /// upper-case hex.
    pub fn encrypt(&self, key_index: &str, clear: &[u8]) -> String {
        let key = self.keys.find(key_index).expect("a ceremony key");
        let bytes = key.key_bytes().unwrap();
        hex::encode_upper(tokenhub_crypto::encrypt_cbc_m2(key.algorithm, &bytes, clear).unwrap())
    }

    /// An element encrypted under `key_index`.
    pub fn encrypted(&self, name: &str, key_index: &str, clear: &[u8]) -> Value {
        json!({"name": name, "value": self.encrypt(key_index, clear), "keyIndex": key_index})
    }

    /// A valid `cmk_ac`: a 16-byte card master key under the KEK.
    pub fn cmk_ac(&self) -> Value {
        self.encrypted("cmk_ac", KEK, &random_bytes(16))
    }

    /// A valid `track2_data`: 19 bytes under the DEK.
    pub fn track2_data(&self) -> Value {
        self.encrypted("track2_data", DEK, &random_bytes(19))
    }

    /// Every element the profile requires, valid.
    pub fn required_elements(&self) -> Vec<Value> {
        vec![self.cmk_ac(), self.track2_data(), psn()]
    }

    /// Sends every required element in one `/data` call, which must be accepted: the token is
    /// then `PERSONALIZING`.
    pub async fn complete_data(&self, token_id: &str) {
        self.put_data(token_id, &data_body(&self.required_elements()))
            .await
            .assert_accepted();
        assert_eq!(self.token_state(token_id).await, "PERSONALIZING");
    }

    /// A token the hub created and that is waiting for its data.
    pub async fn pending_token(&self) -> String {
        self.digitize().await
    }

    /// Sets the token's state in the store directly (the transitions that lead there, device
    /// delivery and lifecycle, are not what these tests are about).
    pub async fn set_token_state(&self, token_id: &str, state: TokenState) {
        let id = token_id.to_string();
        let now = self.clock.now_ms();
        self.hub
            .store
            .transact(move |conn| {
                Box::pin(async move { conn.set_token_state(&id, state, now).await })
            })
            .await
            .expect("set the token's state");
    }

    /// A token that went through its data preparation and whose device confirmed its profile: it
    /// is ACTIVE.
    pub async fn active_token(&self) -> String {
        self.active_token_with(&self.required_elements()).await
    }

    /// A token personalized with `elements` (all in one `/data` call), then confirmed by its device.
    pub async fn active_token_with(&self, elements: &[Value]) -> String {
        let token = self.pending_token().await;
        self.put_data(&token, &data_body(elements))
            .await
            .assert_accepted();
        assert_eq!(self.token_state(&token).await, "PERSONALIZING");
        self.confirm_personalization(&token).await;
        assert_eq!(self.token_state(&token).await, "ACTIVE");
        token
    }

    /// A token digitized with `extra` (e.g. `tokenRequestorId`, `card`), personalized and
    /// confirmed: ACTIVE.
    pub async fn active_token_from(&self, extra: Value) -> String {
        let token = self.digitize_with(extra).await;
        self.complete_data(&token).await;
        self.confirm_personalization(&token).await;
        assert_eq!(self.token_state(&token).await, "ACTIVE");
        token
    }
}
