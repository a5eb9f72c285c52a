//! Migrations that rewrite data keep it: a database at an older version, with rows in the old
//! shape, opened by the current hub.

use sqlx::any::AnyPoolOptions;
use sqlx::Executor;
use tokenhub::domain::data_call::{CallNames, PriorCall};
use tokenhub::store::token_data::CallKey;
use tokenhub::store::StoreError;

use crate::support::{create_database, database_url, new_database_name, postgres_url_or_skip};

/// A database at migration `last` (the later ones not run), on one connection.
async fn migrated_to(url: &str, dialect: &str, last: i64) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    let mut old = sqlx::migrate::Migrator::new(dir)
        .await
        .expect("the migrations folder");
    old.migrations = old
        .migrations
        .iter()
        .filter(|m| m.version <= last)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect");
    old.run(&pool)
        .await
        .unwrap_or_else(|e| panic!("migrations 1 to {last}: {e}"));
    pool
}

/// Migration 0011 folds a token's fingerprint rows into one blob and rebuilds the events table
/// (SQLite): the fingerprints read back the same, the events keep their ids and order, and a new
/// event comes after them.
async fn fingerprints_and_events_survive_migration_0011(url: String, dialect: &str) {
    let pool = migrated_to(&url, dialect, 10).await;
    for sql in [
        "INSERT INTO tsps (tsp_id, base_url, created_ms, updated_ms) VALUES ('tsp', 'http://127.0.0.1:9', 1, 1)",
        "INSERT INTO issuers (issuer_id, name, tsp_id, created_ms, updated_ms) VALUES ('ISS', 'Bank', 'tsp', 1, 1)",
        "INSERT INTO devices (device_id, public_key, created_ms) VALUES ('dev', 'key', 1)",
        "INSERT INTO tokens (token_id, issuer_id, product_id, profile_version, device_id, \
         wallet_card_ref_id, state, data_key, data_deadline_ms, correlation_id, created_ms, updated_ms) \
         VALUES ('T1', 'ISS', 'P', 'v1', 'dev', 'card-1', 'ACTIVE', x'00', 1, 'c', 1, 1), \
                ('T2', 'ISS', 'P', 'v1', 'dev', 'card-2', 'ACTIVE', x'00', 1, 'c', 1, 1)",
        "INSERT INTO token_fingerprints (token_id, name, fingerprint) VALUES \
         ('T1', 'track2_data', x'0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20'), \
         ('T1', 'psn', x'ff'), ('T1', 'nom_élément', x'abcd'), ('T2', 'psn', x'00')",
        "INSERT INTO token_events (token_id, at_ms, event, correlation_id) VALUES \
         ('T1', 1, 'first', 'c'), ('T2', 2, 'other', 'c'), ('T1', 3, 'second', 'c')",
    ] {
        // PostgreSQL spells a blob literal '\x..'.
        let sql = if dialect == "postgres" {
            blobs_to_bytea(sql)
        } else {
            sql.to_string()
        };
        pool.execute(sql.as_str()).await.expect(&sql);
    }
    pool.close().await;

    let store = tokenhub::Store::connect(&url)
        .await
        .expect("migrate to now");
    assert_eq!(
        store.fingerprint_names("T1").await.unwrap(),
        ["nom_élément", "psn", "track2_data"]
    );
    assert_eq!(
        store.fingerprint_names("T3").await.unwrap(),
        Vec::<String>::new()
    );
    let (t1, t2) = store
        .transact(|c| {
            Box::pin(async move {
                let t1 = c.token_fingerprints("T1").await?;
                let t2 = c.token_fingerprints("T2").await?;
                c.add_token_event("T1", "third", "c", 4).await?;
                Ok::<_, StoreError>((t1, t2))
            })
        })
        .await
        .unwrap();
    assert_eq!(t1["track2_data"], (1..=32).collect::<Vec<u8>>());
    assert_eq!(t1["psn"], [0xff]);
    assert_eq!(t1["nom_élément"], [0xab, 0xcd]);
    assert_eq!(t1.len(), 3);
    assert_eq!(
        t2.into_iter().collect::<Vec<_>>(),
        [("psn".into(), vec![0])]
    );
    let events: Vec<String> = store
        .token_events("T1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(events, ["first", "second", "third"]);
    store.close().await;
}

/// `x'..'` blob literals as PostgreSQL's `'\x..'::bytea`.
fn blobs_to_bytea(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(i) = rest.find("x'") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after.find('\'').expect("a closed literal");
        out.push_str(&format!("'\\x{}'::bytea", &after[..end]));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

mod fingerprints_and_events_survive_migration_0011 {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
        super::fingerprints_and_events_survive_migration_0011(url, "sqlite").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(server) = postgres_url_or_skip(module_path!()) else {
            return;
        };
        let name = new_database_name();
        create_database(&server, &name, "template1").await;
        super::fingerprints_and_events_survive_migration_0011(
            database_url(&server, &name),
            "postgres",
        )
        .await;
    }
}

/// Migration 0013 records the calls applied before it: a part held is found by its names as the
/// call listed them, a call known only by its event (its part deleted) counts for its operation,
/// and a recovery a re-personalization was built from counts as completed.
async fn data_calls_are_recorded_by_migration_0013(url: String, dialect: &str) {
    let pool = migrated_to(&url, dialect, 12).await;
    for sql in [
        "INSERT INTO tsps (tsp_id, base_url, created_ms, updated_ms) VALUES ('tsp', 'http://127.0.0.1:9', 1, 1)",
        "INSERT INTO issuers (issuer_id, name, tsp_id, created_ms, updated_ms) VALUES ('ISS', 'Bank', 'tsp', 1, 1)",
        "INSERT INTO devices (device_id, public_key, created_ms) VALUES ('dev', 'key', 1)",
        "INSERT INTO tokens (token_id, issuer_id, product_id, profile_version, device_id, \
         wallet_card_ref_id, state, data_key, data_deadline_ms, correlation_id, received_elements, \
         created_ms, updated_ms) \
         VALUES ('T1', 'ISS', 'P', 'v1', 'dev', 'card-1', 'PENDING_DATA', x'00', 1, 'c', 'psn,cmk_ac', 1, 1), \
                ('T2', 'ISS', 'P', 'v1', 'dev', 'card-2', 'ACTIVE', x'00', 1, 'c', '', 1, 1)",
        "INSERT INTO token_data (token_id, seq, operation, correlation_id, element_names, sealed, created_ms) \
         VALUES ('T1', 1, 'data', 'c1', 'psn,cmk_ac', x'01', 5)",
        "INSERT INTO token_events (token_id, at_ms, event, correlation_id) VALUES \
         ('T1', 5, 'data received: 2 element(s)', 'c1'), \
         ('T2', 6, 'data received: 3 element(s); state PERSONALIZING', 'c2'), \
         ('T2', 7, 'newData received: 3 element(s)', 'c3'), \
         ('T2', 8, 'newData received: 1 element(s)', 'c4')",
        "INSERT INTO personalizations (personalization_id, token_id, device_id, profile_version, kind, \
         state, next_offer_ms, expires_ms, correlation_id, created_ms, updated_ms) \
         VALUES ('prs_1', 'T2', 'dev', 'v1', 'REPERSO', 'CONFIRMED', 1, 1, 'c3', 7, 7)",
    ] {
        let sql = if dialect == "postgres" {
            blobs_to_bytea(sql)
        } else {
            sql.to_string()
        };
        pool.execute(sql.as_str()).await.expect(&sql);
    }
    pool.close().await;

    let store = tokenhub::Store::connect(&url)
        .await
        .expect("migrate to now");
    let context = |token: &'static str, cid: &'static str, names: Vec<&'static str>, op| {
        let store = &store;
        async move {
            let names = CallNames::of(names);
            let key = CallKey {
                token_id: token,
                correlation_id: cid,
                names: &names,
                operation: op,
            };
            store.data_call_context(key).await.unwrap().unwrap()
        }
    };
    let held = context("T1", "c1", vec!["psn", "cmk_ac"], "data").await;
    assert_eq!(held.prior, PriorCall::Held);
    let other = context("T1", "c1", vec!["psn"], "data").await;
    assert_eq!(other.prior, PriorCall::Applied, "another call under the id");
    let deleted = context("T2", "c2", vec!["psn"], "data").await;
    assert_eq!(deleted.prior, PriorCall::Applied);
    assert!(!deleted.recovery_completed);
    let other_operation = context("T2", "c2", vec!["psn"], "newData").await;
    assert_eq!(other_operation.prior, PriorCall::None);
    let recovered = context("T2", "c3", vec![], "newData").await;
    assert!(recovered.recovery_completed);
    let unfinished = context("T2", "c4", vec![], "newData").await;
    assert!(!unfinished.recovery_completed);
    assert_eq!(unfinished.prior, PriorCall::Applied);
    store.close().await;
}

