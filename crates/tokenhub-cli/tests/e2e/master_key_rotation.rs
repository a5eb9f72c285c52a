//! A master-key rotation while the hub serves and is killed: tokens wait with their data sealed
//! under version 1 (their devices offline), `tokenhub keys rotate-master` begins the rotation,
//! new digitizations and a campaign run during it, the hub is killed (SIGKILL) in the middle of
//! the re-wrapping and started again; the rotation resumes and retires version 1, the hub then
//! starts with version 2 alone, and every value sealed before is still readable: each waiting
//! device installs its profile, the campaign completes, the new tokens are ACTIVE, and the
//! requestor verifies every token update sent during and after the rotation (its signing secret
//! was sealed under version 1).

use crate::harness::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokenhub_sim::device::Behaviour;
use tokenhub_sim::requestor::{RequestorSim, RequestorSimConfig};
use tokenhub_sim::tsp::TokenUpdate;

/// Version 2 of the master key, given to the hub beside version 1.
const SECOND: &str = "7365636f6e64206d6173746572206b657920666f722074686520726f74617465";
/// Tokens waiting with their data under version 1, on offline devices.
const WAITING: usize = 24;
const OFFLINE_DEVICES: usize = 6;
/// ACTIVE tokens the campaign re-personalizes during the rotation.
const CAMPAIGN: usize = 3;
const DEVICES: usize = OFFLINE_DEVICES + CAMPAIGN + 2;
/// The requestor whose tokens get updates during the rotation, on device `OFFLINE_DEVICES +
/// CAMPAIGN`.
const REQUESTOR: &str = "rotation-psp";
const UPDATED: usize = 3;
const SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn rotate_master(w: &World) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tokenhub"))
        .args(["keys", "rotate-master"])
        .env("TOKENHUB_URL", w.hub.url())
        .env("TOKENHUB_ADMIN_KEY", &w.hub.admin_key)
        .output()
        .unwrap()
}

async fn master_keys(w: &World) -> Option<Value> {
    let r = w
        .http
        .get(format!("{}/admin/v1/master-keys", w.hub.url()))
        .bearer_auth(&w.hub.admin_key)
        .send()
        .await
        .ok()?;
    (r.status() == 200).then_some(())?;
    r.json().await.ok()
}

