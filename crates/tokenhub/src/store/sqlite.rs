//! SQLite's side of the store: one writer thread owns the only write connection (rusqlite, called
//! synchronously: a statement costs SQLite's own few microseconds) and **group-commits**: it takes
//! every transaction waiting in its queue (up to [`MAX_BATCH`]), runs each inside its own
//! `SAVEPOINT` (a failing one is rolled back alone), and commits them with one fsync. A
//! checkpointer thread copies the write-ahead log into the database beside it. Readers use
//! separate connections (WAL mode lets them read while the writer writes).
//!
//! **What may run on the writer thread**: only the statements of a transaction and the code
//! between them, which must not wait on anything but the connection (no decryption, no parsing,
//! no network): every transaction of the batch waits for it.

use super::sql::Tx;
use super::{migrator, Completion, Dialect, Job, Reader, StoreError, Writer};
use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::any::AnyPoolOptions;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most transactions one SQLite commit carries.
pub const MAX_BATCH: usize = 256;

/// Statements the SQLite writer keeps prepared.
const STATEMENT_CACHE: usize = 512;

/// The busy timeout first: switching to (or confirming) WAL takes a lock, which another
/// connection of the hub may hold for a moment. `secure_delete`: what a deletion frees is
/// overwritten with zeroes, so deleted rows (a data key above all) do not stay in free pages.
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
     PRAGMA secure_delete = ON;";

/// The writer's connection: the pragmas above, a page cache of 4 MiB, and no checkpoint of its
/// own (a commit that crosses SQLite's automatic threshold would copy the log into the database
/// and fsync it while every transaction waits): the checkpointer thread does it beside the writer.
///
/// The cache is small on purpose. A commit that split a b-tree page had the page cache scan its
/// whole hash table (SQLite parks a page under the number of the lock-byte page, 1 GiB into the
/// file, while it moves pages; truncating the cache back to the database's size then visits every
/// bucket), and the larger the cache the longer the scan. The writes go to random leaves anyway,
/// which no cache of a few MiB holds; the interior pages it does.
const SQLITE_WRITER_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
     PRAGMA cache_size = -4096; PRAGMA wal_autocheckpoint = 0; PRAGMA secure_delete = ON;";

/// How often the checkpointer copies the write-ahead log into the database (when something was
/// committed since). Small copies often: each pass ends with an fsync of the database that the
/// writer's own fsyncs queue behind, so the shorter the pass the shorter the wait (the p99 of
/// `bench data` follows this interval).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(20);

/// Passes the checkpointer makes in a row, at most, to come near the end of the log.
const CHECKPOINT_PASSES: usize = 4;

/// Pages (4 KiB each) committed during the checkpointer's last pass below which the writer copies
/// the rest itself.
const CATCH_UP_PAGES: i64 = 256;

/// Pages (64 MiB) the log holds before the writer copies the rest of it and the log restarts. The
/// writer's copy ends with an fsync of the database during which nothing is committed, so it
/// should come rarely, not whenever a log nearly copied could restart. Readers look a page up in
/// one more hash table per 4,096 pages of log; the file stays at this size (at most twice it,
/// under writes that never pause).
const RESTART_LOG_AT_PAGES: i64 = 16_384;

/// A read connection: reads only. (No memory map: its pages would count in the hub's resident
/// memory, up to the map's size per connection, for reads the page cache serves as well.)
pub(super) const SQLITE_READER_PRAGMAS: &str =
    "PRAGMA busy_timeout = 10000; PRAGMA query_only = ON;";

/// Opens the database file (its folder made, migrations run) with its readers, writer thread and
/// checkpointer thread.
pub(super) async fn open(url: &str, path: &str) -> Result<(Reader, Writer), StoreError> {
    if let Some(dir) = std::path::Path::new(path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Folder(dir.display().to_string(), e))?;
        }
    }
    let url = if url.contains('?') {
        url.to_string()
    } else {
        format!("{url}?mode=rwc")
    };
    let attach = Arc::new(format!(
        "ATTACH DATABASE '{}' AS keyring; {SQLITE_PRAGMAS}",
        keyring_path(path).replace('\'', "''")
    ));
    let options = || {
        let attach = attach.clone();
        AnyPoolOptions::new().after_connect(move |conn, _| {
            let attach = attach.clone();
            Box::pin(async move {
                sqlx::Executor::execute(conn, attach.as_str()).await?;
                Ok(())
            })
        })
    };
    let migrate = options().max_connections(1).connect(&url).await?;
    migrator(Dialect::Sqlite).run(&migrate).await?;
    migrate.close().await;
    let read = Reader::Lite(super::readers::LitePool::open(path)?);
    let conn = open_sqlite(path, SQLITE_WRITER_PRAGMAS)?;
    let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
    let runtime = tokio::runtime::Handle::current();
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|e| StoreError::Commit(format!("cannot start the {name} thread: {e}")))
    };
    let log = Arc::new(LogState::default());
    let writer_log = log.clone();
    spawn(
        "sqlite-writer",
        Box::new(move || run_writer(Tx::lite(conn), rx, runtime, &writer_log)),
    )?;
    let checkpoints = open_sqlite(path, SQLITE_PRAGMAS)?;
    let stop = tx.downgrade();
    spawn(
        "sqlite-checkpoint",
        Box::new(move || run_checkpointer(checkpoints, stop, &log)),
    )?;
    Ok((read, Writer::Thread(tx, Arc::new(AtomicBool::new(false)))))
}

