//! Admin API for what happens to tokens after personalization: the issuer's lifecycle actions
//! (suspend, resume, delete a token; renew or replace a card), token requestors, and the token
//! updates delivered to them (list, attempts, dead letters, replay, re-enable an endpoint).
//! Mounted under `/admin/v1` behind the admin bearer token. Secrets (API keys, signing secrets)
//! are write-only: no answer carries them.

use super::api_error::{ApiErrorBody, JsonBody};
use super::{ApiError, AppState};
use crate::clock::iso8601;
use crate::domain::ids::parse_slug;
use crate::domain::lifecycle::{parse_card, IssuerAction};
use crate::domain::{IssuerId, TokenId, TokenState};
use crate::error::Error;
use crate::flows::lifecycle::{self, CardUpdate, LifecycleError};
use crate::store::notifications::{self, Attempt, Filter, Notification};
use crate::store::requestors::{self, Requestor};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tokens/{token_id}/suspend", post(suspend_token))
        .route("/tokens/{token_id}/resume", post(resume_token))
        .route("/tokens/{token_id}/delete", post(delete_token))
        .route("/tokens/{token_id}/deliveries", get(token_deliveries))
        .route(
            "/issuers/{issuer_id}/cards/{wallet_card_ref_id}/renew",
            post(renew_card),
        )
        .route(
            "/issuers/{issuer_id}/cards/{wallet_card_ref_id}/replace",
            post(replace_card),
        )
        .route(
            "/token-requestors/{requestor_id}",
            put(put_requestor).get(get_requestor),
        )
        .route(
            "/token-requestors/{requestor_id}/enable",
            post(enable_requestor),
        )
        .route(
            "/token-requestors/{requestor_id}/deliveries",
            get(requestor_deliveries),
        )
        .route(
            "/token-requestors/{requestor_id}/dead-letters/replay",
            post(replay_dead_letters),
        )
        .route("/deliveries/{delivery_id}", get(get_delivery))
        .route("/deliveries/{delivery_id}/replay", post(replay_delivery))
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::NotFound(m) => ApiError::not_found(m),
            LifecycleError::Conflict(m) => ApiError::conflict(m),
            LifecycleError::Internal(e) => ApiError::from(e),
        }
    }
}

/// Why the issuer acts (sent to the TSP with `updateTokenState`, at most 64 characters).
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionBody {
    #[serde(default)]
    pub reason: Option<String>,
}

/// A token after an issuer's action.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenStateView {
    pub token_id: String,
    pub state: TokenState,
    /// The `lastUpdateTimestamp` the token's requestor is told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update_timestamp: Option<String>,
}

async fn act(
    hub: AppState,
    token_id: String,
    body: axum::body::Bytes,
    action: IssuerAction,
) -> Result<Json<TokenStateView>, ApiError> {
    let token_id = TokenId::parse(&token_id)?;
    let body: ActionBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActionBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("the body is not {{\"reason\": \"...\"}}: {e}"))
        })?
    };
    let reason = body.reason;
    if reason
        .as_ref()
        .is_some_and(|r| r.is_empty() || r.chars().count() > 64)
    {
        return Err(ApiError::bad_request("reason must be 1 to 64 characters"));
    }
    let t = lifecycle::issuer_action(&hub, token_id.as_str(), action, reason).await?;
    Ok(Json(TokenStateView {
        token_id: t.token_id,
        state: t.state,
        last_update_timestamp: t
            .last_update_ms
            .map(crate::domain::lifecycle::format_timestamp),
    }))
}

/// Suspend a token (the issuer blocked the card): `updateTokenState SUSPENDED` goes to the TSP and
/// the token's requestor is told. Suspending a SUSPENDED token changes nothing.
#[utoipa::path(post, path = "/admin/v1/tokens/{tokenId}/suspend", tag = "lifecycle",
    params(("tokenId" = String, Path)), request_body(content = ActionBody, description = "optional"),
    responses((status = 200, body = TokenStateView), (status = 404, body = ApiErrorBody),
        (status = 409, body = ApiErrorBody, description = "the token is not ACTIVE or SUSPENDED")),
    security(("admin" = [])))]
