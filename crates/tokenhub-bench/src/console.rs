//! `tokenhub-bench console`: the admin API reads behind each page of the operator console, timed
//! on a store of a million tokens and ten thousand notifications, against the goal that every page
//! answers in 200 ms. The hub runs in this process as `tokenhub serve` runs it; the store is seeded
//! straight through its methods (not measured); each request is then sent `--requests` times in a
//! row over loopback HTTP with an admin key, as the console sends it.

use crate::bootstrap::{
    admin_key, create_tokens, database, hub_config, import_key_set, in_process, Admin, ISSUER_ID,
    PRODUCT_ID,
};
use anyhow::{ensure, Context};
use futures::stream::{self, StreamExt, TryStreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokenhub::domain::notification::{
    Filter, NewNotification, NotificationState, RequestorState, Settle, Settlement,
};
use tokenhub::domain::TokenState;

const TSP_ID: &str = "bench-tsp";
const REQUESTOR: &str = "bench-psp";
/// Rows per seeding transaction.
const BATCH: usize = 1000;

#[derive(clap::Args)]
pub(crate) struct ConsoleArgs {
    /// ACTIVE tokens in the store, every one the requestor's.
    #[arg(long, default_value_t = 1_000_000)]
    tokens: usize,
    /// Notifications in the store (one per token, from the first): 5 % left pending, 5 % dead,
    /// the rest delivered.
    #[arg(long, default_value_t = 10_000)]
    notifications: usize,
    /// Times each request is sent (one after the other).
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// The goal: every request answered within this many milliseconds.
    #[arg(long, default_value_t = 200)]
    goal_ms: u64,
    /// A PostgreSQL server's database URL (a fresh database is expected); default: a fresh SQLite
    /// file.
    #[arg(long)]
    database_url: Option<String>,
}

pub(crate) async fn run(args: ConsoleArgs) -> anyhow::Result<()> {
    ensure!(
        args.notifications <= args.tokens,
        "one notification per token: --notifications must not exceed --tokens"
    );
    let dir = tempfile::tempdir()?;
    let (url, backend) = database(args.database_url.as_deref(), dir.path());
    let mut config = hub_config(&url)?;
    config.notify.outbound_allow =
        tokenhub::config::parse_cidrs("127.0.0.0/8").map_err(anyhow::Error::msg)?;
    let local = in_process(config).await?;
    let admin = Admin {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
        base: local.url(),
        token: admin_key(&local.hub.store).await?,
    };
    let measured = async {
        let seeding = Instant::now();
        let campaign = seed(&args, &local.hub, &admin).await?;
        println!(
            "seeded {} token(s) and {} notification(s) on {backend} in {:.1} s",
            args.tokens,
            args.notifications,
            seeding.elapsed().as_secs_f64()
        );
        let rows = measure(&args, &admin, &campaign).await?;
        report(&args, backend, &rows);
        anyhow::Ok(rows)
    }
    .await;
    local.stop().await?;
    let rows = measured?;
    let over: Vec<&Row> = rows
        .iter()
        .filter(|r| r.max > Duration::from_millis(args.goal_ms))
        .collect();
    if !over.is_empty() {
        println!(
            "over the goal: {}",
            over.iter()
                .map(|r| r.request.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// The catalogue and a requestor through the admin API, the tokens and notifications through the
/// store, and a paused campaign over every token; the campaign's id.
async fn seed(args: &ConsoleArgs, hub: &tokenhub::Hub, admin: &Admin) -> anyhow::Result<String> {
    import_key_set(hub, TSP_ID, &tokenhub_crypto::KeySet::generate()).await?;
    admin
        .send(
            Method::PUT,
            &format!("/admin/v1/tsps/{TSP_ID}"),
            // Nothing listens there: a call the paused campaign may have started fails, unseen.
            json!({"baseUrl": "http://127.0.0.1:9/tsp/trapi/v2.0"}),
        )
        .await?;
    admin
        .send(
            Method::PUT,
            &format!("/admin/v1/issuers/{ISSUER_ID}"),
            json!({"name": "Console Bench Bank", "tspId": TSP_ID}),
        )
        .await?;
    let product = format!("/admin/v1/issuers/{ISSUER_ID}/products/{PRODUCT_ID}/profiles");
    let v1 = tokenhub_sim::profiles::profile_v1();
    admin
        .send(Method::PUT, &format!("{product}/v1"), v1)
        .await?;
    admin
        .send(Method::POST, &format!("{product}/v1/deploy"), json!({}))
        .await?;
    let v2 = tokenhub_sim::profiles::profile_v2();
    admin
        .send(Method::PUT, &format!("{product}/v2"), v2)
        .await?;
    admin
        .send(
            Method::PUT,
            &format!("/admin/v1/token-requestors/{REQUESTOR}"),
            json!({"merchantId": "BENCH-MERCHANT", "baseUrl": "http://127.0.0.1:9",
                   "apiKey": "bench-api-key",
                   "signingSecrets": ["whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="]}),
        )
        .await?;
    let t = Instant::now();
    let ids = create_tokens(hub, args.tokens, TokenState::Active, Some(REQUESTOR)).await?;
    println!(
        "  {} token(s) in {:.1} s",
        ids.len(),
        t.elapsed().as_secs_f64()
    );
    seed_notifications(hub, &ids[..args.notifications]).await?;
    let t = Instant::now();
    let deployed = admin
        .send_json(
            Method::POST,
            &format!("{product}/v2/deploy"),
            json!({"campaign": {"ratePerSecond": 1, "maxInFlight": 1}}),
        )
        .await?;
    let campaign = deployed["campaignId"]
        .as_str()
        .context("the deploy started no campaign")?
        .to_string();
    admin
        .send(
            Method::POST,
            &format!("/admin/v1/campaigns/{campaign}/pause"),
            json!({}),
        )
        .await?;
    println!(
        "  a campaign over {} token(s), created in {:.1} s and paused",
        deployed["total"],
        t.elapsed().as_secs_f64()
    );
    Ok(campaign)
}

/// One update per token, queued as a change queues it, then settled: 5 % left pending, 5 % dead,
/// the rest delivered. The requestor's endpoint is disabled first, so the hub's notifier leaves
/// them as they are while they are measured.
async fn seed_notifications(hub: &tokenhub::Hub, tokens: &[String]) -> anyhow::Result<()> {
    let now = hub.now_ms();
    hub.store
        .transact(move |tx| {
            Box::pin(async move {
                tx.set_requestor_state(REQUESTOR, RequestorState::Disabled, Some("bench"), now)
                    .await
            })
        })
        .await?;
    let t = Instant::now();
    stream::iter(tokens.chunks(BATCH).map(<[String]>::to_vec))
        .map(|chunk| {
            hub.store.transact(move |tx| {
                Box::pin(async move {
                    for token in &chunk {
                        let payload = json!({"tokenId": token, "tokenState": "ACTIVE"}).to_string();
                        let webhook_id = format!("msg_{token}");
                        let n = NewNotification {
                            webhook_id: &webhook_id,
                            requestor_id: REQUESTOR,
                            token_id: token,
                            correlation_id: &webhook_id,
                            payload: &payload,
                            last_update_ms: now,
                        };
                        tx.enqueue_notification(&n, now).await?;
                    }
                    Ok::<_, tokenhub::store::StoreError>(())
                })
            })
        })
        .buffer_unordered(2)
        .try_collect::<()>()
        .await?;
    let queued = hub
        .store
        .notifications(&Filter {
            requestor_id: Some(REQUESTOR.into()),
            state: Some(NotificationState::Pending),
            limit: tokens.len() as i64,
            ..Default::default()
        })
        .await?;
    ensure!(
        queued.len() == tokens.len(),
        "{} notification(s) queued, not {}",
        queued.len(),
        tokens.len()
    );
    let settlements: Vec<Settlement> = queued
        .iter()
        .filter(|n| n.id % 20 != 0)
        .map(|n| Settlement {
            id: n.id,
            claim_version: n.claim_version,
            outcome: if n.id % 20 == 1 {
                Settle::Dead
            } else {
                Settle::Delivered
            },
            status: Some(if n.id % 20 == 1 { 400 } else { 204 }),
            error: None,
            started_ms: now,
            ended_ms: now + 5,
        })
        .collect();
    for chunk in settlements.chunks(BATCH) {
        let chunk = chunk.to_vec();
        hub.store
            .transact(move |tx| Box::pin(async move { tx.settle_notifications(&chunk).await }))
            .await?;
    }
    println!(
        "  {} notification(s) in {:.1} s: {:?}",
        tokens.len(),
        t.elapsed().as_secs_f64(),
        hub.store.notification_counts(Some(REQUESTOR)).await?
    );
    Ok(())
}

/// One admin request's timings.
struct Row {
    page: &'static str,
    request: String,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// Each page's requests, `--requests` times each; the token page over tokens picked across the
/// whole store, half of them with notifications.
async fn measure(args: &ConsoleArgs, admin: &Admin, campaign: &str) -> anyhow::Result<Vec<Row>> {
    let r = format!("/admin/v1/token-requestors/{REQUESTOR}");
    let c = format!("/admin/v1/campaigns/{campaign}");
    let (notified, tokens) = (args.notifications.max(1), args.tokens);
    let token = move |i: usize| {
        let n = if i % 2 == 0 { notified } else { tokens };
        format!("bench-{:09}", (i * 7919) % n)
    };
    let mut pages: Vec<(&'static str, String, PathOf)> = vec![
        (
            "overview",
            "GET /overview".into(),
            fixed("/admin/v1/overview"),
        ),
        (
            "campaigns",
            "GET /campaigns?limit=50".into(),
            fixed("/admin/v1/campaigns?limit=50"),
        ),
        ("campaign", "GET /campaigns/{id}".into(), fixed(&c)),
        (
            "campaign",
            "GET /campaigns/{id}/report".into(),
            fixed(&format!("{c}/report")),
        ),
        (
            "token",
            "GET /tokens/{id}".into(),
            Box::new(move |i| format!("/admin/v1/tokens/{}", token(i))),
        ),
        (
            "token",
            "GET /tokens/{id}/notifications?limit=50".into(),
            Box::new(move |i| format!("/admin/v1/tokens/{}/notifications?limit=50", token(i))),
        ),
        (
            "requestors",
            "GET /token-requestors?limit=100".into(),
            fixed("/admin/v1/token-requestors?limit=100"),
        ),
        ("requestor", "GET /token-requestors/{id}".into(), fixed(&r)),
        (
            "requestor",
            "GET /token-requestors/{id}/notifications?limit=50".into(),
            fixed(&format!("{r}/notifications?limit=50")),
        ),
        (
            "requestor",
            "GET /token-requestors/{id}/notifications?state=DEAD&limit=100".into(),
            fixed(&format!("{r}/notifications?state=DEAD&limit=100")),
        ),
    ];
    // The TSPs' health, where the hub lists the TSPs (the overview shows it).
    if get(admin, "/admin/v1/tsps").await.is_ok() {
        pages.insert(1, ("overview", "GET /tsps".into(), fixed("/admin/v1/tsps")));
    }
    let mut rows = Vec::new();
    for (page, request, path) in pages {
        for i in 0..3 {
            get(admin, &path(i)).await?;
        }
        let mut times = Vec::with_capacity(args.requests);
        for i in 0..args.requests {
            let p = path(i);
            let t = Instant::now();
            let v = get(admin, &p).await?;
            times.push(t.elapsed());
            ensure!(!v.is_null(), "GET {p}: an empty answer");
        }
        times.sort();
        let at =
            |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
        rows.push(Row {
            page,
            request,
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        });
    }
    Ok(rows)
}

async fn get(admin: &Admin, path: &str) -> anyhow::Result<Value> {
    crate::bootstrap::get_json(&admin.http, &format!("{}{path}", admin.base), &admin.token).await
}

/// The path of a request's `i`-th sending.
type PathOf = Box<dyn Fn(usize) -> String>;

fn fixed(path: &str) -> PathOf {
    let path = path.to_string();
    Box::new(move |_| path.clone())
}

fn report(args: &ConsoleArgs, backend: &str, rows: &[Row]) {
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    println!(
        "\nconsole pages on {backend}: {} tokens, {} notifications, {} requests each, goal {} ms",
        args.tokens, args.notifications, args.requests, args.goal_ms
    );
    println!(
        "| page | request | p50 ms | p99 ms | max ms | within {} ms |",
        args.goal_ms
    );
    println!("|---|---|---|---|---|---|");
    for r in rows {
        let ok = r.max <= Duration::from_millis(args.goal_ms);
        println!(
            "| {} | `{}` | {} | {} | {} | {} |",
            r.page,
            r.request,
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
            if ok { "yes" } else { "**no**" }
        );
    }
}
