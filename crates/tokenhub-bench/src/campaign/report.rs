//! The campaign bench's table per tenth, its figures, checks and one-line summary.

use super::measure::Measured;
use super::process::{mb, ProcStats};
use super::{CampaignArgs, GOAL_RSS_MB, GOAL_TOKENS_PER_SECOND, RATE_TOLERANCE};
use anyhow::ensure;

/// The figures the report draws from what was measured.
struct Figures {
    n: usize,
    secs: f64,
    tps: f64,
    /// CPU seconds during the campaign: the hub, this process, every other process.
    hub_cpu: f64,
    bench_cpu: f64,
    others: f64,
    done: usize,
    failed: u64,
    confirmed: usize,
    /// Tokens per second in each tenth.
    tenths: Vec<f64>,
    /// TSP calls per second from the first to the last but one tenth (steady state).
    achieved: f64,
}

impl Figures {
    fn of(m: &Measured) -> Self {
        let n = m.tokens;
        let secs = m.end_to_end.as_secs_f64();
        let hub_cpu = (m.end.hub.cpu_ticks.saturating_sub(m.start.hub.cpu_ticks)) as f64 / 100.0;
        let bench_cpu = (m.bench.1.cpu_ticks.saturating_sub(m.bench.0.cpu_ticks)) as f64 / 100.0;
        let busy = (m.machine_busy.1.saturating_sub(m.machine_busy.0)) as f64 / 100.0;
        let mut prev = m.start;
        let mut tenths = Vec::new();
        for mark in &m.marks {
            let dt = mark.at.saturating_duration_since(prev.at).as_secs_f64();
            let dn = mark.confirmed.saturating_sub(prev.confirmed);
            tenths.push(if dt > 0.0 { dn as f64 / dt } else { f64::NAN });
            prev = *mark;
        }
        // The TSP's rate: calls admitted between the first and the last tenth (steady state).
        let (first, last) = (
            m.marks.first(),
            m.marks.get(m.marks.len().saturating_sub(2)),
        );
        let achieved = match (first, last) {
            (Some(a), Some(b)) if b.at > a.at => {
                (b.tsp_calls.0 - a.tsp_calls.0) as f64 / b.at.duration_since(a.at).as_secs_f64()
            }
            _ => f64::NAN,
        };
        Self {
            n,
            secs,
            tps: n as f64 / secs,
            hub_cpu,
            bench_cpu,
            others: (busy - hub_cpu - bench_cpu).max(0.0),
            done: m.campaign_view["done"].as_u64().unwrap_or(0) as usize,
            failed: m.campaign_view["failed"].as_u64().unwrap_or(u64::MAX),
            confirmed: m.end.confirmed,
            tenths,
            achieved,
        }
    }
}

pub(crate) fn report(
    args: &CampaignArgs,
    m: &Measured,
    hub_end: &ProcStats,
    tsp: &tokenhub_sim::TspSimStatus,
    db_mb: f64,
) -> anyhow::Result<()> {
    let f = Figures::of(m);
    print_times(m, &f);
    print_tenths(m);
    print_totals(args, m, &f, hub_end, tsp, db_mb);
    let checks = checks(args, m, &f, tsp);
    print_goals(&f, hub_end);
    print_summary(args, m, &f, hub_end, tsp, db_mb);
    let failed_checks: Vec<&String> = checks
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, w)| w)
        .collect();
    for why in &failed_checks {
        println!("CHECK FAILED: {why}");
    }
    ensure!(
        failed_checks.is_empty(),
        "{} check(s) failed",
        failed_checks.len()
    );
    println!("all checks passed");
    Ok(())
}

fn print_times(m: &Measured, f: &Figures) {
    println!();
    println!("== campaign: {} tokens, v1 -> v2 ==", f.n);
    println!(
        "deploy (campaign created over every ACTIVE token)   {:.2} s",
        m.deploy.as_secs_f64()
    );
    println!(
        "deploy sent -> campaign COMPLETED                    {:.1} s",
        m.campaign.as_secs_f64()
    );
    println!(
        "deploy sent -> last ATC reset at the TSP             {:.1} s = {:.0} tokens/s \
         (1,000,000 tokens at this pace: {:.1} min)",
        f.secs,
        f.tps,
        1_000_000.0 / f.tps / 60.0
    );
}

