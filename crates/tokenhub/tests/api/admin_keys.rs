//! Admin keys: made with the bootstrap token or an admin key, shown once, stored hashed, refused
//! once revoked; the bootstrap token reaches nothing else.

use crate::support::*;
use reqwest::Method;
use serde_json::json;

hub_tests!(
    the_bootstrap_token_manages_admin_keys_and_nothing_else,
    a_revoked_key_is_refused_from_the_next_request_on,
    a_keys_secret_is_shown_once_and_stored_only_as_a_hash,
    a_key_that_is_not_quite_a_live_key_is_401,
    an_issuer_admin_key_needs_registered_issuers_and_only_it_takes_issuers,
    the_key_custodian_imports_a_key_set_and_only_its_indexes_and_kcvs_show,
    an_issuer_admin_renames_its_issuer_but_never_binds_it_to_another_tsp,
);

/// The TSP an issuer is bound to is the one that may act on its tokens: an issuer administrator
/// that could rebind it could hand its tokens to another TSP.
async fn an_issuer_admin_renames_its_issuer_but_never_binds_it_to_another_tsp(app: TestApp) {
    let other_tsp = "tsp-other";
    assert_eq!(
        app.put_tsp(other_tsp, &app.tsp.base_url()).await.status(),
        200
    );
    let key = app
        .create_admin_key(&json!({"role": "issuer-admin", "issuers": [ISSUER]}))
        .await;
    let path = format!("/admin/v1/issuers/{ISSUER}");
    let rebind = json!({"name": "First Test Bank", "tspId": other_tsp});
    let a = app.admin_as(&key, Method::PUT, &path, Some(&rebind)).await;
    assert_eq!(a.status, 403, "{}", a.text);
    let rename = json!({"name": "First Test Bank, renamed", "tspId": TSP_ID});
    let a = app.admin_as(&key, Method::PUT, &path, Some(&rename)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.expect(200)["tspId"], TSP_ID);
    // An administrator may.
    let a = app
        .admin_as(&app.admin_key, Method::PUT, &path, Some(&rebind))
        .await;
    assert_eq!(a.expect(200)["tspId"], other_tsp);
}

async fn the_bootstrap_token_manages_admin_keys_and_nothing_else(app: TestApp) {
    let token = app.pending_token().await;
    for (method, path) in [
        (Method::GET, format!("/admin/v1/tokens/{token}")),
        (Method::POST, format!("/admin/v1/tokens/{token}/delete")),
        (Method::PUT, format!("/admin/v1/tsps/{TSP_ID}")),
        (Method::GET, "/admin/v1/audit".to_string()),
    ] {
        let a = app.admin_as(ADMIN_TOKEN, method.clone(), &path, None).await;
        assert_eq!(a.status, 403, "{method} {path}: {a:?}");
    }
    assert_eq!(app.token_state(&token).await, "PENDING_DATA");
    let listed = app
        .admin_as(ADMIN_TOKEN, Method::GET, "/admin/v1/admin-keys", None)
        .await;
    assert_eq!(listed.expect(200).as_array().unwrap().len(), 1);
    let made = create_key_with(
        &app.client,
        &app.admin_address,
        ADMIN_TOKEN,
        &json!({"role": "read-only", "label": "ops"}),
    )
    .await;
    let made = made.expect(201);
    assert_eq!(made["createdBy"], "bootstrap");
    assert_eq!(made["role"], "read-only");
    let key = made["apiKey"].as_str().unwrap();
    let a = app
        .admin_as(key, Method::GET, &format!("/admin/v1/tokens/{token}"), None)
        .await;
    a.expect(200);
}

async fn a_revoked_key_is_refused_from_the_next_request_on(app: TestApp) {
    let key = app.create_admin_key(&json!({"role": "admin"})).await;
    let id = key.split('_').nth(1).unwrap().to_string();
    app.admin_as(&key, Method::GET, "/admin/v1/audit", None)
        .await
        .expect(200);
    let revoke = format!("/admin/v1/admin-keys/{id}");
    app.admin_send(Method::DELETE, &revoke, None)
        .await
        .expect(204);
    for (method, path) in [
        (Method::GET, "/admin/v1/audit"),
        (Method::POST, "/admin/v1/admin-keys"),
    ] {
        let a = app
            .admin_as(&key, method, path, Some(&json!({"role": "admin"})))
            .await;
        assert_eq!(a.status, 401, "{path}: {a:?}");
    }
    // Revoked once; the list keeps it, marked.
    app.admin_send(Method::DELETE, &revoke, None)
        .await
        .expect(404);
    let listed = app.admin_get("/admin/v1/admin-keys").await;
    let entry = listed
        .expect(200)
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["keyId"] == id.as_str())
        .cloned()
        .unwrap();
    assert!(entry["revokedAt"].is_string(), "{entry}");
    // The bootstrap token revokes too, and a key cannot outlive its revocation by the CLI's path.
    let other = app.create_admin_key(&json!({"role": "read-only"})).await;
    let other_id = other.split('_').nth(1).unwrap();
    let a = app
        .admin_as(
            ADMIN_TOKEN,
            Method::DELETE,
            &format!("/admin/v1/admin-keys/{other_id}"),
            None,
        )
        .await;
    a.expect(204);
    let a = app
        .admin_as(&other, Method::GET, "/admin/v1/audit", None)
        .await;
    assert_eq!(a.status, 401);
}

