//! tokenhub: a Token Service Hub — the backend between payment networks' Token Service Providers
//! (TSPs), card issuers, the wallets that hold payment tokens and the merchants and PSPs that keep
//! tokens on file.
//!
//! # Layout
//! - [`http`]: the edge. One module per API: `tsp` (the TSP incoming API v2, `/trapi/v2.0`),
//!   `admin` (`/admin/v1`), `wallet` (`/wallet/v1`); the OpenAPI document; [`Application`].
//! - [`flows`]: the use cases (digitize a card, receive data preparation, import keys): domain
//!   decisions applied in store transactions.
//! - [`domain`]: pure rules and types: identifiers, the token state machine, profile versions,
//!   the checks on incoming data elements. No IO.
//! - [`store`]: the only place that knows SQL (SQLite by default, PostgreSQL for scale).
//! - [`keys`]: the only place that sees clear key material.
//! - [`tsp_client`]: the calls the hub makes on a TSP.
//! - [`tls`]: the listeners' certificates (reloaded on change) and the TSPs' mutual TLS.
//! - [`workers`]: background work (the outbox dispatcher, the delivery sweeper).
//! - [`hub`]: the shared context; [`config`], [`clock`], [`telemetry`], [`error`].
#![forbid(unsafe_code)]

pub mod app;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod flows;
pub mod health;
pub mod http;
pub mod hub;
pub mod keys;
pub mod pacer;
pub mod requestor_client;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod tsp_client;
mod workers;

pub use app::Application;
pub use config::Config;
pub use hub::Hub;
pub use store::Store;
