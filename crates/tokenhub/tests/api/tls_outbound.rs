//! The hub's calls to a TSP over mutual TLS: it presents its client certificate and trusts the
//! TSP's server CA as registered, and only then.

use crate::support::*;
use serde_json::json;
use tokenhub::Config;

hub_tests!(
    config = with_client_certificate;
    the_hub_presents_its_client_certificate_and_trusts_the_registered_server_ca,
    a_tsp_server_certificate_of_a_ca_not_registered_for_it_is_not_trusted,
);

fn with_client_certificate(config: &mut Config) {
    config.client_identity = Some(hub_client_files());
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