async fn suspend_token(
    State(hub): State<AppState>,
    Path(token_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<TokenStateView>, ApiError> {
    act(hub, token_id, body, IssuerAction::Suspend).await
}

/// Resume a SUSPENDED token: `updateTokenState ACTIVE` to the TSP, the requestor is told.
#[utoipa::path(post, path = "/admin/v1/tokens/{tokenId}/resume", tag = "lifecycle",
    params(("tokenId" = String, Path)), request_body(content = ActionBody, description = "optional"),
    responses((status = 200, body = TokenStateView), (status = 404, body = ApiErrorBody),
        (status = 409, body = ApiErrorBody, description = "the token is not ACTIVE or SUSPENDED")),
    security(("admin" = [])))]
async fn resume_token(
    State(hub): State<AppState>,
    Path(token_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<TokenStateView>, ApiError> {
    act(hub, token_id, body, IssuerAction::Resume).await
}

/// Delete a token (card destroyed, account closed): `updateTokenState DELETED` to the TSP, the
/// requestor is told, the device is told to remove it at its next poll. Final.
#[utoipa::path(post, path = "/admin/v1/tokens/{tokenId}/delete", tag = "lifecycle",
    params(("tokenId" = String, Path)), request_body(content = ActionBody, description = "optional"),
    responses((status = 200, body = TokenStateView), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn delete_token(
    State(hub): State<AppState>,
    Path(token_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<TokenStateView>, ApiError> {
    act(hub, token_id, body, IssuerAction::Delete).await
}

/// A renewed or replaced card. Renewal needs `cardExpiryDate`, replacement `cardLastDigits`.
/// `issuerCardRefId`, `newCipheredCardInfo` and `cipheredCardInfoKeyId` go to the TSP as they
/// are (`updateToken`).
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CardBody {
    /// 2 to 5 digits.
    pub card_last_digits: Option<String>,
    /// MMYY.
    pub card_expiry_date: Option<String>,
    pub card_art_id: Option<String>,
    pub issuer_card_ref_id: Option<String>,
    pub new_ciphered_card_info: Option<String>,
    pub ciphered_card_info_key_id: Option<String>,
}

/// The tokens a card change reached.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CardUpdateView {
    pub token_ids: Vec<String>,
}

async fn card_change(
    hub: AppState,
    issuer_id: String,
    card_ref: String,
    body: CardBody,
    what: &'static str,
) -> Result<Json<CardUpdateView>, ApiError> {
    let issuer = IssuerId::parse(&issuer_id)?;
    if card_ref.is_empty() || card_ref.chars().count() > 64 {
        return Err(ApiError::bad_request(
            "walletCardRefId must be 1 to 64 characters",
        ));
    }
    let card = parse_card(
        ("cardLastDigits", body.card_last_digits.as_deref()),
        ("cardExpiryDate", body.card_expiry_date.as_deref()),
        ("cardArtId", body.card_art_id.as_deref()),
    )?;
    match what {
        "renewed" if card.expiry_date.is_none() => {
            return Err(ApiError::bad_request("a renewal needs cardExpiryDate"))
        }
        "replaced" if card.last_digits.is_none() => {
            return Err(ApiError::bad_request("a replacement needs cardLastDigits"))
        }
        _ => {}
    }
    for (field, value, max) in [
        ("issuerCardRefId", &body.issuer_card_ref_id, 64),
        ("newCipheredCardInfo", &body.new_ciphered_card_info, 8196),
        ("cipheredCardInfoKeyId", &body.ciphered_card_info_key_id, 64),
    ] {
        if value
            .as_ref()
            .is_some_and(|v| v.is_empty() || v.chars().count() > max)
        {
            return Err(ApiError::bad_request(format!(
                "{field} must be 1 to {max} characters"
            )));
        }
    }
    let update = CardUpdate {
        card,
        issuer_card_ref_id: body.issuer_card_ref_id,
        new_ciphered_card_info: body.new_ciphered_card_info,
        ciphered_card_info_key_id: body.ciphered_card_info_key_id,
        what,
    };
    let token_ids = lifecycle::card_update(&hub, issuer.as_str(), &card_ref, update).await?;
    Ok(Json(CardUpdateView { token_ids }))
}

/// The issuer renewed a card (new expiry, maybe new card art): every ACTIVE or SUSPENDED token of
/// it is updated, `updateToken` goes to the TSP and each token's requestor is told.
#[utoipa::path(post, path = "/admin/v1/issuers/{issuerId}/cards/{walletCardRefId}/renew", tag = "lifecycle",
    params(("issuerId" = String, Path), ("walletCardRefId" = String, Path)), request_body = CardBody,
    responses((status = 200, body = CardUpdateView), (status = 400, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody, description = "no ACTIVE or SUSPENDED token of that card")),
    security(("admin" = [])))]
async fn renew_card(
    State(hub): State<AppState>,
    Path((issuer_id, card_ref)): Path<(String, String)>,
    JsonBody(body): JsonBody<CardBody>,
) -> Result<Json<CardUpdateView>, ApiError> {
    card_change(hub, issuer_id, card_ref, body, "renewed").await
}

/// The issuer replaced a card (new number: new last digits, maybe a new expiry and art).
#[utoipa::path(post, path = "/admin/v1/issuers/{issuerId}/cards/{walletCardRefId}/replace", tag = "lifecycle",
    params(("issuerId" = String, Path), ("walletCardRefId" = String, Path)), request_body = CardBody,
    responses((status = 200, body = CardUpdateView), (status = 400, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody, description = "no ACTIVE or SUSPENDED token of that card")),
    security(("admin" = [])))]
