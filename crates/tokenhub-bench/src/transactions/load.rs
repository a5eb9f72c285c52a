//! The transactions bench's load: where a transaction is asked for (the simulator directly, or the
//! hub), and the two ways of sending (closed loop at max throughput, open loop at a fixed rate).

use super::TransactionsArgs;
use crate::data::{self, cpu_during, Answer, Histogram, Samples};
use anyhow::Context;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One way of asking for a transaction's credentials, round the tokens.
pub(crate) struct Route {
    pub(crate) name: &'static str,
    /// The URL before and after the token id.
    prefix: String,
    suffix: &'static str,
    /// The same body for every request (the path names the token).
    body: &'static str,
    /// The hub's requestor key; `None`: the simulator, with an `x-correlation-id` per call.
    bearer: Option<String>,
    /// What a success is answered with.
    success: u16,
    tokens: Arc<Vec<String>>,
    next: AtomicUsize,
    client: reqwest::Client,
}

impl Route {
    /// The simulator's `transactionCredentials`, as the hub calls it.
    pub(crate) fn direct(
        sim_base: &str,
        requestor: &str,
        merchant: &str,
        tokens: Arc<Vec<String>>,
    ) -> anyhow::Result<Arc<Self>> {
        let body = serde_json::json!({"tokenRequestorId": requestor, "amount": "1250",
            "currency": "EUR", "transactionType": "CIT_ECOM", "merchantId": merchant});
        Self::new(
            "tsp-sim direct",
            format!("{sim_base}/cardOnFileTokens/"),
            "/transactionCredentials",
            body,
            None,
            200,
            tokens,
        )
    }

    /// The hub's Create Transaction, with the requestor's API key.
    pub(crate) fn hub(
        hub_url: &str,
        key: &str,
        tokens: Arc<Vec<String>>,
    ) -> anyhow::Result<Arc<Self>> {
        let body =
            serde_json::json!({"amount": "1250", "currency": "EUR", "transactionType": "CIT_ECOM"});
        Self::new(
            "hub",
            format!("{hub_url}/requestor/v1/tokens/"),
            "/transactions",
            body,
            Some(key.to_string()),
            201,
            tokens,
        )
    }

    fn new(
        name: &'static str,
        prefix: String,
        suffix: &'static str,
        body: serde_json::Value,
        bearer: Option<String>,
        success: u16,
        tokens: Arc<Vec<String>>,
    ) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            name,
            prefix,
            suffix,
            body: String::leak(body.to_string()),
            bearer,
            success,
            tokens,
            next: AtomicUsize::new(0),
            client: data::client_builder().build()?,
        }))
    }

    /// One transaction with the next token; the answer read whole.
    async fn send(&self) -> Answer {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let token = &self.tokens[i % self.tokens.len()];
        let mut request = self
            .client
            .post(format!("{}{token}{}", self.prefix, self.suffix))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.body);
        request = match &self.bearer {
            Some(key) => request.bearer_auth(key),
            None => request.header("x-correlation-id", format!("bench-{i}")),
        };
        match request.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    Ok(_) if status == self.success => Answer::NoContent,
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

/// The load generator's own runtime (the data bench's).
pub(crate) struct Load(data::LoadRuntime);

impl Load {
    pub(crate) fn new() -> anyhow::Result<Self> {
        Ok(Self(data::LoadRuntime::new()?))
    }

    /// Max throughput against `route`, then a pause.
    pub(crate) async fn max(
        &self,
        route: &Arc<Route>,
        args: &TransactionsArgs,
    ) -> anyhow::Result<Samples> {
        let (route, args) = (route.clone(), args.clone());
        let s = self.0.spawn(closed_loop(route, args)).await?;
        data::pause().await;
        Ok(s)
    }

    /// The fixed rate against `route`, then a pause.
    pub(crate) async fn fixed(
        &self,
        route: &Arc<Route>,
        args: &TransactionsArgs,
    ) -> anyhow::Result<Samples> {
        let (route, args) = (route.clone(), args.clone());
        let s = self.0.spawn(open_loop(route, args)).await??;
        data::pause().await;
        Ok(s)
    }

