//! The operator console in a real browser: Debian's `chromium`, headless, driven through WebDriver
//! (`chromedriver`) against a hub process with the TSP simulator, the device fleet and a requestor
//! simulator. The operator logs in, deploys a profile version with a campaign and watches it reach
//! COMPLETED on the page (no reload), suspends a token, replays the dead letter its update became,
//! and meets a read-only key's refusal; each page is checked against the admin API and kept as a
//! screenshot in `target/console-screenshots/`.
//!
//! Runs when `TOKENHUB_TEST_CHROMEDRIVER` names the driver (`/usr/bin/chromedriver`; `.ci/run`
//! sets it); without it the test says on stderr that it was skipped.

use crate::harness::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokenhub_sim::requestor::{RequestorSim, RequestorSimConfig};

const REQUESTOR: &str = "console-psp";
const SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const WAIT: Duration = Duration::from_secs(60);

/// chromedriver and one headless chromium session; the driver ends with it.
struct Browser {
    client: Client,
    driver: Child,
    shots: PathBuf,
}

impl Browser {
    async fn start() -> Option<Self> {
        let driver = match std::env::var("TOKENHUB_TEST_CHROMEDRIVER") {
            Ok(d) if !d.trim().is_empty() => d,
            _ => {
                eprintln!("console browser test skipped: TOKENHUB_TEST_CHROMEDRIVER is not set");
                return None;
            }
        };
        tokenhub::telemetry::install_crypto_provider();
        let port = free_port();
        let mut driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("TOKENHUB_TEST_CHROMEDRIVER names a chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let until = Instant::now() + Duration::from_secs(20);
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(Instant::now() < until, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut chrome = json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--window-size=1360,1000"]});
        if let Ok(binary) = std::env::var("TOKENHUB_TEST_CHROMIUM") {
            chrome["binary"] = json!(binary);
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), chrome);
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await;
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                let _ = driver.kill();
                panic!("no browser session: {e}");
            }
        };
        let shots =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Some(Self {
            client,
            driver,
            shots,
        })
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The text of the first element `css` finds, once it is there.
    async fn text(&self, css: &str) -> String {
        let e = self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        e.text().await.unwrap()
    }

    /// Waits until the text of `css` contains `want`; the text.
    async fn wait_text(&self, css: &str, want: &str) -> String {
        let until = Instant::now() + WAIT;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                if let Ok(t) = e.text().await {
                    if t.contains(want) {
                        return t;
                    }
                }
            }
            assert!(Instant::now() < until, "{css} never showed {want:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    async fn login(&self, hub: &str, key: &str) {
        self.goto(&format!("{hub}/console")).await;
        self.client
            .execute("sessionStorage.clear(); location.hash = '';", vec![])
            .await
            .unwrap();
        self.goto(&format!("{hub}/console")).await;
        self.text("#login-key").await;
        self.type_into("#login-key", key).await;
        self.click("#login-submit").await;
    }

    async fn end(self) {
        let _ = self.client.close().await;
        let mut driver = self.driver;
        let _ = driver.kill();
        let _ = driver.wait();
    }
}

