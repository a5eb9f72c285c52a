//! The world of an end-to-end test: a hub process, a TSP simulator, a device fleet.

use serde_json::{json, Value};
use sqlx::Connection;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokenhub_sim::device::{Fleet, FleetConfig};
use tokenhub_sim::{TspSimConfig, TspSimHandle};

/// The bootstrap token: it may only manage admin keys.
pub const ADMIN_TOKEN: &str = "e2e-bootstrap-token-0123456789abcdef";
pub const MASTER_KEY: &str = "6d6173746572206b657920666f722074686520656e6420746f20656e64207465";
pub const ISSUER: &str = "E2EISSUER1";

/// Where the hub keeps its data.
pub enum Backend {
    Sqlite,
    Postgres(String),
}

/// Writes each test body once, as an `sqlite` and a `postgres` test. Attributes before a body
/// (`#[ignore = "…"]`) go to both.
macro_rules! e2e_tests {
    ($($(#[$attr:meta])* async fn $name:ident($backend:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let $backend = $crate::harness::Backend::Sqlite;
                    $body
                }

                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(url) = $crate::harness::postgres_url_or_skip(module_path!()) else {
                        return;
                    };
                    let $backend = $crate::harness::Backend::Postgres(url);
                    $body
                }
            }
        )*
    };
}

pub fn postgres_url_or_skip(test: &str) -> Option<String> {
    match std::env::var("TOKENHUB_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "postgres variant skipped: TOKENHUB_TEST_DATABASE_URL is not set ({test})"
            );
            None
        }
    }
}

/// Settings of the hub process.
#[derive(Clone)]
pub struct HubSettings {
    pub delivery_window_secs: u64,
    pub delivery_max_tries: u32,
    pub perso_ttl_secs: u64,
    /// More environment variables for the hub process (e.g. `TOKENHUB_NOTIFY_RETRY_SCHEDULE`,
    /// `TOKENHUB_OUTBOUND_ALLOW`).
    pub env: Vec<(String, String)>,
    /// Where the hub process writes its logs (stdout and stderr); `None`: nowhere.
    pub log_to: Option<std::path::PathBuf>,
}

impl HubSettings {
    /// The settings of [`Self::env`] that say where the keys live: `tokenhub keys import` needs
    /// them as the hub does (keys imported under one keystore are not usable under the other).
    fn keystore_env(&self) -> impl Iterator<Item = (&String, &String)> {
        self.env.iter().map(|(k, v)| (k, v)).filter(|(k, _)| {
            k.starts_with("TOKENHUB_KEYSTORE")
                || k.starts_with("TOKENHUB_PKCS11_")
                || k.as_str() == "SOFTHSM2_CONF"
        })
    }
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            delivery_window_secs: 30,
            delivery_max_tries: 5,
            perso_ttl_secs: 900,
            env: Vec::new(),
            log_to: None,
        }
    }
}

