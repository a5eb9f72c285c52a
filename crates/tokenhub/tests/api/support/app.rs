//! Starting a hub under test: its database, its configuration, its clock.

use super::{
    client_with, create_key_with, create_postgres_database, seed, test_certs, FakeTsp, ADMIN_TOKEN,
    LONG_KEY_INDEX, MASTER_KEY, PERSO_TTL, TSP_ID,
};
use serde_json::json;
use sqlx::{Connection, Executor, Row};
use std::sync::Arc;
use std::time::Duration;
use tokenhub::clock::{Clock, ManualClock};
use tokenhub::config::{ListenerConfig, ListenerSecurity, Listeners};
use tokenhub::{Application, Config, Hub};
use tokenhub_crypto::{Algorithm, KeySet, SharedKey};

/// Where the hub under test keeps its data.
pub enum Backend {
    Sqlite,
    /// The URL of a PostgreSQL server's database to connect to for `CREATE DATABASE`.
    Postgres(String),
}

/// The database of one test.
pub(crate) enum Database {
    Sqlite {
        /// Kept so the folder lives as long as the test.
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
    },
    Postgres {
        url: String,
    },
}

impl Database {
    fn url(&self) -> String {
        match self {
            Database::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            Database::Postgres { url } => url.clone(),
        }
    }
}

/// A hub under test and everything around it.
pub struct TestApp {
    /// `https://127.0.0.1:PORT` of the TSP (mutual TLS), wallet and admin listeners.
    pub tsp_address: String,
    pub wallet_address: String,
    pub admin_address: String,
    /// Trusts the test CA and presents the TSP under test's client certificate.
    pub client: reqwest::Client,
    /// The folder of the hub's certificate files (`hub.crt`, `hub.key`).
    pub cert_dir: std::path::PathBuf,
    /// The wallet provider [`WALLET_PROVIDER`](super::WALLET_PROVIDER)'s client: every request
    /// carries its API key.
    pub wallet: reqwest::Client,
    /// That provider's API key.
    pub wallet_key: String,
    pub hub: Arc<Hub>,
    /// The hub's clock: a test moves it to reach deadlines and retry times.
    pub clock: ManualClock,
    /// The keys shared with the TSP at the key ceremony (clear: the test plays the TSP).
    pub keys: KeySet,
    pub tsp: FakeTsp,
    /// The `admin`-role key the harness made with the bootstrap token: every admin call of the
    /// tests goes with it.
    pub admin_key: String,
    db: Database,
    _certs: tempfile::TempDir,
}

/// The configuration every test starts from: the admin token, the master key, the perso time to
/// live, and token updates accepted however far ahead they are stamped.
pub fn default_config(config: &mut Config) {
    config.listen = "127.0.0.1:0".parse().unwrap();
    // Certificates changed on disk are seen quickly.
    config.limits.cert_poll = Duration::from_millis(100);
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.master_key = Some(MASTER_KEY.into());
    config.perso_ttl = PERSO_TTL;
    // Token updates in these tests are stamped in 2035, after anything the hub stamps itself.
    config.max_update_skew = Duration::from_secs(20 * 365 * 24 * 3600);
    // The fake TSP and the test requestors listen on http:// loopback.
    config.outbound.allow_plain_http = true;
}

/// A hub with [`default_config`], seeded (TSP, issuer, deployed profile, device).
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, default_config).await
}

/// A hub whose configuration is [`default_config`] then `configure`, seeded like [`spawn_app`]
/// unless `configure` refused `http://` endpoints (the fake TSP listens on one).
pub async fn spawn_app_with(backend: Backend, configure: fn(&mut Config)) -> TestApp {
    tokenhub::telemetry::install_crypto_provider();
    let db = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("a temporary folder");
            let path = dir.path().join("tokenhub.db");
            Database::Sqlite { _dir: dir, path }
        }
        Backend::Postgres(server_url) => Database::Postgres {
            url: create_postgres_database(&server_url).await,
        },
    };
    let (certs, config) = node_config(&db.url(), configure);
    let seeded = config.outbound.allow_plain_http;
    let clock = ManualClock::new();
    let application = Application::build_with_clock(config, Arc::new(clock.clone()))
        .await
        .expect("the hub starts");
    let addresses = application.addresses();
    let hub = application.hub().clone();
    tokio::spawn(application.run_until(std::future::pending()));

    let mut keys = KeySet::generate();
    keys.keys.push(SharedKey::generate(
        LONG_KEY_INDEX,
        Algorithm::Aes256,
        "kek",
    ));
    tokenhub::flows::keys::import(
        &hub.store,
        &hub.keys,
        TSP_ID,
        &keys.keys,
        "cli",
        clock.now_ms(),
    )
    .await
    .expect("the key ceremony's keys import");
    hub.reload_keys().await.expect("the keys load");

    let tsp = FakeTsp::spawn().await;
    let client = client_with(Some(&test_certs().tsp));
    let admin_address = format!("https://{}", addresses.admin);
    let admin_key = create_key_with(
        &client,
        &admin_address,
        ADMIN_TOKEN,
        &json!({"role": "admin"}),
    )
    .await
    .expect(201)["apiKey"]
        .as_str()
        .expect("the new key")
        .to_string();
    let mut app = TestApp {
        tsp_address: format!("https://{}", addresses.tsp),
        wallet_address: format!("https://{}", addresses.wallet),
        admin_address,
        wallet: client.clone(),
        wallet_key: String::new(),
        client,
        admin_key,
        cert_dir: certs.path().to_path_buf(),
        _certs: certs,
        hub,
        clock,
        keys,
        tsp,
        db,
    };
    if seeded {
        seed::seed(&mut app).await;
    }
    app
}

