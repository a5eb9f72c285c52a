//! The hub's calls out, to TSPs and requestors: no redirect is followed, an answer is read only up
//! to a cap, and `http://` endpoints are refused unless plain HTTP was allowed for development.
//! (That no proxy from the environment is used is tested in `tests/outbound_proxy.rs`, a process
//! of its own: the environment is the process's.)

use crate::support::*;
use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenhub::config::OutboundSettings;
use tokenhub::domain::CorrelationId;
use tokenhub::requestor_client::{Attempt, Delivery, OutboundPolicy, RequestorClient};
use tokenhub::tsp_client::{CreateTokenRequest, DeviceInfo, TspCallError, TspClient};

hub_tests!(
    config = refusing_plain_http;
    http_endpoints_are_refused_unless_plain_http_is_allowed,
);

fn refusing_plain_http(config: &mut tokenhub::Config) {
    config.outbound.allow_plain_http = false;
    config.notify.outbound_allow = tokenhub::config::parse_cidrs("127.0.0.0/8").unwrap();
}

async fn http_endpoints_are_refused_unless_plain_http_is_allowed(app: TestApp) {
    let r = app.put_tsp(TSP_ID, &app.tsp.base_url()).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("https://"));
    let r = app
        .put_tsp(TSP_ID, "https://tsp.example.com/tsp/trapi/v2.0")
        .await;
    assert_eq!(r.status(), 200);
    let body = |url: &str| {
        json!({"merchantId": "merchant-1", "baseUrl": url, "apiKey": "key-1",
               "signingSecrets": [signing_secret(32)]})
    };
    let refused = app
        .put_requestor_body("req-plain", &body("http://127.0.0.1:9/hooks"))
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(refused.text.contains("https://"), "{}", refused.text);
    app.put_requestor_body("req-tls", &body("https://127.0.0.1:9/hooks"))
        .await
        .expect(200);
}

/// A server on loopback that answers every request with `answer` and counts the requests.
async fn serve(answer: fn() -> Response) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let router = axum::Router::new().fallback(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            answer()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}"), hits)
}

fn plain_http() -> OutboundSettings {
    OutboundSettings {
        allow_plain_http: true,
        proxy: None,
    }
}

fn create_token_request() -> CreateTokenRequest {
    CreateTokenRequest {
        issuer_id: ISSUER.into(),
        wallet_card_ref_id: "card-1".into(),
        token_requestor_id: None,
        device_info: DeviceInfo {
            device_id: DEVICE.into(),
            device_type: "PHONE",
        },
    }
}

async fn create_token(client: &TspClient, base: &str) -> Result<(), TspCallError> {
    let id = CorrelationId::parse("x-correlation-id", Some(correlation_id().as_bytes())).unwrap();
    client
        .create_token(base, &id, &create_token_request(), || async { Ok(()) })
        .await
        .map(|_| ())
}

fn requestor_client(settings: &OutboundSettings) -> RequestorClient {
    let loopback = tokenhub::config::parse_cidrs("127.0.0.0/8").unwrap();
    RequestorClient::new(
        OutboundPolicy::new(loopback),
        Duration::from_secs(5),
        settings,
    )
}

async fn notify(client: &RequestorClient, url: &str) -> Attempt {
    let url = format!("{url}/notify-token-update");
    client
        .send(&Delivery {
            url: &url,
            authorization: "APIKEY k",
            correlation_id: "c",
            webhook_id: "w",
            timestamp: 0,
            signature: "v1,x",
            body: "{}",
            server_ca_pem: None,
        })
        .await
}

#[tokio::test]
async fn a_redirect_is_not_followed_to_a_tsp_or_a_requestor() {
    let (target, target_hits) = serve(|| Response::new(Body::from(r#"{"tokenId": "T-1"}"#))).await;
    assert!(
        create_token(
            &TspClient::new(Duration::from_secs(5), &plain_http()),
            &target
        )
        .await
        .is_ok(),
        "the target answers when called"
    );
    target_hits.store(0, Ordering::SeqCst);
    static TARGET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TARGET.set(target).unwrap();
    let (redirecting, hits) = serve(|| {
        Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(
                header::LOCATION,
                format!("{}/tokens", TARGET.get().unwrap()),
            )
            .body(Body::empty())
            .unwrap()
    })
    .await;
    let tsp = TspClient::new(Duration::from_secs(5), &plain_http());
    match create_token(&tsp, &redirecting).await {
        Err(TspCallError::Refused { code: 307, .. }) => {}
        other => panic!("a redirect is a final refusal: {other:?}"),
    }
    let requestors = requestor_client(&plain_http());
    assert!(matches!(
        notify(&requestors, &redirecting).await,
        Attempt::Refused {
            status: Some(307),
            ..
        }
    ));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(
        target_hits.load(Ordering::SeqCst),
        0,
        "nothing reached the target"
    );
}

/// An answer that never ends: a client that reads it whole never finishes.
fn endless() -> Response {
    let chunk = axum::body::Bytes::from(vec![b' '; 16 * 1024]);
    let stream = futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

#[tokio::test]
async fn an_oversized_answer_is_given_up_at_its_cap() {
    let (url, _) = serve(endless).await;
    let started = Instant::now();
    let tsp = TspClient::new(Duration::from_secs(20), &plain_http());
    match create_token(&tsp, &url).await {
        Err(TspCallError::Protocol(why)) => assert!(why.contains("bytes"), "{why}"),
        other => panic!("an oversized answer is outside the contract: {other:?}"),
    }
    let requestors = requestor_client(&plain_http());
    assert_eq!(
        notify(&requestors, &url).await,
        Attempt::Delivered { status: 200 }
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Announced as too large: refused unread.
    let (url, _) = serve(|| {
        Response::builder()
            .header(header::CONTENT_LENGTH, (10 * 1024 * 1024).to_string())
            .body(Body::from(vec![b' '; 10 * 1024 * 1024]))
            .unwrap()
    })
    .await;
    assert!(matches!(
        create_token(&tsp, &url).await,
        Err(TspCallError::Protocol(_))
    ));
}

#[tokio::test]
async fn an_http_tsp_is_not_called_unless_plain_http_is_allowed() {
    let (url, hits) = serve(|| Response::new(Body::from(r#"{"tokenId": "T-1"}"#))).await;
    let strict = TspClient::new(Duration::from_secs(5), &OutboundSettings::default());
    assert!(matches!(
        create_token(&strict, &url).await,
        Err(TspCallError::Protocol(_))
    ));
    let strict = requestor_client(&OutboundSettings::default());
    assert!(matches!(
        notify(&strict, &url).await,
        Attempt::Refused { status: None, .. }
    ));
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let plain = TspClient::new(Duration::from_secs(5), &plain_http());
    assert!(create_token(&plain, &url).await.is_ok());
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}
