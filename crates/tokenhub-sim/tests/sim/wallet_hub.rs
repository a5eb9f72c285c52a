//! A fake of the hub's wallet API, written from the contract alone: it registers devices, seals
//! profiles to them with HPKE exactly as the contract says, serves long polls, and records
//! results. An offer handed out and not answered is offered again after `reoffer_after`.
//! Also builds CPS profiles with its own encoder, independent of the device's parser.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hpke::{Deserializable, Serializable};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::helpers::PATIENCE;

type Kem = hpke::kem::X25519HkdfSha256;

struct StoredOffer {
    device_id: String,
    body: Value,
    /// When it was last handed out; it is offered again `reoffer_after` later if unanswered.
    handed_out: Option<Instant>,
    result: Option<Value>,
}

#[derive(Default)]
struct Offers {
    by_id: HashMap<String, StoredOffer>,
    /// Personalization ids per device, in offer order: a poll looks at its device's only.
    by_device: HashMap<String, Vec<String>>,
}

#[derive(Default)]
struct WalletState {
    devices: Mutex<HashMap<String, Vec<u8>>>,
    offers: Mutex<Offers>,
    polls: Mutex<HashMap<String, u64>>,
    /// Every result posted, repeats included: (personalizationId, body).
    results: Mutex<Vec<(String, Value)>>,
    /// One per device, so that an offer wakes only its device's poll.
    wakes: Mutex<HashMap<String, Arc<Notify>>>,
    reoffer_after: Duration,
    /// The wallet provider's API key every call must carry (`Authorization: Bearer`), if any.
    api_key: Option<String>,
}

impl WalletState {
    fn wake(&self, device_id: &str) -> Arc<Notify> {
        self.wakes
            .lock()
            .unwrap()
            .entry(device_id.to_string())
            .or_default()
            .clone()
    }
}

