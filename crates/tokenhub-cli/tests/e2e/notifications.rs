//! Token updates to token requestors end to end: the hub process delivers to the requestor
//! simulator (a PSP using `tokenhub-receiver`) over real HTTP, through its failures (retries,
//! Retry-After, dead letters and replay, 410 Gone, a closed port), secret rotation, a TSP that
//! repeats and reorders its updates, and a hub killed with updates still owed.

use crate::harness::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokenhub_sim::requestor::{DeliveryEvent, DeliveryOutcome, RequestorSim, RequestorSimConfig};
use tokenhub_sim::tsp::TokenUpdate;

const REQUESTOR: &str = "e2e-psp";
const MERCHANT: &str = "MERCHANT-E2E-1";
const API_KEY: &str = "e2e-psp-api-key";
const SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const NEW_SECRET: &str = "whsec_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
/// Three retries, quickly: an update is dead after the fourth attempt.
const FAST: &str = "200ms,400ms,800ms";
const WAIT: Duration = Duration::from_secs(30);

/// A schedule that outlasts a requestor down for several seconds, whatever the jitter draws.
fn patient() -> String {
    let mut s = String::from("200ms,400ms,800ms");
    for _ in 0..20 {
        s.push_str(",1s");
    }
    s
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The CPU time (clock ticks) the process used over `d`.
async fn cpu_ticks_over(pid: u32, d: Duration) -> u64 {
    fn ticks(pid: u32) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        // utime and stime: fields 14 and 15 of stat(5), 12 and 13 after the command's ')'.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }
    let before = ticks(pid);
    tokio::time::sleep(d).await;
    ticks(pid) - before
}

fn stamp(ms: i64) -> String {
    tokenhub::domain::lifecycle::format_timestamp(ms)
}

/// The requestor simulator and every notification it answered.
struct Psp {
    sim: RequestorSim,
    events: Arc<Mutex<Vec<DeliveryEvent>>>,
}

impl Psp {
    async fn start(secrets: &[&str]) -> Self {
        let config =
            RequestorSimConfig::new(API_KEY, secrets.iter().map(|s| s.to_string()).collect());
        let sim = RequestorSim::start(config).await.unwrap();
        let events: Arc<Mutex<Vec<DeliveryEvent>>> = Arc::default();
        let mut rx = sim.subscribe();
        let sink = events.clone();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match rx.recv().await {
                    Ok(e) => sink.lock().unwrap().push(e),
                    Err(RecvError::Lagged(n)) => panic!("the test lost {n} events"),
                    Err(RecvError::Closed) => break,
                }
            }
        });
        Self { sim, events }
    }

    fn events(&self) -> Vec<DeliveryEvent> {
        self.events.lock().unwrap().clone()
    }

    /// The events of the deliveries of one update (by `lastUpdateTimestamp`), in arrival order.
    fn events_of(&self, token: &str, ts: &str) -> Vec<DeliveryEvent> {
        self.events()
            .into_iter()
            .filter(|e| e.token_id.as_deref() == Some(token))
            .filter(|e| e.last_update_timestamp.as_deref() == Some(ts))
            .collect()
    }

    /// The receiver's stored state of a token, as JSON (`tokenState`, `lastUpdateTimestamp`, …).
    async fn view(&self, token: &str) -> Option<Value> {
        self.sim
            .token(token)
            .await
            .unwrap()
            .map(|t| serde_json::to_value(&t).unwrap())
    }

    /// Waits until the receiver holds the token in `state` stamped `ts` (any stamp if `None`).
    async fn wait_view(&self, token: &str, state: &str, ts: Option<&str>) -> Value {
        let until = Instant::now() + WAIT;
        loop {
            let v = self.view(token).await;
            if let Some(v) = &v {
                if v["tokenState"] == state && ts.is_none_or(|ts| v["lastUpdateTimestamp"] == ts) {
                    return v.clone();
                }
            }
            assert!(
                Instant::now() < until,
                "the requestor never held {token} {state} {ts:?}: {v:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An admin call; retried while the hub does not answer (it is being restarted).
async fn admin(w: &World, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let until = Instant::now() + WAIT;
    loop {
        let mut rq = w
            .http
            .request(method.clone(), format!("{}{path}", w.hub.url()))
            .bearer_auth(&w.hub.admin_key);
        if let Some(b) = &body {
            rq = rq.json(b);
        }
        match rq.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                return (status, serde_json::from_str(&text).unwrap_or(Value::Null));
            }
            Err(e) => assert!(Instant::now() < until, "{method} {path}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn admin_ok(w: &World, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, v) = admin(w, method.clone(), path, body).await;
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {v}"
    );
    v
}

async fn put_requestor(w: &World, base_url: &str, secrets: &[&str]) -> Value {
    let v = admin_ok(
        w,
        Method::PUT,
        &format!("/admin/v1/token-requestors/{REQUESTOR}"),
        Some(
            json!({"merchantId": MERCHANT, "baseUrl": base_url, "apiKey": API_KEY,
                    "signingSecrets": secrets}),
        ),
    )
    .await;
    assert_eq!(v["signingSecrets"], secrets.len(), "{v}");
    v
}

/// The requestor once nothing is pending: the requestor sees an update before the hub has
/// recorded its answer, so the hub's counts lag the requestor's view by an instant.
async fn settled_requestor(w: &World) -> Value {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = requestor(w).await;
        if count(&r, "PENDING") == 0 || std::time::Instant::now() > until {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn requestor(w: &World) -> Value {
    admin_ok(
        w,
        Method::GET,
        &format!("/admin/v1/token-requestors/{REQUESTOR}"),
        None,
    )
    .await
}

/// A requestor's updates by state, 0 when there is none.
fn count(view: &Value, state: &str) -> i64 {
    view["notifications"][state].as_i64().unwrap_or(0)
}

/// Suspends, resumes or deletes a token; returns the `lastUpdateTimestamp` the requestor is told.
async fn act(w: &World, token: &str, action: &str) -> String {
    let v = admin_ok(
        w,
        Method::POST,
        &format!("/admin/v1/tokens/{token}/{action}"),
        None,
    )
    .await;
    let state = match action {
        "suspend" => "SUSPENDED",
        "resume" => "ACTIVE",
        _ => "DELETED",
    };
    assert_eq!(v["state"], state, "{v}");
    v["lastUpdateTimestamp"].as_str().unwrap().to_string()
}

async fn token_notifications(w: &World, token: &str) -> Vec<Value> {
    let v = admin_ok(
        w,
        Method::GET,
        &format!("/admin/v1/tokens/{token}/notifications"),
        None,
    )
    .await;
    v.as_array().unwrap().clone()
}

async fn delivery(w: &World, id: i64) -> Value {
    admin_ok(
        w,
        Method::GET,
        &format!("/admin/v1/notifications/{id}"),
        None,
    )
    .await
}

/// Waits until the token's update stamped `ts` is in `state`; returns it with its attempt log.
async fn wait_delivery(w: &World, token: &str, ts: &str, state: &str) -> Value {
    let until = Instant::now() + WAIT;
    loop {
        let found = token_notifications(w, token)
            .await
            .into_iter()
            .find(|d| d["lastUpdateTimestamp"] == ts);
        if let Some(d) = &found {
            if d["state"] == state {
                return delivery(w, d["notificationId"].as_i64().unwrap()).await;
            }
        }
        assert!(
            Instant::now() < until,
            "the update of {token} at {ts} never became {state}: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn attempt_statuses(d: &Value) -> Vec<Option<i64>> {
    d["attemptLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_i64())
        .collect()
}

fn event_statuses(events: &[DeliveryEvent]) -> Vec<u16> {
    events.iter().map(|e| e.status).collect()
}

/// A hub that may reach loopback requestors, retrying on `schedule`, a requestor simulator
/// verifying with [`SECRET`], registered as [`REQUESTOR`].
async fn setup(backend: Backend, devices: usize, schedule: &str) -> (World, Psp) {
    let hub = HubSettings {
        env: vec![
            ("TOKENHUB_NOTIFY_RETRY_SCHEDULE".into(), schedule.into()),
            ("TOKENHUB_OUTBOUND_ALLOW".into(), "127.0.0.0/8".into()),
        ],
        ..Default::default()
    };
    let w = World::start(
        backend,
        WorldOptions {
            devices,
            hub,
            ..Default::default()
        },
    )
    .await;
    let psp = Psp::start(&[SECRET]).await;
    let v = put_requestor(&w, &psp.sim.base_url(), &[SECRET]).await;
    assert_eq!(v["state"], "ENABLED", "{v}");
    (w, psp)
}

/// Digitizes a card for the requestor onto each of the first `n` devices and waits until the
/// requestor has been told each token is ACTIVE.
async fn provision(w: &World, psp: &Psp, n: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    for i in 0..n {
        let extra = json!({"tokenRequestorId": REQUESTOR,
                           "card": {"lastDigits": "4242", "expiryDate": "0829", "artId": "art-1"}});
        tokens.push(w.digitize_with(i, extra).await);
    }
    for t in &tokens {
        w.wait_state(t, "ACTIVE", WAIT).await;
        let v = psp.wait_view(t, "ACTIVE", None).await;
        assert_eq!(
            (
                &v["merchantId"],
                &v["cardLastDigits"],
                &v["cardExpiryDate"],
                &v["cardArtId"]
            ),
            (
                &json!(MERCHANT),
                &json!("4242"),
                &json!("0829"),
                &json!("art-1")
            ),
            "{v}"
        );
    }
    tokens
}

/// The requestor's view of every token equals the hub's: its state, and the stamp of its newest
/// update.
async fn assert_requestor_in_sync(w: &World, psp: &Psp, tokens: &[String]) {
    for t in tokens {
        let hub = w.token(t).await;
        let newest = token_notifications(w, t)
            .await
            .into_iter()
            .max_by_key(|d| d["lastUpdateTimestamp"].as_str().unwrap().to_string())
            .expect("the token has updates");
        let ts = newest["lastUpdateTimestamp"].as_str().unwrap();
        let v = psp
            .wait_view(t, hub["state"].as_str().unwrap(), Some(ts))
            .await;
        let d = wait_delivery(w, t, ts, "DELIVERED").await;
        assert_eq!(v["webhookId"], d["webhookId"], "{v} {d}");
    }
}

e2e_tests! {
    async fn a_failing_requestor_gets_the_update_after_retries(backend) {
        let (w, psp) = setup(backend, 1, FAST).await;
        let t = provision(&w, &psp, 1).await.remove(0);
        psp.sim.fail_next(3, None);
        let ts = act(&w, &t, "suspend").await;
        let d = wait_delivery(&w, &t, &ts, "DELIVERED").await;
        assert_eq!(d["attempts"], 4, "{d}");
        assert_eq!(attempt_statuses(&d), vec![Some(503), Some(503), Some(503), Some(204)], "{d}");
        assert_eq!(d["body"]["tokenState"], "SUSPENDED", "{d}");
        let v = psp.wait_view(&t, "SUSPENDED", Some(&ts)).await;
        assert_eq!(v["webhookId"], d["webhookId"]);
        let events = psp.events_of(&t, &ts);
        assert_eq!(event_statuses(&events), vec![503, 503, 503, 204]);
        for e in &events {
            assert_eq!(e.webhook_id.as_deref(), d["webhookId"].as_str(), "one webhook-id for every attempt");
        }
        assert_eq!(events[3].outcome, DeliveryOutcome::Applied);
        assert_eq!(count(&requestor(&w).await, "PENDING"), 0);
    }

    async fn retry_after_is_honoured(backend) {
        let (w, psp) = setup(backend, 1, "100ms,100ms,100ms").await;
        let t = provision(&w, &psp, 1).await.remove(0);
        // Without Retry-After the schedule's 100 ms rule; with `Retry-After: 2` two seconds.
        psp.sim.fail_next(1, None);
        let ts = act(&w, &t, "suspend").await;
        wait_delivery(&w, &t, &ts, "DELIVERED").await;
        let quick = psp.events_of(&t, &ts);
        assert_eq!(event_statuses(&quick), vec![503, 204]);
        let gap = quick[1].received_at - quick[0].received_at;
        assert!(gap < Duration::from_millis(1500), "retried after {gap:?} without Retry-After");

        psp.sim.fail_next(1, Some(2));
        let ts = act(&w, &t, "resume").await;
        let d = wait_delivery(&w, &t, &ts, "DELIVERED").await;
        assert_eq!(attempt_statuses(&d), vec![Some(503), Some(204)], "{d}");
        let events = psp.events_of(&t, &ts);
        assert_eq!(event_statuses(&events), vec![503, 204]);
        let gap = events[1].received_at - events[0].received_at;
        assert!(gap >= Duration::from_secs(2), "retried after {gap:?} despite Retry-After: 2");
        assert!(gap < Duration::from_secs(5), "waited {gap:?}, far longer than asked");
        psp.wait_view(&t, "ACTIVE", Some(&ts)).await;
    }

    async fn a_refused_update_is_dead_until_replayed_with_the_same_webhook_id(backend) {
        let (w, psp) = setup(backend, 1, FAST).await;
        let t = provision(&w, &psp, 1).await.remove(0);
        // A retry, then a refusal for good.
        psp.sim.fail_next(1, None);
        psp.sim.status_next(400, 1, None).unwrap();
        let ts = act(&w, &t, "suspend").await;
        let d = wait_delivery(&w, &t, &ts, "DEAD").await;
        assert_eq!(attempt_statuses(&d), vec![Some(503), Some(400)], "{d}");
        assert_eq!(d["lastStatus"], 400, "{d}");
        let id = d["notificationId"].as_i64().unwrap();
        let dead = admin_ok(&w, Method::GET,
            &format!("/admin/v1/token-requestors/{REQUESTOR}/notifications?state=DEAD"), None).await;
        let dead_ids: Vec<i64> = dead.as_array().unwrap().iter().map(|d| d["notificationId"].as_i64().unwrap()).collect();
        assert_eq!(dead_ids, vec![id], "{dead}");
        assert_eq!(count(&requestor(&w).await, "DEAD"), 1);
        // Dead stays dead: nothing more is sent on its own.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(psp.events_of(&t, &ts).len(), 2);
        assert_eq!(psp.view(&t).await.unwrap()["tokenState"], "ACTIVE");

        let (status, _) = admin(&w, Method::POST, &format!("/admin/v1/notifications/{id}/replay"), None).await;
        assert_eq!(status, 204);
        let d = wait_delivery(&w, &t, &ts, "DELIVERED").await;
        assert_eq!(attempt_statuses(&d), vec![Some(503), Some(400), Some(204)], "{d}");
        psp.wait_view(&t, "SUSPENDED", Some(&ts)).await;
        let events = psp.events_of(&t, &ts);
        assert_eq!(event_statuses(&events), vec![503, 400, 204]);
        let webhook_id = d["webhookId"].as_str().unwrap();
        for e in &events {
            assert_eq!(e.webhook_id.as_deref(), Some(webhook_id), "one webhook-id across retries and replay");
        }
        let (status, _) = admin(&w, Method::POST, &format!("/admin/v1/notifications/{id}/replay"), None).await;
        assert_eq!(status, 409, "a delivered update is not replayed");
        assert_eq!(count(&requestor(&w).await, "DEAD"), 0);

        // The bulk replay of the dead-letter list.
        psp.sim.status_next(404, 1, None).unwrap();
        let ts = act(&w, &t, "resume").await;
        wait_delivery(&w, &t, &ts, "DEAD").await;
        let v = admin_ok(&w, Method::POST,
            &format!("/admin/v1/token-requestors/{REQUESTOR}/dead-letters/replay"), None).await;
        assert_eq!(v["replayed"], 1, "{v}");
        let d = wait_delivery(&w, &t, &ts, "DELIVERED").await;
        assert_eq!(attempt_statuses(&d), vec![Some(404), Some(204)], "{d}");
        psp.wait_view(&t, "ACTIVE", Some(&ts)).await;
        let r = settled_requestor(&w).await;
        assert_eq!((count(&r, "DEAD"), count(&r, "PENDING")), (0, 0), "{r}");
    }

    async fn gone_disables_the_requestor_and_its_updates_wait_until_it_is_enabled(backend) {
        let (w, psp) = setup(backend, 2, FAST).await;
        let tokens = provision(&w, &psp, 2).await;
        let (a, b) = (&tokens[0], &tokens[1]);
        psp.sim.status_next(410, 1, None).unwrap();
        let a_suspended = act(&w, a, "suspend").await;
        let until = Instant::now() + WAIT;
        let r = loop {
            let r = requestor(&w).await;
            if r["state"] == "DISABLED" {
                break r;
            }
            assert!(Instant::now() < until, "never disabled: {r}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(r["disabledReason"].as_str().unwrap_or("").contains("410"), "{r}");
        let held = token_notifications(&w, a)
            .await
            .into_iter()
            .find(|d| d["lastUpdateTimestamp"] == a_suspended.as_str())
            .expect("the suspension is queued");
        let d = delivery(&w, held["notificationId"].as_i64().unwrap()).await;
        assert_eq!(attempt_statuses(&d).first(), Some(&Some(410)), "{d}");

        // Later updates wait, untried. (The update that met the 410 may be sent once more right
        // after it: a bug, see the ignored test below; let that pass first.)
        tokio::time::sleep(Duration::from_millis(300)).await;
        let received = psp.sim.stats().received;
        let a_resumed = act(&w, a, "resume").await;
        let b_suspended = act(&w, b, "suspend").await;
        let b_deleted = act(&w, b, "delete").await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(psp.sim.stats().received, received, "nothing is sent to a disabled requestor");
        let r = requestor(&w).await;
        assert_eq!(r["state"], "DISABLED", "{r}");
        // The newest update of each token supersedes the ones before it.
        assert_eq!(count(&r, "PENDING"), 2, "{r}");
        let superseded = token_notifications(&w, b)
            .await
            .into_iter()
            .find(|d| d["lastUpdateTimestamp"] == b_suspended.as_str())
            .expect("the suspension is queued");
        assert_eq!(superseded["state"], "SUPERSEDED", "{superseded}");
        for (t, ts) in [(a, &a_resumed), (b, &b_deleted)] {
            let d = wait_delivery(&w, t, ts, "PENDING").await;
            assert_eq!(d["attempts"], 0, "{d}");
        }

        let (status, _) = admin(&w, Method::POST,
            &format!("/admin/v1/token-requestors/{REQUESTOR}/enable"), None).await;
        assert_eq!(status, 204);
        psp.wait_view(a, "ACTIVE", Some(&a_resumed)).await;
        psp.wait_view(b, "DELETED", Some(&b_deleted)).await;
        assert!(psp.events_of(b, &b_suspended).is_empty(), "a superseded update is never sent");
        let r = settled_requestor(&w).await;
        assert_eq!(r["state"], "ENABLED", "{r}");
        assert!(r.get("disabledReason").is_none(), "{r}");
        assert_eq!((count(&r, "PENDING"), count(&r, "DEAD")), (0, 0), "{r}");
        assert_requestor_in_sync(&w, &psp, &tokens).await;
    }
    async fn an_update_that_met_a_410_is_not_sent_again_before_the_requestor_is_enabled(backend) {
        let (w, psp) = setup(backend, 1, FAST).await;
        let t = provision(&w, &psp, 1).await.remove(0);
        // The race is lost more often when the answer is slow (while a delivery is in flight
        // the notifier claims every millisecond), and in several rounds.
        psp.sim.set_delay(Some(Duration::from_millis(100)));
        for round in 0..8 {
            psp.sim.status_next(410, 1, None).unwrap();
            let ts = act(&w, &t, if round % 2 == 0 { "suspend" } else { "resume" }).await;
            let until = Instant::now() + WAIT;
            while requestor(&w).await["state"] != "DISABLED" {
                assert!(Instant::now() < until, "never disabled");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let held = token_notifications(&w, &t)
                .await
                .into_iter()
                .find(|d| d["lastUpdateTimestamp"] == ts.as_str())
                .expect("the update is queued");
            let d = delivery(&w, held["notificationId"].as_i64().unwrap()).await;
            assert_eq!(
                (&d["state"], attempt_statuses(&d)),
                (&json!("PENDING"), vec![Some(410)]),
                "round {round}: sent again to the requestor its 410 disabled: {d}"
            );
            assert_eq!(event_statuses(&psp.events_of(&t, &ts)), vec![410]);
            let (status, _) = admin(&w, Method::POST,
                &format!("/admin/v1/token-requestors/{REQUESTOR}/enable"), None).await;
            assert_eq!(status, 204);
            let d = wait_delivery(&w, &t, &ts, "DELIVERED").await;
            assert_eq!(attempt_statuses(&d), vec![Some(410), Some(204)], "{d}");
        }
    }
    async fn a_slow_requestor_does_not_make_the_notifier_spin(backend) {
        let (w, psp) = setup(backend, 1, FAST).await;
        let t = provision(&w, &psp, 1).await.remove(0);
        let pid = w.hub.pid().unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = cpu_ticks_over(pid, Duration::from_secs(2)).await;
        // One delivery in flight for three seconds.
        psp.sim.set_delay(Some(Duration::from_secs(3)));
        let ts = act(&w, &t, "suspend").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(psp.events_of(&t, &ts).len(), 1, "the delivery is under way");
        let busy = cpu_ticks_over(pid, Duration::from_secs(2)).await;
        // 20 ticks over 2 s: 10% of a core more than idle.
        assert!(busy <= idle + 20, "the hub used {busy} ticks with a delivery in flight, {idle} idle");
        wait_delivery(&w, &t, &ts, "DELIVERED").await;
    }

    async fn a_requestor_down_for_a_while_ends_with_the_hubs_view_of_every_token(backend) {
        let (w, psp) = setup(backend, 4, &patient()).await;
        let tokens = provision(&w, &psp, 4).await;
        psp.sim.go_down(Duration::from_secs(3)).await.unwrap();
        let mut last = Vec::new();
        for t in &tokens {
            last.push(act(&w, t, "suspend").await);
        }
        for i in [0, 1] {
            last[i] = act(&w, &tokens[i], "resume").await;
        }
        last[0] = act(&w, &tokens[0], "suspend").await;
        last[3] = act(&w, &tokens[3], "delete").await;
        assert!(psp.sim.is_down(), "the changes were made while the requestor was down");
        let expected = ["SUSPENDED", "ACTIVE", "SUSPENDED", "DELETED"];
        for (i, t) in tokens.iter().enumerate() {
            assert_eq!(w.token(t).await["state"], expected[i]);
            let v = psp.wait_view(t, expected[i], Some(&last[i])).await;
            assert_eq!(v["cardLastDigits"], "4242", "{v}");
        }
        assert_requestor_in_sync(&w, &psp, &tokens).await;
        let r = settled_requestor(&w).await;
        assert_eq!((count(&r, "PENDING"), count(&r, "DEAD")), (0, 0), "{r}");
        // The hub did try while the port was closed.
        let mut refused = 0;
        for t in &tokens {
            for d in token_notifications(&w, t).await {
                let full = delivery(&w, d["notificationId"].as_i64().unwrap()).await;
                refused += full["attemptLog"].as_array().unwrap().iter()
                    .filter(|a| a["status"].is_null() && a["error"].as_str().unwrap_or("").contains("connect"))
                    .count();
            }
        }
        assert!(refused > 0, "no attempt met the closed port");
    }

    async fn duplicate_and_out_of_order_tsp_updates_apply_only_the_newest(backend) {
        let (w, psp) = setup(backend, 1, FAST).await;
        let t = provision(&w, &psp, 1).await.remove(0);
        let base = now_ms() + 1_000;
        let update = |offset: i64| TokenUpdate {
            token_id: t.clone(),
            issuer_id: ISSUER.into(),
            last_update_timestamp: stamp(base + offset),
            ..Default::default()
        };
        let state = |s: &str| Some(s.to_string());
        let u1 = TokenUpdate {
            token_state: state("SUSPENDED"),
            token_expiry_date: Some("1230".into()),
            ..update(0)
        };
        let u2 = TokenUpdate {
            token_state: state("ACTIVE"),
            token_last_digits: Some("9876".into()),
            ..update(2_000)
        };
        let older = TokenUpdate {
            token_state: state("SUSPENDED"),
            token_expiry_date: Some("0131".into()),
            ..update(1_000)
        };
        let answered = |a: tokenhub_sim::tsp::UpdateAnswer| (a.status, a.response_code);
        // The same update twice (a TSP retry), then a newer one, then an older one.
        let correlation = uuid::Uuid::new_v4().to_string();
        assert_eq!(answered(w.tsp.send_update_as(&u1, &correlation).await.unwrap()), (204, None));
        assert_eq!(answered(w.tsp.send_update_as(&u1, &correlation).await.unwrap()), (204, None));
        assert_eq!(answered(w.tsp.send_update(&u1).await.unwrap()), (204, None));
        assert_eq!(answered(w.tsp.send_update(&u2).await.unwrap()), (204, None));
        assert_eq!(answered(w.tsp.send_update(&older).await.unwrap()), (204, None));
        let hub = w.token(&t).await;
        assert_eq!(hub["state"], "ACTIVE", "{hub}");
        assert_eq!((&hub["tokenInfo"]["exp"], &hub["tokenInfo"]["last4"]), (&json!("1230"), &json!("9876")), "{hub}");
        let applied = hub["history"].as_array().unwrap().iter()
            .filter(|e| e["event"].as_str().unwrap_or("").starts_with("TSP update applied")).count();
        assert_eq!(applied, 2, "{hub}");
        let v = psp.wait_view(&t, "ACTIVE", Some(&stamp(base + 2_000))).await;
        assert_eq!((&v["tokenLastDigits"], &v["tokenExpiryDate"]), (&json!("9876"), &json!("1230")), "{v}");
        let stamps: Vec<String> = token_notifications(&w, &t).await.iter()
            .map(|d| d["lastUpdateTimestamp"].as_str().unwrap().to_string()).collect();
        assert_eq!(stamps.len(), 3, "ACTIVE, u1, u2 and nothing else: {stamps:?}");
        assert!(!stamps.contains(&stamp(base + 1_000)), "{stamps:?}");
        assert_eq!(stamps.iter().filter(|s| **s == stamp(base)).count(), 1, "{stamps:?}");
        assert!(psp.events_of(&t, &stamp(base + 1_000)).is_empty());

        // Deleted: a newer update that would change the token is refused; the same news again is
        // acknowledged.
        let deleted = TokenUpdate { token_state: Some("DELETED".into()), ..update(3_000) };
        assert_eq!(answered(w.tsp.send_update(&deleted).await.unwrap()), (204, None));
        w.wait_state(&t, "DELETED", WAIT).await;
        let revive = TokenUpdate { token_state: Some("ACTIVE".into()), ..update(4_000) };
        assert_eq!(answered(w.tsp.send_update(&revive).await.unwrap()), (400, Some(432)));
        let renew = TokenUpdate { token_expiry_date: Some("0132".into()), ..update(4_500) };
        assert_eq!(answered(w.tsp.send_update(&renew).await.unwrap()), (400, Some(432)));
        let again = TokenUpdate { token_state: Some("DELETED".into()), ..update(5_000) };
        assert_eq!(answered(w.tsp.send_update(&again).await.unwrap()), (204, None));
        assert_eq!(w.token(&t).await["state"], "DELETED");
        psp.wait_view(&t, "DELETED", Some(&stamp(base + 3_000))).await;
        assert_eq!(token_notifications(&w, &t).await.len(), 4, "nothing queued for the refused updates");
        assert_requestor_in_sync(&w, &psp, std::slice::from_ref(&t)).await;
    }

    async fn a_signing_secret_is_rotated_without_a_gap(backend) {
        let (w, old) = setup(backend, 1, FAST).await;
        let t = provision(&w, &old, 1).await.remove(0);
        // The requestor now verifies with the new secret only.
        let new = Psp::start(&[NEW_SECRET]).await;
        put_requestor(&w, &new.sim.base_url(), &[SECRET]).await;
        let ts = act(&w, &t, "suspend").await;
        let d = wait_delivery(&w, &t, &ts, "DEAD").await;
        assert_eq!(attempt_statuses(&d), vec![Some(401)], "signed with the old secret only: {d}");

        put_requestor(&w, &new.sim.base_url(), &[SECRET, NEW_SECRET]).await;
        let id = d["notificationId"].as_i64().unwrap();
        let (status, _) = admin(&w, Method::POST, &format!("/admin/v1/notifications/{id}/replay"), None).await;
        assert_eq!(status, 204);
        wait_delivery(&w, &t, &ts, "DELIVERED").await;
        new.wait_view(&t, "SUSPENDED", Some(&ts)).await;
        let events = new.events_of(&t, &ts);
        assert_eq!(event_statuses(&events), vec![401, 204]);
        let signatures = events[1].header("webhook-signature").unwrap().split_whitespace().count();
        assert_eq!(signatures, 2, "one signature per secret during the rotation");

        put_requestor(&w, &new.sim.base_url(), &[NEW_SECRET]).await;
        let ts = act(&w, &t, "resume").await;
        wait_delivery(&w, &t, &ts, "DELIVERED").await;
        new.wait_view(&t, "ACTIVE", Some(&ts)).await;
        let events = new.events_of(&t, &ts);
        assert_eq!(event_statuses(&events), vec![204]);
        assert_eq!(events[0].outcome, DeliveryOutcome::Applied);
        let signatures = events[0].header("webhook-signature").unwrap().split_whitespace().count();
        assert_eq!(signatures, 1);
        assert_eq!(old.events().len(), 1, "the old endpoint got only the ACTIVE update");
        assert_eq!(requestor(&w).await["signingSecrets"], 1);
    }

    async fn the_hub_killed_with_updates_owed_loses_none(backend) {
        let devices = 6;
        let (mut w, psp) = setup(backend, devices, &patient()).await;
        let tokens = provision(&w, &psp, devices).await;
        // Every attempt is answered 503 with Retry-After: 5; after the first attempts the
        // notifier is idle for seconds, so the kill cannot land in the middle of an attempt (a
        // claimed update would stay leased for two minutes).
        psp.sim.fail_next(100_000, Some(5));
        let started = Instant::now();
        let delivered_before = psp.sim.stats().answered_2xx;
        for t in &tokens {
            act(&w, t, "suspend").await;
        }
        for t in tokens.iter().step_by(2) {
            act(&w, t, "resume").await;
        }
        act(&w, &tokens[1], "delete").await;
        let v = admin_ok(&w, Method::POST, &format!("/admin/v1/issuers/{ISSUER}/cards/card-3/renew"),
            Some(json!({"cardExpiryDate": "0931", "cardArtId": "art-2"}))).await;
        assert_eq!(v["tokenIds"], json!([tokens[3]]), "{v}");
        // Every token has an update owed, tried once at most.
        let until = Instant::now() + WAIT;
        loop {
            let pending = admin_ok(&w, Method::GET,
                &format!("/admin/v1/token-requestors/{REQUESTOR}/notifications?state=PENDING"), None).await;
            let pending = pending.as_array().unwrap();
            let tried = pending.iter().filter(|d| d["lastStatus"] == 503).count();
            let owed: std::collections::BTreeSet<&str> =
                pending.iter().map(|d| d["tokenId"].as_str().unwrap()).collect();
            if owed.len() == devices && tried > 0 {
                break;
            }
            assert!(Instant::now() < until, "{pending:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(psp.sim.stats().answered_2xx, delivered_before, "nothing delivered yet");
        assert!(started.elapsed() < Duration::from_millis(4_500), "the changes took too long: {:?}", started.elapsed());
        w.hub.kill();
        w.hub.restart().await;
        // One more change after the restart, while the requestor still fails.
        act(&w, &tokens[5], "resume").await;
        psp.sim.reset_misbehaviour();
        assert_requestor_in_sync(&w, &psp, &tokens).await;
        let v = psp.wait_view(&tokens[3], "SUSPENDED", None).await;
        assert_eq!((&v["cardExpiryDate"], &v["cardArtId"]), (&json!("0931"), &json!("art-2")), "{v}");
        let expected = ["ACTIVE", "DELETED", "ACTIVE", "SUSPENDED", "ACTIVE", "ACTIVE"];
        for (t, state) in tokens.iter().zip(expected) {
            assert_eq!(psp.view(t).await.unwrap()["tokenState"], state, "{t}");
        }
        let r = settled_requestor(&w).await;
        assert_eq!((count(&r, "PENDING"), count(&r, "DEAD")), (0, 0), "{r}");
        assert!(count(&r, "DELIVERED") >= 2 * devices as i64, "{r}");
    }
}
