//! `tokenhub keys`: the keys shared with TSPs at a key ceremony: import one for its TSP (from
//! custodians' components or wrapped under a transport key: `ceremony.rs`; on the store, or with
//! `--api` through the hub's admin API as a key custodian), retire one, list them (never a key),
//! and the development generator, the only command that writes whole clear keys.

use crate::api::{Admin, HubArgs};
use crate::ceremony;
use crate::exit::CliError;
use crate::output::{Field, Output};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenhub::clock::SystemClock;
use tokenhub::config::{Config, ServeArgs, StoreArgs};

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// DEVELOPMENT ONLY: writes WHOLE CLEAR KEYS to a file. Creates a key set (a KEK and a DEK)
    /// for one TSP connection and writes it, with its KCVs, to a file (mode 0600) that the demo's
    /// TSP simulator and `keys import --file` read. A real ceremony enters keys as components
    /// or wrapped under a transport key (`keys import --components`, `--wrapped`).
    #[command(name = "dev-generate")]
    DevGenerate {
        #[arg(long)]
        out: PathBuf,
    },
    /// Import a key for its TSP into the hub's store, wrapped under the master key: from 2 or 3
    /// components entered by separate custodians (XOR; each component checked against its own
    /// KCV, the key against --kcv), or wrapped under a transport key (AES Key Wrap, RFC 3394,
    /// under an AES transport key itself entered as components), or a development key-set file.
    Import(Box<ImportArgs>),
    /// Retire a TSP's key: elements under it are refused from then on (audited).
    Retire(RetireArgs),
    /// The imported keys: owner, index, algorithm, purpose, state, KCV (through the admin API).
    List,
    /// Begin a master-key rotation while the hub serves (through the admin API; an admin or
    /// key-custodian key): a new version is made where the keys live (the HSM's token, or the key
    /// file; with TOKENHUB_MASTER_KEY, add `N:<hex>` on every node first), new wraps use it, a
    /// background job re-wraps every data key and secret, then the old version is retired.
    #[command(name = "rotate-master")]
    RotateMaster {
        /// Show the re-wrapping's progress until the old version is retired.
        #[arg(long)]
        wait: bool,
    },
    /// The master key's versions and a running rotation's progress (through the admin API).
    #[command(name = "master-status")]
    MasterStatus,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Through the running hub's admin API (an admin or key-custodian key) instead of on the
    /// store; the hub uses the keys at once. The key is made here and sent over the admin API.
    #[arg(long)]
    api: bool,
    /// The TSP that owns the key(s): only its elements decrypt under them.
    #[arg(long)]
    tsp: String,
    /// A key-set file written by `tokenhub keys dev-generate` (development).
    #[arg(long, conflicts_with_all = ["index", "components", "component_file", "wrapped"])]
    file: Option<PathBuf>,
    /// The key's keyIndex (scoped to the TSP).
    #[arg(long, requires_all = ["algorithm", "kcv", "purpose"])]
    index: Option<String>,
    /// aes128, aes256 or 3des.
    #[arg(long)]
    algorithm: Option<String>,
    /// The whole key's check value (6 hex digits).
    #[arg(long)]
    kcv: Option<String>,
    /// What the key is for: kek (encrypts card keys) or dek (encrypts track 2 and other data).
    #[arg(long)]
    purpose: Option<String>,
    /// The key is entered as N (2 or 3) components, each custodian prompted in turn without
    /// echo (component, then its KCV).
    #[arg(long, conflicts_with = "wrapped")]
    components: Option<usize>,
    /// A component from a file of its own (`HEX KCV`; `-`: one line of stdin), once per
    /// custodian, instead of the prompts.
    #[arg(long, conflicts_with = "wrapped")]
    component_file: Vec<PathBuf>,
    /// The key wrapped under the transport key (AES Key Wrap, RFC 3394), hex.
    #[arg(long, requires = "transport_kcv")]
    wrapped: Option<String>,
    /// The transport key (AES-128 or AES-256) is entered as N (2 or 3) components, prompted.
    #[arg(long, requires = "wrapped")]
    transport_components: Option<usize>,
    /// A transport key component from a file of its own (`HEX KCV`; `-`: a line of stdin).
    #[arg(long, requires = "wrapped")]
    transport_component_file: Vec<PathBuf>,
    /// The transport key's check value.
    #[arg(long)]
    transport_kcv: Option<String>,
}

