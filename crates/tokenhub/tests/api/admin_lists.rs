//! The admin API's lists of the registered objects that had only a read by id: issuers and
//! wallet providers, each a page at a time by id, an issuer's tokens by card, a product's profile
//! versions (and each version's definition), a requestor's API keys; an
//! issuer-admin's key lists and reads only the issuers it covers and their tokens, and is refused
//! the wallet providers, which no issuer owns.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};

hub_tests!(
    issuers_are_listed_a_page_at_a_time_and_an_issuer_admin_sees_only_its_own,
    wallet_providers_are_listed_a_page_at_a_time_without_their_keys,
    an_issuers_tokens_are_listed_by_card_a_page_at_a_time_and_only_to_its_keys,
    a_products_profile_versions_are_listed_with_the_current_one_and_each_reads_back,
);

hub_tests!(config = requestors_allowed;
    a_requestors_api_keys_are_listed_by_id_and_time_never_a_key,
);

/// Every page of a list, following `next` with pages of `limit`: the ids in order, and the
/// number of pages.
async fn all_pages(
    app: &TestApp,
    credential: &str,
    path: &str,
    limit: usize,
    id: &str,
) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            None => format!("{path}?limit={limit}"),
            Some(c) => format!("{path}?limit={limit}&cursor={c}"),
        };
        let a = app.admin_as(credential, Method::GET, &url, None).await;
        let page = a.expect(200);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= limit, "{page}");
        ids.extend(items.iter().map(|i| i[id].as_str().unwrap().to_string()));
        pages += 1;
        match page.get("next") {
            Some(Value::String(next)) => cursor = Some(next.clone()),
            None => break,
            Some(other) => panic!("next is {other}"),
        }
        assert!(pages < 20, "the pages do not end");
    }
    (ids, pages)
}

async fn issuers_are_listed_a_page_at_a_time_and_an_issuer_admin_sees_only_its_own(app: TestApp) {
    for issuer in [OTHER_ISSUER, "ISSUER0003"] {
        app.register_issuer(issuer).await;
    }
    let (ids, pages) = all_pages(&app, &app.admin_key, "/admin/v1/issuers", 2, "issuerId").await;
    assert_eq!(ids, [ISSUER, OTHER_ISSUER, "ISSUER0003"]);
    assert_eq!(pages, 2);
    let first = app
        .admin_get("/admin/v1/issuers?limit=1")
        .await
        .expect(200)
        .clone();
    assert_eq!(
        first["items"][0],
        json!({"issuerId": ISSUER, "name": "First Test Bank", "tspId": TSP_ID})
    );
    assert_eq!(first["next"], ISSUER);

    let one = app
        .admin_get(&format!("/admin/v1/issuers/{OTHER_ISSUER}"))
        .await;
    assert_eq!(
        one.expect(200),
        &json!({"issuerId": OTHER_ISSUER, "name": "Test Bank", "tspId": TSP_ID})
    );
    let missing = app.admin_get("/admin/v1/issuers/UNKNOWN001").await;
    assert_eq!(missing.status, 404, "{missing:?}");

    // An issuer-admin of two issuers lists those two, a page at a time, and reads another
    // issuer as a missing one.
    let scoped = app
        .create_admin_key(&json!({"role": "issuer-admin", "issuers": ["ISSUER0003", ISSUER]}))
        .await;
    let (ids, pages) = all_pages(&app, &scoped, "/admin/v1/issuers", 1, "issuerId").await;
    assert_eq!(ids, [ISSUER, "ISSUER0003"]);
    assert_eq!(pages, 2);
    let own = app
        .admin_as(
            &scoped,
            Method::GET,
            &format!("/admin/v1/issuers/{ISSUER}"),
            None,
        )
        .await;
    own.expect(200);
    let other = app
        .admin_as(
            &scoped,
            Method::GET,
            &format!("/admin/v1/issuers/{OTHER_ISSUER}"),
            None,
        )
        .await;
    assert_eq!(other.status, 404, "{other:?}");
    assert_eq!(other.text, missing.text.replace("UNKNOWN001", OTHER_ISSUER));

    let reader = app.create_admin_key(&json!({"role": "read-only"})).await;
    let (ids, _) = all_pages(&app, &reader, "/admin/v1/issuers", 50, "issuerId").await;
    assert_eq!(ids.len(), 3);
    let custodian = app
        .create_admin_key(&json!({"role": "key-custodian"}))
        .await;
    let refused = app
        .admin_as(&custodian, Method::GET, "/admin/v1/issuers", None)
        .await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let refused = app
        .admin_as(ADMIN_TOKEN, Method::GET, "/admin/v1/issuers", None)
        .await;
    assert_eq!(refused.status, 403, "the bootstrap token: {refused:?}");
}

