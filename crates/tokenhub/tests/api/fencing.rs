//! Fencing by claim version: a node that stalled past its claim's lease, whose row another node
//! (or it, again) claimed since, records nothing when it wakes up: the row keeps the newer
//! claim's outcome and counts each real attempt once. Node A and node B are played here with the
//! store's claims under two node ids; the last test stalls the hub's own outbox on a TSP.

use crate::support::*;
use serde_json::json;
use std::time::Duration;
use tokenhub::clock::Clock;
use tokenhub::domain::notification::{NewNotification, Notification, Settle, Settlement};
use tokenhub::domain::tsp_call::{CallOutcome, NewCall, QueuedCall, TspCall};
use tokenhub::flows::{notifications, tsp_calls};
use tokenhub::store::StoreError;

hub_tests!(
    a_tsp_call_settled_after_its_lease_was_taken_over_changes_nothing,
    a_tsp_call_given_back_after_its_lease_was_taken_over_stays_claimed,
);
hub_tests!(
    config = requestors_allowed;
    a_token_update_settled_after_its_lease_was_taken_over_changes_nothing
);
hub_tests!(a_call_the_tsp_answers_after_the_lease_ends_in_the_second_attempts_state);
hub_tests!(
    config = requestors_allowed;
    an_update_the_requestor_answers_after_the_lease_ends_in_the_second_attempts_state
);

/// A TSP no lane calls (not registered): only the test's claims take its calls.
const UNCALLED_TSP: &str = "tsp-fencing";
const LEASE_MS: i64 = 15_000;
/// Rows queued this far ahead of the hub's clock: the hub's own workers never find them due.
const AHEAD_MS: i64 = 3_600_000;

/// Claims `tsp_id`'s due calls at `now` for node `by`.
async fn claim_calls(app: &TestApp, tsp_id: &str, by: &str, now: i64) -> Vec<QueuedCall> {
    let (tsp_id, by) = (tsp_id.to_string(), by.to_string());
    app.hub
        .store
        .transact(move |tx| {
            Box::pin(async move { tx.claim_tsp_calls(&tsp_id, &by, now, LEASE_MS, 10).await })
        })
        .await
        .expect("the claim")
}

/// Queues a call to [`UNCALLED_TSP`] due at `at`; returns its id.
async fn queue_call(app: &TestApp, at: i64) -> i64 {
    app.hub
        .store
        .transact(move |tx| {
            Box::pin(async move {
                let call = NewCall {
                    call: TspCall::UpdateTokenState,
                    token_id: "tok-fencing",
                    tsp_id: UNCALLED_TSP,
                    correlation_id: "corr-fencing",
                    payload: "{}",
                };
                tx.enqueue_tsp_call(&call, at).await?;
                Ok::<_, StoreError>(())
            })
        })
        .await
        .expect("the call is queued");
    app.sql_i64("SELECT MAX(id) FROM outbox").await.unwrap()
}

