//! The requestor API (`/requestor/v1`) end to end against the TSP simulator: card-on-file
//! tokens made once per idempotency key, Create Transaction with cryptograms that pay exactly
//! once, scope (another requestor's token is unknown), the TSP's refusals and absence, cards that
//! are not JWEs, deletion and renewal reaching the requestor, and no PAN stored.

use crate::support::*;
use serde_json::json;

hub_tests!(
    config = requestors_allowed;
    a_card_is_tokenized_once_per_idempotency_key_and_each_cryptogram_pays_once,
    requestors_are_authenticated_and_see_only_their_own_tokens,
    the_tsps_refusals_are_clear_errors_with_its_code,
    a_card_that_is_not_a_jwe_to_a_published_key_is_400,
    an_absent_tsp_is_a_retryable_503,
    a_deleted_token_gets_no_transaction_and_its_requestor_is_told,
    a_renewal_reaches_the_requestor_and_create_transaction_gives_the_new_pan,
);

const VISA: &str = "4111111111111111";
const MASTERCARD: &str = "5555555555554444";

async fn a_card_is_tokenized_once_per_idempotency_key_and_each_cryptogram_pays_once(app: TestApp) {
    let cof = app.card_on_file().await;
    let r = &cof.requestor;
    let jwe = cof.card(VISA);
    let made = app.tokenize(r, "idem-1", &jwe).await;
    let token = made.expect(201).clone();
    assert_eq!(token["tokenState"], "ACTIVE");
    assert_eq!(token["cardLastDigits"], "1111");
    assert_eq!(token["requestorReference"], "card-ref-1");
    let token_id = token["tokenId"].as_str().unwrap();
    let again = app.tokenize(r, "idem-1", &jwe).await;
    assert_eq!(again.expect(200)["tokenId"], token["tokenId"]);
    assert_eq!(
        cof.sim.status().tokens_created,
        1,
        "one TSP call, one token"
    );
    let other_body = app.tokenize(r, "idem-1", &cof.card(MASTERCARD)).await;
    assert_eq!(other_body.expect(422)["error"], "IDEMPOTENCY_KEY_REUSED");

    let read = app.requestor_get(r, token_id).await;
    let read = read.expect(200);
    assert_eq!(read["tokenLastDigits"], token["tokenLastDigits"]);
    assert!(!read.to_string().contains(VISA));

    let txn = app.create_transaction(r, token_id, "1250").await;
    let txn = txn.expect(201).clone();
    let pan = txn["tokenPan"].as_str().unwrap();
    assert!(pan.ends_with(token["tokenLastDigits"].as_str().unwrap()));
    assert_ne!(pan, VISA);
    assert_eq!(txn["eci"], "05");
    let merchant = merchant_of("REQ1");
    assert_eq!(
        cof.authorize(&txn, "1300", &merchant).reason,
        "BAD_CRYPTOGRAM"
    );
    assert_eq!(
        cof.authorize(&txn, "1250", "ANOTHER-MERCHANT").reason,
        "BAD_CRYPTOGRAM"
    );
    assert_eq!(cof.authorize(&txn, "1250", &merchant).reason, "APPROVED");
    assert_eq!(cof.authorize(&txn, "1250", &merchant).reason, "REPLAY");
    let next = app.create_transaction(r, token_id, "1250").await;
    assert_eq!(
        cof.authorize(next.expect(201), "1250", &merchant).reason,
        "APPROVED"
    );

    let bad = json!({"amount": "12.50", "currency": "EUR", "transactionType": "CIT_ECOM"});
    let path = format!("/requestor/v1/tokens/{token_id}/transactions");
    let refused = app
        .requestor_call(Some(&r.key), reqwest::Method::POST, &path, &[], Some(&bad))
        .await;
    refused.expect(400);

    let stored = app.stored_bytes().await;
    for secret in [VISA, pan, txn["cryptogram"].as_str().unwrap()] {
        assert!(
            !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a PAN or cryptogram is stored"
        );
    }
}

