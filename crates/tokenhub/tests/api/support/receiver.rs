//! A token requestor's endpoint on 127.0.0.1 that records what it receives and answers the
//! statuses a test scripts.

use super::eventually;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Router;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

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
    /// While true, requests are recorded and then left without an answer (a stalled endpoint).
    held: tokio::sync::watch::Receiver<bool>,
}

/// A token requestor's endpoint on 127.0.0.1 (any path): records each request and answers the
/// next scripted status, `204` by default.
#[derive(Clone)]
pub struct Receiver {
    state: Arc<Mutex<ReceiverState>>,
    address: std::net::SocketAddr,
    hold: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let (hold, held) = tokio::sync::watch::channel(false);
        let state = Arc::new(Mutex::new(ReceiverState {
            script: VecDeque::new(),
            default_status: 204,
            received: Vec::new(),
            held,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new().fallback(receive).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            state,
            address,
            hold: Arc::new(hold),
        }
    }

    /// From now on, requests are recorded and then left unanswered until [`Receiver::release`]
    /// (or the hub's time-out).
    pub fn hold(&self) {
        self.hold.send_replace(true);
    }

    /// Answers the requests held, and every request from now on.
    pub fn release(&self) {
        self.hold.send_replace(false);
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
    let (answered, mut held) = {
        let mut s = state.lock().unwrap();
        let answered = s.script.pop_front().unwrap_or(s.default_status);
        s.received.push(Received {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            answered,
        });
        (answered, s.held.clone())
    };
    let _ = held.wait_for(|h| !*h).await;
    StatusCode::from_u16(answered).unwrap()
}
