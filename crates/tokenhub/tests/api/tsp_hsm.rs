//! `/data` through a hub whose keys are in an HSM (PKCS#11 on SoftHSM2, when
//! `TOKENHUB_TEST_SOFTHSM2` names the module; skipped, and said so, when it is unset): the
//! elements are decrypted by the HSM, an unknown key is refused as on the software keystore, and
//! an HSM taken away makes the TSP API answer 921 (retryable) until it is back, with nothing
//! lost; a key imported while the hub runs serves the calls that first name it together; a
//! master-key rotation makes its new version in the HSM and destroys the old one. On SQLite and on
//! PostgreSQL.

use crate::support::*;
use serde_json::json;
use tokenhub::keys::{softhsm, KeystoreKind};
use tokenhub::Config;

fn on_the_hsm(config: &mut Config) {
    let hsm = softhsm::softhsm("tsp_hsm").expect("checked before the hub starts");
    config.keystore.kind = KeystoreKind::Pkcs11;
    config.keystore.pkcs11 = Some(hsm.config());
    // No master key anywhere but in the HSM.
    config.master_key = None;
}

macro_rules! hsm_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use crate::support::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::run(stringify!($name), Backend::Sqlite, super::$name).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let test = concat!(stringify!($name), "::postgres");
                    let Some(url) = postgres_url_or_skip(test) else { return };
                    super::run(stringify!($name), Backend::Postgres(url), super::$name).await;
                }
            }
        )*
    };
}

hsm_tests!(
    elements_are_decrypted_by_the_hsm_and_the_store_holds_no_key,
    an_unknown_key_index_is_refused_with_431_as_on_software,
    while_the_hsm_is_unreachable_data_is_answered_921_and_accepted_once_it_is_back,
    a_key_imported_while_the_hub_runs_serves_concurrent_first_calls,
    a_master_key_rotation_makes_the_new_version_in_the_hsm_and_destroys_the_old,
);

/// Starts a hub on the test HSM (held for the test: another test may take it away) and runs
/// `body`.
async fn run<F>(test: &str, backend: Backend, body: fn(TestApp) -> F)
where
    F: std::future::Future<Output = ()>,
{
    if softhsm::softhsm(test).is_none() {
        return;
    }
    let _hsm = softhsm::exclusive().await;
    let app = spawn_app_with(backend, on_the_hsm).await;
    assert_eq!(app.hub.keys.kind(), KeystoreKind::Pkcs11);
    body(app).await;
}

async fn elements_are_decrypted_by_the_hsm_and_the_store_holds_no_key(app: TestApp) {
    let token = app.pending_token().await;
    app.put_data(&token, &data_body(&app.required_elements()))
        .await
        .assert_accepted();
    // The profile is built from values the HSM decrypted, and the device takes it.
    app.confirm_personalization(&token).await;
    assert_eq!(app.token_state(&token).await, "ACTIVE");
    // What only the clear values tell (read after the HSM decrypted them): a digits element
    // that is not digits, a value over its maximum length.
    let other = app.pending_token().await;
    for refused in [
        app.encrypted("psn", DEK, b"0A"),
        app.encrypted("track2_data", DEK, &random_bytes(33)),
    ] {
        app.put_data(&other, &data_body(&[refused]))
            .await
            .assert_refused(431);
    }
    app.put_data(&other, &data_body(&[app.encrypted("psn", DEK, b"01")]))
        .await
        .assert_accepted();
    // The shared keys' rows name HSM objects; no clear or wrapped key bytes are stored.
    let stored = app.stored_bytes().await;
    for key in &app.keys.keys {
        let clear = key.key_bytes().unwrap();
        assert!(!contains(&stored, &clear), "key {} stored", key.key_index);
        let hex = hex::encode(&*clear);
        assert!(
            !contains(&stored, hex.as_bytes()),
            "key {} stored",
            key.key_index
        );
    }
    let rows = app
        .sql_i64("SELECT COUNT(*) FROM shared_keys WHERE length(wrapped) = 23")
        .await;
    assert_eq!(rows, Some(app.keys.keys.len() as i64));
}

async fn an_unknown_key_index_is_refused_with_431_as_on_software(app: TestApp) {
    let token = app.pending_token().await;
    let mut cmk = app.cmk_ac();
    cmk["keyIndex"] = json!("KEK99");
    app.put_data(&token, &data_body(&[cmk, app.track2_data(), psn()]))
        .await
        .assert_refused(431);
    // A ciphertext one byte short of whole blocks: refused alike.
    let mut short = app.cmk_ac();
    let value = short["value"].as_str().unwrap().to_string();
    short["value"] = json!(value[..value.len() - 2]);
    app.put_data(&token, &data_body(&[short]))
        .await
        .assert_refused(431);
    assert!(app.elements_held(&token).await.is_empty());
}

