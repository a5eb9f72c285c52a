//! The operator's commands on admin keys and the audit log, as the binary runs them: a key made
//! by `tokenhub admin-keys create` works against the running hub until `revoke`; `tokenhub audit
//! verify` passes an intact log and fails, naming the entry, on a tampered one.

use crate::harness::*;
use sqlx::Connection;

e2e_tests! {
    async fn admin_keys_made_on_the_store_work_and_audit_verify_finds_a_changed_entry(backend) {
        tokenhub::telemetry::install_crypto_provider();
        let is_sqlite = matches!(backend, Backend::Sqlite);
        let keys = tokenhub_crypto::KeySet::generate();
        let hub = HubProcess::start(backend, &keys, HubSettings::default()).await;
        let db = hub.database_url.clone();
        let http = reqwest::Client::new();
        let audit = format!("{}/admin/v1/audit", hub.url());
        let made = tokenhub(&["admin-keys", "create", "--role", "read-only"], &db);
        assert!(made.status.success());
        let key = String::from_utf8(made.stdout).unwrap().trim().to_string();
        let r = http.get(&audit).bearer_auth(&key).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = http.get(&audit).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 403, "the bootstrap token reads no audit");

        let listed = tokenhub(&["admin-keys", "list"], &db);
        let listed = String::from_utf8(listed.stdout).unwrap();
        let id = key.split('_').nth(1).unwrap();
        assert!(listed.contains(id) && !listed.contains(&key[21..]), "{listed}");
        let revoked = tokenhub(&["admin-keys", "revoke", id], &db);
        assert!(revoked.status.success());
        let r = http.get(&audit).bearer_auth(&key).send().await.unwrap();
        assert_eq!(r.status(), 401, "revoked on the store, refused by the hub at once");

        let ok = tokenhub(&["audit", "verify"], &db);
        assert!(ok.status.success(), "{ok:?}");
        assert!(String::from_utf8(ok.stdout).unwrap().contains("intact"));

        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&db).await.unwrap();
        let untrigger = if is_sqlite {
            "DROP TRIGGER audit_log_no_update"
        } else {
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"
        };
        sqlx::Executor::execute(&mut conn, untrigger).await.unwrap();
        sqlx::Executor::execute(&mut conn, "UPDATE audit_log SET object_id = 'x' WHERE seq = 2")
            .await
            .unwrap();
        let broken = tokenhub(&["audit", "verify"], &db);
        assert!(!broken.status.success());
        let said = String::from_utf8(broken.stderr).unwrap();
        assert!(said.contains("BROKEN at entry 2"), "{said}");
    }
}

/// `tokenhub serve` without a bootstrap token, logging at debug: the token goes to its 0600 file
/// only, and neither it nor a key made and used through the API is in the output or the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_prints_and_logs_no_bootstrap_token_and_no_admin_key() {
    tokenhub::telemetry::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tokenhub"))
        .args([
            "serve",
            "--allow-plain-http-endpoints",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.path().join("hub.db").display()))
        .env("TOKENHUB_MASTER_KEY", MASTER_KEY)
        .env_remove("TOKENHUB_ADMIN_TOKEN")
        .env_remove("TOKENHUB_CONFIG")
        .env("RUST_LOG", "debug")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while http
        .get(format!("{url}/trapi/v2.0/healthCheck"))
        .header("x-request-id", "e2e")
        .send()
        .await
        .is_err()
    {
        assert!(std::time::Instant::now() < until, "the hub did not start");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let bootstrap = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let made = http
        .post(format!("{url}/admin/v1/admin-keys"))
        .bearer_auth(&bootstrap)
        .json(&serde_json::json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let made: serde_json::Value = made.json().await.unwrap();
    let key = made["apiKey"].as_str().unwrap().to_string();
    let r = http
        .put(format!("{url}/admin/v1/tsps/tsp-1"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"baseUrl": "http://127.0.0.1:9/tsp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The log is written by a thread of its own: the request's line may still be on its way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline
        && !std::fs::read_to_string(&err).is_ok_and(|l| l.contains(&key[4..20]))
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let secret = &key[21..];
    let out = std::fs::read_to_string(out).unwrap();
    let log = std::fs::read_to_string(err).unwrap();
    assert!(log.contains("admin.token"), "the log names the file");
    assert!(log.contains(&key[4..20]), "the log names the key by its id");
    for (name, text) in [("stdout", &out), ("log", &log)] {
        assert!(
            !text.contains(bootstrap.trim()),
            "the bootstrap token is in the {name}"
        );
        assert!(!text.contains(secret), "a key's secret is in the {name}");
    }
}
