//! TSP health, watched both ways: the hub checks each TSP's `healthCheck` on a schedule (here
//! every 100 ms) and keeps its state (UNKNOWN, UP, DOWN after 3 failures in a row, UP again after
//! 2 successes), notes when the TSP checks the hub, shows both in the admin API and the metrics,
//! and holds a DOWN TSP's calls without spending their attempts.

use crate::support::*;
use serde_json::Value;
use std::time::Duration;
use tokenhub::config::{Config, TspHealthSettings};
use tokenhub_sim::{Misbehaviour, TspSimConfig};

hub_tests!(config = quick_checks;
    a_tsp_is_unknown_then_up_then_down_after_three_failures_then_up_after_two_successes,
    the_outbox_holds_a_down_tsps_calls_without_spending_attempts_and_sends_them_once_it_is_up,
    the_hubs_health_checks_carry_an_x_request_id,
    the_admin_api_shows_each_tsps_health_and_when_it_last_checked_the_hub,
    the_metrics_show_whether_each_tsp_is_up_and_its_checks,
    reading_a_tsps_health_takes_an_admin_key_that_reads,
);

fn quick_checks(config: &mut Config) {
    config.tsp_health = TspHealthSettings {
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(1),
        down_after: 3,
        up_after: 2,
    };
}

/// `health` of `GET /admin/v1/tsps/{tsp}`.
async fn health(app: &TestApp, tsp: &str) -> Value {
    let answer = app.admin_get(&format!("/admin/v1/tsps/{tsp}")).await;
    answer.expect(200)["health"].clone()
}

async fn health_is(app: &TestApp, tsp: &str, state: &str) -> Value {
    eventually(&format!("{tsp} {state}"), || async {
        let h = health(app, tsp).await;
        (h["state"] == state).then_some(h)
    })
    .await
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

async fn a_tsp_is_unknown_then_up_then_down_after_three_failures_then_up_after_two_successes(
    app: TestApp,
) {
    // The real TSP simulator, down for its first 800 ms.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = TspSimConfig::new("http://127.0.0.1:9", app.keys.clone());
    config.hub_check_every = None;
    config.misbehaviour.down_for = Some(Duration::from_millis(800));
    let sim = tokenhub_sim::spawn(listener, config).await.unwrap();
    let tsp = unique("sim");
    let put = app.put_tsp(&tsp, &sim.base_url()).await;
    assert_eq!(put.status(), 200);
    let put: Value = put.json().await.unwrap();
    assert_eq!(put["health"]["state"], "UNKNOWN", "{put}");

    let down = health_is(&app, &tsp, "DOWN").await;
    assert!(down["consecutiveFailures"].as_u64().unwrap() >= 3, "{down}");
    assert!(down["latencyMs"].is_null(), "{down}");
    assert!(down["lastChangeAt"].is_string() && down["lastCheckAt"].is_string());
    // Back by itself on the same port: UP after two successes in a row.
    let up = health_is(&app, &tsp, "UP").await;
    assert_eq!(up["consecutiveFailures"], 0, "{up}");
    assert!(up["latencyMs"].as_i64().is_some(), "{up}");
    assert!(sim.status().down_refused >= 3);

    // Taken down at run time, and back.
    sim.set_misbehaviour(Misbehaviour {
        down_for: Some(Duration::from_millis(800)),
        ..Misbehaviour::default()
    });
    health_is(&app, &tsp, "DOWN").await;
    health_is(&app, &tsp, "UP").await;
    let stored = format!("SELECT COUNT(*) FROM tsp_health WHERE tsp_id = '{tsp}' AND state = 'UP'");
    eventually("the state stored", || async {
        (app.sql_i64(&stored).await == Some(1)).then_some(())
    })
    .await;
}

async fn the_outbox_holds_a_down_tsps_calls_without_spending_attempts_and_sends_them_once_it_is_up(
    app: TestApp,
) {
    let token = app.active_token().await;
    app.tsp_calls_to("PUT", &state_path(&token), 1).await;
    health_is(&app, TSP_ID, "UP").await;
    app.tsp.set_down(true);
    health_is(&app, TSP_ID, "DOWN").await;

    app.token_action(&token, "suspend", None).await.expect(200);
    let held = last_event(&app, &token).await.1;
    let row = |what: &str| format!("SELECT {what} FROM outbox WHERE correlation_id = '{held}'");
    // Many health checks later the call has not been tried: no attempt spent, not dead.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(app.sql_i64(&row("attempts")).await, Some(0));
    let pending = row("COUNT(*)") + " AND state = 'PENDING'";
    assert_eq!(app.sql_i64(&pending).await, Some(1));
    let sent = |app: &TestApp| {
        app.tsp
            .other_calls()
            .into_iter()
            .filter(|c| c.correlation_id.as_deref() == Some(held.as_str()))
            .count()
    };
    assert_eq!(sent(&app), 0, "no call reached the TSP while it was down");

    app.tsp.set_down(false);
    health_is(&app, TSP_ID, "UP").await;
    let done = row("COUNT(*)") + " AND state = 'DONE'";
    eventually("the held call made", || async {
        (app.sql_i64(&done).await == Some(1)).then_some(())
    })
    .await;
    assert_eq!(app.sql_i64(&row("attempts")).await, Some(1));
    assert_eq!(sent(&app), 1);
}

async fn the_hubs_health_checks_carry_an_x_request_id(app: TestApp) {
    let ids = eventually("two health checks", || async {
        let ids = app.tsp.health_checks();
        (ids.len() >= 2).then_some(ids)
    })
    .await;
    for id in &ids {
        let id = id.as_deref().expect("x-request-id");
        assert!((1..=64).contains(&id.len()), "{id}");
    }
    assert_ne!(ids[0], ids[1], "each check has its own id");
}

async fn the_admin_api_shows_each_tsps_health_and_when_it_last_checked_the_hub(app: TestApp) {
    let up = health_is(&app, TSP_ID, "UP").await;
    let mut keys: Vec<&str> = up.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "consecutiveFailures",
            "lastChangeAt",
            "lastCheckAt",
            "lastHubCheckAt",
            "latencyMs",
            "state"
        ]
    );
    assert!(
        up["lastHubCheckAt"].is_null(),
        "the TSP has not checked the hub: {up}"
    );
    for at in ["lastCheckAt", "lastChangeAt"] {
        let text = up[at].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(text).expect("RFC 3339");
    }

    // The TSP under test (its client certificate) checks the hub.
    assert_eq!(app.health_check(Some("tsp-checks-hub")).await.status, 204);
    let after = health(&app, TSP_ID).await;
    let hub_check = after["lastHubCheckAt"].as_str().expect("lastHubCheckAt");
    chrono::DateTime::parse_from_rfc3339(hub_check).expect("RFC 3339");
    let stored = format!(
        "SELECT COUNT(*) FROM tsp_health WHERE tsp_id = '{TSP_ID}' AND last_hub_check_ms IS NOT NULL"
    );
    eventually("the TSP's check stored", || async {
        (app.sql_i64(&stored).await == Some(1)).then_some(())
    })
    .await;

    let list = app.admin_get("/admin/v1/tsps").await;
    let ours = list
        .expect(200)
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tspId"] == TSP_ID)
        .cloned()
        .expect("the TSP under test listed");
    assert_eq!(ours["health"]["state"], "UP");
    assert_eq!(ours["health"]["lastHubCheckAt"], hub_check);
    assert_eq!(
        app.admin_get("/admin/v1/tsps/no-such-tsp").await.status,
        404
    );
}

