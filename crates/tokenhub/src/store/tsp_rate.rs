//! The TSPs' shared call slots (PostgreSQL): every node reserves the slots of a TSP's agreed
//! rate from one row, so the nodes together keep under it.
//!
//! A reservation is one statement, outside any transaction, so the row is locked for that
//! statement only. It starts at the row's next free slot, or now by the database's clock
//! (`clock_timestamp()`, read once the row is locked) when that has passed, and moves the next
//! free slot past what it granted. The arithmetic is [`Ceiling::reserve`]'s.

use super::{query, Dialect, Store, StoreError, Writer};
use crate::pacer::{ask_again_in, Ceiling, Slots, HORIZON};
use std::time::Duration;

/// Reserves up to `$4` slots `$2` seconds apart, the first at the next free one (or now), none
/// later than `$3` seconds from now. The `FOR UPDATE` in the first step makes concurrent
/// reservations wait for each other and read the row as the previous one left it.
const RESERVE: &str = "\
    WITH b AS (SELECT next_slot, clock_timestamp() AS t FROM tsp_call_slots \
                WHERE tsp_id = $1 FOR UPDATE), \
         a AS (SELECT t, GREATEST(next_slot, t) AS first FROM b), \
         g AS (SELECT t, first, CASE WHEN first > t + $3::float8 * interval '1 second' THEN 0 \
                 ELSE LEAST($4::bigint, FLOOR(EXTRACT(EPOCH FROM \
                   (t + $3::float8 * interval '1 second' - first))::float8 / $2::float8)::bigint + 1) \
                 END AS n FROM a) \
    UPDATE tsp_call_slots SET next_slot = g.first + g.n * $2::float8 * interval '1 second' FROM g \
     WHERE tsp_id = $1 RETURNING g.n AS n, EXTRACT(EPOCH FROM (g.first - g.t))::float8 AS first_in";

impl Store {
    /// Reserves up to `want` of `tsp_id`'s call slots under `ceiling`. The first call to a TSP
    /// gets a slot at once.
    pub async fn reserve_tsp_slots(
        &self,
        tsp_id: &str,
        ceiling: Ceiling,
        want: i64,
    ) -> Result<Slots, StoreError> {
        let pool = self.shared_slots_pool()?;
        for _ in 0..2 {
            let row = query(RESERVE)
                .bind(tsp_id)
                .bind(ceiling.every.as_secs_f64())
                .bind(HORIZON.as_secs_f64())
                .bind(want.max(0))
                .fetch_optional(pool)
                .await?;
            if let Some(r) = row {
                let n: i64 = r.get("n")?;
                let first_in: f64 = r.get("first_in")?;
                let first_in = Duration::from_secs_f64(first_in.max(0.0));
                return Ok(Slots {
                    n,
                    first_in: match n {
                        0 => ask_again_in(first_in),
                        _ => first_in,
                    },
                    every: ceiling.every,
                });
            }
            query(
                "INSERT INTO tsp_call_slots (tsp_id, next_slot) \
                 VALUES ($1, clock_timestamp()) ON CONFLICT (tsp_id) DO NOTHING",
            )
            .bind(tsp_id)
            .execute(pool)
            .await?;
        }
        Err(StoreError::Corrupt(format!(
            "the call slots of TSP {tsp_id} cannot be created"
        )))
    }

    /// The pool the slots are reserved on: PostgreSQL only (a single SQLite node keeps them in
    /// process).
    fn shared_slots_pool(&self) -> Result<&sqlx::AnyPool, StoreError> {
        match (&self.writer, self.dialect) {
            (Writer::Pool(pool), Dialect::Postgres) => Ok(pool),
            _ => Err(StoreError::Corrupt(
                "shared call slots are kept on PostgreSQL only".into(),
            )),
        }
    }
}