async fn replace_card(
    State(hub): State<AppState>,
    Path((issuer_id, card_ref)): Path<(String, String)>,
    JsonBody(body): JsonBody<CardBody>,
) -> Result<Json<CardUpdateView>, ApiError> {
    card_change(hub, issuer_id, card_ref, body, "replaced").await
}

/// A token requestor: where its token updates go and how they are authenticated.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestorBody {
    pub merchant_id: String,
    /// Updates are `POST`ed to `{baseUrl}/notify-token-update`.
    pub base_url: String,
    /// Sent as `authorization: APIKEY <apiKey>`.
    pub api_key: String,
    /// `whsec_…` secrets; every delivery carries one signature per secret, so a secret can be
    /// rotated without a gap (add the new one, then remove the old one).
    pub signing_secrets: Vec<String>,
    /// Deliveries under way at once to this requestor (default 16).
    #[serde(default)]
    pub max_in_flight: Option<u32>,
}

/// A token requestor as the admin API shows it: never its API key or secrets.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestorView {
    pub requestor_id: String,
    pub merchant_id: String,
    pub base_url: String,
    pub signing_secrets: i64,
    pub max_in_flight: i64,
    /// `ENABLED`, or `DISABLED` (the endpoint answered 410 Gone).
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Updates by state (`PENDING`, `DELIVERED`, `DEAD`, `SUPERSEDED`).
    pub deliveries: std::collections::BTreeMap<String, i64>,
}

async fn requestor_view(hub: &AppState, r: Requestor) -> Result<RequestorView, ApiError> {
    let deliveries = hub
        .store
        .notification_counts(Some(&r.requestor_id))
        .await?
        .into_iter()
        .collect();
    Ok(RequestorView {
        requestor_id: r.requestor_id,
        merchant_id: r.merchant_id,
        base_url: r.base_url,
        signing_secrets: r.secret_count,
        max_in_flight: r.max_in_flight,
        state: r.state,
        disabled_reason: r.disabled_reason,
        deliveries,
    })
}

/// Register or update a token requestor. Tokens digitized with this `tokenRequestorId` have their
/// updates delivered to it.
#[utoipa::path(put, path = "/admin/v1/token-requestors/{requestorId}", tag = "token requestors",
    params(("requestorId" = String, Path, description = "1..32 of A-Z a-z 0-9 . _ -")),
    request_body = RequestorBody,
    responses((status = 200, body = RequestorView), (status = 400, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn put_requestor(
    State(hub): State<AppState>,
    Path(requestor_id): Path<String>,
    JsonBody(body): JsonBody<RequestorBody>,
) -> Result<Json<RequestorView>, ApiError> {
    let requestor_id = parse_slug("requestorId", &requestor_id)?;
    if requestor_id.len() > 32 {
        return Err(ApiError::bad_request(
            "requestorId must be at most 32 characters",
        ));
    }
    if body.merchant_id.is_empty() || body.merchant_id.chars().count() > 64 {
        return Err(ApiError::bad_request(
            "merchantId must be 1 to 64 characters",
        ));
    }
    hub.requestors
        .check_url(&body.base_url)
        .map_err(ApiError::bad_request)?;
    if body.api_key.is_empty()
        || body.api_key.len() > 256
        || !body.api_key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::bad_request(
            "apiKey must be 1 to 256 printable ASCII characters",
        ));
    }
    if body.signing_secrets.is_empty() || body.signing_secrets.len() > 8 {
        return Err(ApiError::bad_request("signingSecrets holds 1 to 8 secrets"));
    }
    let max_in_flight = body.max_in_flight.unwrap_or(16);
    if !(1..=1024).contains(&max_in_flight) {
        return Err(ApiError::bad_request("maxInFlight must be 1 to 1024"));
    }
    let credentials = hub
        .keys
        .seal_requestor_credentials(&requestor_id, &body.api_key, &body.signing_secrets)
        .map_err(ApiError::bad_request)?;
    let row = Requestor {
        requestor_id: requestor_id.clone(),
        merchant_id: body.merchant_id,
        base_url: body.base_url,
        credentials,
        secret_count: body.signing_secrets.len() as i64,
        max_in_flight: i64::from(max_in_flight),
        state: requestors::ENABLED.into(),
        disabled_reason: None,
        created_ms: 0,
        updated_ms: 0,
    };
    let now = hub.now_ms();
    hub.store
        .transact(move |c| {
            Box::pin(async move { Ok::<_, Error>(requestors::put(c, &row, now).await?) })
        })
        .await?;
    hub.forget_requestors();
    hub.notify_wake.notify_one();
    let r = hub
        .store
        .requestor(&requestor_id)
        .await?
        .ok_or_else(|| ApiError::internal(&"the requestor just written is gone"))?;
    Ok(Json(requestor_view(&hub, r).await?))
}