async fn while_the_hsm_is_unreachable_data_is_answered_921_and_accepted_once_it_is_back(
    app: TestApp,
) {
    let hsm = softhsm::softhsm("tsp_hsm").unwrap();
    let token = app.pending_token().await;
    let body = data_body(&app.required_elements());
    hsm.unplug();
    for _ in 0..2 {
        let answer = app.put_data(&token, &body).await;
        answer.assert_refused(921);
        assert!(!answer.message().contains("HSM"), "{}", answer.message());
    }
    assert!(app.elements_held(&token).await.is_empty());
    hsm.plug();
    tokio::time::sleep(tokenhub::keys::pkcs11::RECONNECT_PAUSE).await;
    app.put_data(&token, &body).await.assert_accepted();
    app.confirm_personalization(&token).await;
    assert_eq!(app.token_state(&token).await, "ACTIVE");
    // A restart (sessions and handles gone) is recovered on the next call, unseen.
    hsm.restart();
    let next = app.pending_token().await;
    app.put_data(&next, &data_body(&app.required_elements()))
        .await
        .assert_accepted();
}

/// The first calls naming a key imported after the hub started arrive together: one re-reads the
/// keys (the HSM finds each object and checks its KCV, which takes a while) and the others wait
/// for it, so none is refused as under an unknown key.
async fn a_key_imported_while_the_hub_runs_serves_concurrent_first_calls(app: TestApp) {
    let kek = app.keys.find(KEK).unwrap().algorithm;
    let imported = tokenhub_crypto::SharedKey::generate("KEK77", kek, "kek");
    // More keys make the re-read longer, as in a hub holding many TSPs' keys.
    let mut ceremony: Vec<_> = (0..40)
        .map(|i| tokenhub_crypto::SharedKey::generate(&format!("DEK7{i:02}"), kek, "dek"))
        .collect();
    ceremony.push(imported.clone());
    tokenhub::flows::keys::import(
        &app.hub.store,
        &app.hub.keys,
        TSP_ID,
        &ceremony,
        "test",
        app.hub.now_ms(),
    )
    .await
    .unwrap();
    assert!(!app.hub.keys.knows_key(TSP_ID, "KEK77"));
    let key = imported.key_bytes().unwrap();
    let mut tokens = Vec::new();
    for _ in 0..24 {
        tokens.push(app.pending_token().await);
    }
    let calls = tokens.iter().map(|token| {
        let cmk = tokenhub_crypto::encrypt_cbc_m2(kek, &key, &random_bytes(16)).unwrap();
        let cmk = json!({"name": "cmk_ac", "value": hex::encode_upper(cmk), "keyIndex": "KEK77"});
        let body = data_body(&[cmk, app.track2_data(), psn()]);
        let app = &app;
        async move { app.put_data(token, &body).await }
    });
    for answer in futures::future::join_all(calls).await {
        answer.assert_accepted();
    }
}

/// A rotation on the HSM: version 2 is generated in the token, the data sealed before opens after
/// the re-wrap, and version 1's objects are destroyed.
async fn a_master_key_rotation_makes_the_new_version_in_the_hsm_and_destroys_the_old(app: TestApp) {
    let token = app.pending_token().await;
    app.put_data(&token, &data_body(&[psn()]))
        .await
        .assert_accepted();
    let begun = app.admin_post("/admin/v1/master-keys/rotate", None).await;
    assert_eq!(begun.expect(202)["current"], 2);
    app.clock.advance(std::time::Duration::from_secs(6));
    let done = eventually("the rotation finishes", || async {
        let s = app.admin_get("/admin/v1/master-keys").await;
        let s = s.expect(200).clone();
        s["rotation"].is_null().then_some(s)
    })
    .await;
    assert_eq!(done["versions"][0]["state"], "RETIRED", "{done}");
    let key = app.hub.store.data_key(&token).await.unwrap().unwrap();
    assert_eq!(key.master_version, 2);
    // The data sealed under the key wrapped by version 1 personalizes the token.
    app.complete_data(&token).await;
    app.confirm_personalization(&token).await;
    assert_eq!(app.token_state(&token).await, "ACTIVE");
    let hsm = softhsm::softhsm("tsp_hsm").unwrap();
    let again = tokenhub::keys::Keys::pkcs11(hsm.config()).unwrap();
    let versions = app.hub.store.master_key_versions().await.unwrap();
    again.adopt_versions(&versions).unwrap();
    let stale = tokenhub::domain::Wrapped {
        bytes: vec![0; 60],
        master_version: 1,
    };
    assert!(matches!(
        again.open_for_token(&token, &stale, &[0; 40]),
        Err(tokenhub::keys::KeyError::MissingVersion(1))
    ));
}
