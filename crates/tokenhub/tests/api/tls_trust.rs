//! Mutual TLS on the TSP listener, attacked: real handshakes on loopback with rcgen certificates.
//! No certificate, or one from a CA no TSP registered, fails the handshake; a certificate of the
//! registered CA that is no TSP's is refused; a TSP acting on another TSP's token or issuer gets
//! exactly the answer of an unknown one, and nothing changes.

use crate::support::*;
use serde_json::{json, Value};

hub_tests!(
    a_tsp_call_without_a_client_certificate_fails_the_handshake,
    a_client_certificate_from_a_ca_no_tsp_registered_fails_the_handshake,
    a_certificate_of_a_registered_ca_that_is_no_tsps_is_refused_until_that_tsp_registers,
    a_forged_deleted_from_an_unauthenticated_caller_fails_and_changes_nothing,
    tsp_b_on_tsp_a_token_answers_as_an_unknown_token_and_changes_nothing,
    a_tsp_registration_with_a_ca_but_nothing_to_recognise_its_certificate_is_400,
);

const HEALTH: &str = "/trapi/v2.0/healthCheck";

async fn health(app: &TestApp, client: &reqwest::Client) -> reqwest::Result<reqwest::Response> {
    client
        .get(app.url(HEALTH))
        .header("x-request-id", correlation_id())
        .send()
        .await
}

async fn a_tsp_call_without_a_client_certificate_fails_the_handshake(app: TestApp) {
    let anonymous = tsp_client(None);
    assert!(health(&app, &anonymous).await.is_err());
    assert!(raw_request_fails(&app.tsp_address, None).await);
    // The same client is fine where no certificate is asked for; with the TSP's, so is the call.
    let r = anonymous
        .get(app.url(&format!("/wallet/v1/devices/{DEVICE}/personalizations")))
        .bearer_auth(&app.wallet_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(health(&app, &app.client).await.unwrap().status(), 204);
}

/// Whether a request on a raw TLS connection to `base` gets no HTTP answer (with TLS 1.3 the
/// server's refusal of the client's certificate arrives after the client's side of the
/// handshake).
async fn raw_request_fails(base: &str, identity: Option<&Pem>) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut tls) = tls_connect(base, identity).await else {
        return true;
    };
    let request = format!("GET {HEALTH} HTTP/1.1\r\nhost: hub\r\nx-request-id: r1\r\n\r\n");
    if tls.write_all(request.as_bytes()).await.is_err() {
        return true;
    }
    let mut buf = Vec::new();
    match tls.read_to_end(&mut buf).await {
        Err(_) => true,
        Ok(_) => !buf.starts_with(b"HTTP/1.1"),
    }
}

