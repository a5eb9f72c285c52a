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
