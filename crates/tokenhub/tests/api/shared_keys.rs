//! Keys that belong to someone and do one thing: a shared key is owned by one TSP (`keyIndex` is
//! scoped per TSP), has a purpose (KEK for card keys, DEK for data), and takes new data until it
//! is retired. A value under another TSP's key, a key of the wrong purpose or a retired key is
//! refused exactly as one under an unknown key.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};
use tokenhub_crypto::{Algorithm, SharedKey};

hub_tests!(
    another_tsps_key_is_refused_like_an_unknown_key_and_key_indexes_are_per_tsp,
    a_key_of_the_wrong_purpose_is_refused_like_an_unknown_key,
    a_retired_key_refuses_new_data_and_its_retirement_is_audited,
    only_the_key_custodian_and_admin_import_and_retire_keys,
    a_key_retired_on_the_store_takes_no_data_once_the_hub_reads_its_keys_again,
);

/// Imports `keys` for `tsp_id` through the admin API (the harness's admin key).
async fn import(app: &TestApp, tsp_id: &str, keys: &[&SharedKey]) -> Value {
    let body = json!({"tspId": tsp_id, "keys": keys});
    app.admin_post("/admin/v1/shared-keys", Some(&body))
        .await
        .expect(200)
        .clone()
}

/// `clear` encrypted under `key` (as a TSP holding it would), as the element `name`.
fn under(key: &SharedKey, name: &str, clear: &[u8]) -> Value {
    let ct =
        tokenhub_crypto::encrypt_cbc_m2(key.algorithm, &key.key_bytes().unwrap(), clear).unwrap();
    json!({"name": name, "value": hex::encode_upper(ct), "keyIndex": key.key_index})
}

/// The answer to a `/data` call on a fresh token carrying `element` with a valid rest; `(status,
/// body)`, what a TSP sees.
async fn answer_with(app: &TestApp, element: Value) -> (u16, String) {
    let token = app.pending_token().await;
    let mut elements = vec![element, psn()];
    if elements[0]["name"] == "cmk_ac" {
        elements.push(app.track2_data());
    } else {
        elements.push(app.cmk_ac());
    }
    let a = app.put_data(&token, &data_body(&elements)).await;
    (a.status, a.body)
}

/// What a value under a key nobody imported gets.
async fn unknown_key_answer(app: &TestApp, name: &str) -> (u16, String) {
    let nobodys = SharedKey::generate("NO-SUCH-KEY", Algorithm::Aes128, "kek");
    let a = answer_with(app, under(&nobodys, name, &random_bytes(16))).await;
    assert_eq!(a.0, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&a.1).unwrap()["responseCode"],
        431
    );
    a
}

async fn another_tsps_key_is_refused_like_an_unknown_key_and_key_indexes_are_per_tsp(app: TestApp) {
    // Another TSP has a KEK01 of its own: importing it refuses nothing (the index is per TSP).
    let theirs = SharedKey::generate(KEK, Algorithm::Aes128, "kek");
    let imported = import(&app, "another-tsp", &[&theirs]).await;
    assert_eq!(imported, json!([{"keyIndex": KEK, "outcome": "IMPORTED"}]));
    let listed = app.admin_get("/admin/v1/shared-keys").await;
    let owners: Vec<(&str, &str)> = listed
        .json
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["keyIndex"] == KEK)
        .map(|k| (k["tspId"].as_str().unwrap(), k["kcv"].as_str().unwrap()))
        .collect();
    assert_eq!(
        owners,
        [
            ("another-tsp", theirs.kcv.as_str()),
            (TSP_ID, app.keys.find(KEK).unwrap().kcv.as_str())
        ]
    );
    // Our TSP's own KEK01 still decrypts its elements.
    let token = app.pending_token().await;
    app.put_data(&token, &data_body(&app.required_elements()))
        .await
        .assert_accepted();
    // The other TSP's KEK01 (and another key only it holds) decrypt nothing for ours, answered
    // exactly as a key nobody holds.
    let only_theirs = SharedKey::generate("KEK-THEIRS", Algorithm::Aes128, "kek");
    import(&app, "another-tsp", &[&only_theirs]).await;
    let unknown = unknown_key_answer(&app, "cmk_ac").await;
    for key in [&theirs, &only_theirs] {
        let a = answer_with(&app, under(key, "cmk_ac", &random_bytes(16))).await;
        assert_eq!(a, unknown, "{}", key.key_index);
    }
}

