//! A token requestor's receiver (`Receiver::handle` on a memory store): the API key, the Standard
//! Webhooks headers, the signature and the body.
//!
//! Input: one mode byte, then `authorization` (also read as a signing secret), `webhook-id`,
//! `webhook-timestamp` and `webhook-signature` on a line each, then the body. Mode bit 0: the
//! harness signs the body with the receiver's secret at the current time (appending the signature
//! to the input's), so that the body reaches the parser and the store; bit 1: the right API key
//! replaces the input's.
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tokenhub_receiver::{
    MemoryStore, Outcome, Receiver, Secret, Signer, Verifier, AUTHORIZATION, WEBHOOK_ID,
    WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP,
};

const API_KEY: &str = "fuzz-api-key";
const SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn parts() -> &'static (Verifier, Signer) {
    static PARTS: OnceLock<(Verifier, Signer)> = OnceLock::new();
    PARTS.get_or_init(|| {
        (
            Verifier::new(API_KEY, [SECRET]).expect("a secret"),
            Signer::new([SECRET]).expect("a secret"),
        )
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let mut lines = rest.splitn(5, |&b| b == b'\n');
    let mut field = || lines.next().unwrap_or_default();
    let (authorization, id, timestamp, signature, body) =
        (field(), field(), field(), field(), field());
    let (verifier, signer) = parts();

    // A signing secret as configured (`whsec_` and base64, or base64 alone).
    if let Ok(text) = std::str::from_utf8(authorization) {
        if let Ok(secret) = Secret::parse(text) {
            let _ = secret.sign("id", 0, body);
        }
    }

    // The signature check alone, at the input's own time when it has one.
    if let (Ok(id), Ok(ts), Ok(sig)) = (
        std::str::from_utf8(id),
        std::str::from_utf8(timestamp),
        std::str::from_utf8(signature),
    ) {
        let now = ts.trim().parse().unwrap_or(0);
        let _ = verifier.verify_signature_at(id, ts, body, sig, now);
    }

    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &[u8]| {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.insert(name, v);
        }
    };
    if mode & 2 == 2 {
        put(AUTHORIZATION, format!("APIKEY {API_KEY}").as_bytes());
    } else {
        put(AUTHORIZATION, authorization);
    }
    put(WEBHOOK_ID, id);
    let signed = mode & 1 == 1;
    if signed {
        let now = chrono::Utc::now().timestamp();
        put(WEBHOOK_TIMESTAMP, now.to_string().as_bytes());
        let id = std::str::from_utf8(id).unwrap_or_default();
        let mut sig = signature.to_vec();
        sig.push(b' ');
        sig.extend_from_slice(signer.signature_header(id, now, body).as_bytes());
        put(WEBHOOK_SIGNATURE, &sig);
    } else {
        put(WEBHOOK_TIMESTAMP, timestamp);
        put(WEBHOOK_SIGNATURE, signature);
    }

    let receiver = Receiver::new(verifier.clone(), MemoryStore::new());
    let first = futures::executor::block_on(receiver.handle(&headers, body));
    if let Err(e) = &first {
        let _ = (e.status(), e.code(), e.to_string());
    }
    // The same delivery again is a duplicate once it was applied.
    let second = futures::executor::block_on(receiver.handle(&headers, body));
    if matches!(first, Ok(Outcome::Applied)) {
        assert!(matches!(second, Ok(Outcome::Duplicate)), "{second:?}");
    }
});
