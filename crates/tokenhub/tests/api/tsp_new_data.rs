//! `PUT /trapi/v2.0/tokens/{tokenId}/newData`: the data of a personalized token (recovered for a
//! re-personalization, or renewed by the TSP), and its `tokenInfo`.

use crate::support::*;
use serde_json::json;
use tokenhub::domain::TokenState;

/// A token ACTIVE with the required elements and a recovery to v2 open: its elements, its id,
/// and the recovery's correlation id.
async fn recovering(app: &TestApp) -> (Vec<serde_json::Value>, String, String) {
    let elements = app.required_elements();
    let token = app.active_token_with(&elements).await;
    let correlation_id = app.start_recovery(&token, "v2").await;
    (elements, token, correlation_id)
}

/// The headers of the TSP's `/newData` under a recovery's correlation id.
fn new_data_headers(correlation_id: &str) -> [(&'static str, &str); 2] {
    [
        ("x-correlation-id", correlation_id),
        ("content-type", "application/json"),
    ]
}

hub_tests!(
    new_data_on_an_active_token_with_token_info_is_accepted_and_the_token_shows_it,
    new_data_without_token_perso_info_is_accepted,
    new_data_on_a_suspended_token_is_accepted,
    new_data_with_elements_on_an_active_token_is_accepted_and_re_personalizes_it,
    new_data_while_a_re_personalization_is_being_delivered_is_rejected_with_321,
    new_data_on_a_token_still_pending_data_is_rejected_with_432,
    new_data_on_a_deleted_token_is_rejected_with_432,
    new_data_while_the_token_is_personalizing_is_rejected_with_321,
    new_data_for_an_unknown_token_is_rejected_with_119,
    new_data_from_an_unregistered_issuer_is_rejected_with_113,
    new_data_from_a_registered_issuer_that_is_not_the_tokens_is_rejected_with_113,
    a_refused_new_data_changes_nothing,
    recovered_data_that_is_the_data_the_token_was_personalized_with_is_accepted,
    recovered_data_that_differs_from_what_the_token_was_personalized_with_is_rejected_with_431,
    recovered_data_after_the_recovery_time_to_live_is_rejected_with_432,
    a_retry_of_a_recovered_part_is_acknowledged_and_not_applied_twice,
    a_retry_of_the_completing_recovered_call_after_the_device_confirmed_is_acknowledged,
    parts_staged_by_an_incomplete_renewal_do_not_count_toward_a_later_recovery,
);

async fn new_data_on_an_active_token_with_token_info_is_accepted_and_the_token_shows_it(
    app: TestApp,
) {
    let token = app.active_token().await;
    let body = json!({
        "issuerId": ISSUER,
        "tokenInfo": {"exp": "0631", "last4": "9876"},
        "tokenPersoInfo": app.required_elements(),
    });
    app.put_new_data(&token, &body).await.assert_accepted();
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "ACTIVE");
    assert_eq!(view["tokenInfo"], json!({"exp": "0631", "last4": "9876"}));
    assert!(
        view["history"].as_array().unwrap().last().unwrap()["event"]
            .as_str()
            .unwrap()
            .starts_with("newData"),
        "{view}"
    );
}

async fn new_data_without_token_perso_info_is_accepted(app: TestApp) {
    let token = app.active_token().await;
    app.put_new_data(
        &token,
        &json!({"issuerId": ISSUER, "tokenInfo": {"last4": "1111"}}),
    )
    .await
    .assert_accepted();
    let view = app.get_token(&token).await;
    assert_eq!(
        view["tokenInfo"],
        json!({"exp": TSP_EXP, "last4": "1111"}),
        "exp is kept"
    );
    app.put_new_data(&token, &json!({"issuerId": ISSUER}))
        .await
        .assert_accepted();
    assert_eq!(app.token_state(&token).await, "ACTIVE");
}

async fn new_data_on_a_suspended_token_is_accepted(app: TestApp) {
    let token = app.active_token().await;
    app.set_token_state(&token, TokenState::Suspended).await;
    app.put_new_data(
        &token,
        &json!({"issuerId": ISSUER, "tokenInfo": {"exp": "0132"}}),
    )
    .await
    .assert_accepted();
    assert_eq!(app.token_state(&token).await, "SUSPENDED");
}

async fn new_data_with_elements_on_an_active_token_is_accepted_and_re_personalizes_it(
    app: TestApp,
) {
    let token = app.active_token().await;
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 0);
    let body = json!({"issuerId": ISSUER, "tokenPersoInfo": app.required_elements()});
    app.put_new_data(&token, &body).await.assert_accepted();
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 1);
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "ACTIVE");
    assert_eq!(
        names(&view["elementsHeld"]),
        ["cmk_ac", "psn", "track2_data"]
    );
    let last = view["personalizations"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["kind"], "REPERSO", "{view}");
    assert_eq!(last["state"], "PENDING", "{view}");
}

