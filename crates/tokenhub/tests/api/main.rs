//! The hub's integration tests: a real hub over real HTTP, on SQLite and on PostgreSQL.
//!
//! Every test body is written once (`hub_tests!`) and runs twice: `…::sqlite` on a fresh SQLite
//! file, `…::postgres` on a fresh PostgreSQL database of the server named by
//! `TOKENHUB_TEST_DATABASE_URL` (skipped, and said so on stderr, when it is unset). Test names are
//! sentences of the contract (`docs/tsp-api.md`, `crates/tokenhub/spec/tsp-incoming-api-v2.json`).

#[macro_use]
mod support;

mod admin;
mod admin_keys;
mod admin_lists;
mod admin_roles;
mod architecture;
mod audit;
mod cards;
mod confidentiality;
mod console;
mod fencing;
mod global_limits;
mod health_check;
mod lifecycle_actions;
mod lock_order;
mod master_keys;
mod metrics;
mod migrations;
mod nodes;
mod notifications;
mod outbound;
mod outbox_lanes;
mod properties;
mod removals;
mod requestor_api;
mod requestor_caches;
mod requestor_client;
mod requestor_retries;
mod requestors;
mod shared_keys;
mod shred;
mod supervision;
mod tls_bounds;
mod tls_outbound;
mod tls_trust;
mod tsp_bounds;
mod tsp_data;
mod tsp_formats;
mod tsp_health;
mod tsp_hsm;
mod tsp_new_data;
mod tsp_oracle;
mod tsp_perso_data;
mod tsp_retries;
mod tsp_updates;
mod wakeups;
mod wallet;
mod wallet_auth;
mod wallet_idempotency;
mod wallet_providers;
