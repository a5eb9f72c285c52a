//! The requestor API's caches attacked: a requestor's API key verified lately and the TSP are
//! taken from the hub's memory, so these tests check that a cached key still needs its secret,
//! that a revocation holds at once on the node that made it and within the cache's time on
//! another, that a cached key reaches only its requestor's tokens, and that a TSP changed is
//! called at its new address.

use crate::support::requestor_api::{ApiRequestor, CardOnFile};
use crate::support::*;
use serde_json::json;
use tokenhub::clock::Clock;
use tokenhub::hub::{REQUESTOR_KEY_CACHE_TTL, TSP_CACHE_TTL};

hub_tests!(
    config = requestors_allowed;
    a_cached_key_with_another_secret_is_refused_as_an_unknown_key,
    a_revoked_key_is_refused_at_once_by_the_node_that_revoked_it,
    a_key_revoked_on_another_node_stops_working_within_the_cache_time,
    a_cached_key_reaches_none_of_another_requestors_tokens,
    a_changed_tsp_is_called_at_its_new_address,
);

const VISA: &str = "4111111111111111";
const MASTERCARD: &str = "5555555555554444";
const UNKNOWN_KEY: &str = "trk_0123456789abcdef_nope";

/// A requestor key's `trk_<keyId>_` (the secret is base64url, which may hold `_`).
fn key_head(key: &str) -> &str {
    &key[..4 + 16 + 1]
}

/// The requestor's token, tokenized with `card`.
async fn token(app: &TestApp, cof: &CardOnFile, r: &ApiRequestor, card: &str) -> String {
    let made = app.tokenize(r, "k", &cof.card(card)).await;
    made.expect(201)["tokenId"].as_str().unwrap().to_string()
}

async fn transaction_with(app: &TestApp, key: &str, token_id: &str) -> Answer {
    let body = json!({"amount": "100", "currency": "EUR", "transactionType": "CIT_ECOM"});
    let path = format!("/requestor/v1/tokens/{token_id}/transactions");
    app.requestor_call(Some(key), reqwest::Method::POST, &path, &[], Some(&body))
        .await
}

/// A new API key of `REQ1`: the key and its id.
async fn spare_key(app: &TestApp) -> (String, String) {
    let made = app
        .admin_post("/admin/v1/token-requestors/REQ1/api-keys", None)
        .await;
    let made = made.expect(201);
    (
        made["apiKey"].as_str().unwrap().to_string(),
        made["keyId"].as_str().unwrap().to_string(),
    )
}