async fn wallet_providers_are_listed_a_page_at_a_time_without_their_keys(app: TestApp) {
    let before = all_pages(
        &app,
        &app.admin_key,
        "/admin/v1/wallet-providers",
        50,
        "providerId",
    )
    .await
    .0;
    let mut keys = Vec::new();
    for id in ["wp-c", "wp-a", "wp-b"] {
        keys.push(app.register_wallet_provider(id).await);
    }
    let (ids, pages) = all_pages(
        &app,
        &app.admin_key,
        "/admin/v1/wallet-providers",
        2,
        "providerId",
    )
    .await;
    let mut want: Vec<String> = before.clone();
    want.extend(["wp-a", "wp-b", "wp-c"].map(String::from));
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(pages, want.len().div_ceil(2));

    let page = app
        .admin_get("/admin/v1/wallet-providers?limit=200")
        .await
        .expect(200)
        .clone();
    let a = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["providerId"] == "wp-a")
        .unwrap();
    assert_eq!(a, &json!({"providerId": "wp-a", "name": "wp-a Inc."}));
    let text = page.to_string();
    for key in &keys {
        assert!(!text.contains(key.as_str()), "an API key in the list");
    }

    let reader = app.create_admin_key(&json!({"role": "read-only"})).await;
    app.admin_as(&reader, Method::GET, "/admin/v1/wallet-providers", None)
        .await
        .expect(200);
    let issuer_admin = app
        .create_admin_key(&json!({"role": "issuer-admin", "issuers": [ISSUER]}))
        .await;
    let refused = app
        .admin_as(
            &issuer_admin,
            Method::GET,
            "/admin/v1/wallet-providers",
            None,
        )
        .await;
    assert_eq!(refused.status, 403, "{refused:?}");
}

async fn an_issuers_tokens_are_listed_by_card_a_page_at_a_time_and_only_to_its_keys(app: TestApp) {
    app.register_issuer(OTHER_ISSUER).await;
    let r = app
        .put_profile_version(OTHER_ISSUER, PRODUCT, VERSION, &profile_definition())
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        app.deploy(OTHER_ISSUER, PRODUCT, VERSION).await.status(),
        200
    );
    let mut mine = Vec::new();
    for _ in 0..3 {
        let token = app.digitize_with(json!({"issuerId": ISSUER})).await;
        let card = app.get_token(&token).await["walletCardRefId"]
            .as_str()
            .unwrap()
            .to_string();
        mine.push((card, token));
    }
    // A second token of the first card: the same card's tokens follow each other by id.
    let again = app
        .digitize_with(json!({"issuerId": ISSUER, "walletCardRefId": mine[0].0}))
        .await;
    mine.push((mine[0].0.clone(), again));
    mine.sort();
    let theirs = app.digitize_with(json!({"issuerId": OTHER_ISSUER})).await;

    let path = format!("/admin/v1/issuers/{ISSUER}/tokens");
    let (ids, pages) = all_pages(&app, &app.admin_key, &path, 3, "tokenId").await;
    let want: Vec<String> = mine.iter().map(|(_, t)| t.clone()).collect();
    // By card, then token id (`card-…` and `TKN…` with lower-case hex: these sort alike in
    // every collation).
    assert_eq!(ids, want, "by card, then token id");
    assert_eq!(pages, 2);
    assert!(!ids.contains(&theirs));
    let first = app
        .admin_get(&format!("{path}?limit=1"))
        .await
        .expect(200)
        .clone();
    let item = &first["items"][0];
    assert_eq!(item["tokenId"], want[0].as_str());
    assert_eq!(item["walletCardRefId"], mine[0].0.as_str());
    assert_eq!(item["productId"], PRODUCT);
    assert!(
        item["state"].is_string() && item["createdAt"].is_string(),
        "{item}"
    );
    let bad = app.admin_get(&format!("{path}?cursor=not-a-cursor")).await;
    assert_eq!(bad.status, 400, "{bad:?}");
    let missing = app.admin_get("/admin/v1/issuers/UNKNOWN001/tokens").await;
    assert_eq!(missing.status, 404, "{missing:?}");

    // An issuer-admin lists its issuer's tokens; another issuer's answer as an unknown one's.
    let scoped = app
        .create_admin_key(&json!({"role": "issuer-admin", "issuers": [ISSUER]}))
        .await;
    let (ids, _) = all_pages(&app, &scoped, &path, 50, "tokenId").await;
    assert_eq!(ids, want);
    let other = app
        .admin_as(
            &scoped,
            Method::GET,
            &format!("/admin/v1/issuers/{OTHER_ISSUER}/tokens"),
            None,
        )
        .await;
    assert_eq!(other.status, 404, "{other:?}");
    assert_eq!(other.text, missing.text.replace("UNKNOWN001", OTHER_ISSUER));
}

