//! What a phase measured: latencies, failures, the window, and the CPU the machine spent.

use super::load::Answer;
use std::time::{Duration, Instant};

#[derive(Default)]
pub(crate) struct Samples {
    pub(crate) server: &'static str,
    pub(crate) phase: &'static str,
    /// Latency of every measured request (for the fixed rate: from its scheduled start).
    pub(crate) latency_us: Vec<u64>,
    /// For the fixed rate: from the moment the request was actually sent.
    pub(crate) service_us: Vec<u64>,
    pub(crate) non_204: u64,
    pub(crate) first_failure: Option<String>,
    /// Time over which the measured requests completed.
    pub(crate) window: Duration,
    /// The hub ran out of tokens before the phase's end.
    pub(crate) exhausted: bool,
    /// Requests the open loop scheduled (measured part).
    pub(crate) scheduled: u64,
    /// CPU used during the measured window (Linux only).
    pub(crate) cpu: Option<CpuUse>,
}

impl Samples {
    pub(crate) fn record(&mut self, latency: Duration, service: Option<Duration>, answer: Answer) {
        self.latency_us.push(latency.as_micros() as u64);
        if let Some(s) = service {
            self.service_us.push(s.as_micros() as u64);
        }
        if let Answer::Other(why) = answer {
            self.non_204 += 1;
            self.first_failure.get_or_insert(why);
        }
    }

    pub(crate) fn merge(&mut self, other: Samples) {
        self.latency_us.extend(other.latency_us);
        self.service_us.extend(other.service_us);
        self.non_204 += other.non_204;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        self.exhausted |= other.exhausted;
    }

    /// "own+others" cores busy during the window; "own+postgres+others" on PostgreSQL.
    pub(crate) fn cpu_cores(&self) -> String {
        self.cpu.map_or("-".into(), |c| {
            if c.postgres > 0.005 {
                format!("{:.2}+{:.2}+{:.2}", c.process, c.postgres, c.others)
            } else {
                format!("{:.2}+{:.2}", c.process, c.others)
            }
        })
    }

    pub(crate) fn cpu_ms_per_request(&self) -> String {
        self.cpu.map_or("-".into(), |c| {
            format!(
                "{:.3}",
                (c.process + c.postgres) * 1000.0 / self.completed_per_sec()
            )
        })
    }

    pub(crate) fn completed_per_sec(&self) -> f64 {
        self.latency_us.len() as f64 / self.window.as_secs_f64().max(1e-9)
    }
}

#[derive(Clone, Copy)]
pub(crate) struct CpuUse {
    /// This process: servers, load generator, SQLite threads.
    pub(crate) process: f64,
    /// The PostgreSQL server's processes (0 on SQLite).
    pub(crate) postgres: f64,
    /// Every other process of the machine (e.g. someone's compiler).
    pub(crate) others: f64,
}

/// Samples `/proc` at `from` and at `to`.
pub(crate) fn cpu_during(from: Instant, to: Instant) -> tokio::task::JoinHandle<Option<CpuUse>> {
    tokio::spawn(async move {
        tokio::time::sleep_until(from.into()).await;
        let (a, t0) = (cpu_ticks()?, Instant::now());
        tokio::time::sleep_until(to.into()).await;
        let (b, t1) = (cpu_ticks()?, Instant::now());
        // Linux counts in USER_HZ, 100 per second on every common platform.
        let ticks = 100.0 * (t1 - t0).as_secs_f64();
        let process = b.own.saturating_sub(a.own) as f64 / ticks;
        let postgres = b.postgres.saturating_sub(a.postgres) as f64 / ticks;
        let busy = b.busy.saturating_sub(a.busy) as f64 / ticks;
        Some(CpuUse {
            process,
            postgres,
            others: (busy - process - postgres).max(0.0),
        })
    })
}

pub(crate) struct Ticks {
    pub(crate) own: u64,
    pub(crate) postgres: u64,
    pub(crate) busy: u64,
}

/// User+system ticks of this process, of the `postgres` processes, and the machine's busy ticks.
pub(crate) fn cpu_ticks() -> Option<Ticks> {
    fn process_ticks(stat: &str) -> Option<(String, u64)> {
        let (head, after_name) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1.to_string();
        let f: Vec<&str> = after_name.split_whitespace().collect();
        Some((
            name,
            f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
        ))
    }
    let own = process_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?.1;
    let postgres = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|s| process_ticks(&s))
        .filter(|(name, _)| name == "postgres")
        .map(|(_, t)| t)
        .sum();
    let all = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = all
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let busy = cpu.iter().take(8).sum::<u64>() - cpu.get(3)? - cpu.get(4)?;
    Some(Ticks {
        own,
        postgres,
        busy,
    })
}

/// Percentiles over every sample (sorted once): exact, as an HDR histogram with full precision.
pub(crate) struct Histogram {
    pub(crate) sorted: Vec<u64>,
}

impl Histogram {
    pub(crate) fn new(samples: &[u64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Self { sorted }
    }

    /// The value at percentile `p` (nearest rank), in milliseconds.
    pub(crate) fn ms(&self, p: f64) -> f64 {
        if self.sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.sorted.len()) - 1;
        self.sorted[i] as f64 / 1000.0
    }

    pub(crate) fn max_ms(&self) -> f64 {
        self.ms(100.0)
    }
}

/// The median of `v` (`NaN` when empty).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The p99 of a phase's latencies, in ms.
pub(crate) fn p99(s: &Samples) -> f64 {
    Histogram::new(&s.latency_us).ms(99.0)
}
