//! The hub's outbound clients ignore `HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY`: a proxy resolves
//! names itself, past the address guard of the requestor client. A test binary of its own: the
//! environment is the process's, and the API tests' clients must not see these variables.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokenhub::config::OutboundSettings;
use tokenhub::domain::CorrelationId;
use tokenhub::requestor_client::{Attempt, Delivery, OutboundPolicy, RequestorClient};
use tokenhub::tsp_client::{CreateTokenRequest, DeviceInfo, TspClient};

/// A loopback server answering every request with `body` (HTTP/1.1, one request per
/// connection); counts the connections it accepted.
async fn listen(body: &'static str) -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (format!("http://{address}"), hits)
}

fn settings(proxy: Option<String>) -> OutboundSettings {
    OutboundSettings {
        allow_plain_http: true,
        proxy,
    }
}

async fn create_token(client: &TspClient, base: &str) {
    let id = CorrelationId::parse("x-correlation-id", Some(b"c-1")).unwrap();
    let request = CreateTokenRequest {
        issuer_id: "ISSUER0001".into(),
        wallet_card_ref_id: "card-1".into(),
        token_requestor_id: None,
        device_info: DeviceInfo {
            device_id: "device-1".into(),
            device_type: "PHONE",
        },
    };
    client
        .create_token(base, &id, &request, || async { Ok(()) })
        .await
        .expect("the call is answered");
}

async fn notify(client: &RequestorClient, base: &str) -> Attempt {
    client
        .send(&Delivery {
            url: &format!("{base}/notify-token-update"),
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
async fn outbound_calls_ignore_the_proxy_variables_unless_a_proxy_is_configured() {
    tokenhub::telemetry::install_crypto_provider();
    let (endpoint, endpoint_hits) = listen(r#"{"tokenId": "T-1"}"#).await;
    let (proxy, proxy_hits) = listen(r#"{"tokenId": "T-1"}"#).await;
    for name in ["NO_PROXY", "no_proxy"] {
        std::env::remove_var(name);
    }
    for name in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        std::env::set_var(name, &proxy);
    }
    // The variables are in force: a client that reads them goes through the proxy.
    reqwest::Client::new()
        .get(format!("{endpoint}/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(proxy_hits.load(Ordering::SeqCst), 1);
    assert_eq!(endpoint_hits.load(Ordering::SeqCst), 0);

    // The hub's clients do not.
    let tsp = TspClient::new(Duration::from_secs(5), &settings(None));
    create_token(&tsp, &endpoint).await;
    let loopback = tokenhub::config::parse_cidrs("127.0.0.0/8").unwrap();
    let requestors = RequestorClient::new(
        OutboundPolicy::new(loopback.clone()),
        Duration::from_secs(5),
        &settings(None),
    );
    assert_eq!(
        notify(&requestors, &endpoint).await,
        Attempt::Delivered { status: 200 }
    );
    assert_eq!(endpoint_hits.load(Ordering::SeqCst), 2);
    assert_eq!(
        proxy_hits.load(Ordering::SeqCst),
        1,
        "the proxy saw no call of the hub's"
    );

    // A proxy configured explicitly is used.
    let tsp = TspClient::new(Duration::from_secs(5), &settings(Some(proxy.clone())));
    create_token(&tsp, &endpoint).await;
    let requestors = RequestorClient::new(
        OutboundPolicy::new(loopback),
        Duration::from_secs(5),
        &settings(Some(proxy)),
    );
    assert_eq!(
        notify(&requestors, &endpoint).await,
        Attempt::Delivered { status: 200 }
    );
    assert_eq!(proxy_hits.load(Ordering::SeqCst), 3);
    assert_eq!(endpoint_hits.load(Ordering::SeqCst), 2);
}
