//! `tokenhub-bench chaos` at a small size on PostgreSQL: three nodes, a campaign and token
//! updates while nodes are killed, a flaky TSP and a requestor down for a while; the run's own
//! checks (nothing done twice, lost, reordered or too fast, no deadlock) pass. Skipped when
//! `TOKENHUB_TEST_DATABASE_URL` names no PostgreSQL server.

use std::process::Command;

#[test]
fn a_small_chaos_run_passes_its_checks() {
    let url = match std::env::var("TOKENHUB_TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => url,
        _ => {
            eprintln!("chaos run skipped: TOKENHUB_TEST_DATABASE_URL is not set");
            return;
        }
    };
    let out = Command::new(env!("CARGO_BIN_EXE_tokenhub-bench"))
        .args(["chaos", "--database-url", &url])
        .args(["--tokens", "500", "--updates", "500", "--update-rate", "50"])
        .args([
            "--kills",
            "3",
            "--kill-min-secs",
            "3",
            "--kill-max-secs",
            "6",
        ])
        .args(["--tsp-rate", "100", "--requestor-down-secs", "4"])
        .args(["--timeout-minutes", "4"])
        .env("RUST_LOG", "error")
        .output()
        .expect("running tokenhub-bench chaos");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench chaos failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary "))
        .expect("a summary line");
    for field in [
        "tokens=500",
        "kills=3",
        "done=500",
        "failed=0",
        "atc_resets=500",
        "accepted=500",
        "obsolete=0",
        "rate_limited=0",
    ] {
        assert!(
            summary.split_whitespace().any(|f| f == field),
            "{field} missing from {summary}"
        );
    }
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
