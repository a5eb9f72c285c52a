//! SQLite is single-node: a second `tokenhub serve` on the file a hub serves is refused at start,
//! and a command that opens the store meanwhile (`tokenhub keys import`) leaves the live hub's
//! claims alone.

use crate::harness::*;
use sqlx::{Connection, Executor};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A claim the live hub could hold on a call: due far ahead, held far ahead, to a TSP that is not
/// registered (so no lane of the hub takes it).
const HELD_UNTIL_MS: i64 = 4_102_444_800_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_a_served_sqlite_file_is_refused_at_start() {
    tokenhub::telemetry::install_crypto_provider();
    let keys = tokenhub_crypto::KeySet::generate();
    let hub = HubProcess::start(Backend::Sqlite, &keys, HubSettings::default()).await;
    let mut second = Command::new(env!("CARGO_BIN_EXE_tokenhub"))
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--database-url", &hub.database_url])
        .env("TOKENHUB_MASTER_KEY", MASTER_KEY)
        .env("TOKENHUB_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > until {
            let _ = second.kill();
            panic!("the second serve kept running");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(second.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("served by another tokenhub process") && stderr.contains(".lock"),
        "{stderr}"
    );
    // The first one still serves.
    let r = reqwest::Client::new()
        .get(format!("{}/trapi/v2.0/healthCheck", hub.url()))
        .header("x-request-id", "still")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_import_on_a_served_sqlite_file_leaves_the_hubs_claims_alone() {
    tokenhub::telemetry::install_crypto_provider();
    let keys = tokenhub_crypto::KeySet::generate();
    let hub = HubProcess::start(Backend::Sqlite, &keys, HubSettings::default()).await;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&hub.database_url)
        .await
        .unwrap();
    // A claimed call of no real token: the foreign keys are off for this connection only.
    conn.execute("PRAGMA foreign_keys = OFF").await.unwrap();
    conn.execute(
        format!(
            "INSERT INTO outbox (kind, token_id, tsp_id, correlation_id, payload, state, attempts, \
             next_attempt_ms, locked_until_ms, created_ms, updated_ms) VALUES ('updateTokenState', \
             'TKN-HELD', 'tsp-unregistered', 'cid-held', '{{}}', 'PENDING', 1, 0, {HELD_UNTIL_MS}, 0, 0)"
        )
        .as_str(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.json");
    std::fs::write(&file, serde_json::to_vec(&keys).unwrap()).unwrap();
    let imported = tokenhub(
        &[
            "keys",
            "import",
            "--tsp",
            "e2e-tsp",
            "--file",
            file.to_str().unwrap(),
        ],
        &hub.database_url,
    );
    assert!(imported.status.success(), "{imported:?}");
    let held: i64 =
        sqlx::query_scalar("SELECT locked_until_ms FROM outbox WHERE correlation_id = 'cid-held'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(held, HELD_UNTIL_MS, "the live hub's claim is still its own");
}
