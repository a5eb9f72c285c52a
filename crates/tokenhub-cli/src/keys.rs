//! `tokenhub keys`: the keys shared with TSPs at a key ceremony: generate a set, import it (on the
//! store, or with `--api` through the hub's admin API as a key custodian), list the imported
//! indexes with their KCVs (never a key).

use crate::api::{Admin, HubArgs};
use crate::exit::CliError;
use crate::output::{Field, Output};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenhub::clock::SystemClock;
use tokenhub::config::{Config, ServeArgs, StoreArgs};

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key set (a KEK and a DEK) for one TSP connection and write it, with its KCVs, to a
    /// file (mode 0600) that both the hub (`keys import --file`) and the TSP side load.
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
    /// Import keys into the hub's store, wrapped under the master key. Each is checked against its
    /// KCV first. Prefer --file: a key on the command line is visible to other local users.
    Import(ImportArgs),
    /// The imported keys: index, algorithm, KCV (through the admin API).
    List,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Through the running hub's admin API (an admin or key-custodian key) instead of on the
    /// store; the hub uses the keys at once.
    #[arg(long)]
    api: bool,
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

const SHARED_KEY: &[Field] = &[
    ("keyIndex", "/keyIndex"),
    ("algorithm", "/algorithm"),
    ("kcv", "/kcv"),
];

pub async fn run(cmd: KeysCommand, hub: &HubArgs, out: Output) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Generate { out } => generate(&out),
        KeysCommand::Import(args) if args.api => {
            let admin = Admin::new(hub)?;
            let set = tokenhub_crypto::KeySet { keys: keys(&args)? };
            let body = serde_json::to_value(&set)?;
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
        KeysCommand::Import(args) => import(args).await,
        KeysCommand::List => {
            let admin = Admin::new(hub)?;
            let a = admin.get(admin.url(&["shared-keys"])).await?;
            out.list(&a.text, "", SHARED_KEY)
        }
    }
}

fn generate(out: &Path) -> anyhow::Result<()> {
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

fn keys(args: &ImportArgs) -> anyhow::Result<Vec<tokenhub_crypto::SharedKey>> {
    Ok(match (&args.file, &args.index) {
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
    })
}

async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let keys = keys(&args)?;
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
    if refused > 0 {
        return Err(CliError::Refused(format!("{refused} key(s) refused")).into());
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
