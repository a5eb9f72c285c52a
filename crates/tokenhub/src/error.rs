//! The hub's error type for flows: either a refusal the contract defines (with its code), or an
//! internal fault that the HTTP layer logs with its cause and answers as a generic retryable error.

use crate::domain::Rejection;
use crate::keys::KeyError;
use crate::store::StoreError;
use crate::tsp_client::TspCallError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Tsp(#[from] TspCallError),
}

impl Error {
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
