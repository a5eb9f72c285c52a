//! The wallet API (`/wallet/v1`): devices, and digitization, which calls the TSP's `createToken`.

use crate::support::*;
use base64::Engine;
use serde_json::{json, Value};

hub_tests!(
    a_device_key_that_is_not_32_bytes_is_refused_with_400,
    digitizing_creates_a_token_at_the_tsp_with_an_x_correlation_id,
    digitizing_onto_an_unknown_device_or_for_an_unknown_issuer_is_404,
    a_tsp_refusing_create_token_with_167_is_422_with_tsp_response_code_167,
    a_tsp_that_is_down_makes_digitization_503_tsp_unavailable,
    a_product_without_a_deployed_version_cannot_be_digitized,
);

async fn a_device_key_that_is_not_32_bytes_is_refused_with_400(app: TestApp) {
    let b64 = |n: usize| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(vec![1u8; n]);
    for key in [b64(31), b64(33), b64(0), "not base64!".to_string()] {
        let r = app
            .register_device(&json!({"deviceId": "device-2", "publicKey": key}))
            .await;
        assert_eq!(r.status(), 400, "{key}");
    }
    let r = app
        .register_device(&json!({"deviceId": "device-2", "publicKey": b64(32)}))
        .await;
    assert_eq!(r.status(), 201);
    let r = app
        .register_device(&json!({"deviceId": "device-2", "publicKey": b64(32)}))
        .await;
    assert_eq!(r.status(), 200, "the same key again is harmless");
    let other = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([2u8; 32]);
    let r = app
        .register_device(&json!({"deviceId": "device-2", "publicKey": other}))
        .await;
    assert_eq!(r.status(), 409, "another key for a known device");
}

async fn digitizing_creates_a_token_at_the_tsp_with_an_x_correlation_id(app: TestApp) {
    let token = app.digitize().await;
    let ids = app.tsp.received_correlation_ids();
    assert_eq!(ids.len(), 1);
    let id = ids[0]
        .as_deref()
        .expect("createToken carries x-correlation-id");
    assert!((1..=64).contains(&id.len()), "{id}");
    let bodies = app.tsp.received_bodies();
    assert_eq!(bodies[0]["issuerId"], ISSUER);
    assert_eq!(bodies[0]["deviceInfo"]["deviceId"], DEVICE);
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "PENDING_DATA");
    assert_eq!(
        view["history"][0]["correlationId"], id,
        "the same id names the operation"
    );
}

async fn digitizing_onto_an_unknown_device_or_for_an_unknown_issuer_is_404(app: TestApp) {
    let mut body = digitization_body();
    body["deviceId"] = json!("no-such-device");
    let r = app.post_digitization(&body).await;
    assert_eq!(r.status(), 404);
    let mut body = digitization_body();
    body["issuerId"] = json!("UNKNOWN001");
    let r = app.post_digitization(&body).await;
    assert_eq!(r.status(), 404);
    assert!(
        app.tsp.received_correlation_ids().is_empty(),
        "the TSP was not called"
    );
}

async fn a_tsp_refusing_create_token_with_167_is_422_with_tsp_response_code_167(app: TestApp) {
    app.tsp.answer_create_token_with(CreateToken::Refuse(167));
    let r = app.post_digitization(&digitization_body()).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["tspResponseCode"], 167);
    assert_eq!(body["error"], "CARD_ALREADY_ENROLLED");
    assert_eq!(
        app.tsp.received_correlation_ids().len(),
        1,
        "a refusal is not retried"
    );
}

async fn a_tsp_that_is_down_makes_digitization_503_tsp_unavailable(app: TestApp) {
    app.tsp.answer_create_token_with(CreateToken::Down);
    let r = app.post_digitization(&digitization_body()).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "TSP_UNAVAILABLE");
    let ids = app.tsp.received_correlation_ids();
    assert!(ids.len() > 1, "a 503 is retried: {ids:?}");
    assert!(
        ids.iter().all(|i| i.is_some() && *i == ids[0]),
        "retried under the same id: {ids:?}"
    );
    // Back up, the TSP creates the token.
    app.tsp.answer_create_token_with(CreateToken::Create);
    app.digitize().await;
}

async fn a_product_without_a_deployed_version_cannot_be_digitized(app: TestApp) {
    let mut body = digitization_body();
    body["productId"] = json!("no-such-product");
    let r = app.post_digitization(&body).await;
    assert_eq!(r.status(), 409);
}