async fn a_keys_secret_is_shown_once_and_stored_only_as_a_hash(app: TestApp) {
    let key = app
        .create_admin_key(&json!({"role": "admin", "label": "alice"}))
        .await;
    let (id, secret) = key.strip_prefix("thk_").unwrap().split_once('_').unwrap();
    assert_eq!((id.len(), secret.len()), (16, 64));
    app.put_tsp(TSP_ID, &app.tsp.base_url()).await;
    let stored = app.stored_bytes().await;
    assert!(contains(&stored, id.as_bytes()), "the key's id is stored");
    assert!(
        !contains(&stored, secret.as_bytes()),
        "the secret is stored in clear"
    );
    assert!(!contains(&stored, &hex::decode(secret).unwrap()));
    assert!(
        !contains(&stored, ADMIN_TOKEN.as_bytes()),
        "the bootstrap token is stored"
    );
    for path in ["/admin/v1/admin-keys", "/admin/v1/audit"] {
        let a = app.admin_get(path).await;
        assert!(a.text.contains(id), "{path}");
        assert!(!a.text.contains(secret), "{path} shows the secret");
        assert!(
            !a.text.contains(&app.admin_key[20..]),
            "{path} shows a secret"
        );
    }
}

async fn a_key_that_is_not_quite_a_live_key_is_401(app: TestApp) {
    let key = app.create_admin_key(&json!({"role": "admin"})).await;
    let (id, secret) = key.strip_prefix("thk_").unwrap().split_once('_').unwrap();
    let flipped = format!(
        "thk_{id}_{}{}",
        if secret.starts_with('0') { '1' } else { '0' },
        &secret[1..]
    );
    let other_id = format!("thk_{}_{secret}", "0".repeat(16));
    for bad in [
        flipped.as_str(),
        other_id.as_str(),
        &key[..key.len() - 1],
        &format!("{key}0"),
        &key.to_uppercase(),
        "",
    ] {
        let a = app
            .admin_as(bad, Method::GET, "/admin/v1/audit", None)
            .await;
        assert_eq!(a.status, 401, "{bad}");
    }
    app.admin_as(&key, Method::GET, "/admin/v1/audit", None)
        .await
        .expect(200);
}

async fn an_issuer_admin_key_needs_registered_issuers_and_only_it_takes_issuers(app: TestApp) {
    for (body, status) in [
        (json!({"role": "issuer-admin"}), 400),
        (
            json!({"role": "issuer-admin", "issuers": ["UNKNOWN001"]}),
            404,
        ),
        (json!({"role": "read-only", "issuers": [ISSUER]}), 400),
        (json!({"role": "root"}), 400),
        (json!({"role": "admin", "label": "x".repeat(129)}), 400),
    ] {
        let a = app
            .admin_send(Method::POST, "/admin/v1/admin-keys", Some(&body))
            .await;
        assert_eq!(a.status, status, "{body}: {a:?}");
    }
    let listed = app.admin_get("/admin/v1/admin-keys").await;
    assert_eq!(
        listed.expect(200).as_array().unwrap().len(),
        1,
        "nothing made"
    );
    let key = app
        .create_admin_key(&json!({"role": "issuer-admin", "issuers": [ISSUER, ISSUER]}))
        .await;
    let id = key.split('_').nth(1).unwrap();
    let listed = app.admin_get("/admin/v1/admin-keys").await;
    let made = listed
        .expect(200)
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["keyId"] == id)
        .cloned()
        .unwrap();
    assert_eq!(made["issuers"], json!([ISSUER]));
}

/// Without `TOKENHUB_ADMIN_TOKEN`, a hub on SQLite writes its bootstrap token to `admin.token`
/// beside the database (mode 0600), the same one at every start, and it works as the bootstrap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_bootstrap_token_sqlite_keeps_one_in_a_private_file_beside_the_database() {
    tokenhub::telemetry::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("hub.db").display());
    let start = || async {
        let mut config = tokenhub::Config::for_database(&db);
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.master_key = Some(MASTER_KEY.into());
        tokenhub::Application::build(config)
            .await
            .expect("the hub starts")
    };
    let app = start().await;
    let file = dir.path().join("admin.token");
    assert_eq!(
        app.notes().bootstrap_token_file.as_deref(),
        Some(file.as_path())
    );
    assert!(app.notes().created_bootstrap_token_file);
    let token = std::fs::read_to_string(&file).unwrap();
    assert!(token.len() >= 64, "a long random token");
    assert_eq!(app.hub().bootstrap_token(), Some(token.as_str()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let address = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    create_key_with(&client, &address, &token, &json!({"role": "admin"}))
        .await
        .expect(201);
    // One hub serves an SQLite file at a time: the next start comes after this one stopped.
    stop.send(()).unwrap();
    served.await.unwrap().unwrap();
    let again = start().await;
    assert!(!again.notes().created_bootstrap_token_file);
    assert_eq!(again.hub().bootstrap_token(), Some(token.as_str()));
}

/// A bootstrap token short enough to guess is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_bootstrap_token_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("hub.db").display());
    let mut config = tokenhub::Config::for_database(&db);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.master_key = Some(MASTER_KEY.into());
    config.admin_token = Some("x".repeat(31));
    let refused = tokenhub::Application::build(config.clone())
        .await
        .err()
        .unwrap();
    assert!(refused.to_string().contains("at least 32"), "{refused}");
    config.admin_token = Some("x".repeat(32));
    assert!(tokenhub::Application::build(config).await.is_ok());
}

