//! `POST /trapi/v2.0/tokens/{tokenId}/updates` (`docs/tsp-api.md`, "Token updates from the
//! TSP"): the codes at their boundaries (111, 112, 113, 119, 921), the echo of
//! `x-correlation-id`, updates applied only when newer than the one held. DELETED tokens and
//! their removal from the device are in `removals`.

use crate::support::*;
use serde_json::{json, Value};

hub_tests!(
    an_update_is_applied_and_recorded_in_the_tokens_history,
    an_update_without_a_state_changes_only_the_fields_it_carries,
    x_correlation_id_is_echoed_on_every_answer,
    an_update_without_issuer_id_or_last_update_timestamp_is_rejected_with_111,
    an_update_without_x_correlation_id_is_rejected_with_111,
    an_update_with_an_empty_token_id_is_rejected_with_111,
    an_update_that_is_not_a_json_object_is_rejected_with_112,
    update_fields_are_accepted_at_their_limits_and_rejected_with_112_beyond,
    token_id_of_1_and_48_characters_is_accepted_and_49_is_rejected_with_112,
    x_correlation_id_of_64_characters_is_accepted_and_65_is_rejected_with_112,
    a_content_type_that_is_not_json_is_rejected_with_112,
    an_update_from_an_unregistered_issuer_is_rejected_with_113,
    an_update_from_a_registered_issuer_that_is_not_the_tokens_is_rejected_with_113,
    an_update_for_an_unknown_token_is_rejected_with_119,
    an_update_with_the_timestamp_held_is_acknowledged_and_not_applied,
    an_older_update_is_acknowledged_and_not_applied,
    updates_out_of_order_end_with_the_newest_state,
    an_update_from_the_tsp_is_not_sent_back_to_the_tsp,
    a_store_fault_mid_update_is_921_and_applies_nothing,
);

async fn an_update_is_applied_and_recorded_in_the_tokens_history(app: TestApp) {
    let token = app.active_token().await;
    let cid = correlation_id();
    let mut body = update_state(&at(0), "SUSPENDED");
    body["tokenExpiryDate"] = json!("0131");
    body["tokenLastDigits"] = json!("98765");
    body["cardLastDigits"] = json!("12");
    body["cardExpiryDate"] = json!("0230");
    body["cardArtId"] = json!("art-2");
    let answer = app.post_update_as(&token, &cid, &body).await;
    answer.assert_accepted();
    assert_eq!(answer.correlation_id.as_deref(), Some(cid.as_str()));

    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "SUSPENDED");
    assert_eq!(view["tokenInfo"], json!({"exp": "0131", "last4": "98765"}));
    let last = view["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["correlationId"], cid.as_str(), "{last}");
    let event = last["event"].as_str().unwrap();
    assert!(
        event.starts_with("TSP update applied") && event.contains("state SUSPENDED"),
        "{event}"
    );
}

async fn an_update_without_a_state_changes_only_the_fields_it_carries(app: TestApp) {
    let token = app.active_token().await;
    let mut body = update(&at(0));
    body["tokenExpiryDate"] = json!("0231");
    app.post_update(&token, &body).await.assert_accepted();
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "ACTIVE");
    assert_eq!(
        view["tokenInfo"],
        json!({"exp": "0231", "last4": TSP_LAST4})
    );
    assert_eq!(applied_count(&app, &token).await, 1);
}

async fn x_correlation_id_is_echoed_on_every_answer(app: TestApp) {
    let pending = app.pending_token().await;
    let active = app.active_token().await;
    let cases: Vec<(String, Value, Option<u64>)> = vec![
        (active.clone(), update_state(&at(0), "SUSPENDED"), None),
        (active.clone(), json!({}), Some(111)),
        (
            active.clone(),
            json!({"issuerId": "short", "lastUpdateTimestamp": at(1)}),
            Some(112),
        ),
        (
            active.clone(),
            json!({"issuerId": "UNKNOWN001", "lastUpdateTimestamp": at(1)}),
            Some(113),
        ),
        ("NO-SUCH-TOKEN".into(), update(&at(1)), Some(119)),
        (pending.clone(), update_state(&at(1), "ACTIVE"), Some(432)),
        // Not newer: acknowledged all the same.
        (active.clone(), update_state(&at(0), "ACTIVE"), None),
    ];
    for (i, (token, body, code)) in cases.into_iter().enumerate() {
        let cid = format!("echo-{i}-{}", uuid::Uuid::new_v4().simple());
        let answer = app.post_update_as(&token, &cid, &body).await;
        match code {
            None => answer.assert_accepted(),
            Some(c) => answer.assert_refused(c),
        }
        assert_eq!(
            answer.correlation_id.as_deref(),
            Some(cid.as_str()),
            "case {i}"
        );
    }
}

