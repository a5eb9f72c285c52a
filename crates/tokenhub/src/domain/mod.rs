//! Pure domain logic: identifiers that parse into the error code the contract requires, the token
//! state machine, product profile definitions and the rules for incoming data preparation.
//!
//! **Architecture invariant**: nothing here does IO, reads the clock or draws random numbers; the
//! callers pass `now` and whatever else is needed, and get back decisions.

pub mod admin;
pub mod campaign;
pub mod catalog;
pub mod cps;
pub mod data_call;
pub mod data_part;
pub mod ids;
pub mod lifecycle;
pub mod master_key;
pub mod named;
pub mod node;
pub mod notification;
pub mod perso;
pub mod personalization;
pub mod profile;
pub mod requestor_token;
pub mod retry_after;
pub mod shared_key;
pub mod submission;
pub mod token;
pub mod tsp_call;
pub mod tsp_health;
pub mod wallet_provider;

pub use ids::{Code, CorrelationId, IssuerId, Rejection, TokenId};
pub use master_key::{MasterKeyState, MasterKeyVersion, Wrapped};
pub use profile::{ElementFormat, ProfileDefinition};
pub use shared_key::{KeyPurpose, KeyState, StoredKey};
pub use token::TokenState;