async fn new_data_while_a_re_personalization_is_being_delivered_is_rejected_with_321(app: TestApp) {
    let token = app.active_token().await;
    let body = json!({"issuerId": ISSUER, "tokenPersoInfo": app.required_elements()});
    app.put_new_data(&token, &body).await.assert_accepted();
    let again = json!({"issuerId": ISSUER, "tokenPersoInfo": app.required_elements()});
    app.put_new_data(&token, &again).await.assert_refused(321);
    app.put_new_data(
        &token,
        &json!({"issuerId": ISSUER, "tokenInfo": {"exp": "0130"}}),
    )
    .await
    .assert_refused(321);
    // Once the device confirmed it, new data is taken again.
    app.confirm_personalization(&token).await;
    app.put_new_data(
        &token,
        &json!({"issuerId": ISSUER, "tokenInfo": {"exp": "0130"}}),
    )
    .await
    .assert_accepted();
}

async fn new_data_on_a_token_still_pending_data_is_rejected_with_432(app: TestApp) {
    let token = app.pending_token().await;
    app.put_new_data(
        &token,
        &json!({"issuerId": ISSUER, "tokenPersoInfo": app.required_elements()}),
    )
    .await
    .assert_refused(432);
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "PENDING_DATA");
    assert_eq!(names(&view["elementsHeld"]), Vec::<String>::new());
}

async fn new_data_on_a_deleted_token_is_rejected_with_432(app: TestApp) {
    let token = app.active_token().await;
    app.set_token_state(&token, TokenState::Deleted).await;
    app.put_new_data(
        &token,
        &json!({"issuerId": ISSUER, "tokenInfo": {"exp": "0130"}}),
    )
    .await
    .assert_refused(432);
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "DELETED");
    assert_eq!(
        view["tokenInfo"]["exp"], TSP_EXP,
        "nothing of the refused call is applied"
    );
}

async fn new_data_while_the_token_is_personalizing_is_rejected_with_321(app: TestApp) {
    let token = app.pending_token().await;
    app.complete_data(&token).await;
    app.put_new_data(
        &token,
        &json!({"issuerId": ISSUER, "tokenInfo": {"exp": "0130"}}),
    )
    .await
    .assert_refused(321);
}

async fn new_data_for_an_unknown_token_is_rejected_with_119(app: TestApp) {
    app.put_new_data("NO-SUCH-TOKEN", &json!({"issuerId": ISSUER}))
        .await
        .assert_refused(119);
}

async fn new_data_from_an_unregistered_issuer_is_rejected_with_113(app: TestApp) {
    let token = app.active_token().await;
    app.put_new_data(&token, &json!({"issuerId": "UNKNOWN001"}))
        .await
        .assert_refused(113);
}

async fn new_data_from_a_registered_issuer_that_is_not_the_tokens_is_rejected_with_113(
    app: TestApp,
) {
    assert_eq!(
        app.put_issuer(OTHER_ISSUER, "Second Test Bank", TSP_ID)
            .await
            .status(),
        200
    );
    let token = app.active_token().await;
    app.put_new_data(
        &token,
        &json!({"issuerId": OTHER_ISSUER, "tokenInfo": {"exp": "0130"}}),
    )
    .await
    .assert_refused(113);
    assert_eq!(app.get_token(&token).await["tokenInfo"]["exp"], TSP_EXP);
}

async fn a_refused_new_data_changes_nothing(app: TestApp) {
    let token = app.active_token().await;
    let body = json!({
        "issuerId": ISSUER,
        "tokenInfo": {"exp": "0130", "last4": "5555"},
        "tokenPersoInfo": [psn(), clear("unknown_element", "1")],
    });
    app.put_new_data(&token, &body).await.assert_refused(431);
    let view = app.get_token(&token).await;
    assert_eq!(
        view["tokenInfo"],
        json!({"exp": TSP_EXP, "last4": TSP_LAST4})
    );
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 0);
    assert_eq!(view["personalizations"].as_array().unwrap().len(), 1);
}

async fn recovered_data_that_is_the_data_the_token_was_personalized_with_is_accepted(app: TestApp) {
    let (elements, token, correlation_id) = recovering(&app).await;
    // The TSP sends the existing data back, in two calls under the recovery's correlation id.
    let (first, second) = elements.split_at(1);
    for part in [first, second] {
        let body = json!({"issuerId": ISSUER, "tokenPersoInfo": part});
        app.put_new_data_with_headers(
            &token,
            &new_data_headers(&correlation_id),
            serde_json::to_vec(&body).unwrap(),
        )
        .await
        .assert_accepted();
    }
    let view = app.get_token(&token).await;
    let last = view["personalizations"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["kind"], "REPERSO", "{view}");
    assert_eq!(last["profileVersion"], "v2", "{view}");
}