async fn requestors_are_authenticated_and_see_only_their_own_tokens(app: TestApp) {
    let cof = app.card_on_file().await;
    let made = app.tokenize(&cof.requestor, "k", &cof.card(VISA)).await;
    let token_id = made.expect(201)["tokenId"].as_str().unwrap().to_string();
    let path = format!("/requestor/v1/tokens/{token_id}");
    for key in [
        None,
        Some("trk_0123456789abcdef_nope"),
        Some(app.wallet_key.as_str()),
        Some(app.admin_key.as_str()),
    ] {
        let answer = app
            .requestor_call(key, reqwest::Method::GET, &path, &[], None)
            .await;
        assert_eq!(answer.status, 401, "{key:?}: {answer:?}");
    }
    // A revoked key is refused from then on.
    let spare = app
        .admin_post("/admin/v1/token-requestors/REQ1/api-keys", None)
        .await;
    let spare = spare.expect(201).clone();
    let spare_key = spare["apiKey"].as_str().unwrap();
    let before = app
        .requestor_call(Some(spare_key), reqwest::Method::GET, &path, &[], None)
        .await;
    before.expect(200);
    let key_id = spare["keyId"].as_str().unwrap();
    app.admin_send(
        reqwest::Method::DELETE,
        &format!("/admin/v1/token-requestors/REQ1/api-keys/{key_id}"),
        None,
    )
    .await
    .expect(204);
    let after = app
        .requestor_call(Some(spare_key), reqwest::Method::GET, &path, &[], None)
        .await;
    assert_eq!(after.status, 401);
    let other = app.api_requestor("REQ2", &cof.receiver.base_url()).await;
    let unknown = app
        .requestor_get(&other, "TKN0000000000000000000000000000")
        .await;
    let theirs = app.requestor_get(&other, &token_id).await;
    assert_eq!(theirs.status, 404);
    assert_eq!(
        theirs.json, unknown.json,
        "another's token answers as an unknown one"
    );
    app.create_transaction(&other, &token_id, "100")
        .await
        .expect(404);
    app.requestor_delete(&other, &token_id).await.expect(404);
    assert_eq!(
        app.requestor_get(&cof.requestor, &token_id)
            .await
            .expect(200)["tokenState"],
        "ACTIVE"
    );
    // The requestor API is served on the wallet listener only.
    let on_admin = app
        .client
        .get(format!("{}{path}", app.admin_address))
        .bearer_auth(&cof.requestor.key)
        .send()
        .await
        .unwrap();
    assert_eq!(on_admin.status(), 404);
}

async fn the_tsps_refusals_are_clear_errors_with_its_code(app: TestApp) {
    let cof = app.card_on_file().await;
    let r = &cof.requestor;
    let cases = [
        ("4111111111111112", 422, "INVALID_CARD", 166),
        ("6011111111111117", 422, "UNKNOWN_PRODUCT", 115),
        ("378282246310005", 422, "CARD_NOT_ELIGIBLE", 163),
    ];
    for (i, (pan, status, error, code)) in cases.into_iter().enumerate() {
        let answer = app
            .tokenize(r, &format!("refused-{i}"), &cof.card(pan))
            .await;
        let body = answer.expect(status);
        assert_eq!(body["error"], error);
        assert_eq!(body["tspResponseCode"], code);
    }
    app.tokenize(r, "first", &cof.card(VISA)).await.expect(201);
    let twice = app.tokenize(r, "second", &cof.card(VISA)).await;
    assert_eq!(twice.expect(409)["tspResponseCode"], 167);
    for id in ["REQ2", "REQ3"] {
        let other = app.api_requestor(id, &cof.receiver.base_url()).await;
        app.tokenize(&other, "k", &cof.card(VISA)).await.expect(201);
    }
    let fourth = app.api_requestor("REQ4", &cof.receiver.base_url()).await;
    let too_many = app.tokenize(&fourth, "k", &cof.card(VISA)).await;
    assert_eq!(too_many.expect(422)["tspResponseCode"], 164);
}

async fn a_card_that_is_not_a_jwe_to_a_published_key_is_400(app: TestApp) {
    let cof = app.card_on_file().await;
    let r = &cof.requestor;
    let other_key = tokenhub_sim::seal_card(
        &json!({"kty": "EC", "crv": "P-256", "kid": "not-published",
            "x": cof.sim.encryption_jwk()["x"], "y": cof.sim.encryption_jwk()["y"]}),
        br#"{"fpan":"4111111111111111","exp":"1240"}"#,
    )
    .unwrap();
    let plain = json!({"fpan": VISA, "exp": "1240"}).to_string();
    for (i, card) in ["not a jwe", "a.b.c.d.e", plain.as_str(), other_key.as_str()]
        .iter()
        .enumerate()
    {
        let answer = app.tokenize(r, &format!("bad-{i}"), card).await;
        assert_eq!(answer.expect(400)["error"], "INVALID_JWE", "{card}");
        assert!(!answer.text.contains(VISA));
    }
    let no_key = app
        .requestor_call(
            Some(&r.key),
            reqwest::Method::POST,
            "/requestor/v1/tokens",
            &[],
            Some(&json!({"encryptedCard": cof.card(VISA)})),
        )
        .await;
    no_key.expect(400);
    assert_eq!(cof.sim.status().tokens_created, 0);
    let keys = app
        .requestor_call(
            Some(&r.key),
            reqwest::Method::GET,
            "/requestor/v1/encryption-keys",
            &[],
            None,
        )
        .await;
    let keys = keys.expect(200)["keys"].clone();
    assert_eq!(keys[0]["tspId"], TSP_ID);
    assert_eq!(keys[0]["jwk"], cof.sim.encryption_jwk());
    let private = json!({"kty": "EC", "crv": "P-256", "kid": "k", "x": "a", "y": "b", "d": "c"});
    app.admin_send(
        reqwest::Method::PUT,
        &format!("/admin/v1/tsps/{TSP_ID}/card-encryption-key"),
        Some(&private),
    )
    .await
    .expect(400);
}