async fn an_update_without_issuer_id_or_last_update_timestamp_is_rejected_with_111(app: TestApp) {
    let token = app.active_token().await;
    for body in [
        json!({}),
        json!({"lastUpdateTimestamp": at(0), "tokenState": "SUSPENDED"}),
        json!({"issuerId": null, "lastUpdateTimestamp": at(0), "tokenState": "SUSPENDED"}),
        json!({"issuerId": ISSUER, "tokenState": "SUSPENDED"}),
        json!({"issuerId": ISSUER, "lastUpdateTimestamp": null, "tokenState": "SUSPENDED"}),
    ] {
        app.post_update(&token, &body).await.assert_refused(111);
    }
    assert_eq!(app.token_state(&token).await, "ACTIVE");
    assert_eq!(applied_count(&app, &token).await, 0);
}

async fn an_update_without_x_correlation_id_is_rejected_with_111(app: TestApp) {
    let token = app.active_token().await;
    let answer = app
        .post_update_with_headers(
            &token,
            &[("content-type", "application/json")],
            serde_json::to_vec(&update_state(&at(0), "SUSPENDED")).unwrap(),
        )
        .await;
    answer.assert_refused(111);
    assert_eq!(answer.correlation_id, None);
    assert_eq!(app.token_state(&token).await, "ACTIVE");
}

async fn an_update_with_an_empty_token_id_is_rejected_with_111(app: TestApp) {
    let answer = app.post_update("", &update(&at(0))).await;
    answer.assert_refused(111);
    assert!(answer.correlation_id.is_some());
}

