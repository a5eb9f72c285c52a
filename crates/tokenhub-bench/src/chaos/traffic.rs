//! What the TSP sends the hub in a chaos run besides the campaign's calls (token updates, as a
//! TSP does: retried on a lost connection or a `5xx` with the same body), and what the TSP
//! simulator saw of the hub's pace.

use crate::campaign::ISSUER_ID;
use serde_json::json;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokenhub_sim::TspSimHandle;

/// Attempts of one update before the TSP gives up on it.
const UPDATE_ATTEMPTS: u32 = 60;

/// What the updates sent came to.
#[derive(Debug, Default)]
pub(crate) struct UpdatesSent {
    /// Each update the hub answered 204: token id, `lastUpdateTimestamp` in ms.
    pub(crate) accepted: Vec<(String, i64)>,
    /// `5xx` answers from the hub (every attempt counted), and a few of their bodies.
    pub(crate) five_xx: u64,
    pub(crate) five_xx_bodies: Vec<String>,
    /// Attempts that found no connection or lost it (a node killed under the call).
    pub(crate) lost: u64,
    /// Updates refused for good (a `4xx`) or given up after every attempt, with why.
    pub(crate) failed: Vec<String>,
}

/// A `lastUpdateTimestamp` per update, each later than the one before, so that two updates of
/// one token are ordered even within a millisecond.
struct Stamps(AtomicI64);

impl Stamps {
    fn next(&self) -> i64 {
        let now = chrono::Utc::now().timestamp_millis();
        let prev = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| Some(now.max(p + 1)))
            .unwrap_or(now);
        now.max(prev + 1)
    }
}

/// Posts `n` token updates at `rate` a second through the front, two in a row to each token
/// (its card art changed), from the first token on.
pub(crate) async fn post_updates(
    front_url: String,
    token_ids: Vec<String>,
    n: usize,
    rate: u32,
) -> UpdatesSent {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    let sent = Arc::new(Mutex::new(UpdatesSent::default()));
    let stamps = Arc::new(Stamps(AtomicI64::new(0)));
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        tokio::time::sleep_until((started + period * i as u32).into()).await;
        let token = token_ids[(i / 2) % token_ids.len()].clone();
        let ts = stamps.next();
        let (http, url, sent) = (http.clone(), front_url.clone(), sent.clone());
        tasks.spawn(async move { post_one(&http, &url, &token, ts, i, &sent).await });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Arc::try_unwrap(sent)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_default()
}

async fn post_one(
    http: &reqwest::Client,
    front_url: &str,
    token: &str,
    ts: i64,
    i: usize,
    sent: &Mutex<UpdatesSent>,
) {
    let stamp = chrono::DateTime::from_timestamp_millis(ts)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let body = json!({"issuerId": ISSUER_ID, "lastUpdateTimestamp": stamp,
                      "cardArtId": format!("art-{i}")});
    let url = format!("{front_url}/trapi/v2.0/tokens/{token}/updates");
    let correlation = uuid::Uuid::new_v4().to_string();
    let record =
        |f: &dyn Fn(&mut UpdatesSent)| f(&mut sent.lock().unwrap_or_else(|p| p.into_inner()));
    for attempt in 1..=UPDATE_ATTEMPTS {
        let answer = http
            .post(&url)
            .header("x-correlation-id", &correlation)
            .json(&body)
            .send()
            .await;
        match answer {
            Ok(r) if r.status().as_u16() == 204 => {
                record(&|s| s.accepted.push((token.to_string(), ts)));
                return;
            }
            Ok(r) if r.status().is_server_error() => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                record(&|s| {
                    s.five_xx += 1;
                    if s.five_xx_bodies.len() < 10 {
                        s.five_xx_bodies
                            .push(format!("{token}: HTTP {status}: {text}"));
                    }
                });
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                record(&|s| s.failed.push(format!("{token}: HTTP {status}: {text}")));
                return;
            }
            Err(_) => record(&|s| s.lost += 1),
        }
        tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10)))).await;
    }
    record(&|s| {
        s.failed
            .push(format!("{token}: gave up after {UPDATE_ATTEMPTS} attempts"))
    });
}

/// The calls the TSP simulator counted (every call of its outgoing API that reached it, admitted
/// or refused by its rate limit), sampled every 100 ms.
pub(crate) async fn sample_calls(
    tsp: Arc<TspSimHandle>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Vec<(Instant, u64)> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let (admitted, refused) = tsp.outgoing_calls();
                samples.push((Instant::now(), admitted + refused));
            }
            _ = &mut stop => return samples,
        }
    }
}

/// The rate over every window of one second (from each sample to the first one at least a
/// second later), calls/s.
pub(crate) fn window_rates(samples: &[(Instant, u64)]) -> Vec<f64> {
    let mut rates = Vec::new();
    let mut j = 0;
    for (i, (t0, c0)) in samples.iter().enumerate() {
        j = j.max(i);
        while j < samples.len() && samples[j].0.duration_since(*t0) < Duration::from_secs(1) {
            j += 1;
        }
        let Some((t1, c1)) = samples.get(j) else {
            break;
        };
        rates.push((c1 - c0) as f64 / t1.duration_since(*t0).as_secs_f64());
    }
    rates
}

/// The highest rate over any window of one second, calls/s.
pub(crate) fn peak_rate(samples: &[(Instant, u64)]) -> f64 {
    window_rates(samples).into_iter().fold(0.0, f64::max)
}

/// The mean rate from the first call to the last one, calls/s.
pub(crate) fn mean_rate(samples: &[(Instant, u64)]) -> f64 {
    let first = samples.iter().find(|(_, c)| *c > 0);
    let last_count = samples.last().map_or(0, |(_, c)| *c);
    let last = samples.iter().find(|(_, c)| *c == last_count);
    match (first, last) {
        (Some((t0, c0)), Some((t1, c1))) if t1 > t0 => {
            (c1 - c0) as f64 / t1.duration_since(*t0).as_secs_f64()
        }
        _ => f64::NAN,
    }
}
