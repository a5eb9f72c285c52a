//! Receiving tokenhub's token updates as a token requestor (a PSP).
//!
//! The hub tells each token requestor about its tokens' changes by posting the token's full
//! current state to `{baseUrl}/notify-token-update`, signed the
//! [Standard Webhooks](https://www.standardwebhooks.com/) way and retried until answered `2xx`.
//! This crate does everything a receiver must get right:
//!
//! - **authenticate**: `authorization: APIKEY <key>`, `webhook-signature` (HMAC-SHA256 by any of
//!   the configured secrets, for rotations), `webhook-timestamp` within a tolerance (5 minutes
//!   by default), all compared in constant time ([`Verifier`]);
//! - **deduplicate**: a retried delivery (same `webhook-id`) is acknowledged and ignored;
//! - **order**: deliveries may arrive out of order; an update whose `lastUpdateTimestamp` is not
//!   newer than the stored state is acknowledged and ignored, atomically with the write, so that
//!   concurrent deliveries can never store an older state over a newer one ([`Store`]);
//! - **react**: when a token's `tokenLastDigits` changed, [`Hooks::discard_token_pan`] tells the
//!   application to forget the old token PAN; [`Hooks::on_update`] sees every update applied;
//! - **answer**: `204` when the delivery is dealt with (applied, duplicate or obsolete), `401`
//!   for bad credentials, `400` for a malformed request, `500` if the store failed (the hub
//!   retries) ([`router`]).
//!
//! # In a few lines
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use tokenhub_receiver::{router, Hooks, Receiver, SqliteStore, TokenUpdate, Verifier};
//!
//! struct Psp;
//!
//! impl Hooks for Psp {
//!     fn discard_token_pan(&self, token_id: &str) {
//!         // Forget the cached token PAN of `token_id`; fetch the new one when needed.
//!     }
//!     fn on_update(&self, update: &TokenUpdate) {
//!         println!("{} is now {:?}", update.token_id, update.token_state);
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // The API key and the signing secret(s) registered at the hub for this requestor.
//!     let verifier = Verifier::new("my-api-key", ["whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="])?;
//!     let store = SqliteStore::open("tokens.db").await?;
//!     let receiver = Arc::new(Receiver::with_hooks(verifier, store, Psp));
//!
//!     // Serves POST /notify-token-update; the hub's baseUrl is http://127.0.0.1:8081.
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//!     axum::serve(listener, router(receiver.clone())).await?;
//!     Ok(())
//! }
//! ```
//!
//! `receiver.stats()` counts deliveries ([`Stats`]); `receiver.token(id)` and
//! `receiver.tokens()` read the stored states. [`MemoryStore`] keeps them in memory instead.
//! Outside axum, call [`Receiver::handle`] with the request's headers and raw body and answer
//! with [`Outcome`] / [`ReceiveError::status`].
//!
//! # The requestor API's client
//!
//! [`RequestorClient`] calls the hub's requestor API (`/requestor/v1`): tokenize a card on file
//! (a JWE made to a key of `encryption_keys` with `encrypt_card`, feature `card-encryption`, on
//! by default), Create Transaction (the current token PAN and a
//! one-time cryptogram), read and delete tokens. [`TokenPans`] keeps token PANs: as the
//! receiver's [`Hooks`] it discards a token's PAN when its `tokenLastDigits` change, and
//! [`TokenPans::pay`] fetches the current one with Create Transaction.
//!
//! # Signing
//!
//! [`sign`] and [`Signer`] produce the `webhook-signature` entries (`v1,<base64>`); the hub uses
//! them, and so can tests.
//!
//! # The body
//!
//! [`TokenUpdate`]: `{"tokenId", "merchantId", "tokenState": "ACTIVE"|"SUSPENDED"|"DELETED",
//! "tokenLastDigits", "tokenExpiryDate" (MMYY), "cardLastDigits", "cardExpiryDate" (MMYY),
//! "cardArtId", "lastUpdateTimestamp" (RFC 3339)}`; everything but `tokenId`, `merchantId` and
//! `lastUpdateTimestamp` may be null or absent. Each body is the token's whole state, so the
//! stored state is simply the newest body.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "card-encryption")]
mod card;
mod client;
mod http;
mod receiver;
mod signature;
mod store;
mod update;

#[cfg(feature = "card-encryption")]
pub use card::{encrypt_card, CardData, CardError};
pub use client::{ClientError, CofToken, Credentials, Payment, RequestorClient, TokenPans};
pub use http::{handle_detached, result_response, router, MAX_BODY_BYTES, NOTIFY_PATH};
pub use receiver::{Hooks, NoHooks, Outcome, ReceiveError, Receiver, Stats};
pub use signature::{
    sign, Secret, SecretError, Signer, Verified, Verifier, VerifyError, AUTHORIZATION,
    DEFAULT_TOLERANCE, SECRET_PREFIX, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP,
    X_CORRELATION_ID,
};
pub use store::{ApplyResult, MemoryStore, SqliteStore, Store, StoreError, StoredToken};
pub use update::{parse_timestamp, TokenState, TokenUpdate, UpdateError};
