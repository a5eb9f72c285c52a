//! The store: the only place that knows SQL. SQLite (embedded, the default) and PostgreSQL (for
//! scale-out) behind one query API ([`sql`]); the few dialect differences are chosen by
//! [`Dialect`].
//!
//! Writes go through [`Store::transact`]: the caller's closure runs inside a transaction that is
//! committed before `transact` returns, so "answered" means "durable".
//! - On **PostgreSQL** each call is its own transaction on the pool (sqlx); rows are locked with
//!   `FOR UPDATE`, and the server's own group commit shares fsyncs between concurrent commits.
//! - On **SQLite** one writer thread group-commits every transaction queued ([`sqlite`]).
//! - Migrations, embedded from `migrations/<engine>/`, run through sqlx's migrator on both
//!   engines.

pub mod admin_keys;
pub mod audit;
pub mod campaigns;
pub mod catalog;
mod console;
pub mod gauges;
pub mod master_keys;
pub mod nodes;
pub mod notifications;
pub mod outbox;
pub mod personalizations;
#[cfg(test)]
mod plans;
mod readers;
pub mod requestor_tokens;
pub mod requestors;
mod serve_lock;
pub mod shared_keys;
pub mod shred;
pub mod signals;
mod sql;
mod sqlite;
pub mod token_data;
pub mod token_keys;
pub mod tokens;
pub mod tsp_health;
pub mod tsp_rate;
mod value;
pub mod wallet_providers;

use sql::{query, query_scalar};
pub use sql::{Row, Tx};
pub use sqlite::MAX_BATCH;

use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub use serve_lock::ServeLock;

/// Connections of the hub's PostgreSQL pool.
pub const PG_POOL_CONNECTIONS: u32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the commit failed: {0}")]
    Commit(String),
    #[error("the store's writer has stopped")]
    WriterGone,
    #[error("the store is closed")]
    Closed,
    #[error("a transaction panicked")]
    Panicked,
    #[error("unsupported database URL (expected sqlite://PATH or postgres://...)")]
    BadUrl,
    #[error("{0} is served by another tokenhub process (it holds {1}): SQLite is single-node, one `serve` per file")]
    AlreadyServed(String, String),
    #[error("cannot lock {0}: {1}")]
    Lock(String, String),
    #[error("cannot create the database folder {0}: {1}")]
    Folder(String, std::io::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("token {0} got another data key while the call was sealed (a call racing it); the call may be made again")]
    DataKeyChanged(String),
    #[error("master-key version {0} is retired: this node has not seen the rotation end yet; the call may be made again")]
    MasterKeyRetired(i64),
    #[error("{0} wraps under an older master-key version remain: the rotation makes another pass")]
    RewrapIncomplete(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Appended to a `SELECT` that must lock the rows it reads until the transaction ends. SQLite
    /// needs nothing: its single writer already serializes every write transaction.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// Appended to a `SELECT` that claims work rows: rows another node holds are skipped.
    pub fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

/// Reads one row by its key and locks it until the transaction ends:
/// `SELECT {columns} FROM {table} WHERE {key} = $1` (+ `FOR UPDATE` on PostgreSQL).
async fn lock_row<T>(
    conn: &mut Tx,
    table: &str,
    columns: &str,
    key: &str,
    id: &str,
    parse: fn(&Row) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let sql = format!(
        "SELECT {columns} FROM {table} WHERE {key} = $1{}",
        conn.dialect().for_update()
    );
    let row = query(&sql).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(parse).transpose()
}

pub(super) type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;
pub(super) type Job =
    Box<dyn for<'c> FnOnce(&'c mut Tx) -> BoxFuture<'c, (bool, Completion)> + Send>;

#[derive(Clone)]
pub(super) enum Writer {
    Pool(AnyPool),
    /// SQLite: the writer thread's queue, and whether [`Store::close`] was called.
    Thread(mpsc::Sender<Job>, Arc<AtomicBool>),
}

/// Where reads outside a transaction run.
enum Reader {
    Pool(AnyPool),
    Lite(readers::LitePool),
}

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    read: Arc<Reader>,
    writer: Writer,
    dialect: Dialect,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dialect", &self.dialect)
            .finish()
    }
}