#[derive(clap::Args)]
pub struct RetireArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Through the running hub's admin API instead of on the store.
    #[arg(long)]
    api: bool,
    /// The TSP that owns the key.
    #[arg(long)]
    tsp: String,
    /// The key's keyIndex.
    #[arg(long)]
    index: String,
}

const SHARED_KEY: &[Field] = &[
    ("tspId", "/tspId"),
    ("keyIndex", "/keyIndex"),
    ("algorithm", "/algorithm"),
    ("purpose", "/purpose"),
    ("state", "/state"),
    ("kcv", "/kcv"),
];

pub async fn run(cmd: KeysCommand, hub: &HubArgs, out: Output) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::DevGenerate { out } => dev_generate(&out),
        KeysCommand::Import(args) if args.api => {
            let admin = Admin::new(hub)?;
            let body = serde_json::json!({"tspId": args.tsp, "keys": keys(&args)?});
            let a = admin.post(admin.url(&["shared-keys"]), Some(&body)).await?;
            out.list(
                &a.text,
                "",
                &[("keyIndex", "/keyIndex"), ("outcome", "/outcome")],
            )?;
            let refused = a.json()?.as_array().map_or(0, |all| {
                all.iter().filter(|k| k["outcome"] == "REFUSED").count()
            });
            if refused > 0 {
                return Err(CliError::Refused(format!("{refused} key(s) refused")).into());
            }
            Ok(())
        }
        KeysCommand::Import(args) => import(*args).await,
        KeysCommand::Retire(args) if args.api => {
            let admin = Admin::new(hub)?;
            let url = admin.url(&["shared-keys", &args.tsp, &args.index, "retire"]);
            let a = admin.post(url, None).await?;
            out.done(&a.text, &format!("{}/{}: retired", args.tsp, args.index));
            Ok(())
        }
        KeysCommand::Retire(args) => retire(args).await,
        KeysCommand::List => {
            let admin = Admin::new(hub)?;
            let a = admin.get(admin.url(&["shared-keys"])).await?;
            out.list(&a.text, "", SHARED_KEY)
        }
        KeysCommand::RotateMaster { wait } => {
            let admin = Admin::new(hub)?;
            let a = admin
                .post(admin.url(&["master-keys", "rotate"]), None)
                .await?;
            let current = a.json()?["current"].clone();
            out.done(
                &a.text,
                &format!("master-key version {current}: new wraps use it; re-wrapping"),
            );
            if wait {
                wait_for_rotation(&admin).await?;
            }
            Ok(())
        }
        KeysCommand::MasterStatus => {
            let admin = Admin::new(hub)?;
            let a = admin.get(admin.url(&["master-keys"])).await?;
            out.list(&a.text, "/versions", MASTER_KEY_VERSION)
        }
    }
}

const MASTER_KEY_VERSION: &[Field] = &[
    ("version", "/version"),
    ("state", "/state"),
    ("createdMs", "/createdMs"),
    ("retiredMs", "/retiredMs"),
];

