//! The wallet API (`/wallet/v1`): devices register their X25519 public key, and ask for a card to
//! be digitized onto them. Every call is a wallet provider's ([`wallet_auth`](super::wallet_auth));
//! a device is the provider's that registered it, and another provider's device, personalization
//! or removal answers `404` exactly as a missing one, and changes nothing.

use super::api_error::{ApiErrorBody, JsonBody};
use super::tokens::TokenInfoView;
use super::wallet_auth::{require_provider, LongPolls, WalletCaller};
use super::{ApiError, AppState};
use crate::domain::catalog::PutImmutable;
use crate::domain::ids::parse_slug;
use crate::domain::lifecycle::parse_card;
use crate::domain::TokenState;
use crate::flows::catalog;
use crate::flows::deliver::{self, DeviceResult, SettleError};
use crate::flows::digitize::{self, Digitization, DigitizeError};
use crate::flows::wallet_providers::owns_device;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router(state: AppState) -> Router<AppState> {
    let long_polls = LongPolls::new(state.config.wallet_max_long_polls);
    Router::new()
        .route("/devices", post(register_device))
        .route("/digitizations", post(create_digitization))
        .route(
            "/devices/{device_id}/personalizations",
            get(poll_personalizations),
        )
        .route(
            "/personalizations/{personalization_id}/result",
            post(post_result),
        )
        .route(
            "/devices/{device_id}/tokens/{token_id}/removed",
            post(token_removed),
        )
        .layer(Extension(long_polls))
        .layer(axum::middleware::from_fn_with_state(
            state,
            require_provider,
        ))
}

/// Longest long poll.
pub const MAX_WAIT_SECONDS: u64 = 30;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct PollParams {
    /// Wait up to this many seconds (at most 30) for a personalization when none is ready.
    #[serde(default)]
    pub wait_seconds: Option<u64>,
}

/// The work waiting for this device (long poll): personalizations to install (`"action":
/// "INSTALL"`) and deleted tokens to remove (`"action": "REMOVE"`). A personalization the device
/// does not confirm within the delivery window is offered again; a removal is listed until the
/// device confirms it (`POST …/tokens/{tokenId}/removed`).
#[utoipa::path(get, path = "/wallet/v1/devices/{deviceId}/personalizations", tag = "wallet",
    params(("deviceId" = String, Path), PollParams),
    responses((status = 200, body = [DeviceWork]), (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody, description = "no device of the caller's"),
        (status = 503, body = ApiErrorBody, description = "the caller holds its cap of long polls (Retry-After)")),
    security(("wallet" = [])))]
async fn poll_personalizations(
    State(hub): State<AppState>,
    Extension(caller): Extension<WalletCaller>,
    Extension(long_polls): Extension<LongPolls>,
    Path(device_id): Path<String>,
    Query(params): Query<PollParams>,
) -> Result<Response, ApiError> {
    let device_id = parse_slug("deviceId", &device_id)?;
    let wait = params.wait_seconds.unwrap_or(0);
    if wait > MAX_WAIT_SECONDS {
        return Err(ApiError::bad_request(format!(
            "waitSeconds must be at most {MAX_WAIT_SECONDS}"
        )));
    }
    if !owns_device(&hub, &caller.0, &device_id).await? {
        return Err(ApiError::not_found(format!(
            "device {device_id} is not registered"
        )));
    }
    let _held = if wait > 0 {
        match long_polls.enter(&caller.0) {
            Some(held) => Some(held),
            None => return Ok(LongPolls::refusal()),
        }
    } else {
        None
    };
    let work = deliver::poll(&hub, &device_id, std::time::Duration::from_secs(wait)).await?;
    Ok(Json(work.into_iter().map(work_view).collect::<Vec<_>>()).into_response())
}

/// What a device's poll brings: profiles to install, tokens to remove.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum DeviceWork {
    Install(Offer),
    Remove(Removal),
}

/// A deleted token the device must remove (listed until the device confirms the removal).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Removal {
    /// `REMOVE`.
    pub action: &'static str,
    pub token_id: String,
}

/// A personalization as the device receives it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Offer {
    /// `INSTALL`.
    pub action: &'static str,
    pub personalization_id: String,
    pub token_id: String,
    pub profile_version: String,
    pub profile: OfferedProfile,
    /// What the TSP said of the token, to display.
    pub token_info: TokenInfoView,
}

/// The profile, HPKE-sealed to the device (mode base, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
/// AES-256-GCM; info `tokenhub/profile/v1`; aad the personalization id). Base64url, no padding.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OfferedProfile {
    pub enc: String,
    pub ciphertext: String,
}