async fn a_key_of_the_wrong_purpose_is_refused_like_an_unknown_key(app: TestApp) {
    // AES-128 keys of both purposes, so that only the purpose differs from our KEK01.
    let dek = SharedKey::generate("DEK-AES", Algorithm::Aes128, "dek");
    let kek = SharedKey::generate("KEK-AES", Algorithm::Aes128, "kek");
    import(&app, TSP_ID, &[&dek, &kek]).await;
    let unknown = unknown_key_answer(&app, "cmk_ac").await;
    // A card master key (the profile's `keyPurpose: kek`) under a DEK.
    let a = answer_with(&app, under(&dek, "cmk_ac", &random_bytes(16))).await;
    assert_eq!(a, unknown);
    // Track 2 (data: a DEK) under a KEK, ours or the new one.
    let unknown = unknown_key_answer(&app, "track2_data").await;
    for key in [&kek, app.keys.find(KEK).unwrap()] {
        let a = answer_with(&app, under(key, "track2_data", &random_bytes(19))).await;
        assert_eq!(a, unknown, "{}", key.key_index);
    }
    // The same values under keys of the right purpose are taken.
    let token = app.pending_token().await;
    let elements = [
        under(&kek, "cmk_ac", &random_bytes(16)),
        under(&dek, "track2_data", &random_bytes(19)),
        psn(),
    ];
    app.put_data(&token, &data_body(&elements))
        .await
        .assert_accepted();
}

async fn a_retired_key_refuses_new_data_and_its_retirement_is_audited(app: TestApp) {
    let custodian = app
        .create_admin_key(&json!({"role": "key-custodian"}))
        .await;
    let custodian_id = custodian.split('_').nth(1).unwrap().to_string();
    let old = SharedKey::generate("KEK-OLD", Algorithm::Aes128, "kek");
    import(&app, TSP_ID, &[&old]).await;
    let first = app.pending_token().await;
    let elements = [
        under(&old, "cmk_ac", &random_bytes(16)),
        app.track2_data(),
        psn(),
    ];
    app.put_data(&first, &data_body(&elements))
        .await
        .assert_accepted();

    let path = format!("/admin/v1/shared-keys/{TSP_ID}/KEK-OLD/retire");
    let a = app.admin_as(&custodian, Method::POST, &path, None).await;
    assert_eq!(
        a.expect(200),
        &json!({"tspId": TSP_ID, "keyIndex": "KEK-OLD", "state": "RETIRED"})
    );
    // Again: nothing changes. A key the TSP does not have: 404.
    app.admin_as(&custodian, Method::POST, &path, None)
        .await
        .expect(200);
    let missing = "/admin/v1/shared-keys/another-tsp/KEK-OLD/retire";
    app.admin_as(&custodian, Method::POST, missing, None)
        .await
        .expect(404);

    let unknown = unknown_key_answer(&app, "cmk_ac").await;
    let a = answer_with(&app, under(&old, "cmk_ac", &random_bytes(16))).await;
    assert_eq!(a, unknown, "a retired key takes no new data");
    let listed = app.admin_get("/admin/v1/shared-keys").await;
    let states: Vec<(&str, &str)> = listed
        .json
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["tspId"] == TSP_ID)
        .map(|k| {
            (
                k["keyIndex"].as_str().unwrap(),
                k["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(states.contains(&("KEK-OLD", "RETIRED")), "{states:?}");
    assert!(states.contains(&(KEK, "ACTIVE")), "{states:?}");

    let audit = app.admin_get("/admin/v1/audit").await;
    let by_custodian: Vec<(&str, &str, i64)> = audit.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == custodian_id.as_str())
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["objectId"].as_str().unwrap(),
                e["status"].as_i64().unwrap(),
            )
        })
        .collect();
    let retired = format!("{TSP_ID}/KEK-OLD");
    assert_eq!(
        by_custodian,
        [
            ("shared-key.retire", retired.as_str(), 200),
            ("shared-key.retire", retired.as_str(), 200),
            ("shared-key.retire", "another-tsp/KEK-OLD", 404),
        ]
    );
}

