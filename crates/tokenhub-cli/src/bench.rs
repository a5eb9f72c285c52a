//! `tokenhub bench data`: the throughput and latency of `submitTokenData` (`PUT
//! /trapi/v2.0/tokens/{tokenId}/data`) with 40 elements (~9.5 KB), validated, sealed and committed
//! before the `204`, against a parse-only handler measured in the same run, in the same process,
//! over real loopback HTTP.
//!
//! Both servers run in this process beside the load generator (reqwest, keep-alive), so they are
//! measured under the same conditions. Two phases per server:
//! 1. **max throughput**: `--concurrency` workers send back to back (closed loop) for `--duration`;
//! 2. **fixed rate**: a request is scheduled every `1/--rate` s (open loop) and its latency is
//!    counted from its *scheduled* start, so a stalled server cannot hide its queue (no
//!    coordinated omission).
//!
//! Every hub token accepts its complete data once (the next `/data` answers 321), so the bench
//! pre-creates one `PENDING_DATA` token per request it will send, through the library.

use anyhow::{bail, ensure, Context};
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenhub::domain::perso::{self, Operation};
use tokenhub::domain::{CorrelationId, TokenId, TokenState};
use tokenhub::keys::TokenData;
use tokenhub::store::catalog;
use tokenhub::store::tokens::{self, TokenRow};
use tokenhub::Config;
use tokenhub_crypto::{encrypt_cbc_m2, KeySet};

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(clap::Subcommand)]
enum BenchCommand {
    /// submitTokenData (40 elements, ~9.5 KB, validated, sealed, committed before the 204) against
    /// a parse-only handler, at max throughput and at a fixed rate.
    Data(DataArgs),
    /// Token updates from the TSP to a token requestor (requestor-sim, loopback): latency from
    /// the update accepted (204 to the TSP) to the update received, at a fixed rate; and the
    /// highest sustained delivery rate.
    Notify(crate::bench_notify::NotifyArgs),
    /// A re-personalization campaign over N ACTIVE tokens (seeded straight into the database),
    /// the hub in its own process: tokens/s per tenth, the hub's RSS and CPU, the TSP's rate.
    Campaign(crate::bench_campaign::CampaignArgs),
}

/// Tokens a full run creates for its max phase on these machines (~50,000 parse-only req/s).
const FIXED_ONLY_TOKENS: usize = 600_000;

#[derive(clap::Args, Clone)]
pub struct DataArgs {
    /// The hub's database: by default a fresh SQLite file in a temporary folder; `postgres://...`
    /// to measure PostgreSQL (give an empty database made for the bench: it fills it).
    #[arg(long)]
    database_url: Option<String>,
    /// Seconds each measured phase lasts.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Requests per second of the fixed-rate phase.
    #[arg(long, default_value_t = 2000)]
    rate: u32,
    /// Workers sending back to back in the max-throughput phase.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Most requests of the fixed-rate phase on the wire at once (one connection each); a
    /// request scheduled while all are busy waits for one, and that wait counts in its latency.
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
    /// Seconds of unmeasured warm-up before each measured phase.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Also time the steps of one call in-process, one at a time (no HTTP), to see where the
    /// time goes; then their CPU many at a time, and the most a hub can answer on this machine
    /// (its cores over the CPU a call cannot avoid).
    #[arg(long)]
    breakdown: bool,
    /// Only the fixed-rate phases (parse-only, then the hub): a shorter run to compare latencies.
    #[arg(long, conflicts_with = "breakdown")]
    fixed_only: bool,
    /// Only the max-throughput phases (parse-only, then the hub): a shorter run to compare
    /// throughputs over several runs.
    #[arg(long, conflicts_with_all = ["breakdown", "fixed_only"])]
    max_only: bool,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Data(a) => data(a).await,
        BenchCommand::Notify(a) => crate::bench_notify::run(a).await,
        BenchCommand::Campaign(a) => crate::bench_campaign::run(a).await,
    }
}

pub(crate) const ISSUER_ID: &str = "BENCHBANK1";
const PRODUCT_ID: &str = "bench";
const VERSION: &str = "v1";
const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
/// Goals of the issue.
const GOAL_RATIO: f64 = 0.5;
const GOAL_P99_MS: f64 = 5.0;