async fn the_metrics_show_whether_each_tsp_is_up_and_its_checks(app: TestApp) {
    let other = FakeTsp::spawn().await;
    let tsp = unique("metrics");
    assert_eq!(app.put_tsp(&tsp, &other.base_url()).await.status(), 200);
    health_is(&app, &tsp, "UP").await;
    let scrape = || async {
        let answer = app
            .admin_as(&app.admin_key, reqwest::Method::GET, "/metrics", None)
            .await;
        answer.expect(200);
        answer.text
    };
    let line = |text: &str, name: &str, extra: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(name) && l.contains(&format!("tsp=\"{tsp}\"")) && l.contains(extra)
            })
            .map(str::to_string)
    };
    let text = scrape().await;
    assert!(
        line(&text, "tokenhub_tsp_up{", "").unwrap().ends_with(" 1"),
        "{text}"
    );
    assert!(line(&text, "tokenhub_tsp_health_checks_total{", "outcome=\"ok\"").is_some());
    assert!(line(
        &text,
        "tokenhub_tsp_health_check_duration_seconds_bucket{",
        ""
    )
    .is_some());
    other.set_down(true);
    health_is(&app, &tsp, "DOWN").await;
    let text = scrape().await;
    assert!(line(&text, "tokenhub_tsp_up{", "").unwrap().ends_with(" 0"));
    assert!(line(
        &text,
        "tokenhub_tsp_health_checks_total{",
        "outcome=\"failed\""
    )
    .is_some());
}

async fn reading_a_tsps_health_takes_an_admin_key_that_reads(app: TestApp) {
    let path = format!("/admin/v1/tsps/{TSP_ID}");
    let get = |credential: String| {
        let path = path.clone();
        let app = &app;
        async move {
            app.admin_as(&credential, reqwest::Method::GET, &path, None)
                .await
                .status
        }
    };
    assert_eq!(get(String::new()).await, 401);
    assert_eq!(get("thk_0000_nope".into()).await, 401);
    assert_eq!(get(ADMIN_TOKEN.into()).await, 403, "the bootstrap token");
    let reader = app
        .create_admin_key(&serde_json::json!({"role": "read-only"}))
        .await;
    assert_eq!(get(reader).await, 200);
    let issuer_admin = app
        .create_admin_key(&serde_json::json!({"role": "issuer-admin", "issuers": [ISSUER]}))
        .await;
    assert_eq!(get(issuer_admin).await, 403);
}
