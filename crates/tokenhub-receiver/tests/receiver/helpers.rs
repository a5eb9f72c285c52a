//! Shared test material: secrets, bodies, signed headers, a recording [`Hooks`].

#![allow(dead_code)]

use std::sync::Mutex;

use axum::http::{HeaderMap, HeaderValue};
use tokenhub_receiver::{
    Hooks, MemoryStore, Receiver, Signer, SqliteStore, Store, TokenUpdate, Verifier,
};

/// The secret of the vectors.
pub const SECRET_A: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Another secret, bytes 0x20..0x3f.
pub const SECRET_B: &str = "whsec_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
pub const API_KEY: &str = "psp-api-key-0001";

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A body for `token` at `minute` minutes past 2026-11-25T10:00Z, with these last digits.
pub fn body(token: &str, minute: u32, digits: Option<&str>) -> String {
    let mut v = serde_json::json!({
        "tokenId": token,
        "merchantId": "MERCHANT-0001",
        "tokenState": "ACTIVE",
        "tokenExpiryDate": "1129",
        "cardLastDigits": "4242",
        "cardExpiryDate": "0828",
        "cardArtId": null,
        "lastUpdateTimestamp": timestamp(minute),
    });
    if let Some(d) = digits {
        v["tokenLastDigits"] = d.into();
    }
    v.to_string()
}

pub fn timestamp(minute: u32) -> String {
    format!(
        "2026-11-25T{:02}:{:02}:00.000Z",
        10 + minute / 60,
        minute % 60
    )
}

/// The headers of a delivery signed with `secrets` at `ts`.
pub fn headers_at(id: &str, ts: i64, body: &str, secrets: &[&str], api_key: &str) -> HeaderMap {
    let signer = Signer::new(secrets).unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("APIKEY {api_key}")).unwrap(),
    );
    h.insert("webhook-id", HeaderValue::from_str(id).unwrap());
    h.insert("webhook-timestamp", HeaderValue::from(ts));
    h.insert(
        "webhook-signature",
        HeaderValue::from_str(&signer.signature_header(id, ts, body.as_bytes())).unwrap(),
    );
    h.insert("x-correlation-id", HeaderValue::from_static("corr-1"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h
}

/// A correctly signed delivery, now.
pub fn headers(id: &str, body: &str) -> HeaderMap {
    headers_at(id, now(), body, &[SECRET_A], API_KEY)
}

pub fn verifier() -> Verifier {
    Verifier::new(API_KEY, [SECRET_A]).unwrap()
}

/// Records the hooks' calls.
#[derive(Debug, Default)]
pub struct Recorder {
    pub discards: Mutex<Vec<String>>,
    pub updates: Mutex<Vec<TokenUpdate>>,
}

impl Hooks for Recorder {
    fn discard_token_pan(&self, token_id: &str) {
        self.discards.lock().unwrap().push(token_id.to_string());
    }

    fn on_update(&self, update: &TokenUpdate) {
        self.updates.lock().unwrap().push(update.clone());
    }
}

impl Recorder {
    pub fn discards(&self) -> Vec<String> {
        self.discards.lock().unwrap().clone()
    }

    pub fn updates(&self) -> usize {
        self.updates.lock().unwrap().len()
    }
}

pub fn receiver<S: Store>(store: S) -> Receiver<S, Recorder> {
    Receiver::with_hooks(verifier(), store, Recorder::default())
}

/// A SQLite store in a fresh temporary directory (kept alive by the returned guard).
pub async fn sqlite_store() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("receiver.db"))
        .await
        .unwrap();
    (store, dir)
}

pub fn memory_store() -> MemoryStore {
    MemoryStore::new()
}