async fn data(args: DataArgs) -> anyhow::Result<()> {
    ensure!(args.duration > 0, "--duration must be at least 1 second");
    ensure!(args.rate > 0, "--rate must be at least 1");
    ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    ensure!(args.max_in_flight > 0, "--max-in-flight must be at least 1");
    if let Some(limit) = open_files_limit() {
        // Each request in flight holds a socket on both sides, all in this process.
        ensure!(
            2 * args.max_in_flight.max(args.concurrency) + 256 <= limit,
            "the open-files limit ({limit}) is too low for --max-in-flight {} and --concurrency \
             {}: raise it (ulimit -n) or lower them",
            args.max_in_flight,
            args.concurrency
        );
    }

    // The hub, on its database, with a random master key and admin token.
    let dir = tempfile::Builder::new()
        .prefix("tokenhub-bench-")
        .tempdir()?;
    let url = match &args.database_url {
        Some(u) => u.clone(),
        None => format!("sqlite://{}", dir.path().join("tokenhub.db").display()),
    };
    let backend = if url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let mut config = Config::for_database(&url);
    config.listen = "127.0.0.1:0".parse()?;
    config.admin_token = Some(random_hex(16));
    config.master_key = Some(random_hex(32));
    let local = crate::local_hub::LocalHub::start(config).await?;
    let (hub_addr, hub) = (local.addr, local.hub.clone());

    // The parse-only server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let parse_addr = listener.local_addr()?;
    let (stop_parse, parse_stop) = tokio::sync::oneshot::channel::<()>();
    let parse_server = tokio::spawn(async move {
        axum::serve(listener, parse_only_router())
            .with_graceful_shutdown(async move {
                let _ = parse_stop.await;
            })
            .await
    });

    // Keys, TSP, issuer, device, a 40-element profile version, deployed.
    let key_set = KeySet::generate();
    import_key_set(&hub, &key_set).await?;
    let admin = Admin {
        http: reqwest::Client::new(),
        base: format!("http://{hub_addr}"),
        token: hub.admin_token().to_string(),
    };
    admin
        .send(
            reqwest::Method::PUT,
            "/admin/v1/tsps/bench-tsp",
            json!({"baseUrl": "http://127.0.0.1:9/tsp/trapi/v2.0"}),
        )
        .await?;
    admin
        .send(
            reqwest::Method::PUT,
            &format!("/admin/v1/issuers/{ISSUER_ID}"),
            json!({"name": "Bench Bank", "tspId": "bench-tsp"}),
        )
        .await?;
    let (profile, body) = profile_and_body(&key_set)?;
    admin
        .send(
            reqwest::Method::PUT,
            &format!("/admin/v1/issuers/{ISSUER_ID}/products/{PRODUCT_ID}/profiles/{VERSION}"),
            profile,
        )
        .await?;
    admin
        .send(
            reqwest::Method::POST,
            &format!(
                "/admin/v1/issuers/{ISSUER_ID}/products/{PRODUCT_ID}/profiles/{VERSION}/deploy"
            ),
            json!({}),
        )
        .await?;
    // The body is the same for every call (only the path names another token): built once, kept
    // for the whole run.
    let body: &'static [u8] = Vec::leak(body);
    // A body the hub accepts and the parse-only server parses the same way.
    perso::parse_submission(body, Operation::Data)
        .map_err(|r| anyhow::anyhow!("the bench body does not parse: {r}"))?;

    println!(
        "tokenhub bench data: submitTokenData, 40 elements, {} bytes per body",
        body.len()
    );
    println!(
        "database: {backend}{}; {} s per phase after {} s of warm-up; {} CPU(s)",
        if args.database_url.is_none() {
            format!(" (fresh file in {})", dir.path().display())
        } else {
            String::new()
        },
        args.duration,
        args.warmup,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();

    let parse_target = Target::new(
        "parse-only",
        format!("http://{parse_addr}/trapi/v2.0/tokens/"),
        None,
    );
    let hub_base = format!("http://{hub_addr}/trapi/v2.0/tokens/");

    // The load generator runs on threads of its own, as clients in other processes would: on the
    // servers' runtime its tasks would queue behind the hub's work and count that wait as the
    // hub's latency.
    let load = LoadRuntime::new()?;
    // Parse-only first: its throughput bounds the hub's, so it tells how many tokens to create.
    let parse_max = if args.fixed_only {
        Samples::default()
    } else {
        let s = load.run(Phase::Max, &parse_target, body, &args).await?;
        pause().await;
        s
    };
    let parse_fixed = if args.max_only {
        Samples::default()
    } else {
        let s = load.run(Phase::Fixed, &parse_target, body, &args).await?;
        pause().await;
        s
    };

    // Without the max phase, as many tokens as a full run creates here, unused: the database
    // (and its indexes) has the same size. (Without the fixed-rate phase, its tokens are made and
    // left unused likewise.)
    let max_tokens = if args.fixed_only {
        FIXED_ONLY_TOKENS
    } else {
        ((parse_max.completed_per_sec() * (args.duration + args.warmup) as f64) * 1.1) as usize
            + args.concurrency
    };
    let fixed_tokens = args.rate as usize * (args.duration + args.warmup) as usize + 1;
    let breakdown_tokens = if args.breakdown { BREAKDOWN_TOKENS } else { 0 };
    let total = max_tokens + fixed_tokens + breakdown_tokens;
    print!("creating {total} tokens in PENDING_DATA ... ");
    let created = Instant::now();
    let ids = create_tokens(&hub, total, TokenState::PendingData, None).await?;
    println!("{:.1} s", created.elapsed().as_secs_f64());
    let (fixed_ids, rest) = ids.split_at(fixed_tokens);
    let (max_ids, breakdown_ids) = rest.split_at(max_tokens);
    pause().await;

    let hub_fixed_target = Target::new("hub", hub_base.clone(), Some(fixed_ids.to_vec()));
    let hub_fixed = if args.max_only {
        Samples::default()
    } else {
        load.run(Phase::Fixed, &hub_fixed_target, body, &args)
            .await?
    };
    let hub_max_target = Target::new("hub", hub_base, Some(max_ids.to_vec()));
    let hub_max = if args.fixed_only {
        Samples::default()
    } else {
        pause().await;
        load.run(Phase::Max, &hub_max_target, body, &args).await?
    };
    load.stop();

    // What the hub holds for the first and last token it accepted.
    for id in [
        fixed_ids.first().filter(|_| !args.max_only),
        hub_max_target
            .used()
            .checked_sub(1)
            .and_then(|last| max_ids.get(last)),
    ]
    .into_iter()
    .flatten()
    {
        let token = hub
            .store
            .token(id)
            .await?
            .with_context(|| format!("token {id} is gone"))?;
        let parts = hub.store.data_part_count(id).await?;
        ensure!(
            token.state == TokenState::Personalizing && parts == 1,
            "token {id}: state {} with {parts} sealed part(s) after its data was accepted",
            token.state.as_str()
        );
    }

    let breakdown = if args.breakdown {
        let pending = hub_fixed_target.used() + hub_max_target.used();
        Some(breakdown(&hub, body, breakdown_ids, args.concurrency, pending).await?)
    } else {
        None
    };

    local.stop().await?;
    let _ = stop_parse.send(());
    parse_server.await??;

    report(
        &args,
        backend,
        [&parse_max, &hub_max],
        [&parse_fixed, &hub_fixed],
    );
    if let Some(b) = breakdown {
        b.print(&parse_max, backend == "SQLite");
    }
    let non_204 = parse_max.non_204 + hub_max.non_204 + parse_fixed.non_204 + hub_fixed.non_204;
    if non_204 > 0 {
        for s in [&parse_max, &hub_max, &parse_fixed, &hub_fixed] {
            if let Some(e) = &s.first_failure {
                eprintln!("{} {}: first failure: {e}", s.server, s.phase);
            }
        }
        bail!("{non_204} request(s) were not answered 204");
    }
    Ok(())
}

/// The hub's admin and wallet APIs, as an operator's script would call them.
pub(crate) struct Admin {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) token: String,
}

impl Admin {
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<()> {
        let resp = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        ensure!(
            status.is_success(),
            "{method} {path}: HTTP {status}: {text}"
        );
        Ok(())
    }
}

