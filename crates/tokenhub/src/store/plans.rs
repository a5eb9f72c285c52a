//! The admin's reads of notifications and of an issuer's tokens use the indexes meant for them
//! (migration 0030 and the pending rows' partial indexes; `tokens_by_card`): their plans, asked of the engine itself (`EXPLAIN QUERY PLAN`
//! on SQLite; `EXPLAIN` on PostgreSQL with sequential scans priced out, so that an empty table's
//! plan shows which index the query can use), name those indexes and never read the whole
//! table. PostgreSQL's part runs when `TOKENHUB_TEST_DATABASE_URL` names a server.

use super::console::issuer_tokens_sql;
use super::gauges::NOTIFICATION_BACKLOGS;
use super::notifications::{list_sql, COUNTS_OF_REQUESTOR};
use super::sql::query;
use super::{Dialect, Store, StoreError};
use crate::domain::notification::{Filter, NotificationState};

/// What a read binds: the list's limit (`$1`), then the requestor or the token; the counts bind
/// only the requestor.
#[derive(Clone, Copy)]
enum Binds {
    LimitAndOwner,
    /// An issuer's tokens after a card's token: the limit, the issuer, the card, the token.
    LimitOwnerAndAfter,
    Owner,
    None,
}

/// Each admin read: its SQL, what it binds, and the indexes its plan must name.
fn reads() -> Vec<(String, Binds, Vec<&'static str>)> {
    let requestor = |state| Filter {
        requestor_id: Some("r".into()),
        state,
        limit: 50,
        ..Default::default()
    };
    let token = |state| Filter {
        token_id: Some("t".into()),
        state,
        limit: 50,
        ..Default::default()
    };
    let settled_by_requestor = "notifications_settled_by_requestor";
    vec![
        (
            list_sql(&requestor(Some(NotificationState::Dead))),
            Binds::LimitAndOwner,
            vec![settled_by_requestor],
        ),
        (
            list_sql(&requestor(Some(NotificationState::Pending))),
            Binds::LimitAndOwner,
            vec!["notifications_pending"],
        ),
        (
            list_sql(&requestor(None)),
            Binds::LimitAndOwner,
            vec!["notifications_pending", settled_by_requestor],
        ),
        (
            list_sql(&token(None)),
            Binds::LimitAndOwner,
            vec![
                "notifications_pending_by_token",
                "notifications_settled_by_token",
            ],
        ),
        (
            list_sql(&token(Some(NotificationState::Delivered))),
            Binds::LimitAndOwner,
            vec!["notifications_settled_by_token"],
        ),
        (
            COUNTS_OF_REQUESTOR.to_string(),
            Binds::Owner,
            vec!["notifications_pending", settled_by_requestor],
        ),
        (
            NOTIFICATION_BACKLOGS.to_string(),
            Binds::None,
            vec!["notifications_pending", settled_by_requestor],
        ),
        (
            issuer_tokens_sql(false),
            Binds::LimitAndOwner,
            vec!["tokens_by_card"],
        ),
        (
            issuer_tokens_sql(true),
            Binds::LimitOwnerAndAfter,
            vec!["tokens_by_card"],
        ),
    ]
}

/// The plan of `sql` (the limit bound as `50`, the owner as `'r'`), one line per step.
async fn plan(store: &Store, sql: String, binds: Binds) -> Result<Vec<String>, StoreError> {
    let dialect = store.dialect();
    store
        .transact(move |tx| {
            Box::pin(async move {
                let explain = match dialect {
                    Dialect::Sqlite => format!("EXPLAIN QUERY PLAN {sql}"),
                    Dialect::Postgres => {
                        query("SET LOCAL enable_seqscan = off")
                            .execute(&mut *tx)
                            .await?;
                        format!("EXPLAIN {sql}")
                    }
                };
                let q = query(&explain);
                let q = match binds {
                    Binds::LimitAndOwner => q.bind(50_i64).bind("r"),
                    Binds::LimitOwnerAndAfter => q.bind(50_i64).bind("r").bind("c").bind("t"),
                    Binds::Owner => q.bind("r"),
                    Binds::None => q,
                };
                let column = match dialect {
                    Dialect::Sqlite => "detail",
                    Dialect::Postgres => "QUERY PLAN",
                };
                q.fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.get::<String>(column))
                    .collect()
            })
        })
        .await
}

async fn every_admin_read_uses_its_indexes(store: &Store) {
    for (sql, binds, indexes) in reads() {
        let plan = plan(store, sql.clone(), binds).await.unwrap();
        let text = plan.join("\n");
        for index in indexes {
            assert!(text.contains(index), "{sql}\nuses no {index}:\n{text}");
        }
        for line in &plan {
            let whole_table = match store.dialect() {
                // `SCAN notifications` (or its alias) without an index reads every row.
                Dialect::Sqlite => {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    words.first() == Some(&"SCAN")
                        && matches!(
                            words.get(1),
                            Some(&"notifications") | Some(&"n") | Some(&"tokens")
                        )
                        && !line.contains("INDEX")
                }
                Dialect::Postgres => {
                    line.contains("Seq Scan on notifications")
                        || line.contains("Seq Scan on tokens")
                }
            };
            assert!(!whole_table, "{sql}\nreads the whole table:\n{text}");
        }
    }
}

#[tokio::test]
async fn sqlite_reads_notifications_and_tokens_through_their_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("plans.db").display());
    let store = Store::connect(&url).await.unwrap();
    every_admin_read_uses_its_indexes(&store).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_reads_notifications_and_tokens_through_their_indexes() {
    let Ok(server) = std::env::var("TOKENHUB_TEST_DATABASE_URL") else {
        eprintln!("postgres variant skipped: TOKENHUB_TEST_DATABASE_URL is not set");
        return;
    };
    use sqlx::{Connection, Executor};
    let name = format!("tokenhub_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let (host, _) = server.rsplit_once('/').unwrap();
    let store = Store::connect(&format!("{host}/{name}")).await.unwrap();
    every_admin_read_uses_its_indexes(&store).await;
    store.close().await;
    admin
        .execute(format!("DROP DATABASE {name}").as_str())
        .await
        .unwrap();
}
