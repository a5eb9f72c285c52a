//! Two nodes on one PostgreSQL database tell each other what they did (`LISTEN`/`NOTIFY`): a
//! device long-polling one node is woken when the other queued its profile, long before the
//! poll's one-second fallback; a requestor key revoked on one node is refused by the other
//! right after, and so is a shared key retired there, and a TSP moved there is called at its
//! new address, on a clock that never moves (so no cache time ran out and no key was read
//! again on a timer); a node whose listening
//! connection is killed connects again and is woken again. PostgreSQL only: SQLite is
//! single-node.

use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokenhub::Config;

/// Runs each body on two nodes sharing a fresh PostgreSQL database (skipped without one).
macro_rules! two_node_tests {
    (config = $config:ident; $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(url) = $crate::support::postgres_url_or_skip(module_path!()) else {
                        return;
                    };
                    let a = $crate::support::spawn_app_with(
                        $crate::support::Backend::Postgres(url),
                        super::$config,
                    )
                    .await;
                    let b = a.another_node(super::$config).await;
                    // Node B listens before the test begins (what was signalled before it
                    // listened, it reads again once it does).
                    super::listener_pid(&b, None).await;
                    super::$name(a, b).await;
                }
            }
        )*
    };
}

two_node_tests!(
    config = two_nodes;
    a_device_polling_one_node_gets_a_profile_queued_on_the_other_within_100_ms,
    a_requestor_key_revoked_on_one_node_is_refused_by_the_other_right_after,
    a_shared_key_retired_on_one_node_takes_no_data_on_the_other_right_after,
    a_tsp_moved_on_one_node_is_called_at_its_new_address_by_the_other_right_after,
    a_node_whose_listening_connection_is_killed_connects_again_and_is_woken_again,
);

fn two_nodes(config: &mut Config) {
    requestors_allowed(config);
}

/// Well under the long poll's one-second fallback: a wake that took the fallback fails.
const WOKEN_WITHIN: Duration = Duration::from_millis(250);

/// How long before the data the device's poll is waiting on the other node.
const POLL_HEAD_START: Duration = Duration::from_millis(200);

/// The device long-polls `b` while `a` gets a token's data; returns the time from `a`'s `204`
/// to `b`'s answer, which must hold the token's profile.
async fn data_on_a_offer_on_b(a: &TestApp, b: &TestApp) -> Duration {
    let token = a.digitize().await;
    let (client, url) = (
        b.wallet.clone(),
        b.url(&format!(
            "/wallet/v1/devices/{DEVICE}/personalizations?waitSeconds=5"
        )),
    );
    let poll = tokio::spawn(async move {
        let answer = Answer::read(client.get(url).send().await.expect("the hub answers")).await;
        (Instant::now(), answer)
    });
    eventually("the poll waits on the other node", || async {
        b.hub.devices.polling(DEVICE).then_some(())
    })
    .await;
    tokio::time::sleep(POLL_HEAD_START).await;
    a.put_data(&token, &data_body(&a.required_elements()))
        .await
        .assert_accepted();
    let answered = Instant::now();
    let (offered, answer) = poll.await.unwrap();
    let offers = answer.expect(200).as_array().unwrap().clone();
    let offer: &Value = offers
        .iter()
        .find(|o| o["tokenId"] == token)
        .unwrap_or_else(|| panic!("the profile of {token} is offered: {offers:?}"));
    let id = offer["personalizationId"].as_str().unwrap();
    let result = b
        .wallet
        .post(b.url(&format!("/wallet/v1/personalizations/{id}/result")))
        .json(&json!({"status": "SUCCESS"}))
        .send()
        .await
        .unwrap();
    assert_eq!(result.status(), 204, "the device's result is taken");
    offered.saturating_duration_since(answered)
}

async fn a_device_polling_one_node_gets_a_profile_queued_on_the_other_within_100_ms(
    a: TestApp,
    b: TestApp,
) {
    let mut latencies = Vec::new();
    for _ in 0..3 {
        latencies.push(data_on_a_offer_on_b(&a, &b).await);
    }
    eprintln!("from /data's 204 on node A to the offer on node B: {latencies:?}");
    for latency in latencies {
        assert!(latency < WOKEN_WITHIN, "woken by the fallback: {latency:?}");
    }
}

async fn transaction_with(app: &TestApp, key: &str, token_id: &str) -> Answer {
    let body = json!({"amount": "100", "currency": "EUR", "transactionType": "CIT_ECOM"});
    let path = format!("/requestor/v1/tokens/{token_id}/transactions");
    app.requestor_call(Some(key), reqwest::Method::POST, &path, &[], Some(&body))
        .await
}

