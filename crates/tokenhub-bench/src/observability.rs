//! `tokenhub-bench observability`: what metrics and JSON logs cost `/data`. Each run measures
//! `tokenhub-bench data --max-only` twice, each in a process of its own (the metrics recorder and
//! the log subscriber are process-wide): once with metrics dropped by a recorder that records
//! nothing and only errors logged, once with the Prometheus recorder and JSON lines at `info` (one
//! `request` line per call and the lines the call causes) written to a file. The order alternates
//! from run to run; the verdict compares the medians of the hub's calls/s.

use crate::data::median;
use anyhow::{ensure, Context};
use std::path::Path;
use std::process::{Command, Stdio};

/// The most throughput the two may cost together.
const GOAL_RATIO: f64 = 0.97;

#[derive(clap::Args, Clone)]
pub struct ObservabilityArgs {
    /// Pairs of runs (off, on), alternating which goes first.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds each measured max phase lasts.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of unmeasured warm-up before each measured phase.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// The hub's database (default: a fresh SQLite file per run); see `data --database-url`.
    #[arg(long)]
    database_url: Option<String>,
}

/// One `data --max-only` process: its calls/s, and the log it wrote.
struct Run {
    on: bool,
    parse_max: f64,
    hub_max: f64,
    log_lines: usize,
    log_bytes: u64,
}

pub async fn run(args: ObservabilityArgs) -> anyhow::Result<()> {
    ensure!(args.runs > 0, "--runs must be at least 1");
    let dir = tempfile::Builder::new()
        .prefix("tokenhub-bench-obs-")
        .tempdir()?;
    println!(
        "tokenhub-bench observability: data --max-only, {} s per phase, metrics and JSON logs \
         off against on, {} pair(s)",
        args.duration, args.runs
    );
    let mut runs = Vec::new();
    for i in 0..args.runs {
        let order = if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for on in order {
            let run = measure(&args, dir.path(), i, on).await?;
            println!(
                "run {}: {:<3} hub {:>8.0} calls/s, parse-only {:>8.0} req/s, log {} lines, {} KiB",
                i + 1,
                if on { "on" } else { "off" },
                run.hub_max,
                run.parse_max,
                run.log_lines,
                run.log_bytes / 1024
            );
            runs.push(run);
        }
    }
    let median_of =
        |on: bool, f: fn(&Run) -> f64| median(runs.iter().filter(|r| r.on == on).map(f).collect());
    let (off, on) = (
        median_of(false, |r| r.hub_max),
        median_of(true, |r| r.hub_max),
    );
    let normalised = |on: bool| median_of(on, |r| r.hub_max / r.parse_max);
    let ratio = on / off;
    println!();
    println!("| metrics and logs | hub calls/s (median) | hub / parse-only (median) |");
    println!("|---|---|---|");
    println!("| off | {off:.0} | {:.3} |", normalised(false));
    println!(
        "| on (Prometheus, JSON lines at info) | {on:.0} | {:.3} |",
        normalised(true)
    );
    println!();
    println!(
        "on / off: {ratio:.3} (goal ≥ {GOAL_RATIO}): {}",
        crate::data::verdict(ratio >= GOAL_RATIO)
    );
    Ok(())
}

/// One `data --max-only` in a child process, metrics and logs `on` or off.
async fn measure(args: &ObservabilityArgs, dir: &Path, i: usize, on: bool) -> anyhow::Result<Run> {
    let tag = if on { "on" } else { "off" };
    let result = dir.join(format!("result-{i}-{tag}.json"));
    let log = dir.join(format!("log-{i}-{tag}.jsonl"));
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["data", "--max-only"])
        .args(["--duration", &args.duration.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .arg("--result-file")
        .arg(&result)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    if let Some(url) = &args.database_url {
        cmd.args(["--database-url", url]);
    }
    if on {
        cmd.env("RUST_LOG", "info")
            .env("TOKENHUB_LOG_FORMAT", "json");
    } else {
        cmd.arg("--no-metrics")
            .env("RUST_LOG", "error")
            .env_remove("TOKENHUB_LOG_FORMAT");
    }
    let status = tokio::task::spawn_blocking(move || cmd.status()).await??;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    ensure!(
        status.success(),
        "data --max-only ({tag}) failed: {}",
        text.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    let figures: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&result).with_context(|| format!("reading {}", result.display()))?,
    )?;
    let rate = |name: &str| {
        figures[name]
            .as_f64()
            .with_context(|| format!("no {name} in {}", result.display()))
    };
    Ok(Run {
        on,
        parse_max: rate("parseMax")?,
        hub_max: rate("hubMax")?,
        log_lines: text.lines().count(),
        log_bytes: text.len() as u64,
    })
}
