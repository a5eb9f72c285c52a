//! Properties over HTTP: whatever the tokenId length and element count, `/data` is accepted exactly
//! when the tokenId is 1..48 characters and the call has at most 200 elements, and then every
//! element sent is held.

use crate::support::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::collections::HashSet;

hub_tests!(data_is_accepted_exactly_within_the_token_id_and_element_count_limits,);

async fn data_is_accepted_exactly_within_the_token_id_and_element_count_limits(app: TestApp) {
    let strategy = ("[A-Za-z0-9_-]{1,60}", 0usize..=210);
    let mut runner = TestRunner::new(Config {
        cases: 16,
        ..Config::default()
    });
    let handle = tokio::runtime::Handle::current();
    let created = std::sync::Mutex::new(HashSet::new());
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |(token_id, count)| {
            handle.block_on(async {
                let valid_id = token_id.chars().count() <= 48;
                if valid_id && created.lock().unwrap().insert(token_id.clone()) {
                    app.digitize_as(&token_id).await;
                }
                let elements: Vec<_> = (1..=count)
                    .map(|i| clear(&optional_name((i - 1) % OPTIONAL_COUNT + 1), "12"))
                    .collect();
                let answer = app.put_data(&token_id, &data_body(&elements)).await;
                if !valid_id || count > 200 {
                    prop_assert_eq!(answer.code(), Some(112), "{:?}", answer);
                } else {
                    prop_assert_eq!(answer.status, 204, "{:?}", answer);
                    let held: HashSet<String> =
                        app.elements_held(&token_id).await.into_iter().collect();
                    for i in 1..=count {
                        prop_assert!(held.contains(&optional_name(i)));
                    }
                }
                Ok(())
            })
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
