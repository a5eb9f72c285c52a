//! The token updates delivered to a token requestor: headers, body, signatures, retries, dead
//! letters and their replay, an endpoint that is gone.

use crate::support::*;
use serde_json::{json, Value};

hub_tests!(
    config = requestors_allowed;
    a_token_update_reaches_the_requestor_signed_with_every_secret,
    updates_are_queued_only_for_personalized_tokens_of_registered_requestors,
    every_change_reaches_the_requestor_with_the_tokens_whole_state,
    a_refused_update_is_dead_until_it_is_replayed,
    a_failing_update_is_retried_on_the_schedule_then_dead,
    a_retryable_failure_is_delivered_on_the_next_try,
    a_gone_endpoint_disables_the_requestor_until_it_is_enabled_again,
    the_dead_letters_of_a_requestor_are_replayed_together,
    notifications_are_listed_by_state_and_unknown_ones_are_404,
);

async fn a_token_update_reaches_the_requestor_signed_with_every_secret(app: TestApp) {
    let receiver = Receiver::start().await;
    let creds = app
        .register_requestor(REQUESTOR, &receiver.base_url(), 2)
        .await;
    let token = app
        .active_token_from(json!({"tokenRequestorId": REQUESTOR, "card": card()}))
        .await;
    let received = receiver.wait_for(1).await;
    let r = &received[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hooks/notify-token-update");
    assert_eq!(
        r.header("authorization"),
        format!("APIKEY {}", creds.api_key)
    );
    assert!(r.header("content-type").starts_with("application/json"));
    let webhook_id = r.header("webhook-id");
    assert!(webhook_id.starts_with("tknupd_"), "{webhook_id}");
    let ts = r.header("webhook-timestamp");
    assert_eq!(ts, (app.hub.now_ms() / 1000).to_string());

    // One signature per secret, in order, each verifying under its secret.
    let signatures: Vec<&str> = r.header("webhook-signature").split(' ').collect();
    let want: Vec<String> = creds
        .signing_secrets
        .iter()
        .map(|s| expected_signature(s, webhook_id, ts, &r.body))
        .collect();
    assert_eq!(signatures, want);
    let stranger = expected_signature(&signing_secret(32), webhook_id, ts, &r.body);
    assert!(!signatures.contains(&stranger.as_str()));

    let mut body = r.json();
    let stamp = body
        .as_object_mut()
        .unwrap()
        .remove("lastUpdateTimestamp")
        .unwrap();
    assert_eq!(body, expected_body(&token, REQUESTOR, "ACTIVE", &card()));

    // As the admin API lists it: delivered, once, never with a secret.
    let d = app.newest_notification_of(&token).await;
    let d = app
        .notification_in_state(notification_id(&d), "DELIVERED")
        .await;
    assert_eq!(d["webhookId"], webhook_id);
    assert_eq!(d["requestorId"], REQUESTOR);
    assert_eq!(d["tokenId"], token.as_str());
    assert_eq!(d["correlationId"], r.header("x-correlation-id"));
    assert_eq!(d["lastUpdateTimestamp"], stamp);
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["lastStatus"], 204);
    assert_eq!(d["body"], r.json());
    let log = d["attemptLog"].as_array().unwrap();
    assert_eq!(log.len(), 1, "{d}");
    assert_eq!(log[0]["status"], 204);
    let text = d.to_string();
    assert!(
        !text.contains(&creds.api_key) && !text.contains(&want[0]),
        "{text}"
    );

    let listed = app.requestor_notifications(REQUESTOR, "").await;
    let listed = listed.expect(200).as_array().unwrap().clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["notificationId"], d["notificationId"]);
    assert!(listed[0].get("body").is_none(), "the list has no bodies");
    assert_eq!(app.token_notifications(&token).await, listed);
    let view = app
        .admin_get(&format!("/admin/v1/token-requestors/{REQUESTOR}"))
        .await;
    assert_eq!(view.expect(200)["notifications"], json!({"DELIVERED": 1}));
}

