//! The `tokenhub` binary: it only parses the command line and wires the library's parts together.

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokenhub::clock::SystemClock;
use tokenhub::config::{Config, ServeArgs};

/// The hub allocates and frees from every thread (HTTP workers, the SQLite writer): glibc's
/// allocator spends much of that in its own bookkeeping and arena locks. mimalloc also overrides
/// `malloc`, so SQLite's and AWS-LC's allocations use it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin_keys;
mod api;
mod audit;
mod campaign;
mod cards;
mod ceremony;
mod certs;
mod demo;
mod exit;
mod health;
mod issuers;
mod keys;
mod nodes;
mod notifications;
mod output;
mod overview;
mod profiles;
mod requestors;
mod tokens;
mod tsp_sim;
mod tsps;
mod wallet_providers;

use api::{HubArgs, Remote};
use output::Output;

#[derive(Parser)]
#[command(
    name = "tokenhub",
    version,
    about = "Token Service Hub: TSP API v2, personalization, re-personalization campaigns, token updates"
)]
struct Cli {
    /// How the admin commands print what the hub answers: a table, or the API's JSON untouched.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub.
    Serve(ServeArgs),
    /// Keys shared with TSPs at a key ceremony: import (components or transport-wrapped), retire,
    /// list; dev-generate (development only: writes clear keys).
    Keys(Remote<keys::KeysCommand>),
    /// Development certificates (`certs dev --out DIR`).
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Run a TSP simulator against a hub.
    TspSim(tsp_sim::TspSimArgs),
    /// Run the whole story end to end on a fresh embedded database and check it.
    Demo(demo::DemoArgs),
    /// Run a fleet of simulated wallets against a hub.
    DeviceSim(demo::DeviceSimArgs),
    /// A token requestor (a PSP keeping tokens on file) receiving token updates, built on the
    /// tokenhub-receiver library; it can fail on purpose (POST /sim/misbehaviour), and with
    /// --hub-url be a merchant that tokenizes cards, pays and follows renewals (/sim/merchant).
    RequestorSim(RequestorSimArgs),
    /// TSP connections: put, get, list (with their health), card-key.
    Tsps(Remote<tsps::TspsCommand>),
    /// Issuers: put.
    Issuers(Remote<issuers::IssuersCommand>),
    /// A product's profile versions: put, deploy (with a re-personalization campaign).
    Profiles(Remote<profiles::ProfilesCommand>),
    /// The issuer's card events: renew, replace.
    Cards(Remote<cards::CardsCommand>),
    /// Tokens: get, history, personalizations, suspend, resume, delete.
    Tokens(Remote<tokens::TokensCommand>),
    /// Re-personalization campaigns: list, status (--watch), pause, resume, cancel, report.
    #[command(alias = "campaign")]
    Campaigns(Remote<campaign::CampaignCommand>),
    /// Token requestors: put, list, get, enable, keys (create, revoke).
    #[command(alias = "token-requestors")]
    Requestors(Remote<requestors::RequestorsCommand>),
    /// Token updates to token requestors: list, show, replay dead letters, enable an endpoint.
    #[command(alias = "deliveries")]
    Notifications(Remote<notifications::NotificationsCommand>),
    /// Wallet providers: put, get, keys (create, list, revoke).
    WalletProviders(Remote<wallet_providers::WalletProvidersCommand>),
    /// Admin API keys: create (the key is shown once), list, revoke; on the store, or --api.
    AdminKeys(Remote<admin_keys::AdminKeysCommand>),
    /// The audit log: list (admin API), verify its hash chain (on the store).
    Audit(Remote<audit::AuditCommand>),
    /// The hub's health: which worker is down (exit 6 when one is).
    Health(HubArgs),
    /// The hub at a glance: outboxes, backlogs, live campaigns, the store's load.
    Overview(HubArgs),
    /// The hub nodes sharing the database: live or not, their heartbeat and what each holds.
    Nodes(HubArgs),
    /// A completion script for a shell, on stdout (e.g. `tokenhub completions bash >
    /// /etc/bash_completion.d/tokenhub`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct RequestorSimArgs {
    /// Address to listen on; register `http://ADDR` (`https://ADDR` with `--certs`) as the
    /// requestor's baseUrl.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: std::net::SocketAddr,
    /// Serve over TLS with `DIR/requestor.crt` and `.key` (`certs dev --out DIR`), asking the
    /// hub for a client certificate of `DIR/ca.crt`; register that CA as the requestor's
    /// `serverCaPem`. A merchant trusts that CA for the hub and the TSP simulator too.
    #[arg(long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// The API key the hub must send (`authorization: APIKEY <key>`).
    #[arg(long, env = "TOKENHUB_REQUESTOR_API_KEY", hide_env_values = true)]
    api_key: String,
    /// A signing secret (`whsec_...`); repeat it during a rotation.
    #[arg(long = "signing-secret", required = true)]
    signing_secrets: Vec<String>,
    /// Keep the received tokens in this SQLite file (default: in memory).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Be a merchant with cards on file too, driven by POST /sim/merchant/cards, /payments and
    /// /replay: the hub's requestor API root (its wallet listener).
    #[arg(long, requires_all = ["requestor_key", "merchant_id", "tsp_sim_url"])]
    hub_url: Option<String>,
    /// The requestor API key (`trk_…`) the hub issued for this requestor.
    #[arg(long, env = "TOKENHUB_REQUESTOR_KEY", hide_env_values = true)]
    requestor_key: Option<String>,
    /// The merchant id the requestor is registered with at the hub.
    #[arg(long)]
    merchant_id: Option<String>,
    /// The TSP simulator's root, where payments are authorized (POST /sim/authorizations).
    #[arg(long)]
    tsp_sim_url: Option<String>,
    /// The seed the merchant's card numbers derive from (0..100000; random by default).
    #[arg(long)]
    card_seed: Option<u32>,
}

