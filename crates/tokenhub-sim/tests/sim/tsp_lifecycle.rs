//! The TSP simulator after createToken, over real HTTP: updateTokenState, transactions (approve,
//! replay, bad cryptogram, not active, unknown token), and the ATC reset of
//! submitNewTokenDataStatus.

use std::collections::BTreeMap;

use crate::helpers::{TestSim, ISSUER};
use tokenhub_sim::TspTokenState;

fn reason(answered: &crate::helpers::Answered) -> &str {
    answered.body["reason"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn a_new_token_is_inactive_until_the_hub_activates_it_then_it_pays_with_increasing_atcs() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let (token_id, cmk) = sim.new_token().await;
    let view = sim.handle.token(&token_id).unwrap();
    assert_eq!(view.state, TspTokenState::Inactive);
    assert_eq!(view.last_atc, None);

    let early = sim.pay(&token_id, &cmk, 1).await;
    assert_eq!(early.status, 200);
    assert_eq!(early.body["approved"], false);
    assert_eq!(reason(&early), "TOKEN_NOT_ACTIVE");

    let activated = sim.update_state(&token_id, "ACTIVE").await;
    assert_eq!(activated.status, 204, "{activated:?}");
    assert!(activated.header("x-correlation-id").is_some());
    for atc in 1..=3 {
        let paid = sim.pay(&token_id, &cmk, atc).await;
        assert_eq!(paid.body["approved"], true, "ATC {atc}: {paid:?}");
        assert_eq!(reason(&paid), "APPROVED");
    }

    let raw = sim.sim_token(&token_id).await;
    assert_eq!(raw.status, 200);
    assert_eq!(
        raw.body,
        serde_json::json!({"tokenId": token_id, "state": "ACTIVE", "lastAtc": 3,
            "approved": 3, "declined": 1})
    );
    let status = sim.sim_status().await;
    assert_eq!(status.transactions_approved, 3);
    assert_eq!(
        status.transactions_declined,
        BTreeMap::from([("TOKEN_NOT_ACTIVE".to_string(), 1)])
    );
    assert_eq!(status.state_updates, 1);
    assert_eq!(status, sim.handle.status());
}

#[tokio::test]
async fn a_replayed_or_lower_atc_is_declined_and_the_next_higher_one_still_pays() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let (token_id, cmk) = sim.new_token().await;
    assert_eq!(sim.update_state(&token_id, "ACTIVE").await.status, 204);

    assert_eq!(sim.pay(&token_id, &cmk, 1).await.body["approved"], true);
    assert_eq!(sim.pay(&token_id, &cmk, 5).await.body["approved"], true);
    for atc in [5, 4, 1, 0] {
        let replay = sim.pay(&token_id, &cmk, atc).await;
        assert_eq!(replay.body["approved"], false, "ATC {atc}");
        assert_eq!(reason(&replay), "REPLAY", "ATC {atc}");
    }
    assert_eq!(sim.pay(&token_id, &cmk, 6).await.body["approved"], true);

    let view = sim.handle.token(&token_id).unwrap();
    assert_eq!(view.last_atc, Some(6));
    assert_eq!((view.approved, view.declined), (3, 4));
    assert_eq!(
        sim.handle.status().transactions_declined,
        BTreeMap::from([("REPLAY".to_string(), 4)])
    );
}

#[tokio::test]
async fn a_cryptogram_from_another_key_or_for_other_data_is_declined() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let (token_id, cmk) = sim.new_token().await;
    let (other_id, other_cmk) = sim.new_token().await;
    assert_ne!(token_id, other_id);
    assert_eq!(sim.update_state(&token_id, "ACTIVE").await.status, 204);

    let forged = sim.pay(&token_id, &other_cmk, 1).await;
    assert_eq!(reason(&forged), "BAD_CRYPTOGRAM");

    // A genuine cryptogram, but the amount was changed on the way.
    let txn = tokenhub_sim::emv::TxnData::parse(1, "000000001000", "0978", "CAFEBABE").unwrap();
    let cryptogram = tokenhub_sim::emv::application_cryptogram(&cmk, &txn);
    let tampered = sim
        .transact_raw(&serde_json::json!({
            "tokenId": token_id, "atc": 1, "amount": "000000009999", "currency": "0978",
            "unpredictableNumber": "CAFEBABE", "cryptogram": hex::encode(cryptogram),
        }))
        .await;
    assert_eq!(reason(&tampered), "BAD_CRYPTOGRAM");
    assert_eq!(sim.handle.token(&token_id).unwrap().last_atc, None);

    // Neither moved the ATC: ATC 1 with the right key still pays.
    assert_eq!(sim.pay(&token_id, &cmk, 1).await.body["approved"], true);
    assert_eq!(
        sim.handle.status().transactions_declined,
        BTreeMap::from([("BAD_CRYPTOGRAM".to_string(), 2)])
    );
}

