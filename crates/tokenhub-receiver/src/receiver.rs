//! The receiver: verify, parse, apply atomically, call the application's hooks, count.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;

use crate::signature::{Verifier, VerifyError, X_CORRELATION_ID};
use crate::store::{ApplyResult, Store, StoreError, StoredToken};
use crate::update::{TokenUpdate, UpdateError};

/// What the application does with updates. Both methods are called after the update is stored,
/// from the request's task, before the answer: keep them quick (spawn a task for slow work).
pub trait Hooks: Send + Sync + 'static {
    /// The token's PAN changed (`tokenLastDigits` differs from the stored state's): discard any
    /// copy of the old token PAN and fetch the new one. Called at most once per update applied,
    /// before [`Hooks::on_update`]. Not called for a token seen for the first time, nor when
    /// either side's `tokenLastDigits` is null.
    fn discard_token_pan(&self, token_id: &str) {
        let _ = token_id;
    }

    /// An update was applied: it is now the token's state.
    fn on_update(&self, update: &TokenUpdate) {
        let _ = update;
    }
}

/// Hooks that do nothing: the store alone keeps the tokens' state.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {}

/// A delivery accepted (every one of these is answered `204`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// The update is now the token's state.
    Applied,
    /// The `webhook-id` was seen before (a retry of a delivery already processed).
    Duplicate,
    /// A newer (or the same) state of the token is stored already.
    Obsolete,
}

/// A delivery refused, or one that failed.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// Wrong or missing API key, signature or timestamp: `401`.
    #[error("unauthorized: {0}")]
    Unauthorized(VerifyError),
    /// Missing delivery headers or a body that is not a token update: `400`.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The store failed: `500`, the hub retries.
    #[error("store failure: {0}")]
    Store(#[from] StoreError),
    /// Something else failed (a hook panicked): `500`, the hub retries.
    #[error("internal failure: {0}")]
    Internal(String),
}

impl From<VerifyError> for ReceiveError {
    fn from(e: VerifyError) -> Self {
        if e.is_bad_request() {
            ReceiveError::BadRequest(e.to_string())
        } else {
            ReceiveError::Unauthorized(e)
        }
    }
}

impl From<UpdateError> for ReceiveError {
    fn from(e: UpdateError) -> Self {
        ReceiveError::BadRequest(e.to_string())
    }
}

impl ReceiveError {
    /// The HTTP status to answer: 401, 400 or 500.
    pub fn status(&self) -> StatusCode {
        match self {
            ReceiveError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ReceiveError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ReceiveError::Store(_) | ReceiveError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short machine-readable code: `unauthorized`, `bad_request`, `internal`.
    pub fn code(&self) -> &'static str {
        match self {
            ReceiveError::Unauthorized(_) => "unauthorized",
            ReceiveError::BadRequest(_) => "bad_request",
            ReceiveError::Store(_) | ReceiveError::Internal(_) => "internal",
        }
    }
}

/// The counters of a receiver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Deliveries handled (all of them).
    pub received: u64,
    /// Updates applied.
    pub applied: u64,
    /// Deliveries whose `webhook-id` was seen before.
    pub duplicates: u64,
    /// Updates older than (or as old as) the stored state.
    pub obsolete: u64,
    /// Deliveries refused (401, 400).
    pub rejected: u64,
    /// Store failures (500).
    pub failed: u64,
    /// Calls of [`Hooks::discard_token_pan`].
    pub pan_discards: u64,
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    applied: AtomicU64,
    duplicates: AtomicU64,
    obsolete: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    pan_discards: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Receives the hub's token updates: see the crate documentation.
#[derive(Debug)]
pub struct Receiver<S, H = NoHooks> {
    verifier: Verifier,
    store: S,
    hooks: H,
    counters: Counters,
}

impl<S: Store> Receiver<S, NoHooks> {
    /// A receiver that only stores the updates.
    pub fn new(verifier: Verifier, store: S) -> Self {
        Self::with_hooks(verifier, store, NoHooks)
    }
}

impl<S: Store, H: Hooks> Receiver<S, H> {
    /// A receiver that stores the updates and tells `hooks`.
    pub fn with_hooks(verifier: Verifier, store: S, hooks: H) -> Self {
        Self {
            verifier,
            store,
            hooks,
            counters: Counters::default(),
        }
    }

    /// The store, to read the tokens' state.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The hooks.
    pub fn hooks(&self) -> &H {
        &self.hooks
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// One token's stored state.
    pub async fn token(&self, token_id: &str) -> Result<Option<StoredToken>, StoreError> {
        self.store.token(token_id).await
    }

    /// Every token's stored state.
    pub async fn tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        self.store.tokens().await
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            received: c.received.load(Ordering::Relaxed),
            applied: c.applied.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            obsolete: c.obsolete.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            pan_discards: c.pan_discards.load(Ordering::Relaxed),
        }
    }

    /// Handles one delivery: checks the API key, the headers, the timestamp and the signature,
    /// parses the body, applies it atomically, and calls the hooks for an applied update.
    pub async fn handle(&self, headers: &HeaderMap, body: &[u8]) -> Result<Outcome, ReceiveError> {
        bump(&self.counters.received);
        let result = self.process(headers, body).await;
        let correlation_id = headers
            .get(X_CORRELATION_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match &result {
            Ok(outcome) => {
                tracing::debug!(correlation_id, ?outcome, "token update delivery handled")
            }
            Err(error) => {
                if matches!(error, ReceiveError::Store(_) | ReceiveError::Internal(_)) {
                    bump(&self.counters.failed);
                    tracing::error!(correlation_id, %error, "token update delivery failed");
                } else {
                    bump(&self.counters.rejected);
                    tracing::warn!(correlation_id, %error, "token update delivery refused");
                }
            }
        }
        result
    }

    async fn process(&self, headers: &HeaderMap, body: &[u8]) -> Result<Outcome, ReceiveError> {
        let verified = self.verifier.verify(headers, body)?;
        let update = TokenUpdate::from_json(body)?;
        match self.store.apply(&verified.webhook_id, &update).await? {
            ApplyResult::Duplicate => {
                bump(&self.counters.duplicates);
                Ok(Outcome::Duplicate)
            }
            ApplyResult::Obsolete => {
                bump(&self.counters.obsolete);
                Ok(Outcome::Obsolete)
            }
            ApplyResult::Applied { previous } => {
                bump(&self.counters.applied);
                if previous
                    .as_ref()
                    .is_some_and(|p| update.token_pan_changed_from(&p.update))
                {
                    bump(&self.counters.pan_discards);
                    self.hooks.discard_token_pan(&update.token_id);
                }
                self.hooks.on_update(&update);
                Ok(Outcome::Applied)
            }
        }
    }
}
