//! `tokenhub-bench campaign` on a small campaign: the bench's own checks (every token done,
//! none failed, every device confirmed, every ATC reset at the TSP, sampled profiles opened and
//! checked) pass. Not timed: the figures are the bench's business, not the test's.

use std::process::Command;

#[test]
fn a_small_campaign_bench_runs_and_passes_its_checks() {
    let out = Command::new(env!("CARGO_BIN_EXE_tokenhub-bench"))
        .args(["campaign", "--tokens", "200", "--check-every", "10"])
        .args(["--max-in-flight", "64", "--timeout-minutes", "5"])
        .env("RUST_LOG", "error")
        .output()
        .expect("running tokenhub-bench campaign");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench campaign failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary "))
        .expect("a summary line");
    for field in [
        "tokens=200",
        "done=200",
        "failed=0",
        "atc_resets=200",
        "opened=20",
    ] {
        assert!(
            summary.split_whitespace().any(|f| f == field),
            "{field} missing from {summary}"
        );
    }
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
