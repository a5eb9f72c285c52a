//! Gone means gone: deleting a token's data destroys the data key that sealed it (and new data
//! gets a new key); the shred sweep deletes the data no call will complete and purges what is past
//! its retention; and neither the database, nor its log, nor a backup of the store taken before
//! the deletion gives a deleted value back to someone holding the master key.

use crate::support::*;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use sqlx::Connection;
use std::time::Duration;
use tokenhub::store::Dialect;

hub_tests!(
    deleting_a_tokens_data_destroys_its_key_and_new_data_gets_a_new_one,
    the_sweep_deletes_the_data_and_key_of_calls_whose_time_to_live_ran_out,
    deleted_tokens_and_settled_rows_are_purged_after_their_retention,
    a_backup_taken_before_deletion_gives_no_deleted_value_back,
);

const DAY: Duration = Duration::from_secs(24 * 3600);

async fn key_of(app: &TestApp, token: &str) -> Option<Vec<u8>> {
    let key = app.hub.store.data_key(token).await.unwrap();
    key.map(|k| {
        assert_eq!(k.master_version, 1, "wrapped under master-key version 1");
        k.bytes
    })
}

async fn deleting_a_tokens_data_destroys_its_key_and_new_data_gets_a_new_one(app: TestApp) {
    let token = app.pending_token().await;
    let first = key_of(&app, &token)
        .await
        .expect("a key made with the token");
    app.put_data(&token, &data_body(&[psn()]))
        .await
        .assert_accepted();
    assert_eq!(key_of(&app, &token).await.as_ref(), Some(&first));
    app.complete_data(&token).await;
    assert_eq!(key_of(&app, &token).await.as_ref(), Some(&first));
    app.confirm_personalization(&token).await;
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 0);
    assert_eq!(key_of(&app, &token).await, None, "destroyed with the data");

    // A renewal's data is sealed under a new key, destroyed in turn with the token.
    app.put_new_data(&token, &data_body(&app.required_elements()))
        .await
        .assert_accepted();
    let second = key_of(&app, &token).await.expect("a new key");
    assert_ne!(second, first);
    app.token_action(&token, "delete", None).await.expect(200);
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 0);
    assert_eq!(key_of(&app, &token).await, None);
    assert_eq!(app.hub.store.data_key_count().await.unwrap(), 0);
}

async fn the_sweep_deletes_the_data_and_key_of_calls_whose_time_to_live_ran_out(app: TestApp) {
    let pending = app.pending_token().await;
    app.put_data(&pending, &data_body(&[psn()]))
        .await
        .assert_accepted();
    let renewed = app.active_token().await;
    app.put_new_data(&renewed, &data_body(&[app.cmk_ac()]))
        .await
        .assert_accepted();
    let nothing = tokenhub::flows::shred::sweep(&app.hub).await.unwrap();
    assert_eq!((nothing.data, nothing.tokens), (0, 0), "{nothing:?}");

    app.clock.advance(PERSO_TTL + Duration::from_secs(1));
    let fresh = app.pending_token().await;
    app.put_data(&fresh, &data_body(&[psn()]))
        .await
        .assert_accepted();
    // Two sweeps at once (two nodes, on PostgreSQL): each token is claimed by one of them.
    let (a, b) = tokio::join!(
        tokenhub::flows::shred::sweep(&app.hub),
        tokenhub::flows::shred::sweep(&app.hub)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.data + b.data, 2, "{a:?} {b:?}");
    assert!(a.log_truncated || b.log_truncated, "{a:?} {b:?}");
    for token in [&pending, &renewed] {
        assert_eq!(app.hub.store.data_part_count(token).await.unwrap(), 0);
        assert_eq!(key_of(&app, token).await, None);
        assert!(app.elements_held(token).await.is_empty());
        assert!(
            app.history_of(token)
                .await
                .iter()
                .any(|e| e.starts_with("data deleted and its key destroyed")),
            "{:?}",
            app.history_of(token).await
        );
    }
    assert_eq!(app.token_state(&renewed).await, "ACTIVE");
    assert_eq!(
        app.elements_held(&fresh).await,
        ["psn"],
        "still in its time"
    );
    assert!(key_of(&app, &fresh).await.is_some());
    // The late data is still refused as late.
    app.put_data(&pending, &data_body(&app.required_elements()))
        .await
        .assert_refused(322);
}

