//! Each TSP's calls kept to its agreed rate, by every caller of the node (the outbox's lane,
//! the calls made inline) and, on PostgreSQL, by every node together: there the bucket is the
//! TSP's row in the database ([`crate::store::tsp_rate`]), so N nodes never call a TSP at N
//! times its rate. On SQLite, a single node, the bucket is in process ([`Pacer`]).

use crate::clock::Clock;
use crate::pacer::{burst, Pacer};
use crate::store::{Dialect, Store, StoreError};
use std::time::Duration;

/// The longest a caller held back by the rate waits before asking again (the TSP's rate may
/// have been raised meanwhile).
const MAX_WAIT: Duration = Duration::from_millis(250);
/// How often a caller held back by an in-process bucket looks again.
const LOCAL_POLL: Duration = Duration::from_millis(20);

/// The TSPs' buckets: shared in the store (PostgreSQL) or in this process (SQLite).
pub struct TspPacer {
    /// `None`: the buckets are the store's rows.
    local: Option<Pacer>,
}

/// Units granted by a take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Calls that may be made now.
    pub units: i64,
    /// When none was granted, how long until one may be.
    pub next_in: Duration,
}

impl TspPacer {
    /// Shared buckets on PostgreSQL, in-process ones on SQLite.
    pub fn for_store(store: &Store) -> Self {
        let local = match store.dialect() {
            Dialect::Postgres => None,
            Dialect::Sqlite => Some(Pacer::default()),
        };
        Self { local }
    }

    /// How many calls a lane claims at once for a TSP of `rate` calls a second: what its bucket
    /// holds at most, so they can leave together when a pause filled it.
    pub fn batch(rate: i64) -> i64 {
        burst(rate.max(1)).floor() as i64
    }

    /// Takes up to `want` units of `tsp_id`'s rate (`rate` calls a second) at once. `now_ms` is
    /// the hub's clock (the in-process buckets); the shared ones go by the database's.
    pub async fn take(
        &self,
        store: &Store,
        now_ms: i64,
        tsp_id: &str,
        rate: i64,
        want: i64,
    ) -> Result<Grant, StoreError> {
        let rate = rate.max(1);
        match &self.local {
            Some(pacer) => {
                let units = pacer.allowance(tsp_id, rate, now_ms).clamp(0, want);
                pacer.spend(tsp_id, units);
                Ok(Grant {
                    units,
                    next_in: LOCAL_POLL.min(Duration::from_secs_f64(1.0 / rate as f64)),
                })
            }
            None => {
                let taken = store
                    .take_tsp_units(tsp_id, rate, burst(rate), want)
                    .await?;
                Ok(Grant {
                    units: taken.units,
                    next_in: wait_for_one(taken.credit, rate),
                })
            }
        }
    }

    /// Waits until one unit of `tsp_id`'s rate is free and takes it (for a call made inline,
    /// such as createToken).
    pub async fn acquire(
        &self,
        store: &Store,
        clock: &dyn Clock,
        tsp_id: &str,
        rate: i64,
    ) -> Result<(), StoreError> {
        loop {
            let grant = self.take(store, clock.now_ms(), tsp_id, rate, 1).await?;
            if grant.units > 0 {
                return Ok(());
            }
            tokio::time::sleep(grant.next_in).await;
        }
    }
}

/// How long a bucket of `rate` a second holding `credit` takes to hold one unit.
fn wait_for_one(credit: f64, rate: i64) -> Duration {
    let secs = ((1.0 - credit) / rate.max(1) as f64).max(0.0);
    Duration::from_secs_f64(secs).clamp(Duration::from_millis(1), MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_held_back_waits_for_the_missing_part_of_one_unit() {
        assert_eq!(wait_for_one(0.0, 40), Duration::from_millis(25));
        assert_eq!(wait_for_one(0.5, 10), Duration::from_millis(50));
        assert_eq!(
            wait_for_one(0.0, 1),
            MAX_WAIT,
            "asks again at least this often"
        );
        assert_eq!(
            wait_for_one(0.9999, 40),
            Duration::from_millis(1),
            "never spins"
        );
    }
}
