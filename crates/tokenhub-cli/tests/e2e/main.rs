//! End to end, over real HTTP between real processes: the `tokenhub` binary (started, killed with
//! SIGKILL and started again by the tests), the TSP simulator and a fleet of simulated devices.
//! Every test runs on SQLite and, when `TOKENHUB_TEST_DATABASE_URL` is set, on PostgreSQL.

#[macro_use]
mod harness;
mod audit;
mod campaign_crash;
mod campaigns;
mod card_on_file;
mod cli;
mod console;
mod key_ceremony;
mod logs;
mod master_key_rotation;
mod merchant;
mod notifications;
mod provisioning;
mod single_node;
