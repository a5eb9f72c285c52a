//! A TSP's health as the hub's checks (`GET {baseUrl}/healthCheck`) find it: `UNKNOWN` until
//! the first answer, `DOWN` after `down_after` failures in a row, `UP` again after `up_after`
//! successes in a row (from `UNKNOWN`, the first success). The outbox holds a `DOWN` TSP's calls.

use super::named::named_enum;

named_enum! {
    /// Where a TSP's health stands.
    pub enum TspHealthState ("a TSP health state") {
        /// Not checked yet (or not since this node started).
        Unknown = "UNKNOWN",
        Up = "UP",
        /// Failed `down_after` checks in a row: its calls are held.
        Down = "DOWN",
    }
}

/// How many checks in a row change a TSP's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Failures in a row that make a TSP `DOWN` (at least 1).
    pub down_after: u32,
    /// Successes in a row that bring a `DOWN` TSP back `UP` (at least 1).
    pub up_after: u32,
}

/// A TSP's health: the state, the run of results that leads to the next change, and when things
/// last happened (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TspHealth {
    pub state: TspHealthState,
    pub consecutive_failures: u32,
    /// Successes in a row (what brings a `DOWN` TSP back).
    pub consecutive_successes: u32,
    /// How long the last successful check took.
    pub latency_ms: Option<i64>,
    pub last_check_ms: Option<i64>,
    /// When the state last changed.
    pub last_change_ms: Option<i64>,
    /// When the TSP last called the hub's own `healthCheck`.
    pub last_hub_check_ms: Option<i64>,
}

impl Default for TspHealth {
    fn default() -> Self {
        Self {
            state: TspHealthState::Unknown,
            consecutive_failures: 0,
            consecutive_successes: 0,
            latency_ms: None,
            last_check_ms: None,
            last_change_ms: None,
            last_hub_check_ms: None,
        }
    }
}

impl TspHealth {
    /// Applies one check's result (`Some(latency)`: it answered `2xx`; `None`: it failed) made at
    /// `now`; returns whether the state changed.
    pub fn observe(&mut self, answered_in_ms: Option<i64>, now: i64, t: Thresholds) -> bool {
        self.last_check_ms = Some(now);
        let next = match answered_in_ms {
            Some(ms) => {
                self.latency_ms = Some(ms);
                self.consecutive_failures = 0;
                self.consecutive_successes = self.consecutive_successes.saturating_add(1);
                match self.state {
                    TspHealthState::Down if self.consecutive_successes < t.up_after.max(1) => {
                        TspHealthState::Down
                    }
                    _ => TspHealthState::Up,
                }
            }
            None => {
                self.latency_ms = None;
                self.consecutive_successes = 0;
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                if self.consecutive_failures >= t.down_after.max(1) {
                    TspHealthState::Down
                } else {
                    self.state
                }
            }
        };
        let changed = next != self.state;
        if changed {
            self.state = next;
            self.last_change_ms = Some(now);
        }
        changed
    }

    /// Whichever of two views of one TSP was checked last (another node's stored one, this
    /// node's live one), with the latest call the TSP made to the hub of both.
    pub fn newest(self, other: TspHealth) -> TspHealth {
        let hub = self.last_hub_check_ms.max(other.last_hub_check_ms);
        let mut newest = if other.last_check_ms > self.last_check_ms {
            other
        } else {
            self
        };
        newest.last_hub_check_ms = hub;
        newest
    }

    /// Whether `self` differs from `stored` by more than the times and latency of its checks:
    /// what is written to the store at once (the rest is written now and then).
    pub fn differs_much_from(&self, stored: &TspHealth) -> bool {
        self.state != stored.state
            || self.consecutive_failures != stored.consecutive_failures
            || (self.last_hub_check_ms.is_some() && stored.last_hub_check_ms.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        down_after: 3,
        up_after: 2,
    };

    #[test]
    fn unknown_then_up_then_down_after_n_failures_then_up_after_m_successes() {
        let mut h = TspHealth::default();
        assert_eq!(h.state, TspHealthState::Unknown);
        assert!(h.observe(Some(12), 1, T));
        assert_eq!((h.state, h.latency_ms), (TspHealthState::Up, Some(12)));
        assert!(!h.observe(None, 2, T));
        assert!(!h.observe(None, 3, T));
        assert_eq!((h.state, h.consecutive_failures), (TspHealthState::Up, 2));
        assert!(h.observe(None, 4, T));
        assert_eq!(h.state, TspHealthState::Down);
        assert_eq!(h.last_change_ms, Some(4));
        assert!(!h.observe(None, 5, T), "more failures change nothing");
        assert!(!h.observe(Some(5), 6, T), "one success is not enough");
        assert_eq!((h.state, h.consecutive_failures), (TspHealthState::Down, 0));
        assert!(!h.observe(None, 7, T), "a failure starts the run again");
        assert!(!h.observe(Some(5), 8, T));
        assert!(h.observe(Some(5), 9, T));
        assert_eq!((h.state, h.last_change_ms), (TspHealthState::Up, Some(9)));
        assert_eq!(h.last_check_ms, Some(9));
    }

    #[test]
    fn a_tsp_never_answering_goes_from_unknown_to_down() {
        let mut h = TspHealth::default();
        assert!(!h.observe(None, 1, T));
        assert!(!h.observe(None, 2, T));
        assert_eq!(h.state, TspHealthState::Unknown);
        assert!(h.observe(None, 3, T));
        assert_eq!(h.state, TspHealthState::Down);
    }

    #[test]
    fn the_newest_check_wins_and_keeps_the_latest_hub_check() {
        let mut stored = TspHealth::default();
        stored.observe(None, 10, T);
        stored.last_hub_check_ms = Some(50);
        let mut live = TspHealth::default();
        live.observe(Some(3), 20, T);
        live.last_hub_check_ms = Some(40);
        let n = stored.clone().newest(live.clone());
        assert_eq!(
            (n.state, n.last_hub_check_ms),
            (TspHealthState::Up, Some(50))
        );
        let n = live.newest(stored);
        assert_eq!(n.last_check_ms, Some(20));
    }
}