fn print_tenths(m: &Measured) {
    println!();
    println!("tenth  tokens confirmed   at (s)   tokens/s   hub CPU ms/token   hub RSS MB (anon)   TSP calls/s");
    let mut prev = m.start;
    for (i, mark) in m.marks.iter().enumerate() {
        let dt = mark.at.saturating_duration_since(prev.at).as_secs_f64();
        let dn = mark.confirmed.saturating_sub(prev.confirmed);
        let rate = if dt > 0.0 { dn as f64 / dt } else { f64::NAN };
        let cpu_ms =
            mark.hub.cpu_ticks.saturating_sub(prev.hub.cpu_ticks) as f64 * 10.0 / dn.max(1) as f64;
        let calls = (mark.tsp_calls.0 - prev.tsp_calls.0) as f64 / dt.max(1e-9);
        println!(
            "{:>5}  {:>15}  {:>7.1}  {:>9.0}  {:>17.2}  {:>7.0} ({:>4.0})      {:>9.1}",
            i + 1,
            mark.confirmed,
            mark.at.saturating_duration_since(m.start.at).as_secs_f64(),
            rate,
            cpu_ms,
            mb(mark.hub.rss_kb),
            mb(mark.hub.rss_anon_kb),
            calls
        );
        prev = *mark;
    }
}

fn print_totals(
    args: &CampaignArgs,
    m: &Measured,
    f: &Figures,
    hub_end: &ProcStats,
    tsp: &tokenhub_sim::TspSimStatus,
    db_mb: f64,
) {
    println!();
    println!(
        "hub process: peak RSS {:.0} MB (VmHWM); at the end {:.0} MB = {:.0} MB anonymous + {:.0} MB \
         file-backed (SQLite's mmap of the database, shared page cache)",
        mb(hub_end.hwm_kb),
        mb(hub_end.rss_kb),
        mb(hub_end.rss_anon_kb),
        mb(hub_end.rss_file_kb)
    );
    println!(
        "CPU during the campaign: hub {:.2} cores ({:.2} ms/token), bench (TSP sim + devices) {:.2} \
         cores, other processes {:.2} cores; database {db_mb:.0} MB at the start",
        f.hub_cpu / f.secs,
        f.hub_cpu * 1000.0 / f.n as f64,
        f.bench_cpu / f.secs,
        f.others / f.secs
    );
    let overall_calls = (m.end.tsp_calls.0 - m.start.tsp_calls.0) as f64 / f.secs;
    println!(
        "TSP: {} repersoToken, {} newData call(s) accepted, {} ATC reset(s), {} call(s) refused \
         with 503; calls/s overall {overall_calls:.1}, from the 1st to the 9th tenth {:.1}{}",
        tsp.reperso_calls,
        tsp.new_data_calls_accepted,
        tsp.atc_resets,
        tsp.rate_limited,
        f.achieved,
        args.tsp_rate
            .map(|r| format!(
                " (R = {r}: {:+.2} %)",
                (f.achieved - f64::from(r)) * 100.0 / f64::from(r)
            ))
            .unwrap_or_default()
    );
    println!(
        "devices: {} confirmed, {} profile(s) opened and checked (v2, transit record, \
         card master key, PSN, PAR), {} refused, {} error(s)",
        f.confirmed,
        m.opened,
        m.refused.len(),
        m.errors.len()
    );
    println!(
        "campaign: done {}, failed {}, steps {}",
        f.done, f.failed, m.campaign_view["steps"]
    );
}

