//! SQLite's read connections, each owned by a reader thread of its own. A read is queued to the
//! threads and its rows come back over a oneshot channel, so no read runs on an async worker: a
//! read that waits on the disk, or a long scan, holds a reader thread while the runtime goes on
//! serving. WAL mode lets the readers read the last commit while the writer writes.

use super::{sqlite, StoreError};
use rusqlite::Connection;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Reader threads, each with its one connection (opened at its first read). More than the cores:
/// a read waiting on the disk leaves its core to another.
const READERS: usize = 4;

/// A read, given its thread's connection (or why there is none).
type Read = Box<dyn FnOnce(Result<&Connection, StoreError>) + Send>;

enum Message {
    Read(Read),
    /// The pool was closed: drop the connection.
    Close,
}

/// What the pool's threads share with it.
#[derive(Default)]
struct Shared {
    closed: AtomicBool,
    /// Connections open.
    open: AtomicUsize,
    /// Reads under way.
    busy: AtomicUsize,
}

pub struct LitePool {
    path: String,
    queue: crossbeam_channel::Sender<Message>,
    shared: Arc<Shared>,
}

impl LitePool {
    /// Starts the reader threads; fails now, at start, if the file cannot be read.
    pub(super) fn open(path: &str) -> Result<Self, StoreError> {
        let first = sqlite::open_sqlite(path, sqlite::SQLITE_READER_PRAGMAS)?;
        let (queue, jobs) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared::default());
        let mut first = Some(first);
        for n in 0..READERS {
            let conn = first.take();
            shared
                .open
                .fetch_add(usize::from(conn.is_some()), Ordering::Relaxed);
            let (jobs, shared, path) = (jobs.clone(), shared.clone(), path.to_string());
            std::thread::Builder::new()
                .name(format!("sqlite-reader-{n}"))
                .spawn(move || serve(conn, &jobs, &shared, &path))
                .map_err(|e| StoreError::Commit(format!("cannot start a reader thread: {e}")))?;
        }
        Ok(Self {
            path: path.to_string(),
            queue,
            shared,
        })
    }

    /// Runs `read` on a reader thread and waits for its answer.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let (answer, answered) = oneshot::channel();
        let job: Read = Box::new(move |conn| {
            let _ = answer.send(conn.and_then(read));
        });
        self.queue
            .send(Message::Read(job))
            .map_err(|_| StoreError::Closed)?;
        // Dropped unanswered: the read panicked (its thread goes on).
        answered.await.map_err(|_| StoreError::Panicked)?
    }

    /// The database file.
    pub(super) fn path(&self) -> &str {
        &self.path
    }

    /// Read connections open, and how many of them are idle.
    pub(super) fn connections(&self) -> (usize, usize) {
        let open = self.shared.open.load(Ordering::Relaxed);
        (
            open,
            open.saturating_sub(self.shared.busy.load(Ordering::Relaxed)),
        )
    }

    /// Later reads fail; each thread drops its connection.
    pub(super) fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        for _ in 0..READERS {
            let _ = self.queue.send(Message::Close);
        }
    }
}

/// A reader thread: runs the queued reads on its connection until the pool is dropped.
fn serve(
    mut conn: Option<Connection>,
    jobs: &crossbeam_channel::Receiver<Message>,
    shared: &Shared,
    path: &str,
) {
    while let Ok(message) = jobs.recv() {
        let read = match message {
            Message::Read(read) => read,
            Message::Close => {
                if conn.take().is_some() {
                    shared.open.fetch_sub(1, Ordering::Relaxed);
                }
                continue;
            }
        };
        if shared.closed.load(Ordering::Acquire) {
            read(Err(StoreError::Closed));
            continue;
        }
        if conn.is_none() {
            match sqlite::open_sqlite(path, sqlite::SQLITE_READER_PRAGMAS) {
                Ok(opened) => {
                    shared.open.fetch_add(1, Ordering::Relaxed);
                    conn = Some(opened);
                }
                Err(e) => {
                    read(Err(e));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_ref() else { continue };
        shared.busy.fetch_add(1, Ordering::Relaxed);
        // A panicking read drops its answer (the caller sees it) and leaves the thread serving.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| read(Ok(c))));
        shared.busy.fetch_sub(1, Ordering::Relaxed);
    }
}