async fn a_requestor_key_revoked_on_one_node_is_refused_by_the_other_right_after(
    a: TestApp,
    b: TestApp,
) {
    let cof = a.card_on_file().await;
    let made = a
        .tokenize(&cof.requestor, "k", &cof.card("4111111111111111"))
        .await;
    let token_id = made.expect(201)["tokenId"].as_str().unwrap().to_string();
    let spare = a
        .admin_post("/admin/v1/token-requestors/REQ1/api-keys", None)
        .await;
    let spare = spare.expect(201);
    let (key, key_id) = (
        spare["apiKey"].as_str().unwrap().to_string(),
        spare["keyId"].as_str().unwrap().to_string(),
    );
    // Node B verifies the key and keeps it (its cache's time never runs out: the clock is still),
    // once it has seen the TSP node A registered.
    transactions_until(&b, &key, &token_id, 201, Instant::now()).await;
    transaction_with(&b, &key, &token_id).await.expect(201);
    a.admin_send(
        reqwest::Method::DELETE,
        &format!("/admin/v1/token-requestors/REQ1/api-keys/{key_id}"),
        None,
    )
    .await
    .expect(204);
    let revoked = Instant::now();
    let mut tries = 0;
    let refused = loop {
        tries += 1;
        let answer = transaction_with(&b, &key, &token_id).await;
        if answer.status == 401 {
            break revoked.elapsed();
        }
        answer.expect(201);
        assert!(
            revoked.elapsed() < WOKEN_WITHIN,
            "node B still takes the key"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!("refused by node B {refused:?} after node A's revocation ({tries} tries)");
    // The other keys still work on node B.
    transaction_with(&b, &cof.requestor.key, &token_id)
        .await
        .expect(201);
}

async fn a_shared_key_retired_on_one_node_takes_no_data_on_the_other_right_after(
    a: TestApp,
    b: TestApp,
) {
    let token = b.pending_token().await;
    b.put_data(&token, &data_body(&[b.cmk_ac()]))
        .await
        .assert_accepted();
    a.admin_post(
        &format!("/admin/v1/shared-keys/{TSP_ID}/{KEK}/retire"),
        None,
    )
    .await
    .expect(200);
    let retired = Instant::now();
    let mut tries = 0;
    let refused = loop {
        tries += 1;
        let token = b.pending_token().await;
        let answer = b.put_data(&token, &data_body(&[b.cmk_ac()])).await;
        if answer.code() == Some(431) {
            break retired.elapsed();
        }
        answer.assert_accepted();
        assert!(
            retired.elapsed() < WOKEN_WITHIN,
            "node B still takes the key"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!("a value under the key refused by node B {refused:?} after node A retired it ({tries} tries)");
}

/// Calls Create Transaction on `b` until its answer has `status`; fails when `b` still answers
/// as before [`WOKEN_WITHIN`] after `since`.
async fn transactions_until(b: &TestApp, key: &str, token_id: &str, status: u16, since: Instant) {
    loop {
        let answer = transaction_with(b, key, token_id).await;
        if answer.status == status {
            return;
        }
        assert!(
            since.elapsed() < WOKEN_WITHIN,
            "node B still calls the TSP where it was: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn a_tsp_moved_on_one_node_is_called_at_its_new_address_by_the_other_right_after(
    a: TestApp,
    b: TestApp,
) {
    let cof = a.card_on_file().await;
    let key = &cof.requestor.key;
    let made = a
        .tokenize(&cof.requestor, "k", &cof.card("4111111111111111"))
        .await;
    let token_id = made.expect(201)["tokenId"].as_str().unwrap().to_string();
    // Node B calls the simulator once it has seen node A register it there.
    transactions_until(&b, key, &token_id, 201, Instant::now()).await;
    let put = a
        .put_tsp_with_subject(TSP_ID, "http://127.0.0.1:9", TSP_SUBJECT)
        .await;
    assert!(put.status().is_success(), "{put:?}");
    transactions_until(&b, key, &token_id, 503, Instant::now()).await;
    let put = a
        .put_tsp_with_subject(TSP_ID, &cof.sim.base_url(), TSP_SUBJECT)
        .await;
    assert!(put.status().is_success(), "{put:?}");
    transactions_until(&b, key, &token_id, 201, Instant::now()).await;
}

/// The backend pid of `node`'s listening connection, once there is one other than `not`.
async fn listener_pid(node: &TestApp, not: Option<i64>) -> i64 {
    let sql = format!(
        "SELECT CAST(pid AS bigint) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'tokenhub-signals-{}'",
        node.hub.signals.node()
    );
    eventually("the node's listening connection", || async {
        node.sql_i64(&sql).await.filter(|pid| Some(*pid) != not)
    })
    .await
}

async fn a_node_whose_listening_connection_is_killed_connects_again_and_is_woken_again(
    a: TestApp,
    b: TestApp,
) {
    let before = listener_pid(&b, None).await;
    let killed = b
        .sql_i64(&format!(
            "SELECT count(*) FROM (SELECT pg_terminate_backend({before}) AS done) AS t WHERE done"
        ))
        .await;
    assert_eq!(killed, Some(1), "the listening connection was terminated");
    let after = listener_pid(&b, Some(before)).await;
    assert_ne!(after, before);
    let latency = data_on_a_offer_on_b(&a, &b).await;
    eprintln!(
        "after the reconnection, from /data's 204 on node A to the offer on node B: {latency:?}"
    );
    assert!(latency < WOKEN_WITHIN, "woken by the fallback: {latency:?}");
    // Losing the connection is not a worker's failure.
    let health = b.admin_get("/admin/v1/health").await.expect(200).clone();
    let signals = health["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "signals")
        .unwrap_or_else(|| panic!("the signals worker is listed: {health}"));
    assert_eq!(signals["state"], "RUNNING", "{health}");
    assert_eq!(signals["restarts"], 0, "{health}");
}
