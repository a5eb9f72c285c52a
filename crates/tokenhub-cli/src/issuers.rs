//! `tokenhub issuers`: register or update an issuer (`PUT /admin/v1/issuers/{id}`): its name and
//! the TSP connection its tokens are created with; read one, list them a page at a time.

use crate::api::{read_json, Admin, HubArgs, Page};
use crate::output::{Field, Output};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum IssuersCommand {
    /// Register or update an issuer (its id is exactly 10 characters).
    Put {
        issuer_id: String,
        /// The whole body (`{"name", "tspId"}`), instead of --name and --tsp.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["name", "tsp"], required_unless_present_all = ["name", "tsp"])]
        file: Option<PathBuf>,
        #[arg(long)]
        name: Option<String>,
        /// The TSP connection the issuer's tokens are created with.
        #[arg(long)]
        tsp: Option<String>,
    },
    /// An issuer: its name and TSP connection.
    Get { issuer_id: String },
    /// Issuers by id, a page at a time (an issuer-admin's key: its own).
    List {
        #[command(flatten)]
        page: Page,
    },
}

const FIELDS: &[Field] = &[
    ("issuerId", "/issuerId"),
    ("name", "/name"),
    ("tspId", "/tspId"),
];

pub async fn run(cmd: IssuersCommand, hub: &HubArgs, out: Output) -> anyhow::Result<()> {
    let admin = Admin::new(hub)?;
    match cmd {
        IssuersCommand::Put {
            issuer_id,
            file,
            name,
            tsp,
        } => {
            let body = match file {
                Some(f) => read_json(&f)?,
                None => json!({"name": name, "tspId": tsp}),
            };
            let a = admin
                .put(admin.url(&["issuers", &issuer_id]), &body)
                .await?;
            out.object(&a.text, FIELDS)
        }
        IssuersCommand::Get { issuer_id } => {
            let a = admin.get(admin.url(&["issuers", &issuer_id])).await?;
            out.object(&a.text, FIELDS)
        }
        IssuersCommand::List { page } => {
            let a = admin.get(page.url(&admin, &["issuers"])).await?;
            out.page(&a.text, FIELDS)
        }
    }
}