#[tokio::test]
async fn suspended_deleted_and_unknown_tokens_do_not_pay_and_malformed_requests_are_400() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let (token_id, cmk) = sim.new_token().await;
    assert_eq!(sim.update_state(&token_id, "ACTIVE").await.status, 204);
    assert_eq!(sim.pay(&token_id, &cmk, 1).await.body["approved"], true);

    assert_eq!(sim.update_state(&token_id, "SUSPENDED").await.status, 204);
    assert_eq!(
        reason(&sim.pay(&token_id, &cmk, 2).await),
        "TOKEN_NOT_ACTIVE"
    );
    assert_eq!(sim.update_state(&token_id, "ACTIVE").await.status, 204);
    assert_eq!(sim.pay(&token_id, &cmk, 2).await.body["approved"], true);
    assert_eq!(sim.update_state(&token_id, "DELETED").await.status, 204);
    assert_eq!(
        reason(&sim.pay(&token_id, &cmk, 3).await),
        "TOKEN_NOT_ACTIVE"
    );

    assert_eq!(
        reason(&sim.pay("TKN0000NOSUCHTOKEN", &cmk, 1).await),
        "UNKNOWN_TOKEN"
    );
    let malformed = sim
        .transact_raw(&serde_json::json!({"tokenId": token_id, "atc": "one"}))
        .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.body["approved"], false);
    assert_eq!(reason(&malformed), "FORMAT_ERROR");

    let status = sim.handle.status();
    assert_eq!(status.transactions_approved, 2);
    assert_eq!(
        status.transactions_declined,
        BTreeMap::from([
            ("FORMAT_ERROR".to_string(), 1),
            ("TOKEN_NOT_ACTIVE".to_string(), 2),
            ("UNKNOWN_TOKEN".to_string(), 1),
        ])
    );
    assert_eq!(status.state_updates, 4);
    assert_eq!(sim.sim_token("TKN0000NOSUCHTOKEN").await.status, 404);
}

