//! The issuer's lifecycle actions and token requestors, on the admin API (`/admin/v1`): suspend,
//! resume, delete (and the `updateTokenState` each sends the TSP); renew and replace a card
//! (`updateToken`); token requestors (validation, secrets never shown); and the token updates
//! delivered to a requestor: headers, body, signatures, retries, dead letters and their replay,
//! an endpoint that is gone.

use crate::helpers::*;
use crate::lifecycle_helpers::*;
use serde_json::{json, Value};

lifecycle_tests!(
    suspending_an_active_token_is_200_and_the_tsp_is_told,
    resuming_a_suspended_token_makes_it_active_and_the_tsp_is_told,
    repeating_an_action_is_200_and_changes_nothing,
    suspend_or_resume_of_a_token_that_is_not_active_or_suspended_is_409,
    deleting_a_token_is_final_and_its_device_is_told_to_remove_it,
    a_token_in_any_state_can_be_deleted,
    an_action_on_an_unknown_token_is_404,
    a_reason_of_64_characters_is_accepted_and_an_empty_or_longer_one_is_400,
    the_lifecycle_admin_api_needs_the_bearer_token,
    renewing_a_card_updates_its_active_and_suspended_tokens_and_the_tsp_is_told,
    replacing_a_card_gives_its_tokens_new_last_digits,
    a_renewal_needs_card_expiry_date_and_a_replacement_card_last_digits,
    card_fields_are_accepted_at_their_limits_and_refused_beyond_with_400,
    a_card_without_an_active_or_suspended_token_is_404,
    a_requestor_is_registered_and_its_api_key_and_secrets_are_never_shown,
    a_signing_secret_must_be_whsec_and_base64_of_16_to_64_bytes,
    a_requestor_needs_1_to_8_signing_secrets,
    other_requestor_fields_are_checked_at_their_limits,
    a_base_url_at_a_non_public_address_outside_the_allow_list_is_400,
    a_token_update_reaches_the_requestor_signed_with_every_secret,
    updates_are_queued_only_for_personalized_tokens_of_registered_requestors,
    every_change_reaches_the_requestor_with_the_tokens_whole_state,
    a_refused_update_is_dead_until_it_is_replayed,
    a_failing_update_is_retried_on_the_schedule_then_dead,
    a_retryable_failure_is_delivered_on_the_next_try,
    a_gone_endpoint_disables_the_requestor_until_it_is_enabled_again,
    the_dead_letters_of_a_requestor_are_replayed_together,
    deliveries_are_listed_by_state_and_unknown_ones_are_404,
);

hub_tests!(a_loopback_base_url_is_400_when_the_hub_does_not_allow_it);

const REQUESTOR: &str = "shop-1";

fn state_path(token: &str) -> String {
    format!("/tsp/trapi/v2.0/tokens/{token}/state")
}

fn card_path(token: &str) -> String {
    format!("/tsp/trapi/v2.0/tokens/{token}/card")
}

fn card_url(card_ref: &str, what: &str) -> String {
    format!("/admin/v1/issuers/{ISSUER}/cards/{card_ref}/{what}")
}

/// The newest history event of the token: (event, correlationId).
async fn last_event(app: &LifecycleApp, token: &str) -> (String, String) {
    let view = app.token_view(token).await;
    let e = view["history"].as_array().unwrap().last().unwrap().clone();
    (
        e["event"].as_str().unwrap().to_string(),
        e["correlationId"].as_str().unwrap().to_string(),
    )
}

/// A fresh `walletCardRefId`, and the digitization fields that use it.
fn new_card() -> (String, Value) {
    let card_ref = format!("card-{}", uuid::Uuid::new_v4().simple());
    let extra = json!({"walletCardRefId": card_ref});
    (card_ref, extra)
}

/// A valid requestor body.
fn requestor_body() -> Value {
    json!({
        "merchantId": "MERCHANT-1",
        "baseUrl": "https://psp.example.com/hooks",
        "apiKey": "api-key-1",
        "signingSecrets": [signing_secret(32)],
    })
}

/// A card the requestor is told of.
fn card() -> Value {
    json!({"lastDigits": "1234", "expiryDate": "0930", "artId": "art-1"})
}

