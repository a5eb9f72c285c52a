//! A device's result, its poll and a deletion of its token racing each other: every path locks the
//! token before its personalization, so none waits for the other in a cycle (a deadlock PostgreSQL
//! would break by failing one of them with a 5xx), and the token ends in one consistent state.

use crate::support::*;
use serde_json::{json, Value};

hub_tests!(
    a_device_result_racing_a_deletion_never_fails_and_leaves_a_consistent_token,
    a_device_poll_racing_a_deletion_never_fails_and_leaves_a_consistent_token,
    the_sweep_racing_deletions_fails_every_unfetched_personalization_once,
);

/// Rounds per test: each one a fresh token whose two calls start together.
const ROUNDS: usize = 16;

/// How the token is deleted in a round.
#[derive(Clone, Copy, Debug)]
enum Deletion {
    /// `POST /trapi/v2.0/tokens/{id}/updates` with `tokenState: DELETED`.
    Tsp,
    /// `POST /admin/v1/tokens/{id}/delete`.
    Admin,
}

impl Deletion {
    fn of_round(round: usize) -> Self {
        if round % 2 == 0 {
            Self::Tsp
        } else {
            Self::Admin
        }
    }

    /// Deletes the token; the answer's status, which must be the success of its API.
    async fn run(self, app: &TestApp, token: &str, round: usize) -> (u16, u16) {
        match self {
            Self::Tsp => {
                let answer = app
                    .post_update(token, &update_state(&at(round as i64), "DELETED"))
                    .await;
                assert_eq!(answer.status, 204, "round {round}: {answer:?}");
                (answer.status, 204)
            }
            Self::Admin => (app.token_action(token, "delete", None).await.status, 200),
        }
    }
}

/// A token whose profile the device was offered: the token and the personalization.
async fn offered_token(app: &TestApp) -> (String, String) {
    let token = app.pending_token().await;
    app.complete_data(&token).await;
    (token.clone(), personalization_of(app, &token).await)
}

async fn personalization_of(app: &TestApp, token: &str) -> String {
    let work = app.device_work(DEVICE).await;
    work.iter()
        .find(|w| w["action"] == "INSTALL" && w["tokenId"] == token)
        .unwrap_or_else(|| panic!("the profile of {token} is offered: {work:?}"))
        ["personalizationId"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn post_result(app: &TestApp, personalization: &str, status: &str) -> u16 {
    app.wallet
        .post(app.url(&format!(
            "/wallet/v1/personalizations/{personalization}/result"
        )))
        .json(&json!({"status": status}))
        .send()
        .await
        .expect("the hub answers")
        .status()
        .as_u16()
}

async fn poll_status(app: &TestApp) -> u16 {
    app.wallet
        .get(app.url(&format!(
            "/wallet/v1/devices/{DEVICE}/personalizations?waitSeconds=0"
        )))
        .send()
        .await
        .expect("the hub answers")
        .status()
        .as_u16()
}

/// What every round must end with: the token DELETED, no data held, its one personalization
/// settled as `settled`.
async fn assert_settled(app: &TestApp, token: &str, settled: &str, round: usize) {
    let view = app.get_token(token).await;
    assert_eq!(view["state"], "DELETED", "round {round}: {view}");
    assert_eq!(names(&view["elementsHeld"]), Vec::<String>::new(), "{view}");
    let personalizations = view["personalizations"].as_array().unwrap();
    assert_eq!(personalizations.len(), 1, "round {round}: {view}");
    assert_eq!(
        personalizations[0]["state"], settled,
        "round {round}: {view}"
    );
}

async fn a_device_result_racing_a_deletion_never_fails_and_leaves_a_consistent_token(app: TestApp) {
    for round in 0..ROUNDS {
        let (token, personalization) = offered_token(&app).await;
        let outcome = if round % 4 < 2 { "SUCCESS" } else { "FAILURE" };
        let deletion = Deletion::of_round(round);
        let (result, (deleted, deleted_ok)) = tokio::join!(
            post_result(&app, &personalization, outcome),
            deletion.run(&app, &token, round),
        );
        assert_eq!(deleted, deleted_ok, "round {round}: {deletion:?} deletion");
        // The result applies (204) unless the deletion failed the personalization first (409).
        let settled = match (result, outcome) {
            (204, "SUCCESS") => "CONFIRMED",
            (204, _) | (409, _) => "FAILED",
            (other, _) => panic!("round {round}: the device's {outcome} answered {other}"),
        };
        assert_settled(&app, &token, settled, round).await;
        assert_eq!(
            post_result(&app, &personalization, outcome).await,
            if result == 204 { 204 } else { 409 },
            "round {round}: the result repeated answers as the state says"
        );
    }
}

async fn a_device_poll_racing_a_deletion_never_fails_and_leaves_a_consistent_token(app: TestApp) {
    for round in 0..ROUNDS {
        // The first poll builds the profile and seals it to the device while the token goes.
        let token = app.pending_token().await;
        app.complete_data(&token).await;
        let deletion = Deletion::of_round(round);
        let (polled, (deleted, deleted_ok)) =
            tokio::join!(poll_status(&app), deletion.run(&app, &token, round));
        assert_eq!(polled, 200, "round {round}: the poll");
        assert_eq!(deleted, deleted_ok, "round {round}: {deletion:?} deletion");
        assert_settled(&app, &token, "FAILED", round).await;
        let work: Vec<Value> = app.device_work(DEVICE).await;
        assert!(
            !work
                .iter()
                .any(|w| w["action"] == "INSTALL" && w["tokenId"] == token.as_str()),
            "round {round}: a deleted token's profile is not offered: {work:?}"
        );
    }
}

async fn the_sweep_racing_deletions_fails_every_unfetched_personalization_once(app: TestApp) {
    let mut tokens = Vec::new();
    for _ in 0..ROUNDS {
        let token = app.pending_token().await;
        app.complete_data(&token).await;
        tokens.push(token);
    }
    // Every profile expires unfetched; the sweeper fails them while half the tokens are deleted.
    app.clock
        .advance(app.hub.config.delivery.ttl + std::time::Duration::from_secs(1));
    let deletions = tokens.iter().enumerate().filter(|(i, _)| i % 2 == 0);
    for (round, token) in deletions {
        let (status, ok) = Deletion::of_round(round / 2).run(&app, token, round).await;
        assert_eq!(status, ok, "round {round}");
    }
    let app = &app;
    for (round, token) in tokens.iter().enumerate() {
        eventually(&format!("{token} settled"), || async move {
            let view = app.get_token(token).await;
            (view["personalizations"][0]["state"] != "PENDING").then_some(())
        })
        .await;
        assert_settled(app, token, "FAILED", round).await;
        let history = app.history_of(token).await;
        let failed = history
            .iter()
            .filter(|e| e.starts_with("personalization failed"))
            .count();
        assert!(failed <= 1, "failed once: {history:?}");
    }
}
