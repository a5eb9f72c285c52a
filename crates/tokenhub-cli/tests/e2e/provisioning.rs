//! Provisioning end to end: digitization, the TSP's data, delivery to the device, activation at
//! the TSP, payments — and what happens when a device is away, fails, never answers, or the hub
//! dies in the middle.

use crate::harness::*;
use std::time::Duration;
use tokenhub_sim::device::Behaviour;

const WAIT: Duration = Duration::from_secs(60);

e2e_tests! {
    async fn a_card_is_provisioned_pays_and_a_replayed_atc_is_declined(backend) {
        let w = World::start(backend, WorldOptions::default()).await;
        let token = w.digitize(0).await;
        let t = w.wait_state(&token, "ACTIVE", WAIT).await;
        assert_eq!(t["elementsHeld"], serde_json::json!([]), "the data elements are gone: {t}");
        assert_eq!(t["elementsFingerprinted"].as_array().unwrap().len(), 5, "{t}");
        assert_eq!(t["personalizations"][0]["state"], "CONFIRMED", "{t}");
        assert_eq!(t["personalizations"][0]["tries"], 1, "{t}");
        w.wait_tsp_state(&token, "ACTIVE", WAIT).await;
        let app = w.fleet.app(&token).expect("the device holds the token");
        assert_eq!((app.profile_version.as_str(), app.atc), ("v1", 0));
        for atc in 1..=3u16 {
            let o = w.fleet.transact(&token, &w.tsp.sim_url()).await;
            assert!(o.approved, "{o:?}");
            assert_eq!(o.atc, Some(atc));
        }
        let replay = w.fleet.replay_last(&token, &w.tsp.sim_url()).await;
        assert!(!replay.approved, "{replay:?}");
        assert_eq!(replay.reason, "REPLAY");
    }

    async fn data_in_three_partial_calls_is_merged_then_delivered(backend) {
        let w = World::start(backend, WorldOptions { partial_calls: 3, ..Default::default() }).await;
        let token = w.digitize(0).await;
        w.wait_state(&token, "ACTIVE", WAIT).await;
        let status = w.tsp.status();
        assert_eq!((status.data_calls_sent, status.data_calls_accepted), (3, 3), "{status:?}");
        w.wait_tsp_state(&token, "ACTIVE", WAIT).await;
        assert!(w.fleet.transact(&token, &w.tsp.sim_url()).await.approved);
    }

    async fn an_offline_device_gets_its_profile_when_it_comes_back(backend) {
        let w = World::start(backend, WorldOptions::default()).await;
        let device = w.fleet.device_ids()[0].clone();
        w.fleet.set_behaviour(&device, Behaviour::Offline);
        let token = w.digitize(0).await;
        let t = w.wait_state(&token, "PERSONALIZING", WAIT).await;
        // The profile waits for the device, sealed; the data too, until the device confirms.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let t2 = w.token(&token).await;
        assert_eq!(t2["state"], "PERSONALIZING", "{t2}");
        assert_eq!(t2["personalizations"][0]["tries"], 0, "never offered while offline: {t2}");
        assert_eq!(t["elementsHeld"].as_array().unwrap().len(), 5, "{t}");
        w.fleet.set_behaviour(&device, Behaviour::Normal);
        w.wait_state(&token, "ACTIVE", WAIT).await;
        w.wait_tsp_state(&token, "ACTIVE", WAIT).await;
        assert!(w.fleet.transact(&token, &w.tsp.sim_url()).await.approved);
    }

    async fn a_device_reporting_failure_leaves_a_failed_token_and_the_tsp_is_told(backend) {
        let w = World::start(backend, WorldOptions::default()).await;
        w.fleet.set_behaviour(&w.fleet.device_ids()[0], Behaviour::ReportFailure);
        let token = w.digitize(0).await;
        let t = w.wait_state(&token, "DELETED", WAIT).await;
        let reason = t["failureReason"].as_str().unwrap_or_default();
        assert!(reason.contains("FAILURE"), "{t}");
        assert_eq!(t["elementsHeld"], serde_json::json!([]), "{t}");
        assert_eq!(t["personalizations"][0]["state"], "FAILED", "{t}");
        w.wait_tsp_state(&token, "DELETED", WAIT).await;
        assert!(w.fleet.app(&token).is_none());
    }

    async fn a_delivery_never_confirmed_fails_after_its_tries(backend) {
        let options = WorldOptions {
            hub: HubSettings { delivery_window_secs: 1, delivery_max_tries: 2, ..Default::default() },
            ..Default::default()
        };
        let w = World::start(backend, options).await;
        w.fleet.set_behaviour(&w.fleet.device_ids()[0], Behaviour::NeverConfirm);
        let token = w.digitize(0).await;
        let t = w.wait_state(&token, "DELETED", WAIT).await;
        let reason = t["failureReason"].as_str().unwrap_or_default();
        assert!(reason.contains("after 2 deliveries"), "{t}");
        assert_eq!(t["personalizations"][0]["tries"], 2, "{t}");
        assert!(w.fleet.status().personalizations_received >= 2);
        w.wait_tsp_state(&token, "DELETED", WAIT).await;
    }

    async fn the_hub_killed_at_any_step_loses_nothing_and_applies_nothing_twice(backend) {
        let devices = 10;
        let mut w = World::start(backend, WorldOptions { devices, partial_calls: 2, ..Default::default() }).await;
        let mut tokens = Vec::new();
        for i in 0..devices {
            tokens.push(w.digitize(i).await);
            // Kill the hub at different steps: right after a digitization (data on its way),
            // while profiles are being fetched, while results are being posted, while the
            // outbox is telling the TSP.
            if i % 3 == 1 {
                tokio::time::sleep(Duration::from_millis(40 * i as u64)).await;
                w.hub.restart().await;
            }
        }
        for t in &tokens {
            let view = w.wait_state(t, "ACTIVE", WAIT).await;
            let confirmed = view["personalizations"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["state"] == "CONFIRMED")
                .count();
            assert_eq!(confirmed, 1, "{view}");
            assert_eq!(view["elementsHeld"], serde_json::json!([]), "{view}");
            w.wait_tsp_state(t, "ACTIVE", WAIT).await;
        }
        let fleet = w.fleet.status();
        assert_eq!(fleet.installs, fleet.confirmed, "an install per confirmed result, none twice: {fleet:?}");
        for t in &tokens {
            let o = w.fleet.transact(t, &w.tsp.sim_url()).await;
            assert!(o.approved, "{o:?}");
            assert_eq!(o.atc, Some(1), "one application per token, ATC from 0: {o:?}");
        }
    }

    async fn after_provisioning_the_database_holds_no_data_element_value(backend) {
        let w = World::start(backend, WorldOptions::default()).await;
        let mut tokens = Vec::new();
        for i in 0..3 {
            tokens.push(w.digitize(i).await);
        }
        for t in &tokens {
            w.wait_state(t, "ACTIVE", WAIT).await;
        }
        let bytes = w.hub.stored_bytes().await;
        let mut scanned = 0;
        for t in &tokens {
            for value in w.tsp.values_for_scan(t).expect("the simulator knows its token") {
                if value.len() < 8 {
                    continue;
                }
                scanned += 1;
                for form in [value.clone(), value.to_ascii_lowercase(), value.to_ascii_uppercase()] {
                    assert!(!contains(&bytes, form.as_bytes()), "a value of token {t} is in the database");
                }
                if let Ok(raw) = hex::decode(&value) {
                    assert!(!contains(&bytes, &raw), "the bytes of a value of token {t} are in the database");
                }
            }
        }
        assert!(scanned >= 3 * 4, "the scan looked for the values: {scanned}");
    }
}
