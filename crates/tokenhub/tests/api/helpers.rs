//! The harness every test uses: a real hub over real HTTP on port 0, on a fresh database (an SQLite
//! file in a temporary folder, or a fresh PostgreSQL database), with a [`ManualClock`] the test can
//! move, keys from a key ceremony imported, and a fake TSP the hub calls for `createToken`.
//!
//! The fake TSP never sends `/data` by itself: the test plays the TSP and sends exactly the calls
//! a case needs. [`TestApp`] has one method per endpoint so that test bodies read like the contract.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use sqlx::{Connection, Executor, Row};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenhub::clock::{Clock, ManualClock};
use tokenhub::domain::TokenState;
use tokenhub::{Application, Config, Hub};
use tokenhub_crypto::{Algorithm, KeySet, SharedKey};

pub const ADMIN_TOKEN: &str = "admin-token-for-the-api-tests";
pub const MASTER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
pub const PERSO_TTL: Duration = Duration::from_secs(900);
pub const TSP_ID: &str = "tsp-under-test";
pub const ISSUER: &str = "ISSUER0001";
/// A second registered issuer, for "registered, but not the token's issuer".
pub const OTHER_ISSUER: &str = "ISSUER0002";
pub const PRODUCT: &str = "visa-classic";
pub const VERSION: &str = "v1";
pub const DEVICE: &str = "device-0001";
/// The ceremony's keys: an AES-128 KEK and a 3DES DEK ([`KeySet::generate`]), plus a key whose
/// index is 32 characters long, the most the contract allows.
pub const KEK: &str = "KEK01";
pub const DEK: &str = "DEK01";
pub const LONG_KEY_INDEX: &str = "KEY-INDEX-OF-32-CHARACTERS-12345";
/// An optional element whose name is 32 characters long, the most the contract allows.
pub const LONG_NAME: &str = "an_element_name_of_32_characters";
/// Optional elements `opt001`..`opt200` (digits, at most 4), so that one call can carry 200
/// distinct, valid elements.
pub const OPTIONAL_COUNT: usize = 200;
pub const TSP_EXP: &str = "1229";
pub const TSP_LAST4: &str = "4321";

pub const DATABASE_URL_VAR: &str = "TOKENHUB_TEST_DATABASE_URL";

/// Where the hub under test keeps its data.
pub enum Backend {
    Sqlite,
    /// The URL of a PostgreSQL server's database to connect to for `CREATE DATABASE`.
    Postgres(String),
}

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

/// Runs each test body (an `async fn name(app: TestApp)` of the calling module, written once) on
/// both backends: `area::name::sqlite` and `area::name::postgres`.
macro_rules! hub_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let app = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await;
                    super::$name(app).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(url) = $crate::helpers::postgres_url_or_skip(module_path!()) else {
                        return;
                    };
                    let app = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres(url)).await;
                    super::$name(app).await;
                }
            }
        )*
    };
}

/// The database of one test.
enum Database {
    Sqlite {
        /// Kept so the folder lives as long as the test.
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
    },
    Postgres {
        url: String,
    },
}

/// A hub under test and everything around it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    pub client: reqwest::Client,
    pub hub: Arc<Hub>,
    pub clock: ManualClock,
    /// The keys shared with the TSP at the key ceremony (clear: the test plays the TSP).
    pub keys: KeySet,
    pub tsp: FakeTsp,
    db: Database,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
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
    let database_url = match &db {
        Database::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
        Database::Postgres { url, .. } => url.clone(),
    };
    let mut config = Config::for_database(&database_url);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.master_key = Some(MASTER_KEY.into());
    config.perso_ttl = PERSO_TTL;
    // Token updates in these tests are stamped in 2035, after anything the hub stamps itself.
    config.max_update_skew = std::time::Duration::from_secs(20 * 365 * 24 * 3600);
    let clock = ManualClock::new();
    let application = Application::build_with_clock(config, Arc::new(clock.clone()))
        .await
        .expect("the hub starts");
    let address = format!("http://{}", application.local_addr());
    let hub = application.hub().clone();
    tokio::spawn(application.run_until(std::future::pending()));

    let mut keys = KeySet::generate();
    keys.keys.push(SharedKey::generate(
        LONG_KEY_INDEX,
        Algorithm::Aes256,
        "dek",
    ));
    tokenhub::flows::keys::import(&hub.store, &hub.keys, &keys.keys, clock.now_ms())
        .await
        .expect("the key ceremony's keys import");
    hub.reload_keys().await.expect("the keys load");

    let tsp = FakeTsp::spawn().await;
    let app = TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        hub,
        clock,
        keys,
        tsp,
        db,
    };

    let r = app.put_tsp(TSP_ID, &app.tsp.base_url()).await;
    assert_eq!(r.status(), 200, "register the TSP");
    let r = app.put_issuer(ISSUER, "First Test Bank", TSP_ID).await;
    assert_eq!(r.status(), 200, "register the issuer");
    let r = app
        .put_profile_version(ISSUER, PRODUCT, VERSION, &profile_definition())
        .await;
    assert_eq!(r.status(), 201, "define the profile version");
    let r = app.deploy(ISSUER, PRODUCT, VERSION).await;
    assert_eq!(r.status(), 200, "deploy the profile version");
    let r = app
        .register_device(&json!({"deviceId": DEVICE, "publicKey": device_public_key()}))
        .await;
    assert_eq!(r.status(), 201, "register the device");
    app
}

