//! The hub's calls to a TSP and its deliveries to a requestor over mutual TLS: it presents its
//! client certificate and trusts the peer's server CA as registered, and only then.

use crate::support::*;
use serde_json::json;
use tokenhub::Config;

hub_tests!(
    config = with_client_certificate;
    the_hub_presents_its_client_certificate_and_trusts_the_registered_server_ca,
    a_tsp_server_certificate_of_a_ca_not_registered_for_it_is_not_trusted,
    updates_reach_a_requestor_over_mutual_tls_under_its_registered_server_ca,
    a_requestor_server_certificate_of_a_ca_not_registered_for_it_is_not_trusted,
);

fn with_client_certificate(config: &mut Config) {
    config.client_identity = Some(hub_client_files());
    requestors_allowed(config);
}

async fn register(app: &TestApp, tsp: &TlsTsp, server_ca: Option<&str>) {
    let mut body = json!({
        "baseUrl": tsp.base_url,
        "clientCertificates": {"caPem": test_certs().ca, "subject": TSP_SUBJECT},
    });
    if let Some(ca) = server_ca {
        body["serverCaPem"] = json!(ca);
    }
    assert_eq!(app.put_tsp_body(TSP_ID, &body).await.status(), 200);
}

async fn the_hub_presents_its_client_certificate_and_trusts_the_registered_server_ca(app: TestApp) {
    let tsp = TlsTsp::spawn().await;
    register(&app, &tsp, Some(&test_certs().ca)).await;
    let token = app.digitize().await;
    assert!(token.starts_with("TKN"));
    assert_eq!(*tsp.callers.lock().unwrap(), ["CN=hub-client"]);
}

async fn a_tsp_server_certificate_of_a_ca_not_registered_for_it_is_not_trusted(app: TestApp) {
    let tsp = TlsTsp::spawn().await;
    for ca in [None, Some(test_certs().rogue_ca.as_str())] {
        register(&app, &tsp, ca).await;
        let r = app.post_digitization(&digitization_body()).await;
        assert_ne!(r.status(), 201);
    }
    assert!(tsp.callers.lock().unwrap().is_empty());
}

fn no_content() -> hyper::Response<axum::body::Body> {
    hyper::Response::builder()
        .status(204)
        .body(axum::body::Body::empty())
        .unwrap()
}

/// Registers [`REQUESTOR`] at a mutual-TLS peer, trusting `server_ca` for it, and activates a
/// token for it. Returns the peer's recorded callers and the token's first update.
async fn requestor_over_tls(
    app: &TestApp,
    server_ca: Option<&str>,
) -> (std::sync::Arc<std::sync::Mutex<Vec<String>>>, i64) {
    let (addr, callers) = MutualTlsPeer::spawn(no_content).await;
    let mut body = json!({
        "merchantId": "MERCHANT-TLS",
        "baseUrl": format!("https://{addr}/hooks"),
        "apiKey": "key-over-tls",
        "signingSecrets": [signing_secret(32)],
    });
    if let Some(ca) = server_ca {
        body["serverCaPem"] = json!(ca);
    }
    app.put_requestor_body(REQUESTOR, &body).await.expect(200);
    let token = app
        .active_token_from(json!({"tokenRequestorId": REQUESTOR, "card": card()}))
        .await;
    let first = notification_id(&app.newest_notification_of(&token).await);
    (callers, first)
}

async fn updates_reach_a_requestor_over_mutual_tls_under_its_registered_server_ca(app: TestApp) {
    let (callers, id) = requestor_over_tls(&app, Some(&test_certs().ca)).await;
    app.notification_in_state(id, "DELIVERED").await;
    assert_eq!(*callers.lock().unwrap(), ["CN=hub-client"]);
    let view = app
        .admin_get(&format!("/admin/v1/token-requestors/{REQUESTOR}"))
        .await;
    assert_eq!(view.expect(200)["serverCaPem"], json!(test_certs().ca));
}

async fn a_requestor_server_certificate_of_a_ca_not_registered_for_it_is_not_trusted(app: TestApp) {
    for ca in [None, Some(test_certs().rogue_ca.as_str())] {
        let (callers, id) = requestor_over_tls(&app, ca).await;
        let d = eventually("a failed attempt", || {
            let app = &app;
            async move {
                let d = app.delivery(id).await;
                (d["attempts"].as_i64().unwrap_or(0) >= 1 && d["lastError"].is_string())
                    .then_some(d)
            }
        })
        .await;
        assert_ne!(d["state"], "DELIVERED", "{d}");
        assert!(callers.lock().unwrap().is_empty());
    }
    let refused = app
        .put_requestor_body(
            REQUESTOR,
            &json!({"merchantId": "M", "baseUrl": "https://127.0.0.1:9/hooks", "apiKey": "k",
                    "signingSecrets": [signing_secret(32)], "serverCaPem": "not a certificate"}),
        )
        .await;
    refused.expect(400);
}