/// Read a token requestor: its endpoint's state and its updates by state.
#[utoipa::path(get, path = "/admin/v1/token-requestors/{requestorId}", tag = "token requestors",
    params(("requestorId" = String, Path)),
    responses((status = 200, body = RequestorView), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn get_requestor(
    State(hub): State<AppState>,
    Path(requestor_id): Path<String>,
) -> Result<Json<RequestorView>, ApiError> {
    let Some(r) = hub.store.requestor(&requestor_id).await? else {
        return Err(ApiError::not_found(format!(
            "no token requestor {requestor_id}"
        )));
    };
    Ok(Json(requestor_view(&hub, r).await?))
}

/// Enable a requestor's endpoint again (after it answered 410 Gone): its waiting updates go out.
#[utoipa::path(post, path = "/admin/v1/token-requestors/{requestorId}/enable", tag = "token requestors",
    params(("requestorId" = String, Path)),
    responses((status = 204), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn enable_requestor(
    State(hub): State<AppState>,
    Path(requestor_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let now = hub.now_ms();
    let id = requestor_id.clone();
    let found = hub
        .store
        .transact(move |c| {
            Box::pin(async move {
                Ok::<_, Error>(requestors::set_state(c, &id, requestors::ENABLED, None, now).await?)
            })
        })
        .await?;
    if !found {
        return Err(ApiError::not_found(format!(
            "no token requestor {requestor_id}"
        )));
    }
    hub.notify_wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

/// A token update and where its delivery stands (never its API key or signature).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub delivery_id: i64,
    pub webhook_id: String,
    pub requestor_id: String,
    pub token_id: String,
    pub correlation_id: String,
    /// `PENDING`, `DELIVERED`, `DEAD` (the dead-letter list) or `SUPERSEDED`.
    pub state: String,
    pub last_update_timestamp: String,
    pub attempts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// On `GET /deliveries/{id}` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<AttemptView>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub at: String,
    pub duration_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn delivery_view(n: Notification) -> DeliveryView {
    DeliveryView {
        delivery_id: n.id,
        webhook_id: n.webhook_id,
        requestor_id: n.requestor_id,
        token_id: n.token_id,
        correlation_id: n.correlation_id,
        next_attempt_at: (n.state == notifications::PENDING).then(|| iso8601(n.next_attempt_ms)),
        state: n.state,
        last_update_timestamp: crate::domain::lifecycle::format_timestamp(n.last_update_ms),
        attempts: n.attempts,
        last_status: n.last_status,
        last_error: n.last_error,
        created_at: iso8601(n.created_ms),
        delivered_at: n.delivered_ms.map(iso8601),
        body: None,
        attempt_log: None,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliveryQuery {
    /// `PENDING`, `DELIVERED`, `DEAD` or `SUPERSEDED`.
    pub state: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<i64>,
}

fn filter(q: DeliveryQuery) -> Result<Filter, ApiError> {
    if let Some(s) = &q.state {
        if ![
            notifications::PENDING,
            notifications::DELIVERED,
            notifications::DEAD,
            notifications::SUPERSEDED,
        ]
        .contains(&s.as_str())
        {
            return Err(ApiError::bad_request(
                "state must be PENDING, DELIVERED, DEAD or SUPERSEDED",
            ));
        }
    }
    Ok(Filter {
        state: q.state,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
        ..Default::default()
    })
}

/// A requestor's token updates, newest first; `?state=DEAD` is its dead-letter list.
#[utoipa::path(get, path = "/admin/v1/token-requestors/{requestorId}/deliveries", tag = "token requestors",
    params(("requestorId" = String, Path), DeliveryQuery),
    responses((status = 200, body = [DeliveryView]), (status = 400, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn requestor_deliveries(
    State(hub): State<AppState>,
    Path(requestor_id): Path<String>,
    Query(q): Query<DeliveryQuery>,
) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    let f = Filter {
        requestor_id: Some(requestor_id),
        ..filter(q)?
    };
    list_deliveries(&hub, &f).await
}

/// A token's updates to its requestor, newest first.
#[utoipa::path(get, path = "/admin/v1/tokens/{tokenId}/deliveries", tag = "token requestors",
    params(("tokenId" = String, Path), DeliveryQuery),
    responses((status = 200, body = [DeliveryView]), (status = 400, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn token_deliveries(
    State(hub): State<AppState>,
    Path(token_id): Path<String>,
    Query(q): Query<DeliveryQuery>,
) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    let f = Filter {
        token_id: Some(token_id),
        ..filter(q)?
    };
    list_deliveries(&hub, &f).await
}

async fn list_deliveries(hub: &AppState, f: &Filter) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    let found = hub.store.notifications(f).await?;
    Ok(Json(found.into_iter().map(delivery_view).collect()))
}

/// One token update: its body (the token's state, no secrets) and every attempt.
#[utoipa::path(get, path = "/admin/v1/deliveries/{deliveryId}", tag = "token requestors",
    params(("deliveryId" = i64, Path)),
    responses((status = 200, body = DeliveryView), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn get_delivery(
    State(hub): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<DeliveryView>, ApiError> {
    let Some(n) = hub.store.notification(id).await? else {
        return Err(ApiError::not_found(format!("no delivery {id}")));
    };
    let attempts = hub.store.notification_attempts(id).await?;
    let body = serde_json::from_str(&n.payload).ok();
    let mut view = delivery_view(n);
    view.body = body;
    view.attempt_log = Some(
        attempts
            .into_iter()
            .map(|a: Attempt| AttemptView {
                at: iso8601(a.at_ms),
                duration_ms: a.duration_ms,
                status: a.status,
                error: a.error,
            })
            .collect(),
    );
    Ok(Json(view))
}

/// Replay a dead update: a new series of attempts, same `webhook-id`.
#[utoipa::path(post, path = "/admin/v1/deliveries/{deliveryId}/replay", tag = "token requestors",
    params(("deliveryId" = i64, Path)),
    responses((status = 204), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody, description = "not dead")),
    security(("admin" = [])))]
async fn replay_delivery(
    State(hub): State<AppState>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    if hub.store.notification(id).await?.is_none() {
        return Err(ApiError::not_found(format!("no delivery {id}")));
    }
    let now = hub.now_ms();
    let replayed = hub
        .store
        .transact(move |c| {
            Box::pin(async move { Ok::<_, Error>(notifications::replay(c, id, now).await?) })
        })
        .await?;
    if !replayed {
        return Err(ApiError::conflict(format!(
            "delivery {id} is not in the dead-letter list"
        )));
    }
    hub.notify_wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayView {
    pub replayed: u64,
}

/// Replay every dead update of a requestor.
#[utoipa::path(post, path = "/admin/v1/token-requestors/{requestorId}/dead-letters/replay", tag = "token requestors",
    params(("requestorId" = String, Path)),
    responses((status = 200, body = ReplayView), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn replay_dead_letters(
    State(hub): State<AppState>,
    Path(requestor_id): Path<String>,
) -> Result<Json<ReplayView>, ApiError> {
    if hub.store.requestor(&requestor_id).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "no token requestor {requestor_id}"
        )));
    }
    let now = hub.now_ms();
    let replayed = hub
        .store
        .transact(move |c| {
            Box::pin(async move {
                Ok::<_, Error>(notifications::replay_dead(c, &requestor_id, now).await?)
            })
        })
        .await?;
    hub.notify_wake.notify_one();
    Ok(Json(ReplayView { replayed }))
}
