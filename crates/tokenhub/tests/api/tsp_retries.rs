//! A TSP that answers the outbox's call `429 Too Many Requests` or `408 Request Timeout` is asked
//! again later, under the same `x-correlation-id`, never before its `Retry-After` (seconds or an
//! HTTP date); the call is not given up.

use crate::support::*;
use std::time::Duration;
use tokenhub::clock::Clock;

hub_tests!(
    a_429_is_retried_not_before_its_retry_after_in_seconds,
    a_429_is_retried_not_before_its_retry_after_date,
    a_408_is_retried_after_the_backoff,
);

/// An ACTIVE token whose ACTIVE `updateTokenState` the TSP already acknowledged.
async fn quiet_token(app: &TestApp) -> String {
    let token = app.active_token().await;
    app.tsp_calls_to("PUT", &state_path(&token), 1).await;
    token
}

/// Suspends the token; the correlation id of its `updateTokenState`.
async fn suspend(app: &TestApp, token: &str) -> String {
    app.token_action(token, "suspend", None).await.expect(200);
    last_event(app, token).await.1
}

/// When the outbox will make the call again, once its failed attempt is recorded.
async fn next_attempt_ms(app: &TestApp, correlation_id: &str) -> i64 {
    let sql = format!(
        "SELECT next_attempt_ms FROM outbox WHERE correlation_id = '{correlation_id}' \
         AND state = 'PENDING' AND locked_until_ms = 0 AND last_error IS NOT NULL"
    );
    eventually("the failed attempt recorded", || app.sql_i64(&sql)).await
}

/// Moves the clock by `by`, wakes the outbox and waits for the call's third attempt at the TSP
/// (the ACTIVE one, the refused one, this one), made under the same correlation id; then the call
/// is done.
async fn retried_after(app: &TestApp, token: &str, correlation_id: &str, by: Duration) {
    app.clock.advance(by);
    app.hub.outbox_wake.notify_one();
    let calls = app.tsp_calls_to("PUT", &state_path(token), 3).await;
    assert_eq!(calls.len(), 3, "{calls:?}");
    for call in &calls[1..] {
        assert_eq!(call.correlation_id.as_deref(), Some(correlation_id));
        assert_eq!(call.body["state"], "SUSPENDED");
    }
    let done = format!(
        "SELECT COUNT(*) FROM outbox WHERE correlation_id = '{correlation_id}' AND state = 'DONE'"
    );
    eventually("the call done", || async {
        (app.sql_i64(&done).await == Some(1)).then_some(())
    })
    .await;
}

async fn a_429_is_retried_not_before_its_retry_after_in_seconds(app: TestApp) {
    let token = quiet_token(&app).await;
    app.tsp.answer_next_calls(&[(429, Some("120"))]);
    let before = app.clock.now_ms();
    let cid = suspend(&app, &token).await;
    let next = next_attempt_ms(&app, &cid).await;
    // The backoff alone would be about a second.
    assert!(next >= before + 120_000, "{next} - {before}");
    assert!(next <= app.clock.now_ms() + 121_000, "{next} - {before}");
    retried_after(&app, &token, &cid, Duration::from_secs(121)).await;
}

async fn a_429_is_retried_not_before_its_retry_after_date(app: TestApp) {
    let token = quiet_token(&app).await;
    // The TSP's date is on the real clock, which the hub's test clock started from.
    let at = chrono::Utc::now() + chrono::Duration::seconds(600);
    let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    app.tsp.answer_next_calls(&[(429, Some(&date))]);
    let before = app.clock.now_ms();
    let cid = suspend(&app, &token).await;
    let next = next_attempt_ms(&app, &cid).await;
    // Whole seconds, and the test's own time since the date was made: a minute of slack.
    assert!(next >= before + 540_000, "{next} - {before}");
    assert!(next <= app.clock.now_ms() + 601_000, "{next} - {before}");
    retried_after(&app, &token, &cid, Duration::from_secs(601)).await;
}

async fn a_408_is_retried_after_the_backoff(app: TestApp) {
    let token = quiet_token(&app).await;
    app.tsp.answer_next_calls(&[(408, None)]);
    let before = app.clock.now_ms();
    let cid = suspend(&app, &token).await;
    let next = next_attempt_ms(&app, &cid).await;
    let backoff = app.hub.config.outbox_backoff.as_millis() as i64;
    assert!(next >= before + backoff / 2, "{next} - {before}");
    assert!(next <= app.clock.now_ms() + backoff, "{next} - {before}");
    retried_after(&app, &token, &cid, app.hub.config.outbox_backoff).await;
}
