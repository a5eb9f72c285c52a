//! `GET /trapi/v2.0/healthCheck`, and what the TSP API answers when the store is gone (921).

use crate::support::*;

hub_tests!(
    health_check_answers_204_and_echoes_x_request_id,
    health_check_without_x_request_id_is_rejected_with_111,
    health_check_with_x_request_id_of_64_characters_is_accepted_and_65_is_rejected_with_112,
    with_its_store_closed_the_hub_answers_921_and_its_health_check_503,
);

async fn health_check_answers_204_and_echoes_x_request_id(app: TestApp) {
    let answer = app.health_check(Some("req-0001")).await;
    answer.assert_accepted();
    assert_eq!(answer.request_id.as_deref(), Some("req-0001"));
}

async fn health_check_without_x_request_id_is_rejected_with_111(app: TestApp) {
    let answer = app.health_check(None).await;
    answer.assert_refused(111);
    assert_eq!(answer.request_id, None);
}

async fn health_check_with_x_request_id_of_64_characters_is_accepted_and_65_is_rejected_with_112(
    app: TestApp,
) {
    let id = "r".repeat(64);
    let answer = app.health_check(Some(&id)).await;
    answer.assert_accepted();
    assert_eq!(answer.request_id.as_deref(), Some(id.as_str()));
    let id = "r".repeat(65);
    let answer = app.health_check(Some(&id)).await;
    answer.assert_refused(112);
    assert_eq!(answer.request_id.as_deref(), Some(id.as_str()));
    app.health_check(Some("")).await.assert_refused(112);
}

async fn with_its_store_closed_the_hub_answers_921_and_its_health_check_503(app: TestApp) {
    let token = app.pending_token().await;
    app.hub.store.close().await;

    let answer = app
        .put_data_as(&token, "cid-921", &data_body(&app.required_elements()))
        .await;
    answer.assert_refused(921);
    assert_eq!(answer.correlation_id.as_deref(), Some("cid-921"));
    assert!(
        !answer.message().to_lowercase().contains("sql")
            && !answer.message().to_lowercase().contains("pool"),
        "the cause stays in the log: {answer:?}"
    );
    app.put_new_data(&token, &serde_json::json!({"issuerId": ISSUER}))
        .await
        .assert_refused(921);

    let health = app.health_check(Some("req-921")).await;
    assert_eq!(health.status, 503, "{health:?}");
    assert_eq!(health.code(), Some(921), "{health:?}");
    assert_eq!(health.request_id.as_deref(), Some("req-921"));

    // A refusal that needs no store is still given.
    app.put_data(&token, &serde_json::json!({}))
        .await
        .assert_refused(111);
}