fn work_view(w: deliver::DeviceWork) -> DeviceWork {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    match w {
        deliver::DeviceWork::Install(o) => DeviceWork::Install(Offer {
            action: "INSTALL",
            personalization_id: o.personalization_id,
            token_id: o.token_id,
            profile_version: o.profile_version,
            profile: OfferedProfile {
                enc: b64.encode(&o.enc),
                ciphertext: b64.encode(&o.ciphertext),
            },
            token_info: TokenInfoView {
                exp: o.token_exp,
                last4: o.token_last4,
            },
        }),
        deliver::DeviceWork::Remove { token_id } => DeviceWork::Remove(Removal {
            action: "REMOVE",
            token_id,
        }),
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultBody {
    /// `SUCCESS` or `FAILURE`.
    pub status: String,
    /// Why it failed (with `FAILURE`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The device says how the personalization went. Repeating the same result is harmless (`204`);
/// another result for a settled personalization, or any result for one never offered, is `409`.
/// A personalization of another provider's device is `404`, as a missing one.
#[utoipa::path(post, path = "/wallet/v1/personalizations/{personalizationId}/result", tag = "wallet",
    params(("personalizationId" = String, Path)), request_body = ResultBody,
    responses((status = 204), (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody)),
    security(("wallet" = [])))]
async fn post_result(
    State(hub): State<AppState>,
    Extension(caller): Extension<WalletCaller>,
    Path(personalization_id): Path<String>,
    JsonBody(body): JsonBody<ResultBody>,
) -> Result<StatusCode, ApiError> {
    let personalization_id = parse_slug("personalizationId", &personalization_id)?;
    let result = match body.status.as_str() {
        "SUCCESS" => DeviceResult::Success,
        "FAILURE" => {
            let reason: String = body.reason.unwrap_or_default().chars().take(256).collect();
            let reason = reason
                .chars()
                .filter(|c| !c.is_control())
                .collect::<String>();
            DeviceResult::Failure(if reason.is_empty() {
                "no reason given".into()
            } else {
                reason
            })
        }
        _ => return Err(ApiError::bad_request("status must be SUCCESS or FAILURE")),
    };
    match deliver::settle(&hub, &caller.0, &personalization_id, result).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(SettleError::NotFound) => Err(ApiError::not_found(format!(
            "personalization {personalization_id} does not exist"
        ))),
        Err(e @ (SettleError::Conflict(_) | SettleError::NotOffered)) => {
            Err(ApiError::conflict(e.to_string()))
        }
        Err(SettleError::Internal(e)) => Err(e.into()),
    }
}

/// The device removed a deleted token: it is no longer listed in the device's polls.
#[utoipa::path(post, path = "/wallet/v1/devices/{deviceId}/tokens/{tokenId}/removed", tag = "wallet",
    params(("deviceId" = String, Path), ("tokenId" = String, Path)),
    responses((status = 204), (status = 401, body = ApiErrorBody), (status = 404, body = ApiErrorBody, description = "no deleted token of this device of the caller's")),
    security(("wallet" = [])))]
async fn token_removed(
    State(hub): State<AppState>,
    Extension(caller): Extension<WalletCaller>,
    Path((device_id, token_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    // A device's provider never changes, so this check holds for the removal's transaction too.
    if owns_device(&hub, &caller.0, &device_id).await?
        && crate::flows::lifecycle::removal_done(&hub, &device_id, &token_id).await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "device {device_id} has no deleted token {token_id}"
        )))
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceBody {
    pub device_id: String,
    /// base64url (padding optional) of the device's 32-byte X25519 public key.
    pub public_key: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView {
    pub device_id: String,
}

/// Register a device of the caller's and the X25519 public key its profiles will be encrypted to.
/// Registering the same key again is harmless (`200`); another key for a known device, or a device
/// another provider registered, is refused (`409`, the same answer for both).
#[utoipa::path(post, path = "/wallet/v1/devices", tag = "wallet",
    request_body = DeviceBody,
    responses((status = 201, body = DeviceView), (status = 200, body = DeviceView), (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody), (status = 409, body = ApiErrorBody)),
    security(("wallet" = [])))]
async fn register_device(
    State(hub): State<AppState>,
    Extension(caller): Extension<WalletCaller>,
    JsonBody(body): JsonBody<DeviceBody>,
) -> Result<(StatusCode, Json<DeviceView>), ApiError> {
    let device_id = parse_slug("deviceId", &body.device_id)?;
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body.public_key.trim_end_matches('='))
        .map_err(|_| ApiError::bad_request("publicKey must be base64url"))?;
    if key.len() != 32 {
        return Err(ApiError::bad_request(
            "publicKey must be a 32-byte X25519 public key",
        ));
    }
    let canonical = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&key);
    let outcome = catalog::put_device(&hub, &device_id, canonical, &caller.0).await?;
    let status = match outcome {
        PutImmutable::Created => StatusCode::CREATED,
        PutImmutable::Unchanged => StatusCode::OK,
        PutImmutable::Conflict => {
            return Err(ApiError::conflict(format!(
                "device {device_id} is already registered"
            )));
        }
    };
    Ok((status, Json(DeviceView { device_id })))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DigitizationBody {
    pub issuer_id: String,
    pub product_id: String,
    pub device_id: String,
    /// The wallet's id of the funding card (stays the same across card renewal).
    pub wallet_card_ref_id: String,
    /// The token requestor (merchant or PSP) the token is for, if not the wallet itself.
    #[serde(default)]
    pub token_requestor_id: Option<String>,
    /// The funding card as the token's requestor may be told of it (never its number).
    #[serde(default)]
    pub card: Option<CardBody>,
}

