//! `tokenhub tsp-sim`: the TSP simulator as its own process, against a running hub.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct TspSimArgs {
    /// Address the simulator listens on.
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// The hub's base URL (the simulator calls `{hub-url}/trapi/v2.0/...`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    hub_url: String,
    /// The key-set file written by `tokenhub keys dev-generate` (development keys).
    #[arg(long)]
    keys: PathBuf,
    /// Over how many /data calls each token's elements are spread.
    #[arg(long, default_value_t = 1)]
    partial_calls: usize,
    /// Mutual TLS with the certificates of `tokenhub certs dev` in this folder: `tsp.crt` presented
    /// to the hub and served, `ca.crt` trusted.
    #[arg(long)]
    certs: Option<PathBuf>,
    /// How often the simulator checks the hub's health (`GET /trapi/v2.0/healthCheck`, shown in
    /// `GET /sim/status` as `hubHealth`), e.g. `30s` as the contract asks; `0s`: never.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    hub_check_every: Duration,
    /// Misbehave from the start, one switch per flag: `down-for=DURATION` (every call, healthCheck
    /// included, answered 503 for that long, then back on the same port), `slow=DURATION`,
    /// `rate-limit=N`, `drop-reperso`, `new-data-on-recovery`. At run time: PUT /sim/misbehaviour.
    #[arg(long)]
    misbehave: Vec<String>,
}

pub async fn run(args: TspSimArgs) -> anyhow::Result<()> {
    let keys = tokenhub_sim::load_key_set(&args.keys)?;
    let mut config = tokenhub_sim::TspSimConfig::new(args.hub_url, keys);
    config.partial_calls = args.partial_calls;
    config.tls = args
        .certs
        .as_deref()
        .map(tokenhub_sim::SimTls::from_dir)
        .transpose()?;
    config.hub_check_every = Some(args.hub_check_every).filter(|d| !d.is_zero());
    for switch in &args.misbehave {
        config
            .misbehaviour
            .switch_on(switch)
            .map_err(|e| anyhow::anyhow!("--misbehave {e}"))?;
    }
    tokenhub_sim::run(args.listen, config).await
}
