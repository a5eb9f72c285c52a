//! Admin API: TSP connections (`/admin/v1/tsps`): where the hub calls each TSP, how it
//! recognises the TSP's client certificates and server certificate, and the TSP's health as the
//! hub's checks find it.

use super::api_error::{ApiErrorBody, JsonBody};
use super::{ApiError, AppState};
use crate::clock::iso8601;
use crate::domain::catalog::{Tsp, TspClientAuth};
use crate::domain::ids::parse_slug;
use crate::domain::tsp_health::TspHealth;
use crate::flows::{catalog, tsp_health};
use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tsps", get(list_tsps))
        .route("/tsps/{tsp_id}", put(put_tsp).get(get_tsp))
        .route("/tsps/{tsp_id}/card-encryption-key", put(put_card_key))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TspBody {
    /// The TSP's base URL for the outgoing API, e.g. `https://tsp.example/tsp/trapi/v2.0`.
    pub base_url: String,
    /// The calls per second the TSP agreed to take from the hub (all calls: repersoToken,
    /// newDataStatus, updateTokenState…), a ceiling no second passes: every node together
    /// spaces the calls evenly a little under it; absent: no limit. Campaigns are paced by it.
    #[serde(default)]
    pub rate_limit_per_second: Option<u32>,
    /// The TSP is known to send parameters the TSP API does not define: `/data` and `/newData`
    /// ignore them instead of refusing the call with `112`. Default `false`.
    #[serde(default)]
    pub accepts_extra_parameters: bool,
    /// How the TSP's client certificates are recognised on the TSP listener; absent: none is.
    #[serde(default)]
    pub client_certificates: Option<ClientCertificates>,
    /// The CA certificates (PEM) the TSP's server certificate is issued from, trusted for the
    /// hub's calls to it besides the public roots.
    #[serde(default)]
    pub server_ca_pem: Option<String>,
}

/// The CAs (PEM) a TSP's client certificates are issued from, and how its own are told from
/// others of the same CAs: the leaf's subject (e.g. `CN=tsp-a, O=Example`) and/or SHA-256 pins of
/// its SubjectPublicKeyInfo (64 hex digits; any one matches). At least one of the two.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientCertificates {
    pub ca_pem: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spki_sha256: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TspView {
    pub tsp_id: String,
    pub base_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<i64>,
    pub accepts_extra_parameters: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificates: Option<ClientCertificates>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_ca_pem: Option<String>,
    pub health: HealthView,
}

/// A TSP's health: `UNKNOWN` until checked, `DOWN` after the configured failures in a row (the
/// outbox then holds its calls), `UP` again after the configured successes in a row.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthView {
    /// `UP`, `DOWN` or `UNKNOWN`.
    pub state: &'static str,
    pub consecutive_failures: u32,
    /// How long the last check took, when it answered; `null` otherwise.
    pub latency_ms: Option<i64>,
    pub last_check_at: Option<String>,
    /// When the state last changed.
    pub last_change_at: Option<String>,
    /// When the TSP last called the hub's `healthCheck`.
    pub last_hub_check_at: Option<String>,
}

impl From<TspHealth> for HealthView {
    fn from(h: TspHealth) -> Self {
        Self {
            state: h.state.as_str(),
            consecutive_failures: h.consecutive_failures,
            latency_ms: h.latency_ms,
            last_check_at: h.last_check_ms.map(iso8601),
            last_change_at: h.last_change_ms.map(iso8601),
            last_hub_check_at: h.last_hub_check_ms.map(iso8601),
        }
    }
}

fn view(tsp: Tsp, health: TspHealth) -> TspView {
    TspView {
        tsp_id: tsp.tsp_id,
        base_url: tsp.base_url,
        rate_limit_per_second: tsp.rate_limit,
        accepts_extra_parameters: tsp.accepts_extra_parameters,
        client_certificates: tsp.client_auth.map(|a| ClientCertificates {
            ca_pem: a.ca_pem,
            subject: a.subject,
            spki_sha256: a.spki_sha256,
        }),
        server_ca_pem: tsp.server_ca_pem,
        health: health.into(),
    }
}

