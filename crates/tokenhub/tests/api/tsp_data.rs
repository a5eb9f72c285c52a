//! `PUT /trapi/v2.0/tokens/{tokenId}/data`: partial data merged until every required element is
//! there, then the token is `PERSONALIZING`; and the codes that depend on the token (113, 119, 321,
//! 322, 432, 911).

use crate::support::*;
use serde_json::json;
use tokenhub::domain::TokenState;

hub_tests!(
    complete_data_in_one_call_is_accepted_and_the_token_is_personalizing,
    partial_data_is_merged_and_the_token_waits_until_every_required_element_is_there,
    optional_elements_are_not_needed_to_complete_the_data,
    optional_elements_alone_do_not_complete_the_data,
    an_empty_element_list_is_accepted_and_changes_nothing,
    a_later_call_may_repeat_an_element,
    element_names_are_case_insensitive,
    a_repeat_of_the_completing_call_with_the_same_correlation_id_is_acknowledged_again,
    a_repeat_of_a_partial_call_is_acknowledged_and_not_applied_twice,
    a_repeat_of_the_completing_call_after_the_device_confirmed_is_still_acknowledged,
    a_repeat_with_the_same_names_in_another_order_is_acknowledged,
    another_call_under_the_same_correlation_id_with_other_names_is_applied,
    a_retry_after_the_token_was_deleted_is_acknowledged,
    data_while_the_token_is_personalizing_is_rejected_with_321,
    data_after_the_time_to_live_is_rejected_with_322,
    data_one_millisecond_after_the_time_to_live_is_rejected_with_322,
    data_at_the_last_moment_of_the_time_to_live_is_accepted,
    data_for_an_unknown_token_is_rejected_with_119,
    data_from_an_unregistered_issuer_is_rejected_with_113,
    data_from_a_registered_issuer_that_is_not_the_tokens_is_rejected_with_113,
    data_on_an_active_token_is_rejected_with_432,
    data_on_a_suspended_token_is_rejected_with_432,
    data_on_a_deleted_token_is_rejected_with_432,
    data_on_a_deleted_token_is_rejected_with_432_even_after_the_time_to_live,
    a_different_call_after_completion_is_rejected_with_321_even_if_its_body_is_the_same,
    data_for_a_token_whose_profile_version_is_not_defined_is_rejected_with_911,
    data_that_completes_a_profile_that_cannot_be_built_is_rejected_with_911,
    a_profile_that_cannot_be_built_when_the_device_asks_fails_the_token_and_the_tsp_is_told,
    a_result_for_a_personalization_never_offered_is_409_and_changes_nothing,
    concurrent_partial_calls_lose_no_element,
    of_concurrent_completing_calls_exactly_one_is_accepted_and_the_others_get_321,
);

async fn complete_data_in_one_call_is_accepted_and_the_token_is_personalizing(app: TestApp) {
    let token = app.pending_token().await;
    let cid = correlation_id();
    app.put_data_as(&token, &cid, &data_body(&app.required_elements()))
        .await
        .assert_accepted();
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "PERSONALIZING");
    assert_eq!(
        names(&view["elementsHeld"]),
        ["cmk_ac", "psn", "track2_data"]
    );
    assert_eq!(view["issuerId"], ISSUER);
    assert_eq!(view["productId"], PRODUCT);
    assert_eq!(view["profileVersion"], VERSION);
    assert_eq!(
        view["tokenInfo"],
        json!({"exp": TSP_EXP, "last4": TSP_LAST4})
    );
    let history = view["history"].as_array().unwrap();
    let last = history.last().unwrap();
    assert_eq!(last["correlationId"], cid.as_str());
    assert!(
        last["event"].as_str().unwrap().contains("PERSONALIZING"),
        "{history:?}"
    );
}

async fn partial_data_is_merged_and_the_token_waits_until_every_required_element_is_there(
    app: TestApp,
) {
    let token = app.pending_token().await;
    app.put_data(&token, &data_body(&[app.cmk_ac()]))
        .await
        .assert_accepted();
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "PENDING_DATA");
    assert_eq!(names(&view["elementsHeld"]), ["cmk_ac"]);

    app.put_data(&token, &data_body(&[psn(), clear("par", "PAR0123456789")]))
        .await
        .assert_accepted();
    let view = app.get_token(&token).await;
    assert_eq!(
        view["state"], "PENDING_DATA",
        "track2_data is still missing"
    );
    assert_eq!(names(&view["elementsHeld"]), ["cmk_ac", "par", "psn"]);

    app.put_data(&token, &data_body(&[app.track2_data()]))
        .await
        .assert_accepted();
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "PERSONALIZING");
    assert_eq!(
        names(&view["elementsHeld"]),
        ["cmk_ac", "par", "psn", "track2_data"]
    );
    // One line per accepted call.
    let received = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"].as_str().unwrap().starts_with("data received"))
        .count();
    assert_eq!(received, 3, "{view}");
}

