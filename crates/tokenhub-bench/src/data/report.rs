//! The data bench's tables, verdicts and one-line summary.

use super::measure::{Histogram, Samples};
use super::{DataArgs, GOAL_P99_MS, GOAL_RATIO};

/// On PostgreSQL: the hub's max throughput over the baseline's (one `INSERT` and its commit per
/// request), and its p99 at 1,000 req/s.
pub(crate) const GOAL_BASELINE_RATIO: f64 = 1.5;
pub(crate) const GOAL_PG_P99_MS: f64 = 10.0;

/// `max` and `fixed`: the parse-only server's phase, then the hub's; `baseline`: on PostgreSQL,
/// the baseline's max and fixed-rate phases, and the hub's calls per group commit (fixed rate,
/// max).
pub(crate) fn report(
    args: &DataArgs,
    backend: &str,
    max: [&Samples; 2],
    fixed: [&Samples; 2],
    baseline: Option<(&[Samples; 2], [Option<f64>; 2])>,
) {
    let ratio = max[1].completed_per_sec() / max[0].completed_per_sec();
    if !args.fixed_only {
        report_max(args, backend, max, ratio);
    }
    if !args.max_only {
        report_fixed(args, backend, fixed);
    }
    if let Some((b, per_group)) = baseline {
        report_baseline(args, [&b[0], &b[1]], [max[1], fixed[1]], per_group);
    }
    let hub = fixed[1];
    // One line to collect runs with grep.
    let pmax = Histogram::new(&max[0].latency_us);
    let hmax = Histogram::new(&max[1].latency_us);
    let pfix = Histogram::new(&fixed[0].latency_us);
    let hfix = Histogram::new(&hub.latency_us);
    println!();
    println!(
        "summary backend={} parse_rps={:.0} hub_rps={:.0} ratio={ratio:.3} parse_max_p50={:.2} parse_max_p99={:.2} \
         hub_max_p50={:.2} hub_max_p99={:.2} parse_fixed_p50={:.2} parse_fixed_p99={:.2} \
         hub_fixed_rate={:.0} hub_fixed_p50={:.2} hub_fixed_p90={:.2} hub_fixed_p99={:.2} hub_fixed_max={:.2} \
         hub_fixed_p99_send={:.2} non_204={} cpu_parse_max={} cpu_hub_max={} cpu_hub_fixed={}{}",
        backend,
        max[0].completed_per_sec(),
        max[1].completed_per_sec(),
        pmax.ms(50.0),
        pmax.ms(99.0),
        hmax.ms(50.0),
        hmax.ms(99.0),
        pfix.ms(50.0),
        pfix.ms(99.0),
        hub.completed_per_sec(),
        hfix.ms(50.0),
        hfix.ms(90.0),
        hfix.ms(99.0),
        hfix.max_ms(),
        Histogram::new(&hub.service_us).ms(99.0),
        max[0].non_204 + max[1].non_204 + fixed[0].non_204 + hub.non_204,
        max[0].cpu_cores(),
        max[1].cpu_cores(),
        hub.cpu_cores(),
        baseline.map_or(String::new(), |([bmax, bfix], per_group)| format!(
            " base_rps={:.0} base_ratio={:.3} base_max_p99={:.2} base_fixed_p99={:.2} \
             cpu_base_max={} cpu_base_fixed={} per_group_fixed={:.1} per_group_max={:.1}",
            bmax.completed_per_sec(),
            max[1].completed_per_sec() / bmax.completed_per_sec(),
            Histogram::new(&bmax.latency_us).ms(99.0),
            Histogram::new(&bfix.latency_us).ms(99.0),
            bmax.cpu_cores(),
            bfix.cpu_cores(),
            per_group[0].unwrap_or(f64::NAN),
            per_group[1].unwrap_or(f64::NAN),
        )),
    );
    println!(
        "(CPU cores: this process [+ the PostgreSQL server] + every other process of the machine, \
         during the measured window; others above ~0.1 mean the run was disturbed. CPU ms/req: \
         this process [+ the PostgreSQL server] per answered request)"
    );
}