/// The product's profile version: what the TSP must and may send, and the issuer's template.
pub fn profile_definition() -> Value {
    let mut elements = vec![
        json!({"name": "cmk_ac", "required": true, "format": "hex", "maxLength": 32, "sensitive": true}),
        json!({"name": "track2_data", "required": true, "format": "hex", "maxLength": 64, "sensitive": true}),
        json!({"name": "psn", "required": true, "format": "digits", "maxLength": 2}),
        json!({"name": "par", "required": false, "format": "text", "maxLength": 29}),
        // No maxLength: only the contract's 100,000-character total bounds it.
        json!({"name": "issuer_note", "format": "text"}),
        json!({"name": LONG_NAME, "format": "text", "maxLength": 8}),
    ];
    elements.extend(
        (1..=OPTIONAL_COUNT)
            .map(|i| json!({"name": optional_name(i), "format": "digits", "maxLength": 4})),
    );
    json!({
        "dataElements": elements,
        "template": [
            {"dgi": "0101", "data": "9F0702FF00"},
            {"dgi": "0D01", "data": "5F280202505F3401"}
        ]
    })
}

pub fn optional_name(i: usize) -> String {
    format!("opt{i:03}")
}

/// A 32-byte device key, base64url.
pub fn device_public_key() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32])
}

/// A fresh unique id for a call (`x-correlation-id`).
pub fn correlation_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `{"issuerId": ISSUER, "tokenPersoInfo": elements}`.
pub fn data_body(elements: &[Value]) -> Value {
    json!({"issuerId": ISSUER, "tokenPersoInfo": elements})
}

