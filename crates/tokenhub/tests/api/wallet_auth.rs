//! The wallet API bound to its callers: every call is a registered wallet provider's, a device is
//! the provider's that registered it, and another provider's device, personalization or removal
//! answers as a missing one and changes nothing. Attacks from issue 18 (foreign poll, foreign
//! result, foreign removal clearing, unregistered requestor) each fail here.

use crate::support::*;
use serde_json::{json, Value};

hub_tests!(
    a_wallet_call_without_a_live_key_is_401_and_says_nothing_more,
    another_providers_poll_is_404_and_takes_no_offer,
    another_providers_result_is_404_and_changes_nothing,
    another_provider_cannot_clear_a_removal,
    another_provider_cannot_register_or_digitize_onto_a_device,
    a_result_for_a_personalization_never_offered_is_refused,
    digitizing_for_an_unregistered_requestor_is_refused_and_makes_nothing,
    the_wallet_is_told_the_tsps_token_info,
);

hub_tests!(config = one_long_poll; long_polls_over_the_providers_cap_get_503_with_retry_after);

const OTHER_PROVIDER: &str = "other-wallet";
const OTHER_DEVICE: &str = "device-of-other";

fn one_long_poll(config: &mut tokenhub::Config) {
    config.wallet_max_long_polls = 1;
}

/// Sends a wallet call with `client`, read whole.
pub(crate) async fn call(
    app: &TestApp,
    client: &reqwest::Client,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut r = client.request(method, app.url(path));
    if let Some(b) = body {
        r = r.json(&b);
    }
    Answer::read(r.send().await.expect("the hub answers")).await
}

pub(crate) fn poll_path(device: &str) -> String {
    format!("/wallet/v1/devices/{device}/personalizations?waitSeconds=0")
}

fn result_path(personalization: &str) -> String {
    format!("/wallet/v1/personalizations/{personalization}/result")
}

/// The other provider's client, and its own registered device.
async fn other_provider(app: &TestApp) -> reqwest::Client {
    let key = app.register_wallet_provider(OTHER_PROVIDER).await;
    let client = app.wallet_client(&key);
    let body = json!({"deviceId": OTHER_DEVICE, "publicKey": device_public_key()});
    call(
        app,
        &client,
        reqwest::Method::POST,
        "/wallet/v1/devices",
        Some(body),
    )
    .await
    .expect(201);
    client
}

/// `foreign` answers exactly as `missing` does, but for the name of what was asked for.
#[track_caller]
fn answers_as_missing(foreign: &Answer, missing: &Answer, id: &str, missing_id: &str) {
    assert_eq!(foreign.status, 404, "{foreign:?}");
    assert_eq!(
        foreign.text.replace(id, "ID"),
        missing.text.replace(missing_id, "ID"),
        "another's answers as a missing one"
    );
}

/// The one personalization of a token: its id and how many times it was offered.
async fn personalization(app: &TestApp, token: &str) -> (String, i64) {
    let all = app.hub.store.personalizations_of(token).await.unwrap();
    assert_eq!(all.len(), 1);
    (all[0].personalization_id.clone(), all[0].tries)
}