/// A hub's certificate folder and its configuration on `database_url`: the three listeners on
/// port 0 over TLS, [`default_config`], then `configure`.
fn node_config(database_url: &str, configure: fn(&mut Config)) -> (tempfile::TempDir, Config) {
    let certs = tempfile::tempdir().expect("a temporary folder");
    let (cert, key) = (certs.path().join("hub.crt"), certs.path().join("hub.key"));
    std::fs::write(&cert, &test_certs().hub.cert).unwrap();
    std::fs::write(&key, &test_certs().hub.key).unwrap();
    let tls = |addr: &str| ListenerConfig {
        addr: addr.parse().unwrap(),
        security: ListenerSecurity::Tls {
            cert: cert.clone(),
            key: key.clone(),
        },
    };
    let mut config = Config::for_database(database_url);
    config.listeners = Some(Listeners {
        tsp: tls("127.0.0.1:0"),
        wallet: tls("127.0.0.1:0"),
        admin: tls("127.0.0.1:0"),
    });
    default_config(&mut config);
    configure(&mut config);
    (certs, config)
}

impl TestApp {
    /// A second node: another hub on this test's PostgreSQL database, configured like the first
    /// with `configure`, on the same clock, with listeners of its own. It shares what the store
    /// holds (the seeded TSP, issuer, profile, device and keys, the admin and wallet keys) and
    /// the fake TSP; nothing is seeded again.
    pub async fn another_node(&self, configure: fn(&mut Config)) -> TestApp {
        let Database::Postgres { url } = &self.db else {
            panic!("SQLite is single-node: a second node needs PostgreSQL");
        };
        let (certs, config) = node_config(url, configure);
        let application = Application::build_with_clock(config, Arc::new(self.clock.clone()))
            .await
            .expect("the second node starts");
        let addresses = application.addresses();
        let hub = application.hub().clone();
        tokio::spawn(application.run_until(std::future::pending()));
        TestApp {
            tsp_address: format!("https://{}", addresses.tsp),
            wallet_address: format!("https://{}", addresses.wallet),
            admin_address: format!("https://{}", addresses.admin),
            client: self.client.clone(),
            cert_dir: certs.path().to_path_buf(),
            wallet: self.wallet.clone(),
            wallet_key: self.wallet_key.clone(),
            hub,
            clock: self.clock.clone(),
            keys: self.keys.clone(),
            tsp: self.tsp.clone(),
            admin_key: self.admin_key.clone(),
            db: Database::Postgres { url: url.clone() },
            _certs: certs,
        }
    }

    /// `path` on the listener that serves it: `/trapi/...` on the TSP listener, `/wallet/...` on
    /// the wallet listener (and `/requestor/...`), anything else on the admin listener.
    pub fn url(&self, path: &str) -> String {
        let base = if path.starts_with("/trapi/") {
            &self.tsp_address
        } else if path.starts_with("/wallet/") || path.starts_with("/requestor/") {
            &self.wallet_address
        } else {
            &self.admin_address
        };
        format!("{base}{path}")
    }

    /// Everything the database holds, as bytes: for SQLite the database file and its WAL; for
    /// PostgreSQL every row of every table as text (`bytea` shows as hex).
    pub async fn stored_bytes(&self) -> Vec<u8> {
        match &self.db {
            Database::Sqlite { path, .. } => {
                let mut bytes = std::fs::read(path).expect("the database file");
                let wal = path.with_file_name("tokenhub.db-wal");
                if let Ok(w) = std::fs::read(wal) {
                    bytes.extend(w);
                }
                bytes
            }
            Database::Postgres { url } => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap();
                assert!(tables.iter().any(|t| t == "token_data"), "{tables:?}");
                let mut out = Vec::new();
                for t in tables {
                    let rows = sqlx::query(&format!("SELECT CAST(t AS text) FROM \"{t}\" t"))
                        .fetch_all(&mut conn)
                        .await
                        .unwrap();
                    for r in rows {
                        let line: String = r.get(0);
                        out.extend(line.into_bytes());
                        out.push(b'\n');
                    }
                }
                out
            }
        }
    }

    /// The SQLite database file, `None` on PostgreSQL.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match &self.db {
            Database::Sqlite { path, .. } => Some(path),
            Database::Postgres { .. } => None,
        }
    }

    /// The test database's URL.
    pub fn database_url(&self) -> String {
        self.db.url()
    }

    /// Runs SQL on the test's database outside the hub (to inject a fault the API cannot cause).
    pub async fn execute_sql(&self, sql: &str) {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.db.url()).await.unwrap();
        conn.execute(sql).await.unwrap();
    }

    /// Reads one integer with SQL on the test's database outside the hub (what the API does not
    /// show, e.g. when the outbox will try a call again); `None` when no row matches.
    pub async fn sql_i64(&self, sql: &str) -> Option<i64> {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.db.url()).await.unwrap();
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_optional(&mut conn)
            .await
            .unwrap()
    }
}