async fn a_cached_key_with_another_secret_is_refused_as_an_unknown_key(app: TestApp) {
    let cof = app.card_on_file().await;
    let r = &cof.requestor;
    let token_id = token(&app, &cof, r, VISA).await;
    transaction_with(&app, &r.key, &token_id).await.expect(201);
    let unknown = transaction_with(&app, UNKNOWN_KEY, &token_id).await;
    assert_eq!(unknown.status, 401);
    let (spare, _) = spare_key(&app).await;
    let secret = &r.key[key_head(&r.key).len()..];
    let last = secret.chars().last().unwrap();
    let flipped = format!(
        "{}{}{}",
        key_head(&r.key),
        &secret[..secret.len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    for forged in [
        flipped,
        format!("{}{}", key_head(&r.key), "A".repeat(secret.len())),
        format!("{}{}x", key_head(&r.key), secret),
        format!("{}{}", key_head(&r.key), &spare[key_head(&spare).len()..]),
    ] {
        let answer = transaction_with(&app, &forged, &token_id).await;
        assert_eq!(answer.status, 401, "{answer:?}");
        assert_eq!(answer.json, unknown.json, "refused as an unknown key is");
    }
    // The key itself still works: a refusal did not evict or poison it.
    transaction_with(&app, &r.key, &token_id).await.expect(201);
}

async fn a_revoked_key_is_refused_at_once_by_the_node_that_revoked_it(app: TestApp) {
    let cof = app.card_on_file().await;
    let token_id = token(&app, &cof, &cof.requestor, VISA).await;
    let (spare, key_id) = spare_key(&app).await;
    transaction_with(&app, &spare, &token_id).await.expect(201);
    transaction_with(&app, &spare, &token_id).await.expect(201);
    app.admin_send(
        reqwest::Method::DELETE,
        &format!("/admin/v1/token-requestors/REQ1/api-keys/{key_id}"),
        None,
    )
    .await
    .expect(204);
    let after = transaction_with(&app, &spare, &token_id).await;
    assert_eq!(after.status, 401, "{after:?}");
    let unknown = transaction_with(&app, UNKNOWN_KEY, &token_id).await;
    assert_eq!(after.json, unknown.json);
    // The clock has not moved: the revocation, not the cache's time, refused it.
    transaction_with(&app, &cof.requestor.key, &token_id)
        .await
        .expect(201);
}

async fn a_key_revoked_on_another_node_stops_working_within_the_cache_time(app: TestApp) {
    let cof = app.card_on_file().await;
    let token_id = token(&app, &cof, &cof.requestor, VISA).await;
    let (spare, key_id) = spare_key(&app).await;
    transaction_with(&app, &spare, &token_id).await.expect(201);
    // Another node revokes it: the store changes, this node's cache is not told.
    let now = app.clock.now_ms();
    let revoked = app
        .hub
        .store
        .transact(move |c| {
            Box::pin(async move { c.revoke_requestor_key("REQ1", &key_id, now).await })
        })
        .await
        .unwrap();
    assert!(revoked);
    // Within the cache's time the key verified before still works here (the bound this test
    // checks is the cache's time, not less).
    transaction_with(&app, &spare, &token_id).await.expect(201);
    app.clock.advance(REQUESTOR_KEY_CACHE_TTL);
    let after = transaction_with(&app, &spare, &token_id).await;
    assert_eq!(after.status, 401, "{after:?}");
    transaction_with(&app, &cof.requestor.key, &token_id)
        .await
        .expect(201);
}

async fn a_cached_key_reaches_none_of_another_requestors_tokens(app: TestApp) {
    let cof = app.card_on_file().await;
    let mine = token(&app, &cof, &cof.requestor, VISA).await;
    let other = app.api_requestor("REQ2", &cof.receiver.base_url()).await;
    let theirs = token(&app, &cof, &other, MASTERCARD).await;
    transaction_with(&app, &other.key, &theirs)
        .await
        .expect(201);
    let unknown = transaction_with(&app, &other.key, "TKN0000000000000000000000000000").await;
    assert_eq!(unknown.status, 404);
    let calls = cof.sim.outgoing_calls();
    for _ in 0..2 {
        let answer = transaction_with(&app, &other.key, &mine).await;
        assert_eq!(answer.status, 404, "{answer:?}");
        assert_eq!(
            answer.json, unknown.json,
            "another's token is an unknown one"
        );
        assert_eq!(app.requestor_get(&other, &mine).await.status, 404);
    }
    assert_eq!(cof.sim.outgoing_calls(), calls, "no call reached the TSP");
    transaction_with(&app, &cof.requestor.key, &mine)
        .await
        .expect(201);
}

async fn a_changed_tsp_is_called_at_its_new_address(app: TestApp) {
    let cof = app.card_on_file().await;
    let r = &cof.requestor;
    let token_id = token(&app, &cof, r, VISA).await;
    app.create_transaction(r, &token_id, "100")
        .await
        .expect(201);
    // Changed through this node's admin API: the next call goes to the new address.
    let dead = "http://127.0.0.1:9";
    let put = app.put_tsp_with_subject(TSP_ID, dead, TSP_SUBJECT).await;
    assert!(put.status().is_success());
    let answer = app.create_transaction(r, &token_id, "100").await;
    assert_eq!(answer.expect(503)["error"], "TSP_UNAVAILABLE");
    let put = app
        .put_tsp_with_subject(TSP_ID, &cof.sim.base_url(), TSP_SUBJECT)
        .await;
    assert!(put.status().is_success());
    app.create_transaction(r, &token_id, "100")
        .await
        .expect(201);
    // Changed by another node (the store alone): seen within the cache's time.
    let mut tsp = app.hub.store.tsp(TSP_ID).await.unwrap().unwrap();
    tsp.base_url = dead.to_string();
    let now = app.clock.now_ms();
    app.hub
        .store
        .transact(move |c| Box::pin(async move { c.put_tsp(&tsp, now).await }))
        .await
        .unwrap();
    app.create_transaction(r, &token_id, "100")
        .await
        .expect(201);
    app.clock.advance(TSP_CACHE_TTL);
    let answer = app.create_transaction(r, &token_id, "100").await;
    assert_eq!(answer.expect(503)["error"], "TSP_UNAVAILABLE");
}