async fn deleted_tokens_and_settled_rows_are_purged_after_their_retention(app: TestApp) {
    let kept = app.active_token().await;
    let deleted = app.active_token().await;
    app.token_action(&deleted, "delete", None).await.expect(200);
    assert_eq!(app.confirm_removed(DEVICE, &deleted).await, 204);
    let count = |sql: String| {
        let app = &app;
        async move { app.sql_i64(&sql).await.unwrap() }
    };
    let pending_calls =
        format!("SELECT COUNT(*) FROM outbox WHERE token_id = '{deleted}' AND state = 'PENDING'");
    eventually("the TSP told of the deletion", || async {
        (count(pending_calls.clone()).await == 0).then_some(())
    })
    .await;
    let rows_of = |table: &str, token: &str| {
        format!("SELECT COUNT(*) FROM {table} WHERE token_id = '{token}'")
    };
    assert_eq!(count(rows_of("token_fingerprint_sets", &deleted)).await, 1);
    assert!(count(rows_of("outbox", &deleted)).await > 0);

    app.clock.advance(29 * DAY);
    let early = tokenhub::flows::shred::sweep(&app.hub).await.unwrap();
    assert_eq!(early.tokens, 0, "{early:?}");
    assert_eq!(app.token_state(&deleted).await, "DELETED");

    app.clock.advance(2 * DAY);
    let swept = tokenhub::flows::shred::sweep(&app.hub).await.unwrap();
    assert_eq!(swept.tokens, 1, "{swept:?}");
    assert!(swept.rows.outbox > 0, "{swept:?}");
    assert_eq!(app.get_token_response(&deleted).await.status(), 404);
    for table in [
        "tokens",
        "token_fingerprint_sets",
        "token_events",
        "token_data_calls",
        "personalizations",
        "outbox",
    ] {
        assert_eq!(count(rows_of(table, &deleted)).await, 0, "{table}");
    }
    // A token not deleted keeps its record; its events go after their own retention.
    assert_eq!(app.token_state(&kept).await, "ACTIVE");
    assert!(count(rows_of("token_events", &kept)).await > 0);
    assert_eq!(count(rows_of("token_fingerprint_sets", &kept)).await, 1);
    app.clock.advance(60 * DAY);
    let later = tokenhub::flows::shred::sweep(&app.hub).await.unwrap();
    assert!(later.rows.events > 0, "{later:?}");
    assert_eq!(count(rows_of("token_events", &kept)).await, 0);
    assert_eq!(app.token_state(&kept).await, "ACTIVE");
}

/// Opens `sealed` (`nonce || ciphertext+tag`, AES-256-GCM) under `key` with `aad`, as the hub
/// seals: written here from the format, not with the hub's code.
fn open(key: &[u8], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let (nonce, ct) = sealed.split_at_checked(12)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = ct.to_vec();
    let clear = key.open_in_place(nonce, Aad::from(aad), &mut buf).ok()?;
    Some(clear.to_vec())
}

