//! Token requestors on the admin API (`/admin/v1/token-requestors`): registration, the checks of
//! each field, secrets and API key never shown, and the base URLs the hub may reach.

use crate::support::*;
use serde_json::{json, Value};

hub_tests!(
    config = requestors_allowed;
    a_requestor_is_registered_and_its_api_key_and_secrets_are_never_shown,
    a_signing_secret_must_be_whsec_and_base64_of_16_to_64_bytes,
    a_requestor_needs_1_to_8_signing_secrets,
    other_requestor_fields_are_checked_at_their_limits,
    a_base_url_at_a_non_public_address_outside_the_allow_list_is_400,
);

hub_tests!(a_loopback_base_url_is_400_when_the_hub_does_not_allow_it);

async fn a_requestor_is_registered_and_its_api_key_and_secrets_are_never_shown(app: TestApp) {
    let secrets = [signing_secret(32), signing_secret(64)];
    let api_key = format!("key-{}", uuid::Uuid::new_v4().simple());
    let body = json!({
        "merchantId": "MERCHANT-1",
        "baseUrl": "https://psp.example.com/hooks",
        "apiKey": api_key,
        "signingSecrets": secrets,
    });
    let want = json!({
        "requestorId": REQUESTOR,
        "merchantId": "MERCHANT-1",
        "baseUrl": "https://psp.example.com/hooks",
        "signingSecrets": 2,
        "maxInFlight": 16,
        "state": "ENABLED",
        "notifications": {},
    });
    let put = app.put_requestor_body(REQUESTOR, &body).await;
    let get = app
        .admin_get(&format!("/admin/v1/token-requestors/{REQUESTOR}"))
        .await;
    for answer in [&put, &get] {
        assert_eq!(answer.expect(200), &want);
        assert!(!answer.text.contains(&api_key), "{}", answer.text);
        for s in &secrets {
            let b64 = s.strip_prefix("whsec_").unwrap();
            assert!(!answer.text.contains(b64), "{}", answer.text);
        }
    }

    // Put again: replaced.
    let mut body = body;
    body["signingSecrets"] = json!([signing_secret(16)]);
    body["maxInFlight"] = json!(4);
    body["merchantId"] = json!("MERCHANT-2");
    let v = app
        .put_requestor_body(REQUESTOR, &body)
        .await
        .expect(200)
        .clone();
    assert_eq!(
        (&v["signingSecrets"], &v["maxInFlight"], &v["merchantId"]),
        (&json!(1), &json!(4), &json!("MERCHANT-2"))
    );
    app.admin_get("/admin/v1/token-requestors/no-such-requestor")
        .await
        .expect(404);
}

async fn a_signing_secret_must_be_whsec_and_base64_of_16_to_64_bytes(app: TestApp) {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let url_safe = format!(
        "whsec_{}",
        base64::engine::general_purpose::URL_SAFE.encode([0xfb; 32])
    );
    let cases: Vec<(String, u16)> = vec![
        (signing_secret(16), 200),
        (signing_secret(64), 200),
        (signing_secret(15), 400),
        (signing_secret(65), 400),
        ("whsec_".into(), 400),
        ("nope".into(), 400),
        ("whsec_***".into(), 400),
        (format!("WHSEC_{}", b64(&[1; 32])), 400),
        (b64(&[1; 32]), 400),
        (url_safe, 400),
    ];
    for (i, (secret, status)) in cases.into_iter().enumerate() {
        let id = format!("r-{i}");
        let mut body = requestor_body();
        body["signingSecrets"] = json!([secret]);
        let answer = app.put_requestor_body(&id, &body).await;
        assert_eq!(answer.status, status, "{secret}: {answer:?}");
        if status == 400 {
            assert!(
                secret.len() <= "whsec_".len() || !answer.text.contains(&secret),
                "the refusal does not repeat the secret: {}",
                answer.text
            );
            app.admin_get(&format!("/admin/v1/token-requestors/{id}"))
                .await
                .expect(404);
        }
    }
}

