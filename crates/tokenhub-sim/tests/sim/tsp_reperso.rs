//! repersoToken over real HTTP against the fake hub: the recovered data is the original one,
//! with the same `x-correlation-id`, in partial calls, once per id, retried like `/data`; the
//! refusals; and the misbehaviours (new data, dropped recoveries, slowness, rate limit).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokenhub_sim::Misbehaviour;

use crate::helpers::{Answer, TestSim, ISSUER};

/// The elements of every accepted `/newData` call for `token_id` carrying `correlation_id`.
fn recovered(sim: &TestSim, token_id: &str, correlation_id: &str) -> Vec<Value> {
    sim.hub
        .new_data_calls()
        .into_iter()
        .filter(|c| {
            c.token_id == token_id
                && c.answered == 204
                && c.correlation_id.as_deref() == Some(correlation_id)
        })
        .flat_map(|c| c.elements())
        .collect()
}

fn element<'a>(elements: &'a [Value], name: &str) -> &'a Value {
    elements
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {} elements", elements.len()))
}

#[tokio::test]
async fn a_recovery_sends_exactly_the_original_data_with_the_same_correlation_id_then_success_resets_the_atc(
) {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let (token_id, cmk) = sim.new_token().await;
    assert_eq!(sim.update_state(&token_id, "ACTIVE").await.status, 204);
    for atc in 1..=4 {
        assert_eq!(sim.pay(&token_id, &cmk, atc).await.body["approved"], true);
    }

    let answered = sim.reperso(&token_id, "reperso-1").await;
    assert_eq!(answered.status, 204, "{answered:?}");
    assert_eq!(answered.header("x-correlation-id"), Some("reperso-1"));
    sim.deliveries_done().await;

    let calls = sim.hub.new_data_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call.token_id, token_id);
    assert_eq!(call.correlation_id.as_deref(), Some("reperso-1"));
    assert_eq!(call.content_type.as_deref(), Some("application/json"));
    assert_eq!(call.body["issuerId"], ISSUER);
    let original = sim.original_elements(&token_id);
    assert_eq!(original.len(), tokenhub_sim::ELEMENT_NAMES.len());
    assert_eq!(
        call.elements(),
        original,
        "the same elements, the same values"
    );

    let status = sim.handle.status();
    assert_eq!(
        (
            status.reperso_calls,
            status.recoveries_started,
            status.new_data_calls_sent,
            status.new_data_calls_accepted,
            status.new_data_calls_rejected_total(),
        ),
        (1, 1, 1, 1, 0)
    );
    assert_eq!(status.data_calls_sent, 1, "no /data for a recovery");

    // Until the hub's SUCCESS, the old application (ATC 4) still pays; after it, ATC restarts.
    assert_eq!(sim.pay(&token_id, &cmk, 1).await.body["reason"], "REPLAY");
    assert_eq!(
        sim.new_data_status(&token_id, "reperso-1", "SUCCESS")
            .await
            .status,
        204
    );
    assert_eq!(sim.handle.token(&token_id).unwrap().last_atc, None);
    assert_eq!(sim.pay(&token_id, &cmk, 1).await.body["approved"], true);
    assert_eq!(sim.handle.status().atc_resets, 1);
}

#[tokio::test]
async fn a_recovery_is_spread_over_the_partial_calls_each_with_the_same_correlation_id() {
    let sim = TestSim::start(3, vec![], |_| {}).await;
    let (token_id, _) = sim.new_token().await;
    assert_eq!(sim.hub.accepted().len(), 3);

    assert_eq!(sim.reperso(&token_id, "reperso-parts").await.status, 204);
    sim.deliveries_done().await;
    let calls = sim.hub.new_data_calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls.iter().all(|c| !c.elements().is_empty()));
    assert_eq!(
        recovered(&sim, &token_id, "reperso-parts"),
        sim.original_elements(&token_id)
    );
    let status = sim.handle.status();
    assert_eq!(
        (status.new_data_calls_sent, status.new_data_calls_accepted),
        (3, 3)
    );
}