async fn updates_are_queued_only_for_personalized_tokens_of_registered_requestors(app: TestApp) {
    let receiver = Receiver::start().await;
    app.register_requestor(REQUESTOR, &receiver.base_url(), 1)
        .await;
    // A requestor that is not registered cannot be named (wallet_auth.rs shows nothing is made).
    let mut unregistered = digitization_body();
    unregistered["tokenRequestorId"] = json!("not-registered");
    Answer::read(app.post_digitization(&unregistered).await)
        .await
        .expect(400);
    let without = app.active_token_from(json!({})).await;
    assert_eq!(app.token_notifications(&without).await, Vec::<Value>::new());

    // Not while the token waits for its data or its device.
    let token = app
        .digitize_with(json!({"tokenRequestorId": REQUESTOR}))
        .await;
    let mut body = update(&at(0));
    body["tokenExpiryDate"] = json!("0131");
    app.post_update(&token, &body).await.assert_accepted();
    assert_eq!(app.token_notifications(&token).await, Vec::<Value>::new());
    app.complete_data(&token).await;
    assert_eq!(app.token_notifications(&token).await, Vec::<Value>::new());
    app.confirm_personalization(&token).await;
    assert_eq!(app.token_state(&token).await, "ACTIVE");
    let notifications = app.token_notifications(&token).await;
    assert_eq!(notifications.len(), 1, "{notifications:?}");
    let d = app
        .notification_in_state(notification_id(&notifications[0]), "DELIVERED")
        .await;
    assert_eq!(d["body"]["tokenState"], "ACTIVE");
    assert_eq!(d["body"]["tokenExpiryDate"], "0131");

    // A deleted token's requestor is told, whatever the state it was deleted in.
    let deleted = app
        .digitize_with(json!({"tokenRequestorId": REQUESTOR}))
        .await;
    app.post_update(&deleted, &update_state(&at(0), "DELETED"))
        .await
        .assert_accepted();
    let d = app.newest_notification_of(&deleted).await;
    let d = app
        .notification_in_state(notification_id(&d), "DELIVERED")
        .await;
    assert_eq!(d["body"]["tokenState"], "DELETED");

    let all = app.requestor_notifications(REQUESTOR, "").await;
    assert_eq!(all.expect(200).as_array().unwrap().len(), 2);
    assert_eq!(receiver.wait_for(2).await.len(), 2);
}

async fn every_change_reaches_the_requestor_with_the_tokens_whole_state(app: TestApp) {
    let (card_ref, mut extra) = new_card();
    extra["tokenRequestorId"] = json!(REQUESTOR);
    extra["card"] = card();
    let receiver = Receiver::start().await;
    app.register_requestor(REQUESTOR, &receiver.base_url(), 1)
        .await;
    let token = app.active_token_from(extra).await;
    let first = receiver.wait_for(1).await[0].json();
    assert_eq!(first["tokenState"], "ACTIVE");

    // An update from the TSP: its timestamp, its correlation id.
    let cid = correlation_id();
    let mut body = update_state("2035-01-01T01:00:00+01:00", "SUSPENDED");
    body["cardArtId"] = json!("art-9");
    app.post_update_as(&token, &cid, &body)
        .await
        .assert_accepted();
    let r = receiver.wait_for(2).await[1].clone();
    assert_eq!(r.header("x-correlation-id"), cid);
    let mut want = expected_body(&token, REQUESTOR, "SUSPENDED", &card());
    want["cardArtId"] = json!("art-9");
    want["lastUpdateTimestamp"] = json!(timestamp(BASE_MS));
    assert_eq!(r.json(), want);

    // The issuer's resume: stamped just after the TSP's update (the hub's clock is behind it).
    let resumed = app.token_action(&token, "resume", None).await;
    let resumed_at = resumed.expect(200)["lastUpdateTimestamp"].clone();
    assert_eq!(resumed_at, json!(timestamp(BASE_MS + 1)));
    let r = receiver.wait_for(3).await[2].clone();
    want["tokenState"] = json!("ACTIVE");
    want["lastUpdateTimestamp"] = resumed_at;
    assert_eq!(r.json(), want);

    // The card renewed.
    app.admin_post(
        &card_url(&card_ref, "renew"),
        Some(&json!({"cardExpiryDate": "0232"})),
    )
    .await
    .expect(200);
    let r = receiver.wait_for(4).await[3].clone();
    want["cardExpiryDate"] = json!("0232");
    want["lastUpdateTimestamp"] = json!(timestamp(BASE_MS + 2));
    assert_eq!(r.json(), want);

    // Deleted by the TSP.
    app.post_update(&token, &update_state(&at(10), "DELETED"))
        .await
        .assert_accepted();
    let received = receiver.wait_for(5).await;
    want["tokenState"] = json!("DELETED");
    want["lastUpdateTimestamp"] = json!(at(10));
    assert_eq!(received[4].json(), want);

    let mut ids: Vec<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "every update has its own webhook-id");
    assert_eq!(app.token_notifications(&token).await.len(), 5);
}