async fn an_update_that_is_not_a_json_object_is_rejected_with_112(app: TestApp) {
    let token = app.active_token().await;
    for body in [
        "{",
        "",
        "not json",
        "[]",
        "null",
        "\"text\"",
        "12",
        r#"{"issuerId": "ISSUER0001",}"#,
    ] {
        let answer = app
            .post_update_with_headers(
                &token,
                &[
                    ("x-correlation-id", "c-112"),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await;
        answer.assert_refused(112);
        assert_eq!(answer.correlation_id.as_deref(), Some("c-112"), "{body:?}");
    }
    app.post_update_with_headers(
        &token,
        &[("x-correlation-id", "c-112")],
        vec![0xff, 0xfe, b'{'],
    )
    .await
    .assert_refused(112);
    assert_eq!(app.token_state(&token).await, "ACTIVE");
}

async fn update_fields_are_accepted_at_their_limits_and_rejected_with_112_beyond(app: TestApp) {
    let token = app.active_token().await;
    let mut cases: Vec<(&str, Value, bool)> = vec![
        ("issuerId", json!("ISSUER001"), false),
        ("issuerId", json!("ISSUER00001"), false),
        ("issuerId", json!(""), false),
        ("issuerId", json!(1234567890), false),
        // Older than the updates that follow (at(i) is in 2035), so those still apply.
        (
            "lastUpdateTimestamp",
            json!("2030-06-01T10:00:00.123+01:00"),
            true,
        ),
        (
            "lastUpdateTimestamp",
            json!("2030-06-01T10:00:00-05:30"),
            true,
        ),
        ("lastUpdateTimestamp", json!("2035-01-01"), false),
        ("lastUpdateTimestamp", json!("2035-01-01T10:00:00"), false),
        ("lastUpdateTimestamp", json!("yesterday"), false),
        ("lastUpdateTimestamp", json!(""), false),
        ("lastUpdateTimestamp", json!(BASE_MS), false),
        ("tokenState", json!("SUSPENDED"), true),
        ("tokenState", json!("ACTIVE"), true),
        ("tokenState", json!("active"), false),
        ("tokenState", json!("PENDING_DATA"), false),
        ("tokenState", json!("PERSONALIZING"), false),
        ("tokenState", json!(""), false),
        ("tokenState", json!(1), false),
        ("cardArtId", json!("a"), true),
        ("cardArtId", json!("a".repeat(64)), true),
        ("cardArtId", json!("é".repeat(64)), true),
        ("cardArtId", json!(""), false),
        ("cardArtId", json!("a".repeat(65)), false),
        ("cardArtId", json!(7), false),
        ("anUnknownField", json!("ignored"), true),
    ];
    for field in ["tokenExpiryDate", "cardExpiryDate"] {
        cases.extend([
            (field, json!("0130"), true),
            (field, json!("1230"), true),
            (field, json!("0030"), false),
            (field, json!("1330"), false),
            (field, json!("130"), false),
            (field, json!("01300"), false),
            (field, json!("01/30"), false),
            (field, json!("ab30"), false),
            (field, json!(1230), false),
        ]);
    }
    for field in ["tokenLastDigits", "cardLastDigits"] {
        cases.extend([
            (field, json!("12"), true),
            (field, json!("12345"), true),
            (field, json!("1"), false),
            (field, json!("123456"), false),
            (field, json!("12a4"), false),
            (field, json!(""), false),
            (field, json!(" 1234"), false),
            (field, json!(1234), false),
        ]);
    }
    for (i, (field, value, ok)) in cases.iter().enumerate() {
        let mut body = update(&at(i as i64));
        body[*field] = value.clone();
        let answer = app.post_update(&token, &body).await;
        if *ok {
            assert_eq!(answer.status, 204, "{field} = {value}: {answer:?}");
        } else {
            assert_eq!(
                (answer.status, answer.code()),
                (400, Some(112)),
                "{field} = {value}: {answer:?}"
            );
        }
    }
    // The last values accepted are held; none refused was.
    let view = app.get_token(&token).await;
    assert_eq!(view["tokenInfo"], json!({"exp": "1230", "last4": "12345"}));
    assert_eq!(view["state"], "ACTIVE");
}

async fn token_id_of_1_and_48_characters_is_accepted_and_49_is_rejected_with_112(app: TestApp) {
    for id in ["T".to_string(), "T".repeat(48)] {
        let token = app.digitize_as(&id).await;
        let mut body = update(&at(0));
        body["tokenExpiryDate"] = json!("0131");
        app.post_update(&token, &body).await.assert_accepted();
        assert_eq!(app.get_token(&token).await["tokenInfo"]["exp"], "0131");
    }
    app.post_update(&"T".repeat(49), &update(&at(0)))
        .await
        .assert_refused(112);
    for id in ["%00", "T%0A1"] {
        app.post_update(id, &update(&at(0)))
            .await
            .assert_refused(112);
    }
}

async fn x_correlation_id_of_64_characters_is_accepted_and_65_is_rejected_with_112(app: TestApp) {
    let token = app.active_token().await;
    let cid = "c".repeat(64);
    let answer = app
        .post_update_as(&token, &cid, &update_state(&at(0), "SUSPENDED"))
        .await;
    answer.assert_accepted();
    assert_eq!(answer.correlation_id.as_deref(), Some(cid.as_str()));
    let cid = "c".repeat(65);
    let answer = app
        .post_update_as(&token, &cid, &update_state(&at(1), "ACTIVE"))
        .await;
    answer.assert_refused(112);
    assert_eq!(answer.correlation_id.as_deref(), Some(cid.as_str()));
    app.post_update_as(&token, "", &update_state(&at(2), "ACTIVE"))
        .await
        .assert_refused(112);
    assert_eq!(app.token_state(&token).await, "SUSPENDED");
}

async fn a_content_type_that_is_not_json_is_rejected_with_112(app: TestApp) {
    let token = app.active_token().await;
    let body = |ms: i64, state: &str| serde_json::to_vec(&update_state(&at(ms), state)).unwrap();
    app.post_update_with_headers(
        &token,
        &[("x-correlation-id", "c-ct"), ("content-type", "text/plain")],
        body(0, "SUSPENDED"),
    )
    .await
    .assert_refused(112);
    assert_eq!(app.token_state(&token).await, "ACTIVE");
    app.post_update_with_headers(
        &token,
        &[
            ("x-correlation-id", "c-ct"),
            ("content-type", "application/json; charset=utf-8"),
        ],
        body(1, "SUSPENDED"),
    )
    .await
    .assert_accepted();
    app.post_update_with_headers(&token, &[("x-correlation-id", "c-ct")], body(2, "ACTIVE"))
        .await
        .assert_accepted();
    assert_eq!(app.token_state(&token).await, "ACTIVE");
}

async fn an_update_from_an_unregistered_issuer_is_rejected_with_113(app: TestApp) {
    let token = app.active_token().await;
    let mut body = update_state(&at(0), "SUSPENDED");
    body["issuerId"] = json!("UNKNOWN001");
    app.post_update(&token, &body).await.assert_refused(113);
    assert_eq!(app.token_state(&token).await, "ACTIVE");
}

async fn an_update_from_a_registered_issuer_that_is_not_the_tokens_is_rejected_with_113(
    app: TestApp,
) {
    let r = app
        .put_issuer(OTHER_ISSUER, "Second Test Bank", TSP_ID)
        .await;
    assert_eq!(r.status(), 200);
    let token = app.active_token().await;
    let mut body = update_state(&at(0), "DELETED");
    body["issuerId"] = json!(OTHER_ISSUER);
    app.post_update(&token, &body).await.assert_refused(113);
    assert_eq!(app.token_state(&token).await, "ACTIVE");
    assert_eq!(applied_count(&app, &token).await, 0);
}

async fn an_update_for_an_unknown_token_is_rejected_with_119(app: TestApp) {
    app.post_update("NO-SUCH-TOKEN", &update_state(&at(0), "DELETED"))
        .await
        .assert_refused(119);
    app.post_update(&"T".repeat(48), &update(&at(0)))
        .await
        .assert_refused(119);
}

async fn an_update_with_the_timestamp_held_is_acknowledged_and_not_applied(app: TestApp) {
    let token = app.active_token().await;
    app.post_update(&token, &update_state(&at(1000), "SUSPENDED"))
        .await
        .assert_accepted();
    assert_eq!(app.token_state(&token).await, "SUSPENDED");

    // The same instant, written the same way or with another offset.
    let mut same = update_state(&at(1000), "ACTIVE");
    same["tokenExpiryDate"] = json!("0131");
    app.post_update(&token, &same).await.assert_accepted();
    same["lastUpdateTimestamp"] = json!("2035-01-01T01:00:01+01:00");
    app.post_update(&token, &same).await.assert_accepted();
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "SUSPENDED");
    assert_eq!(view["tokenInfo"]["exp"], TSP_EXP);
    assert_eq!(applied_count(&app, &token).await, 1);

    // One millisecond newer is newer.
    app.post_update(&token, &update_state(&at(1001), "ACTIVE"))
        .await
        .assert_accepted();
    assert_eq!(app.token_state(&token).await, "ACTIVE");
    assert_eq!(applied_count(&app, &token).await, 2);
}

async fn an_older_update_is_acknowledged_and_not_applied(app: TestApp) {
    let token = app.active_token().await;
    app.post_update(&token, &update_state(&at(1000), "SUSPENDED"))
        .await
        .assert_accepted();
    let mut older = update_state(&at(999), "ACTIVE");
    older["tokenExpiryDate"] = json!("0131");
    app.post_update(&token, &older).await.assert_accepted();
    older["lastUpdateTimestamp"] = json!("2020-01-01T00:00:00Z");
    app.post_update(&token, &older).await.assert_accepted();
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "SUSPENDED");
    assert_eq!(view["tokenInfo"]["exp"], TSP_EXP);
    assert_eq!(applied_count(&app, &token).await, 1);
}