async fn only_the_key_custodian_and_admin_import_and_retire_keys(app: TestApp) {
    let key = SharedKey::generate("KEK-SCOPE", Algorithm::Aes128, "kek");
    let body = json!({"tspId": TSP_ID, "keys": [&key]});
    let retire = format!("/admin/v1/shared-keys/{TSP_ID}/{KEK}/retire");
    for role in [
        json!({"role": "read-only"}),
        json!({"role": "issuer-admin", "issuers": [ISSUER]}),
    ] {
        let credential = app.create_admin_key(&role).await;
        let a = app
            .admin_as(
                &credential,
                Method::POST,
                "/admin/v1/shared-keys",
                Some(&body),
            )
            .await;
        assert_eq!(a.status, 403, "{role}: {a:?}");
        let a = app.admin_as(&credential, Method::POST, &retire, None).await;
        assert_eq!(a.status, 403, "{role}: {a:?}");
    }
    let a = app.admin_as(ADMIN_TOKEN, Method::POST, &retire, None).await;
    assert_eq!(a.status, 403, "the bootstrap token: {a:?}");
    // Nothing was imported or retired: our KEK01 still decrypts.
    let listed = app.admin_get("/admin/v1/shared-keys").await;
    assert!(!listed.text.contains("KEK-SCOPE"), "{listed:?}");
    let token = app.pending_token().await;
    app.put_data(&token, &data_body(&app.required_elements()))
        .await
        .assert_accepted();
    // A purpose that is neither: refused, nothing imported.
    let mut odd = serde_json::to_value(&key).unwrap();
    odd["purpose"] = json!("mac");
    let a = app
        .admin_post(
            "/admin/v1/shared-keys",
            Some(&json!({"tspId": TSP_ID, "keys": [odd]})),
        )
        .await;
    assert_eq!(a.status, 400, "{a:?}");
    let a = app
        .admin_post("/admin/v1/shared-keys", Some(&json!({"keys": [&key]})))
        .await;
    assert_eq!(a.status, 422, "no owner: {a:?}");
    // The routes are in the OpenAPI document.
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = &doc["paths"];
    assert!(paths["/admin/v1/shared-keys/{tspId}/{keyIndex}/retire"]["post"].is_object());
    let import = &paths["/admin/v1/shared-keys"]["post"]["requestBody"];
    assert!(import.to_string().contains("ImportBody"), "{import}");
}

/// `tokenhub keys retire` on the store (another process) or another node: this hub holds the key
/// active until it reads the keys again, at most `KEY_REFRESH_INTERVAL` later.
async fn a_key_retired_on_the_store_takes_no_data_once_the_hub_reads_its_keys_again(app: TestApp) {
    let now = tokenhub::clock::Clock::now_ms(&app.clock);
    let retired = tokenhub::flows::keys::retire(&app.hub.store, TSP_ID, KEK, "cli", now)
        .await
        .unwrap();
    assert_eq!(retired, tokenhub::flows::keys::Retired::Retired);
    let token = app.pending_token().await;
    app.put_data(&token, &data_body(&app.required_elements()))
        .await
        .assert_accepted();
    app.clock.advance(tokenhub::hub::KEY_REFRESH_INTERVAL);
    let refused = answer_with(&app, app.cmk_ac()).await;
    assert_eq!(refused, unknown_key_answer(&app, "cmk_ac").await);
}