async fn a_refused_update_is_dead_until_it_is_replayed(app: TestApp) {
    let (receiver, creds, token) = token_of_a_requestor(&app, &[400]).await;
    let d = app.newest_notification_of(&token).await;
    let id = notification_id(&d);
    let dead = app.notification_in_state(id, "DEAD").await;
    assert_eq!(dead["attempts"], 1);
    assert_eq!(dead["lastStatus"], 400);
    assert!(dead.get("nextAttemptAt").is_none(), "{dead}");
    assert_eq!(dead["attemptLog"].as_array().unwrap().len(), 1);
    let dead_letters = app.requestor_notifications(REQUESTOR, "?state=DEAD").await;
    let dead_letters = dead_letters.expect(200).as_array().unwrap().clone();
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0]["notificationId"], id);
    let view = app
        .admin_get(&format!("/admin/v1/token-requestors/{REQUESTOR}"))
        .await;
    assert_eq!(view.expect(200)["notifications"], json!({"DEAD": 1}));

    let replay = format!("/admin/v1/notifications/{id}/replay");
    app.admin_post(&replay, None).await.expect(204);
    let delivered = app.notification_in_state(id, "DELIVERED").await;
    let statuses: Vec<&Value> = delivered["attemptLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status"])
        .collect();
    assert_eq!(statuses, [&json!(400), &json!(204)]);

    let received = receiver.wait_for(2).await;
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[0].header("webhook-id"),
        received[1].header("webhook-id"),
        "a replay is the same update"
    );
    assert_eq!(received[0].body, received[1].body);
    for r in &received {
        let want = expected_signature(
            &creds.signing_secrets[0],
            r.header("webhook-id"),
            r.header("webhook-timestamp"),
            &r.body,
        );
        assert_eq!(r.header("webhook-signature"), want);
    }
    // Only a dead update can be replayed.
    let answer = app.admin_post(&replay, None).await;
    assert_eq!(answer.expect(409)["error"], "CONFLICT");
}

