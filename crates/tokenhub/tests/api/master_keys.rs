//! Master-key rotation while the hub serves: new wraps use the new version at once, a background
//! job re-wraps every data key, requestor credential and shared key, then the old version is
//! retired and gone; a value wrapped before still opens afterwards, a wrap under the retired
//! version is refused, the API shows the progress and reveals no key, and only a key custodian
//! (or admin) may rotate.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokenhub::config::Config;
use tokenhub::store::StoreError;

hub_tests!(
    config = two_versions;
    a_rotation_rewraps_every_key_then_retires_the_old_version,
    a_wrap_under_a_retired_version_is_refused_and_a_second_rotation_waits,
    only_a_key_custodian_or_admin_rotates_and_no_key_is_shown,
);

hub_tests!(a_rotation_needs_the_new_version_where_the_keys_live);

/// Version 2 of the master key, beside the harness's version 1 in `TOKENHUB_MASTER_KEY`.
const SECOND: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

fn two_versions(config: &mut Config) {
    requestors_allowed(config);
    config.master_key = Some(format!("1:{MASTER_KEY},2:{SECOND}"));
}

async fn status(app: &TestApp) -> Value {
    app.admin_get("/admin/v1/master-keys")
        .await
        .expect(200)
        .clone()
}

/// Waits for the rotation to end (the clock moved past the time every node needs to read the
/// new version).
async fn rotation_finished(app: &TestApp) -> Value {
    app.clock.advance(Duration::from_secs(6));
    eventually("the rotation finishes", || async {
        let s = status(app).await;
        s["rotation"].is_null().then_some(s)
    })
    .await
}

/// The master-key version of each token's data key.
async fn data_key_versions(app: &TestApp, tokens: &[String]) -> Vec<i64> {
    let mut out = Vec::new();
    for t in tokens {
        let key = app.hub.store.data_key(t).await.unwrap();
        out.push(key.expect("a data key").master_version);
    }
    out
}

async fn a_rotation_rewraps_every_key_then_retires_the_old_version(app: TestApp) {
    let before = status(&app).await;
    assert_eq!(before["current"], 1, "{before}");
    assert_eq!(before["versions"].as_array().unwrap().len(), 1, "{before}");
    // Data keys (one sealing a part), a requestor's credentials and the shared keys, under v1.
    let tokens = [
        app.pending_token().await,
        app.pending_token().await,
        app.pending_token().await,
    ];
    app.put_data(&tokens[0], &data_body(&[psn()]))
        .await
        .assert_accepted();
    let receiver = Receiver::start().await;
    app.register_requestor(REQUESTOR, &receiver.base_url(), 1)
        .await;
    let old_key = app.hub.store.data_key(&tokens[1]).await.unwrap().unwrap();
    assert_eq!(old_key.master_version, 1);

    let begun = app.admin_post("/admin/v1/master-keys/rotate", None).await;
    let begun = begun.expect(202);
    assert_eq!(begun["current"], 2, "{begun}");
    assert_eq!(begun["rotation"]["target"], 2, "{begun}");
    // New wraps use version 2 at once.
    let fresh = app.pending_token().await;
    assert_eq!(
        app.hub
            .store
            .data_key(&fresh)
            .await
            .unwrap()
            .unwrap()
            .master_version,
        2
    );

    let after = rotation_finished(&app).await;
    let states: Vec<(i64, &str)> = after["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_i64().unwrap(), v["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, vec![(1, "RETIRED"), (2, "ACTIVE")], "{after}");
    let mut all = tokens.to_vec();
    all.push(fresh);
    assert_eq!(data_key_versions(&app, &all).await, vec![2; 4]);
    let sql = "SELECT MIN(credentials_version) FROM token_requestors";
    assert_eq!(app.sql_i64(sql).await, Some(2));
    assert_eq!(
        app.sql_i64("SELECT MIN(master_version) FROM shared_keys")
            .await,
        Some(2)
    );

    // Everything still opens: the sealed part personalizes the token (its data key and the
    // shared keys' elements), the requestor's credentials sign a delivery.
    app.complete_data(&tokens[0]).await;
    app.confirm_personalization(&tokens[0]).await;
    let requestor = app.hub.store.requestor(REQUESTOR).await.unwrap().unwrap();
    assert_eq!(requestor.credentials.master_version, 2);
    app.hub
        .keys
        .authenticate_delivery(REQUESTOR, &requestor.credentials, "msg_1", 1, b"{}")
        .expect("the re-sealed credentials open");
    // A copy of a data key wrapped under version 1 opens no more: the version is gone.
    assert!(app
        .hub
        .keys
        .open_for_token(&tokens[1], &old_key, &[0; 40])
        .is_err());
    app.hub
        .reload_keys()
        .await
        .expect("the re-wrapped shared keys load");

    let audit = app.admin_get("/admin/v1/audit?limit=500").await;
    let actions: Vec<String> = audit.expect(200)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert!(
        actions.contains(&"master-key.rotate".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"master-key.retire".to_string()),
        "{actions:?}"
    );
}

async fn a_wrap_under_a_retired_version_is_refused_and_a_second_rotation_waits(app: TestApp) {
    let token = app.pending_token().await;
    app.admin_post("/admin/v1/master-keys/rotate", None)
        .await
        .expect(202);
    let again = app.admin_post("/admin/v1/master-keys/rotate", None).await;
    assert_eq!(again.status, 409, "{}", again.text);
    rotation_finished(&app).await;

    // A node that has not seen the rotation end wraps under version 1: the store refuses it.
    let stale = tokenhub::domain::Wrapped {
        bytes: vec![7; 60],
        master_version: 1,
    };
    let id = format!("{token}-stale");
    let refused = app
        .hub
        .store
        .transact(move |c| Box::pin(async move { c.keep_data_key(&id, &stale, 0).await }))
        .await;
    assert!(
        matches!(refused, Err(StoreError::MasterKeyRetired(1))),
        "{refused:?}"
    );
    // The key file holds no version 3: a third rotation is refused, and changes nothing.
    let third = app.admin_post("/admin/v1/master-keys/rotate", None).await;
    assert_eq!(third.status, 422, "{}", third.text);
    assert!(third.text.contains("TOKENHUB_MASTER_KEY"), "{}", third.text);
    assert_eq!(status(&app).await["current"], 2);
}

async fn only_a_key_custodian_or_admin_rotates_and_no_key_is_shown(app: TestApp) {
    let reader = app.create_admin_key(&json!({"role": "read-only"})).await;
    let custodian = app
        .create_admin_key(&json!({"role": "key-custodian"}))
        .await;
    let post = reqwest::Method::POST;
    let path = "/admin/v1/master-keys/rotate";
    let refused = app.admin_as(&reader, post.clone(), path, None).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    let anonymous = app.admin_as("nobody", post.clone(), path, None).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text);
    let read = app
        .admin_as(&reader, reqwest::Method::GET, "/admin/v1/master-keys", None)
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    let done = app.admin_as(&custodian, post, path, None).await;
    assert_eq!(done.status, 202, "{}", done.text);
    for key in [MASTER_KEY, SECOND] {
        assert!(
            !done.text.to_lowercase().contains(key),
            "no key in the answer"
        );
    }
    rotation_finished(&app).await;
}

async fn a_rotation_needs_the_new_version_where_the_keys_live(app: TestApp) {
    let refused = app.admin_post("/admin/v1/master-keys/rotate", None).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(refused.text.contains("2:<hex>"), "{}", refused.text);
    let s = status(&app).await;
    assert_eq!(s["current"], 1, "{s}");
    assert!(s["rotation"].is_null(), "{s}");
}