#[tokio::test]
async fn a_repeated_reperso_with_the_same_correlation_id_starts_one_recovery_and_a_new_id_another()
{
    let sim = TestSim::start(2, vec![], |c| {
        // Long enough that the repeats arrive while the first recovery is still in flight.
        c.data_delay = Duration::from_millis(300);
    })
    .await;
    let (token_id, _) = sim.new_token().await;

    let (a, b) = tokio::join!(
        sim.reperso(&token_id, "reperso-same"),
        sim.reperso(&token_id, "reperso-same")
    );
    assert_eq!((a.status, b.status), (204, 204));
    assert_eq!(sim.reperso(&token_id, "reperso-same").await.status, 204);
    sim.deliveries_done().await;
    assert_eq!(
        sim.reperso(&token_id, "reperso-same").await.status,
        204,
        "after it is done"
    );
    sim.deliveries_done().await;
    assert_eq!(
        sim.hub.new_data_calls().len(),
        2,
        "one recovery in two parts"
    );
    let status = sim.handle.status();
    assert_eq!((status.reperso_calls, status.recoveries_started), (4, 1));

    assert_eq!(sim.reperso(&token_id, "reperso-other").await.status, 204);
    sim.deliveries_done().await;
    assert_eq!(
        recovered(&sim, &token_id, "reperso-other"),
        sim.original_elements(&token_id)
    );
    assert_eq!(sim.handle.status().recoveries_started, 2);
}

#[tokio::test]
async fn new_data_calls_are_retried_on_5xx_and_921_with_the_same_correlation_id() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let (token_id, _) = sim.new_token().await;
    sim.hub.script_new_data(vec![
        Answer::Status(503),
        Answer::Code(921),
        Answer::Status(500),
    ]);
    assert_eq!(sim.reperso(&token_id, "reperso-retry").await.status, 204);
    sim.deliveries_done().await;
    let calls = sim.hub.new_data_calls();
    let answered: Vec<u16> = calls.iter().map(|c| c.answered).collect();
    assert_eq!(answered, [503, 400, 500, 204]);
    assert!(calls
        .iter()
        .all(|c| c.correlation_id.as_deref() == Some("reperso-retry")));
    assert_eq!(
        recovered(&sim, &token_id, "reperso-retry"),
        sim.original_elements(&token_id)
    );
    let status = sim.handle.status();
    assert_eq!(
        (
            status.new_data_calls_sent,
            status.new_data_calls_accepted,
            status.new_data_calls_retried
        ),
        (1, 1, 3)
    );
}

#[tokio::test]
async fn refusals_are_final_end_the_recovery_and_the_same_id_then_starts_it_over() {
    for code in [431u16, 322, 321, 432] {
        let sim = TestSim::start(2, vec![], |_| {}).await;
        let (token_id, _) = sim.new_token().await;
        sim.hub.script_new_data(vec![Answer::Code(code)]);
        assert_eq!(sim.reperso(&token_id, "reperso-final").await.status, 204);
        sim.deliveries_done().await;
        assert_eq!(
            sim.hub.new_data_calls().len(),
            1,
            "{code}: not retried, and the second part is not sent"
        );
        let status = sim.handle.status();
        assert_eq!(
            status.new_data_calls_rejected,
            BTreeMap::from([(code.to_string(), 1)])
        );
        assert_eq!(
            (status.new_data_calls_sent, status.new_data_calls_retried),
            (1, 0)
        );

        // A failed recovery is not "in progress or done": the hub's retry starts it over.
        assert_eq!(sim.reperso(&token_id, "reperso-final").await.status, 204);
        sim.deliveries_done().await;
        assert_eq!(sim.hub.new_data_calls().len(), 3, "{code}");
        assert_eq!(sim.handle.status().recoveries_started, 2);
    }
}