async fn an_absent_tsp_is_a_retryable_503(app: TestApp) {
    let cof = app.card_on_file().await;
    let r = &cof.requestor;
    let made = app.tokenize(r, "k", &cof.card(VISA)).await;
    let token_id = made.expect(201)["tokenId"].as_str().unwrap().to_string();
    let jwe = cof.card(MASTERCARD);
    cof.sim.shutdown().await.unwrap();
    let answer = app.tokenize(r, "k2", &jwe).await;
    assert_eq!(answer.expect(503)["error"], "TSP_UNAVAILABLE");
    let txn = app.create_transaction(r, &token_id, "100").await;
    assert_eq!(txn.expect(503)["error"], "TSP_UNAVAILABLE");
    app.requestor_delete(r, &token_id).await.expect(503);
    assert_eq!(
        app.requestor_get(r, &token_id).await.expect(200)["tokenState"],
        "ACTIVE"
    );
}

async fn a_deleted_token_gets_no_transaction_and_its_requestor_is_told(app: TestApp) {
    let cof = app.card_on_file().await;
    let r = &cof.requestor;
    let made = app.tokenize(r, "k", &cof.card(VISA)).await;
    let token_id = made.expect(201)["tokenId"].as_str().unwrap().to_string();
    app.requestor_delete(r, &token_id).await.expect(204);
    assert_eq!(
        cof.sim.card_on_file_state(&token_id),
        Some(tokenhub_sim::TspTokenState::Deleted)
    );
    app.requestor_delete(r, &token_id).await.expect(204);
    let refused = app.create_transaction(r, &token_id, "100").await;
    let body = refused.expect(409);
    assert_eq!(body["error"], "TOKEN_NOT_ACTIVE");
    assert!(body["message"].as_str().unwrap().contains("DELETED"));
    assert_eq!(
        app.requestor_get(r, &token_id).await.expect(200)["tokenState"],
        "DELETED"
    );
    let got = cof.receiver.wait_for(1).await;
    assert_eq!(got[0].json()["tokenId"], token_id.as_str());
    assert_eq!(got[0].json()["tokenState"], "DELETED");
}

async fn a_renewal_reaches_the_requestor_and_create_transaction_gives_the_new_pan(app: TestApp) {
    let cof = app.card_on_file().await;
    let r = &cof.requestor;
    let made = app.tokenize(r, "k", &cof.card(MASTERCARD)).await;
    let token = made.expect(201).clone();
    let token_id = token["tokenId"].as_str().unwrap();
    let old = app
        .create_transaction(r, token_id, "500")
        .await
        .expect(201)
        .clone();
    assert!(old["tokenPan"].as_str().unwrap().starts_with("520473"));

    let update = cof.sim.renew_card_on_file_unsent(token_id).unwrap();
    let body = serde_json::to_value(&update).unwrap();
    assert_eq!(app.post_update(token_id, &body).await.status, 204);
    let new_digits = update.token_last_digits.clone().unwrap();
    assert_ne!(Some(new_digits.as_str()), token["tokenLastDigits"].as_str());

    let got = cof.receiver.wait_for(1).await;
    assert_eq!(got[0].json()["tokenLastDigits"], new_digits.as_str());
    assert_eq!(got[0].json()["tokenState"], "ACTIVE");
    let read = app.requestor_get(r, token_id).await;
    assert_eq!(read.expect(200)["tokenLastDigits"], new_digits.as_str());
    let merchant = merchant_of("REQ1");
    assert_eq!(
        cof.authorize(&old, "500", &merchant).reason,
        "UNKNOWN_TOKEN"
    );
    let new = app
        .create_transaction(r, token_id, "500")
        .await
        .expect(201)
        .clone();
    assert!(new["tokenPan"].as_str().unwrap().ends_with(&new_digits));
    assert_eq!(cof.authorize(&new, "500", &merchant).reason, "APPROVED");

    let mut from_another_issuer = body.clone();
    from_another_issuer["issuerId"] = json!(OTHER_ISSUER);
    assert_eq!(
        app.post_update(token_id, &from_another_issuer).await.status,
        400
    );
}
