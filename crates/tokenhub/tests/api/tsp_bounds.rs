//! Calls that cost the hub little to refuse: a body of very many elements is refused on its count
//! (its elements after the limit are counted, not built), and an unknown `keyIndex` does not make
//! every call re-read the shared keys; a key imported while the hub runs still becomes usable.

use crate::support::*;
use serde_json::json;
use tokenhub::clock::Clock;
use tokenhub_crypto::{Algorithm, SharedKey};

const JSON: (&str, &str) = ("content-type", "application/json");

hub_tests!(
    a_body_of_a_hundred_thousand_tiny_elements_is_refused_with_112,
    an_unknown_key_index_rereads_the_keys_at_most_once_per_interval,
);

async fn a_body_of_a_hundred_thousand_tiny_elements_is_refused_with_112(app: TestApp) {
    let token = app.pending_token().await;
    for element in ["{}", r#"{"value":"1"}"#] {
        let body = format!(
            r#"{{"issuerId":"{ISSUER}","tokenPersoInfo":[{}{element}]}}"#,
            format!("{element},").repeat(99_999)
        );
        assert!(
            body.len() < tokenhub::http::MAX_BODY_BYTES,
            "under the body limit"
        );
        let answer = app
            .put_data_with_headers(
                &token,
                &[("x-correlation-id", &correlation_id()), JSON],
                body.clone(),
            )
            .await;
        answer.assert_refused(112);
        assert!(
            answer.message().contains("100000 elements"),
            "{}",
            answer.message()
        );
        let answer = app
            .put_new_data_with_headers(
                &token,
                &[("x-correlation-id", &correlation_id()), JSON],
                body,
            )
            .await;
        answer.assert_refused(112);
    }
    app.complete_data(&token).await;
}

/// Imports `key` as `tokenhub keys import` does while the hub runs: another process, with the
/// same master key, writing the store; the running hub's memory does not change.
async fn import_aside(app: &TestApp, key: &SharedKey) {
    let cli = tokenhub::keys::Keys::from_master_hex(MASTER_KEY).unwrap();
    tokenhub::flows::keys::import(
        &app.hub.store,
        &cli,
        crate::support::TSP_ID,
        std::slice::from_ref(key),
        "cli",
        app.clock.now_ms(),
    )
    .await
    .unwrap();
}

/// `cmk_ac` encrypted under `key`, with a valid `psn`.
fn under(key: &SharedKey) -> serde_json::Value {
    let ct = tokenhub_crypto::encrypt_cbc_m2(
        key.algorithm,
        &key.key_bytes().unwrap(),
        &random_bytes(16),
    )
    .unwrap();
    data_body(&[
        json!({"name": "cmk_ac", "value": hex::encode_upper(ct), "keyIndex": key.key_index}),
        psn(),
    ])
}

async fn an_unknown_key_index_rereads_the_keys_at_most_once_per_interval(app: TestApp) {
    let first = SharedKey::generate("KEK-IMPORTED-1", Algorithm::Aes128, "kek");
    let second = SharedKey::generate("KEK-IMPORTED-2", Algorithm::Aes128, "kek");
    // The first unknown index re-reads the keys: a key imported meanwhile is used at once.
    import_aside(&app, &first).await;
    let token = app.pending_token().await;
    app.put_data(&token, &under(&first)).await.assert_accepted();
    // Within the interval, unknown indexes are refused without re-reading: the key imported
    // since is not seen yet, however many calls name it.
    import_aside(&app, &second).await;
    for _ in 0..5 {
        let token = app.pending_token().await;
        app.put_data(&token, &under(&second))
            .await
            .assert_refused(431);
    }
    app.clock.advance(tokenhub::hub::KEY_RELOAD_INTERVAL / 2);
    let token = app.pending_token().await;
    app.put_data(&token, &under(&second))
        .await
        .assert_refused(431);
    // Once the interval is over, the next unknown index re-reads them.
    app.clock.advance(tokenhub::hub::KEY_RELOAD_INTERVAL / 2);
    app.put_data(&token, &under(&second))
        .await
        .assert_accepted();
    assert!(app
        .hub
        .keys
        .knows_key(crate::support::TSP_ID, "KEK-IMPORTED-2"));
}