#[tokio::test]
async fn misbehaving_with_new_data_sends_a_different_cmk_ac_but_keeps_the_existing_key() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let (token_id, cmk) = sim.new_token().await;
    assert_eq!(sim.update_state(&token_id, "ACTIVE").await.status, 204);
    let misbehaviour = Misbehaviour {
        new_data_on_recovery: true,
        ..Misbehaviour::default()
    };
    sim.handle.set_misbehaviour(misbehaviour.clone());
    assert_eq!(sim.handle.misbehaviour(), misbehaviour);
    sim.hub.script_new_data(vec![Answer::Code(431)]);

    assert_eq!(sim.reperso(&token_id, "reperso-new").await.status, 204);
    sim.deliveries_done().await;
    let calls = sim.hub.new_data_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].correlation_id.as_deref(), Some("reperso-new"));
    let sent = calls[0].elements();
    let original = sim.original_elements(&token_id);
    let (sent_cmk, original_cmk) = (element(&sent, "cmk_ac"), element(&original, "cmk_ac"));
    assert_ne!(sent_cmk["value"], original_cmk["value"], "a new key");
    assert_eq!(sent_cmk["keyIndex"], original_cmk["keyIndex"]);
    assert_eq!(
        sent_cmk["value"].as_str().unwrap().len(),
        original_cmk["value"].as_str().unwrap().len()
    );
    for name in ["cmk_rp", "track2_data", "psn", "par"] {
        assert_eq!(element(&sent, name), element(&original, name), "{name}");
    }
    assert_eq!(
        sim.handle.status().new_data_calls_rejected,
        BTreeMap::from([("431".to_string(), 1)])
    );
    // The hub refused it: the TSP still validates with the existing key.
    assert_eq!(sim.pay(&token_id, &cmk, 1).await.body["approved"], true);

    // Switched off, a recovery sends the original data again.
    sim.handle.set_misbehaviour(Misbehaviour::default());
    assert_eq!(sim.reperso(&token_id, "reperso-honest").await.status, 204);
    sim.deliveries_done().await;
    assert_eq!(recovered(&sim, &token_id, "reperso-honest"), original);
}

#[tokio::test]
async fn misbehaving_by_dropping_answers_204_and_sends_nothing() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let (token_id, _) = sim.new_token().await;
    sim.handle.set_misbehaviour(Misbehaviour {
        drop_reperso: true,
        ..Misbehaviour::default()
    });
    let answered = sim.reperso(&token_id, "reperso-dropped").await;
    assert_eq!(answered.status, 204);
    assert_eq!(answered.header("x-correlation-id"), Some("reperso-dropped"));
    assert_eq!(sim.handle.status().deliveries_in_flight, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sim.hub.new_data_calls().is_empty());
    let status = sim.handle.status();
    assert_eq!(
        (
            status.reperso_calls,
            status.recoveries_started,
            status.new_data_calls_sent
        ),
        (1, 1, 0)
    );

    // A dropped recovery counts as handled: its repeat does nothing even once switched back.
    sim.handle.set_misbehaviour(Misbehaviour::default());
    assert_eq!(sim.reperso(&token_id, "reperso-dropped").await.status, 204);
    sim.deliveries_done().await;
    assert!(sim.hub.new_data_calls().is_empty());
    assert_eq!(sim.reperso(&token_id, "reperso-next").await.status, 204);
    sim.deliveries_done().await;
    assert_eq!(sim.hub.new_data_calls().len(), 1);
}

