//! Each TSP's calls kept under its agreed rate, by every caller of the node (the outbox's lane,
//! the calls made inline) and, on PostgreSQL, by every node together: each call leaves at a slot
//! of the TSP's [`Ceiling`], and on PostgreSQL the slots are reserved from the TSP's row in the
//! database ([`crate::store::tsp_rate`]), so N nodes never call a TSP at N times its rate. On
//! SQLite, a single node, they are kept in process ([`Schedule`]).

use crate::pacer::{burst, Ceiling, Schedule, Slots};
use crate::store::{Dialect, Store, StoreError};
use std::time::Duration;
use tokio::time::Instant;

/// The longest a caller held back by the rate waits before asking again (the TSP's rate may
/// have been raised meanwhile).
const MAX_WAIT: Duration = Duration::from_millis(250);

/// How late after its slot a call may still leave. The ceiling leaves room for calls whose way to
/// the TSP varies by a fortieth of a second: part of it for the wake-up here, the rest for the
/// request on its way.
const LATE: Duration = Duration::from_millis(8);

/// The TSPs' call slots: shared in the store (PostgreSQL) or in this process (SQLite).
pub struct TspPacer {
    /// `None`: the slots are the store's rows.
    local: Option<Schedule>,
}

impl TspPacer {
    /// Shared slots on PostgreSQL, in-process ones on SQLite.
    pub fn for_store(store: &Store) -> Self {
        let local = match store.dialect() {
            Dialect::Postgres => None,
            Dialect::Sqlite => Some(Schedule::default()),
        };
        Self { local }
    }

    /// How many calls a lane claims at once for a TSP of `rate` calls a second: a fifth of a
    /// second's worth, held and let go as slots are reserved for them (a claim per slot would
    /// cost a round trip per call).
    pub fn batch(rate: i64) -> i64 {
        burst(rate.max(1)).floor() as i64
    }

    /// Reserves up to `want` slots for calls to `tsp_id` (`rate` calls a second). With none,
    /// the wait before asking again is at most [`MAX_WAIT`].
    pub async fn reserve(
        &self,
        store: &Store,
        tsp_id: &str,
        rate: i64,
        want: i64,
    ) -> Result<Slots, StoreError> {
        let ceiling = Ceiling::new(rate);
        let mut slots = match &self.local {
            Some(schedule) => schedule.reserve(tsp_id, ceiling, want),
            None => store.reserve_tsp_slots(tsp_id, ceiling, want).await?,
        };
        if slots.n == 0 {
            slots.first_in = slots.first_in.clamp(Duration::from_millis(1), MAX_WAIT);
        }
        Ok(slots)
    }

    /// Waits for a slot of `tsp_id`'s rate (for a call made inline, such as createToken).
    pub async fn acquire(&self, store: &Store, tsp_id: &str, rate: i64) -> Result<(), StoreError> {
        let at = self.next_slot(store, tsp_id, rate).await?;
        self.leave_at(store, tsp_id, rate, at).await
    }

    /// Waits for the slot at `at`; when this caller wakes more than [`LATE`] after it (its node
    /// busy), gives it up and waits for another, so that a call held up never lands in the next
    /// slot's second.
    pub async fn leave_at(
        &self,
        store: &Store,
        tsp_id: &str,
        rate: i64,
        mut at: Instant,
    ) -> Result<(), StoreError> {
        loop {
            tokio::time::sleep_until(at).await;
            if at.elapsed() <= LATE {
                return Ok(());
            }
            crate::telemetry::metrics::tsp_slot_missed(tsp_id);
            at = self.next_slot(store, tsp_id, rate).await?;
        }
    }

    /// Reserves one slot of `tsp_id`'s rate: when it is.
    async fn next_slot(
        &self,
        store: &Store,
        tsp_id: &str,
        rate: i64,
    ) -> Result<Instant, StoreError> {
        loop {
            let slots = self.reserve(store, tsp_id, rate, 1).await?;
            let at = Instant::now() + slots.first_in;
            if slots.n > 0 {
                return Ok(at);
            }
            tokio::time::sleep_until(at).await;
        }
    }
}
