//! `tokenhub demo` and `tokenhub tsp-sim`: the whole story on one machine, over real HTTP on
//! loopback. The demo starts the hub on a fresh embedded SQLite database, a TSP simulator and the
//! wallets' side, provisions tokens the way the parties would, and checks the outcome; it exits
//! non-zero unless every check holds.

use anyhow::{ensure, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenhub::clock::SystemClock;
use tokenhub::Config;

#[derive(clap::Args)]
pub struct TspSimArgs {
    /// Address the simulator listens on.
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// The hub's base URL (the simulator calls `{hub-url}/trapi/v2.0/...`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    hub_url: String,
    /// The key-set file written by `tokenhub keys generate`.
    #[arg(long)]
    keys: PathBuf,
    /// Over how many /data calls each token's elements are spread.
    #[arg(long, default_value_t = 1)]
    partial_calls: usize,
}

pub async fn tsp_sim(args: TspSimArgs) -> anyhow::Result<()> {
    let keys = tokenhub_sim::load_key_set(&args.keys)?;
    let mut config = tokenhub_sim::TspSimConfig::new(args.hub_url, keys);
    config.partial_calls = args.partial_calls;
    tokenhub_sim::run(args.listen, config).await
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// How many cards to digitize.
    #[arg(long, default_value_t = 1000)]
    tokens: usize,
    /// Over how many /data calls the TSP spreads each token's elements.
    #[arg(long, default_value_t = 2)]
    partial_calls: usize,
    /// Digitizations under way at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Keep the demo's folder (database, keys) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

/// The product profile the demo defines (the README's example): the simulator's five elements,
/// placed in the DGIs the device simulator reads, and a small template.
pub fn demo_profile() -> Value {
    json!({
        "dataElements": [
            {"name": "cmk_ac", "required": true, "format": "hex", "maxLength": 32, "sensitive": true, "dgi": "8001"},
            {"name": "cmk_rp", "required": true, "format": "hex", "maxLength": 32, "sensitive": true, "dgi": "8002"},
            {"name": "track2_data", "required": true, "format": "hex", "maxLength": 38, "sensitive": true, "dgi": "0101", "tag": "57"},
            {"name": "psn", "required": true, "format": "digits", "maxLength": 2, "dgi": "0101", "tag": "5F34"},
            {"name": "par", "required": true, "format": "text", "maxLength": 29, "dgi": "0101", "tag": "9F24"}
        ],
        "template": [
            {"dgi": "9102", "data": "A5058801015F2D02656E"},
            {"dgi": "0101", "data": "70049F0701FF"}
        ]
    })
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    ensure!(args.tokens > 0, "--tokens must be at least 1");
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("tokenhub-demo-")
        .tempdir()?;
    let db_path = dir.path().join("tokenhub.db");
    println!(
        "tokenhub demo: {} token(s), database {}",
        args.tokens,
        db_path.display()
    );

    // The hub, on a fresh embedded database.
    let mut config = Config::for_database(&format!("sqlite://{}", db_path.display()));
    config.listen = "127.0.0.1:0".parse()?;
    config.admin_token = Some(format!("demo-{}", uuid::Uuid::new_v4().simple()));
    let app = tokenhub::Application::build_with_clock(config, Arc::new(SystemClock)).await?;
    let hub_addr = app.local_addr();
    let hub = app.hub().clone();
    let admin_token = hub.admin_token().to_string();
    let (stop_hub, hub_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = hub_stopped.await;
    }));

    // The key ceremony: one key set, imported by the hub, handed to the TSP.
    let key_set = tokenhub_crypto::KeySet::generate();
    tokenhub::flows::keys::import(&hub.store, &hub.keys, &key_set.keys, hub.now_ms())
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?;

    // The TSP simulator, a real HTTP server on loopback.
    let mut sim_config = tokenhub_sim::TspSimConfig::new(format!("http://{hub_addr}"), key_set);
    sim_config.partial_calls = args.partial_calls;
    let sim = tokenhub_sim::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        sim_config,
    )
    .await?;

    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        base: format!("http://{hub_addr}"),
        admin_token,
    };
    let issuer_id = "DEMOISSUER";
    client
        .admin_put(
            "/admin/v1/tsps/demo-tsp",
            json!({"baseUrl": sim.base_url()}),
        )
        .await?;
    client
        .admin_put(
            &format!("/admin/v1/issuers/{issuer_id}"),
            json!({"name": "Demo Bank", "tspId": "demo-tsp"}),
        )
        .await?;
    client
        .admin_put(
            &format!("/admin/v1/issuers/{issuer_id}/products/classic/profiles/v1"),
            demo_profile(),
        )
        .await?;
    client
        .admin_post(
            &format!("/admin/v1/issuers/{issuer_id}/products/classic/profiles/v1/deploy"),
            json!({}),
        )
        .await?;

    // Wallets digitize their cards.
    let bar = progress(args.tokens as u64, "digitizing");
    let provision_started = Instant::now();
    let token_ids = digitize_all(&client, issuer_id, args.tokens, args.concurrency, &bar).await?;
    bar.finish();
    sim.deliveries_idle().await;
    let provision_time = provision_started.elapsed();

    // Check what the hub says about every token.
    let mut personalizing = 0;
    for id in &token_ids {
        let t = client.admin_get(&format!("/admin/v1/tokens/{id}")).await?;
        if t["state"] == "PERSONALIZING" {
            personalizing += 1;
        }
    }
    let status = sim.status();
    sim.shutdown().await?;
    let _ = stop_hub.send(());
    server.await??;

    println!();
    println!("tokens digitized (createToken)    {}", token_ids.len());
    println!(
        "data calls sent / accepted        {} / {}",
        status.data_calls_sent, status.data_calls_accepted
    );
    println!(
        "data calls refused                {}",
        status.data_calls_rejected_total()
    );
    println!("tokens with complete data          {personalizing} (PERSONALIZING)");
    println!(
        "provisioning                       {:.1} s, {:.0} tokens/s",
        provision_time.as_secs_f64(),
        token_ids.len() as f64 / provision_time.as_secs_f64()
    );
    println!(
        "demo wall time                     {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if args.keep {
        let kept = dir.keep();
        println!("kept the demo folder: {}", kept.display());
    }
    ensure!(
        status.data_calls_rejected_total() == 0,
        "the hub refused data calls: {:?}",
        status.data_calls_rejected
    );
    ensure!(
        personalizing == args.tokens,
        "{} token(s) did not get their data",
        args.tokens - personalizing
    );
    println!("all checks passed");
    Ok(())
}

