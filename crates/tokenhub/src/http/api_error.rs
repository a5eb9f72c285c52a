//! Errors of the hub's own APIs (admin, wallet): an HTTP status and
//! `{"error": "<MACHINE_CODE>", "message": "<text>"}`. Internal faults are logged with their cause
//! and answered as a bare `500` that reveals nothing.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The TSP's response code, when the error is the TSP's refusal.
    pub tsp_response_code: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiErrorBody {
    pub error: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tsp_response_code: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            tsp_response_code: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "CONFLICT", message)
    }
    /// Logs the cause; the caller learns only that something went wrong.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(cause = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error; try again",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ApiErrorBody {
            error: self.code.to_string(),
            message: self.message,
            tsp_response_code: self.tsp_response_code,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::error::Error> for ApiError {
    fn from(e: crate::error::Error) -> Self {
        use crate::error::Error;
        match e {
            Error::Rejected(r) => Self::bad_request(r.message),
            Error::Invalid(m) => Self::bad_request(m),
            Error::NotFound(m) => Self::not_found(m),
            Error::Conflict(m) => Self::conflict(m),
            Error::Forbidden(m) => Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", m),
            Error::Refused { code, message } => ApiError {
                tsp_response_code: Some(code),
                ..Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    tsp_refusal_code(code),
                    message,
                )
            },
            Error::Unavailable(m) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "TSP_UNAVAILABLE", m)
            }
            Error::BadCounterpart(m) => Self::new(StatusCode::BAD_GATEWAY, "TSP_PROTOCOL", m),
            other => Self::internal(&other.chain()),
        }
    }
}

/// The machine code of a TSP's refusal, by the TSP's response code.
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

impl From<crate::domain::Rejection> for ApiError {
    fn from(r: crate::domain::Rejection) -> Self {
        Self::bad_request(r.message)
    }
}

/// A JSON body extractor whose refusals are our `ApiError` (400 with a clear message), not the
/// framework's plain text.
pub struct JsonBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => {
                let status = rejection.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "BODY_TOO_LARGE"
                } else if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                    "UNSUPPORTED_MEDIA_TYPE"
                } else {
                    "INVALID_REQUEST"
                };
                let status = if status.is_client_error() {
                    status
                } else {
                    StatusCode::BAD_REQUEST
                };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}

/// The bearer credential of a request's `authorization` header, if it has one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// `401` naming the credential the API takes, with `www-authenticate: Bearer`.
pub fn unauthorized(message: &'static str) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message).into_response();
    r.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    r
}