impl Store {
    /// Connects (creating an SQLite file and its folder if needed) and runs the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        if let Some(path) = sqlite_path(url) {
            let (read, writer) = sqlite::open(url, &path).await?;
            Ok(Self {
                read: Arc::new(read),
                writer,
                dialect: Dialect::Sqlite,
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = AnyPoolOptions::new()
                .max_connections(PG_POOL_CONNECTIONS)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            migrator(Dialect::Postgres).run(&pool).await?;
            Ok(Self {
                read: Arc::new(Reader::Pool(pool.clone())),
                writer: Writer::Pool(pool),
                dialect: Dialect::Postgres,
            })
        } else {
            Err(StoreError::BadUrl)
        }
    }

    /// How often a waiter must look again for work that another node may have committed: `None`
    /// on SQLite, where every commit is this process's and its own signals wake the waiters.
    pub fn foreign_commits_poll(&self) -> Option<Duration> {
        match self.dialect {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some(Duration::from_secs(1)),
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The pool for reads outside a transaction.
    fn reader(&self) -> &Reader {
        &self.read
    }

    /// Runs `f` in a transaction and commits it before returning. An `Err` from `f` rolls back
    /// everything `f` did (and only that).
    pub async fn transact<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(&'c mut Tx) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let started = std::time::Instant::now();
        let out = self.run_transaction(f).await;
        crate::telemetry::metrics::store_transaction(started.elapsed());
        out
    }

    async fn run_transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(&'c mut Tx) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        match &self.writer {
            Writer::Pool(pool) => {
                let mut tx = Tx::pg(pool.begin().await.map_err(StoreError::from)?);
                let out = AssertUnwindSafe(f(&mut tx))
                    .catch_unwind()
                    .await
                    .map_err(|_| StoreError::Panicked)?;
                let Some(tx) = tx.into_pg() else {
                    return Err(StoreError::Corrupt("not a PostgreSQL transaction".into()).into());
                };
                match out {
                    Ok(v) => {
                        tx.commit().await.map_err(StoreError::from)?;
                        Ok(v)
                    }
                    Err(e) => {
                        // Dropping the transaction rolls it back; an explicit rollback lets the
                        // connection go back to the pool at once.
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                }
            }
            Writer::Thread(queue, closed) => sqlite::submit(queue, closed, f).await,
        }
    }

    /// Closes every connection; later calls fail (used by tests of the failure paths).
    pub async fn close(&self) {
        match &*self.read {
            Reader::Pool(pool) => pool.close().await,
            Reader::Lite(pool) => pool.close(),
        }
        match &self.writer {
            Writer::Pool(pool) => pool.close().await,
            Writer::Thread(_, closed) => closed.store(true, Ordering::Release),
        }
    }
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    Some(path.to_string())
}

/// The migrations of each engine, embedded from `migrations/<engine>/NNNN_name.sql`.
fn migrator(dialect: Dialect) -> sqlx::migrate::Migrator {
    match dialect {
        Dialect::Sqlite => sqlx::migrate!("migrations/sqlite"),
        Dialect::Postgres => sqlx::migrate!("migrations/postgres"),
    }
}

impl Store {
    /// Whether writes can be made: on SQLite, whether the writer thread still runs.
    pub fn writer_running(&self) -> bool {
        match &self.writer {
            Writer::Pool(_) => true,
            Writer::Thread(queue, _) => !queue.is_closed(),
        }
    }

    /// A round trip to the database, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        query("SELECT 1").execute(self.reader()).await?;
        Ok(())
    }
}

impl Store {
    /// Releases the claims a previous run left on outbox calls and token updates. On SQLite the
    /// serving hub is the only process that makes calls from the file (it holds its
    /// [`ServeLock`], which the caller must hold too), so every claim left belongs to a run that
    /// is gone (killed, say): its calls are made again at once instead of after their lease. On
    /// PostgreSQL other nodes may hold claims: those run out with their lease.
    pub async fn release_stale_claims(&self) -> Result<u64, StoreError> {
        if self.dialect() != Dialect::Sqlite {
            return Ok(0);
        }
        self.transact(|c| {
            Box::pin(async move {
                let mut released = 0;
                // A claimed update is due again when its lease ends; released, it is due at once.
                for (table, due) in [("outbox", ""), ("notifications", ", next_attempt_ms = created_ms")] {
                    released += query(&format!(
                        "UPDATE {table} SET locked_until_ms = 0{due} WHERE state = 'PENDING' AND locked_until_ms > 0"
                    ))
                    .execute(&mut *c)
                    .await?
                    .rows_affected();
                }
                Ok::<_, StoreError>(released)
            })
        })
        .await
    }
}
