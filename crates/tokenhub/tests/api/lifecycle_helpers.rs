//! What the lifecycle tests share (`tsp_updates`, `lifecycle_admin`):
//! - [`HubCalls`]: the lifecycle calls (TSP token updates, admin actions, token requestors and
//!   their deliveries, the device's removals) on any hub under test, `helpers::TestApp` included;
//! - [`LifecycleApp`]: a hub whose token requestors may live on 127.0.0.0/8 and whose retry
//!   schedule is short (`100ms,200ms`), with a fake TSP that records every call and its body;
//! - [`Receiver`]: a token requestor's endpoint on 127.0.0.1 that records what it receives and
//!   answers the statuses a test scripts;
//! - [`eventually`]: polls until something holds, with a deadline.
//!
//! `helpers.rs` builds its hub with a fixed configuration (no outbound allow list), so the
//! requestor tests start theirs here, reusing helpers' constants and profile.

use crate::helpers::{
    correlation_id, device_public_key, digitization_body, profile_definition, psn, random_bytes,
    Backend, TestApp, TspAnswer, ADMIN_TOKEN, DEK, DEVICE, ISSUER, KEK, MASTER_KEY, PERSO_TTL,
    PRODUCT, TSP_EXP, TSP_ID, TSP_LAST4, VERSION,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use sqlx::{Connection, Executor};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenhub::clock::{Clock, ManualClock};
use tokenhub::{Application, Config, Hub};
use tokenhub_crypto::KeySet;

/// Runs each test body (`async fn name(app: LifecycleApp)`) on both backends, like `hub_tests!`.
macro_rules! lifecycle_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let app = $crate::lifecycle_helpers::spawn_lifecycle_app(
                        $crate::helpers::Backend::Sqlite,
                    )
                    .await;
                    super::$name(app).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(url) = $crate::helpers::postgres_url_or_skip(module_path!()) else {
                        return;
                    };
                    let app = $crate::lifecycle_helpers::spawn_lifecycle_app(
                        $crate::helpers::Backend::Postgres(url),
                    )
                    .await;
                    super::$name(app).await;
                }
            }
        )*
    };
}

/// How long [`eventually`] waits.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Polls `probe` every 20 ms until it gives `Some`; fails the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `lastUpdateTimestamp` values: `ms` milliseconds after 2035-01-01T00:00:00Z, later than
/// anything the hub stamps itself (its clock starts at the system time).
pub fn at(ms: i64) -> String {
    timestamp(BASE_MS + ms)
}

/// The hub's own rendering of a timestamp: RFC 3339, UTC, milliseconds.
pub fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// 2035-01-01T00:00:00Z.
pub const BASE_MS: i64 = 2_051_222_400_000;

/// `{"issuerId": ISSUER, "lastUpdateTimestamp": ts}`.
pub fn update(ts: &str) -> Value {
    json!({"issuerId": ISSUER, "lastUpdateTimestamp": ts})
}

/// An update that sets `tokenState`.
pub fn update_state(ts: &str, state: &str) -> Value {
    let mut u = update(ts);
    u["tokenState"] = json!(state);
    u
}

/// A signing secret: `whsec_` + base64 of `n` random bytes.
pub fn signing_secret(n: usize) -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(random_bytes(n))
    )
}

