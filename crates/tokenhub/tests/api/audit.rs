//! The audit log: an entry per admin mutation (who, what, on which object, the correlation id, the
//! outcome), none per read, readable page by page, and a hash chain that finds a changed, removed
//! or reordered entry.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};
use tokenhub::flows::audit::verify;

hub_tests!(
    every_admin_mutation_and_key_operation_is_audited_and_no_read_is,
    the_audit_log_is_read_a_page_at_a_time_by_admin_and_read_only_keys,
    a_changed_removed_or_reordered_entry_breaks_the_chain_at_that_entry,
    concurrent_mutations_append_to_one_unbroken_chain,
);

async fn entries(app: &TestApp) -> Vec<Value> {
    let a = app.admin_get("/admin/v1/audit?limit=500").await;
    a.expect(200)["entries"].as_array().unwrap().clone()
}

async fn every_admin_mutation_and_key_operation_is_audited_and_no_read_is(app: TestApp) {
    // The harness's own: three shared keys imported, its admin key, its wallet provider and the
    // provider's key, four seed calls.
    let before = entries(&app).await;
    let actions: Vec<&str> = before
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions[..4],
        [
            "shared-key.import",
            "shared-key.import",
            "shared-key.import",
            "admin-key.create"
        ]
    );
    assert_eq!(before[3]["actor"], "bootstrap");
    assert_eq!(before.len(), 10, "{actions:?}");
    let admin_id = app.admin_key.split('_').nth(1).unwrap().to_string();
    assert!(before[4..].iter().all(|e| e["actor"] == admin_id.as_str()));

    let token = app.pending_token().await;
    let read_only = app.create_admin_key(&json!({"role": "read-only"})).await;
    let ro_id = read_only.split('_').nth(1).unwrap().to_string();
    // Reads are not audited.
    app.get_token(&token).await;
    app.admin_get("/admin/v1/admin-keys").await.expect(200);
    // A mutation, with its correlation id; a refused one; a key revoked.
    let r = app
        .admin(Method::POST, &format!("/admin/v1/tokens/{token}/delete"))
        .header("x-correlation-id", "op-4711")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-correlation-id"], "op-4711");
    let refused = app
        .admin_as(
            &read_only,
            Method::PUT,
            &format!("/admin/v1/tsps/{TSP_ID}"),
            Some(&json!({"baseUrl": "http://127.0.0.1:9/x"})),
        )
        .await;
    assert_eq!(refused.status, 403);
    app.admin_send(
        Method::DELETE,
        &format!("/admin/v1/admin-keys/{ro_id}"),
        None,
    )
    .await
    .expect(204);

    let after = entries(&app).await;
    assert_eq!(after.len(), before.len() + 4, "{after:#?}");
    let new: Vec<(String, String, String, String, i64)> = after[before.len()..]
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["objectType"].as_str().unwrap().to_string(),
                e["objectId"].as_str().unwrap().to_string(),
                e["status"].as_i64().unwrap(),
            )
        })
        .collect();
    let a = admin_id.clone();
    assert_eq!(
        new,
        [
            (
                a.clone(),
                "admin-key.create".into(),
                "admin-key".into(),
                ro_id.clone(),
                201
            ),
            (
                a.clone(),
                "POST /admin/v1/tokens/{token_id}/delete".into(),
                "tokens".into(),
                token.clone(),
                200
            ),
            (
                ro_id.clone(),
                "PUT /admin/v1/tsps/{tsp_id}".into(),
                "tsps".into(),
                TSP_ID.into(),
                403
            ),
            (a, "admin-key.revoke".into(), "admin-key".into(), ro_id, 204),
        ]
    );
    assert_eq!(after[before.len() + 1]["correlationId"], "op-4711");
    for (i, e) in after.iter().enumerate() {
        assert_eq!(e["seq"], json!(i + 1));
        if i > 0 {
            assert_eq!(e["prevHash"], after[i - 1]["hash"]);
        }
    }
    assert!(verify(&app.hub.store).await.unwrap().is_ok());
}