/// Queues `f` for the writer and waits for its batch's commit.
pub(super) async fn submit<T, E, F>(
    queue: &mpsc::Sender<Job>,
    closed: &AtomicBool,
    f: F,
) -> Result<T, E>
where
    F: for<'c> FnOnce(&'c mut Tx) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    if closed.load(Ordering::Acquire) {
        return Err(StoreError::WriterGone.into());
    }
    let (done_tx, done_rx) = oneshot::channel::<Result<T, E>>();
    let job: Job = Box::new(move |conn| {
        Box::pin(async move {
            let out = match AssertUnwindSafe(f(conn)).catch_unwind().await {
                Ok(out) => out,
                Err(_) => Err(E::from(StoreError::Panicked)),
            };
            let ok = out.is_ok();
            let completion: Completion = Box::new(move |commit_error| {
                let result = match (out, commit_error) {
                    (Ok(_), Some(e)) => Err(E::from(StoreError::Commit(e.to_string()))),
                    (out, _) => out,
                };
                let _ = done_tx.send(result);
            });
            (ok, completion)
        })
    });
    queue.send(job).await.map_err(|_| StoreError::WriterGone)?;
    done_rx
        .await
        .map_err(|_| StoreError::Commit("the group commit it was part of failed".into()))?
}

/// The keyring beside the database file `path`: `tokenhub.db` → `tokenhub.keyring.db`.
pub(super) fn keyring_path(path: &str) -> String {
    std::path::Path::new(path)
        .with_extension("keyring.db")
        .display()
        .to_string()
}

/// An SQLite connection with the keyring attached (as `keyring`), `pragmas` (which apply to
/// both files) and room in its cache for every statement the hub prepares.
pub(super) fn open_sqlite(path: &str, pragmas: &str) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute("ATTACH DATABASE ?1 AS keyring", [keyring_path(path)])?;
    conn.execute_batch(pragmas)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// The SQLite writer: takes what is queued, runs each in a savepoint (when there are several),
/// commits once. The jobs' futures run to completion on this thread (their statements never
/// wait: the connection is synchronous); the runtime handle lets one await anything else it needs.
///
/// When the checkpointer has copied all but the last few pages of a long log (`log.catch_up`), the
/// writer copies those itself, between two batches: the log is then wholly in the database, and
/// the next commit starts it again from its beginning. Under a steady load this is the only moment the log
/// can restart (the checkpointer never catches a writer that does not wait); without it the log
/// only grows (2 GB in a minute of `bench data`), and every commit extends the file, which the
/// kernel pays for (ext4 zeroes the rest of each new page-cache folio: a fifth of the writer's
/// time).
fn run_writer(
    mut tx: Tx,
    mut rx: mpsc::Receiver<Job>,
    runtime: tokio::runtime::Handle,
    log: &LogState,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
        let result = run_batch(&runtime, &mut tx, &mut batch, &mut completions);
        if let Err(e) = &result {
            tracing::error!(error = %e, transactions = completions.len(), "group commit failed");
        }
        for c in completions {
            c(result.as_ref().err());
        }
        if result.is_ok() {
            log.committed.store(true, Ordering::Relaxed);
        }
        let catch_up = log.catch_up.swap(CatchUp::None as u8, Ordering::Relaxed);
        if catch_up != CatchUp::None as u8 {
            let mode = if catch_up == CatchUp::Restart as u8 {
                "RESTART"
            } else {
                "PASSIVE"
            };
            if let Some(Err(e)) = tx.lite_conn().map(|c| checkpoint(c, mode)) {
                tracing::warn!(error = %e, "checkpoint failed");
            }
        }
    }
}

/// What the writer and the checkpointer tell each other of the write-ahead log.
#[derive(Default)]
struct LogState {
    /// The writer committed since the checkpointer's last look.
    committed: AtomicBool,
    /// What the checkpointer left the writer to do ([`CatchUp`]).
    catch_up: AtomicU8,
}

/// What the writer does of the log between two batches.
#[repr(u8)]
enum CatchUp {
    None,
    /// Copy the last few pages the checkpointer left (a passive checkpoint): the next commit
    /// restarts the log unless a reader still reads from it.
    Passive,
    /// The log is past twice its restart size: copy what is left and wait for the readers still
    /// reading from the log (they started before the copy: a read takes milliseconds at most),
    /// so that the next commit restarts it. Without the wait, readers that never pause can keep
    /// the log from restarting under writes that never pause, and it grows without bound.
    Restart,
}

/// A checkpoint (`PASSIVE` or `RESTART`): the pages the log holds and those it copied into the
/// database.
fn checkpoint(conn: &rusqlite::Connection, mode: &str) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

