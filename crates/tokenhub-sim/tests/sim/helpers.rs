//! Test harness: a simulator on port 0 wired to a tiny fake hub that records the `/data` calls and
//! answers them from a script, and a client with one method per simulator endpoint.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use serde_json::Value;
use tokenhub_crypto::KeySet;
use tokenhub_sim::{RetryPolicy, TspSimConfig, TspSimHandle, TspSimStatus};
use tokio::net::TcpListener;

pub const ISSUER: &str = "ISSUER0001";

/// Long enough for anything these tests wait for on a loaded 2-core machine; only reached when a
/// test is about to fail.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// One answer the fake hub gives instead of its default 204.
#[derive(Clone, Copy)]
pub enum Answer {
    /// `400 {"responseCode": code}`.
    Code(u16),
    /// That HTTP status with an empty body.
    Status(u16),
}

/// A `/data` call as the fake hub saw it.
#[derive(Debug, Clone)]
pub struct DataCall {
    pub token_id: String,
    pub correlation_id: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
    /// The status the fake hub answered.
    pub answered: u16,
}

impl DataCall {
    pub fn names(&self) -> Vec<String> {
        self.elements()
            .iter()
            .filter_map(|e| e["name"].as_str().map(str::to_string))
            .collect()
    }

    pub fn elements(&self) -> Vec<Value> {
        self.body["tokenPersoInfo"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct HubState {
    script: Mutex<VecDeque<Answer>>,
    calls: Mutex<Vec<DataCall>>,
    /// The same for `/newData`, kept apart.
    new_data_script: Mutex<VecDeque<Answer>>,
    new_data_calls: Mutex<Vec<DataCall>>,
    /// Token updates (`POST …/updates`): token id and body, answered 204.
    updates: Mutex<Vec<(String, Value)>>,
    /// The `x-request-id` of every `healthCheck`.
    health_checks: Mutex<Vec<Option<String>>>,
    /// While true, `healthCheck` is answered 503.
    health_down: std::sync::atomic::AtomicBool,
}

/// Which of the fake hub's two routes a call came to.
#[derive(Clone, Copy)]
enum Route {
    Data,
    NewData,
}

pub struct FakeHub {
    pub addr: SocketAddr,
    state: Arc<HubState>,
}

impl FakeHub {
    /// Answers the scripted answers in order, then 204 to everything.
    pub async fn start(script: Vec<Answer>) -> Self {
        let state = Arc::new(HubState {
            script: Mutex::new(script.into()),
            ..HubState::default()
        });
        let app = Router::new()
            .route(
                "/trapi/v2.0/tokens/{token_id}/data",
                put(
                    |state: State<Arc<HubState>>,
                     path: Path<String>,
                     headers: HeaderMap,
                     body: Bytes| {
                        record(Route::Data, state, path, headers, body)
                    },
                ),
            )
            .route(
                "/trapi/v2.0/tokens/{token_id}/newData",
                put(
                    |state: State<Arc<HubState>>,
                     path: Path<String>,
                     headers: HeaderMap,
                     body: Bytes| {
                        record(Route::NewData, state, path, headers, body)
                    },
                ),
            )
            .route(
                "/trapi/v2.0/tokens/{token_id}/updates",
                axum::routing::post(
                    |state: State<Arc<HubState>>, path: Path<String>, body: Bytes| async move {
                        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        state.updates.lock().unwrap().push((path.0, body));
                        StatusCode::NO_CONTENT
                    },
                ),
            )
            .route(
                "/trapi/v2.0/healthCheck",
                axum::routing::get(
                    |state: State<Arc<HubState>>, headers: HeaderMap| async move {
                        let id = headers
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        state.health_checks.lock().unwrap().push(id);
                        if state.health_down.load(std::sync::atomic::Ordering::SeqCst) {
                            StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            StatusCode::NO_CONTENT
                        }
                    },
                ),
            )
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<DataCall> {
        self.state.calls.lock().unwrap().clone()
    }

    /// The calls the hub accepted.
    pub fn accepted(&self) -> Vec<DataCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.answered == 204)
            .collect()
    }

    /// Every `/newData` call (attempts included), in arrival order.
    pub fn new_data_calls(&self) -> Vec<DataCall> {
        self.state.new_data_calls.lock().unwrap().clone()
    }

    /// The token updates received, in arrival order.
    pub fn updates(&self) -> Vec<(String, Value)> {
        self.state.updates.lock().unwrap().clone()
    }

    /// The `x-request-id` of every `healthCheck` the simulator made.
    pub fn health_checks(&self) -> Vec<Option<String>> {
        self.state.health_checks.lock().unwrap().clone()
    }

    /// From now on `healthCheck` is answered 503 (`true`) or 204.
    pub fn health_down(&self, down: bool) {
        self.state
            .health_down
            .store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// The next `/newData` answers, in order, before the default 204.
    pub fn script_new_data(&self, answers: Vec<Answer>) {
        self.state.new_data_script.lock().unwrap().extend(answers);
    }
}

async fn record(
    route: Route,
    State(state): State<Arc<HubState>>,
    Path(token_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (script, calls) = match route {
        Route::Data => (&state.script, &state.calls),
        Route::NewData => (&state.new_data_script, &state.new_data_calls),
    };
    let answer = script.lock().unwrap().pop_front();
    let response = match answer {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(Answer::Code(code)) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"responseCode": code, "errorMessage": "scripted"})),
        )
            .into_response(),
        Some(Answer::Status(status)) => StatusCode::from_u16(status).unwrap().into_response(),
    };
    calls.lock().unwrap().push(DataCall {
        token_id,
        correlation_id: header("x-correlation-id"),
        content_type: header("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        answered: response.status().as_u16(),
    });
    response
}

/// Retries fast enough that tests do not wait for the production backoff.
pub fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(20),
        ..RetryPolicy::default()
    }
}

pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub struct TestSim {
    pub handle: TspSimHandle,
    pub hub: FakeHub,
    pub keys: KeySet,
    client: reqwest::Client,
}

/// An HTTP answer from the simulator.
#[derive(Debug)]
pub struct Answered {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answered {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn response_code(&self) -> Option<u64> {
        self.body["responseCode"].as_u64()
    }
}

impl TestSim {
    /// A simulator with `partial_calls` and quick retries, wired to a fake hub playing `script`;
    /// `tweak` adjusts the configuration further.
    pub async fn start(
        partial_calls: usize,
        script: Vec<Answer>,
        tweak: impl FnOnce(&mut TspSimConfig),
    ) -> Self {
        install_crypto_provider();
        let hub = FakeHub::start(script).await;
        let keys = KeySet::generate();
        let mut config = TspSimConfig::new(hub.url(), keys.clone());
        config.partial_calls = partial_calls;
        config.data_delay = Duration::from_millis(1);
        config.retry = quick_retries();
        tweak(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let handle = tokenhub_sim::spawn(listener, config).await.unwrap();
        Self {
            handle,
            hub,
            keys,
            client: reqwest::Client::new(),
        }
    }

    async fn answered(response: reqwest::Response) -> Answered {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answered {
            status,
            headers,
            body,
        }
    }

    /// createToken with a raw body and, if given, an `x-correlation-id`.
    pub async fn create_token_raw(&self, correlation_id: Option<&str>, body: &str) -> Answered {
        let mut request = self
            .client
            .post(format!("{}/tokens", self.handle.base_url()))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(id) = correlation_id {
            request = request.header("x-correlation-id", id);
        }
        Self::answered(request.send().await.unwrap()).await
    }

    /// A valid createToken for `issuer_id`; panics unless it is answered 200.
    pub async fn create_token(&self, correlation_id: &str, issuer_id: &str) -> Answered {
        let body = serde_json::json!({
            "issuerId": issuer_id,
            "walletCardRefId": "wallet-card-1",
            "deviceInfo": {"deviceId": "device-1", "deviceType": "PHONE"},
        });
        let answered = self
            .create_token_raw(Some(correlation_id), &body.to_string())
            .await;
        assert_eq!(answered.status, 200, "{answered:?}");
        answered
    }

    pub async fn health_check(&self, request_id: Option<&str>) -> Answered {
        let mut request = self
            .client
            .get(format!("{}/healthCheck", self.handle.base_url()));
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        Self::answered(request.send().await.unwrap()).await
    }

    pub async fn sim_status(&self) -> TspSimStatus {
        let answered = Self::answered(
            self.client
                .get(format!("http://{}/sim/status", self.handle.addr()))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(answered.status, 200);
        serde_json::from_value(answered.body).unwrap()
    }

    /// A PUT on the outgoing API (`path` under `/tsp/trapi/v2.0`) with a raw body.
    pub async fn put_raw(&self, path: &str, correlation_id: Option<&str>, body: &str) -> Answered {
        let mut request = self
            .client
            .put(format!("{}{path}", self.handle.base_url()))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(id) = correlation_id {
            request = request.header("x-correlation-id", id);
        }
        Self::answered(request.send().await.unwrap()).await
    }

    /// updateTokenState for `ISSUER`.
    pub async fn update_state(&self, token_id: &str, state: &str) -> Answered {
        let body = serde_json::json!({"issuerId": ISSUER, "state": state});
        self.put_raw(
            &format!("/tokens/{token_id}/state"),
            Some(&uuid::Uuid::new_v4().to_string()),
            &body.to_string(),
        )
        .await
    }

    /// repersoToken with a raw body and, if given, an `x-correlation-id`.
    pub async fn reperso_raw(
        &self,
        token_id: &str,
        correlation_id: Option<&str>,
        body: &str,
    ) -> Answered {
        let mut request = self
            .client
            .post(format!(
                "{}/tokens/{token_id}/reperso",
                self.handle.base_url()
            ))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(id) = correlation_id {
            request = request.header("x-correlation-id", id);
        }
        Self::answered(request.send().await.unwrap()).await
    }

    /// repersoToken for `ISSUER`, as the hub sends it.
    pub async fn reperso(&self, token_id: &str, correlation_id: &str) -> Answered {
        let body = serde_json::json!({"issuerId": ISSUER, "reason": "PROFILE_UPDATE"});
        self.reperso_raw(token_id, Some(correlation_id), &body.to_string())
            .await
    }

    /// Any request on the simulator, answered.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answered {
        Self::answered(request.send().await.unwrap()).await
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The elements of the token's accepted `/data` calls, in order, as the hub received them.
    pub fn original_elements(&self, token_id: &str) -> Vec<Value> {
        self.hub
            .accepted()
            .into_iter()
            .filter(|c| c.token_id == token_id)
            .flat_map(|c| c.elements())
            .collect()
    }

    /// submitNewTokenDataStatus for `ISSUER`.
    pub async fn new_data_status(
        &self,
        token_id: &str,
        correlation_id: &str,
        status: &str,
    ) -> Answered {
        let body = serde_json::json!({"issuerId": ISSUER, "status": status});
        self.put_raw(
            &format!("/tokens/{token_id}/newDataStatus"),
            Some(correlation_id),
            &body.to_string(),
        )
        .await
    }

    /// A token created for `ISSUER` and fully delivered; its id and its clear `cmk_ac`, which the
    /// test reads back from what the fake hub received, as the device would get it.
    pub async fn new_token(&self) -> (String, [u8; 16]) {
        let answered = self
            .create_token(&uuid::Uuid::new_v4().to_string(), ISSUER)
            .await;
        let token_id = answered.body["tokenId"].as_str().unwrap().to_string();
        self.deliveries_done().await;
        let call = self
            .hub
            .accepted()
            .into_iter()
            .find(|c| c.token_id == token_id)
            .expect("the data reached the hub");
        let element = call
            .elements()
            .into_iter()
            .find(|e| e["name"] == "cmk_ac")
            .expect("cmk_ac sent");
        let key = self
            .keys
            .find(element["keyIndex"].as_str().unwrap())
            .unwrap();
        let ct = hex::decode(element["value"].as_str().unwrap()).unwrap();
        let clear =
            tokenhub_crypto::decrypt_cbc_m2(key.algorithm, &key.key_bytes().unwrap(), &ct).unwrap();
        (token_id, clear[..].try_into().unwrap())
    }

    /// `POST /sim/transactions` with any JSON body.
    pub async fn transact_raw(&self, body: &Value) -> Answered {
        Self::answered(
            self.client
                .post(format!("{}/sim/transactions", self.handle.sim_url()))
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// A transaction signed with `cmk_ac` at `atc`, as a device would send it.
    pub async fn pay(&self, token_id: &str, cmk_ac: &[u8; 16], atc: u16) -> Answered {
        let txn =
            tokenhub_sim::emv::TxnData::parse(atc, "000000001000", "0978", "CAFEBABE").unwrap();
        let cryptogram = tokenhub_sim::emv::application_cryptogram(cmk_ac, &txn);
        self.transact_raw(&serde_json::json!({
            "tokenId": token_id, "atc": atc, "amount": "000000001000", "currency": "0978",
            "unpredictableNumber": "CAFEBABE", "cryptogram": hex::encode_upper(cryptogram),
        }))
        .await
    }

    /// `GET /sim/tokens/{tokenId}`.
    pub async fn sim_token(&self, token_id: &str) -> Answered {
        Self::answered(
            self.client
                .get(format!("{}/sim/tokens/{token_id}", self.handle.sim_url()))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Waits until every delivery has ended.
    pub async fn deliveries_done(&self) {
        tokio::time::timeout(PATIENCE, self.handle.deliveries_idle())
            .await
            .expect("deliveries should end");
    }
}