/// The soft limit on open files (Linux).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// 32 random bytes, base64url: a valid X25519 public key.
fn random_public_key() -> String {
    use base64::Engine;
    let mut k = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k)
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn pause() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// The profile version (40 elements) and a `/data` body that fills every one of them.
///
/// 8 sensitive hex elements arrive encrypted (CBC, ISO 9797-1 method 2) under the KEK or the DEK,
/// 16 to 64 clear bytes each; the other 32 are clear `hex`, `digits` and `text` values.
fn profile_and_body(keys: &KeySet) -> anyhow::Result<(Value, Vec<u8>)> {
    let kek = keys.by_purpose("kek").context("the key set has no KEK")?;
    let dek = keys.by_purpose("dek").context("the key set has no DEK")?;
    let (kek_bytes, dek_bytes) = (kek.key_bytes()?, dek.key_bytes()?);
    let mut defs = Vec::new();
    let mut elements = Vec::new();
    for i in 0..8usize {
        let clear_len = 16 + i * 48 / 7; // 16 ..= 64 bytes
        let clear: Vec<u8> = (0..clear_len).map(|b| (b * 7 + i) as u8).collect();
        let (key, bytes) = if i % 2 == 0 {
            (kek, &kek_bytes)
        } else {
            (dek, &dek_bytes)
        };
        let ct = encrypt_cbc_m2(key.algorithm, bytes, &clear)?;
        let name = format!("secret_{i:02}");
        defs.push(json!({"name": name, "required": true, "format": "hex",
                         "maxLength": 128, "sensitive": true}));
        elements.push(json!({"name": name, "value": hex_upper(&ct), "keyIndex": key.key_index}));
    }
    for i in 0..32usize {
        let name = format!("element_{i:02}");
        let (format, value) = match i % 3 {
            0 => ("hex", "0123456789ABCDEF".repeat(15)),
            1 => ("digits", "0123456789".repeat(24)),
            _ => (
                "text",
                "The quick brown fox jumps over the lazy dog; ".repeat(5),
            ),
        };
        defs.push(json!({"name": name, "required": true, "format": format, "maxLength": 256}));
        elements.push(json!({"name": name, "value": value}));
    }
    let profile = json!({
        "dataElements": defs,
        "template": [
            {"dgi": "9102", "data": "A5058801015F2D02656E"},
            {"dgi": "0101", "data": "700A9F0702FF008E080000000000000000"}
        ]
    });
    let body = serde_json::to_vec(&json!({"issuerId": ISSUER_ID, "tokenPersoInfo": elements}))?;
    Ok((profile, body))
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Inserts `n` tokens in `PENDING_DATA`, each on a device of its own (with a random X25519 public
/// key: the hub seals the profile to it once the token's data is complete), 1000 per transaction.
/// Creates `n` tokens of the bench issuer (and a device each) straight in the store.
/// Imports a key set into the hub's store and loads it (as `tokenhub keys import` would).
pub(crate) async fn import_key_set(hub: &tokenhub::Hub, key_set: &KeySet) -> anyhow::Result<()> {
    tokenhub::flows::keys::import(&hub.store, &hub.keys, &key_set.keys, hub.now_ms())
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?;
    hub.reload_keys()
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))
}

pub(crate) async fn create_tokens(
    hub: &tokenhub::Hub,
    n: usize,
    state: TokenState,
    token_requestor_id: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    const BATCH: usize = 1000;
    let now = hub.now_ms();
    let ids: Vec<String> = (0..n).map(|i| format!("bench-{i:09}")).collect();
    let batches: Vec<Vec<TokenRow>> = ids
        .chunks(BATCH)
        .map(|chunk| {
            chunk
                .iter()
                .map(|id| -> Result<TokenRow, tokenhub::keys::KeyError> {
                    Ok(TokenRow {
                        token_id: id.clone(),
                        issuer_id: ISSUER_ID.into(),
                        product_id: PRODUCT_ID.into(),
                        profile_version: VERSION.into(),
                        device_id: format!("device-{id}"),
                        wallet_card_ref_id: format!("card-{id}"),
                        token_requestor_id: token_requestor_id.map(str::to_string),
                        state,
                        token_exp: None,
                        token_last4: None,
                        data_key: hub.keys.new_data_key(id)?,
                        data_deadline_ms: now + 24 * 3600 * 1000,
                        received_elements: Vec::new(),
                        correlation_id: format!("create-{id}"),
                        created_ms: now,
                        updated_ms: now,
                        failure_reason: None,
                        recovery: None,
                        card: Default::default(),
                        last_update_ms: None,
                    })
                })
                .collect()
        })
        .collect::<Result<_, _>>()?;
    stream::iter(batches)
        .map(|rows| {
            hub.store.transact(move |c| {
                Box::pin(async move {
                    for row in &rows {
                        catalog::put_device(c, &row.device_id, &random_public_key(), now).await?;
                        c.insert_token(row).await?;
                    }
                    Ok::<_, tokenhub::store::StoreError>(())
                })
            })
        })
        .buffer_unordered(4)
        .try_collect::<()>()
        .await?;
    Ok(ids)
}

// ---------------------------------------------------------------------------------------------
// The parse-only server.

fn parse_only_router() -> axum::Router {
    axum::Router::new()
        .route(
            "/trapi/v2.0/tokens/{token_id}/data",
            axum::routing::put(parse_only),
        )
        .layer(axum::extract::DefaultBodyLimit::max(
            tokenhub::http::MAX_BODY_BYTES,
        ))
}

/// What the hub does before any lookup: the correlation id, the token id, the body; then `204`.
async fn parse_only(Path(raw): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let outcome = CorrelationId::parse(
        "x-correlation-id",
        headers.get(&X_CORRELATION_ID).map(|v| v.as_bytes()),
    )
    .and_then(|_| TokenId::parse(&raw))
    .and_then(|_| perso::parse_submission(&body, Operation::Data));
    let mut response = match outcome {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"responseCode": r.code.number(), "errorMessage": r.message})),
        )
            .into_response(),
    };
    if let Some(v) = headers.get(&X_CORRELATION_ID) {
        response.headers_mut().insert(X_CORRELATION_ID, v.clone());
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Load generation.

/// Where requests go: a parse-only server takes any token id; the hub takes each of its
/// pre-created tokens once.
struct Target {
    server: &'static str,
    base: String,
    tokens: Option<Vec<String>>,
    next: AtomicUsize,
    client: reqwest::Client,
}

impl Target {
    fn new(server: &'static str, base: String, tokens: Option<Vec<String>>) -> Arc<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .expect("a client without TLS settings builds");
        Arc::new(Self {
            server,
            base,
            tokens,
            next: AtomicUsize::new(0),
            client,
        })
    }

    /// The next request's URL and correlation id; `None` once the hub's tokens are used up.
    fn next_request(&self) -> Option<(String, String)> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let url = match &self.tokens {
            Some(ids) => format!("{}{}/data", self.base, ids.get(i)?),
            None => format!("{}parse-{i:09}/data", self.base),
        };
        Some((url, format!("bench-{i}")))
    }

    fn used(&self) -> usize {
        let n = self.next.load(Ordering::Relaxed);
        self.tokens.as_ref().map_or(n, |t| n.min(t.len()))
    }

    async fn send(&self, url: String, correlation: String, body: &'static [u8]) -> Answer {
        let sent = self
            .client
            .put(url)
            .header(X_CORRELATION_ID, correlation)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Ok(_) if status == StatusCode::NO_CONTENT => Answer::NoContent,
                    Ok(b) => Answer::Other(format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&b[..b.len().min(200)])
                    )),
                    Err(e) => Answer::Other(format!("HTTP {status}, body not read: {e}")),
                }
            }
            Err(e) => Answer::Other(format!("request failed: {e}")),
        }
    }
}