/// Every data key of `token` that any 60-byte window of `bytes` unwraps to under the master key.
fn data_keys_in(bytes: &[u8], token: &str) -> Vec<Vec<u8>> {
    let master = hex::decode(MASTER_KEY).unwrap();
    let label = format!("tokenhub/data-key/v1/{token}");
    let mut keys: Vec<Vec<u8>> = bytes
        .windows(12 + 32 + 16)
        .filter_map(|w| open(&master, label.as_bytes(), w))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Whatever the keys found open among `parts` (the token's sealed parts).
fn opened(keys: &[Vec<u8>], parts: &[Vec<u8>], token: &str) -> Vec<Vec<u8>> {
    keys.iter()
        .flat_map(|k| {
            parts
                .iter()
                .filter_map(move |p| open(k, token.as_bytes(), p))
        })
        .collect()
}

async fn a_backup_taken_before_deletion_gives_no_deleted_value_back(app: TestApp) {
    let token = app.pending_token().await;
    let par = format!("PAR{}", hex::encode_upper(random_bytes(12)));
    let mut elements = app.required_elements();
    elements.push(clear("par", &par));
    app.put_data(&token, &data_body(&elements))
        .await
        .assert_accepted();
    let backup = app.backup_store().await;
    let parts = backup.parts(&token);
    assert_eq!(parts.len(), 1, "the backup holds the sealed part");
    let wrapped = key_of(&app, &token).await.unwrap();

    // While the data is held, the scan finds the key and opens the backup's part: it can fail.
    let live = app.key_store_bytes().await;
    let keys = data_keys_in(&live, &token);
    assert_eq!(keys.len(), 1, "the scan finds the key");
    let clear_parts = opened(&keys, &parts, &token);
    assert!(clear_parts.iter().any(|p| contains(p, par.as_bytes())));
    assert!(
        data_keys_in(&backup.bytes, &token).is_empty(),
        "the store's backup holds no data key"
    );

    app.confirm_personalization(&token).await;
    tokenhub::flows::shred::sweep(&app.hub).await.unwrap();
    let mut everything = backup.bytes.clone();
    everything.extend(app.stored_bytes().await);
    everything.extend(app.key_store_bytes().await);
    assert!(!contains(&everything, par.as_bytes()), "no clear value");
    assert!(!contains(&everything, &wrapped), "no wrapped key");
    assert!(
        !contains(&everything, hex::encode(&wrapped).as_bytes()),
        "no wrapped key in hex"
    );
    let keys = data_keys_in(&everything, &token);
    assert!(keys.is_empty(), "a destroyed key was found");
    assert!(opened(&keys, &parts, &token).is_empty());
    if app.hub.store.dialect() == Dialect::Postgres {
        let keys = app
            .sql_i64("SELECT COUNT(*) FROM keyring.token_keys")
            .await
            .unwrap();
        assert_eq!(keys, 0);
    }
}

/// A backup of the store: its bytes, and the token's sealed parts as the backup holds them.
struct Backup {
    bytes: Vec<u8>,
    parts: Vec<Vec<u8>>,
}

impl Backup {
    fn parts(&self, _token: &str) -> Vec<Vec<u8>> {
        self.parts.clone()
    }
}

/// The hex runs of `text` after `\x` (PostgreSQL's `bytea` as text), decoded.
fn bytea_in(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for run in text.split(|b| !b.is_ascii_hexdigit() && *b != b'x' && *b != b'\\') {
        for piece in run.split(|b| *b == b'\\') {
            if let Some(hex_digits) = piece.strip_prefix(b"x") {
                let even = &hex_digits[..hex_digits.len() / 2 * 2];
                out.extend(hex::decode(even).unwrap_or_default());
            }
        }
    }
    out
}

impl TestApp {
    /// A backup of the store as an operator takes it: on SQLite `VACUUM INTO` and a copy of the
    /// database file and its log; on PostgreSQL every row of the store's tables.
    async fn backup_store(&self) -> Backup {
        let token_parts = "SELECT sealed FROM token_data ORDER BY token_id, seq";
        match self.sqlite_path() {
            Some(path) => {
                let dir = tempfile::tempdir().unwrap();
                let vacuumed = dir.path().join("vacuumed.db");
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.execute("VACUUM INTO ?1", [vacuumed.to_str().unwrap()])
                    .unwrap();
                let mut bytes = std::fs::read(&vacuumed).unwrap();
                bytes.extend(std::fs::read(path).unwrap());
                bytes.extend(std::fs::read(path.with_extension("db-wal")).unwrap_or_default());
                let backup = rusqlite::Connection::open(&vacuumed).unwrap();
                let mut stmt = backup.prepare(token_parts).unwrap();
                let parts = stmt
                    .query_map([], |r| r.get::<_, Vec<u8>>(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                Backup { bytes, parts }
            }
            None => {
                let text = self.stored_bytes().await;
                let mut bytes = bytea_in(&text);
                bytes.extend(text);
                let mut conn = sqlx::PgConnection::connect(&self.database_url())
                    .await
                    .unwrap();
                let parts: Vec<Vec<u8>> = sqlx::query_scalar(token_parts)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
                Backup { bytes, parts }
            }
        }
    }

    /// Every byte the hub keeps anywhere: on SQLite every file beside the database; on
    /// PostgreSQL every row, the keyring's included.
    async fn key_store_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        match self.sqlite_path() {
            Some(path) => {
                for entry in std::fs::read_dir(path.parent().unwrap()).unwrap() {
                    bytes.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
                }
            }
            None => {
                let mut conn = sqlx::PgConnection::connect(&self.database_url())
                    .await
                    .unwrap();
                let keys: Vec<Vec<u8>> =
                    sqlx::query_scalar("SELECT wrapped FROM keyring.token_keys")
                        .fetch_all(&mut conn)
                        .await
                        .unwrap();
                bytes.extend(keys.concat());
                let text = self.stored_bytes().await;
                bytes.extend(bytea_in(&text));
            }
        }
        bytes
    }
}