async fn a_client_certificate_from_a_ca_no_tsp_registered_fails_the_handshake(app: TestApp) {
    let certs = test_certs();
    // The rogue certificate even has the registered TSP's subject.
    assert!(health(&app, &tsp_client(Some(&certs.rogue))).await.is_err());
    assert!(raw_request_fails(&app.tsp_address, Some(&certs.rogue)).await);
    // Registering the rogue CA for another TSP does not make it the TSP under test.
    let r = app
        .put_tsp_body(
            "tsp-rogue",
            &json!({"baseUrl": "https://127.0.0.1:1/tsp",
                    "clientCertificates": {"caPem": certs.rogue_ca, "subject": "CN=someone-else"}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = health(&app, &tsp_client(Some(&certs.rogue))).await.unwrap();
    assert_eq!(r.status(), 403);
}

async fn a_certificate_of_a_registered_ca_that_is_no_tsps_is_refused_until_that_tsp_registers(
    app: TestApp,
) {
    let b = tsp_client(Some(&test_certs().tsp_b));
    let r = health(&app, &b).await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"responseCode": 911, "errorMessage": "forbidden"})
    );
    let token = app.active_token().await;
    let r = app
        .tsp_call_with(
            &tsp_client(Some(&test_certs().tsp_b)),
            reqwest::Method::POST,
            &format!("/trapi/v2.0/tokens/{token}/updates"),
            &update_state(&at(1_000), "DELETED"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(app.token_state(&token).await, "ACTIVE");
    let r = app
        .put_tsp_with_subject("tsp-b", "https://127.0.0.1:1/tsp", TSP_B_SUBJECT)
        .await;
    assert_eq!(r.status(), 200);
    // A new connection is identified as TSP B from now on.
    let r = health(&app, &tsp_client(Some(&test_certs().tsp_b)))
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

async fn a_forged_deleted_from_an_unauthenticated_caller_fails_and_changes_nothing(app: TestApp) {
    let token = app.active_token().await;
    let before = app.get_token(&token).await;
    let forged = update_state(&at(1_000), "DELETED");
    for identity in [None, Some(&test_certs().rogue)] {
        let r = app
            .tsp_call_with(
                &tsp_client(identity),
                reqwest::Method::POST,
                &format!("/trapi/v2.0/tokens/{token}/updates"),
                &forged,
            )
            .await;
        assert!(r.is_err(), "{r:?}");
    }
    assert_eq!(app.get_token(&token).await, before);
    // The TSP's own update still applies: nothing was silenced.
    app.post_update(&token, &update_state(&at(2_000), "SUSPENDED"))
        .await
        .assert_accepted();
    assert_eq!(app.token_state(&token).await, "SUSPENDED");
}

/// TSP B's answer for `path` on A's token, and for the same call on a token nobody has.
async fn both(
    app: &TestApp,
    b: &reqwest::Client,
    method: reqwest::Method,
    path: impl Fn(&str) -> String,
    token: &str,
    body: &Value,
) -> ((u16, Option<u64>, String), (u16, Option<u64>, String)) {
    let mut out = Vec::new();
    for t in [token, "TKNNOBODYHASTHISTOKEN0001"] {
        let r = app
            .tsp_call_with(b, method.clone(), &path(t), body)
            .await
            .unwrap();
        out.push((r.status, r.code(), r.body.clone()));
    }
    let unknown = out.pop().unwrap();
    (out.pop().unwrap(), unknown)
}

async fn tsp_b_on_tsp_a_token_answers_as_an_unknown_token_and_changes_nothing(app: TestApp) {
    let r = app
        .put_tsp_with_subject("tsp-b", "https://127.0.0.1:1/tsp", TSP_B_SUBJECT)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.put_issuer("ISSUERB001", "Bank of B", "tsp-b")
            .await
            .status(),
        200
    );
    let b = tsp_client(Some(&test_certs().tsp_b));
    let active = app.active_token().await;
    let pending = app.pending_token().await;
    let active_before = app.get_token(&active).await;
    let pending_before = app.get_token(&pending).await;
    let updates = |t: &str| format!("/trapi/v2.0/tokens/{t}/updates");
    let data = |t: &str| format!("/trapi/v2.0/tokens/{t}/data");
    let new_data = |t: &str| format!("/trapi/v2.0/tokens/{t}/newData");
    for issuer in [ISSUER, "ISSUERB001"] {
        let mut deleted = update_state(&at(1_000), "DELETED");
        deleted["issuerId"] = json!(issuer);
        let (theirs, unknown) =
            both(&app, &b, reqwest::Method::POST, updates, &active, &deleted).await;
        assert_eq!(theirs, unknown, "updates naming {issuer}");
        assert!(matches!(unknown.1, Some(119) | Some(113)), "{unknown:?}");
        let mut body = data_body(&app.required_elements());
        body["issuerId"] = json!(issuer);
        let (theirs, unknown) = both(&app, &b, reqwest::Method::PUT, data, &pending, &body).await;
        assert_eq!(theirs, unknown, "data naming {issuer}");
        let (theirs, unknown) =
            both(&app, &b, reqwest::Method::PUT, new_data, &active, &body).await;
        assert_eq!(theirs, unknown, "newData naming {issuer}");
    }
    // A's issuer is as unknown to B as an unregistered one, and B's own issuer does not open
    // A's token: 113 and 119.
    let deleted = update_state(&at(1_000), "DELETED");
    let (_, unknown) = both(&app, &b, reqwest::Method::POST, updates, &active, &deleted).await;
    assert_eq!(unknown.1, Some(119));
    let mut body = data_body(&app.required_elements());
    let (theirs, _) = both(&app, &b, reqwest::Method::PUT, data, &pending, &body).await;
    assert_eq!(theirs.1, Some(113), "{theirs:?}");
    body["issuerId"] = json!("ISSUERB001");
    let (theirs, _) = both(&app, &b, reqwest::Method::PUT, data, &pending, &body).await;
    assert_eq!(theirs.1, Some(119), "{theirs:?}");
    assert_eq!(app.get_token(&active).await, active_before);
    assert_eq!(app.get_token(&pending).await, pending_before);
    // A, on its own token, is served.
    app.complete_data(&pending).await;
}

async fn a_tsp_registration_with_a_ca_but_nothing_to_recognise_its_certificate_is_400(
    app: TestApp,
) {
    let ca = &test_certs().ca;
    for body in [
        json!({"baseUrl": "https://127.0.0.1:1/tsp", "clientCertificates": {"caPem": ca}}),
        json!({"baseUrl": "https://127.0.0.1:1/tsp", "clientCertificates": {"caPem": "junk", "subject": "CN=x"}}),
        json!({"baseUrl": "https://127.0.0.1:1/tsp", "clientCertificates": {"caPem": ca, "spkiSha256": ["00"]}}),
        json!({"baseUrl": "https://127.0.0.1:1/tsp", "serverCaPem": "junk"}),
    ] {
        let r = app.put_tsp_body("tsp-x", &body).await;
        assert_eq!(r.status(), 400, "{body}");
    }
    // A pin of the certificate's public key recognises it.
    let pin = {
        use sha2::Digest;
        let der = der(&test_certs().tsp_b.cert);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        hex::encode(sha2::Sha256::digest(cert.public_key().raw))
    };
    let r = app
        .put_tsp_body(
            "tsp-b",
            &json!({"baseUrl": "https://127.0.0.1:1/tsp",
                    "clientCertificates": {"caPem": ca, "spkiSha256": [pin]}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = health(&app, &tsp_client(Some(&test_certs().tsp_b)))
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// A plain TSP listener has no certificate to tell the TSP by: it must be told which TSP it acts
/// for, or the hub does not start; and every API on one plain port is for loopback only.
#[tokio::test]
async fn a_plain_tsp_listener_without_its_tsp_or_a_public_development_port_does_not_start() {
    use tokenhub::config::{ListenerConfig, ListenerSecurity, Listeners};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hub.db").display());
    let plain = || ListenerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        security: ListenerSecurity::Plain,
    };
    let mut config = tokenhub::Config::for_database(&url);
    config.master_key = Some(MASTER_KEY.into());
    config.listeners = Some(Listeners {
        tsp: plain(),
        wallet: plain(),
        admin: plain(),
    });
    let e = tokenhub::Application::build(config.clone()).await.err();
    assert!(
        e.is_some_and(|e| e.to_string().contains("TOKENHUB_TSP_PLAIN_AS")),
        "a plain TSP listener needs its TSP"
    );
    config.tsp_plain_as = Some(TSP_ID.into());
    assert!(tokenhub::Application::build(config.clone()).await.is_ok());
    config.listeners = None;
    config.listen = "0.0.0.0:0".parse().unwrap();
    let e = tokenhub::Application::build(config).await.err();
    assert!(e.is_some_and(|e| e.to_string().contains("loopback")));
}