async fn recovered_data_that_differs_from_what_the_token_was_personalized_with_is_rejected_with_431(
    app: TestApp,
) {
    let token = app.active_token().await;
    let correlation_id = app.start_recovery(&token, "v2").await;
    // New data, not the existing: a fresh card master key.
    let body = json!({"issuerId": ISSUER, "tokenPersoInfo": app.required_elements()});
    let answer = app
        .put_new_data_with_headers(
            &token,
            &new_data_headers(&correlation_id),
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    answer.assert_refused(431);
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "ACTIVE");
    assert_eq!(
        view["profileVersion"], VERSION,
        "nothing was delivered: {view}"
    );
    assert!(
        view["personalizations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["kind"] == "PERSO"),
        "no re-personalization was queued: {view}"
    );
}

async fn recovered_data_after_the_recovery_time_to_live_is_rejected_with_432(app: TestApp) {
    let (elements, token, correlation_id) = recovering(&app).await;
    app.clock.advance(PERSO_TTL * 2);
    let body = json!({"issuerId": ISSUER, "tokenPersoInfo": elements});
    app.put_new_data_with_headers(
        &token,
        &new_data_headers(&correlation_id),
        serde_json::to_vec(&body).unwrap(),
    )
    .await
    .assert_refused(432);
    assert_eq!(app.get_token(&token).await["profileVersion"], VERSION);
}

async fn a_retry_of_a_recovered_part_is_acknowledged_and_not_applied_twice(app: TestApp) {
    let (elements, token, correlation_id) = recovering(&app).await;
    let headers = new_data_headers(&correlation_id);
    let first =
        serde_json::to_vec(&json!({"issuerId": ISSUER, "tokenPersoInfo": &elements[..2]})).unwrap();
    let second =
        serde_json::to_vec(&json!({"issuerId": ISSUER, "tokenPersoInfo": &elements[2..]})).unwrap();
    app.put_new_data_with_headers(&token, &headers, first.clone())
        .await
        .assert_accepted();
    // The answer was lost: the TSP sends the same part again.
    app.put_new_data_with_headers(&token, &headers, first)
        .await
        .assert_accepted();
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 1);
    assert_eq!(app.elements_held(&token).await, ["cmk_ac", "track2_data"]);
    app.put_new_data_with_headers(&token, &headers, second)
        .await
        .assert_accepted();
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 2);
    let view = app.get_token(&token).await;
    let last = view["personalizations"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["kind"], "REPERSO", "{view}");
    assert_eq!(last["profileVersion"], "v2", "{view}");
}

async fn a_retry_of_the_completing_recovered_call_after_the_device_confirmed_is_acknowledged(
    app: TestApp,
) {
    let (elements, token, correlation_id) = recovering(&app).await;
    let headers = new_data_headers(&correlation_id);
    let body =
        serde_json::to_vec(&json!({"issuerId": ISSUER, "tokenPersoInfo": elements})).unwrap();
    app.put_new_data_with_headers(&token, &headers, body.clone())
        .await
        .assert_accepted();
    app.confirm_personalization(&token).await;
    let before = app.get_token(&token).await;
    assert_eq!(before["profileVersion"], "v2", "{before}");
    // The hub stopped before its answer left; the TSP's retry arrives after the device
    // confirmed, the recovery closed and the recovered data was deleted.
    app.put_new_data_with_headers(&token, &headers, body)
        .await
        .assert_accepted();
    let after = app.get_token(&token).await;
    assert_eq!(
        after["personalizations"], before["personalizations"],
        "nothing delivered again"
    );
    assert_eq!(after["history"], before["history"], "nothing applied again");
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 0);
}

async fn parts_staged_by_an_incomplete_renewal_do_not_count_toward_a_later_recovery(app: TestApp) {
    let elements = app.required_elements();
    let token = app.active_token_with(&elements).await;
    // A renewal stages a new card master key and stops there (the profile needs more).
    app.put_new_data(&token, &data_body(&[app.cmk_ac()]))
        .await
        .assert_accepted();
    assert_eq!(app.elements_held(&token).await, ["cmk_ac"]);
    let correlation_id = app.start_recovery(&token, "v2").await;
    // The recovery sends the rest as personalized: the renewal's key must not complete it.
    let rest: Vec<_> = elements
        .iter()
        .filter(|e| e["name"] != "cmk_ac")
        .cloned()
        .collect();
    app.put_new_data_with_headers(
        &token,
        &new_data_headers(&correlation_id),
        serde_json::to_vec(&data_body(&rest)).unwrap(),
    )
    .await
    .assert_accepted();
    let view = app.get_token(&token).await;
    assert_eq!(
        names(&view["elementsHeld"]),
        ["psn", "track2_data"],
        "{view}"
    );
    assert!(
        view["personalizations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["kind"] == "PERSO"),
        "nothing recovered was delivered: {view}"
    );
    // Sent under the recovery, the renewal's key is compared, and fails it.
    let renewed = app.cmk_ac();
    app.put_new_data_with_headers(
        &token,
        &new_data_headers(&correlation_id),
        serde_json::to_vec(&data_body(&[renewed])).unwrap(),
    )
    .await
    .assert_refused(431);
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 0);
    assert_eq!(app.hub.store.data_key(&token).await.unwrap(), None);
}
