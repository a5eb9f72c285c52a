//! The load generator: where requests go, and the two ways of sending them (closed loop at max
//! throughput, open loop at a fixed rate).

use super::measure::{cpu_during, Histogram, Samples};
use super::{pause, DataArgs, X_CORRELATION_ID};
use anyhow::Context;
use axum::http::StatusCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The load's client settings: keep-alive, no Nagle.
pub(crate) fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
}

/// Where requests go: a parse-only server takes any token id; the hub takes each of its
/// pre-created tokens once. Several bases (hub nodes) take the requests in turn.
pub(crate) struct Target {
    pub(crate) server: &'static str,
    pub(crate) bases: Vec<String>,
    pub(crate) tokens: Option<Vec<String>>,
    pub(crate) next: AtomicUsize,
    pub(crate) client: reqwest::Client,
}

impl Target {
    pub(crate) fn new(
        server: &'static str,
        base: String,
        tokens: Option<Vec<String>>,
    ) -> Arc<Self> {
        Self::across(server, vec![base], tokens)
    }

    /// The same, the requests spread over `bases` in turn.
    pub(crate) fn across(
        server: &'static str,
        bases: Vec<String>,
        tokens: Option<Vec<String>>,
    ) -> Arc<Self> {
        let client = client_builder()
            .build()
            .expect("a client without TLS settings builds");
        Self::with_client(server, bases, tokens, client)
    }

    /// The same, sending with `client` (e.g. one that presents a TSP's certificate).
    pub(crate) fn with_client(
        server: &'static str,
        bases: Vec<String>,
        tokens: Option<Vec<String>>,
        client: reqwest::Client,
    ) -> Arc<Self> {
        assert!(!bases.is_empty(), "a target has somewhere to send");
        Arc::new(Self {
            server,
            bases,
            tokens,
            next: AtomicUsize::new(0),
            client,
        })
    }

    /// The next request's URL and correlation id; `None` once the hub's tokens are used up.
    pub(crate) fn next_request(&self) -> Option<(String, String)> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let base = &self.bases[i % self.bases.len()];
        let url = match &self.tokens {
            Some(ids) => format!("{base}{}/data", ids.get(i)?),
            None => format!("{base}parse-{i:09}/data"),
        };
        Some((url, format!("bench-{i}")))
    }

    /// The hub's `i`-th token.
    pub(crate) fn token(&self, i: usize) -> Option<&String> {
        self.tokens.as_ref()?.get(i)
    }

    pub(crate) fn used(&self) -> usize {
        let n = self.next.load(Ordering::Relaxed);
        self.tokens.as_ref().map_or(n, |t| n.min(t.len()))
    }

    pub(crate) async fn send(
        &self,
        url: String,
        correlation: String,
        body: &'static [u8],
    ) -> Answer {
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

pub(crate) enum Answer {
    NoContent,
    Other(String),
}

#[derive(Clone, Copy)]
pub(crate) enum Phase {
    /// Max throughput, closed loop.
    Max,
    /// Fixed rate, open loop.
    Fixed,
}

/// The load generator's own runtime (two worker threads, like the servers' runtime).
pub(crate) struct LoadRuntime(tokio::runtime::Runtime);

impl LoadRuntime {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bench-load")
            .enable_all()
            .build()
            .context("starting the load generator's runtime")?;
        Ok(Self(runtime))
    }

    /// Runs `task` on the load generator's threads.
    pub(crate) fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.spawn(task)
    }

    /// Runs one phase's load on the load generator's threads.
    pub(crate) async fn run(
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

    /// Runs one phase unless `skip` (then it measured nothing), and pauses after it.
    pub(crate) async fn run_unless(
        &self,
        skip: bool,
        phase: Phase,
        target: &Arc<Target>,
        body: &'static [u8],
        args: &DataArgs,
    ) -> anyhow::Result<Samples> {
        if skip {
            return Ok(Samples::default());
        }
        let samples = self.run(phase, target, body, args).await?;
        pause().await;
        Ok(samples)
    }

    /// Stops its threads without waiting (a runtime cannot be dropped inside another).
    pub(crate) fn stop(self) {
        self.0.shutdown_background();
    }
}

/// Max throughput: `concurrency` workers, back to back. A request counts if it completes inside
/// the measured window.
pub(crate) async fn closed_loop(
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
pub(crate) async fn open_loop(
    target: &Arc<Target>,
    body: &'static [u8],
    args: &DataArgs,
) -> anyhow::Result<Samples> {
    eprint!("{}: fixed rate {} req/s ... ", target.server, args.rate);
    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let warm = u64::from(args.rate) * args.warmup;
    let measured = u64::from(args.rate) * args.duration;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
    // Answers are collected by their own task, so that the schedule never waits on them.
    let collector = tokio::spawn(collect(target.server, rx));
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

pub(crate) struct Done {
    pub(crate) measured: bool,
    pub(crate) scheduled: Instant,
    pub(crate) sent: Instant,
    pub(crate) done: Instant,
    pub(crate) answer: Answer,
}

/// The fixed-rate phase's answers as they come; the window runs from the first measured
/// request's scheduled start to the last one's answer.
async fn collect(
    server: &'static str,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Done>,
) -> Samples {
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
}
