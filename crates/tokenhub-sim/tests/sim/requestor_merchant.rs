//! The requestor simulator's merchant routes without a hub behind them: refused without a
//! merchant, a hub that cannot be reached is a `502` and counts nothing, a merchant is attached
//! once. (The whole story runs against the hub process in `tokenhub-cli`'s e2e tests.)

use serde_json::{json, Value};
use tokenhub_sim::requestor::{MerchantConfig, RequestorSim, RequestorSimConfig};

use crate::helpers::install_crypto_provider;

async fn post(sim: &RequestorSim, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn merchant_routes_need_a_merchant_and_a_reachable_hub() {
    install_crypto_provider();
    let sim = RequestorSim::start(RequestorSimConfig::new(
        "key",
        vec!["whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into()],
    ))
    .await
    .unwrap();
    for path in [
        "/sim/merchant/cards",
        "/sim/merchant/payments",
        "/sim/merchant/replay",
    ] {
        let (status, body) = post(&sim, path, json!({"count": 1})).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (409, Some("no_merchant")),
            "{path}"
        );
    }

    // Port 1 on loopback: nothing listens there.
    let config = MerchantConfig::new("http://127.0.0.1:1", "trk_x", "M1", "http://127.0.0.1:1");
    sim.attach_merchant(config.clone()).unwrap();
    assert!(sim.attach_merchant(config).is_err(), "attached once only");
    assert_eq!(
        post(&sim, "/sim/merchant/cards", json!({"count": 0}))
            .await
            .0,
        400
    );
    assert_eq!(
        post(&sim, "/sim/merchant/cards", json!({"count": 2}))
            .await
            .0,
        502
    );
    assert_eq!(post(&sim, "/sim/merchant/replay", json!({})).await.0, 404);
    let (status, round) = post(&sim, "/sim/merchant/payments", json!({"tokenIds": ["T1"]})).await;
    assert_eq!(
        (status, round),
        (200, json!({"approved": 0, "declined": 0, "errors": 1}))
    );
    let stats = sim.merchant_stats();
    assert_eq!((stats.tokenized, stats.payment_errors), (0, 1));
    assert!(sim.merchant_tokens().is_empty());
    sim.shutdown().await.unwrap();
}