#[tokio::test]
async fn reperso_refusals_use_the_contract_codes_and_start_nothing() {
    let sim = TestSim::start(1, vec![], |c| {
        c.issuer_ids = Some(vec![ISSUER.to_string(), "ISSUER0002".to_string()]);
    })
    .await;
    let (token_id, _) = sim.new_token().await;
    let good = serde_json::json!({"issuerId": ISSUER, "reason": "PROFILE_UPDATE"}).to_string();
    let long_id = "c".repeat(65);
    let cases: Vec<(&str, Option<&str>, String, u64)> = vec![
        (&token_id, None, good.clone(), 111),
        (&token_id, Some(""), good.clone(), 112),
        (&token_id, Some(&long_id), good.clone(), 112),
        (
            &token_id,
            Some("c1"),
            r#"{"reason":"PROFILE_UPDATE"}"#.into(),
            111,
        ),
        (
            &token_id,
            Some("c1"),
            r#"{"issuerId":"ISSUER001"}"#.into(),
            112,
        ),
        (
            &token_id,
            Some("c1"),
            format!(r#"{{"issuerId":"{ISSUER}","reason":"NEW_CARD"}}"#),
            112,
        ),
        (&token_id, Some("c1"), "not json".into(), 112),
        ("TKNUNKNOWN", Some("c1"), good.clone(), 119),
        (
            &token_id,
            Some("c1"),
            r#"{"issuerId":"ISSUER0002"}"#.into(),
            113,
        ),
        (
            &token_id,
            Some("c1"),
            r#"{"issuerId":"ISSUER0003"}"#.into(),
            113,
        ),
    ];
    for (token, correlation_id, body, code) in cases {
        let answered = sim.reperso_raw(token, correlation_id, &body).await;
        assert_eq!(answered.status, 400, "{body}: {answered:?}");
        assert_eq!(answered.response_code(), Some(code), "{body}: {answered:?}");
        assert!(answered.body["errorMessage"].is_string());
        if let Some(id) = correlation_id {
            assert_eq!(answered.header("x-correlation-id"), Some(id));
        }
    }

    assert_eq!(sim.update_state(&token_id, "DELETED").await.status, 204);
    let deleted = sim.reperso(&token_id, "reperso-deleted").await;
    assert_eq!(deleted.status, 400);
    assert_eq!(deleted.response_code(), Some(432));

    sim.deliveries_done().await;
    assert!(sim.hub.new_data_calls().is_empty());
    let status = sim.handle.status();
    assert_eq!((status.reperso_calls, status.recoveries_started), (0, 0));
}

/// A newDataStatus FAILURE call: cheap, counted by the rate limit, always 204 for a known token.
async fn limited_call(sim: &TestSim, token_id: &str, i: usize) -> u16 {
    sim.new_data_status(token_id, &format!("rate-{i}"), "FAILURE")
        .await
        .status
}

#[tokio::test]
async fn the_rate_limit_answers_503_above_r_per_second_but_not_to_health_checks() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let (token_id, _) = sim.new_token().await;
    sim.handle.set_misbehaviour(Misbehaviour {
        rate_limit: Some(5),
        ..Misbehaviour::default()
    });
    let started = Instant::now();
    let mut answers = Vec::new();
    for i in 0..30 {
        answers.push(limited_call(&sim, &token_id, i).await);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ok = answers.iter().filter(|s| **s == 204).count();
    let refused = answers.iter().filter(|s| **s == 503).count();
    assert_eq!(ok + refused, 30, "{answers:?}");
    assert!(refused > 0, "{answers:?}");
    // A burst of 5, then 5 per second.
    assert!(ok >= 5, "{answers:?}");
    assert!(
        ok as f64 <= 5.0 + 5.0 * elapsed + 1.0,
        "{answers:?} in {elapsed}s"
    );
    assert_eq!(sim.handle.status().rate_limited, refused as u64);

    // The 503 echoes the correlation id and says when to come back; other operations count too.
    let refused = sim.reperso(&token_id, "reperso-limited").await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("x-correlation-id"), Some("reperso-limited"));
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(sim.update_state(&token_id, "ACTIVE").await.status, 503);
    // Neither the health check nor the simulator's own routes are limited.
    for _ in 0..10 {
        assert_eq!(sim.health_check(Some("hc")).await.status, 204);
    }
    assert_eq!(sim.sim_token(&token_id).await.status, 200);
    sim.sim_status().await;

    // Off again: everything passes.
    sim.handle.set_misbehaviour(Misbehaviour::default());
    for i in 0..30 {
        assert_eq!(limited_call(&sim, &token_id, 100 + i).await, 204);
    }
}