/// Registers [`REQUESTOR`] at a fresh [`Receiver`] and activates a token for it (with
/// [`card`]). Returns the receiver, the requestor's secrets and the token.
async fn token_of_a_requestor(
    app: &LifecycleApp,
    script: &[u16],
) -> (Receiver, RequestorSecrets, String) {
    let receiver = Receiver::start().await;
    receiver.answer_next(script);
    let creds = app
        .register_requestor(REQUESTOR, &receiver.base_url(), 1)
        .await;
    let token = app
        .active_token(json!({"tokenRequestorId": REQUESTOR, "card": card()}))
        .await;
    (receiver, creds, token)
}

fn delivery_id(d: &Value) -> i64 {
    d["deliveryId"].as_i64().unwrap()
}

// ---- suspend, resume, delete ----

async fn suspending_an_active_token_is_200_and_the_tsp_is_told(app: LifecycleApp) {
    let token = app.active_token(json!({})).await;
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
    assert_eq!(app.state_of(&token).await, "SUSPENDED");

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

async fn resuming_a_suspended_token_makes_it_active_and_the_tsp_is_told(app: LifecycleApp) {
    let token = app.active_token(json!({})).await;
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
    assert_eq!(app.state_of(&token).await, "ACTIVE");
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

async fn repeating_an_action_is_200_and_changes_nothing(app: LifecycleApp) {
    let token = app.active_token(json!({})).await;
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
    assert_eq!(app.state_of(&token).await, "DELETED");
    // The calls of one token go out in order: once the delete's is there, every earlier one is.
    let (_, delete_cid) = last_event(&app, &token).await;
    let calls = eventually("the delete's updateTokenState", || {
        let (path, cid) = (state_path(&token), delete_cid.clone());
        let app = &app;
        async move {
            let calls = app.tsp.calls();
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

async fn suspend_or_resume_of_a_token_that_is_not_active_or_suspended_is_409(app: LifecycleApp) {
    let pending = app.digitize(json!({})).await;
    let personalizing = app.digitize(json!({})).await;
    app.complete_data(&personalizing).await;
    let deleted = app.active_token(json!({})).await;
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
        assert_eq!(app.state_of(token).await, state);
    }
}

async fn deleting_a_token_is_final_and_its_device_is_told_to_remove_it(app: LifecycleApp) {
    let token = app.active_token(json!({})).await;
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
    assert_eq!(app.state_of(&token).await, "DELETED");
}

async fn a_token_in_any_state_can_be_deleted(app: LifecycleApp) {
    let pending = app.digitize(json!({})).await;
    let personalizing = app.digitize(json!({})).await;
    app.complete_data(&personalizing).await;
    for token in [&pending, &personalizing] {
        let answer = app.token_action(token, "delete", None).await;
        assert_eq!(answer.expect(200)["state"], "DELETED");
        let view = app.token_view(token).await;
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
    let view = app.token_view(&personalizing).await;
    assert_eq!(view["personalizations"][0]["state"], "FAILED", "{view}");
    let work = app.device_work(DEVICE).await;
    assert!(
        !work.iter().any(|w| w["action"] == "INSTALL"),
        "the profile of a deleted token is not offered: {work:?}"
    );
}

async fn an_action_on_an_unknown_token_is_404(app: LifecycleApp) {
    for action in ["suspend", "resume", "delete"] {
        let answer = app.token_action("NO-SUCH-TOKEN", action, None).await;
        assert_eq!(answer.expect(404)["error"], "NOT_FOUND", "{action}");
        app.token_action(&"T".repeat(49), action, None)
            .await
            .expect(400);
    }
}

async fn a_reason_of_64_characters_is_accepted_and_an_empty_or_longer_one_is_400(
    app: LifecycleApp,
) {
    let token = app.active_token(json!({})).await;
    let send_raw = |body: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            app.admin_call(
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
        app.state_of(&token).await,
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

async fn the_lifecycle_admin_api_needs_the_bearer_token(app: LifecycleApp) {
    let token = app.active_token(json!({})).await;
    let post = |path: String| {
        let app = &app;
        async move {
            app.client
                .post(app.hub_url(&path))
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
        "/admin/v1/deliveries/1/replay".to_string(),
        format!("/admin/v1/token-requestors/{REQUESTOR}/enable"),
    ] {
        assert_eq!(post(path.clone()).await, 401, "{path}");
    }
    let put = app
        .client
        .put(app.hub_url(&format!("/admin/v1/token-requestors/{REQUESTOR}")))
        .json(&requestor_body())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 401);
    let get = app
        .client
        .get(app.hub_url(&format!("/admin/v1/tokens/{token}/deliveries")))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 401);
    assert_eq!(app.state_of(&token).await, "ACTIVE");
}

// ---- renew, replace ----

async fn renewing_a_card_updates_its_active_and_suspended_tokens_and_the_tsp_is_told(
    app: LifecycleApp,
) {
    let (card_ref, extra) = new_card();
    let active = app.active_token(extra.clone()).await;
    let suspended = app.active_token(extra.clone()).await;
    app.token_action(&suspended, "suspend", None)
        .await
        .expect(200);
    let pending = app.digitize(extra.clone()).await;
    let deleted = app.active_token(extra.clone()).await;
    app.token_action(&deleted, "delete", None).await.expect(200);
    let other_card = app.active_token(json!({})).await;

    let body = json!({
        "cardExpiryDate": "0131",
        "cardArtId": "art-2",
        "issuerCardRefId": "icr-1",
        "newCipheredCardInfo": "eyJhbGciOiJSU0EtT0FFUC0yNTYifQ",
        "cipheredCardInfoKeyId": "kid-1",
    });
    let v = app
        .admin_post(&card_url(&card_ref, "renew"), Some(&body))
        .await
        .expect(200)
        .clone();
    let mut updated = names(&v["tokenIds"]);
    updated.sort();
    let mut want = vec![active.clone(), suspended.clone()];
    want.sort();
    assert_eq!(updated, want);

    assert_eq!(app.state_of(&active).await, "ACTIVE");
    assert_eq!(app.state_of(&suspended).await, "SUSPENDED");
    for token in [&active, &suspended] {
        let (event, cid) = last_event(&app, token).await;
        assert_eq!(
            event,
            "issuer renewed the card: new cardExpiryDate, new cardArtId"
        );
        let calls = app.tsp_calls_to("PUT", &card_path(token), 1).await;
        assert_eq!(
            calls[0].body,
            json!({
                "issuerId": ISSUER,
                "issuerCardRefId": "icr-1",
                "newCipheredCardInfo": "eyJhbGciOiJSU0EtT0FFUC0yNTYifQ",
                "cipheredCardInfoKeyId": "kid-1",
            })
        );
        assert_eq!(calls[0].correlation_id.as_deref(), Some(cid.as_str()));
    }
    for token in [&pending, &deleted, &other_card] {
        assert!(
            !app.history_of(token)
                .await
                .iter()
                .any(|e| e.contains("renewed")),
            "{token} is not renewed"
        );
    }
}

async fn replacing_a_card_gives_its_tokens_new_last_digits(app: LifecycleApp) {
    let (card_ref, extra) = new_card();
    let token = app.active_token(extra).await;
    let v = app
        .admin_post(
            &card_url(&card_ref, "replace"),
            Some(&json!({"cardLastDigits": "9876"})),
        )
        .await
        .expect(200)
        .clone();
    assert_eq!(v, json!({"tokenIds": [token]}));
    let (event, _) = last_event(&app, &token).await;
    assert_eq!(event, "issuer replaced the card: new cardLastDigits");
    let calls = app.tsp_calls_to("PUT", &card_path(&token), 1).await;
    assert_eq!(calls[0].body, json!({"issuerId": ISSUER}));
}

async fn a_renewal_needs_card_expiry_date_and_a_replacement_card_last_digits(app: LifecycleApp) {
    let (card_ref, extra) = new_card();
    let token = app.active_token(extra).await;
    for (what, body) in [
        ("renew", json!({})),
        (
            "renew",
            json!({"cardLastDigits": "12", "cardArtId": "art-2"}),
        ),
        ("replace", json!({})),
        ("replace", json!({"cardExpiryDate": "0131"})),
    ] {
        let answer = app
            .admin_post(&card_url(&card_ref, what), Some(&body))
            .await;
        assert_eq!(
            answer.expect(400)["error"],
            "INVALID_REQUEST",
            "{what} {body}"
        );
    }
    assert!(!app
        .history_of(&token)
        .await
        .iter()
        .any(|e| e.starts_with("issuer re")));
}

async fn card_fields_are_accepted_at_their_limits_and_refused_beyond_with_400(app: LifecycleApp) {
    let (card_ref, extra) = new_card();
    app.active_token(extra).await;
    let cases: Vec<(&str, String, u16)> = vec![
        ("cardLastDigits", "12".into(), 200),
        ("cardLastDigits", "12345".into(), 200),
        ("cardLastDigits", "1".into(), 400),
        ("cardLastDigits", "123456".into(), 400),
        ("cardLastDigits", "12a4".into(), 400),
        ("cardExpiryDate", "1231".into(), 200),
        ("cardExpiryDate", "1331".into(), 400),
        ("cardExpiryDate", "0031".into(), 400),
        ("cardExpiryDate", "131".into(), 400),
        ("cardArtId", "a".repeat(64), 200),
        ("cardArtId", "a".repeat(65), 400),
        ("cardArtId", String::new(), 400),
        ("issuerCardRefId", "i".repeat(64), 200),
        ("issuerCardRefId", "i".repeat(65), 400),
        ("issuerCardRefId", String::new(), 400),
        ("newCipheredCardInfo", "c".repeat(8196), 200),
        ("newCipheredCardInfo", "c".repeat(8197), 400),
        ("newCipheredCardInfo", String::new(), 400),
        ("cipheredCardInfoKeyId", "k".repeat(64), 200),
        ("cipheredCardInfoKeyId", "k".repeat(65), 400),
        ("cipheredCardInfoKeyId", String::new(), 400),
    ];
    for (field, value, status) in cases {
        let mut body = json!({"cardExpiryDate": "0131"});
        body[field] = json!(value);
        let answer = app
            .admin_post(&card_url(&card_ref, "renew"), Some(&body))
            .await;
        assert_eq!(
            answer.status,
            status,
            "{field} of {} characters: {answer:?}",
            value.chars().count()
        );
    }
    let body = json!({"cardExpiryDate": "0131"});
    let renew = |issuer: &str, card: &str| format!("/admin/v1/issuers/{issuer}/cards/{card}/renew");
    app.admin_post(&renew("ISSUER001", &card_ref), Some(&body))
        .await
        .expect(400);
    app.admin_post(&renew(ISSUER, &"c".repeat(65)), Some(&body))
        .await
        .expect(400);
    app.admin_post(&renew(ISSUER, &"c".repeat(64)), Some(&body))
        .await
        .expect(404);
}

async fn a_card_without_an_active_or_suspended_token_is_404(app: LifecycleApp) {
    let body = json!({"cardExpiryDate": "0131"});
    let answer = app
        .admin_post(&card_url("no-such-card", "renew"), Some(&body))
        .await;
    assert_eq!(answer.expect(404)["error"], "NOT_FOUND");

    let (card_ref, extra) = new_card();
    app.digitize(extra.clone()).await;
    let deleted = app.active_token(extra.clone()).await;
    app.token_action(&deleted, "delete", None).await.expect(200);
    for what in ["renew", "replace"] {
        let body = json!({"cardExpiryDate": "0131", "cardLastDigits": "99"});
        app.admin_post(&card_url(&card_ref, what), Some(&body))
            .await
            .expect(404);
    }

    let (card_ref, extra) = new_card();
    app.active_token(extra).await;
    app.put_issuer(OTHER_ISSUER).await;
    for issuer in ["UNKNOWN001", OTHER_ISSUER] {
        app.admin_post(
            &format!("/admin/v1/issuers/{issuer}/cards/{card_ref}/renew"),
            Some(&body),
        )
        .await
        .expect(404);
    }
}

// ---- token requestors ----

async fn a_requestor_is_registered_and_its_api_key_and_secrets_are_never_shown(app: LifecycleApp) {
    let secrets = [signing_secret(32), signing_secret(64)];
    let api_key = format!("key-{}", uuid::Uuid::new_v4().simple());
    let body = json!({
        "merchantId": "MERCHANT-1",
        "baseUrl": "https://psp.example.com/hooks",
        "apiKey": api_key,
        "signingSecrets": secrets,
    });
    let want = json!({
        "requestorId": REQUESTOR,
        "merchantId": "MERCHANT-1",
        "baseUrl": "https://psp.example.com/hooks",
        "signingSecrets": 2,
        "maxInFlight": 16,
        "state": "ENABLED",
        "deliveries": {},
    });
    let put = app.put_requestor_body(REQUESTOR, &body).await;
    let get = app
        .admin_get(&format!("/admin/v1/token-requestors/{REQUESTOR}"))
        .await;
    for answer in [&put, &get] {
        assert_eq!(answer.expect(200), &want);
        assert!(!answer.text.contains(&api_key), "{}", answer.text);
        for s in &secrets {
            let b64 = s.strip_prefix("whsec_").unwrap();
            assert!(!answer.text.contains(b64), "{}", answer.text);
        }
    }

    // Put again: replaced.
    let mut body = body;
    body["signingSecrets"] = json!([signing_secret(16)]);
    body["maxInFlight"] = json!(4);
    body["merchantId"] = json!("MERCHANT-2");
    let v = app
        .put_requestor_body(REQUESTOR, &body)
        .await
        .expect(200)
        .clone();
    assert_eq!(
        (&v["signingSecrets"], &v["maxInFlight"], &v["merchantId"]),
        (&json!(1), &json!(4), &json!("MERCHANT-2"))
    );
    app.admin_get("/admin/v1/token-requestors/no-such-requestor")
        .await
        .expect(404);
}

async fn a_signing_secret_must_be_whsec_and_base64_of_16_to_64_bytes(app: LifecycleApp) {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let url_safe = format!(
        "whsec_{}",
        base64::engine::general_purpose::URL_SAFE.encode([0xfb; 32])
    );
    let cases: Vec<(String, u16)> = vec![
        (signing_secret(16), 200),
        (signing_secret(64), 200),
        (signing_secret(15), 400),
        (signing_secret(65), 400),
        ("whsec_".into(), 400),
        ("nope".into(), 400),
        ("whsec_***".into(), 400),
        (format!("WHSEC_{}", b64(&[1; 32])), 400),
        (b64(&[1; 32]), 400),
        (url_safe, 400),
    ];
    for (i, (secret, status)) in cases.into_iter().enumerate() {
        let id = format!("r-{i}");
        let mut body = requestor_body();
        body["signingSecrets"] = json!([secret]);
        let answer = app.put_requestor_body(&id, &body).await;
        assert_eq!(answer.status, status, "{secret}: {answer:?}");
        if status == 400 {
            assert!(
                secret.len() <= "whsec_".len() || !answer.text.contains(&secret),
                "the refusal does not repeat the secret: {}",
                answer.text
            );
            app.admin_get(&format!("/admin/v1/token-requestors/{id}"))
                .await
                .expect(404);
        }
    }
}

async fn a_requestor_needs_1_to_8_signing_secrets(app: LifecycleApp) {
    for (n, status) in [(0, 400), (1, 200), (8, 200), (9, 400)] {
        let mut body = requestor_body();
        body["signingSecrets"] = json!((0..n).map(|_| signing_secret(32)).collect::<Vec<_>>());
        let answer = app.put_requestor_body(&format!("r-{n}"), &body).await;
        assert_eq!(answer.status, status, "{n} secrets: {answer:?}");
    }
    // One bad secret among good ones spoils the lot.
    let mut body = requestor_body();
    body["signingSecrets"] = json!([signing_secret(32), "nope"]);
    app.put_requestor_body("r-mixed", &body).await.expect(400);
}

async fn other_requestor_fields_are_checked_at_their_limits(app: LifecycleApp) {
    let cases: Vec<(&str, Value, u16)> = vec![
        ("merchantId", json!("m".repeat(64)), 200),
        ("merchantId", json!("m".repeat(65)), 400),
        ("merchantId", json!(""), 400),
        ("apiKey", json!("k".repeat(256)), 200),
        ("apiKey", json!("k".repeat(257)), 400),
        ("apiKey", json!(""), 400),
        ("apiKey", json!("with space"), 400),
        ("apiKey", json!("clé"), 400),
        ("maxInFlight", json!(1), 200),
        ("maxInFlight", json!(1024), 200),
        ("maxInFlight", json!(0), 400),
        ("maxInFlight", json!(1025), 400),
        ("baseUrl", json!("ftp://psp.example.com/hooks"), 400),
        ("baseUrl", json!("not a url"), 400),
        ("baseUrl", json!("http://"), 400),
    ];
    for (field, value, status) in cases {
        let mut body = requestor_body();
        body[field] = value.clone();
        let answer = app.put_requestor_body(REQUESTOR, &body).await;
        assert_eq!(answer.status, status, "{field} = {value}: {answer:?}");
    }
    for (id, status) in [("r".repeat(32), 200), ("r".repeat(33), 400)] {
        let answer = app.put_requestor_body(&id, &requestor_body()).await;
        assert_eq!(answer.status, status, "requestorId {id}");
    }
    app.put_requestor_body("shop%201", &requestor_body())
        .await
        .expect(400);
}

async fn a_base_url_at_a_non_public_address_outside_the_allow_list_is_400(app: LifecycleApp) {
    // This hub allows 127.0.0.0/8 only.
    for url in [
        "http://10.0.0.1/hooks",
        "http://172.16.0.1/hooks",
        "http://192.168.1.10/hooks",
        "http://169.254.169.254/latest",
        "http://100.64.0.1/hooks",
        "http://0.0.0.0:8080/hooks",
        "http://[::1]:8080/hooks",
        "http://[fd00::1]/hooks",
        "http://[fe80::1]/hooks",
        "http://[::ffff:10.0.0.1]/hooks",
    ] {
        let mut body = requestor_body();
        body["baseUrl"] = json!(url);
        let answer = app.put_requestor_body(REQUESTOR, &body).await;
        assert_eq!(answer.status, 400, "{url}: {answer:?}");
    }
    for url in ["http://127.0.0.1:9/hooks", "https://psp.example.com/hooks"] {
        let mut body = requestor_body();
        body["baseUrl"] = json!(url);
        app.put_requestor_body(REQUESTOR, &body).await.expect(200);
    }
}

async fn a_loopback_base_url_is_400_when_the_hub_does_not_allow_it(app: TestApp) {
    for url in ["http://127.0.0.1:9/hooks", "http://[::1]:9/hooks"] {
        let mut body = requestor_body();
        body["baseUrl"] = json!(url);
        let answer = app
            .admin_send(
                reqwest::Method::PUT,
                &format!("/admin/v1/token-requestors/{REQUESTOR}"),
                Some(&body),
            )
            .await;
        assert_eq!(answer.status, 400, "{url}: {answer:?}");
        assert!(
            answer.json["message"]
                .as_str()
                .unwrap()
                .contains("TOKENHUB_OUTBOUND_ALLOW"),
            "{answer:?}"
        );
    }
    app.admin_get(&format!("/admin/v1/token-requestors/{REQUESTOR}"))
        .await
        .expect(404);
}

// ---- token updates to requestors ----

async fn a_token_update_reaches_the_requestor_signed_with_every_secret(app: LifecycleApp) {
    let receiver = Receiver::start().await;
    let creds = app
        .register_requestor(REQUESTOR, &receiver.base_url(), 2)
        .await;
    let token = app
        .active_token(json!({"tokenRequestorId": REQUESTOR, "card": card()}))
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
    let d = app.newest_delivery_of(&token).await;
    let d = app.delivery_in_state(delivery_id(&d), "DELIVERED").await;
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

    let listed = app.requestor_deliveries(REQUESTOR, "").await;
    let listed = listed.expect(200).as_array().unwrap().clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["deliveryId"], d["deliveryId"]);
    assert!(listed[0].get("body").is_none(), "the list has no bodies");
    assert_eq!(app.token_deliveries(&token).await, listed);
    let view = app
        .admin_get(&format!("/admin/v1/token-requestors/{REQUESTOR}"))
        .await;
    assert_eq!(view.expect(200)["deliveries"], json!({"DELIVERED": 1}));
}

async fn updates_are_queued_only_for_personalized_tokens_of_registered_requestors(
    app: LifecycleApp,
) {
    let receiver = Receiver::start().await;
    app.register_requestor(REQUESTOR, &receiver.base_url(), 1)
        .await;
    let unregistered = app
        .active_token(json!({"tokenRequestorId": "not-registered"}))
        .await;
    assert_eq!(
        app.token_deliveries(&unregistered).await,
        Vec::<Value>::new()
    );
    let without = app.active_token(json!({})).await;
    assert_eq!(app.token_deliveries(&without).await, Vec::<Value>::new());

    // Not while the token waits for its data or its device.
    let token = app.digitize(json!({"tokenRequestorId": REQUESTOR})).await;
    let mut body = update(&at(0));
    body["tokenExpiryDate"] = json!("0131");
    app.post_update(&token, &body).await.assert_accepted();
    assert_eq!(app.token_deliveries(&token).await, Vec::<Value>::new());
    app.complete_data(&token).await;
    assert_eq!(app.token_deliveries(&token).await, Vec::<Value>::new());
    app.confirm_personalization(&token).await;
    let deliveries = app.token_deliveries(&token).await;
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let d = app
        .delivery_in_state(delivery_id(&deliveries[0]), "DELIVERED")
        .await;
    assert_eq!(d["body"]["tokenState"], "ACTIVE");
    assert_eq!(d["body"]["tokenExpiryDate"], "0131");

    // A deleted token's requestor is told, whatever the state it was deleted in.
    let deleted = app.digitize(json!({"tokenRequestorId": REQUESTOR})).await;
    app.post_update(&deleted, &update_state(&at(0), "DELETED"))
        .await
        .assert_accepted();
    let d = app.newest_delivery_of(&deleted).await;
    let d = app.delivery_in_state(delivery_id(&d), "DELIVERED").await;
    assert_eq!(d["body"]["tokenState"], "DELETED");

    let all = app.requestor_deliveries(REQUESTOR, "").await;
    assert_eq!(all.expect(200).as_array().unwrap().len(), 2);
    assert_eq!(receiver.wait_for(2).await.len(), 2);
}

async fn every_change_reaches_the_requestor_with_the_tokens_whole_state(app: LifecycleApp) {
    let (card_ref, mut extra) = new_card();
    extra["tokenRequestorId"] = json!(REQUESTOR);
    extra["card"] = card();
    let receiver = Receiver::start().await;
    app.register_requestor(REQUESTOR, &receiver.base_url(), 1)
        .await;
    let token = app.active_token(extra).await;
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
    assert_eq!(app.token_deliveries(&token).await.len(), 5);
}

async fn a_refused_update_is_dead_until_it_is_replayed(app: LifecycleApp) {
    let (receiver, creds, token) = token_of_a_requestor(&app, &[400]).await;
    let d = app.newest_delivery_of(&token).await;
    let id = delivery_id(&d);
    let dead = app.delivery_in_state(id, "DEAD").await;
    assert_eq!(dead["attempts"], 1);
    assert_eq!(dead["lastStatus"], 400);
    assert!(dead.get("nextAttemptAt").is_none(), "{dead}");
    assert_eq!(dead["attemptLog"].as_array().unwrap().len(), 1);
    let dead_letters = app.requestor_deliveries(REQUESTOR, "?state=DEAD").await;
    let dead_letters = dead_letters.expect(200).as_array().unwrap().clone();
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0]["deliveryId"], id);
    let view = app
        .admin_get(&format!("/admin/v1/token-requestors/{REQUESTOR}"))
        .await;
    assert_eq!(view.expect(200)["deliveries"], json!({"DEAD": 1}));

    let replay = format!("/admin/v1/deliveries/{id}/replay");
    app.admin_post(&replay, None).await.expect(204);
    let delivered = app.delivery_in_state(id, "DELIVERED").await;
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

async fn a_failing_update_is_retried_on_the_schedule_then_dead(app: LifecycleApp) {
    let receiver = Receiver::start().await;
    receiver.answer_by_default(503);
    app.register_requestor(REQUESTOR, &receiver.base_url(), 1)
        .await;
    let token = app
        .active_token(json!({"tokenRequestorId": REQUESTOR}))
        .await;
    // RETRY_SCHEDULE has two waits: three attempts in all.
    let received = app.wait_for_attempts(&receiver, 3).await;
    let d = app.newest_delivery_of(&token).await;
    let dead = app.delivery_in_state(delivery_id(&d), "DEAD").await;
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
    app.delivery_in_state(delivery_id(&d), "DELIVERED").await;
    assert_eq!(receiver.wait_for(4).await[3].answered, 204);
}

async fn a_retryable_failure_is_delivered_on_the_next_try(app: LifecycleApp) {
    let (receiver, _, token) = token_of_a_requestor(&app, &[503, 429]).await;
    let received = app.wait_for_attempts(&receiver, 3).await;
    let answered: Vec<u16> = received.iter().map(|r| r.answered).collect();
    assert_eq!(answered, [503, 429, 204]);
    let d = app.newest_delivery_of(&token).await;
    let d = app.delivery_in_state(delivery_id(&d), "DELIVERED").await;
    assert_eq!(d["attempts"], 3);
    assert_eq!(d["lastStatus"], 204);
}

async fn a_gone_endpoint_disables_the_requestor_until_it_is_enabled_again(app: LifecycleApp) {
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
    let newest = app.newest_delivery_of(&token).await;
    app.delivery_in_state(delivery_id(&newest), "DELIVERED")
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
async fn requestor_disabled(app: &LifecycleApp, requestor_id: &str) -> Value {
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
/// enabled again; a newer change supersedes the update that waits. Written out by hand (not
/// `lifecycle_tests!`) because it finds a hub bug: the notifier may claim the held update again
/// in the moment the 410 is recorded. The race is short, so the case runs for several requestors.
mod a_disabled_requestor_gets_no_attempt {
    use super::*;

    async fn body(app: LifecycleApp) {
        for i in 0..6 {
            let requestor = format!("gone-{i}");
            let receiver = Receiver::start().await;
            receiver.answer_next(&[410]);
            app.register_requestor(&requestor, &receiver.base_url(), 1)
                .await;
            let token = app
                .active_token(json!({"tokenRequestorId": requestor}))
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
            let first = app.newest_delivery_of(&token).await;
            assert_eq!(first["state"], "PENDING", "it waits: {first}");
            assert_eq!(first["lastStatus"], 410);

            app.token_action(&token, "suspend", None).await.expect(200);
            let deliveries = app.token_deliveries(&token).await;
            let states: Vec<&Value> = deliveries.iter().map(|d| &d["state"]).collect();
            assert_eq!(states, [&json!("PENDING"), &json!("SUPERSEDED")]);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        body(spawn_lifecycle_app(crate::helpers::Backend::Sqlite).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(url) = crate::helpers::postgres_url_or_skip(module_path!()) else {
            return;
        };
        body(spawn_lifecycle_app(crate::helpers::Backend::Postgres(url)).await).await;
    }
}

async fn the_dead_letters_of_a_requestor_are_replayed_together(app: LifecycleApp) {
    let (receiver, _, first) = token_of_a_requestor(&app, &[400, 400]).await;
    let second = app
        .active_token(json!({"tokenRequestorId": REQUESTOR}))
        .await;
    let mut ids = Vec::new();
    for token in [&first, &second] {
        let d = app.newest_delivery_of(token).await;
        app.delivery_in_state(delivery_id(&d), "DEAD").await;
        ids.push(delivery_id(&d));
    }
    let replay = format!("/admin/v1/token-requestors/{REQUESTOR}/dead-letters/replay");
    let answer = app.admin_post(&replay, None).await;
    assert_eq!(answer.expect(200), &json!({"replayed": 2}));
    for id in ids {
        app.delivery_in_state(id, "DELIVERED").await;
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

async fn deliveries_are_listed_by_state_and_unknown_ones_are_404(app: LifecycleApp) {
    let (_receiver, _, token) = token_of_a_requestor(&app, &[]).await;
    app.token_action(&token, "suspend", None).await.expect(200);
    let newest = app.newest_delivery_of(&token).await;
    app.delivery_in_state(delivery_id(&newest), "DELIVERED")
        .await;
    let all = app.requestor_deliveries(REQUESTOR, "").await;
    let all = all.expect(200).as_array().unwrap().clone();
    assert!(!all.is_empty());
    assert_eq!(all[0]["deliveryId"], newest["deliveryId"], "newest first");
    let limited = app.requestor_deliveries(REQUESTOR, "?limit=1").await;
    assert_eq!(limited.expect(200).as_array().unwrap().len(), 1);
    let pending = app.requestor_deliveries(REQUESTOR, "?state=DEAD").await;
    assert_eq!(pending.expect(200), &json!([]));
    app.requestor_deliveries(REQUESTOR, "?state=BOGUS")
        .await
        .expect(400);
    app.admin_get("/admin/v1/deliveries/999999")
        .await
        .expect(404);
    app.admin_post("/admin/v1/deliveries/999999/replay", None)
        .await
        .expect(404);
}