enum Answer {
    NoContent,
    Other(String),
}

/// What one phase measured. Latencies are in microseconds.
#[derive(Default)]
struct Samples {
    server: &'static str,
    phase: &'static str,
    /// Latency of every measured request (for the fixed rate: from its scheduled start).
    latency_us: Vec<u64>,
    /// For the fixed rate: from the moment the request was actually sent.
    service_us: Vec<u64>,
    non_204: u64,
    first_failure: Option<String>,
    /// Time over which the measured requests completed.
    window: Duration,
    /// The hub ran out of tokens before the phase's end.
    exhausted: bool,
    /// Requests the open loop scheduled (measured part).
    scheduled: u64,
    /// CPU used during the measured window (Linux only).
    cpu: Option<CpuUse>,
}

impl Samples {
    fn record(&mut self, latency: Duration, service: Option<Duration>, answer: Answer) {
        self.latency_us.push(latency.as_micros() as u64);
        if let Some(s) = service {
            self.service_us.push(s.as_micros() as u64);
        }
        if let Answer::Other(why) = answer {
            self.non_204 += 1;
            self.first_failure.get_or_insert(why);
        }
    }

    fn merge(&mut self, other: Samples) {
        self.latency_us.extend(other.latency_us);
        self.service_us.extend(other.service_us);
        self.non_204 += other.non_204;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        self.exhausted |= other.exhausted;
    }

    /// "own+others" cores busy during the window; "own+postgres+others" on PostgreSQL.
    fn cpu_cores(&self) -> String {
        self.cpu.map_or("-".into(), |c| {
            if c.postgres > 0.005 {
                format!("{:.2}+{:.2}+{:.2}", c.process, c.postgres, c.others)
            } else {
                format!("{:.2}+{:.2}", c.process, c.others)
            }
        })
    }

    fn cpu_ms_per_request(&self) -> String {
        self.cpu.map_or("-".into(), |c| {
            format!(
                "{:.3}",
                (c.process + c.postgres) * 1000.0 / self.completed_per_sec()
            )
        })
    }

    fn completed_per_sec(&self) -> f64 {
        self.latency_us.len() as f64 / self.window.as_secs_f64().max(1e-9)
    }
}

#[derive(Clone, Copy)]
enum Phase {
    /// Max throughput, closed loop.
    Max,
    /// Fixed rate, open loop.
    Fixed,
}

/// The load generator's own runtime (two worker threads, like the servers' runtime).
struct LoadRuntime(tokio::runtime::Runtime);

impl LoadRuntime {
    fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bench-load")
            .enable_all()
            .build()
            .context("starting the load generator's runtime")?;
        Ok(Self(runtime))
    }

    /// Runs one phase's load on the load generator's threads.
    async fn run(
        &self,
        phase: Phase,
        target: &Arc<Target>,
        body: &'static [u8],
        args: &DataArgs,
    ) -> anyhow::Result<Samples> {
        let (target, args) = (target.clone(), args.clone());
        self.0
            .spawn(async move {
                match phase {
                    Phase::Max => closed_loop(&target, body, &args).await,
                    Phase::Fixed => open_loop(&target, body, &args).await,
                }
            })
            .await
            .context("the load generator failed")?
    }

    /// Stops its threads without waiting (a runtime cannot be dropped inside another).
    fn stop(self) {
        self.0.shutdown_background();
    }
}

/// Max throughput: `concurrency` workers, back to back. A request counts if it completes inside
/// the measured window.
async fn closed_loop(
    target: &Target,
    body: &'static [u8],
    args: &DataArgs,
) -> anyhow::Result<Samples> {
    eprint!(
        "{}: max throughput, {} workers ... ",
        target.server, args.concurrency
    );
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let end = measure_from + Duration::from_secs(args.duration);
    let cpu = cpu_during(measure_from, end);
    let workers = (0..args.concurrency).map(|_| async move {
        let mut s = Samples::default();
        let mut last_done = measure_from;
        while Instant::now() < end {
            let Some((url, correlation)) = target.next_request() else {
                s.exhausted = true;
                break;
            };
            let t0 = Instant::now();
            let answer = target.send(url, correlation, body).await;
            let done = Instant::now();
            if done >= measure_from && done < end {
                s.record(done - t0, None, answer);
                last_done = last_done.max(done);
            } else if let Answer::Other(why) = answer {
                s.non_204 += 1;
                s.first_failure.get_or_insert(why);
            }
        }
        (s, last_done)
    });
    let results = futures::future::join_all(workers).await;
    let mut samples = Samples {
        server: target.server,
        phase: "max throughput",
        ..Samples::default()
    };
    let mut last = measure_from;
    for (s, l) in results {
        samples.merge(s);
        last = last.max(l);
    }
    samples.window = if samples.exhausted {
        last - measure_from
    } else {
        end - measure_from
    };
    samples.cpu = cpu.await.ok().flatten();
    eprintln!("{:.0} req/s", samples.completed_per_sec());
    Ok(samples)
}

