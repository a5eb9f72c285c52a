//! The requestor API's calls to the TSP follow the outbox's rules within the requestor's budget:
//! `921`, `429` (not before its `Retry-After`) and `5xx` are tried again under the same
//! correlation id until the TSP answers; a refusal is final at once; a TSP that stays down is a
//! `503` with `Retry-After` within the budget and nothing is stored, and the requestor's retry
//! with the same `Idempotency-Key` gets one token, even when the TSP made it during an attempt
//! whose answer was lost; the calls keep to the TSP's agreed rate.

use crate::support::requestor_api::CardOnFile;
use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};
use tokenhub::Config;

hub_tests!(
    config = two_second_budget;
    a_tokenization_outlasts_921_a_429_and_a_500,
    create_transaction_and_delete_outlast_the_same,
    a_refusal_is_final_and_a_wait_beyond_the_budget_is_passed_on,
    a_tsp_that_stays_down_is_a_503_within_the_budget_and_the_retry_makes_one_token,
    the_calls_keep_to_the_tsps_agreed_rate,
);

const VISA: &str = "4111111111111111";
const MASTERCARD: &str = "5555555555554444";
const BUDGET: Duration = Duration::from_secs(2);

fn two_second_budget(config: &mut Config) {
    requestors_allowed(config);
    config.requestor_tsp_budget = BUDGET;
}

/// The requestor API's setup, the simulator behind a front that fails as a test scripts it.
async fn behind_front(app: &TestApp) -> (CardOnFile, FlakyTsp) {
    let cof = app.card_on_file().await;
    let front = FlakyTsp::spawn(&cof.sim.base_url()).await;
    let put = app
        .put_tsp_with_subject(TSP_ID, &front.base_url(), TSP_SUBJECT)
        .await;
    assert!(put.status().is_success(), "{put:?}");
    (cof, front)
}

/// The front's calls from the `from`-th on whose path ends with `suffix`, and their statuses;
/// they all carried one correlation id.
fn attempts(front: &FlakyTsp, from: usize, suffix: &str) -> (Vec<FrontCall>, Vec<u16>) {
    let calls: Vec<FrontCall> = front.calls()[from..]
        .iter()
        .filter(|c| c.path.ends_with(suffix))
        .cloned()
        .collect();
    assert!(calls[0].correlation_id.is_some());
    for c in &calls {
        assert_eq!(c.correlation_id, calls[0].correlation_id, "{calls:?}");
    }
    let statuses = calls.iter().map(|c| c.status).collect();
    (calls, statuses)
}

async fn a_tokenization_outlasts_921_a_429_and_a_500(app: TestApp) {
    let (cof, front) = behind_front(&app).await;
    let r = &cof.requestor;
    front.fail_next(&[
        Fault::busy_921(),
        Fault::status(429).retry_after("1"),
        Fault::status(500),
    ]);
    let jwe = cof.card(VISA);
    let made = app.tokenize(r, "idem-r", &jwe).await;
    let token = made.expect(201).clone();
    let (calls, statuses) = attempts(&front, 0, "/cardOnFileTokens");
    assert_eq!(statuses, [400, 429, 500, 200]);
    let waited = calls[2].at - calls[1].at;
    assert!(
        waited >= Duration::from_secs(1),
        "after the 429: {waited:?}"
    );
    assert_eq!(cof.sim.status().tokens_created, 1);

    let again = app.tokenize(r, "idem-r", &jwe).await;
    assert_eq!(again.expect(200)["tokenId"], token["tokenId"]);
    assert_eq!(front.calls().len(), 4, "a repeat makes no TSP call");
}

async fn create_transaction_and_delete_outlast_the_same(app: TestApp) {
    let (cof, front) = behind_front(&app).await;
    let r = &cof.requestor;
    let made = app.tokenize(r, "k", &cof.card(MASTERCARD)).await;
    let token_id = made.expect(201)["tokenId"].as_str().unwrap().to_string();
    front.fail_next(&[
        Fault::status(500),
        Fault::busy_921(),
        Fault::status(429).retry_after("1"),
    ]);
    let txn = app.create_transaction(r, &token_id, "1250").await;
    let txn = txn.expect(201).clone();
    let (calls, statuses) = attempts(&front, 0, "/transactionCredentials");
    assert_eq!(statuses, [500, 400, 429, 200]);
    assert!(calls[3].at - calls[2].at >= Duration::from_secs(1));
    let merchant = merchant_of("REQ1");
    assert_eq!(cof.authorize(&txn, "1250", &merchant).reason, "APPROVED");

    front.fail_next(&[Fault::status(502), Fault::status(408)]);
    app.requestor_delete(r, &token_id).await.expect(204);
    let (calls, statuses) = attempts(&front, 0, &format!("/cardOnFileTokens/{token_id}"));
    assert_eq!(statuses, [502, 408, 204]);
    assert!(calls.iter().all(|c| c.method == "DELETE"));
    assert_eq!(
        cof.sim.card_on_file_state(&token_id),
        Some(tokenhub_sim::TspTokenState::Deleted)
    );
}