pub(crate) fn report_max(args: &DataArgs, backend: &str, max: [&Samples; 2], ratio: f64) {
    println!();
    println!(
        "== max throughput: {} workers, closed loop, {} s ({backend}) ==",
        args.concurrency, args.duration
    );
    println!(
        "{:<12} {:>9} {:>9} {:>8} {:>8} {:>8} {:>16} {:>11}",
        "server", "requests", "req/s", "p50 ms", "p99 ms", "non-204", "CPU cores", "CPU ms/req"
    );
    for s in max {
        let h = Histogram::new(&s.latency_us);
        println!(
            "{:<12} {:>9} {:>9.0} {:>8.2} {:>8.2} {:>8} {:>16} {:>11}{}",
            s.server,
            s.latency_us.len(),
            s.completed_per_sec(),
            h.ms(50.0),
            h.ms(99.0),
            s.non_204,
            s.cpu_cores(),
            s.cpu_ms_per_request(),
            if s.exhausted {
                "  (ran out of tokens: rate over the shorter window)"
            } else {
                ""
            }
        );
    }
    println!(
        "hub / parse-only throughput: {ratio:.2} (goal >= {GOAL_RATIO:.2}): {}",
        verdict(ratio >= GOAL_RATIO)
    );
}

pub(crate) fn report_fixed(args: &DataArgs, backend: &str, fixed: [&Samples; 2]) {
    println!();
    println!(
        "== fixed rate: {} req/s, open loop (at most {} in flight), {} s, latency from the \
         scheduled start ({backend}) ==",
        args.rate, args.max_in_flight, args.duration
    );
    println!(
        "{:<12} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>13} {:>16}",
        "server",
        "sent",
        "achieved",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "non-204",
        "p99 from send",
        "CPU cores"
    );
    for s in fixed {
        let h = Histogram::new(&s.latency_us);
        let service = Histogram::new(&s.service_us);
        println!(
            "{:<12} {:>8} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8} {:>13.2} {:>16}{}",
            s.server,
            s.latency_us.len(),
            s.completed_per_sec(),
            h.ms(50.0),
            h.ms(90.0),
            h.ms(99.0),
            h.max_ms(),
            s.non_204,
            service.ms(99.0),
            s.cpu_cores(),
            if s.exhausted {
                "  (ran out of tokens)"
            } else {
                ""
            }
        );
    }
    let hub = fixed[1];
    let hub_p99 = Histogram::new(&hub.latency_us).ms(99.0);
    let kept_up = hub.completed_per_sec() >= 0.99 * f64::from(args.rate) && !hub.exhausted;
    println!(
        "hub p99 at {} req/s: {hub_p99:.2} ms (goal <= {GOAL_P99_MS:.1} ms), achieved {:.0} req/s, {} non-204: {}",
        args.rate,
        hub.completed_per_sec(),
        hub.non_204,
        verdict(hub_p99 <= GOAL_P99_MS && kept_up && hub.non_204 == 0)
    );
}

/// The baseline's rows beside the hub's (`baseline` and `hub`: max, then fixed rate), and the
/// PostgreSQL goals' verdicts.
fn report_baseline(
    args: &DataArgs,
    baseline: [&Samples; 2],
    hub: [&Samples; 2],
    per_group: [Option<f64>; 2],
) {
    println!();
    println!(
        "== baseline: one INSERT of the body and its commit per request, same driver and pool \
         size, same server =="
    );
    println!(
        "{:<22} {:>9} {:>8} {:>8} {:>16} {:>11}",
        "server, phase", "req/s", "p50 ms", "p99 ms", "CPU cores", "CPU ms/req"
    );
    let phases = [
        ("max", 0, !args.fixed_only),
        ("fixed rate", 1, !args.max_only),
    ];
    for (phase, i, shown) in phases {
        for s in [baseline[i], hub[i]].into_iter().filter(|_| shown) {
            let h = Histogram::new(&s.latency_us);
            println!(
                "{:<22} {:>9.0} {:>8.2} {:>8.2} {:>16} {:>11}",
                format!("{}, {phase}", s.server),
                s.completed_per_sec(),
                h.ms(50.0),
                h.ms(99.0),
                s.cpu_cores(),
                s.cpu_ms_per_request(),
            );
        }
    }
    if let [Some(fixed), Some(max)] = per_group {
        println!("hub calls per group commit: {fixed:.1} at the fixed rate, {max:.1} at max");
    }
    if !args.fixed_only {
        let ratio = hub[0].completed_per_sec() / baseline[0].completed_per_sec();
        println!(
            "hub / baseline throughput: {ratio:.2} (goal >= {GOAL_BASELINE_RATIO:.1}): {}",
            verdict(ratio >= GOAL_BASELINE_RATIO)
        );
    }
    if !args.max_only {
        let p99 = Histogram::new(&hub[1].latency_us).ms(99.0);
        let kept_up = hub[1].completed_per_sec() >= 0.99 * f64::from(args.rate);
        println!(
            "hub p99 at {} req/s on PostgreSQL: {p99:.2} ms (goal <= {GOAL_PG_P99_MS:.0} ms at \
             1000 req/s): {}",
            args.rate,
            verdict(p99 <= GOAL_PG_P99_MS && kept_up && hub[1].non_204 == 0)
        );
    }
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "NOT MET"
    }
}