async fn digitize_all(
    client: &Client,
    issuer_id: &str,
    n: usize,
    concurrency: usize,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<String>> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    stream::iter(0..n)
        .map(|i| async move {
            let device_id = format!("device-{i:06}");
            let public_key = {
                use base64::Engine;
                let mut k = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k);
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k)
            };
            client
                .post(
                    "/wallet/v1/devices",
                    json!({"deviceId": device_id, "publicKey": public_key}),
                )
                .await?;
            let answer = client
                .post(
                    "/wallet/v1/digitizations",
                    json!({"issuerId": issuer_id, "productId": "classic", "deviceId": device_id,
                           "walletCardRefId": format!("card-{i:06}")}),
                )
                .await?;
            bar.inc(1);
            answer["tokenId"]
                .as_str()
                .map(str::to_string)
                .context("the digitization answer has no tokenId")
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// A small client of the hub's own APIs, as an operator's script would use them.
struct Client {
    http: reqwest::Client,
    base: String,
    admin_token: String,
}

impl Client {
    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        ensure!(status.is_success(), "HTTP {status}: {text}");
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }
    async fn admin_put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(
            self.http
                .put(format!("{}{path}", self.base))
                .bearer_auth(&self.admin_token)
                .json(&body),
        )
        .await
        .with_context(|| format!("PUT {path}"))
    }
    async fn admin_post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(&self.admin_token)
                .json(&body),
        )
        .await
        .with_context(|| format!("POST {path}"))
    }
    async fn admin_get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.admin_token),
        )
        .await
        .with_context(|| format!("GET {path}"))
    }
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
            .with_context(|| format!("POST {path}"))
    }
}
