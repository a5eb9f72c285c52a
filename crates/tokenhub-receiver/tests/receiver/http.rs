//! The axum route over a real TCP listener, called with reqwest.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::HeaderMap;
use serde_json::Value;
use tokenhub_receiver::{router, Receiver, Store};

use crate::helpers::*;

async fn serve<S: Store>(store: S) -> (SocketAddr, Arc<Receiver<S, Recorder>>) {
    let receiver = Arc::new(receiver(store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, receiver)
}

/// reqwest is built without a TLS crypto provider in this workspace and refuses to build a
/// client until one is installed, even for plain http.
fn client() -> reqwest::Client {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    reqwest::Client::new()
}

async fn post(addr: SocketAddr, headers: HeaderMap, body: &str) -> reqwest::Response {
    client()
        .post(format!("http://{addr}/notify-token-update"))
        .headers(headers)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn answers_as_the_contract_says<S: Store>(store: S) {
    let (addr, receiver) = serve(store).await;
    let b = body("T1", 1, Some("1111"));

    let r = post(addr, headers("w1", &b), &b).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["x-correlation-id"], "corr-1");
    assert!(r.bytes().await.unwrap().is_empty());
    // A retry, an older update: acknowledged all the same.
    assert_eq!(post(addr, headers("w1", &b), &b).await.status(), 204);
    let old = body("T1", 0, Some("1111"));
    assert_eq!(post(addr, headers("w0", &old), &old).await.status(), 204);

    // Wrong API key: 401 with a small JSON body that names no secret.
    let r = post(addr, headers_at("w2", now(), &b, &[SECRET_A], "nope"), &b).await;
    assert_eq!(r.status(), 401);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"], "unauthorized");
    assert!(err["message"].as_str().unwrap().contains("API key"));
    // Wrong signature: 401.
    let r = post(addr, headers_at("w2", now(), &b, &[SECRET_B], API_KEY), &b).await;
    assert_eq!(r.status(), 401);
    // Not a token update: 400.
    let junk = "[1, 2, 3]";
    let r = post(addr, headers("w3", junk), junk).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "bad_request");
    // No webhook-id: 400.
    let mut h = headers("w4", &b);
    h.remove("webhook-id");
    assert_eq!(post(addr, h, &b).await.status(), 400);
    // Only POST.
    let r = client()
        .get(format!("http://{addr}/notify-token-update"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    // A body far too large.
    let big = "x".repeat(tokenhub_receiver::MAX_BODY_BYTES + 1);
    assert_eq!(post(addr, headers("w5", &big), &big).await.status(), 413);

    let s = receiver.stats();
    assert_eq!(
        (s.applied, s.duplicates, s.obsolete, s.rejected),
        (1, 1, 1, 4)
    );
    let stored = receiver.token("T1").await.unwrap().unwrap();
    assert_eq!(stored.update.last_update_timestamp_text, timestamp(1));
    assert_eq!(receiver.hooks().updates(), 1);
}

#[tokio::test]
async fn the_route_answers_as_the_contract_says_with_memory() {
    answers_as_the_contract_says(memory_store()).await;
}

#[tokio::test]
async fn the_route_answers_as_the_contract_says_with_sqlite() {
    let (store, _dir) = sqlite_store().await;
    answers_as_the_contract_says(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_http_deliveries_end_with_the_newest_state() {
    let (store, _dir) = sqlite_store().await;
    let (addr, receiver) = serve(store).await;
    let client = client();
    let mut tasks = Vec::new();
    for m in (0..40u32).rev() {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let b = body("T1", m, Some(&format!("{:04}", m / 10)));
            client
                .post(format!("http://{addr}/notify-token-update"))
                .headers(headers(&format!("w{m}"), &b))
                .body(b)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 204);
    }
    let stored = receiver.token("T1").await.unwrap().unwrap();
    assert_eq!(stored.update.last_update_timestamp_text, timestamp(39));
    let s = receiver.stats();
    assert_eq!(s.applied + s.obsolete, 40);
}