async fn a_wallet_call_without_a_live_key_is_401_and_says_nothing_more(app: TestApp) {
    let (rotated_id, rotated) = app.new_wallet_key(WALLET_PROVIDER).await;
    let with_rotated = app.wallet_client(&rotated);
    call(
        &app,
        &with_rotated,
        reqwest::Method::GET,
        &poll_path(DEVICE),
        None,
    )
    .await
    .expect(200);
    app.admin_send(
        reqwest::Method::DELETE,
        &format!("/admin/v1/wallet-providers/{WALLET_PROVIDER}/api-keys/{rotated_id}"),
        None,
    )
    .await
    .expect(204);
    let (id, secret) = app.wallet_key["twk_".len()..].split_once('_').unwrap();
    let wrong_secret = format!("twk_{id}_{}", secret.chars().rev().collect::<String>());
    let unknown_id = format!("twk_{}_{secret}", "0".repeat(16));
    let clients = [
        ("no key", app.client.clone()),
        ("revoked", with_rotated),
        ("not a key", app.wallet_client("letmein")),
        ("wrong secret", app.wallet_client(&wrong_secret)),
        ("unknown key id", app.wallet_client(&unknown_id)),
        ("admin token", app.wallet_client(ADMIN_TOKEN)),
    ];
    let token = app.pending_token().await;
    app.complete_data(&token).await;
    let (personalization_id, _) = personalization(&app, &token).await;
    let calls = [
        (reqwest::Method::GET, poll_path(DEVICE), None),
        (
            reqwest::Method::POST,
            "/wallet/v1/devices".to_string(),
            Some(json!({"deviceId": "device-new", "publicKey": device_public_key()})),
        ),
        (
            reqwest::Method::POST,
            "/wallet/v1/digitizations".to_string(),
            Some(digitization_body()),
        ),
        (
            reqwest::Method::POST,
            result_path(&personalization_id),
            Some(json!({"status": "FAILURE"})),
        ),
        (
            reqwest::Method::POST,
            format!("/wallet/v1/devices/{DEVICE}/tokens/{token}/removed"),
            None,
        ),
    ];
    let mut answers = std::collections::BTreeSet::new();
    for (what, client) in &clients {
        for (method, path, body) in &calls {
            let a = call(&app, client, method.clone(), path, body.clone()).await;
            assert_eq!(a.status, 401, "{what} {method} {path}: {a:?}");
            answers.insert(a.text);
        }
    }
    assert_eq!(
        answers.len(),
        1,
        "one answer for every refusal: {answers:?}"
    );
    assert_eq!(
        personalization(&app, &token).await.1,
        0,
        "nothing was offered"
    );
    assert_eq!(
        app.tsp.received_bodies().len(),
        1,
        "no createToken but the first"
    );
    // The first key still works: a key is rotated without a gap.
    assert_eq!(app.device_work(DEVICE).await.len(), 1);
}

async fn another_providers_poll_is_404_and_takes_no_offer(app: TestApp) {
    let other = other_provider(&app).await;
    let token = app.pending_token().await;
    app.complete_data(&token).await;
    let missing = call(
        &app,
        &other,
        reqwest::Method::GET,
        &poll_path("device-9999"),
        None,
    )
    .await;
    for path in [
        poll_path(DEVICE),
        format!("/wallet/v1/devices/{DEVICE}/personalizations?waitSeconds=1"),
    ] {
        for _ in 0..6 {
            let a = call(&app, &other, reqwest::Method::GET, &path, None).await;
            answers_as_missing(&a, &missing, DEVICE, "device-9999");
        }
    }
    assert_eq!(personalization(&app, &token).await.1, 0, "no try counted");
    assert_eq!(app.token_state(&token).await, "PERSONALIZING");
    let work = app.device_work(DEVICE).await;
    assert_eq!(work.len(), 1, "the offer is still its device's: {work:?}");
    assert_eq!(work[0]["tokenId"], token.as_str());
    assert_eq!(personalization(&app, &token).await.1, 1);
    let id = work[0]["personalizationId"].as_str().unwrap();
    let body = Some(json!({"status": "SUCCESS"}));
    call(
        &app,
        &app.wallet,
        reqwest::Method::POST,
        &result_path(id),
        body,
    )
    .await
    .expect(204);
    assert_eq!(app.token_state(&token).await, "ACTIVE");
}

