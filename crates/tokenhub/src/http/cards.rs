//! Admin API: the issuer's card events (`/admin/v1/issuers/{issuerId}/cards`): a renewed or replaced
//! card updates every live token of it.

use super::api_error::{ApiErrorBody, JsonBody};
use super::{ApiError, AppState};
use crate::domain::lifecycle::parse_card;
use crate::domain::IssuerId;
use crate::flows::lifecycle::{self, CardUpdate};
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/issuers/{issuer_id}/cards/{wallet_card_ref_id}/renew",
            post(renew_card),
        )
        .route(
            "/issuers/{issuer_id}/cards/{wallet_card_ref_id}/replace",
            post(replace_card),
        )
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