async fn updates_out_of_order_end_with_the_newest_state(app: TestApp) {
    let token = app.active_token().await;
    let sent = [
        (2, "SUSPENDED", Some(("tokenExpiryDate", "0231"))),
        (1, "ACTIVE", Some(("tokenExpiryDate", "0131"))),
        (4, "ACTIVE", None),
        (3, "SUSPENDED", Some(("tokenLastDigits", "555"))),
    ];
    for (ms, state, field) in sent {
        let mut body = update_state(&at(ms), state);
        if let Some((name, value)) = field {
            body[name] = json!(value);
        }
        app.post_update(&token, &body).await.assert_accepted();
    }
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "ACTIVE");
    assert_eq!(
        view["tokenInfo"],
        json!({"exp": "0231", "last4": TSP_LAST4})
    );
    assert_eq!(applied_count(&app, &token).await, 2);
}

async fn an_update_from_the_tsp_is_not_sent_back_to_the_tsp(app: TestApp) {
    let token = app.active_token().await;
    app.post_update(&token, &update_state(&at(0), "SUSPENDED"))
        .await
        .assert_accepted();
    let resumed = app.token_action(&token, "resume", None).await;
    assert_eq!(resumed.expect(200)["state"], "ACTIVE");
    let view = app.get_token(&token).await;
    let resume_cid = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["event"].as_str().unwrap().starts_with("issuer resume"))
        .unwrap_or_else(|| panic!("the resume is in the history: {view}"))["correlationId"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/tsp/trapi/v2.0/tokens/{token}/state");
    // The TSP's calls of one token go out in order: once the resume's call is there, any call
    // the update caused would be too.
    let calls = eventually("the resume's updateTokenState", || {
        let (path, resume_cid) = (path.clone(), resume_cid.clone());
        let tsp = app.tsp.clone();
        async move {
            let calls: Vec<_> = tsp
                .other_calls()
                .into_iter()
                .filter(|c| c.method == "PUT" && c.path == path)
                .collect();
            calls
                .iter()
                .any(|c| c.correlation_id.as_deref() == Some(resume_cid.as_str()))
                .then_some(calls)
        }
    })
    .await;
    assert_eq!(
        calls.len(),
        2,
        "ACTIVE after personalization and the resume, nothing for the TSP's own update: {calls:?}"
    );
}

