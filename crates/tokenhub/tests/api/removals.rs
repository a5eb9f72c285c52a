//! DELETED tokens (`POST /trapi/v2.0/tokens/{tokenId}/updates` with `tokenState: DELETED`): nothing
//! leaves DELETED (432), a token deleted before its device has it is withdrawn, and the device is
//! told to remove a deleted token until it confirms.

use crate::support::*;
use serde_json::{json, Value};

hub_tests!(
    a_newer_update_that_would_change_a_deleted_token_is_rejected_with_432,
    the_same_deleted_update_repeated_is_acknowledged,
    active_or_suspended_on_a_token_not_yet_personalized_is_rejected_with_432,
    deleted_on_a_pending_data_token_is_accepted_and_the_token_is_deleted,
    deleted_on_a_personalizing_token_withdraws_its_personalization,
    a_deleted_token_is_listed_for_removal_until_the_device_confirms,
    a_removal_confirmation_for_a_token_that_is_not_a_deleted_token_of_the_device_is_404,
    a_waiting_long_poll_returns_the_removal,
);

async fn a_newer_update_that_would_change_a_deleted_token_is_rejected_with_432(app: TestApp) {
    let token = app.active_token().await;
    app.post_update(&token, &update_state(&at(10), "DELETED"))
        .await
        .assert_accepted();
    assert_eq!(app.token_state(&token).await, "DELETED");
    let with = |ms: i64, field: &str, value: &str| {
        let mut b = update(&at(ms));
        b[field] = json!(value);
        b
    };
    for body in [
        update_state(&at(11), "ACTIVE"),
        update_state(&at(12), "SUSPENDED"),
        with(13, "tokenExpiryDate", "0131"),
        with(14, "tokenLastDigits", "99"),
        with(15, "cardLastDigits", "99"),
        with(16, "cardExpiryDate", "0131"),
        with(17, "cardArtId", "art-3"),
    ] {
        app.post_update(&token, &body).await.assert_refused(432);
    }
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "DELETED");
    assert_eq!(view["tokenInfo"]["exp"], TSP_EXP);
    assert_eq!(applied_count(&app, &token).await, 1);
}

async fn the_same_deleted_update_repeated_is_acknowledged(app: TestApp) {
    let token = app.active_token().await;
    let deleted = update_state(&at(10), "DELETED");
    let cid = correlation_id();
    app.post_update_as(&token, &cid, &deleted)
        .await
        .assert_accepted();
    // The TSP's retry (same call), the same news under another id, newer news of the same
    // deletion, an update that changes nothing, and an older one: all acknowledged.
    app.post_update_as(&token, &cid, &deleted)
        .await
        .assert_accepted();
    app.post_update(&token, &deleted).await.assert_accepted();
    app.post_update(&token, &update_state(&at(20), "DELETED"))
        .await
        .assert_accepted();
    app.post_update(&token, &update(&at(21)))
        .await
        .assert_accepted();
    app.post_update(&token, &update_state(&at(5), "ACTIVE"))
        .await
        .assert_accepted();
    assert_eq!(app.token_state(&token).await, "DELETED");
    assert_eq!(applied_count(&app, &token).await, 1);
}

async fn active_or_suspended_on_a_token_not_yet_personalized_is_rejected_with_432(app: TestApp) {
    let pending = app.pending_token().await;
    let personalizing = app.pending_token().await;
    app.complete_data(&personalizing).await;
    for (token, state) in [
        (&pending, "PENDING_DATA"),
        (&personalizing, "PERSONALIZING"),
    ] {
        for to in ["ACTIVE", "SUSPENDED"] {
            let answer = app.post_update(token, &update_state(&at(0), to)).await;
            answer.assert_refused(432);
            assert!(answer.message().contains(state), "{answer:?}");
        }
        assert_eq!(app.token_state(token).await, state);
    }
    // Without a state, an update applies to a token not yet personalized.
    let mut body = update(&at(0));
    body["tokenExpiryDate"] = json!("0131");
    app.post_update(&pending, &body).await.assert_accepted();
    let view = app.get_token(&pending).await;
    assert_eq!(view["state"], "PENDING_DATA");
    assert_eq!(view["tokenInfo"]["exp"], "0131");
}

