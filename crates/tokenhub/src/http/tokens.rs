//! Admin API: tokens (`/admin/v1/tokens`): reading one (never its secrets), an issuer's tokens a
//! page at a time, and the issuer's lifecycle actions (suspend, resume, delete).

use super::admin::{sees, AdminContext};
use super::api_error::ApiErrorBody;
use super::overview::{limit, PageQuery};
use super::{ApiError, AppState};
use crate::clock::iso8601;
use crate::domain::admin::IssuerObject;
use crate::domain::lifecycle::IssuerAction;
use crate::domain::{TokenId, TokenState};
use crate::flows::lifecycle::{self, LifecycleError};
use crate::flows::tokens;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tokens/{token_id}", get(get_token))
        .route("/tokens/{token_id}/suspend", post(suspend_token))
        .route("/tokens/{token_id}/resume", post(resume_token))
        .route("/tokens/{token_id}/delete", post(delete_token))
        .route("/issuers/{issuer_id}/tokens", get(list_issuer_tokens))
}

/// A token as an issuer's list shows it (the rest: `GET /tokens/{tokenId}`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenSummaryView {
    pub token_id: String,
    pub product_id: String,
    pub profile_version: String,
    pub state: TokenState,
    pub wallet_card_ref_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_requestor_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPage {
    pub items: Vec<TokenSummaryView>,
    /// The cursor of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A cursor names the last card and token of a page: both joined by a newline (in neither), in
/// URL-safe base64 so that it passes in a query string as it is.
fn cursor(card: &str, token: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{card}\n{token}"))
}

fn parse_cursor(c: &str) -> Result<(String, String), ApiError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once('\n')
                .map(|(card, token)| (card.to_string(), token.to_string()))
        })
        .ok_or_else(|| ApiError::bad_request("cursor is not one this API gave"))
}

