//! The demo's merchant story with real processes, at small scale: `tokenhub requestor-sim` as a
//! merchant's PSP (its own process, driven through `/sim/merchant…`) tokenizes cards on file
//! through the hub process, pays with each (the TSP simulator authorizes), the TSP renews some
//! cards and the hub forwards the updates; the PSP discards those token PANs, its next payments
//! fetch the new ones and are approved; a replayed cryptogram is declined. No card PAN or token
//! PAN the simulators used is in the database, the hub's logs or the PSP's.

use crate::harness::{contains, free_port, HubSettings, World, WorldOptions};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokenhub_sim::requestor::card_pan;

const CARDS: u64 = 10;
const RENEWALS: usize = 3;
const SEED: u32 = 4242;
const MERCHANT_ID: &str = "E2E-MERCHANT";
const API_KEY: &str = "e2e-merchant-notification-key";
const SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A `tokenhub requestor-sim` process, killed when dropped.
struct Psp {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Drop for Psp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Psp {
    fn start(w: &World, port: u16, requestor_key: &str, log: &std::path::Path) -> Self {
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tokenhub"))
            .args(["requestor-sim", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--signing-secret", SECRET, "--hub-url", &w.hub.url()])
            .args([
                "--merchant-id",
                MERCHANT_ID,
                "--tsp-sim-url",
                &w.tsp.sim_url(),
            ])
            .args(["--card-seed", &SEED.to_string()])
            .env("TOKENHUB_REQUESTOR_API_KEY", API_KEY)
            .env("TOKENHUB_REQUESTOR_KEY", requestor_key)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: w.http.clone(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            r = r.json(&body);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }

    async fn wait_up(&self) {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self
                .http
                .get(format!("{}/sim/status", self.url))
                .send()
                .await;
            if matches!(r, Ok(ref r) if r.status() == 200) {
                return;
            }
            assert!(
                Instant::now() < until,
                "the requestor simulator did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stats(&self) -> Value {
        self.call(reqwest::Method::GET, "/sim/merchant", None).await["stats"].clone()
    }
}

async fn admin(w: &World, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut r = w
        .http
        .request(method, format!("{}{path}", w.hub.url()))
        .bearer_auth(&w.hub.admin_key);
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = r.send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

e2e_tests! {
    async fn a_merchant_tokenizes_pays_follows_renewals_and_no_pan_is_stored_or_logged(backend) {
        let logs = tempfile::tempdir().unwrap();
        let (hub_log, psp_log) = (logs.path().join("hub.log"), logs.path().join("psp.log"));
        let hub = HubSettings {
            env: vec![
                ("TOKENHUB_OUTBOUND_ALLOW".into(), "127.0.0.0/8".into()),
                ("RUST_LOG".into(), "debug".into()),
            ],
            log_to: Some(hub_log.clone()),
            ..HubSettings::default()
        };
        let w = World::start(backend, WorldOptions { devices: 1, hub, ..WorldOptions::default() }).await;

        // The merchant's PSP registered at the hub, with a requestor API key; the TSP's card key.
        let port = free_port();
        let put = json!({"merchantId": MERCHANT_ID, "baseUrl": format!("http://127.0.0.1:{port}"),
                         "apiKey": API_KEY, "signingSecrets": [SECRET]});
        admin(&w, reqwest::Method::PUT, "/admin/v1/token-requestors/merchant1", Some(put)).await;
        let key = admin(&w, reqwest::Method::POST, "/admin/v1/token-requestors/merchant1/api-keys", None).await;
        let key = key["apiKey"].as_str().unwrap().to_string();
        admin(&w, reqwest::Method::PUT, "/admin/v1/tsps/e2e-tsp/card-encryption-key",
              Some(w.tsp.encryption_jwk())).await;
        let psp = Psp::start(&w, port, &key, &psp_log);
        psp.wait_up().await;

        let made = psp.call(reqwest::Method::POST, "/sim/merchant/cards", Some(json!({"count": CARDS}))).await;
        assert_eq!(made["failed"], 0, "{made}");
        let tokens: Vec<String> = serde_json::from_value(made["tokenIds"].clone()).unwrap();
        assert_eq!(tokens.len() as u64, CARDS);
        let paid = psp.call(reqwest::Method::POST, "/sim/merchant/payments", Some(json!({}))).await;
        assert_eq!(paid, json!({"approved": CARDS, "declined": 0, "errors": 0}));

        // The TSP renews three cards: new token PANs, new last digits, updates through the hub.
        for id in &tokens[..RENEWALS] {
            let answer = w.tsp.renew_card_on_file(id).await.unwrap().unwrap();
            assert_eq!(answer.status, 204);
        }
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let s = psp.stats().await;
            if s["renewalsSeen"] == RENEWALS && s["pansDiscarded"] == RENEWALS {
                break;
            }
            assert!(Instant::now() < until, "the PSP never followed the renewals: {s}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Every token pays again; the renewed ones with the new PAN fetched by Create Transaction.
        let paid = psp.call(reqwest::Method::POST, "/sim/merchant/payments", Some(json!({}))).await;
        assert_eq!(paid, json!({"approved": CARDS, "declined": 0, "errors": 0}));
        let s = psp.stats().await;
        assert_eq!((s["pansRefetched"].as_u64(), s["refetchMismatches"].as_u64()), (Some(RENEWALS as u64), Some(0)), "{s}");
        assert_eq!(s["tokenized"], CARDS);
        let replay = psp.call(reqwest::Method::POST, "/sim/merchant/replay", Some(json!({}))).await;
        assert_eq!((replay["approved"].as_bool(), replay["reason"].as_str()), (Some(false), Some("REPLAY")));
        drop(psp);

        // Every PAN the simulators used: the merchant's cards, the tokens' PANs, the replaced ones.
        let pans = w.tsp.card_on_file_pans();
        assert_eq!(pans.len(), 2 * CARDS as usize + RENEWALS, "cards, token PANs, replaced PANs");
        for i in 0..CARDS {
            assert!(pans.contains(&card_pan(SEED, i)), "the TSP holds the merchant's card {i}");
        }
        let stored = w.hub.stored_bytes().await;
        let (hub_logged, psp_logged) = (std::fs::read(&hub_log).unwrap(), std::fs::read(&psp_log).unwrap());
        assert!(hub_logged.len() > 1000 && psp_logged.len() > 1000, "both logged at debug level");
        for pan in &pans {
            for (what, bytes) in [("database", &stored), ("hub's logs", &hub_logged), ("PSP's logs", &psp_logged)] {
                assert!(!contains(bytes, pan.as_bytes()), "a PAN in the {what}");
            }
        }
    }
}