async fn a_requestor_needs_1_to_8_signing_secrets(app: TestApp) {
    for (n, status) in [(0, 400), (1, 200), (8, 200), (9, 400)] {
        let mut body = requestor_body();
        body["signingSecrets"] = json!((0..n).map(|_| signing_secret(32)).collect::<Vec<_>>());
        let answer = app.put_requestor_body(&format!("r-{n}"), &body).await;
        assert_eq!(answer.status, status, "{n} secrets: {answer:?}");
    }
    // One bad secret among good ones spoils the lot.
    let mut body = requestor_body();
    body["signingSecrets"] = json!([signing_secret(32), "nope"]);
    app.put_requestor_body("r-mixed", &body).await.expect(400);
}

async fn other_requestor_fields_are_checked_at_their_limits(app: TestApp) {
    let cases: Vec<(&str, Value, u16)> = vec![
        ("merchantId", json!("m".repeat(64)), 200),
        ("merchantId", json!("m".repeat(65)), 400),
        ("merchantId", json!(""), 400),
        ("apiKey", json!("k".repeat(256)), 200),
        ("apiKey", json!("k".repeat(257)), 400),
        ("apiKey", json!(""), 400),
        ("apiKey", json!("with space"), 400),
        ("apiKey", json!("clé"), 400),
        ("maxInFlight", json!(1), 200),
        ("maxInFlight", json!(1024), 200),
        ("maxInFlight", json!(0), 400),
        ("maxInFlight", json!(1025), 400),
        ("baseUrl", json!("ftp://psp.example.com/hooks"), 400),
        ("baseUrl", json!("not a url"), 400),
        ("baseUrl", json!("http://"), 400),
    ];
    for (field, value, status) in cases {
        let mut body = requestor_body();
        body[field] = value.clone();
        let answer = app.put_requestor_body(REQUESTOR, &body).await;
        assert_eq!(answer.status, status, "{field} = {value}: {answer:?}");
    }
    for (id, status) in [("r".repeat(32), 200), ("r".repeat(33), 400)] {
        let answer = app.put_requestor_body(&id, &requestor_body()).await;
        assert_eq!(answer.status, status, "requestorId {id}");
    }
    app.put_requestor_body("shop%201", &requestor_body())
        .await
        .expect(400);
}

async fn a_base_url_at_a_non_public_address_outside_the_allow_list_is_400(app: TestApp) {
    // This hub allows 127.0.0.0/8 only.
    for url in [
        "http://10.0.0.1/hooks",
        "http://172.16.0.1/hooks",
        "http://192.168.1.10/hooks",
        "http://169.254.169.254/latest",
        "http://100.64.0.1/hooks",
        "http://0.0.0.0:8080/hooks",
        "http://[::1]:8080/hooks",
        "http://[fd00::1]/hooks",
        "http://[fe80::1]/hooks",
        "http://[::ffff:10.0.0.1]/hooks",
    ] {
        let mut body = requestor_body();
        body["baseUrl"] = json!(url);
        let answer = app.put_requestor_body(REQUESTOR, &body).await;
        assert_eq!(answer.status, 400, "{url}: {answer:?}");
    }
    for url in ["http://127.0.0.1:9/hooks", "https://psp.example.com/hooks"] {
        let mut body = requestor_body();
        body["baseUrl"] = json!(url);
        app.put_requestor_body(REQUESTOR, &body).await.expect(200);
    }
}

async fn a_loopback_base_url_is_400_when_the_hub_does_not_allow_it(app: TestApp) {
    for url in ["http://127.0.0.1:9/hooks", "http://[::1]:9/hooks"] {
        let mut body = requestor_body();
        body["baseUrl"] = json!(url);
        let answer = app
            .admin_send(
                reqwest::Method::PUT,
                &format!("/admin/v1/token-requestors/{REQUESTOR}"),
                Some(&body),
            )
            .await;
        assert_eq!(answer.status, 400, "{url}: {answer:?}");
        assert!(
            answer.json["message"]
                .as_str()
                .unwrap()
                .contains("TOKENHUB_OUTBOUND_ALLOW"),
            "{answer:?}"
        );
    }
    app.admin_get(&format!("/admin/v1/token-requestors/{REQUESTOR}"))
        .await
        .expect(404);
}