/// Fixed rate, open loop: a request every `1/rate` s whatever the answers do; latency from the
/// scheduled start.
async fn open_loop(
    target: &Arc<Target>,
    body: &'static [u8],
    args: &DataArgs,
) -> anyhow::Result<Samples> {
    eprint!("{}: fixed rate {} req/s ... ", target.server, args.rate);
    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let warm = u64::from(args.rate) * args.warmup;
    let measured = u64::from(args.rate) * args.duration;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
    let server = target.server;
    // Answers are collected by their own task, so that the schedule never waits on them.
    let collector = tokio::spawn(async move {
        let mut samples = Samples {
            server,
            phase: "fixed rate",
            ..Samples::default()
        };
        let mut first_scheduled: Option<Instant> = None;
        let mut last_done: Option<Instant> = None;
        while let Some(d) = rx.recv().await {
            if d.measured {
                samples.record(d.done - d.scheduled, Some(d.done - d.sent), d.answer);
                first_scheduled = Some(first_scheduled.map_or(d.scheduled, |f| f.min(d.scheduled)));
                last_done = Some(last_done.map_or(d.done, |l| l.max(d.done)));
            } else if let Answer::Other(why) = d.answer {
                samples.non_204 += 1;
                samples.first_failure.get_or_insert(why);
            }
        }
        samples.window = match (first_scheduled, last_done) {
            (Some(f), Some(l)) => l - f,
            _ => Duration::ZERO,
        };
        samples
    });
    // The schedule is kept by a thread of its own that sleeps until each request's time (within
    // ~0.1 ms): tokio's timer has a 1 ms grain, which sent the requests in pairs, up to 1 ms late.
    let start = Instant::now();
    let cpu = cpu_during(
        start + Duration::from_secs(args.warmup),
        start + Duration::from_secs(args.warmup + args.duration),
    );
    let slots = Arc::new(tokio::sync::Semaphore::new(args.max_in_flight));
    let runtime = tokio::runtime::Handle::current();
    let pacer_target = target.clone();
    let pacer = move || {
        let target = pacer_target;
        let mut scheduled_count = 0;
        for n in 0..warm + measured {
            let scheduled = start + period.mul_f64(n as f64);
            if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let Some((url, correlation)) = target.next_request() else {
                return (scheduled_count, true);
            };
            let is_measured = n >= warm;
            scheduled_count += u64::from(is_measured);
            let (target, tx, slots) = (target.clone(), tx.clone(), slots.clone());
            // Each request is a task of its own, as separate clients would be.
            runtime.spawn(async move {
                let Ok(_slot) = slots.acquire().await else {
                    return;
                };
                let sent = Instant::now();
                let answer = target.send(url, correlation, body).await;
                let _ = tx.send(Done {
                    measured: is_measured,
                    scheduled,
                    sent,
                    done: Instant::now(),
                    answer,
                });
            });
        }
        (scheduled_count, false)
    };
    let (scheduled_count, exhausted) = tokio::task::spawn_blocking(pacer)
        .await
        .context("the request pacer failed")?;
    let mut samples = collector.await.context("the answer collector failed")?;
    samples.scheduled = scheduled_count;
    samples.exhausted = exhausted;
    samples.cpu = cpu.await.ok().flatten();
    eprintln!("p99 {:.2} ms", Histogram::new(&samples.latency_us).ms(99.0));
    Ok(samples)
}

/// CPU time over a window, in cores (1.0 = one core busy the whole time).
#[derive(Clone, Copy)]
struct CpuUse {
    /// This process: servers, load generator, SQLite threads.
    process: f64,
    /// The PostgreSQL server's processes (0 on SQLite).
    postgres: f64,
    /// Every other process of the machine (e.g. someone's compiler).
    others: f64,
}

/// Samples `/proc` at `from` and at `to`.
fn cpu_during(from: Instant, to: Instant) -> tokio::task::JoinHandle<Option<CpuUse>> {
    tokio::spawn(async move {
        tokio::time::sleep_until(from.into()).await;
        let (a, t0) = (cpu_ticks()?, Instant::now());
        tokio::time::sleep_until(to.into()).await;
        let (b, t1) = (cpu_ticks()?, Instant::now());
        // Linux counts in USER_HZ, 100 per second on every common platform.
        let ticks = 100.0 * (t1 - t0).as_secs_f64();
        let process = b.own.saturating_sub(a.own) as f64 / ticks;
        let postgres = b.postgres.saturating_sub(a.postgres) as f64 / ticks;
        let busy = b.busy.saturating_sub(a.busy) as f64 / ticks;
        Some(CpuUse {
            process,
            postgres,
            others: (busy - process - postgres).max(0.0),
        })
    })
}

struct Ticks {
    own: u64,
    postgres: u64,
    busy: u64,
}

/// User+system ticks of this process, of the `postgres` processes, and the machine's busy ticks.
fn cpu_ticks() -> Option<Ticks> {
    fn process_ticks(stat: &str) -> Option<(String, u64)> {
        let (head, after_name) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1.to_string();
        let f: Vec<&str> = after_name.split_whitespace().collect();
        Some((
            name,
            f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
        ))
    }
    let own = process_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?.1;
    let postgres = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|s| process_ticks(&s))
        .filter(|(name, _)| name == "postgres")
        .map(|(_, t)| t)
        .sum();
    let all = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = all
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let busy = cpu.iter().take(8).sum::<u64>() - cpu.get(3)? - cpu.get(4)?;
    Some(Ticks {
        own,
        postgres,
        busy,
    })
}

struct Done {
    measured: bool,
    scheduled: Instant,
    sent: Instant,
    done: Instant,
    answer: Answer,
}

/// Percentiles over every sample (sorted once): exact, as an HDR histogram with full precision.
struct Histogram {
    sorted: Vec<u64>,
}

impl Histogram {
    fn new(samples: &[u64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Self { sorted }
    }

    /// The value at percentile `p` (nearest rank), in milliseconds.
    fn ms(&self, p: f64) -> f64 {
        if self.sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.sorted.len()) - 1;
        self.sorted[i] as f64 / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.ms(100.0)
    }
}

// ---------------------------------------------------------------------------------------------
// The report.

fn report(args: &DataArgs, backend: &str, max: [&Samples; 2], fixed: [&Samples; 2]) {
    let ratio = max[1].completed_per_sec() / max[0].completed_per_sec();
    if !args.fixed_only {
        report_max(args, backend, max, ratio);
    }
    if !args.max_only {
        report_fixed(args, backend, fixed);
    }
    let hub = fixed[1];
    // One line to collect runs with grep.
    let pmax = Histogram::new(&max[0].latency_us);
    let hmax = Histogram::new(&max[1].latency_us);
    let pfix = Histogram::new(&fixed[0].latency_us);
    let hfix = Histogram::new(&hub.latency_us);
    println!();
    println!(
        "summary backend={} parse_rps={:.0} hub_rps={:.0} ratio={ratio:.3} parse_max_p50={:.2} parse_max_p99={:.2} \
         hub_max_p50={:.2} hub_max_p99={:.2} parse_fixed_p50={:.2} parse_fixed_p99={:.2} \
         hub_fixed_rate={:.0} hub_fixed_p50={:.2} hub_fixed_p90={:.2} hub_fixed_p99={:.2} hub_fixed_max={:.2} \
         hub_fixed_p99_send={:.2} non_204={} cpu_parse_max={} cpu_hub_max={} cpu_hub_fixed={}",
        backend,
        max[0].completed_per_sec(),
        max[1].completed_per_sec(),
        pmax.ms(50.0),
        pmax.ms(99.0),
        hmax.ms(50.0),
        hmax.ms(99.0),
        pfix.ms(50.0),
        pfix.ms(99.0),
        hub.completed_per_sec(),
        hfix.ms(50.0),
        hfix.ms(90.0),
        hfix.ms(99.0),
        hfix.max_ms(),
        Histogram::new(&hub.service_us).ms(99.0),
        max[0].non_204 + max[1].non_204 + fixed[0].non_204 + hub.non_204,
        max[0].cpu_cores(),
        max[1].cpu_cores(),
        hub.cpu_cores(),
    );
    println!(
        "(CPU cores: this process [+ the PostgreSQL server] + every other process of the machine, \
         during the measured window; others above ~0.1 mean the run was disturbed. CPU ms/req: \
         this process [+ the PostgreSQL server] per answered request)"
    );
}