#[tokio::test]
async fn update_token_state_validates_like_the_contract_and_deleted_is_final() {
    let sim = TestSim::start(1, vec![], |c| {
        c.issuer_ids = Some(vec![ISSUER.to_string(), "ISSUER0002".to_string()]);
    })
    .await;
    let (token_id, _) = sim.new_token().await;
    let path = format!("/tokens/{token_id}/state");
    let active = r#"{"issuerId": "ISSUER0001", "state": "ACTIVE"}"#;
    let long_id = "T".repeat(49);
    let cases: Vec<(String, Option<&str>, &str, u64)> = vec![
        (path.clone(), None, active, 111),
        (path.clone(), Some(""), active, 112),
        (path.clone(), Some("c"), r#"{"state": "ACTIVE"}"#, 111),
        (
            path.clone(),
            Some("c"),
            r#"{"issuerId": "ISSUER0001"}"#,
            111,
        ),
        (
            path.clone(),
            Some("c"),
            r#"{"issuerId": "ISSUER0001", "state": "PAUSED"}"#,
            112,
        ),
        (
            path.clone(),
            Some("c"),
            r#"{"issuerId": "ISS", "state": "ACTIVE"}"#,
            112,
        ),
        (path.clone(), Some("c"), "{", 112),
        (format!("/tokens/{long_id}/state"), Some("c"), active, 112),
        (
            "/tokens/TKN0NOSUCHTOKEN/state".into(),
            Some("c"),
            active,
            119,
        ),
        (
            path.clone(),
            Some("c"),
            r#"{"issuerId": "UNKNOWN001", "state": "ACTIVE"}"#,
            113,
        ),
        (
            path.clone(),
            Some("c"),
            r#"{"issuerId": "ISSUER0002", "state": "ACTIVE"}"#,
            113,
        ),
    ];
    for (path, correlation_id, body, code) in cases {
        let answered = sim.put_raw(&path, correlation_id, body).await;
        assert_eq!(answered.status, 400, "{path} {correlation_id:?} {body}");
        assert_eq!(answered.response_code(), Some(code), "{path} {body}");
        assert_eq!(answered.header("x-correlation-id"), correlation_id);
    }
    assert_eq!(
        sim.handle.token(&token_id).unwrap().state,
        TspTokenState::Inactive
    );

    let ok = sim.put_raw(&path, Some("corr-ok"), active).await;
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("x-correlation-id"), Some("corr-ok"));
    assert_eq!(
        sim.put_raw(&path, Some("corr-ok"), active).await.status,
        204,
        "idempotent"
    );
    let with_reason = r#"{"issuerId": "ISSUER0001", "state": "DELETED", "reason": "card closed"}"#;
    assert_eq!(sim.put_raw(&path, Some("d"), with_reason).await.status, 204);
    assert_eq!(
        sim.put_raw(&path, Some("d2"), with_reason).await.status,
        204
    );
    for state in ["ACTIVE", "SUSPENDED"] {
        let answered = sim.update_state(&token_id, state).await;
        assert_eq!(answered.response_code(), Some(432), "{state}");
    }
    assert_eq!(
        sim.handle.token(&token_id).unwrap().state,
        TspTokenState::Deleted
    );
    assert_eq!(sim.handle.status().state_updates, 2, "changes only");
}

#[tokio::test]
async fn new_data_status_success_resets_the_atc_once_so_atc_1_pays_again() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let (token_id, cmk) = sim.new_token().await;
    assert_eq!(sim.update_state(&token_id, "ACTIVE").await.status, 204);
    for atc in 1..=3 {
        assert_eq!(sim.pay(&token_id, &cmk, atc).await.body["approved"], true);
    }

    // FAILURE changes nothing: the old application is still the one paying.
    let failure = sim.new_data_status(&token_id, "reperso-0", "FAILURE").await;
    assert_eq!(failure.status, 204);
    assert_eq!(reason(&sim.pay(&token_id, &cmk, 1).await), "REPLAY");

    let success = sim.new_data_status(&token_id, "reperso-1", "SUCCESS").await;
    assert_eq!(success.status, 204);
    assert_eq!(success.header("x-correlation-id"), Some("reperso-1"));
    assert_eq!(sim.handle.token(&token_id).unwrap().last_atc, None);
    assert_eq!(sim.pay(&token_id, &cmk, 1).await.body["approved"], true);
    assert_eq!(sim.pay(&token_id, &cmk, 2).await.body["approved"], true);

    // The hub retrying the same call must not open the door to replays.
    let retry = sim.new_data_status(&token_id, "reperso-1", "SUCCESS").await;
    assert_eq!(retry.status, 204);
    assert_eq!(reason(&sim.pay(&token_id, &cmk, 1).await), "REPLAY");
    assert_eq!(sim.handle.token(&token_id).unwrap().last_atc, Some(2));
    assert_eq!(sim.handle.status().atc_resets, 1);

    let unknown = sim
        .new_data_status("TKN0NOSUCHTOKEN", "reperso-2", "SUCCESS")
        .await;
    assert_eq!(unknown.response_code(), Some(119));
    let bad = sim
        .put_raw(
            &format!("/tokens/{token_id}/newDataStatus"),
            Some("c"),
            r#"{"issuerId": "ISSUER0001", "status": "DONE"}"#,
        )
        .await;
    assert_eq!(bad.response_code(), Some(112));
    let wrong_issuer = sim
        .put_raw(
            &format!("/tokens/{token_id}/newDataStatus"),
            Some("c"),
            r#"{"issuerId": "ISSUER0002", "status": "SUCCESS"}"#,
        )
        .await;
    assert_eq!(wrong_issuer.response_code(), Some(113));
    assert_eq!(sim.handle.token(&token_id).unwrap().last_atc, Some(2));
}
