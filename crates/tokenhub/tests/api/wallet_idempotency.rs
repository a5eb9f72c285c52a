//! A digitization sent with an `Idempotency-Key` may be sent again: the repeat gets the token the
//! first made (`200`) without another createToken, and every createToken of the key carries one
//! `x-correlation-id` (the contract has the TSP answer a repeat with the token it made), so that
//! repeats at the same moment record one token too. The key does not stand for another
//! digitization, and a key that is not 1 to 64 visible ASCII characters is refused.

use crate::support::*;
use serde_json::{json, Value};

hub_tests!(
    a_digitization_sent_again_with_its_key_gets_the_same_token_made_once,
    a_digitization_whose_tsp_was_down_is_made_once_when_sent_again,
    a_key_sent_with_another_digitization_is_refused_and_records_nothing,
    a_key_that_is_empty_too_long_or_not_visible_ascii_is_400_before_the_tsp,
    repeats_of_a_key_at_the_same_moment_record_one_token,
);

async fn digitize_with_key(app: &TestApp, key: &str, body: &Value) -> Answer {
    let sent = app
        .wallet
        .post(app.url("/wallet/v1/digitizations"))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("the hub answers");
    Answer::read(sent).await
}

async fn tokens(app: &TestApp) -> i64 {
    app.sql_i64("SELECT COUNT(*) FROM tokens").await.unwrap()
}

async fn a_digitization_sent_again_with_its_key_gets_the_same_token_made_once(app: TestApp) {
    let body = digitization_body();
    let key = "wallet-request-0001";
    let first = digitize_with_key(&app, key, &body).await;
    let first = first.expect(201).clone();
    let again = digitize_with_key(&app, key, &body).await;
    let again = again.expect(200);
    assert_eq!(again["tokenId"], first["tokenId"]);
    assert_eq!(again["state"], "PENDING_DATA");
    assert_eq!(again["tokenInfo"], first["tokenInfo"]);
    assert_eq!(tokens(&app).await, 1);
    let ids = app.tsp.received_correlation_ids();
    assert_eq!(
        ids.len(),
        1,
        "the repeat is answered without the TSP: {ids:?}"
    );
    let id = ids[0].as_deref().unwrap();
    assert!(!id.contains(key), "the key is not readable from {id}");
    // Another key is another digitization.
    let other = digitize_with_key(&app, "wallet-request-0002", &digitization_body()).await;
    assert_ne!(other.expect(201)["tokenId"], first["tokenId"]);
    assert_eq!(tokens(&app).await, 2);
}

async fn a_digitization_whose_tsp_was_down_is_made_once_when_sent_again(app: TestApp) {
    let body = digitization_body();
    let key = "after-a-503";
    app.tsp.answer_create_token_with(CreateToken::Down);
    let down = digitize_with_key(&app, key, &body).await;
    assert_eq!(down.status, 503, "{down:?}");
    assert_eq!(tokens(&app).await, 0);
    app.tsp.answer_create_token_with(CreateToken::Create);
    let made = digitize_with_key(&app, key, &body).await;
    let token = made.expect(201)["tokenId"].clone();
    let again = digitize_with_key(&app, key, &body).await;
    assert_eq!(again.expect(200)["tokenId"], token);
    assert_eq!(tokens(&app).await, 1);
    let ids = app.tsp.received_correlation_ids();
    assert!(
        ids.iter().all(|i| i.is_some() && *i == ids[0]),
        "every attempt under one correlation id: {ids:?}"
    );
}

async fn a_key_sent_with_another_digitization_is_refused_and_records_nothing(app: TestApp) {
    let key = "reused";
    let body = digitization_body();
    let made = digitize_with_key(&app, key, &body).await;
    let token = made.expect(201)["tokenId"].as_str().unwrap().to_string();
    let mut other = body.clone();
    other["walletCardRefId"] = json!("another-card");
    let refused = digitize_with_key(&app, key, &other).await;
    assert_eq!(refused.status, 422, "{refused:?}");
    assert_eq!(refused.json["error"], "IDEMPOTENCY_KEY_REUSED");
    assert!(
        !refused.text.contains(&token),
        "the refusal names no token: {}",
        refused.text
    );
    assert_eq!(tokens(&app).await, 1);
    assert_eq!(
        app.tsp.received_correlation_ids().len(),
        1,
        "nor asked of the TSP"
    );
    let view = app.get_token(&token).await;
    assert_eq!(view["walletCardRefId"], body["walletCardRefId"]);
}

async fn a_key_that_is_empty_too_long_or_not_visible_ascii_is_400_before_the_tsp(app: TestApp) {
    let long = "k".repeat(65);
    for key in ["", long.as_str(), "two words", "tab\there"] {
        let r = digitize_with_key(&app, key, &digitization_body()).await;
        assert_eq!(r.status, 400, "{key:?}: {r:?}");
    }
    assert!(app.tsp.received_correlation_ids().is_empty());
    let longest = "k".repeat(64);
    digitize_with_key(&app, &longest, &digitization_body())
        .await
        .expect(201);
}

async fn repeats_of_a_key_at_the_same_moment_record_one_token(app: TestApp) {
    let body = digitization_body();
    let (a, b, c) = tokio::join!(
        digitize_with_key(&app, "at-once", &body),
        digitize_with_key(&app, "at-once", &body),
        digitize_with_key(&app, "at-once", &body),
    );
    let mut statuses = vec![a.status, b.status, c.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 201], "{a:?} {b:?} {c:?}");
    assert_eq!(a.json["tokenId"], b.json["tokenId"]);
    assert_eq!(b.json["tokenId"], c.json["tokenId"]);
    assert_eq!(tokens(&app).await, 1);
    let ids = app.tsp.received_correlation_ids();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
}