    /// Stops its threads without waiting (a runtime cannot be dropped inside another).
    pub(crate) fn stop(self) {
        self.0.stop();
    }
}

/// `concurrency` workers back to back; a request counts if it completes inside the window.
async fn closed_loop(route: Arc<Route>, args: TransactionsArgs) -> Samples {
    eprint!("{}: max throughput ... ", route.name);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let end = measure_from + Duration::from_secs(args.duration);
    let cpu = cpu_during(measure_from, end);
    let workers = (0..args.concurrency).map(|_| {
        let route = route.clone();
        async move {
            let mut s = Samples::default();
            while Instant::now() < end {
                let t0 = Instant::now();
                let answer = route.send().await;
                let done = Instant::now();
                if done >= measure_from && done < end {
                    s.record(done - t0, None, answer);
                } else if let Answer::Other(why) = answer {
                    s.non_204 += 1;
                    s.first_failure.get_or_insert(why);
                }
            }
            s
        }
    });
    let mut samples = Samples {
        server: route.name,
        phase: "max throughput",
        window: end - measure_from,
        ..Samples::default()
    };
    for s in futures::future::join_all(workers).await {
        samples.merge(s);
    }
    samples.cpu = cpu.await.ok().flatten();
    eprintln!("{:.0} req/s", samples.completed_per_sec());
    samples
}

/// A request every `1/rate` s whatever the answers do; latency from the scheduled start.
async fn open_loop(route: Arc<Route>, args: TransactionsArgs) -> anyhow::Result<Samples> {
    eprint!("{}: fixed rate {} req/s ... ", route.name, args.rate);
    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let warm = u64::from(args.rate) * args.warmup;
    let measured = u64::from(args.rate) * args.duration;
    let (tx, mut rx) =
        tokio::sync::mpsc::unbounded_channel::<(Instant, Instant, Instant, Answer)>();
    let start = Instant::now();
    let cpu = cpu_during(
        start + Duration::from_secs(args.warmup),
        start + Duration::from_secs(args.warmup + args.duration),
    );
    let slots = Arc::new(tokio::sync::Semaphore::new(args.max_in_flight));
    let runtime = tokio::runtime::Handle::current();
    let scheduler_route = route.clone();
    // The schedule is kept by a thread of its own that sleeps until each request's time: tokio's
    // timer has a 1 ms grain, which would send the requests in pairs.
    let scheduler = move || {
        for n in 0..warm + measured {
            let scheduled = start + period.mul_f64(n as f64);
            if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let (route, tx, slots) = (scheduler_route.clone(), tx.clone(), slots.clone());
            let is_measured = n >= warm;
            runtime.spawn(async move {
                let Ok(_slot) = slots.acquire().await else {
                    return;
                };
                let sent = Instant::now();
                let answer = route.send().await;
                if is_measured {
                    let _ = tx.send((scheduled, sent, Instant::now(), answer));
                }
            });
        }
    };
    let collector = tokio::spawn(async move {
        let mut samples = Samples {
            server: route.name,
            phase: "fixed rate",
            ..Samples::default()
        };
        let (mut first, mut last) = (None::<Instant>, None::<Instant>);
        while let Some((scheduled, sent, done, answer)) = rx.recv().await {
            samples.record(done - scheduled, Some(done - sent), answer);
            first = Some(first.map_or(scheduled, |f| f.min(scheduled)));
            last = Some(last.map_or(done, |l| l.max(done)));
        }
        samples.window = match (first, last) {
            (Some(f), Some(l)) => l - f,
            _ => Duration::ZERO,
        };
        samples
    });
    tokio::task::spawn_blocking(scheduler)
        .await
        .context("the request scheduler failed")?;
    let mut samples = collector.await.context("the answer collector failed")?;
    samples.scheduled = measured;
    samples.cpu = cpu.await.ok().flatten();
    eprintln!("p99 {:.2} ms", Histogram::new(&samples.latency_us).ms(99.0));
    Ok(samples)
}
