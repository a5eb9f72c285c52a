//! The fake TSP the hub calls: it answers `createToken` as a test scripts it, and records and
//! acknowledges (`204`, or the answers a test scripted) every other call of the outgoing API with
//! its body.

use super::{TSP_EXP, TSP_LAST4};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// How the fake TSP answers `createToken`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateToken {
    /// `200` with a fresh tokenId and the token info `TSP_EXP`/`TSP_LAST4`.
    Create,
    /// `400 {"responseCode": code}`.
    Refuse(u32),
    /// `503`.
    Down,
}

/// A call of the outgoing API other than `createToken`, as the fake TSP received it.
#[derive(Debug, Clone)]
pub struct TspCall {
    pub method: String,
    pub path: String,
    pub correlation_id: Option<String>,
    /// `Null` when the body is not JSON.
    pub body: Value,
}

struct FakeTspState {
    mode: CreateToken,
    next_ids: VecDeque<String>,
    /// The token each `x-correlation-id` made: the contract has a repeat get it back.
    made: std::collections::HashMap<String, String>,
    /// The `x-correlation-id` of every `createToken` received (`None` when absent).
    correlation_ids: Vec<Option<String>>,
    bodies: Vec<Value>,
    /// Every other call (`updateTokenState`, `repersoToken`, …).
    calls: Vec<TspCall>,
    /// How the next other calls are answered (status, `Retry-After`); `204` once it is empty.
    answers: VecDeque<(u16, Option<String>)>,
    /// While true, other calls are recorded and then left without an answer (a stalled TSP).
    hold: tokio::sync::watch::Sender<bool>,
    /// The `x-request-id` of every `healthCheck` (the hub's watcher), apart from the other calls.
    health_checks: Vec<Option<String>>,
    /// While true, every call (`healthCheck` included) is answered 503: a TSP that is down.
    down: bool,
}

type Shared = Arc<Mutex<FakeTspState>>;

#[derive(Clone)]
pub struct FakeTsp {
    state: Shared,
    address: std::net::SocketAddr,
}

impl FakeTsp {
    pub(crate) async fn spawn() -> Self {
        let state = Arc::new(Mutex::new(FakeTspState {
            mode: CreateToken::Create,
            next_ids: VecDeque::new(),
            made: Default::default(),
            correlation_ids: Vec::new(),
            bodies: Vec::new(),
            calls: Vec::new(),
            answers: VecDeque::new(),
            hold: tokio::sync::watch::Sender::new(false),
            health_checks: Vec::new(),
            down: false,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/tsp/trapi/v2.0/tokens", post(create_token))
            .route(
                "/tsp/trapi/v2.0/healthCheck",
                axum::routing::get(health_check),
            )
            .fallback(record_call)
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

    /// The `x-correlation-id` of each `createToken` received.
    pub fn received_correlation_ids(&self) -> Vec<Option<String>> {
        self.state.lock().unwrap().correlation_ids.clone()
    }

    /// The body of each `createToken` received.
    pub fn received_bodies(&self) -> Vec<Value> {
        self.state.lock().unwrap().bodies.clone()
    }

    /// The next calls other than `createToken` are answered with these statuses, each with its
    /// `Retry-After` header when given; `204` after them.
    pub fn answer_next_calls(&self, answers: &[(u16, Option<&str>)]) {
        let mut s = self.state.lock().unwrap();
        s.answers.extend(
            answers
                .iter()
                .map(|(status, after)| (*status, after.map(str::to_string))),
        );
    }

    /// From now on, calls other than `createToken` are recorded and then left unanswered until
    /// [`FakeTsp::release_calls`] (or the hub's time-out).
    pub fn hold_calls(&self) {
        self.state.lock().unwrap().hold.send_replace(true);
    }

    /// Answers the calls held, and every call from now on.
    pub fn release_calls(&self) {
        self.state.lock().unwrap().hold.send_replace(false);
    }

    /// Takes the fake TSP down (every call answered 503, `healthCheck` included) or back up.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    /// The `x-request-id` of each `healthCheck` received so far, oldest first.
    pub fn health_checks(&self) -> Vec<Option<String>> {
        self.state.lock().unwrap().health_checks.clone()
    }

    /// The calls other than `createToken` received so far, oldest first.
    pub fn other_calls(&self) -> Vec<TspCall> {
        self.state.lock().unwrap().calls.clone()
    }
}

fn correlation_id_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-correlation-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

async fn record_call(
    State(state): State<Shared>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let correlation_id = correlation_id_of(request.headers());
    let bytes = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let (answer, mut hold) = {
        let mut s = state.lock().unwrap();
        s.calls.push(TspCall {
            method,
            path,
            correlation_id,
            body,
        });
        if s.down {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        (s.answers.pop_front(), s.hold.subscribe())
    };
    let _ = hold.wait_for(|held| !*held).await;
    let Some((status, retry_after)) = answer else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let status = StatusCode::from_u16(status).expect("a status");
    match retry_after {
        Some(after) => (status, [(axum::http::header::RETRY_AFTER, after)]).into_response(),
        None => status.into_response(),
    }
}

async fn health_check(State(state): State<Shared>, headers: HeaderMap) -> StatusCode {
    let id = headers
        .get("x-request-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let mut s = state.lock().unwrap();
    s.health_checks.push(id);
    if s.down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn create_token(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    let mut s = state.lock().unwrap();
    let correlation_id = correlation_id_of(&headers);
    s.correlation_ids.push(correlation_id.clone());
    s.bodies.push(body);
    match s.mode {
        CreateToken::Create => {
            let made = correlation_id.as_ref().and_then(|c| s.made.get(c).cloned());
            let token_id = made.unwrap_or_else(|| {
                s.next_ids
                    .pop_front()
                    .unwrap_or_else(|| format!("TKN{}", uuid::Uuid::new_v4().simple()))
            });
            if let Some(c) = correlation_id {
                s.made.insert(c, token_id.clone());
            }
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
