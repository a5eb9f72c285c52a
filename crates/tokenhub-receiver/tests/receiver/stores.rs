//! The rules of applying, the same for both stores: duplicates, order, the PAN-discard hook,
//! and concurrent deliveries.

use std::sync::Arc;

use rand::seq::SliceRandom;
use tokenhub_receiver::{ApplyResult, Outcome, Receiver, Store, TokenState, TokenUpdate};

use crate::helpers::*;

/// Runs each named suite function against a `MemoryStore` and a `SqliteStore`.
macro_rules! for_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::memory_store()).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _dir) = crate::helpers::sqlite_store().await;
                    super::$name(store).await;
                }
            )*
        }
    };
}

for_both_stores!(
    applies_and_stores_the_snapshot,
    a_repeated_webhook_id_is_a_duplicate,
    an_older_or_equal_update_is_obsolete,
    a_new_token_pan_calls_the_discard_hook_once,
    the_store_alone_is_atomic_and_ordered,
    concurrent_shuffled_deliveries_end_with_the_newest_state,
);

async fn deliver<S: Store>(r: &Receiver<S, Recorder>, id: &str, body: &str) -> Outcome {
    r.handle(&headers(id, body), body.as_bytes()).await.unwrap()
}

async fn applies_and_stores_the_snapshot<S: Store>(store: S) {
    let r = receiver(store);
    let b = body("T1", 0, Some("1111"));
    assert_eq!(deliver(&r, "w1", &b).await, Outcome::Applied);
    let stored = r.token("T1").await.unwrap().unwrap();
    assert_eq!(stored.update, TokenUpdate::from_json(b.as_bytes()).unwrap());
    assert_eq!(stored.webhook_id, "w1");
    assert_eq!(stored.update.token_state, Some(TokenState::Active));
    assert_eq!(stored.update.card_art_id, None);
    assert_eq!(r.tokens().await.unwrap(), vec![stored]);
    assert!(r.token("T2").await.unwrap().is_none());
    assert_eq!(r.hooks().updates(), 1);
    assert!(r.hooks().discards().is_empty());

    // The next snapshot replaces it whole (a field gone null is null).
    let mut next: serde_json::Value = serde_json::from_str(&body("T1", 1, Some("1111"))).unwrap();
    next["tokenState"] = "SUSPENDED".into();
    next["cardLastDigits"] = serde_json::Value::Null;
    let next = next.to_string();
    assert_eq!(deliver(&r, "w2", &next).await, Outcome::Applied);
    let stored = r.token("T1").await.unwrap().unwrap();
    assert_eq!(stored.update.token_state, Some(TokenState::Suspended));
    assert_eq!(stored.update.card_last_digits, None);
    assert_eq!(stored.webhook_id, "w2");
    let s = r.stats();
    assert_eq!(
        (s.received, s.applied, s.duplicates, s.obsolete),
        (2, 2, 0, 0)
    );
}

async fn a_repeated_webhook_id_is_a_duplicate<S: Store>(store: S) {
    let r = receiver(store);
    let b = body("T1", 0, Some("1111"));
    assert_eq!(deliver(&r, "w1", &b).await, Outcome::Applied);
    assert_eq!(deliver(&r, "w1", &b).await, Outcome::Duplicate);
    // Even with another (newer) body: the id decides.
    let newer = body("T1", 5, Some("2222"));
    assert_eq!(deliver(&r, "w1", &newer).await, Outcome::Duplicate);
    assert_eq!(
        r.token("T1")
            .await
            .unwrap()
            .unwrap()
            .update
            .last_update_timestamp_text,
        timestamp(0)
    );
    // An obsolete delivery's id is remembered too.
    assert_eq!(deliver(&r, "w2", &b).await, Outcome::Obsolete);
    assert_eq!(deliver(&r, "w2", &b).await, Outcome::Duplicate);
    let s = r.stats();
    assert_eq!((s.applied, s.duplicates, s.obsolete), (1, 3, 1));
    assert_eq!(r.hooks().updates(), 1);
    assert!(r.hooks().discards().is_empty());
}

async fn an_older_or_equal_update_is_obsolete<S: Store>(store: S) {
    let r = receiver(store);
    assert_eq!(
        deliver(&r, "w2", &body("T1", 2, Some("2222"))).await,
        Outcome::Applied
    );
    // Older.
    assert_eq!(
        deliver(&r, "w1", &body("T1", 1, Some("1111"))).await,
        Outcome::Obsolete
    );
    // Equal, even with other contents.
    assert_eq!(
        deliver(&r, "w3", &body("T1", 2, Some("3333"))).await,
        Outcome::Obsolete
    );
    // The same instant written with another offset is equal too.
    let mut v: serde_json::Value = serde_json::from_str(&body("T1", 0, None)).unwrap();
    v["lastUpdateTimestamp"] = "2026-11-25T11:02:00+01:00".into();
    assert_eq!(deliver(&r, "w4", &v.to_string()).await, Outcome::Obsolete);
    let stored = r.token("T1").await.unwrap().unwrap();
    assert_eq!(stored.update.token_last_digits.as_deref(), Some("2222"));
    assert_eq!(stored.webhook_id, "w2");
    // Another token is not affected by T1's timestamps.
    assert_eq!(
        deliver(&r, "w5", &body("T2", 0, None)).await,
        Outcome::Applied
    );
    // Newer applies.
    assert_eq!(
        deliver(&r, "w6", &body("T1", 3, Some("2222"))).await,
        Outcome::Applied
    );
    let s = r.stats();
    assert_eq!((s.applied, s.obsolete), (3, 3));
    assert!(r.hooks().discards().is_empty());
}