/// A `tokenhub serve` process.
pub struct HubProcess {
    child: Option<Child>,
    pub port: u16,
    pub database_url: String,
    /// An `admin` key, made by `tokenhub admin-keys create` before the first start.
    pub admin_key: String,
    settings: HubSettings,
    _dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl HubProcess {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates the database, imports `keys` with `tokenhub keys import`, and starts the hub.
    pub async fn start(
        backend: Backend,
        keys: &tokenhub_crypto::KeySet,
        settings: HubSettings,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (database_url, postgres) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("hub.db").display()),
                None,
            ),
            Backend::Postgres(server) => {
                let name = format!("tokenhub_e2e_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&server).await.unwrap();
                sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
                    .await
                    .unwrap();
                let url = match server.rsplit_once('/') {
                    Some((base, _)) => format!("{base}/{name}"),
                    None => panic!("a database URL ends with /DATABASE"),
                };
                (url, Some((server, name)))
            }
        };
        let key_file = dir.path().join("keys.json");
        std::fs::write(&key_file, serde_json::to_vec(keys).unwrap()).unwrap();
        let status = Command::new(env!("CARGO_BIN_EXE_tokenhub"))
            .args(["keys", "import", "--tsp", "e2e-tsp", "--file"])
            .arg(&key_file)
            .args(["--database-url", &database_url])
            .env("TOKENHUB_MASTER_KEY", MASTER_KEY)
            .envs(settings.keystore_env())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "tokenhub keys import");
        let admin_key = tokenhub(
            &["admin-keys", "create", "--role", "admin", "--label", "e2e"],
            &database_url,
        );
        assert!(admin_key.status.success(), "tokenhub admin-keys create");
        let admin_key = String::from_utf8(admin_key.stdout)
            .unwrap()
            .trim()
            .to_string();
        let port = free_port();
        let mut hub = Self {
            child: None,
            port,
            admin_key,
            database_url,
            settings,
            _dir: dir,
            postgres,
        };
        hub.spawn().await;
        hub
    }

    async fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tokenhub"));
        child
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--database-url", &self.database_url])
            .args([
                "--delivery-window",
                &self.settings.delivery_window_secs.to_string(),
            ])
            .args([
                "--delivery-max-tries",
                &self.settings.delivery_max_tries.to_string(),
            ])
            .args(["--perso-ttl", &self.settings.perso_ttl_secs.to_string()])
            .env("TOKENHUB_MASTER_KEY", MASTER_KEY)
            .env("TOKENHUB_ADMIN_TOKEN", ADMIN_TOKEN)
            // The simulators listen on http:// loopback.
            .env("TOKENHUB_ALLOW_PLAIN_HTTP_ENDPOINTS", "true")
            .env(
                "RUST_LOG",
                std::env::var("E2E_HUB_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(self.settings.env.iter().map(|(k, v)| (k, v)));
        let (out, err) = match &self.settings.log_to {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                (Stdio::from(file.try_clone().unwrap()), Stdio::from(file))
            }
            None => (Stdio::null(), Stdio::inherit()),
        };
        let child = child.stdout(out).stderr(err).spawn().unwrap();
        self.child = Some(child);
        let client = reqwest::Client::new();
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let r = client
                .get(format!("{}/trapi/v2.0/healthCheck", self.url()))
                .header("x-request-id", "e2e")
                .send()
                .await;
            if matches!(r, Ok(ref r) if r.status() == 204) {
                return;
            }
            assert!(Instant::now() < until, "the hub did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the process dies wherever it is.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sets an environment variable of the hub process for its next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.settings.env.retain(|(k, _)| k != key);
        self.settings.env.push((key.into(), value.into()));
    }

    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Every byte the database holds, for scanning (SQLite: the files; PostgreSQL: every row as
    /// text, binary columns as hex).
    pub async fn stored_bytes(&self) -> Vec<u8> {
        if let Some(path) = self.database_url.strip_prefix("sqlite://") {
            let mut out = Vec::new();
            for suffix in ["", "-wal", "-shm"] {
                if let Ok(b) = std::fs::read(format!("{path}{suffix}")) {
                    out.extend_from_slice(&b);
                }
            }
            return out;
        }
        let mut conn = sqlx::PgConnection::connect(&self.database_url)
            .await
            .unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let mut out = Vec::new();
        for t in tables {
            let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {t} t"))
                .fetch_all(&mut conn)
                .await
                .unwrap();
            for r in rows {
                out.extend_from_slice(r.as_bytes());
                out.push(b'\n');
            }
        }
        out
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill();
        if let Some((server, name)) = self.postgres.take() {
            // Best effort; a left-over database is dropped by the next run's clean-up.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&server).await {
                        let _ = sqlx::Executor::execute(
                            &mut c,
                            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                        )
                        .await;
                    }
                })
            })
            .join();
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The hub, the TSP simulator and the devices, wired together.
pub struct World {
    pub hub: HubProcess,
    pub tsp: TspSimHandle,
    pub fleet: Fleet,
    pub http: reqwest::Client,
    /// The wallet provider's API key, which every wallet call (the fleet's too) carries.
    pub wallet_key: String,
}

pub struct WorldOptions {
    pub devices: usize,
    pub partial_calls: usize,
    pub hub: HubSettings,
}

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            devices: 3,
            partial_calls: 1,
            hub: HubSettings::default(),
        }
    }
}

impl World {
    pub async fn start(backend: Backend, options: WorldOptions) -> Self {
        tokenhub::telemetry::install_crypto_provider();
        let keys = tokenhub_crypto::KeySet::generate();
        let hub = HubProcess::start(backend, &keys, options.hub).await;
        let mut sim_config = TspSimConfig::new(hub.url(), keys);
        sim_config.partial_calls = options.partial_calls;
        let tsp = tokenhub_sim::spawn(
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            sim_config,
        )
        .await
        .unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let wallet_key = register_wallet_provider(&http, &hub).await;
        let mut fleet_config = FleetConfig::new(hub.url(), options.devices);
        fleet_config.wait_seconds = 2;
        fleet_config.id_prefix = format!("dev-{}-", uuid::Uuid::new_v4().simple());
        fleet_config.api_key = Some(tokenhub_sim::device::ApiKey(wallet_key.clone()));
        let fleet = Fleet::start(fleet_config).await.unwrap();
        let world = Self {
            hub,
            tsp,
            fleet,
            http,
            wallet_key,
        };
        world
            .admin_put(
                "/admin/v1/tsps/e2e-tsp",
                json!({"baseUrl": world.tsp.base_url()}),
            )
            .await;
        world
            .admin_put(
                &format!("/admin/v1/issuers/{ISSUER}"),
                json!({"name": "E2E Bank", "tspId": "e2e-tsp"}),
            )
            .await;
        world
            .admin_put(
                &format!("/admin/v1/issuers/{ISSUER}/products/classic/profiles/v1"),
                tokenhub_sim::profiles::profile_v1(),
            )
            .await;
        let r = world
            .http
            .post(format!(
                "{}/admin/v1/issuers/{ISSUER}/products/classic/profiles/v1/deploy",
                world.hub.url()
            ))
            .bearer_auth(&world.hub.admin_key)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        world
    }

