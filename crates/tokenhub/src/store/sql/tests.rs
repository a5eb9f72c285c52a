use super::super::{Store, StoreError};
use super::*;

async fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::connect(&url).await.unwrap();
    store
        .transact(|tx| {
            Box::pin(async move {
                query("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, data BLOB, n INTEGER)")
                    .execute(tx)
                    .await
            })
        })
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn parameters_bind_by_number_whatever_their_order_and_nulls_read_back() {
    let (_dir, store) = sqlite().await;
    let n = store
        .transact(|tx| {
            Box::pin(async move {
                // $3 before $1: each lands where its number says.
                query("INSERT INTO t (data, name, id, n) VALUES ($3, $2, $1, $4), ($1 + 1, $2, NULL, $4)")
                    .bind(7_i64)
                    .bind("seven")
                    .bind(vec![1_u8, 2, 3])
                    .bind(None::<i64>)
                    .execute(tx)
                    .await
            })
        })
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 2);
    let row = query("SELECT id, name, data, n FROM t WHERE id = $1")
        .bind(7_i64)
        .fetch_one(store.reader())
        .await
        .unwrap();
    assert_eq!(row.try_get::<i64>(0).unwrap(), 7);
    assert_eq!(row.try_get::<String>(1).unwrap(), "seven");
    assert_eq!(row.try_get::<Vec<u8>>(2).unwrap(), vec![1, 2, 3]);
    assert_eq!(row.try_get::<Option<i64>>(3).unwrap(), None);
    // The second row: a NULL id takes the next rowid, and `$1 + 1` computed in SQL.
    let data: i64 = query_scalar("SELECT data FROM t WHERE id = $1")
        .bind(8_i64)
        .fetch_one(store.reader())
        .await
        .unwrap();
    assert_eq!(data, 8);
}

/// Under writes that never pause, with readers beside, the write-ahead log still restarts
/// from its beginning (the writer finishes the checkpointer's copies): its file stays a
/// fraction of what was written through it instead of growing with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_restarts_under_writes_that_never_pause() {
    let (dir, store) = sqlite().await;
    let wal = dir.path().join("t.db-wal");
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                let _ = query_scalar::<i64>("SELECT COUNT(*) FROM t")
                    .fetch_one(store.reader())
                    .await;
                tokio::task::yield_now().await;
            }
        })
    };
    // Rounds of 64 writers at once, 32 KiB each (group commits back to back, 8 MiB a round),
    // until the log is less than half of what went through it: at once where it restarts, a
    // timing-proof way; never (up to 512 MiB) where it only grows.
    const ROUND: u64 = 64 * 4 * 32 * 1024;
    let (mut written, mut log) = (0_u64, 0_u64);
    let started = std::time::Instant::now();
    while written < 512 * 1024 * 1024 && (written < 8 * ROUND || log * 2 >= written) {
        let writers: Vec<_> = (0..64)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..4 {
                        store
                            .transact(|tx| {
                                Box::pin(async move {
                                    query("INSERT INTO t (data) VALUES ($1)")
                                        .bind(vec![7_u8; 32 * 1024])
                                        .execute(tx)
                                        .await
                                })
                            })
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        written += ROUND;
        log = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    }
    reader.abort();
    assert!(
        log * 2 < written,
        "the log holds {log} bytes after {written} were written through it in {:?}: it never restarted",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_column_of_another_type_or_out_of_range_is_an_error_not_a_panic() {
    let (_dir, store) = sqlite().await;
    let row = query("SELECT 'text', 1")
        .fetch_one(store.reader())
        .await
        .unwrap();
    assert!(matches!(row.try_get::<i64>(0), Err(StoreError::Corrupt(_))));
    assert!(matches!(
        row.try_get::<String>(1),
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(row.try_get::<i64>(2), Err(StoreError::Corrupt(_))));
    assert!(query("SELECT 1 WHERE 0")
        .fetch_one(store.reader())
        .await
        .is_err());
}

#[tokio::test]
async fn a_failing_transaction_is_rolled_back_alone_and_a_closed_store_refuses() {
    let (_dir, store) = sqlite().await;
    let insert = |id: i64, fail: bool| {
        let store = store.clone();
        async move {
            store
                .transact(move |tx| {
                    Box::pin(async move {
                        query("INSERT INTO t (id) VALUES ($1)")
                            .bind(id)
                            .execute(tx)
                            .await?;
                        if fail {
                            return Err(StoreError::Corrupt("refused".into()));
                        }
                        Ok(())
                    })
                })
                .await
        }
    };
    // Queued together, so that they share one group commit.
    let (a, b, c) = tokio::join!(insert(1, false), insert(2, true), insert(3, false));
    assert!(a.is_ok() && b.is_err() && c.is_ok());
    // One at a time, each alone in its batch (no savepoint): the failing one leaves nothing,
    // and the writer goes on.
    assert!(insert(4, true).await.is_err());
    assert!(insert(5, false).await.is_ok());
    let ids: Vec<i64> = query_scalar("SELECT id FROM t ORDER BY id")
        .fetch_all(store.reader())
        .await
        .unwrap();
    assert_eq!(ids, vec![1, 3, 5]);
    store.close().await;
    assert!(matches!(
        insert(6, false).await,
        Err(StoreError::WriterGone)
    ));
    assert!(matches!(store.ping().await, Err(StoreError::Closed)));
}

/// A read runs on a reader thread, not on the async worker: on a runtime of one thread, a timer
/// keeps ticking while a long read is under way (a read in place would hold the only thread
/// until it ends, and the timer would tick once, after it).
#[tokio::test(flavor = "current_thread")]
async fn a_long_read_leaves_the_runtime_serving() {
    let (_dir, store) = sqlite().await;
    let long = query_scalar::<i64>(
        "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 5000000) \
         SELECT COUNT(*) FROM c",
    )
    .fetch_one(store.reader());
    let started = std::time::Instant::now();
    let mut ticks = 0;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(5));
    tokio::pin!(long);
    let counted = loop {
        tokio::select! {
            counted = &mut long => break counted.unwrap(),
            _ = tick.tick() => ticks += 1,
        }
    };
    let took = started.elapsed();
    assert_eq!(counted, 5_000_000);
    assert!(
        took > std::time::Duration::from_millis(100),
        "the read is long enough to tell: {took:?}"
    );
    assert!(
        ticks >= 10,
        "the timer ticked {ticks} times in the {took:?} the read took"
    );
}

/// Reads after the store is closed fail as closed, and so do those many at once.
#[tokio::test]
async fn reads_after_closing_fail_as_closed() {
    let (_dir, store) = sqlite().await;
    let reads = (0..16).map(|_| query("SELECT 1").fetch_one(store.reader()));
    for read in futures::future::join_all(reads).await {
        read.unwrap();
    }
    store.close().await;
    let reads = (0..16).map(|_| query("SELECT 1").fetch_one(store.reader()));
    for read in futures::future::join_all(reads).await {
        assert!(matches!(read, Err(StoreError::Closed)), "{read:?}");
    }
}