async fn require_key(
    State(state): State<Arc<WalletState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(key) = &state.api_key {
        let given = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(format!("Bearer {key}").as_str()) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    next.run(req).await
}

pub struct WalletHub {
    pub addr: SocketAddr,
    state: Arc<WalletState>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PollQuery {
    wait_seconds: Option<u64>,
}

impl WalletHub {
    pub async fn start() -> Self {
        Self::start_with(Duration::from_millis(300)).await
    }

    pub async fn start_with(reoffer_after: Duration) -> Self {
        Self::serve(WalletState {
            reoffer_after,
            ..WalletState::default()
        })
        .await
    }

    /// A hub that answers `401` to any call without `Authorization: Bearer <api_key>`.
    pub async fn start_requiring_key(api_key: &str) -> Self {
        Self::serve(WalletState {
            reoffer_after: Duration::from_millis(300),
            api_key: Some(api_key.to_string()),
            ..WalletState::default()
        })
        .await
    }

    async fn serve(state: WalletState) -> Self {
        let state = Arc::new(state);
        let app = Router::new()
            .route("/wallet/v1/devices", post(register))
            .route("/wallet/v1/devices/{device_id}/personalizations", get(poll))
            .route(
                "/wallet/v1/personalizations/{personalization_id}/result",
                post(result),
            )
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                require_key,
            ))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The registered public key of a device.
    pub fn public_key(&self, device_id: &str) -> Option<Vec<u8>> {
        self.state.devices.lock().unwrap().get(device_id).cloned()
    }

    /// Registers a device directly (e.g. to make a fleet's registration conflict).
    pub fn preregister(&self, device_id: &str, key: Vec<u8>) {
        self.state
            .devices
            .lock()
            .unwrap()
            .insert(device_id.to_string(), key);
    }

    pub fn polls(&self, device_id: &str) -> u64 {
        self.state
            .polls
            .lock()
            .unwrap()
            .get(device_id)
            .copied()
            .unwrap_or(0)
    }

    /// Seals `plaintext` to the device's key as the contract says: HPKE base mode, X25519 +
    /// HKDF-SHA256 + AES-256-GCM, info `tokenhub/profile/v1`, aad = the personalization id.
    pub fn seal(&self, device_id: &str, aad: &str, plaintext: &[u8]) -> Value {
        let key = self.public_key(device_id).expect("a registered device");
        let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&key).unwrap();
        let (enc, ciphertext) =
            hpke::single_shot_seal::<hpke::aead::AesGcm256, hpke::kdf::HkdfSha256, Kem, _>(
                &hpke::OpModeS::Base,
                &pk,
                b"tokenhub/profile/v1",
                plaintext,
                aad.as_bytes(),
                &mut rand::rngs::OsRng,
            )
            .unwrap();
        serde_json::json!({
            "enc": URL_SAFE_NO_PAD.encode(enc.to_bytes()),
            "ciphertext": URL_SAFE_NO_PAD.encode(ciphertext),
        })
    }

    /// Offers a correctly sealed profile; returns the personalization id.
    pub fn offer(
        &self,
        device_id: &str,
        token_id: &str,
        profile_version: Value,
        plaintext: &[u8],
    ) -> String {
        let personalization_id = uuid::Uuid::new_v4().to_string();
        let profile = self.seal(device_id, &personalization_id, plaintext);
        self.offer_raw(
            device_id,
            &personalization_id,
            serde_json::json!({
                "personalizationId": personalization_id,
                "tokenId": token_id,
                "profileVersion": profile_version,
                "profile": profile,
            }),
        );
        personalization_id
    }

    /// Offers any JSON as one item of the poll's answer.
    pub fn offer_raw(&self, device_id: &str, personalization_id: &str, body: Value) {
        let mut offers = self.state.offers.lock().unwrap();
        offers.by_id.insert(
            personalization_id.to_string(),
            StoredOffer {
                device_id: device_id.to_string(),
                body,
                handed_out: None,
                result: None,
            },
        );
        offers
            .by_device
            .entry(device_id.to_string())
            .or_default()
            .push(personalization_id.to_string());
        drop(offers);
        self.state.wake(device_id).notify_waiters();
    }

    /// Forgets the result of a personalization so that it is offered again, as a hub does when
    /// the device's confirmation never reached it.
    pub fn reoffer(&self, personalization_id: &str) {
        let mut offers = self.state.offers.lock().unwrap();
        let offer = offers.by_id.get_mut(personalization_id).expect("offered");
        offer.result = None;
        offer.handed_out = None;
        let device_id = offer.device_id.clone();
        drop(offers);
        self.state.wake(&device_id).notify_waiters();
    }

    /// The first result posted for a personalization.
    pub fn result(&self, personalization_id: &str) -> Option<Value> {
        self.state
            .offers
            .lock()
            .unwrap()
            .by_id
            .get(personalization_id)
            .and_then(|o| o.result.clone())
    }

    /// Every result posted (repeats included), in order.
    pub fn results(&self) -> Vec<(String, Value)> {
        self.state.results.lock().unwrap().clone()
    }

    /// Waits for the result of a personalization; panics after `PATIENCE`.
    pub async fn wait_result(&self, personalization_id: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(result) = self.result(personalization_id) {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "no result for {personalization_id}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn register(State(state): State<Arc<WalletState>>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let (Some(id), Some(key)) = (body["deviceId"].as_str(), body["publicKey"].as_str()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Ok(key) = URL_SAFE_NO_PAD.decode(key) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if key.len() != 32 {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let mut devices = state.devices.lock().unwrap();
    match devices.get(id) {
        Some(existing) if *existing == key => StatusCode::OK.into_response(),
        Some(_) => StatusCode::CONFLICT.into_response(),
        None => {
            devices.insert(id.to_string(), key);
            StatusCode::CREATED.into_response()
        }
    }
}

/// The offers to hand out now, and when the next unanswered one becomes due again.
fn due(state: &WalletState, device_id: &str) -> (Vec<Value>, Option<Instant>) {
    let mut guard = state.offers.lock().unwrap();
    let offers = &mut *guard;
    let now = Instant::now();
    let mut out = Vec::new();
    let mut next = None::<Instant>;
    for id in offers.by_device.get(device_id).into_iter().flatten() {
        let Some(o) = offers.by_id.get_mut(id) else {
            continue;
        };
        if o.result.is_some() {
            continue;
        }
        match o.handed_out {
            Some(t) if now < t + state.reoffer_after => {
                let at = t + state.reoffer_after;
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            _ => {
                o.handed_out = Some(now);
                out.push(o.body.clone());
            }
        }
    }
    (out, next)
}

async fn poll(
    State(state): State<Arc<WalletState>>,
    Path(device_id): Path<String>,
    Query(query): Query<PollQuery>,
) -> Response {
    if !state.devices.lock().unwrap().contains_key(&device_id) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let wait = query.wait_seconds.unwrap_or(0);
    if wait > 30 {
        return StatusCode::BAD_REQUEST.into_response();
    }
    *state
        .polls
        .lock()
        .unwrap()
        .entry(device_id.clone())
        .or_insert(0) += 1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let wake = state.wake(&device_id);
    loop {
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let (offers, next) = due(&state, &device_id);
        if !offers.is_empty() {
            return Json(offers).into_response();
        }
        // A re-offer becomes due with time, not with a wake-up.
        let until = next.map_or(deadline, |n| deadline.min(n.into()));
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep_until(until) => {
                if until == deadline {
                    return Json(Vec::<Value>::new()).into_response();
                }
            }
        }
    }
}

async fn result(
    State(state): State<Arc<WalletState>>,
    Path(personalization_id): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let valid = match body["status"].as_str() {
        Some("SUCCESS") => true,
        Some("FAILURE") => body["reason"].as_str().is_some_and(|r| !r.is_empty()),
        _ => false,
    };
    if !valid {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let mut offers = state.offers.lock().unwrap();
    let Some(offer) = offers.by_id.get_mut(&personalization_id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if offer.result.is_none() {
        offer.result = Some(body.clone());
    }
    drop(offers);
    state
        .results
        .lock()
        .unwrap()
        .push((personalization_id, body));
    StatusCode::NO_CONTENT.into_response()
}

// --- CPS profiles, encoded here independently of the device's parser ---------------------------

pub fn dgi(id: u16, value: &[u8]) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    if value.len() < 0xFF {
        out.push(value.len() as u8);
    } else {
        out.push(0xFF);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(value);
    out
}

pub fn tlv(tag: &[u8], value: &[u8]) -> Vec<u8> {
    assert!(value.len() < 0x80, "short lengths are enough here");
    let mut out = tag.to_vec();
    out.push(value.len() as u8);
    out.extend_from_slice(value);
    out
}

pub const PAR: &str = "5001A1B2C3D4E5F6G7H8I9J0K1L2M";

/// The demo profile's layout: record 0101 (fixed TLVs, track 2 of PAN 5555441234567890, PSN 01,
/// PAR), keys 8001 and 8002, FCI 9102.
pub fn demo_profile(cmk_ac: &[u8; 16]) -> Vec<u8> {
    let track2 = hex::decode("5555441234567890D280620112345678901F").unwrap();
    let mut record = tlv(&[0x9F, 0x6C], &[0x00, 0x01]);
    record.extend(tlv(&[0x57], &track2));
    record.extend(tlv(&[0x5F, 0x34], &[0x01]));
    record.extend(tlv(&[0x9F, 0x24], PAR.as_bytes()));
    let mut profile = dgi(0x0101, &tlv(&[0x70], &record));
    profile.extend(dgi(0x8001, cmk_ac));
    profile.extend(dgi(0x8002, &[0x5A; 16]));
    profile.extend(dgi(0x9102, &[0xA5, 0x03, 0x50, 0x01, 0x41]));
    profile
}
