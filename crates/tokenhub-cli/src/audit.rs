//! `tokenhub audit`: the audit log, a page at a time through the admin API (`list`), and its
//! hash chain checked on the store directly (`verify`).

use crate::api::{Admin, HubArgs};
use crate::output::{Field, Output};
use tokenhub::config::StoreArgs;

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Check every entry's link and hash on the store; exits 1 naming the first entry that breaks
    /// it.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The audit log, oldest first, a page at a time (the next page: `--after` the last seq).
    List {
        /// Entries after this seq.
        #[arg(long)]
        after: Option<i64>,
        /// At most this many (1 to 500).
        #[arg(long)]
        limit: Option<i64>,
    },
}

const ENTRY: &[Field] = &[
    ("seq", "/seq"),
    ("at", "/at"),
    ("actor", "/actor"),
    ("action", "/action"),
    ("objectType", "/objectType"),
    ("objectId", "/objectId"),
    ("status", "/status"),
    ("correlationId", "/correlationId"),
];

pub async fn run(cmd: AuditCommand, hub: &HubArgs, out: Output) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { store } => verify(store).await,
        AuditCommand::List { after, limit } => {
            let admin = Admin::new(hub)?;
            let url = admin.url_with(
                &["audit"],
                &[
                    ("after", after.map(|a| a.to_string())),
                    ("limit", limit.map(|l| l.to_string())),
                ],
            );
            let a = admin.get(url).await?;
            out.list(&a.text, "/entries", ENTRY)?;
            if out == Output::Table {
                if let Some(next) = a.json()?["nextAfter"].as_i64() {
                    eprintln!("more: --after {next}");
                }
            }
            Ok(())
        }
    }
}

async fn verify(store: StoreArgs) -> anyhow::Result<()> {
    let store = crate::admin_keys::open(store).await?;
    let verified = tokenhub::flows::audit::verify(&store)
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?;
    match verified {
        Ok(v) => {
            println!(
                "audit log intact: {} entries, head {}",
                v.entries,
                hex::encode(&v.head_hash)
            );
            Ok(())
        }
        Err(b) => anyhow::bail!("audit log BROKEN at entry {}: {}", b.seq, b.why),
    }
}