async fn optional_elements_are_not_needed_to_complete_the_data(app: TestApp) {
    let token = app.pending_token().await;
    app.put_data(&token, &data_body(&[app.cmk_ac(), app.track2_data()]))
        .await
        .assert_accepted();
    assert_eq!(app.token_state(&token).await, "PENDING_DATA");
    app.put_data(&token, &data_body(&[psn()]))
        .await
        .assert_accepted();
    assert_eq!(app.token_state(&token).await, "PERSONALIZING");
    assert!(!app.elements_held(&token).await.contains(&"par".to_string()));
}

async fn optional_elements_alone_do_not_complete_the_data(app: TestApp) {
    let token = app.pending_token().await;
    app.put_data(
        &token,
        &data_body(&[clear("par", "PAR1"), clear("opt001", "1")]),
    )
    .await
    .assert_accepted();
    assert_eq!(app.token_state(&token).await, "PENDING_DATA");
}

async fn an_empty_element_list_is_accepted_and_changes_nothing(app: TestApp) {
    let token = app.pending_token().await;
    app.put_data(&token, &data_body(&[]))
        .await
        .assert_accepted();
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "PENDING_DATA");
    assert_eq!(names(&view["elementsHeld"]), Vec::<String>::new());
}

async fn a_later_call_may_repeat_an_element(app: TestApp) {
    let token = app.pending_token().await;
    app.put_data(&token, &data_body(&[app.cmk_ac(), psn()]))
        .await
        .assert_accepted();
    app.put_data(&token, &data_body(&[app.cmk_ac(), clear("psn", "02")]))
        .await
        .assert_accepted();
    assert_eq!(app.token_state(&token).await, "PENDING_DATA");
    assert_eq!(app.elements_held(&token).await, ["cmk_ac", "psn"]);
    app.put_data(&token, &data_body(&[app.track2_data(), psn()]))
        .await
        .assert_accepted();
    assert_eq!(app.token_state(&token).await, "PERSONALIZING");
}

async fn element_names_are_case_insensitive(app: TestApp) {
    let token = app.pending_token().await;
    let mut cmk = app.cmk_ac();
    cmk["name"] = json!("CMK_AC");
    let mut t2 = app.track2_data();
    t2["name"] = json!("Track2_Data");
    app.put_data(&token, &data_body(&[cmk, t2, clear("PSN", "01")]))
        .await
        .assert_accepted();
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "PERSONALIZING");
    assert_eq!(
        names(&view["elementsHeld"]),
        ["cmk_ac", "psn", "track2_data"]
    );
}

async fn a_repeat_of_the_completing_call_with_the_same_correlation_id_is_acknowledged_again(
    app: TestApp,
) {
    let token = app.pending_token().await;
    let body = data_body(&app.required_elements());
    let cid = correlation_id();
    app.put_data_as(&token, &cid, &body).await.assert_accepted();
    let before = app.get_token(&token).await;
    // The TSP did not get the first answer and sends the same call again.
    let again = app.put_data_as(&token, &cid, &body).await;
    again.assert_accepted();
    assert_eq!(again.correlation_id.as_deref(), Some(cid.as_str()));
    let after = app.get_token(&token).await;
    assert_eq!(after["state"], "PERSONALIZING");
    assert_eq!(
        after["history"], before["history"],
        "a repeat is not applied twice"
    );
    assert_eq!(
        app.hub.store.data_part_count(&token).await.unwrap(),
        1,
        "a repeat stores nothing"
    );
}