/// An issuer's tokens by card (`walletCardRefId`) then token id, a page at a time (an
/// issuer-admin's key: its issuers' only; another answers as an unknown issuer).
#[utoipa::path(get, path = "/admin/v1/issuers/{issuerId}/tokens", tag = "admin",
    params(("issuerId" = String, Path), PageQuery),
    responses((status = 200, body = TokenPage), (status = 400, body = ApiErrorBody), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn list_issuer_tokens(
    State(hub): State<AppState>,
    Path(issuer_id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<TokenPage>, ApiError> {
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let after = after.as_ref().map(|(c, t)| (c.as_str(), t.as_str()));
    let Some((page, next)) = tokens::of_issuer(&hub, &issuer_id, limit(&q), after).await? else {
        return Err(ApiError::not_found(format!(
            "issuer {issuer_id} is not registered"
        )));
    };
    Ok(Json(TokenPage {
        items: page
            .into_iter()
            .map(|t| TokenSummaryView {
                token_id: t.token_id,
                product_id: t.product_id,
                profile_version: t.profile_version,
                state: t.state,
                wallet_card_ref_id: t.wallet_card_ref_id,
                token_requestor_id: t.token_requestor_id,
                created_at: iso8601(t.created_ms),
                updated_at: iso8601(t.updated_ms),
            })
            .collect(),
        next: next.map(|(card, token)| cursor(&card, &token)),
    }))
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

/// The token as the TSP described it (`tokenInfo`): never a card or token number.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfoView {
    /// The token's expiry, MMYY.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<String>,
    /// The token's last digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last4: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonalizationView {
    pub personalization_id: String,
    pub profile_version: String,
    /// `PERSO` or `REPERSO`.
    pub kind: String,
    /// `PENDING`, `CONFIRMED` or `FAILED`.
    pub state: String,
    /// How many times it was offered to the device.
    pub tries: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenEventView {
    pub at: String,
    pub event: String,
    pub correlation_id: String,
}

/// A token as the admin API shows it: never a data element's value, only the names of the
/// elements the hub holds.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub token_id: String,
    pub issuer_id: String,
    pub product_id: String,
    pub profile_version: String,
    pub state: TokenState,
    pub device_id: String,
    pub wallet_card_ref_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_requestor_id: Option<String>,
    pub token_info: TokenInfoView,
    /// Names of the data elements the hub holds (sealed) for this token: until the device confirms
    /// its profile, then none.
    pub elements_held: Vec<String>,
    /// Names of the elements the hub keeps a keyed fingerprint of (never a value).
    pub elements_fingerprinted: Vec<String>,
    /// Why the token's personalization failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The token's personalizations, newest first.
    pub personalizations: Vec<PersonalizationView>,
    /// Until when `/data` is accepted.
    pub data_deadline: String,
    pub created_at: String,
    pub updated_at: String,
    pub history: Vec<TokenEventView>,
}

/// Read a token.
#[utoipa::path(get, path = "/admin/v1/tokens/{tokenId}", tag = "admin",
    params(("tokenId" = String, Path)),
    responses((status = 200, body = TokenView), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn get_token(
    State(hub): State<AppState>,
    Extension(ctx): Extension<AdminContext>,
    Path(token_id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    let token_id = TokenId::parse(&token_id)?;
    let seen = sees(&hub, &ctx, IssuerObject::Token, token_id.as_str()).await?;
    let detail = match seen {
        true => tokens::detail(&hub, token_id.as_str()).await?,
        false => None,
    };
    let Some(detail) = detail else {
        return Err(ApiError::not_found(format!(
            "token {token_id} does not exist"
        )));
    };
    let t = detail.token;
    let history = detail
        .history
        .into_iter()
        .map(|e| TokenEventView {
            at: iso8601(e.at_ms),
            event: e.event,
            correlation_id: e.correlation_id,
        })
        .collect();
    Ok(Json(TokenView {
        token_id: t.token_id,
        issuer_id: t.issuer_id,
        product_id: t.product_id,
        profile_version: t.profile_version,
        state: t.state,
        device_id: t.device_id,
        wallet_card_ref_id: t.wallet_card_ref_id,
        token_requestor_id: t.token_requestor_id,
        token_info: TokenInfoView {
            exp: t.token_exp,
            last4: t.token_last4,
        },
        elements_held: t.received_elements,
        elements_fingerprinted: detail.fingerprinted,
        failure_reason: t.failure_reason,
        personalizations: detail
            .personalizations
            .into_iter()
            .map(|p| PersonalizationView {
                personalization_id: p.personalization_id,
                profile_version: p.profile_version,
                kind: p.kind.as_str().to_string(),
                state: p.state.as_str().to_string(),
                tries: p.tries,
                reason: p.result_reason,
                created_at: iso8601(p.created_ms),
            })
            .collect(),
        data_deadline: iso8601(t.data_deadline_ms),
        created_at: iso8601(t.created_ms),
        updated_at: iso8601(t.updated_ms),
        history,
    }))
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
    ctx: AdminContext,
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
    if !sees(&hub, &ctx, IssuerObject::Token, token_id.as_str()).await? {
        return Err(ApiError::not_found(format!("no token {token_id}")));
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
    Extension(ctx): Extension<AdminContext>,
    Path(token_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<TokenStateView>, ApiError> {
    act(hub, ctx, token_id, body, IssuerAction::Suspend).await
}

/// Resume a SUSPENDED token: `updateTokenState ACTIVE` to the TSP, the requestor is told.
#[utoipa::path(post, path = "/admin/v1/tokens/{tokenId}/resume", tag = "lifecycle",
    params(("tokenId" = String, Path)), request_body(content = ActionBody, description = "optional"),
    responses((status = 200, body = TokenStateView), (status = 404, body = ApiErrorBody),
        (status = 409, body = ApiErrorBody, description = "the token is not ACTIVE or SUSPENDED")),
    security(("admin" = [])))]
async fn resume_token(
    State(hub): State<AppState>,
    Extension(ctx): Extension<AdminContext>,
    Path(token_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<TokenStateView>, ApiError> {
    act(hub, ctx, token_id, body, IssuerAction::Resume).await
}

/// Delete a token (card destroyed, account closed): `updateTokenState DELETED` to the TSP, the
/// requestor is told, the device is told to remove it at its next poll. Final.
#[utoipa::path(post, path = "/admin/v1/tokens/{tokenId}/delete", tag = "lifecycle",
    params(("tokenId" = String, Path)), request_body(content = ActionBody, description = "optional"),
    responses((status = 200, body = TokenStateView), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn delete_token(
    State(hub): State<AppState>,
    Extension(ctx): Extension<AdminContext>,
    Path(token_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<TokenStateView>, ApiError> {
    act(hub, ctx, token_id, body, IssuerAction::Delete).await
}
