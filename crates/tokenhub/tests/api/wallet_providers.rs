//! Wallet providers as the admin API manages them: API keys shown once, stored only hashed,
//! rotated and revoked within their own provider; a client certificate's pin as the provider's
//! identity, which no other provider may take.

use crate::support::*;
use crate::wallet_auth::{call, poll_path};
use serde_json::{json, Value};

hub_tests!(
    api_keys_are_not_stored_in_clear_and_the_admin_api_never_shows_them,
    a_key_is_revoked_only_through_its_own_provider,
    a_client_certificate_pinned_to_a_provider_authenticates_it,
);

async fn api_keys_are_not_stored_in_clear_and_the_admin_api_never_shows_them(app: TestApp) {
    let (key_id, key) = app.new_wallet_key(WALLET_PROVIDER).await;
    let view = app
        .admin_get(&format!("/admin/v1/wallet-providers/{WALLET_PROVIDER}"))
        .await;
    let v = view.expect(200);
    let ids: Vec<&str> = v["apiKeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["keyId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&key_id.as_str()));
    let stored = app.stored_bytes().await;
    for k in [&key, &app.wallet_key] {
        // `twk_<hex id>_<secret>`: the secret (base64url) may itself hold a `_`.
        let secret = k.strip_prefix("twk_").unwrap().split_once('_').unwrap().1;
        assert!(!view.text.contains(secret), "the admin API shows no key");
        assert!(
            !contains(&stored, secret.as_bytes()),
            "a key's secret is stored"
        );
        assert!(!contains(&stored, k.as_bytes()), "a key is stored");
    }
    assert_eq!(
        app.admin_get("/admin/v1/wallet-providers/nobody")
            .await
            .status,
        404
    );
    assert_eq!(
        app.admin_post("/admin/v1/wallet-providers/nobody/api-keys", None)
            .await
            .status,
        404
    );
    let r = app
        .client
        .post(app.url(&format!(
            "/admin/v1/wallet-providers/{WALLET_PROVIDER}/api-keys"
        )))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a wallet key is not an admin key");
}

async fn a_key_is_revoked_only_through_its_own_provider(app: TestApp) {
    let (key_id, key) = app.new_wallet_key(WALLET_PROVIDER).await;
    app.register_wallet_provider("other-wallet").await;
    let revoke =
        |provider: &str, key: &str| format!("/admin/v1/wallet-providers/{provider}/api-keys/{key}");
    for path in [
        revoke("other-wallet", &key_id),
        revoke(WALLET_PROVIDER, "0123456789abcdef"),
        revoke("nobody", &key_id),
    ] {
        app.admin_send(reqwest::Method::DELETE, &path, None)
            .await
            .expect(404);
    }
    let client = app.wallet_client(&key);
    call(
        &app,
        &client,
        reqwest::Method::GET,
        &poll_path(DEVICE),
        None,
    )
    .await
    .expect(200);
    // Updating the provider keeps its keys.
    let body = json!({"name": "Renamed Wallet"});
    let path = format!("/admin/v1/wallet-providers/{WALLET_PROVIDER}");
    let v = app
        .admin_send(reqwest::Method::PUT, &path, Some(&body))
        .await;
    assert_eq!(v.expect(200)["apiKeys"].as_array().unwrap().len(), 2);
    call(
        &app,
        &client,
        reqwest::Method::GET,
        &poll_path(DEVICE),
        None,
    )
    .await
    .expect(200);
    for _ in 0..2 {
        app.admin_send(
            reqwest::Method::DELETE,
            &revoke(WALLET_PROVIDER, &key_id),
            None,
        )
        .await
        .expect(204);
    }
    let v = app.admin_get(&path).await;
    let keys = v.expect(200)["apiKeys"].as_array().unwrap().clone();
    let revoked: Vec<_> = keys.iter().filter(|k| k["revokedMs"].is_i64()).collect();
    assert_eq!(revoked.len(), 1, "{keys:?}");
    assert_eq!(revoked[0]["keyId"], key_id.as_str());
    call(
        &app,
        &client,
        reqwest::Method::GET,
        &poll_path(DEVICE),
        None,
    )
    .await
    .expect(401);
    assert_eq!(
        app.device_work(DEVICE).await.len(),
        0,
        "the other key still works"
    );
}

/// A self-signed P-256 certificate made with `openssl req -x509`, and its SPKI SHA-256 computed
/// by `openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum`.
const CERT_DER_HEX: &str = concat!(
    "3082019330820139a00302010202143cbfde9ee2d49dcdf60641177d51c566a5d24e48300a06082a8648ce3d",
    "040302301f311d301b06035504030c1477616c6c65742d70726f76696465722d74657374301e170d32363132",
    "30333038343632345a170d3336313133303038343632345a301f311d301b06035504030c1477616c6c65742d",
    "70726f76696465722d746573743059301306072a8648ce3d020106082a8648ce3d03010703420004a4664953",
    "51fa54cd59daa24a128bc26dbf66158b03f25ed8376c2338d1342b2b5b020b89acabeb87802e77b4e33088b5",
    "fbe58989a569c30d8f12847e5d83c9e0a3533051301d0603551d0e04160414be6efc73df8d8ab74ed14971a3",
    "c43767dfd05b25301f0603551d23041830168014be6efc73df8d8ab74ed14971a3c43767dfd05b25300f0603",
    "551d130101ff040530030101ff300a06082a8648ce3d0403020348003045022100",
    "8b1ec84805937e5f7f73c820c66669af0c69e95484d589601635418af399f57702206b668ff9d93ae707d6",
    "b6ace61c9efb67889e7293b75972c812d39197b3e3be0e",
);
const CERT_PIN: &str = "2a923039eb85a019b14f3b70d70fa5c53b41f5fda1ce5bbba6bfe5830613b0ed";

