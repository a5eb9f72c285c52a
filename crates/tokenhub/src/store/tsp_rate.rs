//! The TSPs' shared token buckets (PostgreSQL): every node takes the units of a TSP's agreed
//! rate from one row, so the nodes together keep to it.
//!
//! A take is one statement, outside any transaction, so the row is locked for that statement
//! only. It refills the bucket by the time elapsed on the database's clock (`clock_timestamp()`,
//! read once the row is locked), never more than the burst allows, and grants up to the units
//! asked for at once (a lane takes a batch per round trip). Time only moves the refill point
//! forward: a statement that read the clock before another one committed refills nothing, it
//! never counts the same time twice.

use super::{query, Dialect, Store, StoreError, Writer};

/// What a take gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Taken {
    /// Units granted: calls that may be made now.
    pub units: i64,
    /// Credit left in the bucket after the grant (less than one when `units` fell short).
    pub credit: f64,
}

/// Refills (by the time since the last refill, at `$2` a second, up to `$3`) and takes up to
/// `$4` whole units. The `FOR UPDATE` in the first step makes concurrent takers wait for each
/// other and read the row as the previous one left it.
const TAKE: &str = "\
    WITH b AS (SELECT credit, refilled_at, clock_timestamp() AS t FROM tsp_rate_buckets \
                WHERE tsp_id = $1 FOR UPDATE), \
         a AS (SELECT GREATEST(b.refilled_at, b.t) AS t, \
                      LEAST($3::float8, b.credit + $2::float8 * \
                        GREATEST(0, EXTRACT(EPOCH FROM (b.t - b.refilled_at))::float8)) AS avail \
                 FROM b), \
         g AS (SELECT t, avail, LEAST($4::bigint, FLOOR(avail)::bigint) AS units FROM a) \
    UPDATE tsp_rate_buckets SET credit = g.avail - g.units, refilled_at = g.t FROM g \
     WHERE tsp_id = $1 RETURNING g.units AS units, tsp_rate_buckets.credit AS credit";

impl Store {
    /// Takes up to `want` units of `tsp_id`'s bucket, refilled at `rate` a second and holding at
    /// most `burst` (at least one). The bucket starts with one unit the first time it is used.
    pub async fn take_tsp_units(
        &self,
        tsp_id: &str,
        rate: i64,
        burst: f64,
        want: i64,
    ) -> Result<Taken, StoreError> {
        let pool = self.shared_bucket_pool()?;
        for _ in 0..2 {
            let row = query(TAKE)
                .bind(tsp_id)
                .bind(rate as f64)
                .bind(burst)
                .bind(want)
                .fetch_optional(pool)
                .await?;
            if let Some(r) = row {
                return Ok(Taken {
                    units: r.get("units")?,
                    credit: r.get("credit")?,
                });
            }
            query(
                "INSERT INTO tsp_rate_buckets (tsp_id, credit, refilled_at) \
                 VALUES ($1, 1, clock_timestamp()) ON CONFLICT (tsp_id) DO NOTHING",
            )
            .bind(tsp_id)
            .execute(pool)
            .await?;
        }
        Err(StoreError::Corrupt(format!(
            "the rate bucket of TSP {tsp_id} cannot be created"
        )))
    }

    /// The pool the buckets are taken on: PostgreSQL only (a single SQLite node paces in process).
    fn shared_bucket_pool(&self) -> Result<&sqlx::AnyPool, StoreError> {
        match (&self.writer, self.dialect) {
            (Writer::Pool(pool), Dialect::Postgres) => Ok(pool),
            _ => Err(StoreError::Corrupt(
                "shared rate buckets are kept on PostgreSQL only".into(),
            )),
        }
    }
}