/// The outbox row's state, attempts, claim version, claimer and last error.
async fn call_row(app: &TestApp, id: i64) -> (String, i64, i64, String, String) {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.database_url())
        .await
        .unwrap();
    let r = sqlx::query(&format!(
        "SELECT state, attempts, claim_version, COALESCE(claimed_by, '') AS claimed_by, \
         COALESCE(last_error, '') AS last_error FROM outbox WHERE id = {id}"
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

/// What the row holds after B's attempt, which the TSP answered 503.
fn after_b() -> (String, i64, i64, String, String) {
    (
        "PENDING".into(),
        2,
        2,
        "node-b".into(),
        "B: HTTP 503".into(),
    )
}

fn retry(at: i64) -> CallOutcome {
    CallOutcome::Retry {
        at,
        error: "B: HTTP 503".into(),
    }
}

async fn a_tsp_call_settled_after_its_lease_was_taken_over_changes_nothing(app: TestApp) {
    let t0 = app.clock.now_ms() + AHEAD_MS;
    let id = queue_call(&app, t0).await;
    let a = claim_calls(&app, UNCALLED_TSP, "node-a", t0).await;
    assert_eq!(a.len(), 1);
    assert_eq!((a[0].id, a[0].claim_version, a[0].attempts), (id, 1, 1));
    // Within A's lease nobody else gets the call.
    assert!(claim_calls(&app, UNCALLED_TSP, "node-b", t0 + LEASE_MS - 1)
        .await
        .is_empty());
    // A stalls past its lease; B takes the call over.
    let t1 = t0 + LEASE_MS + 1;
    let b = claim_calls(&app, UNCALLED_TSP, "node-b", t1).await;
    assert_eq!(b.len(), 1);
    assert_eq!((b[0].id, b[0].claim_version, b[0].attempts), (id, 2, 2));
    tsp_calls::settle(&app.hub, b[0].clone(), retry(t1 + AHEAD_MS))
        .await
        .expect("B's outcome is recorded");
    assert_eq!(call_row(&app, id).await, after_b());
    // A wakes up and records its outcome, done or dead: refused, and not an error.
    for outcome in [
        CallOutcome::Done,
        CallOutcome::Dead {
            error: "A: refused".into(),
        },
    ] {
        tsp_calls::settle(&app.hub, a[0].clone(), outcome)
            .await
            .expect("a lost claim is no error");
        assert_eq!(call_row(&app, id).await, after_b());
    }
    // B's own claim still settles: B claims again when its retry is due, and the TSP answers.
    let b2 = claim_calls(&app, UNCALLED_TSP, "node-b", t1 + AHEAD_MS).await;
    assert_eq!((b2[0].claim_version, b2[0].attempts), (3, 3));
    tsp_calls::settle(&app.hub, b2[0].clone(), CallOutcome::Done)
        .await
        .unwrap();
    assert_eq!(call_row(&app, id).await.0, "DONE");
    // A settlement after the call is done changes nothing either, not even for its last claim.
    tsp_calls::settle(&app.hub, b2[0].clone(), retry(t1 + 2 * AHEAD_MS))
        .await
        .unwrap();
    assert_eq!(call_row(&app, id).await.0, "DONE");
}

async fn a_tsp_call_given_back_after_its_lease_was_taken_over_stays_claimed(app: TestApp) {
    let t0 = app.clock.now_ms() + AHEAD_MS;
    let id = queue_call(&app, t0).await;
    let a = claim_calls(&app, UNCALLED_TSP, "node-a", t0).await;
    let t1 = t0 + LEASE_MS + 1;
    let b = claim_calls(&app, UNCALLED_TSP, "node-b", t1).await;
    assert_eq!(b[0].claim_version, 2);
    // A gives its claim back untried (its TSP's rate was used up): B's claim is left alone.
    tsp_calls::release(&app.hub, vec![(a[0].id, a[0].claim_version)])
        .await
        .expect("a lost claim is no error");
    assert_eq!(
        app.sql_i64(&format!("SELECT attempts FROM outbox WHERE id = {id}"))
            .await,
        Some(2)
    );
    assert!(claim_calls(&app, UNCALLED_TSP, "node-c", t1 + 1)
        .await
        .is_empty());
    // B's own give-back frees the call and takes back B's attempt.
    tsp_calls::release(&app.hub, vec![(b[0].id, b[0].claim_version)])
        .await
        .unwrap();
    assert_eq!(
        app.sql_i64(&format!("SELECT attempts FROM outbox WHERE id = {id}"))
            .await,
        Some(1)
    );
    let c = claim_calls(&app, UNCALLED_TSP, "node-c", t1 + 1).await;
    assert_eq!((c[0].claim_version, c[0].attempts), (3, 2));
}

/// Claims `requestor`'s due updates at `now` for node `by`. A claim skips a requestor whose row
/// another claim holds (the hub's own notifier, on its round): an empty claim is tried again for
/// a while, so the answer is what is due, not whether that round was running.
async fn claim_updates(app: &TestApp, requestor: &str, by: &str, now: i64) -> Vec<Notification> {
    for _ in 0..20 {
        let (requestor, by) = (requestor.to_string(), by.to_string());
        let claimed = app
            .hub
            .store
            .transact(move |tx| {
                Box::pin(async move {
                    tx.claim_notifications(&requestor, &by, now, LEASE_MS, 10)
                        .await
                })
            })
            .await
            .expect("the claim");
        if !claimed.is_empty() {
            return claimed;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Vec::new()
}

fn settlement(n: &Notification, outcome: Settle, status: i64, at: i64) -> Settlement {
    Settlement {
        id: n.id,
        claim_version: n.claim_version,
        outcome,
        status: Some(status),
        error: (status != 200).then(|| format!("HTTP {status}")),
        started_ms: at,
        ended_ms: at,
    }
}

async fn a_token_update_settled_after_its_lease_was_taken_over_changes_nothing(app: TestApp) {
    let receiver = Receiver::start().await;
    app.register_requestor("req-fencing", &receiver.base_url(), 1)
        .await;
    let t0 = app.clock.now_ms() + AHEAD_MS;
    app.hub
        .store
        .transact(move |tx| {
            Box::pin(async move {
                let n = NewNotification {
                    webhook_id: "tknupd_fencing",
                    requestor_id: "req-fencing",
                    token_id: "tok-fencing",
                    correlation_id: "corr-fencing",
                    payload: "{}",
                    last_update_ms: t0,
                };
                tx.enqueue_notification(&n, t0).await
            })
        })
        .await
        .expect("the update is queued");
    let a = claim_updates(&app, "req-fencing", "node-a", t0).await;
    assert_eq!((a.len(), a[0].claim_version, a[0].attempts), (1, 1, 1));
    let id = a[0].id;
    assert!(
        claim_updates(&app, "req-fencing", "node-b", t0 + LEASE_MS - 1)
            .await
            .is_empty()
    );
    let t1 = t0 + LEASE_MS + 1;
    let b = claim_updates(&app, "req-fencing", "node-b", t1).await;
    assert_eq!((b.len(), b[0].claim_version, b[0].attempts), (1, 2, 2));
    let retry = Settle::Retry {
        next_attempt_ms: t1 + AHEAD_MS,
    };
    notifications::settle(&app.hub, vec![settlement(&b[0], retry, 503, t1)], vec![])
        .await
        .expect("B's outcome is recorded");
    // A wakes up: delivered, or dead, in one batch with nothing else: refused, no error.
    let late = vec![
        settlement(&a[0], Settle::Delivered, 200, t1 + 1),
        settlement(&a[0], Settle::Dead, 400, t1 + 2),
    ];
    notifications::settle(&app.hub, late, vec![])
        .await
        .expect("a lost claim is no error");
    let d = app.delivery(id).await;
    assert_eq!(d["state"], "PENDING", "{d}");
    assert_eq!(d["attempts"], 2, "{d}");
    let attempts = app.hub.store.notification_attempts(id).await.unwrap();
    assert_eq!(
        attempts.len(),
        1,
        "only B's attempt is recorded: {attempts:?}"
    );
    assert_eq!(attempts[0].status, Some(503));
    // B's next claim settles, in a batch with A's stale outcome: only B's counts.
    let b2 = claim_updates(&app, "req-fencing", "node-b", t1 + AHEAD_MS).await;
    assert_eq!(b2[0].claim_version, 3);
    let batch = vec![
        settlement(&a[0], Settle::Dead, 400, t1 + AHEAD_MS),
        settlement(&b2[0], Settle::Delivered, 200, t1 + AHEAD_MS),
    ];
    notifications::settle(&app.hub, batch, vec![])
        .await
        .unwrap();
    let d = app.delivery(id).await;
    assert_eq!(d["state"], "DELIVERED", "{d}");
    assert_eq!(
        app.hub.store.notification_attempts(id).await.unwrap().len(),
        2
    );
}

async fn a_call_the_tsp_answers_after_the_lease_ends_in_the_second_attempts_state(app: TestApp) {
    let token = app.active_token().await;
    let witness = app.active_token().await;
    app.tsp_calls_to("PUT", &state_path(&token), 1).await;
    app.tsp_calls_to("PUT", &state_path(&witness), 1).await;
    // The TSP takes the hub's call and holds it past the claim's lease.
    app.tsp.hold_calls();
    app.token_action(&token, "suspend", None).await.expect(200);
    app.tsp_calls_to("PUT", &state_path(&token), 2).await;
    let id = app
        .sql_i64(&format!(
            "SELECT id FROM outbox WHERE token_id = '{token}' AND state = 'PENDING'"
        ))
        .await
        .expect("the call is pending");
    let lease = app.hub.config.node.claim_lease;
    app.clock.advance(lease + Duration::from_secs(1));
    // Another node takes the call over and makes its own attempt, which the TSP answers 503.
    let now = app.clock.now_ms();
    let b = claim_calls(&app, TSP_ID, "node-b", now).await;
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!((b[0].id, b[0].claim_version, b[0].attempts), (id, 2, 2));
    tsp_calls::settle(&app.hub, b[0].clone(), retry(now + AHEAD_MS))
        .await
        .unwrap();
    // The TSP answers the first attempt now; the hub's lane records it (refused) before it
    // claims the witness's call.
    app.tsp.release_calls();
    app.token_action(&witness, "suspend", None)
        .await
        .expect(200);
    let witnessed = last_event(&app, &witness).await.1;
    eventually("the witness's call done", || async {
        let sql = format!(
            "SELECT COUNT(*) FROM outbox WHERE correlation_id = '{witnessed}' AND state = 'DONE'"
        );
        (app.sql_i64(&sql).await == Some(1)).then_some(())
    })
    .await;
    assert_eq!(
        call_row(&app, id).await,
        after_b(),
        "the row holds the second attempt's outcome, each attempt counted once"
    );
}

async fn an_update_the_requestor_answers_after_the_lease_ends_in_the_second_attempts_state(
    app: TestApp,
) {
    let receiver = Receiver::start().await;
    // One delivery at a time: the hub does not claim the update again while its attempt runs.
    app.put_requestor_body(
        REQUESTOR,
        &json!({
            "merchantId": merchant_of(REQUESTOR),
            "baseUrl": receiver.base_url(),
            "apiKey": "key-fencing",
            "signingSecrets": [signing_secret(32)],
            "maxInFlight": 1,
        }),
    )
    .await
    .expect(200);
    // The requestor takes the hub's update and holds it past the claim's lease.
    receiver.hold();
    let token = app
        .active_token_from(json!({"tokenRequestorId": REQUESTOR, "card": card()}))
        .await;
    receiver.wait_for(1).await;
    let id = notification_id(&app.newest_notification_of(&token).await);
    app.clock
        .advance(app.hub.config.node.claim_lease + Duration::from_secs(1));
    // Another node takes the update over and makes its own attempt, answered 503.
    let now = app.clock.now_ms();
    let b = claim_updates(&app, REQUESTOR, "node-b", now).await;
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!((b[0].id, b[0].claim_version, b[0].attempts), (id, 2, 2));
    let retry = Settle::Retry {
        next_attempt_ms: now + AHEAD_MS,
    };
    notifications::settle(&app.hub, vec![settlement(&b[0], retry, 503, now)], vec![])
        .await
        .unwrap();
    // The requestor answers the first attempt now; the hub records it (refused) before the
    // witness's update, delivered after it.
    receiver.release();
    let witness = app
        .active_token_from(json!({"tokenRequestorId": REQUESTOR, "card": card()}))
        .await;
    let w = notification_id(&app.newest_notification_of(&witness).await);
    app.notification_in_state(w, "DELIVERED").await;
    let d = app.delivery(id).await;
    assert_eq!(d["state"], "PENDING", "{d}");
    assert_eq!(d["attempts"], 2, "{d}");
    assert_eq!(d["lastStatus"], 503, "{d}");
    let attempts = app.hub.store.notification_attempts(id).await.unwrap();
    assert_eq!(
        attempts.len(),
        1,
        "only the second attempt is recorded: {attempts:?}"
    );
}