async fn a_new_token_pan_calls_the_discard_hook_once<S: Store>(store: S) {
    let r = receiver(store);
    // First sight of the token: nothing to compare with.
    assert_eq!(
        deliver(&r, "w1", &body("T1", 0, Some("1111"))).await,
        Outcome::Applied
    );
    assert!(r.hooks().discards().is_empty());
    // Same digits: no discard.
    assert_eq!(
        deliver(&r, "w2", &body("T1", 1, Some("1111"))).await,
        Outcome::Applied
    );
    assert!(r.hooks().discards().is_empty());
    // New digits: one discard, even when the delivery is retried or an older one comes late.
    let changed = body("T1", 2, Some("9999"));
    assert_eq!(deliver(&r, "w3", &changed).await, Outcome::Applied);
    assert_eq!(deliver(&r, "w3", &changed).await, Outcome::Duplicate);
    assert_eq!(
        deliver(&r, "w0", &body("T1", 0, Some("1111"))).await,
        Outcome::Obsolete
    );
    assert_eq!(r.hooks().discards(), vec!["T1".to_string()]);
    assert_eq!(r.stats().pan_discards, 1);
    // Unknown digits (null) are no change either.
    assert_eq!(
        deliver(&r, "w4", &body("T1", 3, None)).await,
        Outcome::Applied
    );
    assert_eq!(r.hooks().discards().len(), 1);
    assert_eq!(r.hooks().updates(), 4);
}

async fn the_store_alone_is_atomic_and_ordered<S: Store>(store: S) {
    let u = |minute, digits: &str| {
        TokenUpdate::from_json(body("T1", minute, Some(digits)).as_bytes()).unwrap()
    };
    assert_eq!(
        store.apply("a", &u(1, "1111")).await.unwrap(),
        ApplyResult::Applied { previous: None }
    );
    let ApplyResult::Applied {
        previous: Some(previous),
    } = store.apply("b", &u(2, "2222")).await.unwrap()
    else {
        panic!("the newer update should apply over the stored one");
    };
    assert_eq!(previous.update, u(1, "1111"));
    assert_eq!(previous.webhook_id, "a");
    assert_eq!(
        store.apply("b", &u(3, "3333")).await.unwrap(),
        ApplyResult::Duplicate
    );
    assert_eq!(
        store.apply("c", &u(2, "3333")).await.unwrap(),
        ApplyResult::Obsolete
    );
    assert_eq!(
        store.apply("c", &u(9, "3333")).await.unwrap(),
        ApplyResult::Duplicate
    );
    assert_eq!(
        store.token("T1").await.unwrap().unwrap().update,
        u(2, "2222")
    );
}

async fn concurrent_shuffled_deliveries_end_with_the_newest_state<S: Store>(store: S) {
    const TOKENS: u32 = 8;
    const UPDATES: u32 = 25;
    let r = Arc::new(receiver(store));
    // Every update of every token, each delivered twice (a retry), in a random order.
    let mut deliveries = Vec::new();
    for t in 0..TOKENS {
        for m in 0..UPDATES {
            let token = format!("TKN{t:04}");
            let b = body(&token, m, Some(&format!("{:04}", m % 3)));
            let id = format!("{token}-{m}");
            deliveries.push((id.clone(), b.clone()));
            deliveries.push((id, b));
        }
    }
    deliveries.shuffle(&mut rand::thread_rng());
    let tasks: Vec<_> = deliveries
        .into_iter()
        .map(|(id, b)| {
            let r = r.clone();
            tokio::spawn(async move { r.handle(&headers(&id, &b), b.as_bytes()).await.unwrap() })
        })
        .collect();
    for outcome in futures::future::join_all(tasks).await {
        outcome.unwrap();
    }
    let tokens = r.tokens().await.unwrap();
    assert_eq!(tokens.len(), TOKENS as usize);
    for stored in &tokens {
        assert_eq!(
            stored.update.last_update_timestamp_text,
            timestamp(UPDATES - 1)
        );
        assert_eq!(
            stored.webhook_id,
            format!("{}-{}", stored.update.token_id, UPDATES - 1)
        );
    }
    let s = r.stats();
    let total = u64::from(2 * TOKENS * UPDATES);
    assert_eq!(s.received, total);
    assert_eq!(s.duplicates, total / 2);
    assert_eq!(s.applied + s.obsolete, total / 2);
    assert!(s.applied >= u64::from(TOKENS));
    assert_eq!(s.rejected + s.failed, 0);
    assert_eq!(r.hooks().updates() as u64, s.applied);
    assert_eq!(r.hooks().discards().len() as u64, s.pan_discards);
}