async fn another_providers_result_is_404_and_changes_nothing(app: TestApp) {
    let other = other_provider(&app).await;
    let token = app.pending_token().await;
    app.complete_data(&token).await;
    let work = app.device_work(DEVICE).await;
    let id = work[0]["personalizationId"].as_str().unwrap().to_string();
    let missing = call(
        &app,
        &other,
        reqwest::Method::POST,
        &result_path("prs_missing"),
        Some(json!({"status": "SUCCESS"})),
    )
    .await;
    for status in [
        json!({"status": "SUCCESS"}),
        json!({"status": "FAILURE", "reason": "x"}),
    ] {
        let a = call(
            &app,
            &other,
            reqwest::Method::POST,
            &result_path(&id),
            Some(status),
        )
        .await;
        answers_as_missing(&a, &missing, &id, "prs_missing");
    }
    assert_eq!(app.token_state(&token).await, "PERSONALIZING");
    let p = &app.hub.store.personalizations_of(&token).await.unwrap()[0];
    assert_eq!(p.state.as_str(), "PENDING", "{p:?}");
    assert!(app.tsp.other_calls().is_empty(), "the TSP was told nothing");
    let r = call(
        &app,
        &app.wallet,
        reqwest::Method::POST,
        &result_path(&id),
        Some(json!({"status": "SUCCESS"})),
    )
    .await;
    r.expect(204);
    assert_eq!(app.token_state(&token).await, "ACTIVE");
}

async fn another_provider_cannot_clear_a_removal(app: TestApp) {
    let other = other_provider(&app).await;
    let token = app.active_token().await;
    app.post_update(&token, &update_state(&at(0), "DELETED"))
        .await
        .assert_accepted();
    let removed =
        |device: &str, token: &str| format!("/wallet/v1/devices/{device}/tokens/{token}/removed");
    let missing = call(
        &app,
        &other,
        reqwest::Method::POST,
        &removed(DEVICE, "NO-SUCH-TOKEN"),
        None,
    )
    .await;
    assert_eq!(missing.status, 404);
    for device in [DEVICE, OTHER_DEVICE] {
        let a = call(
            &app,
            &other,
            reqwest::Method::POST,
            &removed(device, &token),
            None,
        )
        .await;
        assert_eq!(a.status, 404, "{device}");
        assert_eq!(
            a.json["error"], missing.json["error"],
            "answered as an unknown token"
        );
    }
    assert_eq!(app.removals(DEVICE).await, [token.as_str()], "still listed");
    assert_eq!(app.confirm_removed(DEVICE, &token).await, 204);
    assert_eq!(app.removals(DEVICE).await, Vec::<String>::new());
}

async fn another_provider_cannot_register_or_digitize_onto_a_device(app: TestApp) {
    let other = other_provider(&app).await;
    // Registering the same device, even with its very key, does not make it the other's.
    let same = json!({"deviceId": DEVICE, "publicKey": device_public_key()});
    let a = call(
        &app,
        &other,
        reqwest::Method::POST,
        "/wallet/v1/devices",
        Some(same),
    )
    .await;
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [9u8; 32]);
    let rekey = json!({"deviceId": DEVICE, "publicKey": b64});
    let own = call(
        &app,
        &app.wallet,
        reqwest::Method::POST,
        "/wallet/v1/devices",
        Some(rekey),
    )
    .await;
    assert_eq!(a.status, 409, "{a:?}");
    assert_eq!(a.text, own.text, "the same answer as a key conflict");
    let poll = call(&app, &other, reqwest::Method::GET, &poll_path(DEVICE), None).await;
    assert_eq!(poll.status, 404);

    let mut onto_a = digitization_body();
    let mut onto_missing = digitization_body();
    onto_missing["deviceId"] = json!("device-9999");
    let a = call(
        &app,
        &other,
        reqwest::Method::POST,
        "/wallet/v1/digitizations",
        Some(onto_a.clone()),
    )
    .await;
    let m = call(
        &app,
        &other,
        reqwest::Method::POST,
        "/wallet/v1/digitizations",
        Some(onto_missing),
    )
    .await;
    answers_as_missing(&a, &m, DEVICE, "device-9999");
    assert!(app.tsp.received_bodies().is_empty(), "no createToken");
    onto_a["deviceId"] = json!(OTHER_DEVICE);
    call(
        &app,
        &other,
        reqwest::Method::POST,
        "/wallet/v1/digitizations",
        Some(onto_a),
    )
    .await
    .expect(201);
}

