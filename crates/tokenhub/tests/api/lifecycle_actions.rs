//! The issuer's lifecycle actions on the admin API (`/admin/v1/tokens/{tokenId}/…`): suspend,
//! resume, delete, the `updateTokenState` each sends the TSP, and the bearer token they need.

use crate::support::*;
use serde_json::json;

hub_tests!(
    config = requestors_allowed;
    suspending_an_active_token_is_200_and_the_tsp_is_told,
    resuming_a_suspended_token_makes_it_active_and_the_tsp_is_told,
    repeating_an_action_is_200_and_changes_nothing,
    suspend_or_resume_of_a_token_that_is_not_active_or_suspended_is_409,
    deleting_a_token_is_final_and_its_device_is_told_to_remove_it,
    a_token_in_any_state_can_be_deleted,
    an_action_on_an_unknown_token_is_404,
    a_reason_of_64_characters_is_accepted_and_an_empty_or_longer_one_is_400,
    the_lifecycle_admin_api_needs_the_bearer_token,
);

async fn suspending_an_active_token_is_200_and_the_tsp_is_told(app: TestApp) {
    let token = app.active_token_from(json!({})).await;
    let answer = app
        .token_action(
            &token,
            "suspend",
            Some(&json!({"reason": "card reported lost"})),
        )
        .await;
    let v = answer.expect(200).clone();
    assert_eq!(v["tokenId"], token.as_str());
    assert_eq!(v["state"], "SUSPENDED");
    let ts = v["lastUpdateTimestamp"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{v}");
    assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
    assert_eq!(app.token_state(&token).await, "SUSPENDED");

    let (event, cid) = last_event(&app, &token).await;
    assert_eq!(
        event,
        "issuer suspend: state SUSPENDED (card reported lost)"
    );
    let calls = app.tsp_calls_to("PUT", &state_path(&token), 2).await;
    assert_eq!(calls[0].body["state"], "ACTIVE", "after personalization");
    assert_eq!(
        calls[1].body,
        json!({"issuerId": ISSUER, "state": "SUSPENDED", "reason": "card reported lost"})
    );
    assert_eq!(calls[1].correlation_id.as_deref(), Some(cid.as_str()));
}

async fn resuming_a_suspended_token_makes_it_active_and_the_tsp_is_told(app: TestApp) {
    let token = app.active_token_from(json!({})).await;
    let suspended = app.token_action(&token, "suspend", None).await;
    let suspended_at = suspended.expect(200)["lastUpdateTimestamp"].clone();
    let resumed = app.token_action(&token, "resume", None).await;
    let v = resumed.expect(200);
    assert_eq!(v["state"], "ACTIVE");
    // The hub's clock stands still here: each change is stamped newer all the same.
    let (a, b) = (
        chrono::DateTime::parse_from_rfc3339(suspended_at.as_str().unwrap()).unwrap(),
        chrono::DateTime::parse_from_rfc3339(v["lastUpdateTimestamp"].as_str().unwrap()).unwrap(),
    );
    assert!(a < b, "{a} < {b}");
    assert_eq!(app.token_state(&token).await, "ACTIVE");
    let calls = app.tsp_calls_to("PUT", &state_path(&token), 3).await;
    assert_eq!(
        calls[1].body,
        json!({"issuerId": ISSUER, "state": "SUSPENDED"})
    );
    assert_eq!(
        calls[2].body,
        json!({"issuerId": ISSUER, "state": "ACTIVE"})
    );
}

async fn repeating_an_action_is_200_and_changes_nothing(app: TestApp) {
    let token = app.active_token_from(json!({})).await;
    for action in ["suspend", "resume", "delete"] {
        let first = app
            .token_action(&token, action, None)
            .await
            .expect(200)
            .clone();
        let history = app.history_of(&token).await;
        let again = app
            .token_action(&token, action, None)
            .await
            .expect(200)
            .clone();
        assert_eq!(again, first, "{action} repeated");
        assert_eq!(app.history_of(&token).await, history, "{action} repeated");
    }
    assert_eq!(app.token_state(&token).await, "DELETED");
    // The calls of one token go out in order: once the delete's is there, every earlier one is.
    let (_, delete_cid) = last_event(&app, &token).await;
    let calls = eventually("the delete's updateTokenState", || {
        let (path, cid) = (state_path(&token), delete_cid.clone());
        let app = &app;
        async move {
            let calls = app.tsp.other_calls();
            let calls: Vec<TspCall> = calls.into_iter().filter(|c| c.path == path).collect();
            calls
                .iter()
                .any(|c| c.correlation_id.as_deref() == Some(cid.as_str()))
                .then_some(calls)
        }
    })
    .await;
    let states: Vec<&str> = calls
        .iter()
        .map(|c| c.body["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["ACTIVE", "SUSPENDED", "ACTIVE", "DELETED"]);
}

async fn suspend_or_resume_of_a_token_that_is_not_active_or_suspended_is_409(app: TestApp) {
    let pending = app.digitize_with(json!({})).await;
    let personalizing = app.digitize_with(json!({})).await;
    app.complete_data(&personalizing).await;
    let deleted = app.active_token_from(json!({})).await;
    app.token_action(&deleted, "delete", None).await.expect(200);
    for (token, state) in [
        (&pending, "PENDING_DATA"),
        (&personalizing, "PERSONALIZING"),
        (&deleted, "DELETED"),
    ] {
        for action in ["suspend", "resume"] {
            let answer = app.token_action(token, action, None).await;
            assert_eq!(answer.expect(409)["error"], "CONFLICT", "{action} {state}");
        }
        assert_eq!(app.token_state(token).await, state);
    }
}

async fn deleting_a_token_is_final_and_its_device_is_told_to_remove_it(app: TestApp) {
    let token = app.active_token_from(json!({})).await;
    let answer = app
        .token_action(&token, "delete", Some(&json!({"reason": "account closed"})))
        .await;
    assert_eq!(answer.expect(200)["state"], "DELETED");
    let calls = app.tsp_calls_to("PUT", &state_path(&token), 2).await;
    assert_eq!(
        calls[1].body,
        json!({"issuerId": ISSUER, "state": "DELETED", "reason": "account closed"})
    );
    assert_eq!(app.removals(DEVICE).await, [token.as_str()]);
    assert_eq!(app.confirm_removed(DEVICE, &token).await, 204);
    assert_eq!(app.removals(DEVICE).await, Vec::<String>::new());
    // Nothing brings it back.
    app.token_action(&token, "resume", None).await.expect(409);
    app.post_update(&token, &update_state(&at(0), "ACTIVE"))
        .await
        .assert_refused(432);
    assert_eq!(app.token_state(&token).await, "DELETED");
}

async fn a_token_in_any_state_can_be_deleted(app: TestApp) {
    let pending = app.digitize_with(json!({})).await;
    let personalizing = app.digitize_with(json!({})).await;
    app.complete_data(&personalizing).await;
    for token in [&pending, &personalizing] {
        let answer = app.token_action(token, "delete", None).await;
        assert_eq!(answer.expect(200)["state"], "DELETED");
        let view = app.get_token(token).await;
        assert_eq!(view["state"], "DELETED");
        assert_eq!(view["elementsHeld"], json!([]), "{view}");
        let (_, cid) = last_event(&app, token).await;
        let calls = app.tsp_calls_to("PUT", &state_path(token), 1).await;
        assert_eq!(
            calls[0].body,
            json!({"issuerId": ISSUER, "state": "DELETED"})
        );
        assert_eq!(calls[0].correlation_id.as_deref(), Some(cid.as_str()));
    }
    let view = app.get_token(&personalizing).await;
    assert_eq!(view["personalizations"][0]["state"], "FAILED", "{view}");
    let work = app.device_work(DEVICE).await;
    assert!(
        !work.iter().any(|w| w["action"] == "INSTALL"),
        "the profile of a deleted token is not offered: {work:?}"
    );
}

async fn an_action_on_an_unknown_token_is_404(app: TestApp) {
    for action in ["suspend", "resume", "delete"] {
        let answer = app.token_action("NO-SUCH-TOKEN", action, None).await;
        assert_eq!(answer.expect(404)["error"], "NOT_FOUND", "{action}");
        app.token_action(&"T".repeat(49), action, None)
            .await
            .expect(400);
    }
}

async fn a_reason_of_64_characters_is_accepted_and_an_empty_or_longer_one_is_400(app: TestApp) {
    let token = app.active_token_from(json!({})).await;
    let send_raw = |body: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            app.admin(
                reqwest::Method::POST,
                &format!("/admin/v1/tokens/{token}/suspend"),
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
        }
    };
    for body in [
        json!({"reason": "r".repeat(65)}),
        json!({"reason": ""}),
        json!({"reason": 5}),
        json!({"why": "lost"}),
    ] {
        let answer = app.token_action(&token, "suspend", Some(&body)).await;
        assert_eq!(answer.expect(400)["error"], "INVALID_REQUEST", "{body}");
    }
    assert_eq!(send_raw("{not json").await, 400);
    assert_eq!(
        app.token_state(&token).await,
        "ACTIVE",
        "nothing refused applied"
    );

    let reason = "é".repeat(64);
    app.token_action(&token, "suspend", Some(&json!({"reason": reason})))
        .await
        .expect(200);
    assert_eq!(send_raw("  ").await, 200, "a blank body is no body");
    let calls = app.tsp_calls_to("PUT", &state_path(&token), 2).await;
    assert_eq!(calls[1].body["reason"], reason.as_str());
}

async fn the_lifecycle_admin_api_needs_the_bearer_token(app: TestApp) {
    let token = app.active_token_from(json!({})).await;
    let post = |path: String| {
        let app = &app;
        async move {
            app.client
                .post(app.url(&path))
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for path in [
        format!("/admin/v1/tokens/{token}/suspend"),
        format!("/admin/v1/tokens/{token}/delete"),
        card_url("card-1", "renew"),
        "/admin/v1/notifications/1/replay".to_string(),
        format!("/admin/v1/token-requestors/{REQUESTOR}/enable"),
    ] {
        assert_eq!(post(path.clone()).await, 401, "{path}");
    }
    let put = app
        .client
        .put(app.url(&format!("/admin/v1/token-requestors/{REQUESTOR}")))
        .json(&requestor_body())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 401);
    let get = app
        .client
        .get(app.url(&format!("/admin/v1/tokens/{token}/notifications")))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 401);
    assert_eq!(app.token_state(&token).await, "ACTIVE");
}