async fn a_store_fault_mid_update_is_921_and_applies_nothing(app: TestApp) {
    let token = app.active_token().await;
    // The update's last write (its history line) fails: the whole update must roll back.
    app.execute_sql("ALTER TABLE token_events RENAME TO token_events_away")
        .await;
    let mut body = update_state(&at(0), "SUSPENDED");
    body["tokenExpiryDate"] = json!("0131");
    let answer = app.post_update_as(&token, "cid-921", &body).await;
    app.execute_sql("ALTER TABLE token_events_away RENAME TO token_events")
        .await;
    answer.assert_refused(921);
    assert_eq!(answer.correlation_id.as_deref(), Some("cid-921"));
    let message = answer.message().to_lowercase();
    assert!(
        !message.contains("sql") && !message.contains("token_events"),
        "the cause stays in the log: {answer:?}"
    );
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "ACTIVE");
    assert_eq!(view["tokenInfo"]["exp"], TSP_EXP);
    // 921 is retryable: the TSP's retry is applied.
    app.post_update_as(&token, "cid-921", &body)
        .await
        .assert_accepted();
    assert_eq!(app.token_state(&token).await, "SUSPENDED");
}

/// With its store closed the hub answers 921 (on SQLite the writer thread is gone: the call must
/// still be answered, not hang).
mod with_its_store_closed_the_hub_answers_921_to_an_update {
    use crate::support::*;

    async fn body(app: TestApp) {
        let token = app.pending_token().await;
        app.hub.store.close().await;
        let answer = app
            .post_update_as(&token, "cid-921", &update_state(&at(0), "DELETED"))
            .await;
        answer.assert_refused(921);
        assert_eq!(answer.correlation_id.as_deref(), Some("cid-921"));
        // A refusal that needs no store is still given.
        app.post_update(&token, &serde_json::json!({}))
            .await
            .assert_refused(111);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        body(spawn_app(Backend::Sqlite).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(url) = postgres_url_or_skip(module_path!()) else {
            return;
        };
        body(spawn_app(Backend::Postgres(url)).await).await;
    }
}