fn report_max(args: &DataArgs, backend: &str, max: [&Samples; 2], ratio: f64) {
    println!();
    println!(
        "== max throughput: {} workers, closed loop, {} s ({backend}) ==",
        args.concurrency, args.duration
    );
    println!(
        "{:<12} {:>9} {:>9} {:>8} {:>8} {:>8} {:>16} {:>11}",
        "server", "requests", "req/s", "p50 ms", "p99 ms", "non-204", "CPU cores", "CPU ms/req"
    );
    for s in max {
        let h = Histogram::new(&s.latency_us);
        println!(
            "{:<12} {:>9} {:>9.0} {:>8.2} {:>8.2} {:>8} {:>16} {:>11}{}",
            s.server,
            s.latency_us.len(),
            s.completed_per_sec(),
            h.ms(50.0),
            h.ms(99.0),
            s.non_204,
            s.cpu_cores(),
            s.cpu_ms_per_request(),
            if s.exhausted {
                "  (ran out of tokens: rate over the shorter window)"
            } else {
                ""
            }
        );
    }
    println!(
        "hub / parse-only throughput: {ratio:.2} (goal >= {GOAL_RATIO:.2}): {}",
        verdict(ratio >= GOAL_RATIO)
    );
}

fn report_fixed(args: &DataArgs, backend: &str, fixed: [&Samples; 2]) {
    println!();
    println!(
        "== fixed rate: {} req/s, open loop (at most {} in flight), {} s, latency from the \
         scheduled start ({backend}) ==",
        args.rate, args.max_in_flight, args.duration
    );
    println!(
        "{:<12} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>13} {:>16}",
        "server",
        "sent",
        "achieved",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "non-204",
        "p99 from send",
        "CPU cores"
    );
    for s in fixed {
        let h = Histogram::new(&s.latency_us);
        let service = Histogram::new(&s.service_us);
        println!(
            "{:<12} {:>8} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8} {:>13.2} {:>16}{}",
            s.server,
            s.latency_us.len(),
            s.completed_per_sec(),
            h.ms(50.0),
            h.ms(90.0),
            h.ms(99.0),
            h.max_ms(),
            s.non_204,
            service.ms(99.0),
            s.cpu_cores(),
            if s.exhausted {
                "  (ran out of tokens)"
            } else {
                ""
            }
        );
    }
    let hub = fixed[1];
    let hub_p99 = Histogram::new(&hub.latency_us).ms(99.0);
    let kept_up = hub.completed_per_sec() >= 0.99 * f64::from(args.rate) && !hub.exhausted;
    println!(
        "hub p99 at {} req/s: {hub_p99:.2} ms (goal <= {GOAL_P99_MS:.1} ms), achieved {:.0} req/s, {} non-204: {}",
        args.rate,
        hub.completed_per_sec(),
        hub.non_204,
        verdict(hub_p99 <= GOAL_P99_MS && kept_up && hub.non_204 == 0)
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "NOT MET"
    }
}

// ---------------------------------------------------------------------------------------------
// The breakdown: the steps of one call, timed in-process one call at a time.

const BREAKDOWN_CALLS: usize = 2000;
const CONCURRENT_CALLS: usize = 20_000;
/// The steps of a call the bound adds to the parse-only server's work and the SQL.
const STEP_TOKEN_READ: &str = "read the token (store.token)";
const STEP_CHECKS: &str = "check 40 elements, decrypt 8 (check_elements)";
const STEP_SEAL: &str = "serialize and seal the part (seal_for_token)";
/// Tokens the breakdown uses.
const BREAKDOWN_TOKENS: usize = BREAKDOWN_CALLS + 3 * CONCURRENT_CALLS;

struct Breakdown {
    rows: Vec<(&'static str, Histogram)>,
    empty_commit_ms: f64,
    concurrency: usize,
    /// The flow alone, `concurrency` calls at a time: calls per second.
    flow_rate: f64,
    /// The flow's SQL alone (no crypto), `concurrency` at a time: transactions per second; only
    /// the statements that store the data part, then every statement.
    store_data_rate: f64,
    store_full_rate: f64,
    /// This process's CPU per call of the concurrent runs above, in µs (`None` without
    /// `/proc/self/task`): the flow, the part's statements, all statements.
    flow_cpu_us: Option<f64>,
    store_data_cpu_us: Option<f64>,
    store_full_cpu_us: Option<f64>,
    statements_data: usize,
    statements_full: usize,
    /// The delivery sweep (every 500 ms, a write transaction) with this many personalizations
    /// pending: its median time.
    sweep_ms: f64,
    pending: usize,
}

impl Breakdown {
    /// `parse_only`: the parse-only server's max phase, for the bound its CPU per request puts
    /// on the hub's throughput; `sql_in_process`: whether the SQL runs in this process (SQLite),
    /// so that this process's CPU is all of it.
    fn print(&self, parse_only: &Samples, sql_in_process: bool) {
        println!();
        println!(
            "== breakdown: the steps of one call, one call at a time, in-process, no HTTP \
             ({BREAKDOWN_CALLS} calls) =="
        );
        println!("{:<58} {:>8} {:>8}", "step", "p50 ms", "p99 ms");
        for (name, h) in &self.rows {
            println!("{name:<58} {:>8.3} {:>8.3}", h.ms(50.0), h.ms(99.0));
        }
        println!(
            "{:<58} {:>8.3} (mean)",
            "an empty store.transact (no write: no fsync)", self.empty_commit_ms
        );
        println!(
            "{:<58} {:>8.3} (median of 9)",
            format!("the delivery sweep, {} deliveries pending", self.pending),
            self.sweep_ms
        );
        println!();
        println!(
            "== the same, {} at a time, in-process, no HTTP ({CONCURRENT_CALLS} calls each) ==",
            self.concurrency
        );
        let cpu = |us: Option<f64>| us.map_or("-".into(), |us| format!("{:.1}", us));
        println!("{:<58} {:>8} {:>8}", "", "per s", "CPU µs");
        println!(
            "{:<58} {:>8.0} {:>8}",
            "the whole flow (flows::perso::submit), calls",
            self.flow_rate,
            cpu(self.flow_cpu_us)
        );
        println!(
            "{:<58} {:>8.0} {:>8}",
            format!(
                "its SQL alone, no crypto: the {} statements storing the part",
                self.statements_data
            ),
            self.store_data_rate,
            cpu(self.store_data_cpu_us)
        );
        println!(
            "{:<58} {:>8.0} {:>8}",
            format!(
                "its SQL alone, no crypto: all {} statements of the call",
                self.statements_full
            ),
            self.store_full_rate,
            cpu(self.store_full_cpu_us)
        );
        if sql_in_process {
            self.print_bound(parse_only);
        } else {
            println!(
                "(CPU µs: this process only; the database server's share is not counted, so no \
                 bound is drawn from them)"
            );
        }
    }

