//! The renewal story with real processes: a PSP tokenizes a card on file through the hub
//! process, pays (the TSP simulator authorizes), the TSP renews the token and sends the hub the
//! update, the hub forwards it to the PSP's endpoint, the PSP discards the token PAN it kept and
//! fetches the new one with Create Transaction, and pays again; a replayed cryptogram is
//! declined. Neither the card PAN nor any token PAN is in the database or the hub's logs.

use crate::harness::{HubSettings, World, WorldOptions};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenhub_receiver::{
    router, MemoryStore, Payment, Receiver, RequestorClient, TokenPans, Verifier,
};
use tokenhub_sim::Authorization;

const FPAN: &str = "5555555555554444";
const API_KEY: &str = "e2e-psp-notification-key";
const SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

async fn admin(
    w: &World,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = w
        .http
        .request(method, format!("{}{path}", w.hub.url()))
        .bearer_auth(&w.hub.admin_key);
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn authorize(w: &World, c: &tokenhub_receiver::Credentials, amount: &str) -> String {
    w.tsp
        .authorize(&Authorization {
            token_pan: c.token_pan.clone(),
            token_expiry_date: c.token_expiry_date.clone(),
            cryptogram: c.cryptogram.clone(),
            amount: amount.into(),
            currency: "EUR".into(),
            transaction_type: "CIT_ECOM".into(),
            merchant_id: "E2E-PSP".into(),
        })
        .reason
}

e2e_tests! {
    async fn a_renewed_token_pan_is_discarded_fetched_again_and_never_stored_or_logged(backend) {
        let logs = tempfile::tempdir().unwrap();
        let log = logs.path().join("hub.log");
        let hub = HubSettings {
            env: vec![
                ("TOKENHUB_OUTBOUND_ALLOW".into(), "127.0.0.0/8".into()),
                ("RUST_LOG".into(), "debug".into()),
            ],
            log_to: Some(log.clone()),
            ..HubSettings::default()
        };
        let w = World::start(backend, WorldOptions { devices: 1, hub, ..WorldOptions::default() }).await;

        // The PSP's endpoint, built on the receiver library with its token PANs as hooks.
        let pans = Arc::new(TokenPans::default());
        let verifier = Verifier::new(API_KEY, [SECRET]).unwrap();
        let receiver = Arc::new(Receiver::with_hooks(verifier, MemoryStore::new(), pans.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(receiver)).await });

        let put = json!({"merchantId": "E2E-PSP", "baseUrl": base_url, "apiKey": API_KEY,
                         "signingSecrets": [SECRET]});
        assert_eq!(admin(&w, reqwest::Method::PUT, "/admin/v1/token-requestors/psp1", Some(put)).await.0, 200);
        let (status, key) = admin(&w, reqwest::Method::POST, "/admin/v1/token-requestors/psp1/api-keys", None).await;
        assert_eq!(status, 201);
        let jwk = w.tsp.encryption_jwk();
        let (status, _) = admin(&w, reqwest::Method::PUT, "/admin/v1/tsps/e2e-tsp/card-encryption-key", Some(jwk)).await;
        assert_eq!(status, 204);

        let client = RequestorClient::new(&w.hub.url(), key["apiKey"].as_str().unwrap(), w.http.clone());
        let keys = client.encryption_keys().await.unwrap();
        let card = json!({"fpan": FPAN, "exp": "0941"}).to_string();
        let jwe = tokenhub_sim::seal_card(&keys[0].1, card.as_bytes()).unwrap();
        let token = client.tokenize(&jwe, "customer-1-card-1", None).await.unwrap();
        let payment = Payment { amount: "4200".into(), currency: "EUR".into(), transaction_type: "CIT_ECOM".into() };
        let first = pans.pay(&client, &token.token_id, &payment).await.unwrap();
        assert_eq!(authorize(&w, &first, "4200"), "APPROVED");
        assert_eq!(authorize(&w, &first, "4200"), "REPLAY");

        let answer = w.tsp.renew_card_on_file(&token.token_id).await.unwrap().unwrap();
        assert_eq!(answer.status, 204);
        let until = Instant::now() + Duration::from_secs(60);
        while pans.get(&token.token_id).is_some() {
            assert!(Instant::now() < until, "the PSP never discarded the old token PAN");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(authorize(&w, &first, "4200"), "UNKNOWN_TOKEN");
        let second = pans.pay(&client, &token.token_id, &payment).await.unwrap();
        assert_ne!(second.token_pan, first.token_pan);
        assert_eq!(authorize(&w, &second, "4200"), "APPROVED");
        let current = client.token(&token.token_id).await.unwrap();
        assert!(second.token_pan.ends_with(current.token_last_digits.as_deref().unwrap()));

        let stored = w.hub.stored_bytes().await;
        let logged = std::fs::read(&log).unwrap();
        assert!(logged.len() > 1000, "the hub logged at debug level");
        for pan in [FPAN, first.token_pan.as_str(), second.token_pan.as_str()] {
            for (what, bytes) in [("database", &stored), ("logs", &logged)] {
                assert!(!bytes.windows(pan.len()).any(|w| w == pan.as_bytes()), "a PAN in the {what}");
            }
        }
    }
}