async fn a_refusal_is_final_and_a_wait_beyond_the_budget_is_passed_on(app: TestApp) {
    let (cof, front) = behind_front(&app).await;
    let r = &cof.requestor;
    front.fail_next(&[Fault::refused(163)]);
    let refused = app.tokenize(r, "k1", &cof.card(VISA)).await;
    assert_eq!(refused.expect(422)["error"], "CARD_NOT_ELIGIBLE");
    assert_eq!(front.calls().len(), 1, "a refusal is not tried again");

    front.fail_next(&[Fault::status(429).retry_after("30")]);
    let started = Instant::now();
    let busy = app.tokenize(r, "k2", &cof.card(VISA)).await;
    assert_eq!(busy.expect(503)["error"], "TSP_UNAVAILABLE");
    assert_eq!(busy.retry_after.as_deref(), Some("30"), "the TSP's wait");
    assert!(started.elapsed() < BUDGET, "{:?}", started.elapsed());
    assert_eq!(front.calls().len(), 2);
    assert_eq!(cof.sim.status().tokens_created, 0);
}

async fn a_tsp_that_stays_down_is_a_503_within_the_budget_and_the_retry_makes_one_token(
    app: TestApp,
) {
    let (cof, front) = behind_front(&app).await;
    let r = &cof.requestor;
    let earlier = app.tokenize(r, "earlier", &cof.card(MASTERCARD)).await;
    let earlier = earlier.expect(201)["tokenId"].as_str().unwrap().to_string();
    let before = front.calls().len();

    // The first attempt reaches the TSP, which makes the token, and its answer is lost; then
    // the TSP answers nothing but 503.
    front.fail_next(&[Fault::status(500).after_tsp()]);
    front.set_down(true);
    let jwe = cof.card(VISA);
    let started = Instant::now();
    let down = app.tokenize(r, "k", &jwe).await;
    let took = started.elapsed();
    assert_eq!(down.expect(503)["error"], "TSP_UNAVAILABLE");
    assert_eq!(down.retry_after.as_deref(), Some("1"));
    assert!(took < BUDGET + Duration::from_millis(300), "{took:?}");
    let (calls, _) = attempts(&front, before, "/cardOnFileTokens");
    let tried = calls.len();
    assert!(tried >= 2, "retried: {tried}");
    assert_eq!(
        cof.sim.status().tokens_created,
        2,
        "the lost answer's token"
    );
    let stored = "SELECT COUNT(*) FROM requestor_tokens";
    assert_eq!(app.sql_i64(stored).await, Some(1), "only the earlier token");

    let txn = app.create_transaction(r, &earlier, "100").await;
    assert_eq!(txn.expect(503)["error"], "TSP_UNAVAILABLE");
    assert_eq!(txn.retry_after.as_deref(), Some("1"));
    app.requestor_delete(r, &earlier).await.expect(503);
    assert_eq!(
        app.requestor_get(r, &earlier).await.expect(200)["tokenState"],
        "ACTIVE"
    );

    front.set_down(false);
    let calls_down = front.calls().len();
    let made = app.tokenize(r, "k", &jwe).await;
    let token = made.expect(201).clone();
    assert_eq!(
        cof.sim.status().tokens_created,
        2,
        "the same token, not a second"
    );
    let (calls, _) = attempts(&front, before, "/cardOnFileTokens");
    assert_eq!(
        calls.len(),
        tried + 1,
        "one more attempt, same correlation id"
    );
    assert_eq!(front.calls().len(), calls_down + 1);
    let again = app.tokenize(r, "k", &jwe).await;
    assert_eq!(again.expect(200)["tokenId"], token["tokenId"]);
    assert_eq!(app.sql_i64(stored).await, Some(2));
}

async fn the_calls_keep_to_the_tsps_agreed_rate(app: TestApp) {
    let (cof, front) = behind_front(&app).await;
    let body = json!({
        "baseUrl": front.base_url(),
        "rateLimitPerSecond": 1,
        "clientCertificates": {"caPem": test_certs().ca, "subject": TSP_SUBJECT},
    });
    let put = app.put_tsp_body(TSP_ID, &body).await;
    assert!(put.status().is_success(), "{put:?}");
    let r = &cof.requestor;
    let first = Instant::now();
    app.tokenize(r, "k1", &cof.card(VISA)).await.expect(201);
    let jwe = cof.card(MASTERCARD);
    // The TSP's one call a second is spent: the second call waits for the next slot (within the
    // budget), by real time (the database's clock on PostgreSQL), whatever the hub's clock says.
    app.tokenize(r, "k2", &jwe).await.expect(201);
    assert!(
        first.elapsed() >= Duration::from_millis(950),
        "{:?}",
        first.elapsed()
    );
    assert_eq!(front.calls().len(), 2);
}
