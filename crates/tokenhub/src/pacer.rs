//! The hub's own pace: how many tokens a campaign may start (a token bucket per campaign), and
//! when each call to a TSP may leave ([`Ceiling`], slots kept in this process on SQLite, a single
//! node; on PostgreSQL in a row every node shares, `store::tsp_rate`).
//!
//! Hand-written rather than `governor`: each key has its own rate (a TSP's agreed rate, a
//! campaign's setting), read at each call, and a campaign asks how many units it may take at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How much credit a bucket holds at most, in seconds of its rate: enough for a late round to
/// catch up, small enough that a pause never turns into a burst.
const BURST_SECONDS: f64 = 0.2;

/// The most credit a bucket of `rate` a second holds: [`BURST_SECONDS`] of it, at least one.
pub fn burst(rate: i64) -> f64 {
    (BURST_SECONDS * rate as f64).max(1.0)
}

/// A token bucket per key (a campaign's starts): credit refills at `rate` per second, up to
/// [`BURST_SECONDS`] of it (at least one), so a pause never turns into a burst.
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

/// The share of a TSP's agreed rate its slots are spaced at. A second then holds at most
/// `rate × share` slots plus one at its edge, fewer than the rate even when the calls' way to the
/// TSP varies by up to `1 / share − 1` of a second, and the mean stays within a few hundredths
/// of the rate.
const CEILING_SHARE: f64 = 0.975;
/// How far ahead of time slots are reserved: a caller that reserves again within this never
/// leaves a slot unused, and one that comes later does not get the missed slots back (a pause
/// never turns into a burst).
pub const HORIZON: Duration = Duration::from_millis(200);

/// A TSP's agreed rate as a ceiling no second may pass where its calls arrive: each call gets a
/// slot, the slots evenly spaced a little under the rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ceiling {
    /// The time between two slots.
    pub every: Duration,
}

/// Slots reserved for calls: `n` of them, the first `first_in` from now, then one `every`.
/// With none, `first_in` is when to ask again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots {
    pub n: i64,
    pub first_in: Duration,
    pub every: Duration,
}

impl Slots {
    /// How long from now the `i`-th slot (from 0) is.
    pub fn nth(&self, i: i64) -> Duration {
        self.first_in + self.every.mul_f64(i.max(0) as f64)
    }
}

impl Ceiling {
    pub fn new(rate: i64) -> Self {
        Self {
            every: Duration::from_secs_f64(1.0 / (CEILING_SHARE * rate.max(1) as f64)),
        }
    }

    /// Reserves up to `want` slots, the first at the next free one (`first`, already at or after
    /// now; `first_in` from now), none later than [`HORIZON`] from now. Returns them and how far
    /// the next free slot moves from `first`.
    pub fn reserve(&self, first_in: Duration, want: i64) -> (Slots, Duration) {
        let none = |first_in| Slots {
            n: 0,
            first_in,
            every: self.every,
        };
        if want <= 0 {
            return (none(Duration::ZERO), Duration::ZERO);
        }
        let Some(room) = HORIZON.checked_sub(first_in) else {
            return (none(ask_again_in(first_in)), Duration::ZERO);
        };
        let fit = (room.as_secs_f64() / self.every.as_secs_f64()).floor() as i64 + 1;
        let n = want.min(fit);
        let slots = Slots {
            n,
            first_in,
            every: self.every,
        };
        (slots, self.every.mul_f64(n as f64))
    }
}

/// With the next free slot `first_in` from now, beyond [`HORIZON`]: when to ask again, once it
/// is half the horizon away (so that a reservation gets a few slots, not one at a time).
pub fn ask_again_in(first_in: Duration) -> Duration {
    first_in.saturating_sub(HORIZON / 2)
}

/// The next free slot of each TSP, in this process (a single node).
#[derive(Default)]
pub struct Schedule {
    next: Mutex<HashMap<String, Instant>>,
}

impl Schedule {
    /// Reserves up to `want` of `key`'s slots under `ceiling`.
    pub fn reserve(&self, key: &str, ceiling: Ceiling, want: i64) -> Slots {
        let now = Instant::now();
        let mut map = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let next = map.entry(key.to_string()).or_insert(now);
        let first = (*next).max(now);
        let (slots, moved) = ceiling.reserve(first - now, want);
        *next = first + moved;
        slots
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

    /// Reserved as fast as allowed, the slots of a ceiling put fewer calls than the rate in any
    /// second, even shifted by the jitter it allows, and keep the mean within 3 % of the rate.
    #[test]
    fn a_ceilings_slots_never_fill_a_second_and_keep_close_to_the_rate() {
        for rate in [1, 7, 40, 100, 1_000, 5_000] {
            let c = Ceiling::new(rate);
            let jitter = 1.0 / CEILING_SHARE - 1.0 - 1e-3;
            // Time in seconds; a caller that asks every millisecond for as many as it can get.
            let (mut next, mut slots) = (0.0f64, Vec::new());
            for ms in 0..30_000 {
                let now = ms as f64 / 1000.0;
                let first = next.max(now);
                let (got, moved) = c.reserve(Duration::from_secs_f64(first - now), 1_000_000);
                for i in 0..got.n {
                    slots.push(now + got.nth(i).as_secs_f64());
                }
                next = first + moved.as_secs_f64();
            }
            // The worst jitter: every other call late by all of it.
            let arrivals: Vec<f64> = slots
                .iter()
                .enumerate()
                .map(|(i, t)| if i % 2 == 0 { *t } else { t - jitter })
                .collect();
            let mut sorted = arrivals.clone();
            sorted.sort_by(f64::total_cmp);
            let mut end = 0;
            let mut most = 0;
            for (start, t) in sorted.iter().enumerate() {
                while end < sorted.len() && sorted[end] < t + 1.0 {
                    end += 1;
                }
                most = most.max(end - start);
            }
            assert!(most as i64 <= rate, "{rate}/s: {most} in one second");
            let mean = (slots.len() - 1) as f64 / (slots[slots.len() - 1] - slots[0]);
            assert!(
                mean >= 0.97 * rate as f64 && mean < rate as f64,
                "{rate}/s: {mean:.2} a second on average"
            );
        }
    }

    #[test]
    fn slots_are_reserved_no_further_ahead_than_the_horizon() {
        let c = Ceiling::new(100); // a slot every 10.26 ms
        let (s, moved) = c.reserve(Duration::ZERO, 100);
        assert_eq!(s.n, 20, "0, 10, 20, …, 195 ms: within 200 ms");
        assert_eq!(moved, c.every * 20);
        let (s, _) = c.reserve(Duration::from_millis(210), 1);
        assert_eq!(
            (s.n, s.first_in),
            (0, Duration::from_millis(110)),
            "ask again in 110 ms"
        );
        let (s, moved) = c.reserve(Duration::from_millis(3), 2);
        assert_eq!((s.n, s.nth(1)), (2, Duration::from_millis(3) + c.every));
        assert_eq!(moved, c.every * 2);
        let local = Schedule::default();
        assert_eq!(local.reserve("t", c, 3).n, 3);
        let later = local.reserve("t", c, 1);
        assert!(later.first_in > Duration::from_millis(25), "{later:?}");
        assert_eq!(local.reserve("other", c, 1).first_in, Duration::ZERO);
    }
}