async fn a_repeat_of_the_completing_call_after_the_device_confirmed_is_still_acknowledged(
    app: TestApp,
) {
    let token = app.pending_token().await;
    let body = data_body(&app.required_elements());
    let cid = correlation_id();
    app.put_data_as(&token, &cid, &body).await.assert_accepted();
    app.confirm_personalization(&token).await;
    // The TSP never got the first answer; its retry arrives after the device confirmed (and the
    // hub deleted the data).
    let again = app.put_data_as(&token, &cid, &body).await;
    again.assert_accepted();
    assert_eq!(again.correlation_id.as_deref(), Some(cid.as_str()));
    assert_eq!(app.token_state(&token).await, "ACTIVE");
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 0);
    // A new call is still refused.
    app.put_data(&token, &body).await.assert_refused(432);
}

async fn a_repeat_of_a_partial_call_is_acknowledged_and_not_applied_twice(app: TestApp) {
    let token = app.pending_token().await;
    let body = data_body(&[app.cmk_ac()]);
    let cid = correlation_id();
    app.put_data_as(&token, &cid, &body).await.assert_accepted();
    app.put_data_as(&token, &cid, &body).await.assert_accepted();
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 1);
    assert_eq!(
        app.get_token(&token).await["history"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

async fn data_while_the_token_is_personalizing_is_rejected_with_321(app: TestApp) {
    let token = app.pending_token().await;
    app.complete_data(&token).await;
    let answer = app
        .put_data(&token, &data_body(&app.required_elements()))
        .await;
    answer.assert_refused(321);
    let answer = app
        .put_data(&token, &data_body(&[clear("par", "PAR1")]))
        .await;
    answer.assert_refused(321);
    assert_eq!(app.token_state(&token).await, "PERSONALIZING");
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 1);
}

async fn data_after_the_time_to_live_is_rejected_with_322(app: TestApp) {
    let token = app.pending_token().await;
    app.put_data(&token, &data_body(&[app.cmk_ac()]))
        .await
        .assert_accepted();
    app.clock
        .advance(PERSO_TTL + std::time::Duration::from_secs(1));
    app.put_data(&token, &data_body(&[app.track2_data(), psn()]))
        .await
        .assert_refused(322);
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "PENDING_DATA");
    assert_eq!(names(&view["elementsHeld"]), ["cmk_ac"]);
}

async fn data_one_millisecond_after_the_time_to_live_is_rejected_with_322(app: TestApp) {
    let token = app.pending_token().await;
    app.clock
        .advance(PERSO_TTL + std::time::Duration::from_millis(1));
    app.put_data(&token, &data_body(&app.required_elements()))
        .await
        .assert_refused(322);
}

async fn data_at_the_last_moment_of_the_time_to_live_is_accepted(app: TestApp) {
    let token = app.pending_token().await;
    app.clock.advance(PERSO_TTL);
    app.put_data(&token, &data_body(&app.required_elements()))
        .await
        .assert_accepted();
    assert_eq!(app.token_state(&token).await, "PERSONALIZING");
}

async fn data_for_an_unknown_token_is_rejected_with_119(app: TestApp) {
    app.put_data("NO-SUCH-TOKEN", &data_body(&app.required_elements()))
        .await
        .assert_refused(119);
}

async fn data_from_an_unregistered_issuer_is_rejected_with_113(app: TestApp) {
    let token = app.pending_token().await;
    let mut body = data_body(&app.required_elements());
    body["issuerId"] = json!("UNKNOWN001");
    app.put_data(&token, &body).await.assert_refused(113);
    assert_eq!(app.token_state(&token).await, "PENDING_DATA");
    assert_eq!(app.elements_held(&token).await, Vec::<String>::new());
}

async fn data_from_a_registered_issuer_that_is_not_the_tokens_is_rejected_with_113(app: TestApp) {
    let r = app
        .put_issuer(OTHER_ISSUER, "Second Test Bank", TSP_ID)
        .await;
    assert_eq!(r.status(), 200);
    let token = app.pending_token().await;
    let mut body = data_body(&app.required_elements());
    body["issuerId"] = json!(OTHER_ISSUER);
    app.put_data(&token, &body).await.assert_refused(113);
    assert_eq!(app.token_state(&token).await, "PENDING_DATA");
}

async fn data_on_an_active_token_is_rejected_with_432(app: TestApp) {
    let token = app.active_token().await;
    app.put_data(&token, &data_body(&app.required_elements()))
        .await
        .assert_refused(432);
    assert_eq!(app.token_state(&token).await, "ACTIVE");
}

async fn data_on_a_suspended_token_is_rejected_with_432(app: TestApp) {
    let token = app.active_token().await;
    app.set_token_state(&token, TokenState::Suspended).await;
    app.put_data(&token, &data_body(&[psn()]))
        .await
        .assert_refused(432);
}