async fn a_result_for_a_personalization_never_offered_is_refused(app: TestApp) {
    let token = app.pending_token().await;
    app.complete_data(&token).await;
    let (id, _) = personalization(&app, &token).await;
    for status in [
        json!({"status": "SUCCESS"}),
        json!({"status": "FAILURE", "reason": "x"}),
    ] {
        let r = call(
            &app,
            &app.wallet,
            reqwest::Method::POST,
            &result_path(&id),
            Some(status),
        )
        .await;
        assert_eq!(r.status, 409, "{r:?}");
    }
    assert_eq!(app.token_state(&token).await, "PERSONALIZING");
    assert_eq!(personalization(&app, &token).await.1, 0);
}

async fn digitizing_for_an_unregistered_requestor_is_refused_and_makes_nothing(app: TestApp) {
    let mut body = digitization_body();
    body["tokenRequestorId"] = json!(REQUESTOR);
    let a = Answer::read(app.post_digitization(&body).await).await;
    assert_eq!(a.expect(400)["error"], "INVALID_REQUEST");
    assert!(a.json["message"]
        .as_str()
        .unwrap()
        .contains("tokenRequestorId"));
    assert!(app.tsp.received_bodies().is_empty(), "no createToken");
    assert_eq!(
        app.hub.store.token_states().await.unwrap(),
        Vec::<(String, i64)>::new(),
        "no token"
    );
    app.put_requestor_body(REQUESTOR, &requestor_body())
        .await
        .expect(200);
    Answer::read(app.post_digitization(&body).await)
        .await
        .expect(201);
}

async fn the_wallet_is_told_the_tsps_token_info(app: TestApp) {
    let a = Answer::read(app.post_digitization(&digitization_body()).await).await;
    let v = a.expect(201);
    assert_eq!(v["tokenInfo"], json!({"exp": TSP_EXP, "last4": TSP_LAST4}));
    let token = v["tokenId"].as_str().unwrap().to_string();
    app.complete_data(&token).await;
    let work = app.device_work(DEVICE).await;
    assert_eq!(work[0]["action"], "INSTALL");
    assert_eq!(
        work[0]["tokenInfo"],
        json!({"exp": TSP_EXP, "last4": TSP_LAST4})
    );
}

async fn long_polls_over_the_providers_cap_get_503_with_retry_after(app: TestApp) {
    let other = other_provider(&app).await;
    let long = app.url(&format!(
        "/wallet/v1/devices/{DEVICE}/personalizations?waitSeconds=3"
    ));
    let theirs = format!("/wallet/v1/devices/{OTHER_DEVICE}/personalizations?waitSeconds=1");
    // Two long polls at once: one waits, the other is refused at once; meanwhile a poll that
    // does not wait, and another provider's long poll, are served.
    let (first, second, quick, their_poll) = tokio::join!(
        app.wallet.get(&long).send(),
        app.wallet.get(&long).send(),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            app.device_work(DEVICE).await
        },
        async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            call(&app, &other, reqwest::Method::GET, &theirs, None).await
        },
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    let mut statuses = [first.status().as_u16(), second.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 503]);
    let refused = if first.status() == 503 { first } else { second };
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        Answer::read(refused).await.json["error"],
        "TOO_MANY_LONG_POLLS"
    );
    assert_eq!(quick.len(), 0, "a poll that does not wait is served");
    their_poll.expect(200);
    // The place is given back when the poll ends.
    let short = long.replace("=3", "=1");
    assert_eq!(app.wallet.get(&short).send().await.unwrap().status(), 200);
}
