//! The TSP simulator over real HTTP, against a fake hub: createToken's validation, the delivery of
//! the data preparation (partial calls, retries, refusals), health check, status and shutdown.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::helpers::{self, Answer, TestSim, ISSUER, PATIENCE};
use serde_json::Value;
use tokenhub_crypto::{decrypt_cbc_m2, KeySet};
use tokenhub_sim::{TspSimConfig, ELEMENT_NAMES};
use tokio::net::TcpListener;

fn clear_track2(keys: &KeySet, element: &Value) -> String {
    let key = keys
        .find(element["keyIndex"].as_str().expect("track2 has a keyIndex"))
        .expect("a key of the set");
    let ct = hex::decode(element["value"].as_str().unwrap()).unwrap();
    hex::encode_upper(&*decrypt_cbc_m2(key.algorithm, &key.key_bytes().unwrap(), &ct).unwrap())
}

fn element<'a>(elements: &'a [Value], name: &str) -> &'a Value {
    elements
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[tokio::test]
async fn create_token_answers_a_token_and_sends_all_its_data_in_one_call() {
    let sim = TestSim::start(1, vec![], |_| {}).await;

    let answered = sim.create_token("corr-1", ISSUER).await;
    assert_eq!(answered.header("x-correlation-id"), Some("corr-1"));
    let token_id = answered.body["tokenId"].as_str().unwrap().to_string();
    assert!(token_id.starts_with("TKN") && token_id.len() <= 48);
    let exp = answered.body["tokenInfo"]["exp"]
        .as_str()
        .unwrap()
        .to_string();
    let last4 = answered.body["tokenInfo"]["last4"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(exp.len(), 4);
    assert!((1..=12).contains(&exp[..2].parse::<u8>().unwrap()));
    assert_eq!(last4.len(), 4);

    sim.deliveries_done().await;
    let calls = sim.hub.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.token_id, token_id);
    assert_eq!(call.body["issuerId"], ISSUER);
    assert_eq!(call.content_type.as_deref(), Some("application/json"));
    let correlation = call.correlation_id.as_deref().unwrap();
    assert!(uuid::Uuid::parse_str(correlation).is_ok(), "{correlation}");
    assert_eq!(call.names(), ELEMENT_NAMES);

    // What track 2 says agrees with what createToken answered.
    let elements = call.elements();
    let track2 = clear_track2(&sim.keys, element(&elements, "track2_data"));
    let (pan, rest) = track2.split_once('D').unwrap();
    assert_eq!(&pan[12..], last4);
    assert_eq!(&rest[..4], format!("{}{}", &exp[2..], &exp[..2]));
    assert_eq!(&rest[4..7], "201");
    assert_eq!(element(&elements, "psn").get("keyIndex"), None);
    assert_eq!(
        element(&elements, "par")["value"].as_str().unwrap().len(),
        29
    );

    let status = sim.handle.status();
    assert_eq!(status.tokens_created, 1);
    assert_eq!(status.data_calls_sent, 1);
    assert_eq!(status.data_calls_accepted, 1);
    assert_eq!(status.data_calls_retried, 0);
    assert!(status.data_calls_rejected.is_empty());
    assert_eq!(status.deliveries_in_flight, 0);
}

#[tokio::test]
async fn elements_arrive_across_three_partial_calls_exactly_once() {
    let sim = TestSim::start(3, vec![], |_| {}).await;
    let a = sim.create_token("corr-a", ISSUER).await;
    let b = sim.create_token("corr-b", ISSUER).await;
    sim.deliveries_done().await;

    let calls = sim.hub.calls();
    assert_eq!(calls.len(), 6);
    for answered in [a, b] {
        let token_id = answered.body["tokenId"].as_str().unwrap();
        let mine: Vec<_> = calls.iter().filter(|c| c.token_id == token_id).collect();
        assert_eq!(mine.len(), 3);
        assert!(mine.iter().all(|c| !c.elements().is_empty()));
        assert!(mine.iter().all(|c| c.body["issuerId"] == ISSUER));
        let mut names: Vec<String> = mine.iter().flat_map(|c| c.names()).collect();
        names.sort();
        let mut expected: Vec<String> = ELEMENT_NAMES.iter().map(|n| n.to_string()).collect();
        expected.sort();
        assert_eq!(names, expected, "every element once");
        let ids: HashSet<_> = mine.iter().map(|c| c.correlation_id.clone()).collect();
        assert_eq!(ids.len(), 3, "a fresh x-correlation-id per call");
    }
    let status = sim.sim_status().await;
    assert_eq!(status.tokens_created, 2);
    assert_eq!(status.data_calls_sent, 6);
    assert_eq!(status.data_calls_accepted, 6);
}

