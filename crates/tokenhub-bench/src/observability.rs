//! `tokenhub-bench observability`: what metrics and JSON logs cost `/data`. Each run measures
//! `tokenhub-bench data --max-only` twice, each in a process of its own (the metrics recorder and
//! the log subscriber are process-wide): once with metrics dropped by a recorder that records
//! nothing and only errors logged, once with the Prometheus recorder and JSON lines at `info` (one
//! `request` line per call and the lines the call causes) written to a file. The two processes
//! run at once, sharing the cores, so that whatever the host takes away falls on both alike; the
//! verdict is the median over the runs of on's calls/s over off's. `--alternate` runs them one
//! after the other instead, alternating which goes first.

use crate::data::median;
use anyhow::{ensure, Context};
use std::path::Path;
use std::process::{Command, Stdio};

/// The most throughput the two may cost together.
const GOAL_RATIO: f64 = 0.97;

#[derive(clap::Args, Clone)]
pub struct ObservabilityArgs {
    /// Pairs of runs (off, on).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Run each pair one after the other, alternating which goes first, instead of at once
    /// (needed with `--database-url`: two runs at once would share the database).
    #[arg(long)]
    alternate: bool,
    /// Seconds each measured max phase lasts.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of unmeasured warm-up before each measured phase.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// What "on" turns on: both (default), or only `metrics` or only `logs`, to see each's
    /// share; `nothing` runs two alike processes, to see what the bench can tell apart.
    #[arg(long, value_enum, default_value_t = Only::Both)]
    only: Only,
    /// The hub's database (default: a fresh SQLite file per run); see `data --database-url`.
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq)]
enum Only {
    Both,
    Metrics,
    Logs,
    Nothing,
}

/// One `data --max-only` process: its calls/s, and the log it wrote.
struct Run {
    on: bool,
    parse_max: f64,
    hub_max: f64,
    /// CPU of the process (hub and load generator) per hub call in the max phase, in ms.
    cpu_ms: Option<f64>,
    log_lines: usize,
    log_bytes: u64,
}

pub async fn run(args: ObservabilityArgs) -> anyhow::Result<()> {
    ensure!(args.runs > 0, "--runs must be at least 1");
    ensure!(
        args.alternate || args.database_url.is_none(),
        "--database-url needs --alternate (two runs at once would share the database)"
    );
    let dir = tempfile::Builder::new()
        .prefix("tokenhub-bench-obs-")
        .tempdir()?;
    println!(
        "tokenhub-bench observability: data --max-only, {} s per phase, metrics and JSON logs \
         off against on, {} pair(s), {}",
        args.duration,
        args.runs,
        if args.alternate {
            "one after the other"
        } else {
            "both at once"
        }
    );
    let mut pairs = Vec::new();
    for i in 0..args.runs {
        let pair = if !args.alternate {
            let (off, on) = tokio::join!(
                measure(&args, dir.path(), i, false),
                measure(&args, dir.path(), i, true)
            );
            [off?, on?]
        } else if i % 2 == 0 {
            let off = measure(&args, dir.path(), i, false).await?;
            [off, measure(&args, dir.path(), i, true).await?]
        } else {
            let on = measure(&args, dir.path(), i, true).await?;
            [measure(&args, dir.path(), i, false).await?, on]
        };
        for run in &pair {
            print_run(i, run);
        }
        pairs.push(pair);
    }
    report(&pairs, args.only);
    Ok(())
}

fn print_run(i: usize, run: &Run) {
    println!(
        "run {}: {:<3} hub {:>8.0} calls/s, {} ms CPU per call, parse-only {:>8.0} req/s, log {} \
         lines, {} KiB",
        i + 1,
        if run.on { "on" } else { "off" },
        run.hub_max,
        run.cpu_ms.map_or("-".into(), |ms| format!("{ms:.3}")),
        run.parse_max,
        run.log_lines,
        run.log_bytes / 1024
    );
}

/// The medians of each side, and the verdict on the median of the runs' on / off.
fn report(pairs: &[[Run; 2]], only: Only) {
    let side = |on: usize, f: fn(&Run) -> f64| median(pairs.iter().map(|p| f(&p[on])).collect());
    let of_pairs = |f: fn(&Run) -> f64| median(pairs.iter().map(|p| f(&p[1]) / f(&p[0])).collect());
    println!();
    println!(
        "| metrics and logs | hub calls/s (median) | hub / parse-only (median) | CPU ms per call \
         (median) |"
    );
    println!("|---|---|---|---|");
    let on_name = match only {
        Only::Both => "on (Prometheus, JSON lines at info)",
        Only::Metrics => "on (Prometheus only)",
        Only::Logs => "on (JSON lines at info only)",
        Only::Nothing => "on (nothing: alike to off)",
    };
    for (on, name) in [(0, "off"), (1, on_name)] {
        println!(
            "| {name} | {:.0} | {:.3} | {:.3} |",
            side(on, |r| r.hub_max),
            side(on, |r| r.hub_max / r.parse_max),
            side(on, |r| r.cpu_ms.unwrap_or(f64::NAN)),
        );
    }
    println!();
    let ratio = of_pairs(|r| r.hub_max);
    println!(
        "on / off (median of the runs): {ratio:.3} (goal ≥ {GOAL_RATIO}): {}",
        crate::data::verdict(ratio >= GOAL_RATIO)
    );
    // On two busy cores throughput follows the CPU a call costs.
    println!(
        "CPU per call, off / on (median of the runs): {:.3}",
        1.0 / of_pairs(|r| r.cpu_ms.unwrap_or(f64::NAN))
    );
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
    let turned_on = on && args.only != Only::Nothing;
    if !turned_on || args.only == Only::Logs {
        cmd.arg("--no-metrics");
    }
    if turned_on && args.only != Only::Metrics {
        cmd.env("RUST_LOG", "info")
            .env("TOKENHUB_LOG_FORMAT", "json");
    } else {
        cmd.env("RUST_LOG", "error")
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
        cpu_ms: figures["hubMaxCpuMsPerCall"].as_f64(),
        log_lines: text.lines().count(),
        log_bytes: text.len() as u64,
    })
}