/// A clear (non-sensitive) element.
pub fn clear(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

pub fn psn() -> Value {
    clear("psn", "01")
}

/// Random bytes, for key material and track 2 data nobody else could have sent.
pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// An answer of the TSP incoming API, read whole.
#[derive(Debug)]
pub struct TspAnswer {
    pub status: u16,
    pub correlation_id: Option<String>,
    pub request_id: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
}

impl TspAnswer {
    async fn read(r: reqwest::Response) -> Self {
        let header = |name: &str| {
            r.headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let correlation_id = header("x-correlation-id");
        let request_id = header("x-request-id");
        let content_type = header("content-type");
        let status = r.status().as_u16();
        let body = r.text().await.expect("the answer's body");
        Self {
            status,
            correlation_id,
            request_id,
            content_type,
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("errorRes is JSON ({e}): {:?}", self.body))
    }

    /// `errorRes.responseCode`.
    pub fn code(&self) -> Option<u64> {
        serde_json::from_str::<Value>(&self.body)
            .ok()?
            .get("responseCode")?
            .as_u64()
    }

    pub fn message(&self) -> String {
        self.json()["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// `204`, no body.
    #[track_caller]
    pub fn assert_accepted(&self) {
        assert_eq!(self.status, 204, "expected 204, got {self:?}");
        assert!(self.body.is_empty(), "a 204 has no body: {self:?}");
    }

    /// `400 {"responseCode": code, "errorMessage": …}` (the contract's refusal).
    #[track_caller]
    pub fn assert_refused(&self, code: u64) {
        assert_eq!(
            (self.status, self.code()),
            (400, Some(code)),
            "expected 400 with responseCode {code}, got {self:?}"
        );
        assert!(
            self.content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/json")),
            "errorRes is sent as JSON: {self:?}"
        );
        assert!(
            !self.message().is_empty(),
            "errorRes carries an errorMessage: {self:?}"
        );
    }
}

/// What the admin API says about a token.
pub type TokenView = Value;

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    // ---- TSP incoming API ----

    /// `PUT /trapi/v2.0/tokens/{tokenId}/data` with a fresh `x-correlation-id`.
    pub async fn put_data(&self, token_id: &str, body: &Value) -> TspAnswer {
        self.put_data_as(token_id, &correlation_id(), body).await
    }

    /// `PUT …/data` with the given `x-correlation-id` (a repeat reuses one).
    pub async fn put_data_as(
        &self,
        token_id: &str,
        correlation_id: &str,
        body: &Value,
    ) -> TspAnswer {
        self.put_data_with_headers(
            token_id,
            &[
                ("x-correlation-id", correlation_id),
                ("content-type", "application/json"),
            ],
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    /// `PUT …/data` with exactly these headers and these body bytes.
    pub async fn put_data_with_headers(
        &self,
        token_id: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> TspAnswer {
        self.put_tsp_call(
            &format!("/trapi/v2.0/tokens/{token_id}/data"),
            headers,
            body,
        )
        .await
    }

    /// `PUT /trapi/v2.0/tokens/{tokenId}/newData` with a fresh `x-correlation-id`.
    pub async fn put_new_data(&self, token_id: &str, body: &Value) -> TspAnswer {
        self.put_new_data_with_headers(
            token_id,
            &[
                ("x-correlation-id", &correlation_id()),
                ("content-type", "application/json"),
            ],
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    /// `PUT …/newData` with exactly these headers and these body bytes.
    pub async fn put_new_data_with_headers(
        &self,
        token_id: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> TspAnswer {
        self.put_tsp_call(
            &format!("/trapi/v2.0/tokens/{token_id}/newData"),
            headers,
            body,
        )
        .await
    }

    async fn put_tsp_call(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> TspAnswer {
        let mut request = self.client.put(self.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        TspAnswer::read(request.send().await.expect("the hub answers")).await
    }

    /// `GET /trapi/v2.0/healthCheck`, with `x-request-id` when given.
    pub async fn health_check(&self, request_id: Option<&str>) -> TspAnswer {
        let mut request = self.client.get(self.url("/trapi/v2.0/healthCheck"));
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        TspAnswer::read(request.send().await.expect("the hub answers")).await
    }

    // ---- wallet API ----

    pub async fn register_device(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/wallet/v1/devices"))
            .json(body)
            .send()
            .await
            .expect("the hub answers")
    }

    pub async fn post_digitization(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/wallet/v1/digitizations"))
            .json(body)
            .send()
            .await
            .expect("the hub answers")
    }

    /// Digitizes a card onto the registered device; the fake TSP creates the token. Returns its id.
    pub async fn digitize(&self) -> String {
        let r = self.post_digitization(&digitization_body()).await;
        assert_eq!(r.status(), 201, "digitize: {:?}", r.text().await);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["state"], "PENDING_DATA");
        body["tokenId"].as_str().expect("a tokenId").to_string()
    }

    /// Digitizes a card and has the fake TSP call the token `token_id`.
    pub async fn digitize_as(&self, token_id: &str) -> String {
        self.tsp.next_token_id(token_id);
        let id = self.digitize().await;
        assert_eq!(id, token_id);
        id
    }

    // ---- admin API ----

    fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN)
    }

    pub async fn put_tsp(&self, tsp_id: &str, base_url: &str) -> reqwest::Response {
        self.admin(reqwest::Method::PUT, &format!("/admin/v1/tsps/{tsp_id}"))
            .json(&json!({"baseUrl": base_url}))
            .send()
            .await
            .expect("the hub answers")
    }

    pub async fn put_issuer(&self, issuer_id: &str, name: &str, tsp_id: &str) -> reqwest::Response {
        self.admin(
            reqwest::Method::PUT,
            &format!("/admin/v1/issuers/{issuer_id}"),
        )
        .json(&json!({"name": name, "tspId": tsp_id}))
        .send()
        .await
        .expect("the hub answers")
    }

    pub async fn put_profile_version(
        &self,
        issuer_id: &str,
        product_id: &str,
        version: &str,
        definition: &Value,
    ) -> reqwest::Response {
        self.admin(
            reqwest::Method::PUT,
            &format!("/admin/v1/issuers/{issuer_id}/products/{product_id}/profiles/{version}"),
        )
        .json(definition)
        .send()
        .await
        .expect("the hub answers")
    }

    pub async fn deploy(
        &self,
        issuer_id: &str,
        product_id: &str,
        version: &str,
    ) -> reqwest::Response {
        self.admin(
            reqwest::Method::POST,
            &format!(
                "/admin/v1/issuers/{issuer_id}/products/{product_id}/profiles/{version}/deploy"
            ),
        )
        .json(&json!({}))
        .send()
        .await
        .expect("the hub answers")
    }

    /// `GET /admin/v1/tokens/{tokenId}`, as it answers.
    pub async fn get_token_response(&self, token_id: &str) -> reqwest::Response {
        self.admin(
            reqwest::Method::GET,
            &format!("/admin/v1/tokens/{token_id}"),
        )
        .send()
        .await
        .expect("the hub answers")
    }

    /// `GET /admin/v1/tokens/{tokenId}`, which must find the token.
    pub async fn get_token(&self, token_id: &str) -> TokenView {
        let r = self.get_token_response(token_id).await;
        assert_eq!(r.status(), 200, "GET token {token_id}");
        r.json().await.unwrap()
    }

    /// The token's state, as the admin API reports it.
    pub async fn token_state(&self, token_id: &str) -> String {
        self.get_token(token_id).await["state"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The names of the elements the hub holds for the token.
    pub async fn elements_held(&self, token_id: &str) -> Vec<String> {
        names(&self.get_token(token_id).await["elementsHeld"])
    }

    // ---- the TSP's data ----

    /// Encrypts `clear` as the TSP does (CBC, zero IV, ISO 9797-1 method 2) under `key_index`;
    /// upper-case hex.
    pub fn encrypt(&self, key_index: &str, clear: &[u8]) -> String {
        let key = self.keys.find(key_index).expect("a ceremony key");
        let bytes = key.key_bytes().unwrap();
        hex::encode_upper(tokenhub_crypto::encrypt_cbc_m2(key.algorithm, &bytes, clear).unwrap())
    }

    /// An element encrypted under `key_index`.
    pub fn encrypted(&self, name: &str, key_index: &str, clear: &[u8]) -> Value {
        json!({"name": name, "value": self.encrypt(key_index, clear), "keyIndex": key_index})
    }

    /// A valid `cmk_ac`: a 16-byte card master key under the KEK.
    pub fn cmk_ac(&self) -> Value {
        self.encrypted("cmk_ac", KEK, &random_bytes(16))
    }

    /// A valid `track2_data`: 19 bytes under the DEK.
    pub fn track2_data(&self) -> Value {
        self.encrypted("track2_data", DEK, &random_bytes(19))
    }

    /// Every element the profile requires, valid.
    pub fn required_elements(&self) -> Vec<Value> {
        vec![self.cmk_ac(), self.track2_data(), psn()]
    }

    /// Sends every required element in one `/data` call, which must be accepted: the token is
    /// then `PERSONALIZING`.
    pub async fn complete_data(&self, token_id: &str) {
        self.put_data(token_id, &data_body(&self.required_elements()))
            .await
            .assert_accepted();
        assert_eq!(self.token_state(token_id).await, "PERSONALIZING");
    }

    /// A token the hub created and that is waiting for its data.
    pub async fn pending_token(&self) -> String {
        self.digitize().await
    }

    /// Sets the token's state in the store directly (the transitions that lead there, device
    /// delivery and lifecycle, are not what these tests are about).
    pub async fn set_token_state(&self, token_id: &str, state: TokenState) {
        let id = token_id.to_string();
        let now = self.clock.now_ms();
        self.hub
            .store
            .transact(move |conn| {
                Box::pin(async move { conn.set_token_state(&id, state, now).await })
            })
            .await
            .expect("set the token's state");
    }

    /// A token that went through its data preparation and whose device confirmed its profile: it
    /// is ACTIVE.
    pub async fn active_token(&self) -> String {
        self.active_token_with(&self.required_elements()).await
    }

    /// A token personalized with `elements` (all in one `/data` call), then confirmed by its device.
    pub async fn active_token_with(&self, elements: &[Value]) -> String {
        let token = self.pending_token().await;
        self.put_data(&token, &data_body(elements))
            .await
            .assert_accepted();
        assert_eq!(self.token_state(&token).await, "PERSONALIZING");
        self.confirm_personalization(&token).await;
        assert_eq!(self.token_state(&token).await, "ACTIVE");
        token
    }

    /// Deploys a new profile version `version` (the same dictionary) with a re-personalization
    /// campaign over the ACTIVE tokens, and waits until the hub asked the TSP to recover `token_id`
    /// (`repersoToken`) and took its answer in (the recovery's time to live runs from there).
    /// Returns the `x-correlation-id` of that call, which the TSP's `/newData` carries.
    pub async fn start_recovery(&self, token_id: &str, version: &str) -> String {
        let r = self
            .put_profile_version(ISSUER, PRODUCT, version, &profile_definition())
            .await;
        assert_eq!(r.status(), 201, "define {version}");
        let r = self
            .admin(
                reqwest::Method::POST,
                &format!("/admin/v1/issuers/{ISSUER}/products/{PRODUCT}/profiles/{version}/deploy"),
            )
            .json(&json!({"campaign": {}}))
            .send()
            .await
            .expect("the hub answers");
        assert_eq!(r.status(), 202, "deploy with a campaign");
        let path = format!("/tsp/trapi/v2.0/tokens/{token_id}/reperso");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let call = self
                .tsp
                .other_calls()
                .into_iter()
                .find(|c| c.method == "POST" && c.path == path);
            // The recovery's time to live starts when the hub has taken the TSP's answer in, a
            // moment after the TSP saw the call: a test that moves the clock must wait for it.
            let clock_started = self
                .hub
                .store
                .token(token_id)
                .await
                .expect("read the token")
                .and_then(|t| t.recovery)
                .is_some_and(|r| r.deadline_ms.is_some());
            if let (Some(call), true) = (call, clock_started) {
                return call
                    .correlation_id
                    .expect("repersoToken carries x-correlation-id");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the hub did not call repersoToken for {token_id}: {:?}",
                self.tsp.other_calls()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Plays the device: what its poll (no wait) brings.
    pub async fn device_offers(&self) -> Value {
        self.client
            .get(self.url(&format!("/wallet/v1/devices/{DEVICE}/personalizations")))
            .send()
            .await
            .expect("the hub answers")
            .json()
            .await
            .expect("offers")
    }

    /// Plays the device: takes the personalization offered for `token_id` and reports SUCCESS.
    pub async fn confirm_personalization(&self, token_id: &str) {
        let offers = self.device_offers().await;
        let offer = offers
            .as_array()
            .expect("an array of offers")
            .iter()
            .find(|o| o["tokenId"] == token_id)
            .unwrap_or_else(|| panic!("a personalization is offered for {token_id}: {offers}"));
        let id = offer["personalizationId"].as_str().unwrap();
        let r = self
            .client
            .post(self.url(&format!("/wallet/v1/personalizations/{id}/result")))
            .json(&json!({"status": "SUCCESS"}))
            .send()
            .await
            .expect("the hub answers");
        assert_eq!(r.status(), 204, "the device's result is taken");
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
            Database::Postgres { url, .. } => {
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

    /// Runs SQL on the test's database outside the hub (to inject a fault the API cannot cause).
    pub async fn execute_sql(&self, sql: &str) {
        let url = match &self.db {
            Database::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            Database::Postgres { url, .. } => url.clone(),
        };
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        conn.execute(sql).await.unwrap();
    }
}

pub fn digitization_body() -> Value {
    json!({
        "issuerId": ISSUER,
        "productId": PRODUCT,
        "deviceId": DEVICE,
        "walletCardRefId": format!("card-{}", uuid::Uuid::new_v4().simple()),
    })
}

/// The strings of a JSON array.
pub fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

// ---- PostgreSQL databases ----
//
// Each test gets a fresh database, `tokenhub_test_<uuid v7>`, copied from a template database,
// `tokenhub_test_<uuid v7>_template`, that the process migrated once (so a test does not pay for
// the migrations). Test databases are not dropped when their test ends: `DROP DATABASE` forces a
// checkpoint, which would slow every test running at the time. Instead each test process first
// drops what earlier runs left. The uuid v7 in a name says when the database was created; only
// those older than a run could be still in use are dropped, so a run going on in another process
// keeps its own.

/// A test's database is in use for the few seconds its test runs.
const LEFTOVER_TEST_DATABASE_AGE: Duration = Duration::from_secs(3 * 60);
/// A template is in use for as long as its process runs tests.
const LEFTOVER_TEMPLATE_AGE: Duration = Duration::from_secs(60 * 60);

/// Creates a fresh, migrated database for one test; returns its URL.
async fn create_postgres_database(server_url: &str) -> String {
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

// ---- the fake TSP ----

/// How the fake TSP answers `createToken`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateToken {
    /// `200` with a fresh tokenId.
    Create,
    /// `400 {"responseCode": code}`.
    Refuse(u32),
    /// `503`.
    Down,
}

struct FakeTspState {
    mode: CreateToken,
    next_ids: VecDeque<String>,
    /// The `x-correlation-id` of every `createToken` received (`None` when absent).
    correlation_ids: Vec<Option<String>>,
    bodies: Vec<Value>,
    /// Every other call (`updateTokenState`, `repersoToken`, …).
    other_calls: Vec<OtherCall>,
}

/// A minimal TSP: it serves `POST /tsp/trapi/v2.0/tokens` only.
#[derive(Clone)]
pub struct FakeTsp {
    state: Arc<Mutex<FakeTspState>>,
    address: std::net::SocketAddr,
}

impl FakeTsp {
    async fn spawn() -> Self {
        let state = Arc::new(Mutex::new(FakeTspState {
            mode: CreateToken::Create,
            next_ids: VecDeque::new(),
            correlation_ids: Vec::new(),
            bodies: Vec::new(),
            other_calls: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/tsp/trapi/v2.0/tokens", post(create_token))
            .fallback(other_call)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { state, address }
    }

    /// What the hub registers as this TSP's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/tsp/trapi/v2.0", self.address)
    }

    pub fn answer_create_token_with(&self, mode: CreateToken) {
        self.state.lock().unwrap().mode = mode;
    }

    /// The next token created gets this id.
    pub fn next_token_id(&self, id: &str) {
        self.state
            .lock()
            .unwrap()
            .next_ids
            .push_back(id.to_string());
    }

    pub fn received_correlation_ids(&self) -> Vec<Option<String>> {
        self.state.lock().unwrap().correlation_ids.clone()
    }

    pub fn received_bodies(&self) -> Vec<Value> {
        self.state.lock().unwrap().bodies.clone()
    }

    /// The calls other than `createToken` received so far.
    pub fn other_calls(&self) -> Vec<OtherCall> {
        self.state.lock().unwrap().other_calls.clone()
    }
}

/// A call of the outgoing API other than `createToken`, as the fake TSP received it.
#[derive(Debug, Clone)]
pub struct OtherCall {
    pub method: String,
    pub path: String,
    pub correlation_id: Option<String>,
}

/// Any other call of the outgoing API is acknowledged.
async fn other_call(
    State(state): State<Arc<Mutex<FakeTspState>>>,
    request: axum::extract::Request,
) -> StatusCode {
    state.lock().unwrap().other_calls.push(OtherCall {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
        correlation_id: request
            .headers()
            .get("x-correlation-id")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    });
    StatusCode::NO_CONTENT
}

async fn create_token(
    State(state): State<Arc<Mutex<FakeTspState>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    let mut s = state.lock().unwrap();
    s.correlation_ids.push(
        headers
            .get("x-correlation-id")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    );
    s.bodies.push(body);
    match s.mode {
        CreateToken::Create => {
            let token_id = s
                .next_ids
                .pop_front()
                .unwrap_or_else(|| format!("TKN{}", uuid::Uuid::new_v4().simple()));
            Json(json!({"tokenId": token_id, "tokenInfo": {"exp": TSP_EXP, "last4": TSP_LAST4}}))
                .into_response()
        }
        CreateToken::Refuse(code) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"responseCode": code, "errorMessage": "refused by the fake TSP"})),
        )
            .into_response(),
        CreateToken::Down => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