#[tokio::test]
async fn a_119_from_a_hub_that_has_not_recorded_the_token_yet_is_retried() {
    // The default grace (2 s) would do, but a loaded CI machine must not turn the race into a
    // real "unknown token": the boundary itself is covered by `a_119_after_the_grace_period_is_final`.
    let sim = TestSim::start(2, vec![Answer::Code(119)], |c| {
        c.retry.unknown_token_grace = PATIENCE;
    })
    .await;
    sim.create_token("corr-1", ISSUER).await;
    sim.deliveries_done().await;

    let calls = sim.hub.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].answered, 400);
    assert_eq!(calls[0].names(), calls[1].names(), "the same part again");
    assert_eq!(
        calls[0].correlation_id, calls[1].correlation_id,
        "a retry is the same message"
    );
    let mut names: Vec<String> = sim.hub.accepted().iter().flat_map(|c| c.names()).collect();
    names.sort();
    let mut expected: Vec<String> = ELEMENT_NAMES.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected);

    let status = sim.handle.status();
    assert_eq!(status.data_calls_sent, 2);
    assert_eq!(status.data_calls_accepted, 2);
    assert_eq!(status.data_calls_retried, 1);
    assert!(status.data_calls_rejected.is_empty());
}

#[tokio::test]
async fn server_errors_503_and_921_are_retried() {
    let script = vec![Answer::Status(503), Answer::Code(921), Answer::Status(500)];
    let sim = TestSim::start(1, script, |_| {}).await;
    sim.create_token("corr-1", ISSUER).await;
    sim.deliveries_done().await;

    assert_eq!(sim.hub.calls().len(), 4);
    assert_eq!(sim.hub.accepted().len(), 1);
    let status = sim.handle.status();
    assert_eq!(status.data_calls_accepted, 1);
    assert_eq!(status.data_calls_retried, 3);
}

#[tokio::test]
async fn a_final_refusal_ends_the_delivery_and_is_counted_by_its_code() {
    let sim = TestSim::start(2, vec![Answer::Code(431)], |_| {}).await;
    sim.create_token("corr-1", ISSUER).await;
    sim.deliveries_done().await;

    assert_eq!(
        sim.hub.calls().len(),
        1,
        "no retry, and the second part is not sent"
    );
    let status = sim.sim_status().await;
    assert_eq!(status.data_calls_sent, 1);
    assert_eq!(status.data_calls_accepted, 0);
    assert_eq!(status.data_calls_retried, 0);
    assert_eq!(
        status.data_calls_rejected,
        BTreeMap::from([("431".to_string(), 1)])
    );
}

#[tokio::test]
async fn a_119_after_the_grace_period_is_final() {
    let sim = TestSim::start(1, vec![Answer::Code(119)], |c| {
        c.retry.unknown_token_grace = Duration::ZERO;
    })
    .await;
    sim.create_token("corr-1", ISSUER).await;
    sim.deliveries_done().await;

    assert_eq!(sim.hub.calls().len(), 1);
    let status = sim.handle.status();
    assert_eq!(status.data_calls_retried, 0);
    assert_eq!(
        status.data_calls_rejected,
        BTreeMap::from([("119".to_string(), 1)])
    );
}

#[tokio::test]
async fn an_unreachable_hub_is_retried_then_counted_as_unreachable() {
    // A port that was just free: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let sim = TestSim::start(1, vec![], |c| {
        c.hub_url = closed_url;
        c.retry.max_attempts = 3;
    })
    .await;
    sim.create_token("corr-1", ISSUER).await;
    sim.deliveries_done().await;

    let status = sim.handle.status();
    assert_eq!(status.data_calls_sent, 1);
    assert_eq!(status.data_calls_retried, 2);
    assert_eq!(
        status.data_calls_rejected,
        BTreeMap::from([("unreachable".to_string(), 1)])
    );
}