/// With PostgreSQL there is no file to keep it in: the hub does not start without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_bootstrap_token_a_hub_on_postgresql_does_not_start() {
    let Some(server) = postgres_url_or_skip(module_path!()) else {
        return;
    };
    tokenhub::telemetry::install_crypto_provider();
    let mut config = tokenhub::Config::for_database(&create_postgres_database(&server).await);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.master_key = Some(MASTER_KEY.into());
    let refused = tokenhub::Application::build(config).await.err().unwrap();
    assert!(
        refused.to_string().contains("TOKENHUB_ADMIN_TOKEN"),
        "{refused}"
    );
}

async fn the_key_custodian_imports_a_key_set_and_only_its_indexes_and_kcvs_show(app: TestApp) {
    let custodian = app
        .create_admin_key(&json!({"role": "key-custodian"}))
        .await;
    let custodian_id = custodian.split('_').nth(1).unwrap().to_string();
    let mut set = tokenhub_crypto::KeySet::generate();
    for k in &mut set.keys {
        k.key_index = format!("ROT-{}", k.key_index);
    }
    let body = json!({"tspId": TSP_ID, "keys": set.keys});
    // A key whose KCV does not match refuses the whole set.
    let mut bad = body.clone();
    bad["keys"][1]["kcv"] = json!("000000");
    let a = app
        .admin_as(
            &custodian,
            Method::POST,
            "/admin/v1/shared-keys",
            Some(&bad),
        )
        .await;
    assert_eq!(a.status, 400, "{a:?}");
    assert!(!a.text.contains(&set.keys[1].hex), "{a:?}");
    let a = app
        .admin_as(
            &custodian,
            Method::POST,
            "/admin/v1/shared-keys",
            Some(&body),
        )
        .await;
    let imported = a.expect(200).as_array().unwrap().clone();
    assert!(
        imported.iter().all(|k| k["outcome"] == "IMPORTED"),
        "{imported:?}"
    );
    let a = app
        .admin_as(
            &custodian,
            Method::POST,
            "/admin/v1/shared-keys",
            Some(&body),
        )
        .await;
    assert!(a
        .expect(200)
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["outcome"] == "UNCHANGED"));

    let listed = app
        .admin_as(&custodian, Method::GET, "/admin/v1/shared-keys", None)
        .await;
    listed.expect(200);
    let audit = app.admin_get("/admin/v1/audit").await;
    let stored = app.stored_bytes().await;
    for k in &set.keys {
        assert!(listed.text.contains(&k.key_index) && listed.text.contains(&k.kcv.to_uppercase()));
        for text in [&listed.text, &audit.text] {
            assert!(
                !text.to_lowercase().contains(&k.hex.to_lowercase()),
                "a key shows"
            );
        }
        assert!(
            !contains(&stored, &hex::decode(&k.hex).unwrap()),
            "a key is stored in clear"
        );
    }
    let entries = audit.json["entries"].as_array().unwrap();
    let by_custodian: Vec<(&str, &str, i64)> = entries
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
    let (kek, dek) = (
        format!("{TSP_ID}/{}", set.keys[0].key_index),
        format!("{TSP_ID}/{}", set.keys[1].key_index),
    );
    let (kek, dek) = (kek.as_str(), dek.as_str());
    assert_eq!(
        by_custodian,
        [
            ("POST /admin/v1/shared-keys", "", 400),
            ("shared-key.import", kek, 201),
            ("shared-key.import", dek, 201),
            ("shared-key.import", kek, 200),
            ("shared-key.import", dek, 200),
        ]
    );
    // The new key is in use at once: the TSP encrypts under it.
    let token = app.pending_token().await;
    let mut elements = app.required_elements();
    let cmk = elements.iter_mut().find(|e| e["name"] == "cmk_ac").unwrap();
    let key = &set.keys[0];
    let sealed = tokenhub_crypto::encrypt_cbc_m2(
        key.algorithm,
        &key.key_bytes().unwrap(),
        &random_bytes(16),
    )
    .unwrap();
    *cmk = json!({"name": "cmk_ac", "value": hex::encode_upper(sealed), "keyIndex": key.key_index});
    app.put_data(&token, &data_body(&elements))
        .await
        .assert_accepted();
}
