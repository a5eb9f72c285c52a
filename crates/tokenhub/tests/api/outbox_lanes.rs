//! The outbox makes each TSP's calls in a lane of its own: a TSP that does not answer holds back
//! its own calls only.

use crate::support::*;

hub_tests!(a_stalled_tsp_holds_back_only_its_own_calls);

const OTHER_TSP: &str = "tsp-answering";

/// Whether the call queued under `correlation_id` is done.
async fn done(app: &TestApp, correlation_id: &str) -> bool {
    let sql = format!(
        "SELECT COUNT(*) FROM outbox WHERE correlation_id = '{correlation_id}' AND state = 'DONE'"
    );
    app.sql_i64(&sql).await == Some(1)
}

async fn a_stalled_tsp_holds_back_only_its_own_calls(app: TestApp) {
    let stalled_token = app.active_token().await;
    let other_token = app.active_token().await;
    app.tsp_calls_to("PUT", &state_path(&stalled_token), 1)
        .await;
    app.tsp_calls_to("PUT", &state_path(&other_token), 1).await;
    // The TSP under test stops answering while it has a call of the hub's in hand.
    app.tsp.hold_calls();
    app.token_action(&stalled_token, "suspend", None)
        .await
        .expect(200);
    let stalled = last_event(&app, &stalled_token).await.1;
    app.tsp_calls_to("PUT", &state_path(&stalled_token), 2)
        .await;
    // Another TSP takes the issuer's calls from now on, and answers.
    let other = FakeTsp::spawn().await;
    assert_eq!(
        app.put_tsp(OTHER_TSP, &other.base_url()).await.status(),
        200
    );
    let r = app.put_issuer(ISSUER, "Test Bank", OTHER_TSP).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    app.token_action(&other_token, "suspend", None)
        .await
        .expect(200);
    let answered = last_event(&app, &other_token).await.1;
    eventually("the other TSP's call done", || async {
        done(&app, &answered).await.then_some(())
    })
    .await;
    let calls = other.other_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].path, state_path(&other_token));
    assert_eq!(calls[0].correlation_id.as_deref(), Some(answered.as_str()));
    // The stalled TSP still holds its call: it was not what the other call waited for.
    assert!(!done(&app, &stalled).await, "the stalled call is not done");
    app.tsp.release_calls();
    eventually("the stalled call done", || async {
        done(&app, &stalled).await.then_some(())
    })
    .await;
}
