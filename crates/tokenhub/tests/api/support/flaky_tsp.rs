//! A front for the TSP simulator that fails as a test scripts it and passes every other call
//! through: the simulator that fails N times then succeeds, or stays down. It records when each
//! call came and under which `x-correlation-id`. The hub's health checks pass through untouched.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How the front answers one call.
#[derive(Debug, Clone)]
pub struct Fault {
    status: u16,
    response_code: Option<u32>,
    retry_after: Option<String>,
    /// The call reaches the TSP first, and its answer is lost on the way back.
    after_tsp: bool,
}

impl Fault {
    /// An empty answer with this status.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            response_code: None,
            retry_after: None,
            after_tsp: false,
        }
    }

    /// `400 {"responseCode": 921}`: the contract's "try again later".
    pub fn busy_921() -> Self {
        Self {
            response_code: Some(921),
            ..Self::status(400)
        }
    }

    /// `400` with another response code (a final refusal).
    pub fn refused(code: u32) -> Self {
        Self {
            response_code: Some(code),
            ..Self::status(400)
        }
    }

    pub fn retry_after(mut self, value: &str) -> Self {
        self.retry_after = Some(value.to_string());
        self
    }

    /// The TSP gets the call and acts on it; the hub gets this failure instead of its answer.
    pub fn after_tsp(mut self) -> Self {
        self.after_tsp = true;
        self
    }
}

/// A call the front received.
#[derive(Debug, Clone)]
pub struct FrontCall {
    pub method: String,
    pub path: String,
    pub correlation_id: Option<String>,
    pub at: Instant,
    /// The status the hub got.
    pub status: u16,
}

struct FrontState {
    upstream: String,
    faults: VecDeque<Fault>,
    /// Once the faults are spent, every call is answered `503` without reaching the TSP.
    down: bool,
    calls: Vec<FrontCall>,
    http: reqwest::Client,
}

#[derive(Clone)]
pub struct FlakyTsp {
    state: Arc<Mutex<FrontState>>,
    address: std::net::SocketAddr,
    prefix: String,
}

impl FlakyTsp {
    /// A front for the TSP at `upstream_base` (its base URL, `http://ADDR/PREFIX`).
    pub async fn spawn(upstream_base: &str) -> Self {
        let url = reqwest::Url::parse(upstream_base).unwrap();
        let origin = url.origin().ascii_serialization();
        let state = Arc::new(Mutex::new(FrontState {
            upstream: origin,
            faults: VecDeque::new(),
            down: false,
            calls: Vec::new(),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new().fallback(front).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            state,
            address,
            prefix: url.path().to_string(),
        }
    }

    /// What the hub registers as the TSP's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.address, self.prefix)
    }

    /// The next calls get these faults, one each, in order; the calls after them pass.
    pub fn fail_next(&self, faults: &[Fault]) {
        self.state
            .lock()
            .unwrap()
            .faults
            .extend(faults.iter().cloned());
    }

    /// While down, every call (after the scripted faults) is `503` with an empty body.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    /// The calls received so far, oldest first.
    pub fn calls(&self) -> Vec<FrontCall> {
        self.state.lock().unwrap().calls.clone()
    }
}

async fn front(
    State(state): State<Arc<Mutex<FrontState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The hub's health checks pass untouched: the script and the record are the requestor
    // calls'.
    if uri.path().ends_with("/healthCheck") {
        let (upstream, http) = {
            let s = state.lock().unwrap();
            (s.upstream.clone(), s.http.clone())
        };
        return match http.get(format!("{upstream}{}", uri.path())).send().await {
            Ok(r) => StatusCode::from_u16(r.status().as_u16())
                .unwrap()
                .into_response(),
            Err(_) => StatusCode::BAD_GATEWAY.into_response(),
        };
    }
    let at = Instant::now();
    let (fault, upstream, http) = {
        let mut s = state.lock().unwrap();
        let fault = s
            .faults
            .pop_front()
            .or_else(|| s.down.then(|| Fault::status(503).retry_after("1")));
        (fault, s.upstream.clone(), s.http.clone())
    };
    let reach_tsp = fault.as_ref().is_none_or(|f| f.after_tsp);
    let mut passed: Option<Response> = None;
    if reach_tsp {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = http
            .request(method.clone(), format!("{upstream}{path}"))
            .body(body);
        for name in ["x-correlation-id", "content-type"] {
            if let Some(v) = headers.get(name) {
                request = request.header(name, v);
            }
        }
        passed = Some(match request.send().await {
            Ok(r) => {
                let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
                let mut out = HeaderMap::new();
                for (name, value) in r.headers() {
                    if name.as_str() == "content-type" || name.as_str() == "retry-after" {
                        out.insert(name.clone(), value.clone());
                    }
                }
                let bytes = r.bytes().await.unwrap_or_default();
                (status, out, bytes).into_response()
            }
            Err(_) => StatusCode::BAD_GATEWAY.into_response(),
        });
    }
    let response = match (fault, passed) {
        (Some(f), _) => {
            let status = StatusCode::from_u16(f.status).unwrap();
            let mut r = match f.response_code {
                Some(code) => (
                    status,
                    axum::Json(json!({"responseCode": code, "errorMessage": "scripted"})),
                )
                    .into_response(),
                None => status.into_response(),
            };
            if let Some(after) = f.retry_after {
                r.headers_mut()
                    .insert("retry-after", after.parse().unwrap());
            }
            r
        }
        (None, Some(r)) => r,
        (None, None) => StatusCode::BAD_GATEWAY.into_response(),
    };
    let call = FrontCall {
        method: method.to_string(),
        path: uri.path().to_string(),
        correlation_id: headers
            .get("x-correlation-id")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        at,
        status: response.status().as_u16(),
    };
    state.lock().unwrap().calls.push(call);
    response
}
