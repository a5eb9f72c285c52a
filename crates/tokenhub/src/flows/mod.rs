//! The hub's use cases. Each flow takes the [`Hub`](crate::hub::Hub) and parsed inputs, asks the
//! domain for decisions, applies them in store transactions, and returns the outcome to the edge
//! (an HTTP handler, a worker or the CLI) that called it.

pub mod admin_keys;
pub mod audit;
pub mod campaign;
pub mod catalog;
pub mod deliver;
pub mod digitize;
pub mod gauges;
pub mod keys;
pub mod lifecycle;
pub mod nodes;
pub mod notifications;
pub mod overview;
pub mod perso;
pub mod reperso;
pub mod requestor_tokens;
pub mod requestor_tsp;
pub mod requestors;
pub mod rotation;
pub mod shred;
pub mod tokens;
pub mod tsp_calls;
pub mod tsp_health;
pub mod wallet_providers;