    async fn admin_put(&self, path: &str, body: Value) {
        admin_put(&self.http, &self.hub, path, body).await;
    }

    /// Digitizes a card onto the `i`-th device, retrying while the hub is down.
    pub async fn digitize(&self, i: usize) -> String {
        self.digitize_with(i, json!({})).await
    }

    /// [`Self::digitize`] with more fields in the body (`tokenRequestorId`, `card`, …), which
    /// replace the defaults of the same name.
    pub async fn digitize_with(&self, i: usize, extra: Value) -> String {
        let device = &self.fleet.device_ids()[i];
        let mut body = json!({"issuerId": ISSUER, "productId": "classic", "deviceId": device,
                              "walletCardRefId": format!("card-{i}")});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self
                .http
                .post(format!("{}/wallet/v1/digitizations", self.hub.url()))
                .bearer_auth(&self.wallet_key)
                .json(&body)
                .send()
                .await;
            if let Ok(r) = r {
                if r.status() == 201 {
                    let v: Value = r.json().await.unwrap();
                    return v["tokenId"].as_str().unwrap().to_string();
                }
                assert!(
                    r.status().is_server_error(),
                    "digitization refused: {}",
                    r.status()
                );
            }
            assert!(Instant::now() < until, "digitization kept failing");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn token(&self, token_id: &str) -> Value {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self
                .http
                .get(format!("{}/admin/v1/tokens/{token_id}", self.hub.url()))
                .bearer_auth(&self.hub.admin_key)
                .send()
                .await;
            if let Ok(r) = r {
                assert_eq!(r.status(), 200);
                return r.json().await.unwrap();
            }
            assert!(Instant::now() < until, "the hub does not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the token is in `state` at the hub.
    pub async fn wait_state(&self, token_id: &str, state: &str, timeout: Duration) -> Value {
        let until = Instant::now() + timeout;
        loop {
            let t = self.token(token_id).await;
            if t["state"] == state {
                return t;
            }
            assert!(
                Instant::now() < until,
                "token {token_id} never became {state}: {t}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the TSP holds the token in `state` (the hub's outbox reached it).
    pub async fn wait_tsp_state(&self, token_id: &str, state: &str, timeout: Duration) {
        let until = Instant::now() + timeout;
        loop {
            if self
                .tsp
                .token(token_id)
                .is_some_and(|t| t.state.as_str() == state)
            {
                return;
            }
            assert!(
                Instant::now() < until,
                "the TSP never saw {token_id} {state}: {:?}",
                self.tsp.token(token_id)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

async fn admin_put(http: &reqwest::Client, hub: &HubProcess, path: &str, body: Value) -> Value {
    let r = http
        .put(format!("{}{path}", hub.url()))
        .bearer_auth(&hub.admin_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "PUT {path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

/// Registers the e2e wallet provider and makes it an API key; the key.
async fn register_wallet_provider(http: &reqwest::Client, hub: &HubProcess) -> String {
    let path = "/admin/v1/wallet-providers/e2e-wallet";
    admin_put(http, hub, path, json!({"name": "E2E Wallet"})).await;
    let r = http
        .post(format!("{}{path}/api-keys", hub.url()))
        .bearer_auth(&hub.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "a wallet API key");
    let v: Value = r.json().await.unwrap();
    v["apiKey"].as_str().unwrap().to_string()
}

/// Runs the `tokenhub` binary with `args` and `--database-url`; its output.
pub fn tokenhub(args: &[&str], database_url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tokenhub"))
        .args(args)
        .args(["--database-url", database_url])
        .env("TOKENHUB_MASTER_KEY", MASTER_KEY)
        .env_remove("TOKENHUB_CONFIG")
        .output()
        .unwrap()
}