async fn data_on_a_deleted_token_is_rejected_with_432(app: TestApp) {
    let token = app.pending_token().await;
    app.set_token_state(&token, TokenState::Deleted).await;
    app.put_data(&token, &data_body(&app.required_elements()))
        .await
        .assert_refused(432);
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "DELETED");
    assert_eq!(names(&view["elementsHeld"]), Vec::<String>::new());
}

async fn data_on_a_deleted_token_is_rejected_with_432_even_after_the_time_to_live(app: TestApp) {
    let token = app.pending_token().await;
    app.set_token_state(&token, TokenState::Deleted).await;
    app.clock.advance(PERSO_TTL * 2);
    app.put_data(&token, &data_body(&[psn()]))
        .await
        .assert_refused(432);
}

async fn a_different_call_after_completion_is_rejected_with_321_even_if_its_body_is_the_same(
    app: TestApp,
) {
    let token = app.pending_token().await;
    let body = data_body(&app.required_elements());
    app.put_data(&token, &body).await.assert_accepted();
    app.put_data(&token, &body).await.assert_refused(321);
}

async fn data_that_completes_a_profile_that_cannot_be_built_is_rejected_with_911(app: TestApp) {
    // A product whose one element goes, as it is, into DGI 0202 and has no maxLength: a value of
    // 70,000 characters makes a DGI longer than the 65,535 bytes a DGI can hold.
    let definition = json!({
        "dataElements": [{"name": "issuer_note", "required": true, "format": "text", "dgi": "0202"}],
        "template": [{"dgi": "0101", "data": "9F0702FF00"}]
    });
    let r = app
        .put_profile_version(ISSUER, "wide", "v1", &definition)
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(app.deploy(ISSUER, "wide", "v1").await.status(), 200);
    let mut body = digitization_body();
    body["productId"] = json!("wide");
    let r = app.post_digitization(&body).await;
    assert_eq!(r.status(), 201);
    let token = r.json::<serde_json::Value>().await.unwrap()["tokenId"]
        .as_str()
        .unwrap()
        .to_string();

    let answer = app
        .put_data(
            &token,
            &data_body(&[clear("issuer_note", &"n".repeat(70_000))]),
        )
        .await;
    answer.assert_refused(911);
    // Nothing of the call is kept: the TSP may send a value that fits.
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "PENDING_DATA");
    assert_eq!(names(&view["elementsHeld"]), Vec::<String>::new());
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 0);
    app.put_data(
        &token,
        &data_body(&[clear("issuer_note", &"n".repeat(65_535))]),
    )
    .await
    .assert_accepted();
    assert_eq!(app.token_state(&token).await, "PERSONALIZING");
}

async fn data_for_a_token_whose_profile_version_is_not_defined_is_rejected_with_911(app: TestApp) {
    // Not reachable through the APIs: profile versions cannot be deleted and a token always
    // gets its product's deployed version. The fault is injected in the store.
    let token = app.pending_token().await;
    app.execute_sql(&format!(
        "UPDATE tokens SET profile_version = 'not-defined' WHERE token_id = '{token}'"
    ))
    .await;
    app.put_data(&token, &data_body(&app.required_elements()))
        .await
        .assert_refused(911);
    assert_eq!(app.token_state(&token).await, "PENDING_DATA");
}

