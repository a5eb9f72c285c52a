//! `tokenhub-bench keystore`: what keeping the keys in an HSM costs `/data`. One run measures
//! `tokenhub-bench data` twice, each in a process of its own (the PKCS#11 module is per process):
//! on the software keystore, then on the PKCS#11 module and token given (the PIN in
//! `TOKENHUB_PKCS11_PIN`, e.g. SoftHSM2's). The verdicts: the HSM's max throughput at least half
//! the software keystore's, and its p99 at the fixed rate within 5 ms.

use crate::data::{verdict, GOAL_P99_MS, GOAL_RATIO};
use anyhow::{ensure, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(clap::Args, Clone)]
pub struct KeystoreArgs {
    /// The PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so.
    #[arg(long, env = "TOKENHUB_PKCS11_MODULE")]
    pkcs11_module: PathBuf,
    /// The label of the token holding the hub's keys.
    #[arg(long, env = "TOKENHUB_PKCS11_TOKEN")]
    pkcs11_token: String,
    /// Seconds each measured phase lasts.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of unmeasured warm-up before each measured phase.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Requests per second of the fixed-rate phase.
    #[arg(long, default_value_t = 2000)]
    rate: u32,
}

/// What one `data` process measured.
struct Figures {
    hub_max: f64,
    parse_max: f64,
    p99_ms: f64,
    fixed_per_sec: f64,
}

pub async fn run(args: KeystoreArgs) -> anyhow::Result<()> {
    ensure!(
        std::env::var_os("TOKENHUB_PKCS11_PIN").is_some()
            || std::env::var_os("TOKENHUB_PKCS11_PIN_FILE").is_some(),
        "the token's PIN goes in TOKENHUB_PKCS11_PIN or TOKENHUB_PKCS11_PIN_FILE"
    );
    let dir = tempfile::Builder::new()
        .prefix("tokenhub-bench-keystore-")
        .tempdir()?;
    println!(
        "tokenhub-bench keystore: data on the software keystore, then on PKCS#11 ({}, token {:?}); \
         {} s per phase, fixed rate {} req/s",
        args.pkcs11_module.display(),
        args.pkcs11_token,
        args.duration,
        args.rate
    );
    let software = measure(&args, dir.path(), false).await?;
    let hsm = measure(&args, dir.path(), true).await?;
    let ratio = hsm.hub_max / software.hub_max;
    println!();
    println!(
        "| keystore | hub max calls/s | parse-only req/s | p99 at {} req/s (ms) | answered/s |",
        args.rate
    );
    println!("|---|---|---|---|---|");
    for (name, f) in [("software", &software), ("PKCS#11", &hsm)] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.2} | {:.0} |",
            f.hub_max, f.parse_max, f.p99_ms, f.fixed_per_sec
        );
    }
    println!();
    println!(
        "PKCS#11 / software max: {ratio:.3} (goal ≥ {GOAL_RATIO}): {}",
        verdict(ratio >= GOAL_RATIO)
    );
    println!(
        "PKCS#11 p99 at {} req/s: {:.2} ms (goal ≤ {GOAL_P99_MS} ms): {}",
        args.rate,
        hsm.p99_ms,
        verdict(hsm.p99_ms <= GOAL_P99_MS)
    );
    Ok(())
}

/// One `data` in a child process, on the HSM or not.
async fn measure(args: &KeystoreArgs, dir: &Path, hsm: bool) -> anyhow::Result<Figures> {
    let tag = if hsm { "pkcs11" } else { "software" };
    let result = dir.join(format!("result-{tag}.json"));
    let log = dir.join(format!("log-{tag}.txt"));
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("data")
        .args(["--duration", &args.duration.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--rate", &args.rate.to_string()])
        .arg("--result-file")
        .arg(&result)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    if hsm {
        cmd.args(["--keystore", "pkcs11", "--pkcs11-module"])
            .arg(&args.pkcs11_module)
            .args(["--pkcs11-token", &args.pkcs11_token]);
    } else {
        cmd.args(["--keystore", "software"]);
    }
    let status = tokio::task::spawn_blocking(move || cmd.status()).await??;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    ensure!(
        status.success(),
        "data ({tag}) failed: {}",
        text.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    let figures: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&result).with_context(|| format!("reading {}", result.display()))?,
    )?;
    let get = |name: &str| {
        figures[name]
            .as_f64()
            .with_context(|| format!("no {name} in {}", result.display()))
    };
    let f = Figures {
        hub_max: get("hubMax")?,
        parse_max: get("parseMax")?,
        p99_ms: get("hubFixedP99Ms")?,
        fixed_per_sec: get("hubFixedPerSec")?,
    };
    println!(
        "{tag}: hub {:.0} calls/s (parse-only {:.0} req/s), p99 {:.2} ms at {} req/s",
        f.hub_max, f.parse_max, f.p99_ms, args.rate
    );
    Ok(f)
}