mod data_calls_are_recorded_by_migration_0013 {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
        super::data_calls_are_recorded_by_migration_0013(url, "sqlite").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(server) = postgres_url_or_skip(module_path!()) else {
            return;
        };
        let name = new_database_name();
        create_database(&server, &name, "template1").await;
        super::data_calls_are_recorded_by_migration_0013(database_url(&server, &name), "postgres")
            .await;
    }
}

/// Migration 0025 gives the keys imported before keys had owners one: the only TSP when there is
/// exactly one and the index names the purpose; otherwise none (they decrypt nothing).
async fn shared_keys_get_owners_from_migration_0025(url: String, dialect: &str, tsps: usize) {
    let pool = migrated_to(&url, dialect, 23).await;
    let mut statements: Vec<String> = (0..tsps)
        .map(|i| {
            format!(
                "INSERT INTO tsps (tsp_id, base_url, created_ms, updated_ms) \
                 VALUES ('tsp{i}', 'http://127.0.0.1:9', 1, 1)"
            )
        })
        .collect();
    statements.push(
        "INSERT INTO shared_keys (key_index, algorithm, kcv, wrapped, created_ms) VALUES \
         ('KEK01', 'aes128', 'AAAAAA', x'01', 1), ('dek01', '3des', 'BBBBBB', x'02', 2), \
         ('MAC01', 'aes128', 'CCCCCC', x'03', 3)"
            .into(),
    );
    for sql in statements {
        let sql = if dialect == "postgres" {
            blobs_to_bytea(&sql)
        } else {
            sql
        };
        pool.execute(sql.as_str()).await.expect(&sql);
    }
    pool.close().await;

    let store = tokenhub::Store::connect(&url)
        .await
        .expect("migrate to now");
    let mut keys: Vec<(String, String, String, String, bool)> = store
        .shared_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| {
            (
                k.tsp_id,
                k.key_index,
                k.purpose.to_string(),
                k.state.to_string(),
                k.bound,
            )
        })
        .collect();
    // Sorted here: PostgreSQL's collation may not order as bytes do.
    keys.sort();
    let owner = if tsps == 1 { "tsp0" } else { "" };
    let mut expected = vec![
        (owner, "KEK01", "KEK"),
        (owner, "dek01", "DEK"),
        ("", "MAC01", "KEK"),
    ];
    expected.sort();
    let expected: Vec<(String, String, String, String, bool)> = expected
        .into_iter()
        .map(|(t, i, p)| (t.into(), i.into(), p.into(), "ACTIVE".into(), false))
        .collect();
    assert_eq!(keys, expected);
    store.close().await;
}