fn checks(
    args: &CampaignArgs,
    m: &Measured,
    f: &Figures,
    tsp: &tokenhub_sim::TspSimStatus,
) -> Vec<(bool, String)> {
    let (n, done, failed, confirmed) = (f.n, f.done, f.failed, f.confirmed);
    let mut checks: Vec<(bool, String)> = vec![
        (done == n, format!("the campaign did {done} of {n}")),
        (failed == 0, format!("{failed} token(s) failed")),
        (
            confirmed == n,
            format!("{confirmed} of {n} devices confirmed"),
        ),
        (
            tsp.atc_resets as usize == n,
            format!("the TSP reset {} ATC(s), not {n}", tsp.atc_resets),
        ),
        (
            tsp.new_data_calls_rejected_total() == 0,
            format!(
                "the hub refused recovered data: {:?}",
                tsp.new_data_calls_rejected
            ),
        ),
        (
            m.refused.is_empty(),
            format!(
                "profiles refused by devices: {:?}",
                m.refused.iter().take(3).collect::<Vec<_>>()
            ),
        ),
        (
            m.errors.is_empty(),
            format!(
                "device errors: {:?}",
                m.errors.iter().take(3).collect::<Vec<_>>()
            ),
        ),
        (
            m.opened >= n.div_ceil(args.check_every),
            format!("only {} profile(s) opened", m.opened),
        ),
    ];
    if let Some(r) = args.tsp_rate {
        checks.push((
            tsp.rate_limited == 0,
            format!(
                "{} call(s) refused with 503 by the TSP's rate",
                tsp.rate_limited
            ),
        ));
        if m.marks.len() >= 3 {
            checks.push((
                (f.achieved - f64::from(r)).abs() <= RATE_TOLERANCE * f64::from(r),
                format!(
                    "the TSP saw {:.1} calls/s, not within 3 % of {r}",
                    f.achieved
                ),
            ));
        }
    }
    checks
}

fn print_goals(f: &Figures, hub_end: &ProcStats) {
    let steady: Vec<f64> = f.tenths.iter().skip(1).copied().collect();
    let (slowest, fastest) = steady
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    let rss_mb = mb(hub_end.hwm_kb);
    println!();
    println!(
        "goals: 1M tokens in <= 10 min ({:.0} tokens/s): {}; hub RSS <= {GOAL_RSS_MB:.0} MB: {} \
         ({rss_mb:.0} MB); time per token flat: slowest / fastest tenth after the first = {:.2}",
        GOAL_TOKENS_PER_SECOND,
        if f.tps >= GOAL_TOKENS_PER_SECOND {
            "met at this size"
        } else {
            "NOT met"
        },
        if rss_mb <= GOAL_RSS_MB {
            "met at this size"
        } else {
            "NOT met"
        },
        if fastest > 0.0 {
            slowest / fastest
        } else {
            f64::NAN
        },
    );
}

fn print_summary(
    args: &CampaignArgs,
    m: &Measured,
    f: &Figures,
    hub_end: &ProcStats,
    tsp: &tokenhub_sim::TspSimStatus,
    db_mb: f64,
) {
    let tenths_text: Vec<String> = f.tenths.iter().map(|r| format!("{r:.0}")).collect();
    println!();
    println!(
        "summary tokens={} seconds={:.1} tokens_per_s={:.1} campaign_s={:.1} deploy_s={:.2} \
         tenths_tokens_per_s={} hub_rss_peak_mb={:.0} hub_rss_anon_mb={:.0} hub_rss_file_mb={:.0} \
         hub_cpu_cores={:.2} hub_cpu_ms_per_token={:.2} bench_cpu_cores={:.2} others_cores={:.2} \
         campaign_rate={} max_in_flight={} tsp_rate={} tsp_calls_per_s={:.1} rate_limited={} \
         done={} failed={} atc_resets={} opened={} db_mb={db_mb:.0}",
        f.n,
        f.secs,
        f.tps,
        m.campaign.as_secs_f64(),
        m.deploy.as_secs_f64(),
        tenths_text.join("/"),
        mb(hub_end.hwm_kb),
        mb(hub_end.rss_anon_kb),
        mb(hub_end.rss_file_kb),
        f.hub_cpu / f.secs,
        f.hub_cpu * 1000.0 / f.n as f64,
        f.bench_cpu / f.secs,
        f.others / f.secs,
        args.campaign_rate,
        args.max_in_flight,
        args.tsp_rate.map_or("none".to_string(), |r| r.to_string()),
        f.achieved,
        tsp.rate_limited,
        f.done,
        f.failed,
        tsp.atc_resets,
        m.opened,
    );
}