#[tokio::test]
async fn create_token_refuses_what_the_contract_forbids_with_111_and_112() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let ok = r#"{"issuerId": "ISSUER0001", "walletCardRefId": "w-1"}"#;
    let long_id = "c".repeat(65);
    let cases: Vec<(Option<&str>, &str, u64)> = vec![
        (None, ok, 111),
        (Some(""), ok, 112),
        (Some(&long_id), ok, 112),
        (Some("c"), r#"{"walletCardRefId": "w-1"}"#, 111),
        (Some("c"), r#"{"issuerId": "ISSUER0001"}"#, 111),
        (
            Some("c"),
            r#"{"issuerId": "SHORT", "walletCardRefId": "w-1"}"#,
            112,
        ),
        (
            Some("c"),
            r#"{"issuerId": "ISSUER0001", "walletCardRefId": ""}"#,
            112,
        ),
        (Some("c"), "{not json", 112),
        (Some("c"), "", 112),
    ];
    for (correlation_id, body, code) in cases {
        let answered = sim.create_token_raw(correlation_id, body).await;
        assert_eq!(answered.status, 400, "{correlation_id:?} {body}");
        assert_eq!(
            answered.response_code(),
            Some(code),
            "{correlation_id:?} {body}"
        );
        assert!(answered.body["errorMessage"].is_string());
        assert_eq!(answered.header("x-correlation-id"), correlation_id);
    }
    assert_eq!(sim.handle.status().tokens_created, 0);
    sim.deliveries_done().await;
    assert!(sim.hub.calls().is_empty());
}

#[tokio::test]
async fn create_token_for_an_issuer_the_tsp_does_not_serve_is_113() {
    let sim = TestSim::start(1, vec![], |c| {
        c.issuer_ids = Some(vec![ISSUER.to_string()]);
    })
    .await;
    let answered = sim
        .create_token_raw(
            Some("c"),
            r#"{"issuerId": "OTHERISSUE", "walletCardRefId": "w-1"}"#,
        )
        .await;
    assert_eq!(answered.response_code(), Some(113));
    sim.create_token("c2", ISSUER).await;
    assert_eq!(sim.handle.status().tokens_created, 1);
}

#[tokio::test]
async fn a_repeated_create_token_gets_the_same_token_and_no_second_delivery() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let first = sim.create_token("corr-1", ISSUER).await;
    sim.deliveries_done().await;
    let again = sim.create_token("corr-1", ISSUER).await;
    let other = sim.create_token("corr-2", ISSUER).await;
    sim.deliveries_done().await;

    assert_eq!(first.body, again.body);
    assert_ne!(first.body["tokenId"], other.body["tokenId"]);
    assert_eq!(sim.handle.status().tokens_created, 2);
    assert_eq!(sim.hub.calls().len(), 2);
}

#[tokio::test]
async fn a_repeated_create_token_resends_data_the_hub_refused() {
    let sim = TestSim::start(1, vec![Answer::Code(119)], |c| {
        c.retry.unknown_token_grace = Duration::ZERO;
    })
    .await;
    let first = sim.create_token("corr-1", ISSUER).await;
    sim.deliveries_done().await;
    let again = sim.create_token("corr-1", ISSUER).await;
    sim.deliveries_done().await;

    assert_eq!(first.body, again.body);
    let calls = sim.hub.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].body, calls[1].body, "the same data, not new data");
    assert_eq!(sim.handle.status().data_calls_accepted, 1);
}

#[tokio::test]
async fn health_check_echoes_the_request_id_and_requires_it() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let ok = sim.health_check(Some("req-42")).await;
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("x-request-id"), Some("req-42"));

    let missing = sim.health_check(None).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.response_code(), Some(111));
}

#[tokio::test]
async fn the_status_endpoint_serves_the_handles_counters_in_camel_case() {
    let sim = TestSim::start(1, vec![Answer::Code(432)], |_| {}).await;
    sim.create_token("corr-1", ISSUER).await;
    sim.deliveries_done().await;

    let raw: Value = reqwest::get(format!("http://{}/sim/status", sim.handle.addr()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["tokensCreated"], 1);
    assert_eq!(raw["dataCallsSent"], 1);
    assert_eq!(raw["dataCallsAccepted"], 0);
    assert_eq!(raw["dataCallsRejected"]["432"], 1);
    assert_eq!(raw["dataCallsRetried"], 0);
    assert_eq!(sim.sim_status().await, sim.handle.status());
}

#[tokio::test]
async fn spawn_refuses_a_configuration_it_cannot_honour() {
    helpers::install_crypto_provider();
    let keys = KeySet::generate();
    let base = TspSimConfig::new("http://127.0.0.1:1", keys.clone());
    let mut no_dek = keys.clone();
    no_dek.keys.retain(|k| k.purpose != "dek");
    let bad: Vec<TspSimConfig> = vec![
        TspSimConfig {
            partial_calls: 0,
            ..base.clone()
        },
        TspSimConfig {
            partial_calls: ELEMENT_NAMES.len() + 1,
            ..base.clone()
        },
        TspSimConfig {
            keys: no_dek,
            ..base.clone()
        },
        TspSimConfig {
            hub_url: "127.0.0.1:8080".into(),
            ..base.clone()
        },
    ];
    for config in bad {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        assert!(tokenhub_sim::spawn(listener, config).await.is_err());
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = tokenhub_sim::spawn(listener, base).await.unwrap();
    assert_eq!(
        sim.base_url(),
        format!("http://{}/tsp/trapi/v2.0", sim.addr())
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_cancels_a_pending_delivery_and_closes_the_listener() {
    let sim = TestSim::start(1, vec![], |c| {
        c.data_delay = Duration::from_secs(3600);
    })
    .await;
    sim.create_token("corr-1", ISSUER).await;
    let addr = sim.handle.addr();
    assert_eq!(sim.handle.status().deliveries_in_flight, 1);

    tokio::time::timeout(PATIENCE, sim.handle.shutdown())
        .await
        .expect("shutdown does not wait for the delivery")
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    assert!(sim.hub.calls().is_empty());
}
