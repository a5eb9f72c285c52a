//! Renewing and replacing a card on the admin API (`/admin/v1/issuers/{issuerId}/cards/…`): its
//! ACTIVE and SUSPENDED tokens are updated and the TSP is told (`updateToken`).

use crate::support::*;
use serde_json::json;

hub_tests!(
    config = requestors_allowed;
    renewing_a_card_updates_its_active_and_suspended_tokens_and_the_tsp_is_told,
    replacing_a_card_gives_its_tokens_new_last_digits,
    a_renewal_needs_card_expiry_date_and_a_replacement_card_last_digits,
    card_fields_are_accepted_at_their_limits_and_refused_beyond_with_400,
    a_card_without_an_active_or_suspended_token_is_404,
);

async fn renewing_a_card_updates_its_active_and_suspended_tokens_and_the_tsp_is_told(app: TestApp) {
    let (card_ref, extra) = new_card();
    let active = app.active_token_from(extra.clone()).await;
    let suspended = app.active_token_from(extra.clone()).await;
    app.token_action(&suspended, "suspend", None)
        .await
        .expect(200);
    let pending = app.digitize_with(extra.clone()).await;
    let deleted = app.active_token_from(extra.clone()).await;
    app.token_action(&deleted, "delete", None).await.expect(200);
    let other_card = app.active_token_from(json!({})).await;

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

    assert_eq!(app.token_state(&active).await, "ACTIVE");
    assert_eq!(app.token_state(&suspended).await, "SUSPENDED");
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

async fn replacing_a_card_gives_its_tokens_new_last_digits(app: TestApp) {
    let (card_ref, extra) = new_card();
    let token = app.active_token_from(extra).await;
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

async fn a_renewal_needs_card_expiry_date_and_a_replacement_card_last_digits(app: TestApp) {
    let (card_ref, extra) = new_card();
    let token = app.active_token_from(extra).await;
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

async fn card_fields_are_accepted_at_their_limits_and_refused_beyond_with_400(app: TestApp) {
    let (card_ref, extra) = new_card();
    app.active_token_from(extra).await;
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

async fn a_card_without_an_active_or_suspended_token_is_404(app: TestApp) {
    let body = json!({"cardExpiryDate": "0131"});
    let answer = app
        .admin_post(&card_url("no-such-card", "renew"), Some(&body))
        .await;
    assert_eq!(answer.expect(404)["error"], "NOT_FOUND");

    let (card_ref, extra) = new_card();
    app.digitize_with(extra.clone()).await;
    let deleted = app.active_token_from(extra.clone()).await;
    app.token_action(&deleted, "delete", None).await.expect(200);
    for what in ["renew", "replace"] {
        let body = json!({"cardExpiryDate": "0131", "cardLastDigits": "99"});
        app.admin_post(&card_url(&card_ref, what), Some(&body))
            .await
            .expect(404);
    }

    let (card_ref, extra) = new_card();
    app.active_token_from(extra).await;
    app.register_issuer(OTHER_ISSUER).await;
    for issuer in ["UNKNOWN001", OTHER_ISSUER] {
        app.admin_post(
            &format!("/admin/v1/issuers/{issuer}/cards/{card_ref}/renew"),
            Some(&body),
        )
        .await
        .expect(404);
    }
}
