//! `tokenhub-bench`: measures the hub over real loopback HTTP. Apart from the product binary, so
//! that it carries none of this; the same allocator as the product, so that the figures are the
//! product's.

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The product's allocator (see the `tokenhub` binary): the hub measured here allocates as the
/// one in production does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bootstrap;
mod campaign;
mod chaos;
mod console;
mod data;
mod edge;
mod keystore;
mod notifications;
mod observability;
mod rotation;
mod transactions;

#[derive(Parser)]
#[command(name = "tokenhub-bench", version, about = "Measure the hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// submitTokenData (40 elements, ~9.5 KB, validated, sealed, committed before the 204) against
    /// a parse-only handler, at max throughput and at a fixed rate.
    Data(data::DataArgs),
    /// What the trusted edge costs `/data`: mutual TLS against plain HTTP, and the p99 with idle
    /// and slowloris connections on the wallet listener.
    Edge(edge::EdgeArgs),
    /// Token updates from the TSP to a token requestor (requestor-sim, loopback): latency from
    /// the update accepted (204 to the TSP) to the update received, at a fixed rate; and the
    /// highest sustained delivery rate.
    #[command(alias = "notify")]
    Notifications(notifications::NotificationsArgs),
    /// What metrics and JSON logs at info cost `/data`: `data --max-only` with both off against
    /// both on, each run in a process of its own.
    Observability(observability::ObservabilityArgs),
    /// `/data` with the keys in an HSM (PKCS#11) against the software keystore: `data` on each,
    /// each in a process of its own, in one run.
    Keystore(keystore::KeystoreArgs),
    /// A master-key rotation over N wrapped data keys (1,000,000 by default) while /data runs at
    /// a fixed rate: its duration, keys/s, and /data's p99 before and during it.
    Rotation(rotation::RotationArgs),
    /// A re-personalization campaign over N ACTIVE tokens (seeded straight into the database),
    /// the hub in its own process: tokens/s per tenth, the hub's RSS and CPU, the TSP's rate.
    Campaign(campaign::CampaignArgs),
    /// Create Transaction through the hub (requestor API, API key, the hub's call to the TSP)
    /// against the TSP simulator's transactionCredentials called directly: max throughput of
    /// each, and p99 at a fixed rate; medians over `--runs`.
    Transactions(transactions::TransactionsArgs),
    /// The admin API reads behind each page of the operator console on a store of 1,000,000
    /// tokens and 10,000 notifications: p50, p99 and max of each against 200 ms.
    Console(console::ConsoleArgs),
    /// Several hub nodes on one PostgreSQL database through a campaign, token updates and their
    /// deliveries at once, while nodes are killed with SIGKILL, the TSP is flaky and the
    /// requestor goes down; then checks that nothing was done twice, lost, reordered or too fast.
    Chaos(chaos::ChaosArgs),
    /// The hub alone, configured as `tokenhub serve` is: the campaign bench runs it as a process
    /// of its own.
    #[command(hide = true)]
    Serve(Box<tokenhub::config::ServeArgs>),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _log = tokenhub::telemetry::init(match cli.command {
        Command::Serve(_) => tokenhub::telemetry::DEFAULT_FILTER,
        // The benches print their own figures: only warnings and errors go to the log.
        _ => "warn,tokenhub::workers::notifier=error",
    });
    tokenhub::telemetry::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Data(args) => data::run(args).await,
            Command::Edge(args) => edge::run(args).await,
            Command::Notifications(args) => notifications::run(args).await,
            Command::Observability(args) => observability::run(args).await,
            Command::Keystore(args) => keystore::run(args).await,
            Command::Rotation(args) => rotation::run(args).await,
            Command::Campaign(args) => campaign::run(args).await,
            Command::Chaos(args) => chaos::run(args).await,
            Command::Transactions(args) => transactions::run(args).await,
            Command::Console(args) => console::run(args).await,
            Command::Serve(args) => bootstrap::serve(*args).await,
        }
    })
}