    /// What the CPU measured puts within reach: a hub call does all the parse-only server does
    /// (HTTP, parsing, and its share of the load generator, all on the same cores) and, at
    /// least, its SQL; with the contract's checks, also the token read, the element checks and
    /// the seal (their one-at-a-time p50s). Throughput is at most the machine's cores over the
    /// CPU per call, whatever the code around them.
    fn print_bound(&self, parse_only: &Samples) {
        let (Some(cpu), Some(sql_us)) = (parse_only.cpu, self.store_full_cpu_us) else {
            return;
        };
        let rps = parse_only.completed_per_sec();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        if rps <= 0.0 {
            return;
        }
        let parse_us = cpu.process * 1e6 / rps;
        let p50_us = |step: &str| {
            self.rows
                .iter()
                .find(|(name, _)| *name == step)
                .map_or(0.0, |(_, h)| h.ms(50.0) * 1000.0)
        };
        let checks_us = p50_us(STEP_TOKEN_READ) + p50_us(STEP_CHECKS) + p50_us(STEP_SEAL);
        println!();
        println!("== the most a hub can answer here: {cores} cores over its CPU per call ==");
        println!(
            "{:<58} {:>8.1}",
            "the parse-only server, CPU µs per request (max phase)", parse_us
        );
        for (what, us) in [
            (
                "+ the call's SQL alone (all statements, group commit)",
                parse_us + sql_us,
            ),
            (
                "+ token read, element checks, seal (one-at-a-time p50s)",
                parse_us + sql_us + checks_us,
            ),
        ] {
            let most = cores * 1e6 / us;
            println!(
                "{what:<58} {us:>8.1} µs: at most {most:>6.0} calls/s, {:.2} of the parse-only server",
                most / rps
            );
        }
    }
}

async fn breakdown(
    hub: &Arc<tokenhub::Hub>,
    body: &'static [u8],
    ids: &[String],
    concurrency: usize,
    pending: usize,
) -> anyhow::Result<Breakdown> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    use tokenhub::flows::perso::{submit, Applied};
    let (ids, rest) = ids.split_at(BREAKDOWN_CALLS);
    let (flow_ids, rest) = rest.split_at(CONCURRENT_CALLS);
    let (data_ids, full_ids) = rest.split_at(CONCURRENT_CALLS);
    let mut steps: BTreeMap<usize, (&'static str, Vec<u64>)> = BTreeMap::new();
    let mut time = |i: usize, name: &'static str, t: Instant| {
        steps
            .entry(i)
            .or_insert_with(|| (name, Vec::new()))
            .1
            .push(t.elapsed().as_micros() as u64);
    };
    let profile = hub
        .profile(ISSUER_ID, PRODUCT_ID, VERSION)
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?
        .context("the bench profile is not defined")?;
    // Every accepted call left a personalization pending (no device fetches them here).
    let mut sweeps = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        tokenhub::flows::deliver::sweep(hub)
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
        sweeps.push(t.elapsed().as_micros() as u64);
    }
    let sweep_ms = Histogram::new(&sweeps).ms(50.0);
    let device_key = [9u8; 32];
    let mut part_size = 0;
    for (n, id) in ids.iter().enumerate() {
        let t = Instant::now();
        let submission =
            perso::parse_submission(body, Operation::Data).map_err(|r| anyhow::anyhow!("{r}"))?;
        time(0, "parse the body (parse_submission)", t);
        let t = Instant::now();
        hub.store.issuer(ISSUER_ID).await?;
        time(1, "read the issuer (store.issuer)", t);
        let t = Instant::now();
        let token = hub.store.token(id).await?.context("no such token")?;
        time(2, STEP_TOKEN_READ, t);
        let t = Instant::now();
        hub.keys
            .check_elements(&profile, &submission.elements)
            .map_err(|r| anyhow::anyhow!("{r}"))?;
        time(3, STEP_CHECKS, t);
        let t = Instant::now();
        let clear = perso::encode_part(&submission.elements);
        let sealed = hub.keys.seal_for_token(id, &token.data_key, &clear)?;
        time(4, STEP_SEAL, t);
        let t = Instant::now();
        hub.keys
            .personalize(
                TokenData {
                    token_id: id,
                    wrapped_data_key: &token.data_key,
                    sealed: std::slice::from_ref(&sealed),
                    incoming: &[],
                },
                &profile,
                &device_key,
                "prs_bench",
            )
            .map_err(|e| anyhow::anyhow!("the profile could not be built: {e}"))?;
        time(
            5,
            "(at the device's poll) build the profile, seal it to the device",
            t,
        );
        part_size = sealed.len();
        let t = Instant::now();
        let token_id = TokenId::parse(id).map_err(|r| anyhow::anyhow!("{r}"))?;
        let correlation =
            CorrelationId::parse("x-correlation-id", Some(format!("bd-{n}").as_bytes()))
                .map_err(|r| anyhow::anyhow!("{r}"))?;
        let applied = submit(hub, &token_id, &correlation, body, Operation::Data)
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
        time(6, "the whole flow, alone (flows::perso::submit)", t);
        ensure!(
            matches!(applied, Applied::Stored { .. }),
            "the breakdown's call was not stored"
        );
    }
    let t = Instant::now();
    for _ in 0..BREAKDOWN_CALLS {
        hub.store
            .transact(|_| Box::pin(async { Ok::<_, tokenhub::store::StoreError>(()) }))
            .await?;
    }
    let per = t.elapsed() / BREAKDOWN_CALLS as u32;

    // The flow alone, many calls at a time.
    let cpu = own_cpu_ns();
    let t = Instant::now();
    stream::iter(flow_ids.iter().enumerate())
        .map(|(n, id)| async move {
            let token_id = TokenId::parse(id).map_err(|r| anyhow::anyhow!("{r}"))?;
            let correlation =
                CorrelationId::parse("x-correlation-id", Some(format!("cf-{n}").as_bytes()))
                    .map_err(|r| anyhow::anyhow!("{r}"))?;
            submit(hub, &token_id, &correlation, body, Operation::Data)
                .await
                .map_err(|e| anyhow::anyhow!(e.chain()))
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let flow_rate = CONCURRENT_CALLS as f64 / t.elapsed().as_secs_f64();
    let flow_cpu_us = cpu_us_per_call(cpu, CONCURRENT_CALLS);

    // Its SQL alone: the statements the call runs, with values of the same sizes, no crypto.
    let submission =
        perso::parse_submission(body, Operation::Data).map_err(|r| anyhow::anyhow!("{r}"))?;
    // Joined once, outside the transactions, as the flow's HTTP worker joins them.
    let names = Arc::new(tokens::ElementNames::of(
        submission.elements.iter().map(|e| e.name.as_str()),
    ));
    let part = Arc::new(vec![0x5A; part_size]);
    let cpu = own_cpu_ns();
    let (store_data_rate, statements_data) =
        sql_alone(hub, data_ids, concurrency, false, &names, &part).await?;
    let store_data_cpu_us = cpu_us_per_call(cpu, data_ids.len());
    let cpu = own_cpu_ns();
    let (store_full_rate, statements_full) =
        sql_alone(hub, full_ids, concurrency, true, &names, &part).await?;
    let store_full_cpu_us = cpu_us_per_call(cpu, full_ids.len());

    let rows = steps
        .into_values()
        .map(|(name, v)| (name, Histogram::new(&v)))
        .collect::<Vec<_>>();
    Ok(Breakdown {
        rows,
        empty_commit_ms: per.as_secs_f64() * 1000.0,
        concurrency,
        flow_rate,
        store_data_rate,
        store_full_rate,
        flow_cpu_us,
        store_data_cpu_us,
        store_full_cpu_us,
        statements_data,
        statements_full,
        sweep_ms,
        pending,
    })
}

/// Runs, for each token, the statements `flows::perso::apply` runs for a call that completes the
/// token's data (`full`), or only those that store the data part; returns transactions per
/// second and the number of statements in each.
async fn sql_alone(
    hub: &Arc<tokenhub::Hub>,
    ids: &[String],
    concurrency: usize,
    full: bool,
    names: &Arc<tokens::ElementNames>,
    part: &Arc<Vec<u8>>,
) -> anyhow::Result<(f64, usize)> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    use tokenhub::store::personalizations::{Kind, Personalization, PersonalizationState};
    let now = hub.now_ms();
    let t = Instant::now();
    let counts = stream::iter(ids.iter().enumerate())
        .map(|(n, id)| {
            let (id, names, part) = (id.clone(), names.clone(), part.clone());
            hub.store.transact(move |c| {
                Box::pin(async move {
                    let correlation = format!("sql-{n}");
                    let token = c
                        .lock_token(&id)
                        .await?
                        .ok_or_else(|| tokenhub::store::StoreError::Corrupt("no token".into()))?;
                    // The token holds no element yet: the flow skips the repeat check and the
                    // read of its parts.
                    let part = tokens::DataPart {
                        operation: "data",
                        correlation_id: &correlation,
                        element_names: &names,
                        sealed: &part,
                    };
                    tokens::append_data(c, &id, &part, now).await?;
                    tokens::set_state_and_elements(
                        c,
                        &id,
                        TokenState::Personalizing,
                        part.element_names,
                        now,
                    )
                    .await?;
                    let mut statements = 3;
                    if full {
                        c.insert_personalization(
                            &Personalization {
                                personalization_id: format!("prs_sql_{n}_{id}"),
                                token_id: id.clone(),
                                device_id: token.device_id.clone(),
                                profile_version: token.profile_version.clone(),
                                kind: Kind::Perso,
                                state: PersonalizationState::Pending,
                                enc: None,
                                ciphertext: None,
                                tries: 0,
                                next_offer_ms: now,
                                expires_ms: now + 3_600_000,
                                result_reason: None,
                                correlation_id: correlation.clone(),
                                created_ms: now,
                            },
                            now,
                        )
                        .await?;
                        statements += 1;
                    }
                    c.add_token_event(
                        &id,
                        "data received: 40 element(s); state PERSONALIZING",
                        &correlation,
                        now,
                    )
                    .await?;
                    Ok::<_, tokenhub::store::StoreError>(statements + 1)
                })
            })
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<usize>>()
        .await?;
    let rate = ids.len() as f64 / t.elapsed().as_secs_f64();
    Ok((rate, counts.first().copied().unwrap_or(0)))
}

/// CPU time of this process's threads so far, in ns (`/proc/self/task/*/schedstat`, whose first
/// field is the thread's time on a CPU): nanosecond grain where `/proc/self/stat` counts ticks of
/// 10 ms. A thread that ended in between is not counted (the hub's threads live as long as it).
fn own_cpu_ns() -> Option<u64> {
    let mut sum = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        let Ok(stat) = std::fs::read_to_string(path) else {
            continue; // the thread ended since the listing
        };
        sum += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(sum)
}

/// µs of this process's CPU per call since `before` (from [`own_cpu_ns`]).
fn cpu_us_per_call(before: Option<u64>, calls: usize) -> Option<f64> {
    let spent = own_cpu_ns()?.checked_sub(before?)?;
    (calls > 0).then(|| spent as f64 / 1000.0 / calls as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The breakdown's CPU per call counts this process's threads, at a grain fine enough to see
    /// a few milliseconds of work.
    #[test]
    fn own_cpu_counts_the_work_done_since() {
        let before = own_cpu_ns();
        assert!(before.is_some(), "/proc/self/task is readable on Linux");
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let us = cpu_us_per_call(before, 10).expect("a later reading");
        // 20 ms of spinning over 10 calls is ~2,000 µs each (less if the thread was preempted).
        assert!(us > 500.0, "{us} µs per call");
        assert_eq!(cpu_us_per_call(before, 0), None);
    }
}
