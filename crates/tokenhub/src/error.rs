//! The flows' one error type: a refusal the caller may be told (with the kind an edge maps to its
//! wire form: a TSP API code, an HTTP status), or an internal fault that the edge logs with its
//! cause chain and answers with a generic retryable error that reveals nothing.

use crate::domain::Rejection;
use crate::keys::KeyError;
use crate::store::StoreError;
use crate::tsp_client::TspCallError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A refusal the TSP API contract defines, with its response code.
    #[error("{0}")]
    Rejected(#[from] Rejection),
    /// The request breaks a rule of the hub's own APIs.
    #[error("{0}")]
    Invalid(String),
    /// What the request names does not exist, or is not the caller's to see.
    #[error("{0}")]
    NotFound(String),
    /// What the request names is in a state that forbids it.
    #[error("{0}")]
    Conflict(String),
    /// The caller's role does not allow what the request asks.
    #[error("{0}")]
    Forbidden(String),
    /// A counterpart (a TSP) refused, with its own response code.
    #[error("{message}")]
    Refused { code: u32, message: String },
    /// A counterpart cannot be reached now: the caller may try again later.
    #[error("{0}")]
    Unavailable(String),
    /// A counterpart answered outside its contract.
    #[error("{0}")]
    BadCounterpart(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Tsp(#[from] TspCallError),
}

/// How an edge answers an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Rejected,
    Invalid,
    NotFound,
    Conflict,
    Forbidden,
    Refused,
    Unavailable,
    BadCounterpart,
    /// A fault of the hub's own: logged with its cause, answered as a generic retryable error.
    Internal,
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Rejected(_) => ErrorKind::Rejected,
            Self::Invalid(_) => ErrorKind::Invalid,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Conflict(_) => ErrorKind::Conflict,
            Self::Forbidden(_) => ErrorKind::Forbidden,
            Self::Refused { .. } => ErrorKind::Refused,
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::BadCounterpart(_) => ErrorKind::BadCounterpart,
            Self::Store(_) | Self::Keys(_) | Self::Tsp(_) => ErrorKind::Internal,
        }
    }

    /// The full cause chain, for the log line of an unexpected error.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            out.push_str(": ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }
}
