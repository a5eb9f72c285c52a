//! Token buckets that keep the hub's own pace: how many tokens a campaign may start, how many
//! calls a second go to a TSP. Kept in this process: a TSP's calls are paced here on SQLite (a
//! single node); on PostgreSQL its bucket is a row every node shares (`store::tsp_rate`), with
//! the same [`burst`].
//!
//! Hand-written rather than `governor`: each key has its own rate (a TSP's agreed rate, a
//! campaign's setting), read at each call, and a campaign asks how many units it may take at once.

use std::collections::HashMap;
use std::sync::Mutex;

/// How much credit a bucket holds at most, in seconds of its rate: small, so that calls leave
/// evenly and arrive at the TSP within its own bucket even when they are delayed on the way.
const BURST_SECONDS: f64 = 0.2;

/// The most credit a bucket of `rate` a second holds: [`BURST_SECONDS`] of it, at least one.
pub fn burst(rate: i64) -> f64 {
    (BURST_SECONDS * rate as f64).max(1.0)
}

/// A token bucket per key (a campaign's starts, a TSP's calls): credit refills at `rate` per
/// second, up to [`BURST_SECONDS`] of it (at least one), so a pause never turns into a burst.
#[derive(Default)]
pub struct Pacer {
    credits: Mutex<HashMap<String, (f64, i64)>>,
}

impl Pacer {
    /// How many units `key` may take now at `rate` per second.
    pub fn allowance(&self, key: &str, rate: i64, now: i64) -> i64 {
        let mut map = self.credits.lock().unwrap_or_else(|p| p.into_inner());
        let (credit, last) = map.entry(key.to_string()).or_insert((1.0, now));
        let elapsed = (now - *last).max(0) as f64 / 1000.0;
        *last = now;
        *credit = (*credit + elapsed * rate as f64).min(burst(rate));
        credit.floor() as i64
    }

    /// Takes `n` units of `key`'s credit.
    pub fn spend(&self, key: &str, n: i64) {
        let mut map = self.credits.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((credit, _)) = map.get_mut(key) {
            *credit -= n as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_allows_the_rate_and_no_burst_after_a_pause() {
        let p = Pacer::default();
        assert_eq!(p.allowance("c", 10, 0), 1, "one to start with");
        p.spend("c", 1);
        assert_eq!(p.allowance("c", 10, 100), 1, "10/s is one every 100 ms");
        p.spend("c", 1);
        assert_eq!(p.allowance("c", 10, 150), 0);
        assert_eq!(p.allowance("c", 10, 200), 1);
        p.spend("c", 1);
        assert_eq!(p.allowance("c", 10, 60_000), 2, "at most 0.2 s of credit");
        assert_eq!(
            p.allowance("other", 1000, 60_000),
            1,
            "campaigns are paced apart"
        );
    }

    #[test]
    fn one_a_second_is_never_stuck_below_one() {
        let p = Pacer::default();
        assert_eq!(p.allowance("slow", 1, 0), 1);
        p.spend("slow", 1);
        assert_eq!(p.allowance("slow", 1, 500), 0);
        assert_eq!(p.allowance("slow", 1, 1_000), 1);
        p.spend("slow", 1);
        assert_eq!(
            p.allowance("slow", 1, 90_000),
            1,
            "a pause gives one start, not ninety"
        );
    }
}
