//! The token requestor simulator over real HTTP: the hub's side is played here with reqwest,
//! signing with `tokenhub_receiver::sign`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokenhub_sim::requestor::{
    DeliveryOutcome, MisbehaviourRequest, RequestorSim, RequestorSimConfig, RequestorStore,
};

use crate::helpers::{install_crypto_provider, PATIENCE};

const API_KEY: &str = "requestor-api-key";
const SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const NEW_SECRET: &str = "whsec_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

async fn start() -> RequestorSim {
    install_crypto_provider();
    RequestorSim::start(RequestorSimConfig::new(API_KEY, vec![SECRET.to_string()]))
        .await
        .unwrap()
}

fn client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap()
}

fn update(token: &str, minute: u32, digits: &str) -> String {
    json!({
        "tokenId": token,
        "merchantId": "MERCHANT-0001",
        "tokenState": "ACTIVE",
        "tokenLastDigits": digits,
        "tokenExpiryDate": "1129",
        "cardLastDigits": "4242",
        "cardExpiryDate": "0828",
        "cardArtId": null,
        "lastUpdateTimestamp": format!("2026-11-25T10:{minute:02}:00.000Z"),
    })
    .to_string()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A notification as the hub sends it, signed with `secret`.
fn notification(
    client: &reqwest::Client,
    base_url: &str,
    webhook_id: &str,
    body: &str,
    secret: &str,
) -> reqwest::RequestBuilder {
    let ts = now();
    let signature = tokenhub_receiver::sign(secret, webhook_id, ts, body.as_bytes()).unwrap();
    client
        .post(format!("{base_url}/notify-token-update"))
        .header("authorization", format!("APIKEY {API_KEY}"))
        .header("x-correlation-id", format!("corr-{webhook_id}"))
        .header("content-type", "application/json")
        .header("webhook-id", webhook_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body.to_string())
}

async fn notify(sim: &RequestorSim, webhook_id: &str, body: &str) -> reqwest::Response {
    notification(&client(), &sim.base_url(), webhook_id, body, SECRET)
        .send()
        .await
        .unwrap()
}

async fn sim_get(sim: &RequestorSim, path: &str) -> Value {
    let r = client()
        .get(format!("{}{path}", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn misbehave(sim: &RequestorSim, request: Value) -> reqwest::Response {
    client()
        .post(format!("{}/sim/misbehaviour", sim.base_url()))
        .json(&request)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn notifications_are_verified_applied_and_reported() {
    let sim = start().await;
    assert!(sim.base_url().starts_with("http://127.0.0.1:"));
    let mut events = sim.subscribe();

    let first = update("TKN1", 1, "1111");
    let r = notify(&sim, "w1", &first).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["x-correlation-id"], "corr-w1");
    // A retry, an older one, a new token PAN.
    assert_eq!(notify(&sim, "w1", &first).await.status(), 204);
    assert_eq!(
        notify(&sim, "w0", &update("TKN1", 0, "1111"))
            .await
            .status(),
        204
    );
    assert_eq!(
        notify(&sim, "w2", &update("TKN1", 2, "2222"))
            .await
            .status(),
        204
    );
    // Signed with a secret the requestor does not have: 401, nothing applied.
    let r = notification(
        &client(),
        &sim.base_url(),
        "w3",
        &update("TKN1", 3, "3333"),
        NEW_SECRET,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 401);

    let tokens = sim.tokens().await.unwrap();
    assert_eq!(tokens.len(), 1);
    let t = &tokens["TKN1"];
    assert_eq!(t.update.token_last_digits.as_deref(), Some("2222"));
    assert_eq!(t.webhook_id, "w2");
    assert_eq!(sim.pan_discards(), vec!["TKN1".to_string()]);

    let stats = sim.stats();
    assert_eq!(stats.received, 5);
    assert_eq!(stats.answered_2xx, 4);
    assert_eq!(
        (
            stats.applied,
            stats.duplicates,
            stats.obsolete,
            stats.rejected,
            stats.pan_discards
        ),
        (2, 1, 1, 1, 1)
    );
    assert_eq!(stats.failed_on_purpose, 0);

    // The same over the control endpoints.
    let status = sim_get(&sim, "/sim/status").await;
    assert_eq!(status["stats"]["applied"], 2);
    assert_eq!(status["stats"]["answered2xx"], 4);
    assert_eq!(status["misbehaviour"]["failNext"], 0);
    assert_eq!(status["misbehaviour"]["down"], false);
    let tokens = sim_get(&sim, "/sim/tokens").await;
    assert_eq!(tokens["TKN1"]["tokenLastDigits"], "2222");
    assert_eq!(
        tokens["TKN1"]["lastUpdateTimestamp"],
        "2026-11-25T10:02:00.000Z"
    );
    assert_eq!(tokens["TKN1"]["webhookId"], "w2");

    // One event per notification, in order, with the attempt's headers.
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let e = events.recv().await.unwrap();
        outcomes.push((e.webhook_id.clone().unwrap(), e.status, e.outcome));
        assert_eq!(e.token_id.as_deref(), Some("TKN1"));
        assert!(e.header("webhook-timestamp").is_some());
        assert_eq!(
            e.header("x-correlation-id"),
            Some(format!("corr-{}", e.webhook_id.as_deref().unwrap()).as_str())
        );
    }
    assert_eq!(
        outcomes,
        vec![
            ("w1".to_string(), 204, DeliveryOutcome::Applied),
            ("w1".to_string(), 204, DeliveryOutcome::Duplicate),
            ("w0".to_string(), 204, DeliveryOutcome::Obsolete),
            ("w2".to_string(), 204, DeliveryOutcome::Applied),
            ("w3".to_string(), 401, DeliveryOutcome::Rejected),
        ]
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn fail_next_answers_503_with_retry_after_then_applies() {
    let sim = start().await;
    let mut events = sim.subscribe();
    let r = misbehave(&sim, json!({"failNext": 2, "retryAfter": 1})).await;
    assert_eq!(r.status(), 200);
    let state: Value = r.json().await.unwrap();
    assert_eq!(state["failNext"], 2);
    assert_eq!(state["retryAfter"], 1);

    let body = update("TKN1", 1, "1111");
    for _ in 0..2 {
        let r = notify(&sim, "w1", &body).await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert!(
            sim.tokens().await.unwrap().is_empty(),
            "failed on purpose: not applied"
        );
    }
    // The retry gets through and is applied: the failed attempts did not burn the webhook-id.
    assert_eq!(notify(&sim, "w1", &body).await.status(), 204);
    assert_eq!(sim.tokens().await.unwrap().len(), 1);
    let stats = sim.stats();
    assert_eq!(
        (stats.received, stats.failed_on_purpose, stats.applied),
        (3, 2, 1)
    );
    for expected in [503, 503, 204] {
        assert_eq!(events.recv().await.unwrap().status, expected);
    }

    // The same from the handle, without Retry-After.
    sim.fail_next(1, None);
    let r = notify(&sim, "w2", &update("TKN1", 2, "1111")).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_none());
    assert_eq!(
        events.recv().await.unwrap().outcome,
        DeliveryOutcome::Forced
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn status_next_answers_any_status_to_the_next_few() {
    let sim = start().await;
    // 429 with Retry-After twice, over HTTP.
    let r = misbehave(
        &sim,
        json!({"statusNext": {"code": 429, "count": 2, "retryAfter": 2}}),
    )
    .await;
    assert_eq!(r.status(), 200);
    for _ in 0..2 {
        let r = notify(&sim, "w1", &update("TKN1", 1, "1111")).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
    }
    assert_eq!(
        notify(&sim, "w1", &update("TKN1", 1, "1111"))
            .await
            .status(),
        204
    );

    // 410 Gone, 404, 400, 401 from the handle.
    for code in [410u16, 404, 400, 401] {
        sim.status_next(code, 1, None).unwrap();
        let r = notify(&sim, &format!("w-{code}"), &update("TKN1", 5, "1111")).await;
        assert_eq!(r.status(), code);
    }
    assert!(sim.status_next(42, 1, None).is_err());
    let r = misbehave(&sim, json!({"statusNext": {"code": 1000, "count": 1}})).await;
    assert_eq!(r.status(), 400);

    let stats = sim.stats();
    assert_eq!(stats.failed_on_purpose, 6);
    assert_eq!(stats.applied, 1);
    assert_eq!(
        sim.tokens().await.unwrap()["TKN1"]
            .update
            .last_update_timestamp_text,
        "2026-11-25T10:01:00.000Z"
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn delay_answers_slowly_but_applies() {
    let sim = start().await;
    let r = misbehave(&sim, json!({"delayMs": 400})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["delayMs"], 400);

    let started = Instant::now();
    assert_eq!(
        notify(&sim, "w1", &update("TKN1", 1, "1111"))
            .await
            .status(),
        204
    );
    assert!(started.elapsed() >= Duration::from_millis(400));

    // A hub that gives up first: the update is applied all the same, its retry is a duplicate.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let body = update("TKN1", 2, "1111");
    let err = notification(&impatient, &sim.base_url(), "w2", &body, SECRET)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    sim.set_delay(None);
    assert_eq!(sim.misbehaviour().delay_ms, None);
    let deadline = Instant::now() + PATIENCE;
    while sim.stats().applied < 2 {
        assert!(
            Instant::now() < deadline,
            "the timed-out delivery was not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(notify(&sim, "w2", &body).await.status(), 204);
    assert_eq!(sim.stats().duplicates, 1);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn down_for_closes_the_port_and_comes_back_on_it() {
    let sim = start().await;
    let addr = sim.addr();
    // Over HTTP: the answer comes, then the port is closed.
    let r = misbehave(&sim, json!({"downForMs": 800})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["down"], true);
    let down_at = Instant::now();
    assert!(sim.is_down());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    let err = notify_result(&sim, "w1").await.unwrap_err();
    assert!(err.is_connect(), "{err}");

    // Back on the same port after the time.
    let deadline = Instant::now() + PATIENCE;
    let r = loop {
        match notify_result(&sim, "w1").await {
            Ok(r) => break r,
            Err(_) => {
                assert!(Instant::now() < deadline, "never came back");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(down_at.elapsed() >= Duration::from_millis(700));
    assert_eq!(r.status(), 204);
    assert!(!sim.is_down());
    assert_eq!(sim.addr(), addr);

    // From the handle, with a pooled keep-alive connection open: it is closed too.
    let keep_alive = client();
    let ok = notification(
        &keep_alive,
        &sim.base_url(),
        "w2",
        &update("TKN1", 2, "1"),
        SECRET,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(ok.status(), 204);
    sim.go_down(Duration::from_millis(500)).await.unwrap();
    let refused = notification(
        &keep_alive,
        &sim.base_url(),
        "w3",
        &update("TKN1", 3, "1"),
        SECRET,
    )
    .send()
    .await;
    assert!(refused.is_err(), "a notification got through while down");
    let deadline = Instant::now() + PATIENCE;
    while sim.is_down() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = notification(
        &keep_alive,
        &sim.base_url(),
        "w3",
        &update("TKN1", 3, "1"),
        SECRET,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(sim.stats().applied, 3);
    sim.shutdown().await.unwrap();
}

async fn notify_result(sim: &RequestorSim, webhook_id: &str) -> reqwest::Result<reqwest::Response> {
    notification(
        &client(),
        &sim.base_url(),
        webhook_id,
        &update("TKN1", 1, "1111"),
        SECRET,
    )
    .send()
    .await
}

#[tokio::test]
async fn the_events_time_each_delivery_and_sqlite_keeps_the_state() {
    install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("requestor.db");
    let mut config =
        RequestorSimConfig::new(API_KEY, vec![NEW_SECRET.to_string(), SECRET.to_string()]);
    config.store = RequestorStore::Sqlite(db.clone());
    let sim = RequestorSim::start(config.clone()).await.unwrap();
    let mut events = sim.subscribe();

    let mut sent = Vec::new();
    for m in 0..5u32 {
        let before = Instant::now();
        let r = notify(
            &sim,
            &format!("w{m}"),
            &update(&format!("TKN{}", m % 2), m, "1111"),
        )
        .await;
        assert_eq!(r.status(), 204);
        sent.push((before, Instant::now()));
    }
    for (m, (before, after)) in sent.iter().enumerate() {
        let e = events.recv().await.unwrap();
        assert_eq!(e.webhook_id.as_deref(), Some(format!("w{m}").as_str()));
        assert_eq!(
            e.last_update_timestamp.as_deref(),
            Some(format!("2026-11-25T10:{m:02}:00.000Z").as_str())
        );
        assert!(*before <= e.received_at && e.received_at <= *after);
        assert_eq!(e.outcome, DeliveryOutcome::Applied);
    }
    // A misbehaviour request without effect is fine, and the handle's form works.
    let state = sim.misbehave(MisbehaviourRequest::default()).await.unwrap();
    assert_eq!(state.fail_next, 0);
    sim.shutdown().await.unwrap();

    // The state survives a restart on the same file.
    let sim = RequestorSim::start(config).await.unwrap();
    let tokens = sim.tokens().await.unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(
        tokens["TKN0"].update.last_update_timestamp_text,
        "2026-11-25T10:04:00.000Z"
    );
    assert_eq!(
        tokens["TKN1"].update.last_update_timestamp_text,
        "2026-11-25T10:03:00.000Z"
    );
    // ... and so do the delivery ids seen.
    let r = notify(&sim, "w4", &update("TKN0", 4, "1111")).await;
    assert_eq!(r.status(), 204);
    assert_eq!(sim.stats().duplicates, 1);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn over_tls_it_serves_only_a_client_with_a_certificate_of_its_ca_and_goes_down_and_up() {
    install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    tokenhub_sim::certs::write_dev(dir.path()).unwrap();
    let mut config = RequestorSimConfig::new(API_KEY, vec![SECRET.to_string()]);
    config.tls = Some(tokenhub_sim::SimTls::from_dir_as(dir.path(), "requestor").unwrap());
    let sim = RequestorSim::start(config).await.unwrap();
    assert!(
        sim.base_url().starts_with("https://127.0.0.1:"),
        "{}",
        sim.base_url()
    );
    let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
    let ca = reqwest::Certificate::from_pem(&read("ca.crt")).unwrap();
    let trusting = || {
        reqwest::Client::builder()
            .timeout(PATIENCE)
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca.clone())
    };
    let body = update("TKN1", 1, "1111");

    // Without a client certificate, or with the CA not trusted: no request gets through.
    let anonymous = trusting().build().unwrap();
    let refused = notification(&anonymous, &sim.base_url(), "w1", &body, SECRET)
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let mut identity = read("hub-client.crt");
    identity.extend(read("hub-client.key"));
    let identity = reqwest::Identity::from_pem(&identity).unwrap();
    let untrusting = reqwest::Client::builder()
        .timeout(PATIENCE)
        .identity(identity.clone())
        .build()
        .unwrap();
    let refused = notification(&untrusting, &sim.base_url(), "w1", &body, SECRET)
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(sim.stats().applied, 0);

    // The hub's client certificate: applied; and again after the port went down and came back.
    let hub = trusting().identity(identity).build().unwrap();
    let r = notification(&hub, &sim.base_url(), "w1", &body, SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    sim.go_down(Duration::from_millis(300)).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    let r = loop {
        let sent = notification(
            &hub,
            &sim.base_url(),
            "w2",
            &update("TKN1", 2, "2222"),
            SECRET,
        )
        .send()
        .await;
        match sent {
            Ok(r) => break r,
            Err(_) => {
                assert!(Instant::now() < deadline, "never came back");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(r.status(), 204);
    assert_eq!(sim.stats().applied, 2);
    sim.shutdown().await.unwrap();
}