async fn the_audit_log_is_read_a_page_at_a_time_by_admin_and_read_only_keys(app: TestApp) {
    let read_only = app.create_admin_key(&json!({"role": "read-only"})).await;
    let all = entries(&app).await;
    assert!(all.len() >= 9);
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let a = app
            .admin_as(
                &read_only,
                Method::GET,
                &format!("/admin/v1/audit?after={after}&limit=4"),
                None,
            )
            .await;
        let page = a.expect(200).clone();
        let got = page["entries"].as_array().unwrap();
        assert!(got.len() <= 4);
        seen.extend(got.iter().cloned());
        match page["nextAfter"].as_i64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(seen, all);
    for q in ["limit=0", "limit=501", "limit=x"] {
        let a = app.admin_get(&format!("/admin/v1/audit?{q}")).await;
        assert_eq!(a.status, 400, "{q}");
    }
}

/// Lets the test change the log as someone with the database's password could.
async fn allow_tampering(app: &TestApp) {
    match app.hub.store.dialect() {
        tokenhub::store::Dialect::Sqlite => {
            app.execute_sql("DROP TRIGGER audit_log_no_update").await;
            app.execute_sql("DROP TRIGGER audit_log_no_delete").await;
        }
        tokenhub::store::Dialect::Postgres => {
            app.execute_sql("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
                .await;
        }
    }
}

async fn broken_at(app: &TestApp) -> Option<i64> {
    verify(&app.hub.store).await.unwrap().err().map(|b| b.seq)
}

async fn a_changed_removed_or_reordered_entry_breaks_the_chain_at_that_entry(app: TestApp) {
    for n in 0..4 {
        app.put_tsp(&format!("tsp-{n}"), "http://127.0.0.1:9/tsp")
            .await;
    }
    let n = entries(&app).await.len() as i64;
    assert_eq!(broken_at(&app).await, None);
    allow_tampering(&app).await;

    // Edited: a refusal made to look like a success, then put back.
    let status = entries(&app).await[2]["status"].as_i64().unwrap();
    app.execute_sql("UPDATE audit_log SET status = 299 WHERE seq = 3")
        .await;
    assert_eq!(broken_at(&app).await, Some(3));
    app.execute_sql(&format!(
        "UPDATE audit_log SET status = {status} WHERE seq = 3"
    ))
    .await;
    assert_eq!(broken_at(&app).await, None);
    app.execute_sql("UPDATE audit_log SET actor = 'someone' WHERE seq = 5")
        .await;
    assert_eq!(broken_at(&app).await, Some(5));
    let actor = app.admin_key.split('_').nth(1).unwrap().to_string();
    app.execute_sql(&format!(
        "UPDATE audit_log SET actor = '{actor}' WHERE seq = 5"
    ))
    .await;
    assert_eq!(broken_at(&app).await, None);

    // Reordered: two entries' places swapped, then swapped back.
    let swap = "UPDATE audit_log SET seq = -1 WHERE seq = 6; \
                UPDATE audit_log SET seq = 6 WHERE seq = 7; \
                UPDATE audit_log SET seq = 7 WHERE seq = -1";
    app.execute_sql(swap).await;
    assert_eq!(broken_at(&app).await, Some(6));
    app.execute_sql(swap).await;
    assert_eq!(broken_at(&app).await, None);

    // Removed: the last entry (found against the chain's head), then one in the middle.
    app.execute_sql(&format!("DELETE FROM audit_log WHERE seq = {n}"))
        .await;
    assert_eq!(broken_at(&app).await, Some(n));
    app.execute_sql("DELETE FROM audit_log WHERE seq = 4").await;
    assert_eq!(broken_at(&app).await, Some(4));
}

async fn concurrent_mutations_append_to_one_unbroken_chain(app: TestApp) {
    let before = entries(&app).await.len();
    let calls = (0..24).map(|n| {
        let app = &app;
        async move {
            let r = app
                .put_tsp(&format!("tsp-{n}"), "http://127.0.0.1:9/tsp")
                .await;
            assert_eq!(r.status(), 200);
        }
    });
    futures::future::join_all(calls).await;
    let after = entries(&app).await;
    assert_eq!(after.len(), before + 24);
    let mut objects: Vec<&str> = after[before..]
        .iter()
        .map(|e| e["objectId"].as_str().unwrap())
        .collect();
    objects.sort();
    objects.dedup();
    assert_eq!(objects.len(), 24);
    assert_eq!(
        verify(&app.hub.store).await.unwrap().map(|v| v.entries),
        Ok(after.len() as i64)
    );
}