mod shared_keys_get_owners_from_migration_0025 {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        for tsps in [1, 2] {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
            super::shared_keys_get_owners_from_migration_0025(url, "sqlite", tsps).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(server) = postgres_url_or_skip(module_path!()) else {
            return;
        };
        for tsps in [1, 2] {
            let name = new_database_name();
            create_database(&server, &name, "template1").await;
            super::shared_keys_get_owners_from_migration_0025(
                database_url(&server, &name),
                "postgres",
                tsps,
            )
            .await;
        }
    }
}

/// Migration 0024 moves the data keys of tokens that hold data into the keyring and drops the
/// others' (they sealed nothing still held): the parts stay readable, the rest is gone.
async fn data_keys_move_to_the_keyring_in_migration_0024(url: String, dialect: &str) {
    let pool = migrated_to(&url, dialect, 23).await;
    for sql in [
        "INSERT INTO tsps (tsp_id, base_url, created_ms, updated_ms) VALUES ('tsp', 'http://127.0.0.1:9', 1, 1)",
        "INSERT INTO issuers (issuer_id, name, tsp_id, created_ms, updated_ms) VALUES ('ISS', 'Bank', 'tsp', 1, 1)",
        "INSERT INTO devices (device_id, public_key, created_ms) VALUES ('dev', 'key', 1)",
        "INSERT INTO tokens (token_id, issuer_id, product_id, profile_version, device_id, \
         wallet_card_ref_id, state, data_key, data_deadline_ms, correlation_id, received_elements, \
         created_ms, updated_ms) \
         VALUES ('T1', 'ISS', 'P', 'v1', 'dev', 'card-1', 'PENDING_DATA', x'0a0b0c', 1, 'c', 'psn', 7, 7), \
                ('T2', 'ISS', 'P', 'v1', 'dev', 'card-2', 'ACTIVE', x'0d0e0f', 1, 'c', '', 8, 8)",
        "INSERT INTO token_data (token_id, seq, operation, correlation_id, element_names, sealed, created_ms) \
         VALUES ('T1', 1, 'data', 'c', 'psn', x'ff', 7)",
    ] {
        let sql = if dialect == "postgres" {
            blobs_to_bytea(sql)
        } else {
            sql.to_string()
        };
        pool.execute(sql.as_str()).await.expect(&sql);
    }
    pool.close().await;

    let store = tokenhub::Store::connect(&url)
        .await
        .expect("migrate to now");
    let key = store.data_key("T1").await.unwrap().expect("T1 holds data");
    assert_eq!((key.bytes, key.master_version), (vec![0x0a, 0x0b, 0x0c], 1));
    assert_eq!(store.data_key("T2").await.unwrap(), None);
    assert_eq!(store.data_key_count().await.unwrap(), 1);
    assert_eq!(store.token("T2").await.unwrap().unwrap().created_ms, 8);
    assert_eq!(store.data_parts("T1").await.unwrap(), [vec![0xff]]);
    store.close().await;
}

mod data_keys_move_to_the_keyring_in_migration_0024 {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
        super::data_keys_move_to_the_keyring_in_migration_0024(url, "sqlite").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(server) = postgres_url_or_skip(module_path!()) else {
            return;
        };
        let name = new_database_name();
        create_database(&server, &name, "template1").await;
        super::data_keys_move_to_the_keyring_in_migration_0024(
            database_url(&server, &name),
            "postgres",
        )
        .await;
    }
}