/// Prints the rotation's progress (to stderr) every second until no rotation runs.
async fn wait_for_rotation(admin: &Admin) -> anyhow::Result<()> {
    loop {
        let status = admin.get(admin.url(&["master-keys"])).await?.json()?;
        let rotation = &status["rotation"];
        if rotation.is_null() {
            eprintln!("rotation finished: older versions retired");
            return Ok(());
        }
        eprintln!(
            "re-wrapping under version {}: {} done, {} left",
            rotation["target"], rotation["rewrapped"], rotation["remaining"]
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn dev_generate(out: &Path) -> anyhow::Result<()> {
    let set = tokenhub_crypto::KeySet::generate();
    let json = zeroize::Zeroizing::new(serde_json::to_vec_pretty(&set)?);
    write_private(out, &json).with_context(|| format!("writing {}", out.display()))?;
    for k in &set.keys {
        println!(
            "{}  {}  {}  KCV {}",
            k.key_index, k.algorithm, k.purpose, k.kcv
        );
    }
    println!(
        "DEVELOPMENT ONLY: {} holds WHOLE CLEAR KEYS (for the demo's TSP simulator and `keys import --file`); \
         never use them for real data. A real ceremony: `tokenhub keys import --components` or `--wrapped`.",
        out.display()
    );
    Ok(())
}

/// The keys the arguments give: a development key-set file, or one key made by the ceremony.
fn keys(args: &ImportArgs) -> anyhow::Result<Vec<tokenhub_crypto::SharedKey>> {
    if let Some(file) = &args.file {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?,
        );
        return Ok(serde_json::from_str::<tokenhub_crypto::KeySet>(&text)
            .with_context(|| format!("{} is not a key-set file", file.display()))?
            .keys);
    }
    let Some(index) = &args.index else {
        return Err(CliError::Usage(
            "give --index with --algorithm, --purpose, --kcv and the key as --components or --wrapped (or a development --file)".into(),
        )
        .into());
    };
    let algorithm =
        tokenhub_crypto::Algorithm::parse(args.algorithm.as_deref().unwrap_or_default())?;
    let kcv = args.kcv.clone().unwrap_or_default();
    let purpose = args.purpose.clone().unwrap_or_default();
    if tokenhub::domain::KeyPurpose::parse(&purpose).is_none() {
        return Err(CliError::Usage("--purpose must be kek or dek".into()).into());
    }
    let key = match &args.wrapped {
        Some(wrapped) => {
            let transport = ceremony::Sources {
                what: "the transport key",
                count: args.transport_components,
                files: &args.transport_component_file,
            };
            let transport_kcv = args.transport_kcv.as_deref().unwrap_or_default();
            ceremony::from_wrapped(algorithm, wrapped, &transport, transport_kcv, &kcv)?
        }
        None => {
            let sources = ceremony::Sources {
                what: "the key",
                count: args.components,
                files: &args.component_file,
            };
            if sources.count.is_none() && sources.files.is_empty() {
                return Err(CliError::Usage(
                    "give the key as --components N (prompted) or --component-file, or --wrapped"
                        .into(),
                )
                .into());
            }
            ceremony::from_components(algorithm, &sources, &kcv)?
        }
    };
    Ok(vec![tokenhub_crypto::SharedKey {
        key_index: index.clone(),
        algorithm,
        purpose,
        hex: hex::encode_upper(&*key),
        kcv: kcv.to_ascii_uppercase(),
    }])
}

async fn open_store(store: StoreArgs) -> anyhow::Result<tokenhub::Hub> {
    let serve = ServeArgs {
        store,
        ..ServeArgs::default()
    };
    let config = Config::load(&serve)?;
    let (hub, notes) = tokenhub::Hub::open(config, Arc::new(SystemClock)).await?;
    if let Some(path) = notes.created_master_key_file {
        tracing::warn!(path = %path.display(), "generated a new master key file");
    }
    Ok(hub)
}

async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let keys = keys(&args)?;
    let tsp = args.tsp.clone();
    let hub = open_store(args.store).await?;
    let now = hub.now_ms();
    let outcome =
        tokenhub::flows::keys::import(&hub.store, &hub.keys, &tsp, &keys, "cli", now).await;
    let outcome = outcome.map_err(|e| anyhow::anyhow!(e.chain()))?;
    // Hubs running on the same PostgreSQL database read the keys again at once.
    hub.announce(tokenhub::hub::Signal::SharedKeys).await;
    let mut refused = 0;
    for ((index, result), key) in outcome.into_iter().zip(&keys) {
        use tokenhub::domain::catalog::PutImmutable::*;
        match result {
            Created => println!("{tsp}/{index}: imported (KCV {})", key.kcv),
            Unchanged => println!("{tsp}/{index}: already imported (same KCV and purpose)"),
            Conflict => {
                refused += 1;
                println!(
                    "{tsp}/{index}: REFUSED: a different key with this index is already imported for the TSP"
                );
            }
        }
    }
    if refused > 0 {
        return Err(CliError::Refused(format!("{refused} key(s) refused")).into());
    }
    Ok(())
}

async fn retire(args: RetireArgs) -> anyhow::Result<()> {
    let hub = open_store(args.store).await?;
    let now = hub.now_ms();
    let outcome = tokenhub::flows::keys::retire(&hub.store, &args.tsp, &args.index, "cli", now)
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?;
    hub.announce(tokenhub::hub::Signal::SharedKeys).await;
    use tokenhub::flows::keys::Retired;
    match outcome {
        Retired::Retired => println!("{}/{}: retired", args.tsp, args.index),
        Retired::Already => println!("{}/{}: already retired", args.tsp, args.index),
        Retired::Missing => {
            return Err(
                CliError::NotFound(format!("TSP {} has no key {}", args.tsp, args.index)).into(),
            )
        }
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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
