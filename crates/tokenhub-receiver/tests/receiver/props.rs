//! Whatever the order of delivery, the stored state ends as the newest update, and the states
//! applied along the way only ever move forward.

use proptest::prelude::*;
use tokenhub_receiver::{ApplyResult, MemoryStore, Store, TokenUpdate};

use crate::helpers::*;

/// `per_token` updates of each of `tokens` tokens, 7 minutes apart, each with its own id.
fn deliveries(tokens: u32, per_token: u32) -> Vec<(String, TokenUpdate)> {
    let mut out = Vec::new();
    for t in 0..tokens {
        for m in 0..per_token {
            let token = format!("T{t}");
            let u =
                TokenUpdate::from_json(body(&token, m * 7, Some(&format!("{m:04}"))).as_bytes())
                    .unwrap();
            out.push((format!("{token}-{m}"), u));
        }
    }
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn check_order<S: Store>(
    rt: &tokio::runtime::Runtime,
    store: &S,
    sequence: &[(String, TokenUpdate)],
) -> Result<(), TestCaseError> {
    rt.block_on(async {
        let mut newest_applied = std::collections::HashMap::new();
        for (id, update) in sequence {
            let result = store.apply(id, update).await.unwrap();
            let newest = newest_applied.get(&update.token_id).copied();
            match result {
                ApplyResult::Applied { previous } => {
                    // Forward only, and `previous` is what was applied last.
                    prop_assert!(newest.is_none_or(|n| update.last_update_timestamp > n));
                    prop_assert_eq!(previous.map(|p| p.update.last_update_timestamp), newest);
                    newest_applied.insert(update.token_id.clone(), update.last_update_timestamp);
                }
                ApplyResult::Obsolete => {
                    prop_assert!(newest.is_some_and(|n| update.last_update_timestamp <= n));
                }
                ApplyResult::Duplicate => {}
            }
        }
        for stored in store.tokens().await.unwrap() {
            let newest = sequence
                .iter()
                .filter(|(_, u)| u.token_id == stored.update.token_id)
                .map(|(_, u)| u.last_update_timestamp)
                .max()
                .unwrap();
            prop_assert_eq!(stored.update.last_update_timestamp, newest);
        }
        Ok(())
    })
}

fn shuffled_with_retries() -> impl Strategy<Value = Vec<(String, TokenUpdate)>> {
    (
        Just(deliveries(3, 8)),
        proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    )
        .prop_map(|(mut all, retries)| {
            let extra: Vec<_> = retries.iter().map(|i| i.get(&all).clone()).collect();
            all.extend(extra);
            all
        })
        .prop_shuffle()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_order_ends_with_the_newest_state_in_memory(sequence in shuffled_with_retries()) {
        check_order(&runtime(), &MemoryStore::new(), &sequence)?;
    }
}

proptest! {
    // SQLite commits to a file: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn any_order_ends_with_the_newest_state_in_sqlite(sequence in shuffled_with_retries()) {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let store = rt.block_on(tokenhub_receiver::SqliteStore::open(dir.path().join("p.db"))).unwrap();
        check_order(&rt, &store, &sequence)?;
        rt.block_on(store.close());
    }
}