async fn requestor_sim(args: RequestorSimArgs) -> anyhow::Result<()> {
    use tokenhub_sim::requestor::{MerchantConfig, RequestorSimConfig, RequestorStore};
    let mut config = RequestorSimConfig::new(args.api_key, args.signing_secrets);
    config.listen = args.listen;
    if let Some(dir) = &args.certs {
        config.tls = Some(tokenhub_sim::SimTls::from_dir_as(dir, "requestor")?);
    }
    if let Some(db) = args.db {
        config.store = RequestorStore::Sqlite(db);
    }
    if let (Some(hub), Some(key), Some(merchant_id), Some(tsp)) = (
        args.hub_url,
        args.requestor_key,
        args.merchant_id,
        args.tsp_sim_url,
    ) {
        let mut merchant = MerchantConfig::new(hub, key, merchant_id, tsp);
        if let Some(seed) = args.card_seed {
            anyhow::ensure!(seed < 100_000, "--card-seed must be below 100000");
            merchant.card_seed = seed;
        }
        // The same CA signs the hub's and the TSP simulator's development certificates.
        merchant.ca_pem = args
            .certs
            .as_ref()
            .map(|dir| std::fs::read_to_string(dir.join("ca.crt")))
            .transpose()?;
        config.merchant = Some(merchant);
    }
    tokenhub_sim::requestor::run(config).await
}

/// Every `--help` ends with the exit codes.
fn with_exit_codes(cmd: clap::Command) -> clap::Command {
    cmd.after_long_help(exit::HELP)
        .mut_subcommands(with_exit_codes)
}

fn main() -> ExitCode {
    let command = with_exit_codes(Cli::command());
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Command::Completions { shell } = cli.command {
        let mut command = Cli::command();
        clap_complete::generate(shell, &mut command, "tokenhub", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    match run(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => exit::report(&e),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let _log = tokenhub::telemetry::init(match cli.command {
        // The demo draws progress bars: only warnings and errors go to the log there. (Its
        // requestor refuses updates on purpose: its dead letters are no news.)
        Command::Demo(_) => "warn,tokenhub::workers::notifier=error",
        // The processes that run for a while log their progress.
        Command::Serve(_)
        | Command::TspSim(_)
        | Command::DeviceSim(_)
        | Command::RequestorSim(_) => tokenhub::telemetry::DEFAULT_FILTER,
        // A command's answer is its output.
        _ => "warn",
    });
    tokenhub::telemetry::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let out = cli.output;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Certs(c) => certs::run(c),
            Command::Keys(r) => keys::run(r.command, &r.hub, out).await,
            Command::TspSim(args) => tsp_sim::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::DeviceSim(args) => demo::device_sim(args).await,
            Command::RequestorSim(args) => requestor_sim(args).await,
            Command::Tsps(r) => tsps::run(r.command, &r.hub, out).await,
            Command::Issuers(r) => issuers::run(r.command, &r.hub, out).await,
            Command::Profiles(r) => profiles::run(r.command, &r.hub, out).await,
            Command::Cards(r) => cards::run(r.command, &r.hub, out).await,
            Command::Tokens(r) => tokens::run(r.command, &r.hub, out).await,
            Command::Campaigns(r) => campaign::run(r.command, &r.hub, out).await,
            Command::Requestors(r) => requestors::run(r.command, &r.hub, out).await,
            Command::Notifications(r) => notifications::run(r.command, &r.hub, out).await,
            Command::WalletProviders(r) => wallet_providers::run(r.command, &r.hub, out).await,
            Command::AdminKeys(r) => admin_keys::run(r.command, &r.hub, out).await,
            Command::Audit(r) => audit::run(r.command, &r.hub, out).await,
            Command::Health(hub) => health::run(&hub, out).await,
            Command::Overview(hub) => overview::run(&hub, out).await,
            Command::Nodes(hub) => nodes::run(&hub, out).await,
            Command::Completions { .. } => Ok(()),
        }
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args)?;
    tracing::info!(?config, "starting");
    let app = tokenhub::Application::build_with_clock(config, Arc::new(SystemClock)).await?;
    if let Some(path) = &app.notes().created_master_key_file {
        tracing::warn!(
            path = %path.display(),
            "TOKENHUB_MASTER_KEY is not set: generated a master key into this file (mode 0600). \
             Everything the database holds is wrapped under it: back it up apart from the database, \
             or set TOKENHUB_MASTER_KEY in production"
        );
    }
    tracing::info!(addresses = ?app.addresses(), "tokenhub is serving");
    app.run().await.context("serving")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own checks of every subcommand (names, shorts, conflicts, globals).
    #[test]
    fn the_command_line_is_well_formed() {
        with_exit_codes(Cli::command()).debug_assert();
    }
}
