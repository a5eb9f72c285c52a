//! `tokenhub tsps`: the TSP connections (`/admin/v1/tsps`): register or update one, read one or
//! all (with their health where the hub reports it), publish a TSP's card encryption key.

use crate::api::{read_json, read_pem, Admin, HubArgs};
use crate::output::{Field, Output};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum TspsCommand {
    /// Register or update a TSP connection: the body from --file (`-`: stdin), or from the flags.
    Put {
        tsp_id: String,
        #[command(flatten)]
        body: TspFlags,
    },
    /// A TSP connection, with its health when the hub reports it.
    Get { tsp_id: String },
    /// Every TSP connection, with its health when the hub reports it.
    List,
    /// Publish the TSP's card encryption key (its public JWK, from a file or `-`), which token
    /// requestors encrypt cards to.
    CardKey {
        tsp_id: String,
        #[arg(long, value_name = "JWK_FILE")]
        file: PathBuf,
    },
}

#[derive(clap::Args)]
pub struct TspFlags {
    /// The whole body (`TspBody` in /openapi.json), instead of the flags below.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["base_url", "rate_limit", "accepts_extra_parameters", "server_ca", "client_ca"], required_unless_present = "base_url")]
    file: Option<PathBuf>,
    /// The TSP's base URL for the outgoing API, e.g. `https://tsp.example/tsp/trapi/v2.0`.
    #[arg(long)]
    base_url: Option<String>,
    /// Calls per second the TSP takes from the hub.
    #[arg(long)]
    rate_limit: Option<u32>,
    /// `/data` and `/newData` ignore parameters the TSP API does not define.
    #[arg(long)]
    accepts_extra_parameters: bool,
    /// The CAs (PEM file) the TSP's server certificate is issued from.
    #[arg(long, value_name = "PEM_FILE")]
    server_ca: Option<PathBuf>,
    /// The CAs (PEM file) the TSP's client certificates are issued from.
    #[arg(long, value_name = "PEM_FILE")]
    client_ca: Option<PathBuf>,
    /// The subject of the TSP's client certificate (e.g. `CN=tsp-a, O=Example`).
    #[arg(long, requires = "client_ca")]
    client_subject: Option<String>,
    /// A SHA-256 pin (64 hex digits) of the client certificate's public key; repeat it.
    #[arg(
        long = "client-spki-sha256",
        requires = "client_ca",
        value_name = "PIN"
    )]
    client_spki_sha256: Vec<String>,
}

impl TspFlags {
    fn body(&self) -> anyhow::Result<Value> {
        if let Some(file) = &self.file {
            return read_json(file);
        }
        let mut body = Map::new();
        body.insert("baseUrl".into(), json!(self.base_url));
        if let Some(r) = self.rate_limit {
            body.insert("rateLimitPerSecond".into(), json!(r));
        }
        if self.accepts_extra_parameters {
            body.insert("acceptsExtraParameters".into(), json!(true));
        }
        if let Some(pem) = &self.server_ca {
            body.insert("serverCaPem".into(), json!(read_pem(pem)?));
        }
        if let Some(pem) = &self.client_ca {
            let mut certs = json!({"caPem": read_pem(pem)?});
            if let Some(s) = &self.client_subject {
                certs["subject"] = json!(s);
            }
            if !self.client_spki_sha256.is_empty() {
                certs["spkiSha256"] = json!(self.client_spki_sha256);
            }
            body.insert("clientCertificates".into(), certs);
        }
        Ok(Value::Object(body))
    }
}

/// A TSP as a table: its connection, and its health where the hub reports one.
const FIELDS: &[Field] = &[
    ("tspId", "/tspId"),
    ("baseUrl", "/baseUrl"),
    ("rateLimitPerSecond", "/rateLimitPerSecond"),
    ("acceptsExtraParameters", "/acceptsExtraParameters"),
    ("clientCertificates.subject", "/clientCertificates/subject"),
    (
        "clientCertificates.spkiSha256",
        "/clientCertificates/spkiSha256",
    ),
    ("health.state", "/health/state"),
    ("health.consecutiveFailures", "/health/consecutiveFailures"),
    ("health.latencyMs", "/health/latencyMs"),
    ("health.lastCheckAt", "/health/lastCheckAt"),
    ("health.lastChangeAt", "/health/lastChangeAt"),
    ("health.lastHubCheckAt", "/health/lastHubCheckAt"),
];

const ROW: &[Field] = &[
    ("tspId", "/tspId"),
    ("baseUrl", "/baseUrl"),
    ("rateLimitPerSecond", "/rateLimitPerSecond"),
    ("health", "/health/state"),
    ("latencyMs", "/health/latencyMs"),
    ("lastCheckAt", "/health/lastCheckAt"),
    ("lastHubCheckAt", "/health/lastHubCheckAt"),
];

pub async fn run(cmd: TspsCommand, hub: &HubArgs, out: Output) -> anyhow::Result<()> {
    let admin = Admin::new(hub)?;
    match cmd {
        TspsCommand::Put { tsp_id, body } => {
            let body = body.body()?;
            let a = admin.put(admin.url(&["tsps", &tsp_id]), &body).await?;
            out.object(&a.text, FIELDS)
        }
        TspsCommand::Get { tsp_id } => {
            let a = admin.get(admin.url(&["tsps", &tsp_id])).await?;
            out.object(&a.text, FIELDS)
        }
        TspsCommand::List => {
            let a = admin.get(admin.url(&["tsps"])).await?;
            out.list(&a.text, "", ROW)
        }
        TspsCommand::CardKey { tsp_id, file } => {
            let jwk = read_json(&file)?;
            let url = admin.url(&["tsps", &tsp_id, "card-encryption-key"]);
            let a = admin.put(url, &jwk).await?;
            out.done(
                &a.text,
                &format!("TSP {tsp_id}: card encryption key published"),
            );
            Ok(())
        }
    }
}