/// The funding card's details a token requestor is told of.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CardBody {
    /// 2 to 5 digits.
    pub last_digits: Option<String>,
    /// MMYY.
    pub expiry_date: Option<String>,
    pub art_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DigitizationView {
    pub token_id: String,
    pub state: TokenState,
    /// What the TSP said of the token in its `createToken` answer, to display.
    pub token_info: TokenInfoView,
}

/// Digitize a card onto a device: the hub asks the issuer's TSP to create the token and answers
/// with its id; the token then waits for the TSP's data preparation. The device must be the
/// caller's, and a `tokenRequestorId` must name a registered token requestor (else `400`).
/// With an `Idempotency-Key`, the digitization may be sent again (after a lost answer or a
/// `503`): a repeat gets the same token (`200`), and the TSP makes one.
#[utoipa::path(post, path = "/wallet/v1/digitizations", tag = "wallet",
    request_body = DigitizationBody,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1 to 64 visible ASCII characters, unique per digitization of the caller's")),
    responses((status = 201, body = DigitizationView),
        (status = 200, body = DigitizationView, description = "a repeat of the Idempotency-Key: the token it made"),
        (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody, description = "unknown issuer, or no device of the caller's"),
        (status = 409, body = ApiErrorBody, description = "the product has no deployed profile version"),
        (status = 422, body = ApiErrorBody, description = "the TSP refused (tspResponseCode says why), or IDEMPOTENCY_KEY_REUSED for another digitization"),
        (status = 502, body = ApiErrorBody, description = "the TSP answered outside the contract"),
        (status = 503, body = ApiErrorBody, description = "the TSP is unavailable")),
    security(("wallet" = [])))]
async fn create_digitization(
    State(hub): State<AppState>,
    Extension(caller): Extension<WalletCaller>,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody<DigitizationBody>,
) -> Result<(StatusCode, Json<DigitizationView>), ApiError> {
    let mut d = Digitization::parse(
        &body.issuer_id,
        &body.product_id,
        &body.device_id,
        &body.wallet_card_ref_id,
        body.token_requestor_id.as_deref(),
        {
            let c = body.card.unwrap_or_default();
            parse_card(
                ("card.lastDigits", c.last_digits.as_deref()),
                ("card.expiryDate", c.expiry_date.as_deref()),
                ("card.artId", c.art_id.as_deref()),
            )?
        },
    )?;
    d.idempotency_key = idempotency_key(&headers)?;
    match digitize::digitize(&hub, &caller.0, d).await {
        Ok((token, made)) => Ok((
            if made {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            Json(DigitizationView {
                token_id: token.token_id,
                state: token.state,
                token_info: TokenInfoView {
                    exp: token.token_exp,
                    last4: token.token_last4,
                },
            }),
        )),
        Err(e) => Err(match e {
            DigitizeError::Invalid(m) => ApiError::bad_request(m),
            DigitizeError::NotFound(m) => ApiError::not_found(m),
            DigitizeError::NotReady(m) => ApiError::conflict(m),
            DigitizeError::TspRefused { code, message } => ApiError {
                tsp_response_code: Some(code),
                ..ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    tsp_refusal_code(code),
                    message,
                )
            },
            DigitizeError::TspUnavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TSP_UNAVAILABLE",
                "the TSP is unavailable; try again later",
            ),
            DigitizeError::TspProtocol(m) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "TSP_PROTOCOL", m)
            }
            DigitizeError::KeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was used for another digitization",
            ),
            DigitizeError::Internal(e) => ApiError::from(e),
        }),
    }
}

/// The optional `Idempotency-Key` (of a digitization, of a card on file): 1 to 64 visible ASCII
/// characters.
pub(super) fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.as_bytes();
    if key.is_empty() || key.len() > 64 || !key.iter().all(u8::is_ascii_graphic) {
        return Err(ApiError::bad_request(
            "the Idempotency-Key header must be 1 to 64 visible ASCII characters",
        ));
    }
    Ok(Some(String::from_utf8_lossy(key).into_owned()))
}

/// The wallet-facing error code for a TSP refusal.
fn tsp_refusal_code(code: u32) -> &'static str {
    match code {
        113 => "ISSUER_NOT_SUPPORTED",
        115 | 163 => "PRODUCT_NOT_SUPPORTED",
        164 => "PROVISIONING_LIMIT_REACHED",
        166 => "INVALID_CARD",
        167 => "CARD_ALREADY_ENROLLED",
        _ => "TSP_REFUSED",
    }
}
