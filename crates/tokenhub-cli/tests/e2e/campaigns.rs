//! Re-personalization campaigns end to end: the TSP recovers each token's data, the devices
//! install the new version, the TSP resets the ATC, payments go on.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);

impl World {
    pub async fn provision(&self, n: usize) -> Vec<String> {
        let mut tokens = Vec::new();
        for i in 0..n {
            tokens.push(self.digitize(i).await);
        }
        for t in &tokens {
            self.wait_state(t, "ACTIVE", WAIT).await;
            self.wait_tsp_state(t, "ACTIVE", WAIT).await;
        }
        tokens
    }

    pub async fn define_v2(&self) {
        let p = tokenhub_sim::profiles::profile_v2();
        let r = self
            .http
            .put(format!(
                "{}/admin/v1/issuers/{ISSUER}/products/classic/profiles/v2",
                self.hub.url()
            ))
            .bearer_auth(&self.hub.admin_key)
            .json(&p)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    pub async fn deploy_campaign(&self, settings: Value) -> String {
        let r = self
            .http
            .post(format!(
                "{}/admin/v1/issuers/{ISSUER}/products/classic/profiles/v2/deploy",
                self.hub.url()
            ))
            .bearer_auth(&self.hub.admin_key)
            .json(&json!({"campaign": settings}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        v["campaignId"].as_str().unwrap().to_string()
    }

    pub async fn campaign(&self, id: &str) -> Value {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self
                .http
                .get(format!("{}/admin/v1/campaigns/{id}", self.hub.url()))
                .bearer_auth(&self.hub.admin_key)
                .send()
                .await
            {
                assert_eq!(r.status(), 200);
                return r.json().await.unwrap();
            }
            assert!(Instant::now() < until, "the hub does not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_campaign(&self, id: &str, state: &str) -> Value {
        let until = Instant::now() + WAIT;
        loop {
            let c = self.campaign(id).await;
            if c["state"] == state {
                return c;
            }
            assert!(Instant::now() < until, "campaign never {state}: {c}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn campaign_command(&self, id: &str, action: &str) -> u16 {
        self.http
            .post(format!(
                "{}/admin/v1/campaigns/{id}/{action}",
                self.hub.url()
            ))
            .bearer_auth(&self.hub.admin_key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Waits until the TSP's last ATC for the token is reset (after newDataStatus SUCCESS).
    pub async fn wait_atc_reset(&self, token_id: &str) {
        let until = Instant::now() + WAIT;
        while self.tsp.token(token_id).and_then(|t| t.last_atc).is_some() {
            assert!(
                Instant::now() < until,
                "the TSP never reset the ATC of {token_id}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

e2e_tests! {
    async fn a_campaign_re_personalizes_every_active_token_and_payments_go_on(backend) {
        let w = World::start(backend, WorldOptions { devices: 4, partial_calls: 2, ..Default::default() }).await;
        let tokens = w.provision(4).await;
        for t in &tokens {
            for _ in 0..2 {
                assert!(w.fleet.transact(t, &w.tsp.sim_url()).await.approved);
            }
        }
        w.define_v2().await;
        let id = w.deploy_campaign(json!({"ratePerSecond": 20, "maxInFlight": 2})).await;
        let c = w.wait_campaign(&id, "COMPLETED").await;
        assert_eq!((c["total"].as_i64(), c["done"].as_i64(), c["failed"].as_i64()), (Some(4), Some(4), Some(0)), "{c}");
        for t in &tokens {
            let view = w.token(t).await;
            assert_eq!(view["profileVersion"], "v2", "{view}");
            assert_eq!(view["elementsHeld"], json!([]), "the recovered data is gone too: {view}");
            let app = w.fleet.app(t).unwrap();
            assert_eq!((app.profile_version.as_str(), app.atc), ("v2", 0), "{app:?}");
            w.wait_atc_reset(t).await;
            let o = w.fleet.transact(t, &w.tsp.sim_url()).await;
            assert!(o.approved, "payments go on after the re-personalization: {o:?}");
            assert_eq!(o.atc, Some(1));
        }
    }

    async fn pause_resume_and_cancel_steer_a_campaign(backend) {
        let w = World::start(backend, WorldOptions { devices: 6, ..Default::default() }).await;
        let tokens = w.provision(6).await;
        w.define_v2().await;
        let id = w.deploy_campaign(json!({"ratePerSecond": 1, "maxInFlight": 1})).await;
        assert_eq!(w.campaign_command(&id, "pause").await, 204);
        let paused = w.campaign(&id).await;
        assert_eq!(paused["state"], "PAUSED", "{paused}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let still = w.campaign(&id).await;
        assert_eq!(still["steps"]["QUEUED"], paused["steps"]["QUEUED"], "nothing starts while paused: {still}");
        assert_eq!(w.campaign_command(&id, "resume").await, 204);
        let until = Instant::now() + WAIT;
        while w.campaign(&id).await["done"].as_i64().unwrap_or(0) < 2 {
            assert!(Instant::now() < until);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(w.campaign_command(&id, "cancel").await, 204);
        let c = w.wait_campaign(&id, "CANCELLED").await;
        assert!(c["steps"]["CANCELLED"].as_i64().unwrap() >= 1, "queued tokens were cancelled: {c}");
        assert_eq!(w.campaign_command(&id, "resume").await, 409, "a cancelled campaign stays cancelled");
        // Every token still pays, on whichever version it holds.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for t in &tokens {
            let o = w.fleet.transact(t, &w.tsp.sim_url()).await;
            assert!(o.approved, "{o:?}");
        }
    }
}

fn report_reasons(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| l["reason"].as_str().unwrap_or("").to_string())
        .collect()
}

impl World {
    pub async fn report(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/admin/v1/campaigns/{id}/report", self.hub.url()))
            .bearer_auth(&self.hub.admin_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

e2e_tests! {
    async fn a_tsp_that_generates_new_data_is_caught_and_nothing_is_delivered(backend) {
        let w = World::start(backend, WorldOptions { devices: 2, ..Default::default() }).await;
        let tokens = w.provision(2).await;
        for t in &tokens {
            assert!(w.fleet.transact(t, &w.tsp.sim_url()).await.approved);
        }
        w.tsp.set_misbehaviour(tokenhub_sim::Misbehaviour { new_data_on_recovery: true, ..Default::default() });
        w.define_v2().await;
        let id = w.deploy_campaign(json!({})).await;
        let c = w.wait_campaign(&id, "COMPLETED").await;
        assert_eq!((c["done"].as_i64(), c["failed"].as_i64()), (Some(0), Some(2)), "{c}");
        let reasons = report_reasons(&w.report(&id).await);
        assert!(reasons.iter().all(|r| r.contains("cmk_ac") && r.contains("differs")), "{reasons:?}");
        assert_eq!(w.tsp.status().new_data_calls_rejected.get("431"), Some(&2), "{:?}", w.tsp.status());
        for t in &tokens {
            let view = w.token(t).await;
            assert_eq!(view["profileVersion"], "v1", "{view}");
            assert_eq!(view["elementsHeld"], json!([]), "{view}");
            let app = w.fleet.app(t).unwrap();
            assert_eq!(app.profile_version, "v1", "nothing was delivered: {app:?}");
            // The TSP got FAILURE and kept its ATC: the old application pays on.
            let o = w.fleet.transact(t, &w.tsp.sim_url()).await;
            assert!(o.approved && o.atc == Some(2), "{o:?}");
        }
    }

    async fn without_the_success_notification_payments_after_the_re_personalization_are_declined(backend) {
        // The check the demo relies on can fail: if the TSP never learns of the SUCCESS, it keeps
        // its ATC, the device restarts at 0, and payments are declined as replays.
        let w = World::start(backend, WorldOptions { devices: 1, ..Default::default() }).await;
        let token = w.provision(1).await.remove(0);
        for _ in 0..3 {
            assert!(w.fleet.transact(&token, &w.tsp.sim_url()).await.approved);
        }
        let device = w.fleet.device_ids()[0].clone();
        w.fleet.set_behaviour(&device, tokenhub_sim::device::Behaviour::Offline);
        w.define_v2().await;
        let id = w.deploy_campaign(json!({})).await;
        let until = Instant::now() + WAIT;
        while w.campaign(&id).await["steps"]["DELIVERING"] != 1 {
            assert!(Instant::now() < until, "the profile was never rebuilt");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // From now on the TSP answers nothing: the SUCCESS cannot reach it.
        w.tsp.set_misbehaviour(tokenhub_sim::Misbehaviour { rate_limit: Some(0), ..Default::default() });
        w.fleet.set_behaviour(&device, tokenhub_sim::device::Behaviour::Normal);
        w.fleet
            .wait_for_app(&token, WAIT, |a| a.profile_version == "v2")
            .await
            .expect("the device installs v2");
        let o = w.fleet.transact(&token, &w.tsp.sim_url()).await;
        assert!(!o.approved, "{o:?}");
        assert_eq!(o.reason, "REPLAY", "{o:?}");
        // Once the TSP answers again, the outbox delivers the SUCCESS and payments approve.
        w.tsp.set_misbehaviour(tokenhub_sim::Misbehaviour::default());
        w.wait_atc_reset(&token).await;
        let o = w.fleet.transact(&token, &w.tsp.sim_url()).await;
        assert!(o.approved, "{o:?}");
    }

    async fn new_data_after_the_recovery_time_to_live_is_rejected_with_432(backend) {
        let options = WorldOptions {
            devices: 1,
            hub: HubSettings { perso_ttl_secs: 1, ..Default::default() },
            ..Default::default()
        };
        let w = World::start(backend, options).await;
        let token = w.provision(1).await.remove(0);
        w.tsp.set_misbehaviour(tokenhub_sim::Misbehaviour { drop_reperso: true, ..Default::default() });
        w.define_v2().await;
        let id = w.deploy_campaign(json!({})).await;
        let c = w.wait_campaign(&id, "COMPLETED").await;
        assert_eq!(c["failed"], 1, "{c}");
        let reasons = report_reasons(&w.report(&id).await);
        assert!(reasons[0].contains("in time"), "{reasons:?}");
        let view = w.token(&token).await;
        let correlation = view["history"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event"].as_str().unwrap_or("").contains("repersoToken queued"))
            .map(|e| e["correlationId"].as_str().unwrap().to_string())
            .expect("the recovery is in the history");
        let r = w
            .http
            .put(format!("{}/trapi/v2.0/tokens/{token}/newData", w.hub.url()))
            .header("x-correlation-id", &correlation)
            .json(&json!({"issuerId": ISSUER, "tokenPersoInfo": [{"name": "psn", "value": "01"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["responseCode"], 432, "{body}");
    }

    async fn a_failing_canary_pauses_the_campaign(backend) {
        let w = World::start(backend, WorldOptions { devices: 6, ..Default::default() }).await;
        w.provision(6).await;
        w.tsp.set_misbehaviour(tokenhub_sim::Misbehaviour { new_data_on_recovery: true, ..Default::default() });
        w.define_v2().await;
        let id = w.deploy_campaign(json!({"canaryPercent": 34, "canaryMaxFailurePercent": 10})).await;
        let c = w.wait_campaign(&id, "PAUSED").await;
        assert!(c["stateReason"].as_str().unwrap_or("").contains("canary"), "{c}");
        assert_eq!(c["failed"], 3, "only the canary ran: {c}");
        assert_eq!(c["steps"]["QUEUED"], 3, "{c}");
        // The operator looked, the TSP is fixed: resuming goes on without judging the canary again.
        w.tsp.set_misbehaviour(tokenhub_sim::Misbehaviour::default());
        assert_eq!(w.campaign_command(&id, "resume").await, 204);
        let c = w.wait_campaign(&id, "COMPLETED").await;
        assert_eq!((c["done"].as_i64(), c["failed"].as_i64()), (Some(3), Some(3)), "{c}");
    }

    async fn the_hub_killed_during_a_campaign_re_personalizes_every_token_exactly_once(backend) {
        let devices = 12;
        let mut w = World::start(backend, WorldOptions { devices, ..Default::default() }).await;
        let tokens = w.provision(devices).await;
        for t in &tokens {
            assert!(w.fleet.transact(t, &w.tsp.sim_url()).await.approved);
        }
        w.define_v2().await;
        let id = w.deploy_campaign(json!({"ratePerSecond": 8, "maxInFlight": 4})).await;
        for pause_ms in [150u64, 400, 700] {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            w.hub.restart().await;
        }
        let c = w.wait_campaign(&id, "COMPLETED").await;
        assert_eq!((c["done"].as_i64(), c["failed"].as_i64()), (Some(devices as i64), Some(0)), "{c}");
        let fleet = w.fleet.status();
        assert_eq!(fleet.installs, fleet.confirmed, "{fleet:?}");
        assert_eq!(fleet.installs as usize, 2 * devices, "one install per token per version: {fleet:?}");
        for t in &tokens {
            let view = w.token(t).await;
            let reperso = view["personalizations"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["kind"] == "REPERSO" && p["state"] == "CONFIRMED")
                .count();
            assert_eq!(reperso, 1, "{view}");
            w.wait_atc_reset(t).await;
            let o = w.fleet.transact(t, &w.tsp.sim_url()).await;
            assert!(o.approved && o.atc == Some(1), "ATC in sync after the campaign: {o:?}");
        }
    }
}