async fn a_profile_that_cannot_be_built_when_the_device_asks_fails_the_token_and_the_tsp_is_told(
    app: TestApp,
) {
    // The profile is built when the device first asks for it. Not reachable through the APIs
    // (profile versions cannot be deleted): the fault is injected in the store.
    let token = app.pending_token().await;
    app.complete_data(&token).await;
    app.execute_sql(&format!(
        "UPDATE personalizations SET profile_version = 'not-defined' WHERE token_id = '{token}'"
    ))
    .await;
    assert_eq!(app.device_offers().await, json!([]), "nothing to install");
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "DELETED", "{view}");
    let reason = view["failureReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("profile version not-defined is not defined"),
        "{reason}"
    );
    let personalizations = app.hub.store.personalizations_of(&token).await.unwrap();
    assert_eq!(personalizations.len(), 1);
    assert!(personalizations[0].enc.is_none() && personalizations[0].ciphertext.is_none());
    // The TSP is told the token is gone.
    let path = format!("/tsp/trapi/v2.0/tokens/{token}/state");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !app
        .tsp
        .other_calls()
        .iter()
        .any(|c| c.method == "PUT" && c.path == path)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no updateTokenState for {token}: {:?}",
            app.tsp.other_calls()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn a_result_for_a_personalization_never_offered_is_409_and_changes_nothing(app: TestApp) {
    let token = app.pending_token().await;
    app.complete_data(&token).await;
    let queued = app.hub.store.personalizations_of(&token).await.unwrap();
    let id = &queued[0].personalization_id;
    for status in [
        json!({"status": "SUCCESS"}),
        json!({"status": "FAILURE", "reason": "x"}),
    ] {
        let r = app
            .wallet
            .post(app.url(&format!("/wallet/v1/personalizations/{id}/result")))
            .json(&status)
            .send()
            .await
            .expect("the hub answers");
        assert_eq!(r.status(), 409, "{status}");
    }
    assert_eq!(app.token_state(&token).await, "PERSONALIZING");
    app.confirm_personalization(&token).await;
    assert_eq!(app.token_state(&token).await, "ACTIVE");
}

async fn concurrent_partial_calls_lose_no_element(app: TestApp) {
    let token = app.pending_token().await;
    let calls = (1..=24).map(|i| {
        let body = data_body(&[clear(&optional_name(i), "1")]);
        let (app, token) = (&app, &token);
        async move { app.put_data(token, &body).await }
    });
    for answer in futures::future::join_all(calls).await {
        answer.assert_accepted();
    }
    let held = app.elements_held(&token).await;
    assert_eq!(held.len(), 24, "{held:?}");
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 24);
    assert_eq!(
        app.get_token(&token).await["history"]
            .as_array()
            .unwrap()
            .len(),
        25
    );
    app.complete_data(&token).await;
}

async fn of_concurrent_completing_calls_exactly_one_is_accepted_and_the_others_get_321(
    app: TestApp,
) {
    let token = app.pending_token().await;
    let calls = (0..8).map(|_| {
        let body = data_body(&app.required_elements());
        let (app, token) = (&app, &token);
        async move { app.put_data(token, &body).await }
    });
    let answers = futures::future::join_all(calls).await;
    let accepted = answers.iter().filter(|a| a.status == 204).count();
    assert_eq!(accepted, 1, "{answers:?}");
    for a in answers.iter().filter(|a| a.status != 204) {
        a.assert_refused(321);
    }
    assert_eq!(app.token_state(&token).await, "PERSONALIZING");
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 1);
}

async fn a_repeat_with_the_same_names_in_another_order_is_acknowledged(app: TestApp) {
    let token = app.pending_token().await;
    let cid = correlation_id();
    app.put_data_as(&token, &cid, &data_body(&[app.cmk_ac(), psn()]))
        .await
        .assert_accepted();
    app.put_data_as(&token, &cid, &data_body(&[psn(), app.cmk_ac()]))
        .await
        .assert_accepted();
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 1);
    assert_eq!(
        app.get_token(&token).await["history"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "the same call is not applied twice"
    );
}

async fn another_call_under_the_same_correlation_id_with_other_names_is_applied(app: TestApp) {
    let token = app.pending_token().await;
    let cid = correlation_id();
    app.put_data_as(&token, &cid, &data_body(&[app.cmk_ac()]))
        .await
        .assert_accepted();
    app.put_data_as(&token, &cid, &data_body(&[psn()]))
        .await
        .assert_accepted();
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 2);
    assert_eq!(app.elements_held(&token).await, ["cmk_ac", "psn"]);
}

async fn a_retry_after_the_token_was_deleted_is_acknowledged(app: TestApp) {
    let token = app.pending_token().await;
    let body = data_body(&app.required_elements());
    let cid = correlation_id();
    app.put_data_as(&token, &cid, &body).await.assert_accepted();
    app.confirm_personalization(&token).await;
    app.post_update(&token, &update_state(&at(10), "DELETED"))
        .await
        .assert_accepted();
    // The call was applied before the deletion: its retry is acknowledged and changes nothing.
    app.put_data_as(&token, &cid, &body).await.assert_accepted();
    assert_eq!(app.token_state(&token).await, "DELETED");
    // A call that was never applied is refused.
    app.put_data_as(&token, &correlation_id(), &body)
        .await
        .assert_refused(432);
}