async fn a_client_certificate_pinned_to_a_provider_authenticates_it(app: TestApp) {
    use tower::ServiceExt;
    let body = json!({"name": "Pinned Wallet", "clientCertSpkiSha256": CERT_PIN.to_uppercase()});
    app.admin_send(
        reqwest::Method::PUT,
        "/admin/v1/wallet-providers/pinned",
        Some(&body),
    )
    .await
    .expect(200);
    let taken = json!({"name": "Thief", "clientCertSpkiSha256": CERT_PIN});
    app.admin_send(
        reqwest::Method::PUT,
        "/admin/v1/wallet-providers/thief",
        Some(&taken),
    )
    .await
    .expect(409);
    let cert = hex::decode(CERT_DER_HEX).unwrap();
    let request = |method: &str, path: &str, body: Option<Value>, cert: Option<Vec<u8>>| {
        let mut r = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            ))
            .unwrap();
        if let Some(c) = cert {
            r.extensions_mut()
                .insert(tokenhub::http::PeerCertificate(c.into()));
        }
        r
    };
    let hub = app.hub.clone();
    let send = move |r: axum::http::Request<axum::body::Body>| {
        let router = tokenhub::http::router(hub.clone());
        async move { router.oneshot(r).await.unwrap().status().as_u16() }
    };
    let device = json!({"deviceId": "device-pinned", "publicKey": device_public_key()});
    let path = "/wallet/v1/devices/device-pinned/personalizations";
    assert_eq!(
        send(request(
            "POST",
            "/wallet/v1/devices",
            Some(device),
            Some(cert.clone())
        ))
        .await,
        201
    );
    assert_eq!(
        send(request("GET", path, None, Some(cert.clone()))).await,
        200
    );
    let mut other_cert = cert.clone();
    let n = other_cert.len();
    other_cert[n - 1] ^= 1;
    let mut other_key = cert.clone();
    let point = other_key
        .windows(4)
        .position(|w| w == [0x03, 0x42, 0x00, 0x04])
        .expect("the certificate's public key");
    other_key[point + 10] ^= 1;
    assert_eq!(
        send(request("GET", path, None, Some(other_cert))).await,
        200,
        "the signature is the TLS layer's to check; the pin names the key"
    );
    assert_eq!(
        send(request("GET", path, None, Some(other_key))).await,
        401,
        "another key"
    );
    assert_eq!(send(request("GET", path, None, None)).await, 401);
    let a = call(
        &app,
        &app.wallet,
        reqwest::Method::GET,
        &poll_path("device-pinned"),
        None,
    )
    .await;
    assert_eq!(a.status, 404, "another provider's device");
}

/// Migration 0015: a device registered before wallet providers existed keeps its row and key but
/// is no provider's, and no provider can claim it by registering it again.
async fn devices_from_before_migration_0015_are_no_providers(url: String, dialect: &str) {
    use sqlx::Executor;
    use tokenhub::domain::catalog::PutImmutable;
    use tokenhub::domain::wallet_provider::WalletProvider;
    sqlx::any::install_default_drivers();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    let mut old = sqlx::migrate::Migrator::new(dir).await.unwrap();
    old.migrations = old
        .migrations
        .iter()
        .filter(|m| m.version <= 13)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    old.run(&pool).await.expect("migrations 1 to 13");
    pool.execute(
        "INSERT INTO devices (device_id, public_key, created_ms) VALUES ('dev', 'key', 1)",
    )
    .await
    .unwrap();
    pool.close().await;

    let store = tokenhub::Store::connect(&url)
        .await
        .expect("migrate to now");
    assert_eq!(
        store.device_public_key("dev").await.unwrap().as_deref(),
        Some("key")
    );
    assert_eq!(store.device_provider("dev").await.unwrap(), None);
    let claimed = store
        .transact(|c| {
            Box::pin(async move {
                let p = WalletProvider {
                    provider_id: "p".into(),
                    name: "P".into(),
                    spki_sha256: None,
                };
                assert!(c.put_wallet_provider(&p, 2).await?);
                c.put_device("dev", "key", Some("p"), 2).await
            })
        })
        .await
        .unwrap();
    assert_eq!(claimed, PutImmutable::Conflict);
    assert_eq!(store.device_provider("dev").await.unwrap(), None);
    store.close().await;
}

mod devices_from_before_migration_0015_are_no_providers {
    use crate::support::{create_database, database_url, new_database_name, postgres_url_or_skip};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
        super::devices_from_before_migration_0015_are_no_providers(url, "sqlite").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(server) = postgres_url_or_skip(module_path!()) else {
            return;
        };
        let name = new_database_name();
        create_database(&server, &name, "template1").await;
        super::devices_from_before_migration_0015_are_no_providers(
            database_url(&server, &name),
            "postgres",
        )
        .await;
    }
}
