//! The TSP simulator checks the hub's health as the contract asks and reports it in its status;
//! `down_for` takes it down (503 to everything, healthCheck included) and it comes back by itself.

use std::time::{Duration, Instant};

use tokenhub_sim::{Misbehaviour, TspSimStatus};

use crate::helpers::{TestSim, PATIENCE};

/// Polls the simulator's status until `done` holds (fails after [`PATIENCE`]).
async fn status_until(
    sim: &TestSim,
    what: &str,
    done: impl Fn(&TspSimStatus) -> bool,
) -> TspSimStatus {
    let started = Instant::now();
    loop {
        let status = sim.sim_status().await;
        if done(&status) {
            return status;
        }
        assert!(started.elapsed() < PATIENCE, "{what}: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_simulator_checks_the_hubs_health_and_reports_what_it_found() {
    let sim = TestSim::start(1, vec![], |c| {
        c.hub_check_every = Some(Duration::from_millis(50));
    })
    .await;
    let up = status_until(&sim, "two checks answered", |s| s.hub_health.checks >= 2).await;
    assert_eq!(up.hub_health.last_result.as_deref(), Some("UP"));
    assert_eq!(up.hub_health.last_status, Some(204));
    assert_eq!(up.hub_health.consecutive_failures, 0);
    assert!(up.hub_health.last_check_at.is_some());
    let ids = sim.hub.health_checks();
    assert!(
        ids.iter()
            .all(|id| id.as_ref().is_some_and(|id| (1..=64).contains(&id.len()))),
        "{ids:?}"
    );
    assert_ne!(ids[0], ids[1], "each check has its own x-request-id");

    sim.hub.health_down(true);
    let down = status_until(&sim, "two failures in a row", |s| {
        s.hub_health.consecutive_failures >= 2
    })
    .await;
    assert_eq!(down.hub_health.last_result.as_deref(), Some("DOWN"));
    assert_eq!(down.hub_health.last_status, Some(503));
    sim.hub.health_down(false);
    status_until(&sim, "the hub back", |s| {
        s.hub_health.consecutive_failures == 0
    })
    .await;
}

#[tokio::test]
async fn a_simulator_with_no_schedule_never_checks_the_hub() {
    let sim = TestSim::start(1, vec![], |c| c.hub_check_every = None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sim.hub.health_checks().is_empty());
    assert_eq!(sim.sim_status().await.hub_health.checks, 0);
}

#[tokio::test]
async fn down_for_answers_503_to_every_call_then_the_simulator_is_back_on_the_same_port() {
    let sim = TestSim::start(1, vec![], |c| c.hub_check_every = None).await;
    assert_eq!(sim.health_check(Some("before")).await.status, 204);
    sim.handle.set_misbehaviour(Misbehaviour {
        down_for: Some(Duration::from_millis(600)),
        ..Misbehaviour::default()
    });
    let down = sim.health_check(Some("while-down")).await;
    assert_eq!(down.status, 503);
    assert_eq!(down.header("x-request-id"), Some("while-down"));
    assert_eq!(down.header("retry-after"), Some("1"));
    let body = serde_json::json!({
        "issuerId": crate::helpers::ISSUER,
        "walletCardRefId": "wallet-card-1",
        "deviceInfo": {"deviceId": "device-1", "deviceType": "PHONE"},
    });
    let created = sim
        .create_token_raw(Some("cid-down"), &body.to_string())
        .await;
    assert_eq!(created.status, 503);
    assert_eq!(created.header("x-correlation-id"), Some("cid-down"));
    // Its own routes still answer, and say so.
    assert_eq!(sim.sim_status().await.down_refused, 2);
    assert_eq!(sim.sim_status().await.tokens_created, 0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(sim.health_check(Some("after")).await.status, 204);
    assert_eq!(
        sim.create_token("cid-up", crate::helpers::ISSUER)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn down_for_is_set_at_run_time_through_sim_misbehaviour() {
    let sim = TestSim::start(1, vec![], |c| c.hub_check_every = None).await;
    let set = sim
        .client()
        .put(format!("{}/sim/misbehaviour", sim.handle.sim_url()))
        .header("content-type", "application/json")
        .body(r#"{"downForMs": 400}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 204);
    assert_eq!(
        sim.handle.misbehaviour().down_for,
        Some(Duration::from_millis(400))
    );
    assert_eq!(sim.health_check(Some("hc")).await.status, 503);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.health_check(Some("hc")).await.status, 204);
}