async fn deleted_on_a_pending_data_token_is_accepted_and_the_token_is_deleted(app: TestApp) {
    let token = app.pending_token().await;
    app.put_data(&token, &data_body(&[app.cmk_ac()]))
        .await
        .assert_accepted();
    assert_eq!(app.elements_held(&token).await, ["cmk_ac"]);
    app.post_update(&token, &update_state(&at(0), "DELETED"))
        .await
        .assert_accepted();
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "DELETED");
    assert_eq!(names(&view["elementsHeld"]), Vec::<String>::new());
    // The rest of the data is refused now.
    app.put_data(&token, &data_body(&[app.track2_data(), psn()]))
        .await
        .assert_refused(432);
}

async fn deleted_on_a_personalizing_token_withdraws_its_personalization(app: TestApp) {
    let token = app.pending_token().await;
    app.complete_data(&token).await;
    // The device took the profile before the deletion...
    let work = app.device_work(DEVICE).await;
    let personalization = work
        .iter()
        .find(|w| w["action"] == "INSTALL" && w["tokenId"] == token.as_str())
        .unwrap_or_else(|| panic!("the profile is offered: {work:?}"))["personalizationId"]
        .as_str()
        .unwrap()
        .to_string();
    app.post_update(&token, &update_state(&at(0), "DELETED"))
        .await
        .assert_accepted();
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "DELETED");
    assert_eq!(view["personalizations"][0]["state"], "FAILED", "{view}");
    let work = app.device_work(DEVICE).await;
    assert!(
        !work.iter().any(|w| w["action"] == "INSTALL"),
        "the profile of a deleted token is not offered: {work:?}"
    );
    assert_eq!(app.removals(DEVICE).await, [token.as_str()]);
    // ...and its SUCCESS after it does not bring the token back.
    let r = app
        .wallet
        .post(app.url(&format!(
            "/wallet/v1/personalizations/{personalization}/result"
        )))
        .json(&json!({"status": "SUCCESS"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(app.token_state(&token).await, "DELETED");
}

async fn a_deleted_token_is_listed_for_removal_until_the_device_confirms(app: TestApp) {
    let token = app.active_token().await;
    let other = app.active_token().await;
    assert_eq!(app.removals(DEVICE).await, Vec::<String>::new());
    app.post_update(&token, &update_state(&at(0), "DELETED"))
        .await
        .assert_accepted();
    assert_eq!(app.removals(DEVICE).await, [token.as_str()]);
    assert_eq!(
        app.removals(DEVICE).await,
        [token.as_str()],
        "listed again until confirmed"
    );
    assert_eq!(app.confirm_removed(DEVICE, &token).await, 204);
    assert_eq!(app.removals(DEVICE).await, Vec::<String>::new());
    assert_eq!(
        app.confirm_removed(DEVICE, &token).await,
        204,
        "a repeated confirmation is harmless"
    );
    assert_eq!(app.removals(DEVICE).await, Vec::<String>::new());
    assert_eq!(app.token_state(&token).await, "DELETED");
    assert_eq!(app.token_state(&other).await, "ACTIVE");
}

async fn a_removal_confirmation_for_a_token_that_is_not_a_deleted_token_of_the_device_is_404(
    app: TestApp,
) {
    let active = app.active_token().await;
    let deleted = app.active_token().await;
    app.post_update(&deleted, &update_state(&at(0), "DELETED"))
        .await
        .assert_accepted();
    let r = app
        .register_device(&json!({"deviceId": "device-0002", "publicKey": device_public_key()}))
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(app.confirm_removed(DEVICE, &active).await, 404);
    assert_eq!(app.confirm_removed(DEVICE, "NO-SUCH-TOKEN").await, 404);
    assert_eq!(app.confirm_removed("device-0002", &deleted).await, 404);
    assert_eq!(
        app.removals(DEVICE).await,
        [deleted.as_str()],
        "still listed for its own device"
    );
    assert_eq!(app.removals("device-0002").await, Vec::<String>::new());
}

async fn a_waiting_long_poll_returns_the_removal(app: TestApp) {
    let token = app.active_token().await;
    let url = app.url(&format!(
        "/wallet/v1/devices/{DEVICE}/personalizations?waitSeconds=10"
    ));
    let client = app.wallet.clone();
    let poll = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let work: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        (work, started.elapsed())
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    app.post_update(&token, &update_state(&at(0), "DELETED"))
        .await
        .assert_accepted();
    let (work, elapsed) = poll.await.unwrap();
    assert_eq!(work, json!([{"action": "REMOVE", "tokenId": token}]));
    assert!(elapsed < std::time::Duration::from_secs(5), "{elapsed:?}");
}
