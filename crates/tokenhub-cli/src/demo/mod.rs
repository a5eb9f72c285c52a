//! `tokenhub demo`: the whole story on one machine, over real HTTP on
//! loopback. The demo starts the hub on a fresh embedded SQLite database, a TSP simulator and the
//! wallets' side, provisions tokens the way the parties would, and checks the outcome; it exits
//! non-zero unless every check holds.

mod acts;
mod client;
mod merchant;
mod summary;
mod updates;

use acts::Demo;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct DeviceSimArgs {
    /// The hub's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    hub_url: String,
    /// How many devices.
    #[arg(long, default_value_t = 10)]
    devices: usize,
    /// Device ids are this prefix and a number.
    #[arg(long, default_value = "device-")]
    id_prefix: String,
    /// The TSP simulator's root URL (where /sim/transactions is): devices pay when it is given.
    #[arg(long)]
    tsp_sim_url: Option<String>,
    /// Seconds between two rounds of transactions.
    #[arg(long, default_value_t = 10)]
    transactions_every: u64,
    /// The wallet provider's API key (`POST /admin/v1/wallet-providers/{id}/api-keys`) every
    /// wallet call carries.
    #[arg(long, env = "TOKENHUB_WALLET_API_KEY", hide_env_values = true)]
    wallet_api_key: Option<String>,
    /// Trust this CA (PEM, e.g. `ca.crt` of `tokenhub certs dev`) for the hub's certificate.
    #[arg(long)]
    ca: Option<PathBuf>,
}

pub async fn device_sim(args: DeviceSimArgs) -> anyhow::Result<()> {
    let mut fleet = tokenhub_sim::device::FleetConfig::new(args.hub_url, args.devices);
    fleet.id_prefix = args.id_prefix;
    fleet.api_key = args.wallet_api_key.map(tokenhub_sim::device::ApiKey);
    fleet.ca_pem = args.ca.map(std::fs::read_to_string).transpose()?;
    let mut config = tokenhub_sim::device::DeviceSimConfig::new(fleet);
    config.tsp_sim_url = args.tsp_sim_url;
    config.transactions_every = Duration::from_secs(args.transactions_every.max(1));
    tokenhub_sim::device::run(config).await
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// How many cards to digitize.
    #[arg(long, default_value_t = 1000)]
    tokens: usize,
    /// Over how many /data calls the TSP spreads each token's elements.
    #[arg(long, default_value_t = 2)]
    partial_calls: usize,
    /// Digitizations under way at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The campaign's pace, tokens per second.
    #[arg(long, default_value_t = 500)]
    campaign_rate: u32,
    /// The calls per second the TSP takes (it answers 503 above): the hub is told to keep to it.
    #[arg(long)]
    tsp_rate: Option<u32>,
    /// Transactions each device makes.
    #[arg(long, default_value_t = 3)]
    transactions: usize,
    /// Cards the merchant's PSP tokenizes on file (and pays with).
    #[arg(long, default_value_t = 200)]
    merchant_cards: u64,
    /// Of those, cards the TSP renews (new token PAN and last digits).
    #[arg(long, default_value_t = 50)]
    merchant_renewals: u64,
    /// Keep the demo's folder (database, keys) instead of deleting it.
    #[arg(long)]
    keep: bool,
    /// Where the hub's keys live (`--keystore pkcs11` with a module, a token and its PIN).
    #[command(flatten)]
    keystore: tokenhub::config::KeystoreArgs,
}

/// The demo, one act after the other; the summary and its checks at the end.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let demo = Demo::set_up(args).await?;
    demo.register().await?;
    let provisioned = demo.digitize().await?;
    let paid = demo.pay(&provisioned.token_ids).await?;
    let campaigned = demo.campaign(&provisioned.token_ids).await?;
    let updated = demo.updates(&provisioned.token_ids).await?;
    let merchanted = demo.merchant().await?;
    demo.finish(provisioned, paid, campaigned, updated, merchanted)
        .await
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}