async fn a_failing_update_is_retried_on_the_schedule_then_dead(app: TestApp) {
    let receiver = Receiver::start().await;
    receiver.answer_by_default(503);
    app.register_requestor(REQUESTOR, &receiver.base_url(), 1)
        .await;
    let token = app
        .active_token_from(json!({"tokenRequestorId": REQUESTOR}))
        .await;
    // RETRY_SCHEDULE has two waits: three attempts in all.
    let received = app.wait_for_attempts(&receiver, 3).await;
    let d = app.newest_notification_of(&token).await;
    let dead = app.notification_in_state(notification_id(&d), "DEAD").await;
    assert_eq!(dead["attempts"], 3);
    assert!(
        dead["lastError"]
            .as_str()
            .unwrap()
            .contains("gave up after 3 attempts"),
        "{dead}"
    );
    let statuses: Vec<&Value> = dead["attemptLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status"])
        .collect();
    assert_eq!(statuses, [&json!(503), &json!(503), &json!(503)]);
    assert_eq!(received.len(), 3, "no attempt after the last one");
    let ids: Vec<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "retries are the same update"
    );

    receiver.answer_by_default(204);
    let replay = format!("/admin/v1/token-requestors/{REQUESTOR}/dead-letters/replay");
    let answer = app.admin_post(&replay, None).await;
    assert_eq!(answer.expect(200), &json!({"replayed": 1}));
    app.notification_in_state(notification_id(&d), "DELIVERED")
        .await;
    assert_eq!(receiver.wait_for(4).await[3].answered, 204);
}

async fn a_retryable_failure_is_delivered_on_the_next_try(app: TestApp) {
    let (receiver, _, token) = token_of_a_requestor(&app, &[503, 429]).await;
    let received = app.wait_for_attempts(&receiver, 3).await;
    let answered: Vec<u16> = received.iter().map(|r| r.answered).collect();
    assert_eq!(answered, [503, 429, 204]);
    let d = app.newest_notification_of(&token).await;
    let d = app
        .notification_in_state(notification_id(&d), "DELIVERED")
        .await;
    assert_eq!(d["attempts"], 3);
    assert_eq!(d["lastStatus"], 204);
}

async fn a_gone_endpoint_disables_the_requestor_until_it_is_enabled_again(app: TestApp) {
    let (receiver, _, token) = token_of_a_requestor(&app, &[410]).await;
    receiver.wait_for(1).await;
    let path = format!("/admin/v1/token-requestors/{REQUESTOR}");
    let disabled = requestor_disabled(&app, REQUESTOR).await;
    assert!(
        disabled["disabledReason"].as_str().unwrap().contains("410"),
        "{disabled}"
    );
    // Registering the requestor again does not enable it.
    app.register_requestor(REQUESTOR, &receiver.base_url(), 1)
        .await;
    assert_eq!(app.admin_get(&path).await.expect(200)["state"], "DISABLED");

    // (That nothing is tried while it is disabled is `a_disabled_requestor_gets_no_attempt`.)
    app.token_action(&token, "suspend", None).await.expect(200);
    app.admin_post(&format!("{path}/enable"), None)
        .await
        .expect(204);
    let newest = app.newest_notification_of(&token).await;
    app.notification_in_state(notification_id(&newest), "DELIVERED")
        .await;
    let last = receiver.received().last().unwrap().clone();
    assert_eq!(last.json()["tokenState"], "SUSPENDED");
    assert_eq!(last.answered, 204);
    let view = app.admin_get(&path).await.expect(200).clone();
    assert_eq!(view["state"], "ENABLED");
    assert!(view.get("disabledReason").is_none(), "{view}");
    app.admin_post("/admin/v1/token-requestors/no-such-requestor/enable", None)
        .await
        .expect(404);
}

/// Waits until the requestor is DISABLED; returns its view.
async fn requestor_disabled(app: &TestApp, requestor_id: &str) -> Value {
    let path = format!("/admin/v1/token-requestors/{requestor_id}");
    eventually("the requestor to be disabled", || {
        let path = path.clone();
        async move {
            let v = app.admin_get(&path).await.expect(200).clone();
            (v["state"] == "DISABLED").then_some(v)
        }
    })
    .await
}

/// A requestor disabled by a 410 gets no attempt, and its update waits (PENDING), until it is
/// enabled again; a newer change supersedes the update that waits. It guards a race: the notifier
/// must not claim the held update again in the moment the 410 is recorded. The race is short, so
/// the case runs for several requestors.
mod a_disabled_requestor_gets_no_attempt {
    use super::*;