async fn a_products_profile_versions_are_listed_with_the_current_one_and_each_reads_back(
    app: TestApp,
) {
    for version in ["v2", "v3"] {
        let r = app
            .put_profile_version(ISSUER, PRODUCT, version, &profile_definition())
            .await;
        assert_eq!(r.status(), 201, "{version}");
    }
    let path = format!("/admin/v1/issuers/{ISSUER}/products/{PRODUCT}/profiles");
    let (ids, pages) = all_pages(&app, &app.admin_key, &path, 2, "version").await;
    let mut want = vec![VERSION.to_string(), "v2".into(), "v3".into()];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(pages, 2);
    let page = app
        .admin_get(&format!("{path}?limit=10"))
        .await
        .expect(200)
        .clone();
    for item in page["items"].as_array().unwrap() {
        assert_eq!(item["current"], item["version"] == VERSION, "{item}");
        assert!(item["createdAt"].is_string(), "{item}");
    }

    // A version reads back as it was defined (canonical form).
    let defined = app
        .put_profile_version(ISSUER, PRODUCT, "v2", &profile_definition())
        .await;
    assert_eq!(defined.status(), 200, "the same definition again");
    let defined: Value = defined.json().await.unwrap();
    let read = app.admin_get(&format!("{path}/v2")).await;
    assert_eq!(read.expect(200), &defined);
    let missing = app.admin_get(&format!("{path}/v9")).await;
    assert_eq!(missing.status, 404, "{missing:?}");

    // A product with no version lists none; an unknown issuer is 404, and so is another
    // issuer's to an issuer-admin, with the same answer.
    let none = app
        .admin_get(&format!(
            "/admin/v1/issuers/{ISSUER}/products/none/profiles"
        ))
        .await;
    assert_eq!(none.expect(200), &json!({"items": []}));
    let unknown = app
        .admin_get(&format!(
            "/admin/v1/issuers/UNKNOWN001/products/{PRODUCT}/profiles"
        ))
        .await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    app.register_issuer(OTHER_ISSUER).await;
    let scoped = app
        .create_admin_key(&json!({"role": "issuer-admin", "issuers": [ISSUER]}))
        .await;
    let (ids, _) = all_pages(&app, &scoped, &path, 50, "version").await;
    assert_eq!(ids, want);
    let other = format!("/admin/v1/issuers/{OTHER_ISSUER}/products/{PRODUCT}/profiles");
    let other = app.admin_as(&scoped, Method::GET, &other, None).await;
    assert_eq!(other.status, 404, "{other:?}");
    assert_eq!(other.text, unknown.text.replace("UNKNOWN001", OTHER_ISSUER));
}

async fn a_requestors_api_keys_are_listed_by_id_and_time_never_a_key(app: TestApp) {
    let receiver = Receiver::start().await;
    app.register_requestor(REQUESTOR, &receiver.base_url(), 1)
        .await;
    let path = format!("/admin/v1/token-requestors/{REQUESTOR}/api-keys");
    assert_eq!(app.admin_get(&path).await.expect(200), &json!([]));
    let mut made = Vec::new();
    for _ in 0..2 {
        let key = app.admin_post(&path, None).await.expect(201).clone();
        made.push(key);
        app.clock.advance(std::time::Duration::from_millis(5));
    }
    let revoked = made[0]["keyId"].as_str().unwrap();
    let a = app
        .admin_send(Method::DELETE, &format!("{path}/{revoked}"), None)
        .await;
    assert_eq!(a.status, 204, "{a:?}");

    let listed = app.admin_get(&path).await.expect(200).clone();
    let listed = listed.as_array().unwrap();
    let ids: Vec<&Value> = listed.iter().map(|k| &k["keyId"]).collect();
    assert_eq!(ids, [&made[0]["keyId"], &made[1]["keyId"]], "oldest first");
    assert!(listed[0]["revokedMs"].is_i64(), "{listed:?}");
    assert!(listed[1].get("revokedMs").is_none(), "{listed:?}");
    assert!(listed[0]["createdMs"].as_i64() < listed[1]["createdMs"].as_i64());
    let text = Value::Array(listed.clone()).to_string();
    for key in &made {
        assert!(
            !text.contains(key["apiKey"].as_str().unwrap()),
            "a key listed"
        );
    }
    let missing = app
        .admin_get("/admin/v1/token-requestors/no-such-psp/api-keys")
        .await;
    assert_eq!(missing.status, 404, "{missing:?}");
}