async fn wait_master_keys(w: &World, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(s) = master_keys(w).await {
            if done(&s) {
                return s;
            }
            assert!(Instant::now() < until, "{what}: {s}");
        }
        assert!(Instant::now() < until, "{what}: the hub does not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The requestor simulator, registered at the hub with [`SECRET`] (sealed under the current
/// master-key version).
async fn requestor(w: &World) -> RequestorSim {
    let sim = RequestorSim::start(RequestorSimConfig::new(
        "rotation-psp-key",
        vec![SECRET.into()],
    ))
    .await
    .unwrap();
    let r = w
        .http
        .put(format!(
            "{}/admin/v1/token-requestors/{REQUESTOR}",
            w.hub.url()
        ))
        .bearer_auth(&w.hub.admin_key)
        .json(
            &json!({"merchantId": "MERCHANT-ROT", "baseUrl": sim.base_url(),
                      "apiKey": "rotation-psp-key", "signingSecrets": [SECRET]}),
        )
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
    sim
}

/// The TSP changes each token's last digits to `digits`; waits until the requestor, verifying
/// each update's signature, holds them all.
async fn update_and_wait(w: &World, psp: &RequestorSim, tokens: &[String], digits: &str) {
    for t in tokens {
        let mut u = TokenUpdate::new(t, ISSUER, chrono::Utc::now());
        u.token_last_digits = Some(digits.into());
        let until = Instant::now() + Duration::from_secs(60);
        while !w.tsp.send_update(&u).await.is_ok_and(|a| a.status == 204) {
            assert!(
                Instant::now() < until,
                "the hub never took the update of {t}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let until = Instant::now() + Duration::from_secs(120);
    for t in tokens {
        loop {
            let held = psp
                .token(t)
                .await
                .unwrap()
                .and_then(|v| v.update.token_last_digits);
            if held.as_deref() == Some(digits) {
                break;
            }
            assert!(
                Instant::now() < until,
                "the requestor never verified {t}'s update: {held:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The rotation, the kill and the checks, on the software keystore (`hsm` `None`, both versions
/// given by `TOKENHUB_MASTER_KEY`) or on a SoftHSM2 token.
async fn rotation_killed_in_the_middle(backend: Backend, hsm: Option<SoftHsmToken>) {
    let mut options = WorldOptions {
        devices: DEVICES,
        ..Default::default()
    };
    let software = hsm.is_none();
    options.hub.env = vec![
        (
            "TOKENHUB_MASTER_KEY".into(),
            format!("1:{MASTER_KEY},2:{SECOND}"),
        ),
        // One data key per step, slowly: the kill lands in the middle.
        ("TOKENHUB_REWRAP_BATCH".into(), "1".into()),
        ("TOKENHUB_REWRAP_PAUSE_MS".into(), "150".into()),
        ("TOKENHUB_OUTBOUND_ALLOW".into(), "127.0.0.0/8".into()),
        (
            "TOKENHUB_NOTIFY_RETRY_SCHEDULE".into(),
            "200ms,400ms,800ms,1s,1s,1s,1s,1s,1s,1s".into(),
        ),
    ];
    if let Some(hsm) = &hsm {
        options.hub.env.extend(hsm.env());
    }
    let mut w = World::start(backend, options).await;
    let devices = w.fleet.device_ids();

    // ACTIVE tokens for the campaign, then tokens whose devices are offline: their data
    // waits sealed under version 1.
    let mut active = Vec::new();
    for i in 0..CAMPAIGN {
        let t = w.digitize(OFFLINE_DEVICES + i).await;
        w.wait_state(&t, "ACTIVE", Duration::from_secs(60)).await;
        active.push(t);
    }
    let psp = requestor(&w).await;
    let mut updated = Vec::new();
    for _ in 0..UPDATED {
        let card = json!({"tokenRequestorId": REQUESTOR});
        let t = w.digitize_with(OFFLINE_DEVICES + CAMPAIGN, card).await;
        w.wait_state(&t, "ACTIVE", Duration::from_secs(60)).await;
        updated.push(t);
    }
    for d in &devices[..OFFLINE_DEVICES] {
        assert!(w.fleet.set_behaviour(d, Behaviour::Offline));
    }
    let mut waiting = Vec::new();
    for i in 0..WAITING {
        waiting.push(w.digitize(i % OFFLINE_DEVICES).await);
    }
    for t in &waiting {
        let until = Instant::now() + Duration::from_secs(60);
        while w.token(t).await["elementsHeld"]
            .as_array()
            .is_none_or(|e| e.is_empty())
        {
            assert!(Instant::now() < until, "no data for {t}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The rotation, through the CLI; the campaign and new digitizations during it.
    let out = rotate_master(&w);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.define_v2().await;
    let campaign = w
        .deploy_campaign(json!({"ratePerSecond": 5, "maxInFlight": 1}))
        .await;
    let fresh = w.digitize(DEVICES - 1).await;
    update_and_wait(&w, &psp, &updated, "1111").await;

    // Killed once some keys are re-wrapped and some are left.
    let before = wait_master_keys(&w, "the re-wrapping under way", |s| {
        s["rotation"]["rewrapped"].as_i64() > Some(2)
    })
    .await;
    assert!(
        before["rotation"]["remaining"].as_i64() > Some(0),
        "killed too late: {before}"
    );
    w.hub.restart().await;
    eprintln!(
        "master_key_rotation: killed during the rotation at {}",
        before["rotation"]
    );
    let after = wait_master_keys(&w, "the rotation finishes", |s| s["rotation"].is_null()).await;
    assert_eq!(after["current"], 2, "{after}");
    assert_eq!(after["versions"][0]["state"], "RETIRED", "{after}");

    // Version 1 is no longer needed: the hub starts with version 2 alone (in an HSM, version
    // 1's objects were destroyed at the retirement).
    if software {
        w.hub.set_env("TOKENHUB_MASTER_KEY", &format!("2:{SECOND}"));
    }
    w.hub.restart().await;

    // Every value sealed before the rotation opens: the waiting devices install.
    for d in &devices[..OFFLINE_DEVICES] {
        assert!(w.fleet.set_behaviour(d, Behaviour::Normal));
    }
    for t in waiting.iter().chain([&fresh]) {
        w.wait_state(t, "ACTIVE", Duration::from_secs(120)).await;
    }
    update_and_wait(&w, &psp, &updated, "2222").await;
    let c = w.wait_campaign(&campaign, "COMPLETED").await;
    // The requestor's tokens are ACTIVE too: the campaign takes them as well.
    let n = (CAMPAIGN + UPDATED) as i64;
    assert_eq!(
        (c["done"].as_i64(), c["failed"].as_i64()),
        (Some(n), Some(0)),
        "{c}"
    );
    let fleet = w.fleet.status();
    assert_eq!(
        (
            fleet.decrypt_errors,
            fleet.check_errors,
            fleet.failures_reported
        ),
        (0, 0, 0),
        "{fleet:?}"
    );
    for t in active.iter().chain(&updated) {
        assert_eq!(w.token(t).await["profileVersion"], "v2");
    }
}

/// A SoftHSM2 token of its own for one hub, in a temporary folder.
struct SoftHsmToken {
    module: String,
    dir: tempfile::TempDir,
}

impl SoftHsmToken {
    /// A fresh token, or `None` (with a note) when `TOKENHUB_TEST_SOFTHSM2` is unset.
    fn make(test: &str) -> Option<Self> {
        let Ok(module) = std::env::var("TOKENHUB_TEST_SOFTHSM2") else {
            eprintln!("{test}: skipped, TOKENHUB_TEST_SOFTHSM2 is not set (the SoftHSM2 module)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        let conf = format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.path().join("tokens").display()
        );
        std::fs::write(dir.path().join("softhsm2.conf"), conf).unwrap();
        let out = std::process::Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", "tokenhub-e2e"])
            .args(["--so-pin", "1234", "--pin", "5678"])
            .env("SOFTHSM2_CONF", dir.path().join("softhsm2.conf"))
            .output()
            .expect("softhsm2-util runs (Debian package softhsm2)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Self { module, dir })
    }

    /// The hub's settings for the token (also those of `tokenhub keys import`).
    fn env(&self) -> Vec<(String, String)> {
        let conf = self.dir.path().join("softhsm2.conf");
        [
            ("SOFTHSM2_CONF", conf.display().to_string()),
            ("TOKENHUB_KEYSTORE", "pkcs11".into()),
            ("TOKENHUB_PKCS11_MODULE", self.module.clone()),
            ("TOKENHUB_PKCS11_TOKEN", "tokenhub-e2e".into()),
            ("TOKENHUB_PKCS11_PIN", "5678".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

e2e_tests! {
    async fn a_rotation_killed_in_the_middle_resumes_and_loses_nothing(backend) {
        rotation_killed_in_the_middle(backend, None).await;
    }

    async fn a_rotation_in_an_hsm_killed_in_the_middle_resumes_and_loses_nothing(backend) {
        let Some(hsm) = SoftHsmToken::make(module_path!()) else {
            return;
        };
        rotation_killed_in_the_middle(backend, Some(hsm)).await;
    }
}