    async fn body(app: TestApp) {
        for i in 0..6 {
            let requestor = format!("gone-{i}");
            let receiver = Receiver::start().await;
            receiver.answer_next(&[410]);
            app.register_requestor(&requestor, &receiver.base_url(), 1)
                .await;
            let token = app
                .active_token_from(json!({"tokenRequestorId": requestor}))
                .await;
            receiver.wait_for(1).await;
            requestor_disabled(&app, &requestor).await;
            for _ in 0..3 {
                app.skip_retry_wait();
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let received = receiver.received();
            assert_eq!(
                received.len(),
                1,
                "requestor {i}: an attempt after the 410: {received:?}"
            );
            let first = app.newest_notification_of(&token).await;
            assert_eq!(first["state"], "PENDING", "it waits: {first}");
            assert_eq!(first["lastStatus"], 410);

            app.token_action(&token, "suspend", None).await.expect(200);
            let notifications = app.token_notifications(&token).await;
            let states: Vec<&Value> = notifications.iter().map(|d| &d["state"]).collect();
            assert_eq!(states, [&json!("PENDING"), &json!("SUPERSEDED")]);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        body(spawn_app_with(Backend::Sqlite, requestors_allowed).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(url) = postgres_url_or_skip(module_path!()) else {
            return;
        };
        body(spawn_app_with(Backend::Postgres(url), requestors_allowed).await).await;
    }
}

async fn the_dead_letters_of_a_requestor_are_replayed_together(app: TestApp) {
    let (receiver, _, first) = token_of_a_requestor(&app, &[400, 400]).await;
    let second = app
        .active_token_from(json!({"tokenRequestorId": REQUESTOR}))
        .await;
    let mut ids = Vec::new();
    for token in [&first, &second] {
        let d = app.newest_notification_of(token).await;
        app.notification_in_state(notification_id(&d), "DEAD").await;
        ids.push(notification_id(&d));
    }
    let replay = format!("/admin/v1/token-requestors/{REQUESTOR}/dead-letters/replay");
    let answer = app.admin_post(&replay, None).await;
    assert_eq!(answer.expect(200), &json!({"replayed": 2}));
    for id in ids {
        app.notification_in_state(id, "DELIVERED").await;
    }
    assert_eq!(receiver.wait_for(4).await.len(), 4);
    let answer = app.admin_post(&replay, None).await;
    assert_eq!(answer.expect(200), &json!({"replayed": 0}));
    app.admin_post(
        "/admin/v1/token-requestors/no-such-requestor/dead-letters/replay",
        None,
    )
    .await
    .expect(404);
}

async fn notifications_are_listed_by_state_and_unknown_ones_are_404(app: TestApp) {
    let (_receiver, _, token) = token_of_a_requestor(&app, &[]).await;
    app.token_action(&token, "suspend", None).await.expect(200);
    let newest = app.newest_notification_of(&token).await;
    app.notification_in_state(notification_id(&newest), "DELIVERED")
        .await;
    let all = app.requestor_notifications(REQUESTOR, "").await;
    let all = all.expect(200).as_array().unwrap().clone();
    assert!(!all.is_empty());
    assert_eq!(
        all[0]["notificationId"], newest["notificationId"],
        "newest first"
    );
    let limited = app.requestor_notifications(REQUESTOR, "?limit=1").await;
    assert_eq!(limited.expect(200).as_array().unwrap().len(), 1);
    let pending = app.requestor_notifications(REQUESTOR, "?state=DEAD").await;
    assert_eq!(pending.expect(200), &json!([]));
    app.requestor_notifications(REQUESTOR, "?state=BOGUS")
        .await
        .expect(400);
    app.admin_get("/admin/v1/notifications/999999")
        .await
        .expect(404);
    app.admin_post("/admin/v1/notifications/999999/replay", None)
        .await
        .expect(404);
}