/// A checkpoint that copies the whole log and truncates it to nothing, on a connection of its
/// own: whether it got through. It waits for the writer's batch under the busy timeout, and
/// tries again a few times while the checkpointer's own pass holds the checkpoint (a checkpoint
/// does not wait for another).
pub(super) fn truncate_log(path: &str) -> Result<bool, StoreError> {
    let conn = open_sqlite(path, SQLITE_PRAGMAS)?;
    for _ in 0..TRUNCATE_TRIES {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy == 0 {
            return Ok(true);
        }
        std::thread::sleep(CHECKPOINT_EVERY);
    }
    Ok(false)
}

/// Attempts at truncating the log before a sweep gives up until the next.
const TRUNCATE_TRIES: usize = 50;

/// Copies the write-ahead log into the database every [`CHECKPOINT_EVERY`], beside the writer
/// (a passive checkpoint waits for no one and blocks no one); stops with the store.
fn run_checkpointer(conn: rusqlite::Connection, store: mpsc::WeakSender<Job>, log: &LogState) {
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        if store.upgrade().is_none() {
            return;
        }
        if !log.committed.swap(false, Ordering::Relaxed) {
            continue;
        }
        // Passes again while the writer committed much during the last one, so that what is left
        // for the writer to copy is little.
        let mut before: Option<i64> = None;
        for _ in 0..CHECKPOINT_PASSES {
            match checkpoint(&conn, "PASSIVE") {
                // Writes that never let a pass come near the end: past twice the size, the
                // writer copies what is left however much it is, and restarts the log, so that
                // it stays bounded.
                Ok((pages, _)) if pages >= 2 * RESTART_LOG_AT_PAGES => {
                    log.catch_up
                        .store(CatchUp::Restart as u8, Ordering::Relaxed);
                    break;
                }
                // Little was committed during this pass: the log is nearly all copied.
                Ok((pages, _)) if before.is_some_and(|b| pages - b <= CATCH_UP_PAGES) => {
                    if pages >= RESTART_LOG_AT_PAGES {
                        log.catch_up
                            .store(CatchUp::Passive as u8, Ordering::Relaxed);
                    }
                    break;
                }
                Ok((pages, _)) => before = Some(pages),
                Err(e) => {
                    tracing::warn!(error = %e, "checkpoint failed");
                    break;
                }
            }
        }
    }
}

fn run_batch(
    runtime: &tokio::runtime::Handle,
    tx: &mut Tx,
    batch: &mut Vec<Job>,
    completions: &mut Vec<Completion>,
) -> Result<(), StoreError> {
    let batch_sql = |tx: &Tx, sql: &str| -> Result<(), StoreError> {
        match tx.lite_conn() {
            Some(c) => {
                c.prepare_cached(sql)?.raw_execute()?;
                Ok(())
            }
            None => Err(StoreError::Corrupt("not an SQLite connection".into())),
        }
    };
    if let Err(e) = batch_sql(tx, "BEGIN IMMEDIATE") {
        // Nothing ran: every job still owes its caller an answer, which dropping it gives.
        batch.clear();
        return Err(e);
    }
    // A job alone in its batch needs no savepoint (whose journal copies each page before its first
    // change): if it fails, the whole transaction is rolled back.
    let alone = batch.len() == 1;
    let mut failed: Option<StoreError> = None;
    let mut alone_failed = false;
    for job in batch.drain(..) {
        if failed.is_some() {
            // The transaction is already lost; the job's caller learns it from the dropped job.
            drop(job);
            continue;
        }
        if !alone {
            if let Err(e) = batch_sql(tx, "SAVEPOINT job") {
                failed = Some(e);
                drop(job);
                continue;
            }
        }
        let (ok, completion) = runtime.block_on(job(tx));
        alone_failed = alone && !ok;
        let end = match (alone, ok) {
            (true, _) => Ok(()),
            (false, true) => batch_sql(tx, "RELEASE job"),
            (false, false) => {
                batch_sql(tx, "ROLLBACK TO job").and_then(|()| batch_sql(tx, "RELEASE job"))
            }
        };
        completions.push(completion);
        if let Err(e) = end {
            failed = Some(e);
        }
    }
    if let Some(e) = failed {
        let _ = batch_sql(tx, "ROLLBACK");
        return Err(e);
    }
    if alone_failed {
        // Nothing to commit; the job's caller gets its own error. (A failed rollback leaves the
        // connection in its transaction: the next batch's BEGIN fails and reports it.)
        return batch_sql(tx, "ROLLBACK");
    }
    if let Err(e) = batch_sql(tx, "COMMIT") {
        let _ = batch_sql(tx, "ROLLBACK");
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The workspace's `.cargo/config.toml` builds the bundled SQLite without its global
    /// allocation and page-cache mutexes (`LIBSQLITE3_FLAGS`): a build that lost the setting
    /// still works, only slower, so this says so.
    #[test]
    fn sqlite_is_built_without_its_global_memory_mutexes() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut stmt = conn.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = stmt
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
    }
}
