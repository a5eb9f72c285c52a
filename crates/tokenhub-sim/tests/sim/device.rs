//! The device fleet over real HTTP: against a fake wallet hub that seals profiles exactly as the
//! contract says, and paying at the real TSP simulator.

use std::time::Duration;

use serde_json::{json, Value};
use tokenhub_sim::device::SIMULATED_FAILURE_REASON;
use tokenhub_sim::{Behaviour, Fleet, FleetConfig};

use crate::helpers::{install_crypto_provider, TestSim, PATIENCE};
use crate::wallet_hub::{demo_profile, dgi, WalletHub, PAR};

async fn fleet(hub: &WalletHub, devices: usize) -> Fleet {
    install_crypto_provider();
    let mut config = FleetConfig::new(hub.url(), devices);
    config.wait_seconds = 1;
    config.id_prefix = "dev-".into();
    Fleet::start(config).await.expect("the fleet starts")
}

fn status(result: &Value) -> &str {
    result["status"].as_str().unwrap_or("<none>")
}

fn reason(result: &Value) -> String {
    result["reason"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_device_registers_receives_decrypts_checks_confirms_and_installs_at_atc_0() {
    let hub = WalletHub::start().await;
    let fleet = fleet(&hub, 2).await;
    let ids = fleet.device_ids();
    assert_eq!(ids, vec!["dev-00000", "dev-00001"]);
    let keys: Vec<Vec<u8>> = ids.iter().map(|id| hub.public_key(id).unwrap()).collect();
    assert!(keys.iter().all(|k| k.len() == 32));
    assert_ne!(keys[0], keys[1], "each device its own key");
    assert_eq!(fleet.status().registered, 2);

    let pid = hub.offer(&ids[0], "TKN-1", json!(1), &demo_profile(&[7; 16]));
    let result = hub.wait_result(&pid).await;
    assert_eq!(result, json!({"status": "SUCCESS"}));

    let app = fleet.app("TKN-1").expect("installed");
    assert_eq!(app.device_id, ids[0]);
    assert_eq!(app.personalization_id, pid);
    assert_eq!(app.profile_version, "1");
    assert_eq!(app.atc, 0);
    assert_eq!(app.last4.as_deref(), Some("7890"));
    assert_eq!(app.psn, Some(1));
    assert_eq!(app.par.as_deref(), Some(PAR));
    assert!(fleet.wait_for_apps(1, PATIENCE).await);
    let s = fleet.status();
    assert_eq!(
        (
            s.personalizations_received,
            s.confirmed,
            s.installs,
            s.apps_installed
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(
        (s.failures_reported, s.decrypt_errors, s.check_errors),
        (0, 0, 0)
    );
    assert!(fleet.app("TKN-2").is_none());

    // A re-personalization of the same token replaces the application.
    let again = hub.offer(&ids[0], "TKN-1", json!("v2"), &demo_profile(&[8; 16]));
    assert_eq!(status(&hub.wait_result(&again).await), "SUCCESS");
    let app = fleet
        .wait_for_app("TKN-1", PATIENCE, |a| a.profile_version == "v2")
        .await
        .expect("replaced");
    assert_eq!(app.personalization_id, again);
    assert_eq!(app.atc, 0);
    assert_eq!(fleet.status().installs, 2);
    assert_eq!(fleet.status().apps_installed, 1);
    fleet.shutdown().await;
}

#[tokio::test]
async fn an_offline_device_receives_only_after_it_is_switched_back() {
    let hub = WalletHub::start().await;
    let fleet = fleet(&hub, 1).await;
    let id = fleet.device_ids().remove(0);
    assert!(fleet.set_behaviour(&id, Behaviour::Offline));
    assert!(!fleet.set_behaviour("no-such-device", Behaviour::Offline));
    // Let an abandoned poll end before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let polls_before = hub.polls(&id);

    let pid = hub.offer(&id, "TKN-OFF", json!(1), &demo_profile(&[1; 16]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        hub.polls(&id),
        polls_before,
        "an offline device does not poll"
    );
    assert!(hub.result(&pid).is_none());
    assert!(fleet.app("TKN-OFF").is_none());
    assert_eq!(fleet.status().personalizations_received, 0);

    fleet.set_behaviour(&id, Behaviour::Normal);
    assert_eq!(status(&hub.wait_result(&pid).await), "SUCCESS");
    assert!(fleet.app("TKN-OFF").is_some());
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_failure_device_reports_failure_and_installs_nothing() {
    let hub = WalletHub::start().await;
    let fleet = fleet(&hub, 1).await;
    let id = fleet.device_ids().remove(0);
    fleet.set_behaviour(&id, Behaviour::ReportFailure);

    let pid = hub.offer(&id, "TKN-F", json!(1), &demo_profile(&[1; 16]));
    let result = hub.wait_result(&pid).await;
    assert_eq!(status(&result), "FAILURE");
    assert_eq!(reason(&result), SIMULATED_FAILURE_REASON);
    assert!(fleet.app("TKN-F").is_none());
    assert!(
        fleet
            .wait_until(PATIENCE, |s| s.failures_reported == 1)
            .await
    );
    assert_eq!(fleet.status().confirmed, 0);

    // Back to normal, the next offer is installed.
    fleet.set_behaviour(&id, Behaviour::Normal);
    let next = hub.offer(&id, "TKN-F", json!(1), &demo_profile(&[1; 16]));
    assert_eq!(status(&hub.wait_result(&next).await), "SUCCESS");
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_device_that_never_confirms_receives_again_and_again_but_says_nothing() {
    let hub = WalletHub::start_with(Duration::from_millis(200)).await;
    let fleet = fleet(&hub, 1).await;
    let id = fleet.device_ids().remove(0);
    fleet.set_behaviour(&id, Behaviour::NeverConfirm);

    let pid = hub.offer(&id, "TKN-N", json!(1), &demo_profile(&[1; 16]));
    // Not even a broken profile gets a FAILURE from it.
    hub.offer_raw(
        &id,
        "p-broken",
        json!({"personalizationId": "p-broken", "tokenId": "T", "profileVersion": 1}),
    );
    assert!(
        fleet
            .wait_until(PATIENCE, |s| s.personalizations_received >= 6
                && s.check_errors >= 3)
            .await,
        "the hub offers it again and the device receives it again"
    );
    assert!(hub.results().is_empty());
    assert!(hub.result(&pid).is_none());
    assert!(fleet.app("TKN-N").is_none());

    fleet.set_behaviour(&id, Behaviour::Normal);
    assert_eq!(status(&hub.wait_result(&pid).await), "SUCCESS");
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_corrupted_profile_is_reported_as_failure_with_its_reason() {
    let hub = WalletHub::start().await;
    let fleet = fleet(&hub, 1).await;
    let id = fleet.device_ids().remove(0);
    let offer = |pid: &str, profile: Value| {
        json!({"personalizationId": pid, "tokenId": format!("T-{pid}"),
            "profileVersion": 1, "profile": profile})
    };

    // Ciphertext altered on the way: the AEAD tag fails.
    let mut sealed = hub.seal(&id, "p-flip", &demo_profile(&[1; 16]));
    let mut ct = base64_decode(&sealed["ciphertext"]);
    ct[3] ^= 0x01;
    sealed["ciphertext"] = json!(base64_encode(&ct));
    hub.offer_raw(&id, "p-flip", offer("p-flip", sealed));

    // Sealed for another personalization (aad), so replaying it under this id fails.
    let other = hub.seal(&id, "p-other", &demo_profile(&[1; 16]));
    hub.offer_raw(&id, "p-aad", offer("p-aad", other));

    // Not base64url.
    hub.offer_raw(
        &id,
        "p-b64",
        offer("p-b64", json!({"enc": "%%%", "ciphertext": "AAAA"})),
    );

    // Opens fine, but the card master key is 15 bytes.
    let mut short_key = demo_profile(&[1; 16]);
    let at = short_key
        .windows(3)
        .position(|w| w == [0x80, 0x01, 0x10])
        .unwrap();
    short_key.splice(at..at + 19, dgi(0x8001, &[1; 15]));
    let sealed = hub.seal(&id, "p-dgi", &short_key);
    hub.offer_raw(&id, "p-dgi", offer("p-dgi", sealed));

    // Opens fine, but a DGI is cut short.
    let mut cut = demo_profile(&[1; 16]);
    cut.truncate(cut.len() - 2);
    let sealed = hub.seal(&id, "p-cut", &cut);
    hub.offer_raw(&id, "p-cut", offer("p-cut", sealed));

    // The offer has no profile at all.
    hub.offer_raw(
        &id,
        "p-none",
        json!({"personalizationId": "p-none", "tokenId": "T", "profileVersion": 1}),
    );

    // No personalizationId: nothing can be reported.
    hub.offer_raw(&id, "p-anon", json!({"tokenId": "T"}));

    let expect = [
        ("p-flip", "does not decrypt"),
        ("p-aad", "does not decrypt"),
        ("p-b64", "does not decrypt"),
        ("p-dgi", "DGI 8001 is 15 bytes, not 16"),
        ("p-cut", "DGI 9102 claims 5 bytes but only 3 remain"),
        ("p-none", "fails its checks"),
    ];
    for (pid, why) in expect {
        let result = hub.wait_result(pid).await;
        assert_eq!(status(&result), "FAILURE", "{pid}");
        assert!(reason(&result).contains(why), "{pid}: {}", reason(&result));
        assert!(!reason(&result).contains("0101010101"), "no key bytes");
    }
    assert!(
        fleet
            .wait_until(PATIENCE, |s| s.failures_reported == 6
                && s.unusable_offers >= 1)
            .await,
        "{:?}",
        fleet.status()
    );
    let s = fleet.status();
    assert_eq!(s.decrypt_errors, 3);
    assert_eq!(s.check_errors, 3);
    assert_eq!((s.confirmed, s.apps_installed), (0, 0));
    fleet.shutdown().await;
}

fn base64_decode(v: &Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v.as_str().unwrap())
        .unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn transactions_at_the_tsp_simulator_approve_atc_1_2_3_and_decline_a_replay() {
    let tsp = TestSim::start(1, vec![], |_| {}).await;
    let (token_id, cmk_ac) = tsp.new_token().await;
    assert_eq!(tsp.update_state(&token_id, "ACTIVE").await.status, 204);
    let tsp_url = tsp.handle.sim_url();

    let hub = WalletHub::start().await;
    let fleet = fleet(&hub, 1).await;
    let id = fleet.device_ids().remove(0);
    let pid = hub.offer(&id, &token_id, json!(1), &demo_profile(&cmk_ac));
    assert_eq!(status(&hub.wait_result(&pid).await), "SUCCESS");

    for atc in 1..=3 {
        let outcome = fleet.transact(&token_id, &tsp_url).await;
        assert!(outcome.approved, "{outcome:?}");
        assert_eq!(outcome.atc, Some(atc));
        assert_eq!(outcome.reason, "APPROVED");
    }
    let replay = fleet.replay_last(&token_id, &tsp_url).await;
    assert!(!replay.approved);
    assert_eq!(replay.atc, Some(3));
    assert_eq!(replay.reason, "REPLAY");
    assert_eq!(fleet.app(&token_id).unwrap().atc, 3);
    let view = tsp.handle.token(&token_id).unwrap();
    assert_eq!(view.last_atc, Some(3));
    assert_eq!((view.approved, view.declined), (3, 1));

    // The hub never heard the confirmation and offers the same personalization again: the
    // device confirms again without resetting its ATC.
    hub.reoffer(&pid);
    assert_eq!(status(&hub.wait_result(&pid).await), "SUCCESS");
    assert_eq!(fleet.app(&token_id).unwrap().atc, 3);
    assert!(fleet.wait_until(PATIENCE, |s| s.reconfirmed == 1).await);
    let s = fleet.status();
    assert_eq!((s.installs, s.confirmed), (1, 1));
    // The TSP's API base URL (what the hub registers) works as well as its root.
    let summary = fleet.transact_all(&tsp.handle.base_url(), 2, 4).await;
    assert_eq!((summary.tokens, summary.approved), (1, 2));
    assert_eq!(summary.declined_total(), 0);

    let none = fleet.transact("TKN-NOT-HERE", &tsp_url).await;
    assert_eq!(
        (none.approved, none.atc, none.reason.as_str()),
        (false, None, "NO_APP")
    );
    let s = fleet.status();
    assert_eq!(
        (s.transactions_approved, s.transactions_declined),
        (5, 1),
        "NO_APP sent nothing, so it is not counted"
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn after_a_re_personalization_the_tsp_accepts_the_restarted_atc_only_once_told() {
    let tsp = TestSim::start(1, vec![], |_| {}).await;
    let (token_id, cmk_ac) = tsp.new_token().await;
    assert_eq!(tsp.update_state(&token_id, "ACTIVE").await.status, 204);
    let tsp_url = tsp.handle.sim_url();
    let hub = WalletHub::start().await;
    let fleet = fleet(&hub, 1).await;
    let id = fleet.device_ids().remove(0);
    let first = hub.offer(&id, &token_id, json!(1), &demo_profile(&cmk_ac));
    assert_eq!(status(&hub.wait_result(&first).await), "SUCCESS");
    for _ in 0..3 {
        assert!(fleet.transact(&token_id, &tsp_url).await.approved);
    }

    // Same data, new profile version: the device restarts at ATC 0.
    let second = hub.offer(&id, &token_id, json!(2), &demo_profile(&cmk_ac));
    assert_eq!(status(&hub.wait_result(&second).await), "SUCCESS");
    assert_eq!(fleet.app(&token_id).unwrap().atc, 0);
    let early = fleet.transact(&token_id, &tsp_url).await;
    assert_eq!((early.atc, early.reason.as_str()), (Some(1), "REPLAY"));

    let told = tsp.new_data_status(&token_id, "reperso-1", "SUCCESS").await;
    assert_eq!(told.status, 204);
    let after = fleet.transact(&token_id, &tsp_url).await;
    assert!(after.approved, "{after:?}");
    assert_eq!(after.atc, Some(2));
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_token_the_tsp_has_not_activated_does_not_pay() {
    let tsp = TestSim::start(1, vec![], |_| {}).await;
    let (token_id, cmk_ac) = tsp.new_token().await;
    let hub = WalletHub::start().await;
    let fleet = fleet(&hub, 1).await;
    let id = fleet.device_ids().remove(0);
    let pid = hub.offer(&id, &token_id, json!(1), &demo_profile(&cmk_ac));
    assert_eq!(status(&hub.wait_result(&pid).await), "SUCCESS");
    let outcome = fleet.transact(&token_id, &tsp.handle.sim_url()).await;
    assert_eq!(outcome.reason, "TOKEN_NOT_ACTIVE");
    // A profile whose key is not the TSP's: BAD_CRYPTOGRAM once active.
    assert_eq!(tsp.update_state(&token_id, "ACTIVE").await.status, 204);
    let wrong = hub.offer(&id, &token_id, json!(2), &demo_profile(&[0xEE; 16]));
    assert_eq!(status(&hub.wait_result(&wrong).await), "SUCCESS");
    let outcome = fleet.transact(&token_id, &tsp.handle.sim_url()).await;
    assert_eq!(outcome.reason, "BAD_CRYPTOGRAM");
    let unreachable = fleet.transact(&token_id, "http://127.0.0.1:1").await;
    assert_eq!(unreachable.reason, "TSP_UNREACHABLE");
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_few_hundred_devices_share_a_bounded_number_of_polls() {
    let hub = WalletHub::start().await;
    install_crypto_provider();
    let mut config = FleetConfig::new(hub.url(), 300);
    config.wait_seconds = 1;
    config.max_concurrent_polls = 50;
    let fleet = Fleet::start(config).await.unwrap();
    let ids = fleet.device_ids();
    assert_eq!(ids.len(), 300);
    assert_eq!(ids[299], "device-00299");
    for (i, id) in ids.iter().enumerate() {
        hub.offer(
            id,
            &format!("TKN-{i}"),
            json!(1),
            &demo_profile(&[i as u8; 16]),
        );
    }
    assert!(
        fleet.wait_for_apps(300, PATIENCE).await,
        "{:?}",
        fleet.status()
    );
    assert!(fleet.wait_until(PATIENCE, |s| s.confirmed == 300).await);
    assert_eq!(fleet.app("TKN-123").unwrap().device_id, "device-00123");
    fleet.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_polling_and_start_refuses_what_it_cannot_do() {
    let hub = WalletHub::start().await;
    let fleet = fleet(&hub, 1).await;
    let id = fleet.device_ids().remove(0);
    tokio::time::timeout(PATIENCE, fleet.shutdown())
        .await
        .expect("shutdown does not wait for the long poll");
    let polls = hub.polls(&id);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(hub.polls(&id), polls);

    // A device id the hub already holds with another key: registration refused.
    hub.preregister("dev-00000", vec![0; 32]);
    let refused = Fleet::start(FleetConfig {
        id_prefix: "dev-".into(),
        wait_seconds: 1,
        ..FleetConfig::new(hub.url(), 1)
    })
    .await;
    assert!(refused.is_err());
    for bad in [
        FleetConfig {
            wait_seconds: 0,
            ..FleetConfig::new(hub.url(), 1)
        },
        FleetConfig {
            wait_seconds: 31,
            ..FleetConfig::new(hub.url(), 1)
        },
        FleetConfig::new(hub.url(), 0),
        FleetConfig::new("not a url", 1),
    ] {
        assert!(Fleet::start(bad).await.is_err());
    }
}

#[tokio::test]
async fn every_wallet_call_of_the_fleet_carries_its_providers_key() {
    install_crypto_provider();
    let hub = WalletHub::start_requiring_key("twk_0123456789abcdef_secret").await;
    let start = |key: Option<&str>| {
        let mut config = FleetConfig::new(hub.url(), 1);
        config.wait_seconds = 1;
        config.id_prefix = "dev-".into();
        config.api_key = key.map(|k| tokenhub_sim::device::ApiKey(k.to_string()));
        Fleet::start(config)
    };
    assert!(start(None).await.is_err(), "no key: registration refused");
    assert!(start(Some("twk_0123456789abcdef_other")).await.is_err());
    let fleet = start(Some("twk_0123456789abcdef_secret")).await.unwrap();
    let id = fleet.device_ids().remove(0);
    assert!(hub.public_key(&id).is_some(), "registered");
    tokio::time::timeout(PATIENCE, async {
        while hub.polls(&id) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("its polls are served");
    assert_eq!(fleet.status().poll_errors, 0);
    fleet.shutdown().await;
}