/// One TSP connection and its health.
#[utoipa::path(get, path = "/admin/v1/tsps/{tspId}", tag = "admin",
    params(("tspId" = String, Path)),
    responses((status = 200, body = TspView), (status = 401, body = ApiErrorBody), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn get_tsp(
    State(hub): State<AppState>,
    Path(tsp_id): Path<String>,
) -> Result<Json<TspView>, ApiError> {
    let Some(tsp) = catalog::tsp(&hub, &tsp_id).await? else {
        return Err(ApiError::not_found(format!("no TSP {tsp_id}")));
    };
    let health = tsp_health::view(&hub, &tsp.tsp_id).await?;
    Ok(Json(view(tsp, health)))
}

/// Every TSP connection and its health, by id.
#[utoipa::path(get, path = "/admin/v1/tsps", tag = "admin",
    responses((status = 200, body = Vec<TspView>), (status = 401, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn list_tsps(State(hub): State<AppState>) -> Result<Json<Vec<TspView>>, ApiError> {
    let mut health = tsp_health::views(&hub).await?;
    let tsps = catalog::tsps(&hub).await?;
    Ok(Json(
        tsps.into_iter()
            .map(|t| {
                let h = health.remove(&t.tsp_id).unwrap_or_default();
                view(t, h)
            })
            .collect(),
    ))
}

fn client_auth(c: ClientCertificates) -> Result<TspClientAuth, ApiError> {
    crate::tls::parse_certificates(&c.ca_pem)
        .map_err(|e| ApiError::bad_request(format!("clientCertificates.caPem: {e}")))?;
    let subject = c.subject.filter(|s| !s.trim().is_empty());
    let pins: Vec<String> = c
        .spki_sha256
        .iter()
        .map(|p| p.to_ascii_lowercase())
        .collect();
    if pins
        .iter()
        .any(|p| p.len() != 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(ApiError::bad_request(
            "clientCertificates.spkiSha256: each pin is 64 hex digits",
        ));
    }
    if subject.is_none() && pins.is_empty() {
        return Err(ApiError::bad_request(
            "clientCertificates needs a subject or spkiSha256 pins: a CA alone may issue to others",
        ));
    }
    Ok(TspClientAuth {
        ca_pem: c.ca_pem,
        subject,
        spki_sha256: pins,
    })
}

/// Register or update a TSP connection.
#[utoipa::path(put, path = "/admin/v1/tsps/{tspId}", tag = "admin",
    params(("tspId" = String, Path, description = "1..64 of A-Z a-z 0-9 . _ -")),
    request_body = TspBody,
    responses((status = 200, body = TspView), (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn put_tsp(
    State(hub): State<AppState>,
    Path(tsp_id): Path<String>,
    JsonBody(body): JsonBody<TspBody>,
) -> Result<Json<TspView>, ApiError> {
    let tsp_id = parse_slug("tspId", &tsp_id)?;
    let url = reqwest::Url::parse(&body.base_url)
        .map_err(|_| ApiError::bad_request("baseUrl must be an absolute http(s) URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ApiError::bad_request(
            "baseUrl must be an absolute http(s) URL",
        ));
    }
    if url.scheme() == "http" && !hub.config.outbound.allow_plain_http {
        return Err(ApiError::bad_request(
            "baseUrl must be https:// (http:// is accepted only with allow_plain_http_endpoints, for development)",
        ));
    }
    let tsp = Tsp {
        tsp_id,
        base_url: body.base_url.trim_end_matches('/').to_string(),
        rate_limit: match body.rate_limit_per_second {
            Some(0) => {
                return Err(ApiError::bad_request(
                    "rateLimitPerSecond must be at least 1",
                ))
            }
            r => r.map(i64::from),
        },
        accepts_extra_parameters: body.accepts_extra_parameters,
        client_auth: body.client_certificates.map(client_auth).transpose()?,
        server_ca_pem: match body.server_ca_pem {
            Some(pem) => {
                crate::tls::parse_certificates(&pem)
                    .map_err(|e| ApiError::bad_request(format!("serverCaPem: {e}")))?;
                Some(pem)
            }
            None => None,
        },
    };
    catalog::put_tsp(&hub, tsp.clone()).await?;
    let health = tsp_health::view(&hub, &tsp.tsp_id).await?;
    Ok(Json(view(tsp, health)))
}

/// Publish the TSP's card encryption key: the public JWK (EC P-256 or RSA, with a `kid`) that
/// token requestors encrypt card data to (`GET /requestor/v1/encryption-keys`). Only the TSP
/// holds the private key; the hub forwards the requestors' JWEs untouched.
#[utoipa::path(put, path = "/admin/v1/tsps/{tspId}/card-encryption-key", tag = "admin",
    params(("tspId" = String, Path)),
    request_body = Object,
    responses((status = 204), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn put_card_key(
    State(hub): State<AppState>,
    Path(tsp_id): Path<String>,
    JsonBody(jwk): JsonBody<serde_json::Value>,
) -> Result<axum::http::StatusCode, ApiError> {
    use crate::flows::requestor_tokens::{self, RequestorApiError};
    match requestor_tokens::set_card_key(&hub, &tsp_id, &jwk).await {
        Ok(true) => Ok(axum::http::StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::not_found(format!("no TSP {tsp_id}"))),
        Err(RequestorApiError::Invalid(m)) => Err(ApiError::bad_request(m)),
        Err(e) => Err(e.into()),
    }
}
