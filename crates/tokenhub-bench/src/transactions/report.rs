//! The transactions bench's tables, medians over the runs, verdicts and one-line summary.

use super::{Run, TransactionsArgs, GOAL_ADDED_P99_MS, GOAL_RATIO};
use crate::data::{median, p99, verdict, Histogram, Samples};

/// The median over the runs of `f` of the phase `pick` chooses.
fn med(runs: &[Run], pick: fn(&Run) -> &Samples, f: fn(&Samples) -> f64) -> f64 {
    median(runs.iter().map(|r| f(pick(r))).collect())
}

fn p50(s: &Samples) -> f64 {
    Histogram::new(&s.latency_us).ms(50.0)
}

fn max_ms(s: &Samples) -> f64 {
    Histogram::new(&s.latency_us).max_ms()
}

fn rps(s: &Samples) -> f64 {
    s.completed_per_sec()
}

pub(crate) fn report(args: &TransactionsArgs, backend: &str, runs: &[Run]) {
    println!();
    println!(
        "== max throughput: {} workers, closed loop, {} s ({backend}) ==",
        args.concurrency, args.duration
    );
    println!(
        "{:<5} {:<15} {:>9} {:>8} {:>8} {:>7} {:>16} {:>11}",
        "run", "route", "req/s", "p50 ms", "p99 ms", "failed", "CPU cores", "CPU ms/req"
    );
    for (i, r) in runs.iter().enumerate() {
        for s in [&r.direct_max, &r.hub_max] {
            println!(
                "{:<5} {:<15} {:>9.0} {:>8.2} {:>8.2} {:>7} {:>16} {:>11}",
                i + 1,
                s.server,
                rps(s),
                p50(s),
                p99(s),
                s.non_204,
                s.cpu_cores(),
                s.cpu_ms_per_request()
            );
        }
    }
    let direct_rps = med(runs, |r| &r.direct_max, rps);
    let hub_rps = med(runs, |r| &r.hub_max, rps);
    let ratio = hub_rps / direct_rps;
    println!(
        "medians: tsp-sim direct {direct_rps:.0}/s, hub {hub_rps:.0}/s; hub / direct {ratio:.2} \
         (goal >= {GOAL_RATIO:.2}): {}",
        verdict(ratio >= GOAL_RATIO)
    );

    println!();
    println!(
        "== fixed rate: {} req/s, open loop (at most {} in flight), {} s, latency from the \
         scheduled start ({backend}) ==",
        args.rate, args.max_in_flight, args.duration
    );
    println!(
        "{:<5} {:<15} {:>9} {:>8} {:>8} {:>8} {:>7} {:>13} {:>16}",
        "run",
        "route",
        "achieved",
        "p50 ms",
        "p99 ms",
        "max ms",
        "failed",
        "p99 from send",
        "CPU cores"
    );
    for (i, r) in runs.iter().enumerate() {
        for s in [&r.direct_fixed, &r.hub_fixed] {
            println!(
                "{:<5} {:<15} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>13.2} {:>16}",
                i + 1,
                s.server,
                rps(s),
                p50(s),
                p99(s),
                max_ms(s),
                s.non_204,
                Histogram::new(&s.service_us).ms(99.0),
                s.cpu_cores()
            );
        }
    }
    let (d50, d99, dmax) = (
        med(runs, |r| &r.direct_fixed, p50),
        med(runs, |r| &r.direct_fixed, p99),
        med(runs, |r| &r.direct_fixed, max_ms),
    );
    let (h50, h99, hmax) = (
        med(runs, |r| &r.hub_fixed, p50),
        med(runs, |r| &r.hub_fixed, p99),
        med(runs, |r| &r.hub_fixed, max_ms),
    );
    let added = h99 - d99;
    let hub_rate = med(runs, |r| &r.hub_fixed, rps);
    let kept_up = hub_rate >= 0.99 * f64::from(args.rate);
    println!(
        "medians (ms): tsp-sim direct p50 {d50:.2} p99 {d99:.2} max {dmax:.2}; hub p50 {h50:.2} \
         p99 {h99:.2} max {hmax:.2}"
    );
    println!(
        "the hub adds {added:.2} ms at p99 at {} req/s (goal <= {GOAL_ADDED_P99_MS:.1} ms), \
         achieved {hub_rate:.0} req/s: {}",
        args.rate,
        verdict(added <= GOAL_ADDED_P99_MS && kept_up)
    );
    println!();
    println!(
        "summary backend={backend} runs={} direct_rps={direct_rps:.0} hub_rps={hub_rps:.0} \
         ratio={ratio:.3} direct_p50={d50:.2} direct_p99={d99:.2} direct_max={dmax:.2} \
         hub_p50={h50:.2} hub_p99={h99:.2} hub_max={hmax:.2} added_p99={added:.2}",
        runs.len()
    );
    println!(
        "(CPU cores: this process [+ the PostgreSQL server] + every other process of the machine, \
         during the measured window; others above ~0.1 mean the run was disturbed)"
    );
}