#[tokio::test]
async fn a_flaky_tsp_refuses_its_share_with_503_or_429_and_stalls_its_share() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let (token_id, _) = sim.new_token().await;
    sim.handle.set_misbehaviour(Misbehaviour {
        fail_percent: Some(100),
        ..Misbehaviour::default()
    });
    let mut answers = Vec::new();
    for i in 0..40 {
        answers.push(limited_call(&sim, &token_id, i).await);
    }
    assert!(
        answers.iter().all(|s| *s == 503 || *s == 429),
        "{answers:?}"
    );
    assert!(
        answers.contains(&503) && answers.contains(&429),
        "{answers:?}"
    );
    assert_eq!(sim.health_check(Some("hc")).await.status, 204);
    let status = sim.handle.status();
    assert_eq!((status.refused_on_purpose, status.rate_limited), (40, 0));

    sim.handle.set_misbehaviour(Misbehaviour {
        stall_percent: Some(100),
        stall: Some(Duration::from_millis(300)),
        ..Misbehaviour::default()
    });
    let started = Instant::now();
    assert_eq!(limited_call(&sim, &token_id, 100).await, 204);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(sim.handle.status().stalled, 1);
}

#[tokio::test]
async fn a_caller_slower_than_the_rate_limit_never_sees_503() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let (token_id, _) = sim.new_token().await;
    sim.handle.set_misbehaviour(Misbehaviour {
        rate_limit: Some(10),
        ..Misbehaviour::default()
    });
    // 20 calls (twice the burst) at about 6.7 per second.
    let mut ticks = tokio::time::interval(Duration::from_millis(150));
    for i in 0..20 {
        ticks.tick().await;
        assert_eq!(limited_call(&sim, &token_id, i).await, 204, "call {i}");
    }
    assert_eq!(sim.handle.status().rate_limited, 0);
}

#[tokio::test]
async fn misbehaviour_switches_over_http_and_slow_delays_the_tsp_api_only() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let url = format!("{}/sim/misbehaviour", sim.handle.sim_url());
    let read = sim.send(sim.client().get(&url)).await;
    assert_eq!(read.status, 200);
    assert_eq!(
        read.body,
        serde_json::json!({"newDataOnRecovery": false, "dropReperso": false,
            "slowMs": null, "rateLimit": null, "downForMs": null, "failPercent": null,
            "stallPercent": null, "stallMs": null})
    );

    let set = sim
        .send(
            sim.client()
                .put(&url)
                .json(&serde_json::json!({"slowMs": 400, "dropReperso": true})),
        )
        .await;
    assert_eq!(set.status, 204);
    assert_eq!(
        sim.handle.misbehaviour(),
        Misbehaviour {
            drop_reperso: true,
            slow: Some(Duration::from_millis(400)),
            ..Misbehaviour::default()
        }
    );
    let started = Instant::now();
    assert_eq!(sim.health_check(Some("hc")).await.status, 204);
    assert!(started.elapsed() >= Duration::from_millis(400));
    let started = Instant::now();
    sim.sim_status().await;
    assert!(started.elapsed() < Duration::from_millis(400));

    let bad = sim
        .send(sim.client().put(&url).body(r#"{"rateLimit": "fast"}"#))
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        sim.handle.misbehaviour().slow,
        Some(Duration::from_millis(400)),
        "a bad body changes nothing"
    );

    assert_eq!(
        sim.send(sim.client().put(&url).json(&serde_json::json!({})))
            .await
            .status,
        204
    );
    assert_eq!(sim.handle.misbehaviour(), Misbehaviour::default());
}