/// The Standard Webhooks signature (`v1,<base64>`) of a delivery under `secret`, computed here
/// independently of the hub.
pub fn expected_signature(secret: &str, webhook_id: &str, timestamp: &str, body: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .expect("base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{webhook_id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// What a status-and-JSON answer of the admin or wallet API says (`Null` for an empty body).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub text: String,
    pub json: Value,
}

impl Answer {
    async fn read(r: reqwest::Response) -> Self {
        let status = r.status().as_u16();
        let text = r.text().await.expect("the answer's body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self { status, text, json }
    }

    /// The status is `status`; the JSON body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected answer: {self:?}");
        &self.json
    }
}

/// The lifecycle calls, on any hub under test.
pub(crate) trait HubCalls {
    fn http(&self) -> &reqwest::Client;
    fn base(&self) -> &str;

    fn hub_url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// An admin call, with the bearer token.
    fn admin_call(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http()
            .request(method, self.hub_url(path))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// An admin call with an optional JSON body, read whole.
    async fn admin_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Answer {
        let mut r = self.admin_call(method, path);
        if let Some(b) = body {
            r = r.json(b);
        }
        Answer::read(r.send().await.expect("the hub answers")).await
    }

    async fn admin_get(&self, path: &str) -> Answer {
        self.admin_send(reqwest::Method::GET, path, None).await
    }

    async fn admin_post(&self, path: &str, body: Option<&Value>) -> Answer {
        self.admin_send(reqwest::Method::POST, path, body).await
    }

    /// `POST /admin/v1/tokens/{tokenId}/{action}` (`suspend`, `resume`, `delete`).
    async fn token_action(&self, token_id: &str, action: &str, body: Option<&Value>) -> Answer {
        self.admin_post(&format!("/admin/v1/tokens/{token_id}/{action}"), body)
            .await
    }

    /// `GET /admin/v1/tokens/{tokenId}`, which must find the token.
    async fn token_view(&self, token_id: &str) -> Value {
        self.admin_get(&format!("/admin/v1/tokens/{token_id}"))
            .await
            .expect(200)
            .clone()
    }

    async fn state_of(&self, token_id: &str) -> String {
        self.token_view(token_id).await["state"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The token's history, as event texts.
    async fn history_of(&self, token_id: &str) -> Vec<String> {
        self.token_view(token_id).await["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].as_str().unwrap().to_string())
            .collect()
    }

    /// `POST /trapi/v2.0/tokens/{tokenId}/updates` with exactly these headers and body bytes.
    async fn post_update_with_headers(
        &self,
        token_id: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> TspAnswer {
        let mut r = self
            .http()
            .post(self.hub_url(&format!("/trapi/v2.0/tokens/{token_id}/updates")))
            .body(body);
        for (name, value) in headers {
            r = r.header(*name, *value);
        }
        tsp_answer(r.send().await.expect("the hub answers")).await
    }

    /// A token update with the given `x-correlation-id`.
    async fn post_update_as(
        &self,
        token_id: &str,
        correlation_id: &str,
        body: &Value,
    ) -> TspAnswer {
        self.post_update_with_headers(
            token_id,
            &[
                ("x-correlation-id", correlation_id),
                ("content-type", "application/json"),
            ],
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    /// A token update with a fresh `x-correlation-id`.
    async fn post_update(&self, token_id: &str, body: &Value) -> TspAnswer {
        self.post_update_as(token_id, &correlation_id(), body).await
    }

    /// The device's work now (`waitSeconds=0`).
    async fn device_work(&self, device_id: &str) -> Vec<Value> {
        let r = self
            .http()
            .get(self.hub_url(&format!(
                "/wallet/v1/devices/{device_id}/personalizations?waitSeconds=0"
            )))
            .send()
            .await
            .expect("the hub answers");
        Answer::read(r)
            .await
            .expect(200)
            .as_array()
            .unwrap()
            .clone()
    }

    /// The tokens the device is asked to remove.
    async fn removals(&self, device_id: &str) -> Vec<String> {
        self.device_work(device_id)
            .await
            .into_iter()
            .filter(|w| w["action"] == "REMOVE")
            .map(|w| {
                assert_eq!(
                    w.as_object().unwrap().len(),
                    2,
                    "a removal is {{action, tokenId}}: {w}"
                );
                w["tokenId"].as_str().unwrap().to_string()
            })
            .collect()
    }

    /// The device confirms it removed the token; the status.
    async fn confirm_removed(&self, device_id: &str, token_id: &str) -> u16 {
        self.http()
            .post(self.hub_url(&format!(
                "/wallet/v1/devices/{device_id}/tokens/{token_id}/removed"
            )))
            .send()
            .await
            .expect("the hub answers")
            .status()
            .as_u16()
    }

    /// `GET /admin/v1/tokens/{tokenId}/deliveries`.
    async fn token_deliveries(&self, token_id: &str) -> Vec<Value> {
        self.admin_get(&format!("/admin/v1/tokens/{token_id}/deliveries"))
            .await
            .expect(200)
            .as_array()
            .unwrap()
            .clone()
    }

    /// `GET /admin/v1/deliveries/{id}`, which must find it.
    async fn delivery(&self, id: i64) -> Value {
        self.admin_get(&format!("/admin/v1/deliveries/{id}"))
            .await
            .expect(200)
            .clone()
    }
}

/// Reads an answer of the TSP incoming API.
async fn tsp_answer(r: reqwest::Response) -> TspAnswer {
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
    TspAnswer {
        status,
        correlation_id,
        request_id,
        content_type,
        body,
    }
}

impl HubCalls for TestApp {
    fn http(&self) -> &reqwest::Client {
        &self.client
    }
    fn base(&self) -> &str {
        &self.address
    }
}

impl HubCalls for LifecycleApp {
    fn http(&self) -> &reqwest::Client {
        &self.client
    }
    fn base(&self) -> &str {
        &self.address
    }
}

// ---- a hub configured for token requestors ----

/// A hub under test whose requestors may be reached on 127.0.0.0/8, with the retry schedule
/// [`RETRY_SCHEDULE`], and a [`RecordingTsp`].
pub struct LifecycleApp {
    pub address: String,
    pub client: reqwest::Client,
    pub hub: Arc<Hub>,
    pub clock: ManualClock,
    pub keys: KeySet,
    pub tsp: RecordingTsp,
    /// Kept so the SQLite folder lives as long as the test.
    _dir: Option<tempfile::TempDir>,
}

/// Two retries, then dead.
pub const RETRY_SCHEDULE: &str = "100ms,200ms";

pub async fn spawn_lifecycle_app(backend: Backend) -> LifecycleApp {
    tokenhub::telemetry::install_crypto_provider();
    let (dir, database_url) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("a temporary folder");
            let url = format!("sqlite://{}", dir.path().join("tokenhub.db").display());
            (Some(dir), url)
        }
        Backend::Postgres(server_url) => (None, create_postgres_database(&server_url).await),
    };
    let mut config = Config::for_database(&database_url);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.master_key = Some(MASTER_KEY.into());
    config.perso_ttl = PERSO_TTL;
    // Token updates in these tests are stamped in 2035, after anything the hub stamps itself.
    config.max_update_skew = std::time::Duration::from_secs(20 * 365 * 24 * 3600);
    config.notify.retry_schedule = tokenhub::config::parse_schedule(RETRY_SCHEDULE).unwrap();
    config.notify.outbound_allow = tokenhub::config::parse_cidrs("127.0.0.0/8").unwrap();
    config.notify.timeout = Duration::from_secs(3);
    let clock = ManualClock::new();
    let application = Application::build_with_clock(config, Arc::new(clock.clone()))
        .await
        .expect("the hub starts");
    let address = format!("http://{}", application.local_addr());
    let hub = application.hub().clone();
    tokio::spawn(application.run_until(std::future::pending()));

    let keys = KeySet::generate();
    tokenhub::flows::keys::import(&hub.store, &hub.keys, &keys.keys, clock.now_ms())
        .await
        .expect("the key ceremony's keys import");
    hub.reload_keys().await.expect("the keys load");

    let tsp = RecordingTsp::spawn().await;
    let app = LifecycleApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        hub,
        clock,
        keys,
        tsp,
        _dir: dir,
    };
    let put = reqwest::Method::PUT;
    app.admin_send(
        put.clone(),
        &format!("/admin/v1/tsps/{TSP_ID}"),
        Some(&json!({"baseUrl": app.tsp.base_url()})),
    )
    .await
    .expect(200);
    app.put_issuer(ISSUER).await;
    app.admin_send(
        put,
        &format!("/admin/v1/issuers/{ISSUER}/products/{PRODUCT}/profiles/{VERSION}"),
        Some(&profile_definition()),
    )
    .await
    .expect(201);
    app.admin_post(
        &format!("/admin/v1/issuers/{ISSUER}/products/{PRODUCT}/profiles/{VERSION}/deploy"),
        Some(&json!({})),
    )
    .await
    .expect(200);
    let r = app
        .client
        .post(app.hub_url("/wallet/v1/devices"))
        .json(&json!({"deviceId": DEVICE, "publicKey": device_public_key()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "register the device");
    app
}

/// The API key and signing secrets a requestor was registered with.
#[derive(Debug, Clone)]
pub struct RequestorSecrets {
    pub api_key: String,
    pub signing_secrets: Vec<String>,
}

impl LifecycleApp {
    /// Registers an issuer of the TSP under test.
    pub async fn put_issuer(&self, issuer_id: &str) {
        self.admin_send(
            reqwest::Method::PUT,
            &format!("/admin/v1/issuers/{issuer_id}"),
            Some(&json!({"name": "Test Bank", "tspId": TSP_ID})),
        )
        .await
        .expect(200);
    }

    /// `PUT /admin/v1/token-requestors/{id}` with `body`.
    pub async fn put_requestor_body(&self, requestor_id: &str, body: &Value) -> Answer {
        self.admin_send(
            reqwest::Method::PUT,
            &format!("/admin/v1/token-requestors/{requestor_id}"),
            Some(body),
        )
        .await
    }

    /// Registers a requestor at `base_url` with a fresh API key and `secrets` fresh secrets.
    pub async fn register_requestor(
        &self,
        requestor_id: &str,
        base_url: &str,
        secrets: usize,
    ) -> RequestorSecrets {
        let creds = RequestorSecrets {
            api_key: format!("key-{}", uuid::Uuid::new_v4().simple()),
            signing_secrets: (0..secrets).map(|_| signing_secret(32)).collect(),
        };
        self.put_requestor_body(
            requestor_id,
            &json!({
                "merchantId": merchant_of(requestor_id),
                "baseUrl": base_url,
                "apiKey": creds.api_key,
                "signingSecrets": creds.signing_secrets,
            }),
        )
        .await
        .expect(200);
        creds
    }

    /// Digitizes a card onto the device: `digitization_body()` with `extra`'s fields. Returns the
    /// token's id (PENDING_DATA).
    pub async fn digitize(&self, extra: Value) -> String {
        let mut body = digitization_body();
        for (k, v) in extra.as_object().expect("an object").iter() {
            body[k] = v.clone();
        }
        let r = self
            .client
            .post(self.hub_url("/wallet/v1/digitizations"))
            .json(&body)
            .send()
            .await
            .expect("the hub answers");
        let a = Answer::read(r).await;
        let v = a.expect(201);
        assert_eq!(v["state"], "PENDING_DATA");
        v["tokenId"].as_str().unwrap().to_string()
    }

    /// Every required element, valid (encrypted under the ceremony's keys).
    pub fn required_elements(&self) -> Vec<Value> {
        let enc = |name: &str, index: &str, n: usize| {
            let key = self.keys.find(index).expect("a ceremony key");
            let bytes = key.key_bytes().unwrap();
            let value = hex::encode_upper(
                tokenhub_crypto::encrypt_cbc_m2(key.algorithm, &bytes, &random_bytes(n)).unwrap(),
            );
            json!({"name": name, "value": value, "keyIndex": index})
        };
        vec![enc("cmk_ac", KEK, 16), enc("track2_data", DEK, 19), psn()]
    }

    /// The TSP sends every required element: the token is PERSONALIZING.
    pub async fn complete_data(&self, token_id: &str) {
        let r = self
            .client
            .put(self.hub_url(&format!("/trapi/v2.0/tokens/{token_id}/data")))
            .header("x-correlation-id", correlation_id())
            .json(&json!({"issuerId": ISSUER, "tokenPersoInfo": self.required_elements()}))
            .send()
            .await
            .expect("the hub answers");
        assert_eq!(r.status(), 204, "/data: {:?}", r.text().await);
        assert_eq!(self.state_of(token_id).await, "PERSONALIZING");
    }

    /// The device takes the token's personalization and reports SUCCESS: the token is ACTIVE.
    pub async fn confirm_personalization(&self, token_id: &str) {
        let work = self.device_work(DEVICE).await;
        let offer = work
            .iter()
            .find(|o| o["action"] == "INSTALL" && o["tokenId"] == token_id)
            .unwrap_or_else(|| panic!("a personalization is offered for {token_id}: {work:?}"));
        let id = offer["personalizationId"].as_str().unwrap();
        let r = self
            .client
            .post(self.hub_url(&format!("/wallet/v1/personalizations/{id}/result")))
            .json(&json!({"status": "SUCCESS"}))
            .send()
            .await
            .expect("the hub answers");
        assert_eq!(r.status(), 204, "the device's result is taken");
        assert_eq!(self.state_of(token_id).await, "ACTIVE");
    }

    /// A token digitized with `extra` (e.g. `tokenRequestorId`, `card`), personalized and
    /// confirmed: ACTIVE.
    pub async fn active_token(&self, extra: Value) -> String {
        let token = self.digitize(extra).await;
        self.complete_data(&token).await;
        self.confirm_personalization(&token).await;
        token
    }

    /// `GET /admin/v1/token-requestors/{id}/deliveries` with a query (`""` or `?state=…`).
    pub async fn requestor_deliveries(&self, requestor_id: &str, query: &str) -> Answer {
        self.admin_get(&format!(
            "/admin/v1/token-requestors/{requestor_id}/deliveries{query}"
        ))
        .await
    }

    /// Waits until delivery `id` is in `state`; returns it (`GET /deliveries/{id}`).
    pub async fn delivery_in_state(&self, id: i64, state: &str) -> Value {
        eventually(&format!("delivery {id} to be {state}"), || async move {
            let d = self.delivery(id).await;
            (d["state"] == state).then_some(d)
        })
        .await
    }

    /// The newest delivery of the token (waits until there is one).
    pub async fn newest_delivery_of(&self, token_id: &str) -> Value {
        eventually(&format!("a delivery for {token_id}"), || async move {
            self.token_deliveries(token_id).await.into_iter().next()
        })
        .await
    }

    /// Moves the hub's clock past any retry wait and wakes its notifier.
    pub fn skip_retry_wait(&self) {
        self.clock.advance(Duration::from_secs(1));
        self.hub.notify_wake.notify_one();
    }

    /// Waits until `receiver` got `n` requests, moving the hub's clock past each retry wait
    /// meanwhile; returns every request received.
    pub async fn wait_for_attempts(&self, receiver: &Receiver, n: usize) -> Vec<Received> {
        eventually(&format!("{n} attempts at the requestor"), || async move {
            let r = receiver.received();
            if r.len() >= n {
                Some(r)
            } else {
                self.skip_retry_wait();
                None
            }
        })
        .await
    }

    /// Waits until the TSP received `n` calls matching `method` and `path`; returns them all.
    pub async fn tsp_calls_to(&self, method: &str, path: &str, n: usize) -> Vec<TspCall> {
        eventually(&format!("{n} calls {method} {path}"), || async move {
            let calls: Vec<TspCall> = self
                .tsp
                .calls()
                .into_iter()
                .filter(|c| c.method == method && c.path == path)
                .collect();
            (calls.len() >= n).then_some(calls)
        })
        .await
    }
}

/// The merchant id a test registers requestor `id` with.
pub fn merchant_of(requestor_id: &str) -> String {
    format!("MERCHANT-{requestor_id}")
}

/// The body a requestor receives for a token in `state` with the fake TSP's token info.
pub fn expected_body(token_id: &str, requestor_id: &str, state: &str, card: &Value) -> Value {
    json!({
        "tokenId": token_id,
        "merchantId": merchant_of(requestor_id),
        "tokenState": state,
        "tokenLastDigits": TSP_LAST4,
        "tokenExpiryDate": TSP_EXP,
        "cardLastDigits": card.get("lastDigits").cloned().unwrap_or(Value::Null),
        "cardExpiryDate": card.get("expiryDate").cloned().unwrap_or(Value::Null),
        "cardArtId": card.get("artId").cloned().unwrap_or(Value::Null),
    })
}

// ---- PostgreSQL databases ----
//
// Named as helpers names them (`tokenhub_test_<uuid v7>`, from a `…_template` migrated once per
// process), so that its clean-up of earlier runs drops these too.

async fn create_postgres_database(server_url: &str) -> String {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let template = TEMPLATE
        .get_or_init(|| async {
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

fn new_database_name() -> String {
    format!("tokenhub_test_{}", uuid::Uuid::now_v7().simple())
}

async fn create_database(server_url: &str, name: &str, template: &str) {
    let mut conn = sqlx::PgConnection::connect(server_url)
        .await
        .unwrap_or_else(|e| panic!("connect to the PostgreSQL server: {e}"));
    conn.execute(format!("CREATE DATABASE {name} TEMPLATE {template}").as_str())
        .await
        .expect("create a test database");
}

fn database_url(server_url: &str, name: &str) -> String {
    let mut url = reqwest::Url::parse(server_url).expect("a valid PostgreSQL URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

// ---- a TSP that records every call ----

/// A call the fake TSP received (other than `createToken`).
#[derive(Debug, Clone)]
pub struct TspCall {
    pub method: String,
    pub path: String,
    pub correlation_id: Option<String>,
    pub body: Value,
}

/// Answers `createToken` with a fresh token id and the token info `TSP_EXP`/`TSP_LAST4`; records
/// and acknowledges (`204`) every other call.
#[derive(Clone)]
pub struct RecordingTsp {
    calls: Arc<Mutex<Vec<TspCall>>>,
    address: std::net::SocketAddr,
}

impl RecordingTsp {
    async fn spawn() -> Self {
        let calls: Arc<Mutex<Vec<TspCall>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/tsp/trapi/v2.0/tokens", post(create_token))
            .fallback(record_call)
            .with_state(calls.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { calls, address }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/tsp/trapi/v2.0", self.address)
    }

    pub fn calls(&self) -> Vec<TspCall> {
        self.calls.lock().unwrap().clone()
    }
}

async fn create_token() -> impl IntoResponse {
    let token_id = format!("TKN{}", uuid::Uuid::new_v4().simple());
    Json(json!({"tokenId": token_id, "tokenInfo": {"exp": TSP_EXP, "last4": TSP_LAST4}}))
}

async fn record_call(
    State(calls): State<Arc<Mutex<Vec<TspCall>>>>,
    request: axum::extract::Request,
) -> StatusCode {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let correlation_id = request
        .headers()
        .get("x-correlation-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let bytes = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    calls.lock().unwrap().push(TspCall {
        method,
        path,
        correlation_id,
        body,
    });
    StatusCode::NO_CONTENT
}

// ---- a token requestor's endpoint ----

/// A request the requestor's endpoint received, and what it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub answered: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("header {name} in {self:?}"))
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

struct ReceiverState {
    /// Statuses to answer, in order; then `default_status`.
    script: VecDeque<u16>,
    default_status: u16,
    received: Vec<Received>,
}

/// A token requestor's endpoint on 127.0.0.1 (any path): records each request and answers the
/// next scripted status, `204` by default.
#[derive(Clone)]
pub struct Receiver {
    state: Arc<Mutex<ReceiverState>>,
    address: std::net::SocketAddr,
}

impl Receiver {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(ReceiverState {
            script: VecDeque::new(),
            default_status: 204,
            received: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new().fallback(receive).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { state, address }
    }

    /// The requestor's `baseUrl`: updates arrive at `{baseUrl}/notify-token-update`.
    pub fn base_url(&self) -> String {
        format!("http://{}/hooks", self.address)
    }

    /// The next requests are answered with these statuses, in order.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.state.lock().unwrap().script.extend(statuses);
    }

    /// Once the script is used up, answer `status`.
    pub fn answer_by_default(&self, status: u16) {
        self.state.lock().unwrap().default_status = status;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Waits until `n` requests arrived; returns every request received.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        eventually(&format!("{n} requests at the requestor"), || async move {
            let r = self.received();
            (r.len() >= n).then_some(r)
        })
        .await
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    request: axum::extract::Request,
) -> StatusCode {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let headers = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let bytes = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let mut s = state.lock().unwrap();
    let answered = s.script.pop_front().unwrap_or(s.default_status);
    s.received.push(Received {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        answered,
    });
    StatusCode::from_u16(answered).unwrap()
}
