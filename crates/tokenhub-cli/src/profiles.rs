//! `tokenhub profiles`: a product's profile versions (`/admin/v1/issuers/{id}/products/{id}/profiles`):
//! define one (versions are immutable), read one, list them, deploy one, with or without a
//! re-personalization campaign.

use crate::api::{read_json, Admin, HubArgs, Page};
use crate::output::{Field, Output};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum ProfilesCommand {
    /// Define a profile version (docs/profiles.md) from a file (`-`: stdin). The same definition
    /// again changes nothing; a different one for an existing version is refused (exit 4).
    Put {
        issuer_id: String,
        product_id: String,
        version: String,
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// A profile version's definition (with --output json: the whole answer).
    Get {
        issuer_id: String,
        product_id: String,
        version: String,
    },
    /// A product's profile versions by version, a page at a time, the current one marked.
    List {
        issuer_id: String,
        product_id: String,
        #[command(flatten)]
        page: Page,
    },
    /// Make a version the product's current one; with --campaign (or any campaign setting),
    /// re-personalize every ACTIVE token of the product too.
    Deploy {
        issuer_id: String,
        product_id: String,
        version: String,
        #[command(flatten)]
        campaign: CampaignFlags,
        /// With a campaign: follow it with a progress bar until it ends.
        #[arg(long)]
        watch: bool,
    },
}

#[derive(clap::Args)]
pub struct CampaignFlags {
    /// The whole deploy body (`DeployBody` in /openapi.json), instead of the flags below.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["campaign", "rate", "max_in_flight", "canary_percent", "canary_max_failure_percent"])]
    file: Option<PathBuf>,
    /// Start a campaign (the hub's default settings unless given below).
    #[arg(long)]
    campaign: bool,
    /// Tokens started per second.
    #[arg(long)]
    rate: Option<u32>,
    /// Tokens under way at once.
    #[arg(long)]
    max_in_flight: Option<u32>,
    /// The first this-many percent of the tokens run first, as a canary.
    #[arg(long)]
    canary_percent: Option<u32>,
    /// The campaign pauses by itself when more than this percent of the canary fails.
    #[arg(long)]
    canary_max_failure_percent: Option<u32>,
}

impl CampaignFlags {
    fn body(&self) -> anyhow::Result<Value> {
        if let Some(f) = &self.file {
            return read_json(f);
        }
        let mut settings = Map::new();
        for (name, v) in [
            ("ratePerSecond", self.rate),
            ("maxInFlight", self.max_in_flight),
            ("canaryPercent", self.canary_percent),
            ("canaryMaxFailurePercent", self.canary_max_failure_percent),
        ] {
            if let Some(v) = v {
                settings.insert(name.into(), json!(v));
            }
        }
        Ok(if self.campaign || !settings.is_empty() {
            json!({"campaign": settings})
        } else {
            json!({})
        })
    }
}

const VERSIONS: &[Field] = &[
    ("version", "/version"),
    ("current", "/current"),
    ("createdAt", "/createdAt"),
];

const VERSION: &[Field] = &[
    ("issuerId", "/issuerId"),
    ("productId", "/productId"),
    ("version", "/version"),
    ("definition", "/definition"),
];

const DEPLOYED: &[Field] = &[
    ("issuerId", "/issuerId"),
    ("productId", "/productId"),
    ("currentVersion", "/currentVersion"),
    ("campaignId", "/campaignId"),
    ("total", "/total"),
];

pub async fn run(cmd: ProfilesCommand, hub: &HubArgs, out: Output) -> anyhow::Result<()> {
    let admin = Admin::new(hub)?;
    match cmd {
        ProfilesCommand::Put {
            issuer_id,
            product_id,
            version,
            file,
        } => {
            let definition = read_json(&file)?;
            let url = admin.url(&[
                "issuers",
                &issuer_id,
                "products",
                &product_id,
                "profiles",
                &version,
            ]);
            let a = admin.put(url, &definition).await?;
            let v = a.json()?;
            let names: Vec<&str> = v["definition"]["dataElements"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["name"].as_str())
                .collect();
            let outcome = if a.status == reqwest::StatusCode::CREATED {
                "defined"
            } else {
                "unchanged (defined before)"
            };
            out.record(
                &a.text,
                &[
                    ("issuerId", issuer_id),
                    ("productId", product_id),
                    ("version", version),
                    ("outcome", outcome.to_string()),
                    ("dataElements", names.join(", ")),
                ],
            );
            Ok(())
        }
        ProfilesCommand::Get {
            issuer_id,
            product_id,
            version,
        } => {
            let url = admin.url(&[
                "issuers",
                &issuer_id,
                "products",
                &product_id,
                "profiles",
                &version,
            ]);
            let a = admin.get(url).await?;
            out.object(&a.text, VERSION)
        }
        ProfilesCommand::List {
            issuer_id,
            product_id,
            page,
        } => {
            let segments = ["issuers", &issuer_id, "products", &product_id, "profiles"];
            let a = admin.get(page.url(&admin, &segments)).await?;
            out.page(&a.text, VERSIONS)
        }
        ProfilesCommand::Deploy {
            issuer_id,
            product_id,
            version,
            campaign,
            watch,
        } => {
            let body = campaign.body()?;
            let url = admin.url(&[
                "issuers",
                &issuer_id,
                "products",
                &product_id,
                "profiles",
                &version,
                "deploy",
            ]);
            let a = admin.post(url, Some(&body)).await?;
            out.object(&a.text, DEPLOYED)?;
            let started = a.json()?["campaignId"].as_str().map(str::to_string);
            if let (true, Some(id)) = (watch, started) {
                crate::campaign::watch(&admin, &id).await?;
            }
            Ok(())
        }
    }
}