async fn admin_json(w: &World, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut r = w
        .http
        .request(method, format!("{}{path}", w.hub.url()))
        .bearer_auth(&w.hub.admin_key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

async fn wait_api(w: &World, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + WAIT;
    loop {
        let v = admin_json(w, reqwest::Method::GET, path, None).await;
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < until, "{path} never as expected: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The hub, a requestor that verifies its updates, two ACTIVE tokens of the requestor, and
/// profile v2 defined (not deployed).
async fn world() -> (World, RequestorSim, Vec<String>) {
    let hub = HubSettings {
        env: vec![
            ("TOKENHUB_NOTIFY_RETRY_SCHEDULE".into(), "200ms".into()),
            ("TOKENHUB_OUTBOUND_ALLOW".into(), "127.0.0.0/8".into()),
        ],
        ..Default::default()
    };
    let options = WorldOptions {
        devices: 2,
        hub,
        ..Default::default()
    };
    let w = World::start(Backend::Sqlite, options).await;
    let psp = RequestorSim::start(RequestorSimConfig::new("psp-key", vec![SECRET.into()]))
        .await
        .unwrap();
    admin_json(
        &w,
        reqwest::Method::PUT,
        &format!("/admin/v1/token-requestors/{REQUESTOR}"),
        Some(
            json!({"merchantId": "CONSOLE-M1", "baseUrl": psp.base_url(), "apiKey": "psp-key",
                    "signingSecrets": [SECRET]}),
        ),
    )
    .await;
    let mut tokens = Vec::new();
    for i in 0..2 {
        tokens.push(
            w.digitize_with(i, json!({"tokenRequestorId": REQUESTOR}))
                .await,
        );
    }
    for t in &tokens {
        w.wait_state(t, "ACTIVE", WAIT).await;
        w.wait_tsp_state(t, "ACTIVE", WAIT).await;
    }
    w.define_v2().await;
    (w, psp, tokens)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_console_in_a_real_browser() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (w, psp, tokens) = world().await;
    let hub = w.hub.url();
    b.goto(&format!("{hub}/console")).await;
    b.text("#login-key").await;
    b.shot("login").await;
    b.login(&hub, &w.hub.admin_key).await;

    // The overview: the TSP, its health (unknown until the hub shows one), its outbox.
    let row = b.wait_text("tr[data-tsp='e2e-tsp']", "e2e-tsp").await;
    let o = admin_json(&w, reqwest::Method::GET, "/admin/v1/overview", None).await;
    let tsp = &o["tsps"][0];
    assert_eq!(tsp["tspId"], "e2e-tsp");
    let health = b.text("tr[data-tsp='e2e-tsp'] td.health").await;
    assert!(
        ["unknown", "UP", "DOWN", "UNKNOWN"].contains(&health.as_str()),
        "{health}"
    );
    assert!(row.contains(&tsp["outbox"]["pending"].to_string()), "{row}");
    assert_eq!(
        b.text("#notifications-dead").await,
        o["notifications"]["dead"].to_string()
    );
    // The hub node serving the console, running, as the admin API lists it.
    let nodes = admin_json(&w, reqwest::Method::GET, "/admin/v1/nodes", None).await;
    let node = nodes["nodes"][0]["nodeId"]
        .as_str()
        .expect("the hub's node")
        .to_string();
    let row = b
        .wait_text(&format!("tr[data-node='{node}']"), "RUNNING")
        .await;
    assert!(row.contains(&node) && row.contains("this one"), "{row}");
    b.shot("overview").await;

    // Deploy v2 with a campaign from the campaigns page, and watch it complete without a reload.
    b.click("#nav a[data-page='campaigns']").await;
    b.text("#deploy-form").await;
    for (name, value) in [
        ("issuer", ISSUER),
        ("product", "classic"),
        ("version", "v2"),
    ] {
        b.type_into(&format!("#deploy-form input[name='{name}']"), value)
            .await;
    }
    b.click("#deploy-form button[type='submit']").await;
    let state = b.text("#campaign-state").await;
    assert!(!state.is_empty());
    b.client
        .execute("window.stillTheSamePage = true;", vec![])
        .await
        .unwrap();
    let url = b.client.current_url().await.unwrap();
    let campaign = url
        .fragment()
        .unwrap()
        .trim_start_matches("/campaigns/")
        .to_string();
    b.wait_text("#campaign-state", "COMPLETED").await;
    let same = b
        .client
        .execute("return window.stillTheSamePage === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, json!(true), "the page was reloaded");
    let c = admin_json(
        &w,
        reqwest::Method::GET,
        &format!("/admin/v1/campaigns/{campaign}"),
        None,
    )
    .await;
    assert_eq!(c["state"], "COMPLETED");
    assert_eq!(
        b.text("#campaign-settled").await,
        format!("{} of {}", c["done"], c["total"])
    );
    b.shot("campaign").await;
    b.click("#nav a[data-page='campaigns']").await;
    b.wait_text(&format!("tr[data-campaign='{campaign}']"), "COMPLETED")
        .await;
    b.shot("campaigns").await;

    // Suspend a token from its page; the requestor refuses its update for good: a dead letter.
    let t = &tokens[0];
    let settled = |v: &Value| v["notifications"]["PENDING"].as_i64().unwrap_or(0) == 0;
    wait_api(
        &w,
        &format!("/admin/v1/token-requestors/{REQUESTOR}"),
        settled,
    )
    .await;
    psp.status_next(400, 1, None).unwrap();
    b.goto(&format!("{hub}/console#/tokens/{t}")).await;
    b.wait_text("#token-state", "ACTIVE").await;
    assert_eq!(b.text("#token-version").await, "v2");
    b.click("#token-suspend").await;
    b.wait_text("#token-state", "SUSPENDED").await;
    assert_eq!(w.token(t).await["state"], "SUSPENDED");
    let page = b.text("#token").await;
    assert!(page.contains("Updates sent to the requestor"), "{page}");
    b.shot("token").await;

    // The dead letter on the requestor's page, replayed from there.
    let dead = wait_api(
        &w,
        &format!("/admin/v1/token-requestors/{REQUESTOR}/notifications?state=DEAD"),
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    let id = dead[0]["notificationId"].as_i64().unwrap();
    b.goto(&format!("{hub}/console#/requestors/{REQUESTOR}"))
        .await;
    let row = format!("tr.dead-letter[data-id='{id}']");
    b.wait_text(&row, t).await;
    assert_eq!(
        b.count("tr.dead-letter").await,
        dead.as_array().unwrap().len()
    );
    b.shot("requestor-dead-letter").await;
    b.click(&format!("{row} button.replay")).await;
    wait_api(&w, &format!("/admin/v1/notifications/{id}"), |v| {
        v["state"] == "DELIVERED"
    })
    .await;
    b.wait_text(&format!("tr.delivery[data-id='{id}']"), "DELIVERED")
        .await;
    assert_eq!(b.count("tr.dead-letter").await, 0);
    b.shot("requestor").await;

    // A read-only key reads, and its refusal to act is shown as the API gave it.
    let reader = admin_json(
        &w,
        reqwest::Method::POST,
        "/admin/v1/admin-keys",
        Some(json!({"role": "read-only", "label": "console"})),
    )
    .await;
    b.login(&hub, reader["apiKey"].as_str().unwrap()).await;
    b.text("tr[data-tsp='e2e-tsp']").await;
    b.goto(&format!("{hub}/console#/tokens/{}", tokens[1]))
        .await;
    b.wait_text("#token-state", "ACTIVE").await;
    b.click("#token-suspend").await;
    let refusal = b.wait_text("#banner", "Refused").await;
    assert!(refusal.contains("403"), "{refusal}");
    assert_eq!(w.token(&tokens[1]).await["state"], "ACTIVE");
    b.shot("refused").await;
    b.end().await;
}
