//! The `tokenhub` binary: it only parses the command line and wires the library's parts together.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use tokenhub::clock::SystemClock;
use tokenhub::config::{Config, ServeArgs, StoreArgs};

/// The hub allocates and frees from every thread (HTTP workers, the SQLite writer): glibc's
/// allocator spends much of that in its own bookkeeping and arena locks. mimalloc also overrides
/// `malloc`, so SQLite's and AWS-LC's allocations use it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin_keys;
mod campaign;
mod certs;
mod demo;
mod notifications;

#[derive(Parser)]
#[command(
    name = "tokenhub",
    version,
    about = "Token Service Hub: TSP API v2, personalization, re-personalization campaigns, token updates"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub.
    Serve(ServeArgs),
    /// Keys shared with TSPs at a key ceremony.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Development certificates (`certs dev --out DIR`).
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Run a TSP simulator against a hub.
    TspSim(demo::TspSimArgs),
    /// Run the whole story end to end on a fresh embedded database and check it.
    Demo(demo::DemoArgs),
    /// Run a fleet of simulated wallets against a hub.
    DeviceSim(demo::DeviceSimArgs),
    /// Follow and steer re-personalization campaigns.
    #[command(subcommand)]
    Campaign(campaign::CampaignCommand),
    /// A token requestor (a PSP keeping tokens on file) receiving token updates, built on the
    /// tokenhub-receiver library; it can fail on purpose (POST /sim/misbehaviour), and with
    /// --hub-url be a merchant that tokenizes cards, pays and follows renewals (/sim/merchant).
    RequestorSim(RequestorSimArgs),
    /// Admin API keys: create (the key is shown once), list, revoke; on the store directly.
    #[command(subcommand)]
    AdminKeys(admin_keys::AdminKeysCommand),
    /// The audit log: verify its hash chain.
    #[command(subcommand)]
    Audit(admin_keys::AuditCommand),
    /// Token updates to token requestors: list, show, replay dead letters, enable an endpoint.
    #[command(subcommand, alias = "deliveries")]
    Notifications(notifications::NotificationsCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key set (a KEK and a DEK) for one TSP connection and write it, with its KCVs, to a
    /// file (mode 0600) that both the hub (`keys import --file`) and the TSP side load.
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
    /// Import keys into the hub's store, wrapped under the master key. Each is checked against its
    /// KCV first. Prefer --file: a key on the command line is visible to other local users.
    Import(ImportArgs),
}

#[derive(clap::Args)]
struct ImportArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// A key-set file written by `tokenhub keys generate`.
    #[arg(long, conflicts_with_all = ["index", "algorithm", "hex", "kcv"])]
    file: Option<PathBuf>,
    /// The key's keyIndex.
    #[arg(long, requires_all = ["algorithm", "hex", "kcv"])]
    index: Option<String>,
    /// aes128, aes256 or 3des.
    #[arg(long)]
    algorithm: Option<String>,
    /// The clear key, hex.
    #[arg(long)]
    hex: Option<String>,
    /// Its key check value (6 hex digits).
    #[arg(long)]
    kcv: Option<String>,
    /// What the key is for: kek or dek.
    #[arg(long, default_value = "kek")]
    purpose: String,
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The demo draws progress bars: only warnings and errors go to the log there.
    let quiet = matches!(cli.command, Command::Demo(_));
    // (The demo's requestor refuses updates on purpose: its dead letters are no news.)
    tokenhub::telemetry::init(if quiet {
        "warn,tokenhub::workers::notifier=error"
    } else {
        tokenhub::telemetry::DEFAULT_FILTER
    });
    tokenhub::telemetry::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Certs(c) => certs::run(c),
            Command::Keys(KeysCommand::Generate { out }) => keys_generate(&out),
            Command::Keys(KeysCommand::Import(args)) => keys_import(args).await,
            Command::TspSim(args) => demo::tsp_sim(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::DeviceSim(args) => demo::device_sim(args).await,
            Command::Campaign(cmd) => campaign::run(cmd).await,
            Command::Notifications(cmd) => notifications::run(cmd).await,
            Command::AdminKeys(cmd) => admin_keys::run(cmd).await,
            Command::Audit(cmd) => admin_keys::audit(cmd).await,
            Command::RequestorSim(args) => requestor_sim(args).await,
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

fn keys_generate(out: &std::path::Path) -> anyhow::Result<()> {
    let set = tokenhub_crypto::KeySet::generate();
    let json = serde_json::to_vec_pretty(&set)?;
    write_private(out, &json).with_context(|| format!("writing {}", out.display()))?;
    for k in &set.keys {
        println!(
            "{}  {}  {}  KCV {}",
            k.key_index, k.algorithm, k.purpose, k.kcv
        );
    }
    println!(
        "written to {} (clear keys: import them, hand the file to the TSP side, then destroy it)",
        out.display()
    );
    Ok(())
}

async fn keys_import(args: ImportArgs) -> anyhow::Result<()> {
    let keys: Vec<tokenhub_crypto::SharedKey> = match (&args.file, &args.index) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            serde_json::from_str::<tokenhub_crypto::KeySet>(&text)
                .with_context(|| format!("{} is not a key-set file", file.display()))?
                .keys
        }
        (None, Some(index)) => vec![tokenhub_crypto::SharedKey {
            key_index: index.clone(),
            algorithm: tokenhub_crypto::Algorithm::parse(
                args.algorithm.as_deref().unwrap_or_default(),
            )?,
            purpose: args.purpose.clone(),
            hex: args.hex.clone().unwrap_or_default(),
            kcv: args.kcv.clone().unwrap_or_default(),
        }],
        (None, None) => anyhow::bail!("give --file, or --index with --algorithm, --hex and --kcv"),
    };
    let serve = ServeArgs {
        store: args.store,
        ..ServeArgs::default()
    };
    let config = Config::load(&serve)?;
    let (hub, notes) = tokenhub::Hub::open(config, Arc::new(SystemClock)).await?;
    if let Some(path) = notes.created_master_key_file {
        tracing::warn!(path = %path.display(), "generated a new master key file");
    }
    let now = hub.now_ms();
    let outcome = tokenhub::flows::keys::import(&hub.store, &hub.keys, &keys, "cli", now).await;
    let outcome = outcome.map_err(|e| anyhow::anyhow!(e.chain()))?;
    let mut refused = 0;
    for (index, result) in outcome {
        use tokenhub::domain::catalog::PutImmutable::*;
        match result {
            Created => println!("{index}: imported"),
            Unchanged => println!("{index}: already imported (same KCV)"),
            Conflict => {
                refused += 1;
                println!("{index}: REFUSED: a different key with this index is already imported");
            }
        }
    }
    anyhow::ensure!(refused == 0, "{refused} key(s) refused");
    Ok(())
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(bytes)
}
