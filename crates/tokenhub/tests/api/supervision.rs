//! A background worker that panics is started again, with backoff; while it is down the TSP's
//! health check answers `503` and the admin API's health names it. The panic is injected through
//! the hub's test hook (`test-hooks` feature, built for the hub's tests only).

use crate::support::*;
use serde_json::Value;
use std::time::Duration;
use tokenhub::store::Dialect;

hub_tests!(a_panicked_worker_is_reported_down_and_started_again);

async fn health(app: &TestApp) -> Value {
    app.admin_get("/admin/v1/health").await.expect(200).clone()
}

fn worker<'a>(health: &'a Value, name: &str) -> &'a Value {
    health["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("{name} is listed: {health}"))
}

async fn a_panicked_worker_is_reported_down_and_started_again(app: TestApp) {
    let sqlite = app.hub.store.dialect() == Dialect::Sqlite;
    // The signals between nodes run on PostgreSQL only.
    let mut names = vec![
        "outbox",
        "notifier",
        "sweeper",
        "shredder",
        "rewrap",
        "tsp-health",
        "heartbeat",
        "campaign-runner",
    ];
    if !sqlite {
        names.push("signals");
    }
    let before = eventually("every worker running", || async {
        let h = health(&app).await;
        (h["healthy"] == true && h["workers"].as_array().unwrap().len() == names.len()).then_some(h)
    })
    .await;
    for name in names {
        assert_eq!(worker(&before, name)["state"], "RUNNING", "{before}");
        assert_eq!(worker(&before, name)["restarts"], 0, "{before}");
    }
    assert_eq!(
        before["sqliteWriter"],
        if sqlite {
            Value::from("RUNNING")
        } else {
            Value::Null
        },
        "{before}"
    );
    app.health_check(Some("req-up")).await.assert_accepted();

    // The outbox panics, and again at each restart, until the order is taken back.
    app.hub.health.order_panic("outbox", true);
    let answer = eventually("the health check's 503", || async {
        let a = app.health_check(Some("req-down")).await;
        (a.status == 503).then_some(a)
    })
    .await;
    assert_eq!(answer.code(), Some(921), "{answer:?}");
    assert!(
        !answer.body.contains("outbox"),
        "the TSP is not told: {answer:?}"
    );
    let down = eventually("the admin API names the outbox", || async {
        let h = health(&app).await;
        (worker(&h, "outbox")["state"] == "DOWN").then_some(h)
    })
    .await;
    assert_eq!(down["healthy"], false, "{down}");
    assert!(worker(&down, "outbox")["restarts"].as_u64().unwrap() >= 1);
    assert_eq!(worker(&down, "notifier")["state"], "RUNNING", "{down}");

    app.hub.health.order_panic("outbox", false);
    // The next restart comes after the backoff, which doubled while the panics repeated.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while app.health_check(Some("req-again")).await.status != 204 {
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox was not started again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = health(&app).await;
    assert_eq!(after["healthy"], true, "{after}");
    assert_eq!(worker(&after, "outbox")["state"], "RUNNING", "{after}");
    // The restarted outbox makes calls again.
    let token = app.active_token().await;
    app.tsp_calls_to("PUT", &state_path(&token), 1).await;
}
