//! The listeners under slow and hostile clients, and their certificates rotated on disk: real TLS
//! connections on loopback.

use crate::support::*;
use std::time::{Duration, Instant};
use tokenhub::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

hub_tests!(a_certificate_rotated_on_disk_is_served_to_new_connections_without_a_restart);

hub_tests!(
    config = tight;
    a_slowloris_is_closed_by_the_header_timeout,
    an_idle_keep_alive_connection_is_closed,
    connections_over_the_cap_are_closed_at_once,
);

hub_tests!(
    config = one_request;
    over_the_request_cap_the_wallet_listener_answers_503_with_retry_after,
    over_the_request_cap_the_tsp_listener_answers_921_with_retry_after,
);

const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_CONNECTIONS: usize = 3;

fn tight(config: &mut Config) {
    config.limits.header_read_timeout = HEADER_TIMEOUT;
    config.limits.max_connections = MAX_CONNECTIONS;
}

fn one_request(config: &mut Config) {
    config.limits.max_requests = 1;
}

async fn a_certificate_rotated_on_disk_is_served_to_new_connections_without_a_restart(
    app: TestApp,
) {
    let certs = test_certs();
    assert_eq!(
        served_certificate(&app.wallet_address).await,
        der(&certs.hub.cert)
    );
    // A connection opened before the rotation...
    let mut before = tls_connect(&app.wallet_address, None).await.unwrap();
    std::fs::write(app.cert_dir.join("hub.key"), &certs.hub_rotated.key).unwrap();
    std::fs::write(app.cert_dir.join("hub.crt"), &certs.hub_rotated.cert).unwrap();
    let rotated = der(&certs.hub_rotated.cert);
    let started = Instant::now();
    for base in [&app.wallet_address, &app.admin_address, &app.tsp_address] {
        loop {
            if served_certificate(base).await == rotated {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "not rotated: {base}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // ...is still served.
    let request = format!(
        "GET /wallet/v1/devices/{DEVICE}/personalizations HTTP/1.1\r\nhost: hub\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
        app.wallet_key
    );
    before.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    before.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // A half-written or broken pair keeps the certificate in use.
    std::fs::write(app.cert_dir.join("hub.crt"), "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(served_certificate(&app.wallet_address).await, rotated);
}

/// Reads until the server closes (`Ok(0)` or an error); how long that took.
async fn closed_within(tls: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, tls.read(&mut buf)).await {
            Err(_) => panic!("the connection is still open after {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
        }
    }
}

async fn a_slowloris_is_closed_by_the_header_timeout(app: TestApp) {
    let mut tls = tls_connect(&app.wallet_address, None).await.unwrap();
    let head = format!(
        "GET /wallet/v1/devices/{DEVICE}/personalizations HTTP/1.1\r\nhost: hub\r\nx-pad: {}\r\n\r\n",
        "a".repeat(64)
    );
    let (mut read, mut write) = tokio::io::split(tls);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = sent.clone();
    let writer = tokio::spawn(async move {
        for b in head.as_bytes() {
            if write.write_all(&[*b]).await.is_err() || write.flush().await.is_err() {
                break;
            }
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let took = closed_within(&mut read, Duration::from_secs(5)).await;
    writer.abort();
    assert!(
        took >= HEADER_TIMEOUT - Duration::from_millis(100),
        "{took:?}"
    );
    let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        sent < 20,
        "the head was still being taken after {sent} bytes"
    );
    // Whoever sends a whole request is served.
    tls = tls_connect(&app.wallet_address, None).await.unwrap();
    tls.write_all(
        format!(
            "GET /wallet/v1/devices/{DEVICE}/personalizations HTTP/1.1\r\nhost: hub\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
            app.wallet_key
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"));
}

async fn an_idle_keep_alive_connection_is_closed(app: TestApp) {
    for (base, identity) in [
        (&app.wallet_address, None),
        (&app.tsp_address, Some(&test_certs().tsp)),
    ] {
        let mut tls = tls_connect(base, identity).await.unwrap();
        // Without a request at all...
        closed_within(&mut tls, Duration::from_secs(5)).await;
        // ...and after one, kept alive.
        let mut tls = tls_connect(base, identity).await.unwrap();
        tls.write_all(
            b"GET /trapi/v2.0/healthCheck HTTP/1.1\r\nhost: hub\r\nx-request-id: r1\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = [0u8; 1024];
        let n = tls.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 "),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        let took = closed_within(&mut tls, Duration::from_secs(5)).await;
        assert!(
            took <= HEADER_TIMEOUT + Duration::from_millis(900),
            "{took:?}"
        );
    }
}

async fn connections_over_the_cap_are_closed_at_once(app: TestApp) {
    // Connections the harness left open are closed by the idle timeout first.
    tokio::time::sleep(HEADER_TIMEOUT + Duration::from_millis(500)).await;
    let mut held = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        held.push(tls_connect(&app.wallet_address, None).await.unwrap());
    }
    assert!(tls_connect(&app.wallet_address, None).await.is_err());
    // Other listeners have their own count.
    assert!(!served_certificate(&app.admin_address).await.is_empty());
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(tls_connect(&app.wallet_address, None).await.is_ok());
}

async fn over_the_request_cap_the_wallet_listener_answers_503_with_retry_after(app: TestApp) {
    let poll = app.url(&format!(
        "/wallet/v1/devices/{DEVICE}/personalizations?waitSeconds=3"
    ));
    let client = app.wallet.clone();
    let waiting = tokio::spawn(async move { client.get(poll).send().await.unwrap().status() });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = tsp_client(None)
        .get(app.url(&format!("/wallet/v1/devices/{DEVICE}/personalizations")))
        .bearer_auth(&app.wallet_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(waiting.await.unwrap(), 200);
    // The admin listener has its own cap.
    assert_eq!(app.admin_get("/admin/v1/tokens/TKNNONE").await.status, 404);
}

async fn over_the_request_cap_the_tsp_listener_answers_921_with_retry_after(app: TestApp) {
    let token = app.pending_token().await;
    // A TSP call whose body arrives slowly holds the one request in progress.
    let mut slow = tls_connect(&app.tsp_address, Some(&test_certs().tsp))
        .await
        .unwrap();
    slow.write_all(
        format!(
            "PUT /trapi/v2.0/tokens/{token}/data HTTP/1.1\r\nhost: hub\r\nx-correlation-id: c1\r\n\
             content-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = app
        .client
        .get(app.url("/trapi/v2.0/healthCheck"))
        .header("x-request-id", "r-busy")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["responseCode"], 921);
    drop(slow);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.health_check(Some("r-free")).await.status, 204);
}
