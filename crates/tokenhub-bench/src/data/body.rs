//! What the data bench sends: a 40-element profile version and the `/data` body that fills it,
//! and the parse-only server that takes the same body.

use super::{ISSUER_ID, X_CORRELATION_ID};
use anyhow::Context;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokenhub::domain::perso::{self, Operation};
use tokenhub::domain::{CorrelationId, TokenId};
use tokenhub_crypto::{encrypt_cbc_m2, KeySet};

/// The profile version (40 elements) and a `/data` body that fills every one of them.
///
/// 8 sensitive hex elements arrive encrypted (CBC, ISO 9797-1 method 2) under the KEK or the DEK,
/// 16 to 64 clear bytes each; the other 32 are clear `hex`, `digits` and `text` values.
pub(crate) fn profile_and_body(keys: &KeySet) -> anyhow::Result<(Value, Vec<u8>)> {
    let kek = keys.by_purpose("kek").context("the key set has no KEK")?;
    let dek = keys.by_purpose("dek").context("the key set has no DEK")?;
    let (kek_bytes, dek_bytes) = (kek.key_bytes()?, dek.key_bytes()?);
    let mut defs = Vec::new();
    let mut elements = Vec::new();
    for i in 0..8usize {
        let clear_len = 16 + i * 48 / 7; // 16 ..= 64 bytes
        let clear: Vec<u8> = (0..clear_len).map(|b| (b * 7 + i) as u8).collect();
        let (key, bytes, purpose) = if i % 2 == 0 {
            (kek, &kek_bytes, "kek")
        } else {
            (dek, &dek_bytes, "dek")
        };
        let ct = encrypt_cbc_m2(key.algorithm, bytes, &clear)?;
        let name = format!("secret_{i:02}");
        defs.push(json!({"name": name, "required": true, "format": "hex",
                         "maxLength": 128, "sensitive": true, "keyPurpose": purpose}));
        elements.push(json!({"name": name, "value": hex_upper(&ct), "keyIndex": key.key_index}));
    }
    for i in 0..32usize {
        let name = format!("element_{i:02}");
        let (format, value) = match i % 3 {
            0 => ("hex", "0123456789ABCDEF".repeat(15)),
            1 => ("digits", "0123456789".repeat(24)),
            _ => (
                "text",
                "The quick brown fox jumps over the lazy dog; ".repeat(5),
            ),
        };
        defs.push(json!({"name": name, "required": true, "format": format, "maxLength": 256}));
        elements.push(json!({"name": name, "value": value}));
    }
    let profile = json!({
        "dataElements": defs,
        "template": [
            {"dgi": "9102", "data": "A5058801015F2D02656E"},
            {"dgi": "0101", "data": "700A9F0702FF008E080000000000000000"}
        ]
    });
    let body = serde_json::to_vec(&json!({"issuerId": ISSUER_ID, "tokenPersoInfo": elements}))?;
    Ok((profile, body))
}

pub(crate) fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

// ---------------------------------------------------------------------------------------------
// The parse-only server.

pub(crate) fn parse_only_router() -> axum::Router {
    axum::Router::new()
        .route(
            "/trapi/v2.0/tokens/{token_id}/data",
            axum::routing::put(parse_only),
        )
        .layer(axum::extract::DefaultBodyLimit::max(
            tokenhub::http::MAX_BODY_BYTES,
        ))
}

/// What the hub does before any lookup: the correlation id, the token id, the body; then `204`.
pub(crate) async fn parse_only(
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = CorrelationId::parse(
        "x-correlation-id",
        headers.get(&X_CORRELATION_ID).map(|v| v.as_bytes()),
    )
    .and_then(|_| TokenId::parse(&raw))
    .and_then(|_| perso::parse_submission(&body, Operation::Data));
    let mut response = match outcome {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"responseCode": r.code.number(), "errorMessage": r.message})),
        )
            .into_response(),
    };
    if let Some(v) = headers.get(&X_CORRELATION_ID) {
        response.headers_mut().insert(X_CORRELATION_ID, v.clone());
    }
    response
}
