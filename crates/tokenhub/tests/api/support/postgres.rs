//! PostgreSQL databases for the tests.
//!
//! Each test gets a fresh database, `tokenhub_test_<uuid v7>`, copied from a template database,
//! `tokenhub_test_<uuid v7>_template`, that the process migrated once (so a test does not pay for
//! the migrations). Test databases are not dropped when their test ends: `DROP DATABASE` forces a
//! checkpoint, which would slow every test running at the time. Instead each test process first
//! drops what earlier runs left. The uuid v7 in a name says when the database was created; only
//! those older than a run could be still in use are dropped, so a run going on in another process
//! keeps its own.

use sqlx::{Connection, Executor};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const DATABASE_URL_VAR: &str = "TOKENHUB_TEST_DATABASE_URL";

/// The PostgreSQL URL, or `None` after saying plainly that the variant is skipped. Written on the
/// process's stderr directly: the test harness captures `eprintln!`, not this.
pub fn postgres_url_or_skip(test: &str) -> Option<String> {
    match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "postgres variant skipped: {DATABASE_URL_VAR} is not set ({test})"
            );
            None
        }
    }
}

/// A test's database is in use for the few seconds its test runs.
const LEFTOVER_TEST_DATABASE_AGE: Duration = Duration::from_secs(3 * 60);
/// A template is in use for as long as its process runs tests.
const LEFTOVER_TEMPLATE_AGE: Duration = Duration::from_secs(60 * 60);

/// Creates a fresh, migrated database for one test; returns its URL.
pub async fn create_postgres_database(server_url: &str) -> String {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let template = TEMPLATE
        .get_or_init(|| async {
            drop_leftover_databases(server_url).await;
            let name = format!("{}_template", new_database_name());
            create_database(server_url, &name, "template1").await;
            let store = tokenhub::Store::connect(&database_url(server_url, &name))
                .await
                .expect("migrate the template database");
            store.close().await;
            name
        })
        .await;
    let name = new_database_name();
    create_database(server_url, &name, template).await;
    database_url(server_url, &name)
}

pub fn new_database_name() -> String {
    format!("tokenhub_test_{}", uuid::Uuid::now_v7().simple())
}

pub async fn create_database(server_url: &str, name: &str, template: &str) {
    let mut conn = sqlx::PgConnection::connect(server_url)
        .await
        .unwrap_or_else(|e| panic!("connect to {DATABASE_URL_VAR}: {e}"));
    conn.execute(format!("CREATE DATABASE {name} TEMPLATE {template}").as_str())
        .await
        .expect("create a test database");
}

pub fn database_url(server_url: &str, name: &str) -> String {
    let mut url = reqwest::Url::parse(server_url).expect("a valid PostgreSQL URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// Whether `name` is a test database that no run can be using any more.
fn is_leftover(name: &str, now: std::time::SystemTime) -> bool {
    let Some(rest) = name.strip_prefix("tokenhub_test_") else {
        return false;
    };
    let (uuid, max_age) = match rest.strip_suffix("_template") {
        Some(uuid) => (uuid, LEFTOVER_TEMPLATE_AGE),
        None => (rest, LEFTOVER_TEST_DATABASE_AGE),
    };
    let created = uuid::Uuid::try_parse(uuid)
        .ok()
        .and_then(|u| u.get_timestamp())
        .map(|t| {
            let (secs, nanos) = t.to_unix();
            std::time::UNIX_EPOCH + Duration::new(secs, nanos)
        });
    match created {
        Some(t) => now.duration_since(t).is_ok_and(|age| age > max_age),
        // Not named by this harness's rule: left by an older version of it.
        None => true,
    }
}

/// Drops the databases earlier runs left (`DROP DATABASE … WITH (FORCE)`).
async fn drop_leftover_databases(server_url: &str) {
    let mut conn = sqlx::PgConnection::connect(server_url)
        .await
        .unwrap_or_else(|e| panic!("connect to {DATABASE_URL_VAR}: {e}"));
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname LIKE 'tokenhub\\_test\\_%'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("list the test databases");
    let now = std::time::SystemTime::now();
    let leftovers: VecDeque<String> = names.into_iter().filter(|n| is_leftover(n, now)).collect();
    // Each drop waits for a checkpoint; concurrent drops share theirs.
    let queue = Arc::new(Mutex::new(leftovers));
    let workers = (0..4).map(|_| {
        let queue = queue.clone();
        async move {
            let mut conn = sqlx::PgConnection::connect(server_url)
                .await
                .unwrap_or_else(|e| panic!("connect to {DATABASE_URL_VAR}: {e}"));
            loop {
                let Some(name) = queue.lock().unwrap().pop_front() else {
                    return;
                };
                let dropped = conn
                    .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                    .await;
                if let Err(e) = dropped {
                    // Not this run's concern (another process may be dropping it too).
                    use std::io::Write;
                    let _ = writeln!(
                        std::io::stderr(),
                        "could not drop the leftover database {name}: {e}"
                    );
                }
            }
        }
    });
    futures::future::join_all(workers).await;
}
