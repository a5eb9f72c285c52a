//! A re-personalization campaign over 2,000 tokens while the hub is killed (SIGKILL) at random
//! instants, again and again, and started again; the TSP simulator and the devices run on. The
//! campaign must still complete with every token re-personalized exactly once — one recovery at
//! the TSP, one install of v2 on the device, one `submitNewTokenDataStatus SUCCESS` (one ATC reset)
//! — and the ATC in step between device and TSP.
//!
//! The instants come from a seeded generator; the seed is printed, and `E2E_CRASH_SEED=<seed>`
//! replays the same schedule (the hub's timing still varies from run to run).

use crate::harness::*;
use futures::stream::{self, StreamExt};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokenhub_sim::device::TxnOutcome;

const TOKENS: usize = 2_000;
/// Wallets, each holding `TOKENS / DEVICES` cards. Not one device per token: every device keeps a
/// long poll open, and the hub looks up each open poll's offers once a second, so 2,000 idle
/// devices alone saturate its PostgreSQL pool (slow acquires over 2 s, admin reads over 1 s) on
/// these 2 cores, and everything else crawls.
const DEVICES: usize = 250;
/// Digitizations (and later admin reads, transactions) under way at once.
const CONCURRENCY: usize = 32;
/// Provisioning and the campaign each get this long.
const DEADLINE: Duration = Duration::from_secs(300);

fn seed() -> u64 {
    match std::env::var("E2E_CRASH_SEED") {
        Ok(s) if !s.trim().is_empty() => s.trim().parse().expect("E2E_CRASH_SEED is a u64"),
        _ => rand::random(),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl World {
    /// Digitizes `n` cards, card `i` onto device `i % DEVICES`, `CONCURRENCY` at a time, and
    /// waits until every token is ACTIVE.
    async fn provision_concurrently(&self, n: usize) -> Vec<String> {
        let digitized = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let reporter = {
            let (fleet, digitized, t0) = (self.fleet.clone(), digitized.clone(), Instant::now());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    let s = fleet.status();
                    eprintln!(
                        "campaign_crash: provisioning, {}: {} digitized, {} installed and confirmed",
                        secs(t0.elapsed()),
                        digitized.load(std::sync::atomic::Ordering::Relaxed),
                        s.confirmed
                    );
                }
            })
        };
        let tokens: Vec<String> = stream::iter(0..n)
            .map(|i| {
                let digitized = &digitized;
                async move {
                    let card = json!({"walletCardRefId": format!("card-{i}")});
                    let t = self.digitize_with(i % DEVICES, card).await;
                    digitized.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    t
                }
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        assert!(
            self.fleet
                .wait_until(DEADLINE, |s| s.confirmed >= n as u64)
                .await,
            "the devices never confirmed {n} installs: {:?}; the TSP: {:?}",
            self.fleet.status(),
            self.tsp.status()
        );
        reporter.abort();
        // The hub tells the TSP ACTIVE once the device confirmed, so this is ACTIVE at both (read
        // from the simulator's memory, not 2,000 admin calls); the campaign's total checks the
        // hub's side.
        let until = Instant::now() + DEADLINE;
        for t in &tokens {
            self.wait_tsp_state(t, "ACTIVE", until.saturating_duration_since(Instant::now()))
                .await;
        }
        tokens
    }

    /// One transaction on every token, `CONCURRENCY` tokens at once.
    async fn transact_each(&self, tokens: &[String]) -> Vec<TxnOutcome> {
        let sim = self.tsp.sim_url();
        stream::iter(tokens)
            .map(|t| self.fleet.transact(t, &sim))
            .buffered(CONCURRENCY)
            .collect()
            .await
    }

    /// The campaign's view, once the hub answers (it may be starting again).
    async fn campaign_when_up(&self, id: &str) -> Value {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self
                .http
                .get(format!("{}/admin/v1/campaigns/{id}", self.hub.url()))
                .bearer_auth(&self.hub.admin_key)
                .send()
                .await
            {
                if r.status() == 200 {
                    if let Ok(v) = r.json().await {
                        return v;
                    }
                }
            }
            assert!(Instant::now() < until, "the hub does not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn progress(c: &Value) -> String {
    format!(
        "{} done={} failed={} inProgress={} steps={}",
        c["state"], c["done"], c["failed"], c["inProgress"], c["steps"]
    )
}

e2e_tests! {
    async fn sigkill_at_random_instants_during_a_2000_token_campaign_re_personalizes_each_token_exactly_once(backend) {
        let seed = seed();
        eprintln!("campaign_crash: seed {seed} (replay with E2E_CRASH_SEED={seed})");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let started = Instant::now();

        // 1. The world, 2,000 ACTIVE tokens, one payment each.
        let t0 = Instant::now();
        let mut w = World::start(backend, WorldOptions { devices: DEVICES, ..Default::default() }).await;
        eprintln!("campaign_crash: world with {DEVICES} devices in {}", secs(t0.elapsed()));
        let t0 = Instant::now();
        let tokens = w.provision_concurrently(TOKENS).await;
        eprintln!("campaign_crash: {TOKENS} tokens ACTIVE in {}", secs(t0.elapsed()));
        let t0 = Instant::now();
        let declined: Vec<TxnOutcome> = w.transact_each(&tokens).await.into_iter().filter(|o| !o.approved || o.atc != Some(1)).collect();
        assert!(declined.is_empty(), "first round: {} not approved at ATC 1, e.g. {:?}", declined.len(), &declined[..declined.len().min(5)]);
        eprintln!("campaign_crash: first round of {TOKENS} transactions approved in {}", secs(t0.elapsed()));

        // 2. v2, deployed with a campaign.
        w.define_v2().await;
        let campaign_started = Instant::now();
        let id = w.deploy_campaign(json!({"ratePerSecond": 200, "maxInFlight": 200})).await;

        // 3. SIGKILL at random instants while it runs; the simulators keep running.
        let kills = rng.gen_range(4..=6);
        let mut killed = 0;
        for k in 1..=kills {
            let pause = Duration::from_millis(rng.gen_range(500..=3_000));
            tokio::time::sleep(pause).await;
            let before = w.campaign_when_up(&id).await;
            if before["state"] != "RUNNING" {
                eprintln!("campaign_crash: kill {k}/{kills} not made, the campaign is {}", progress(&before));
                break;
            }
            let down = Instant::now();
            w.hub.restart().await;
            killed += 1;
            eprintln!(
                "campaign_crash: kill {k}/{kills} after {} (hub back in {}); before: {}",
                secs(pause),
                secs(down.elapsed()),
                progress(&before)
            );
        }
        assert!(killed >= 1, "the hub was never killed while the campaign ran");

        // 4. The campaign completes… (a call a killed hub had claimed in its outbox waits for
        // the claim's lease, 60 s, before the next hub makes it).
        let until = Instant::now() + DEADLINE;
        let mut last_report = Instant::now();
        let c = loop {
            let c = w.campaign_when_up(&id).await;
            if c["state"] == "COMPLETED" {
                break c;
            }
            assert!(
                Instant::now() < until,
                "the campaign is stuck after {}: {}; fleet {:?}; TSP {:?}",
                secs(campaign_started.elapsed()),
                progress(&c),
                w.fleet.status(),
                w.tsp.status()
            );
            if last_report.elapsed() > Duration::from_secs(10) {
                eprintln!("campaign_crash: after {}: {}", secs(campaign_started.elapsed()), progress(&c));
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        eprintln!(
            "campaign_crash: campaign COMPLETED in {} with {killed} kills: {}",
            secs(campaign_started.elapsed()),
            progress(&c)
        );
        let n = TOKENS as i64;
        assert_eq!(
            (c["total"].as_i64(), c["done"].as_i64(), c["failed"].as_i64()),
            (Some(n), Some(n), Some(0)),
            "{c}"
        );

        // … every SUCCESS reaches the TSP, once per token.
        let t0 = Instant::now();
        assert!(
            tokio::time::timeout(DEADLINE, async {
                while w.tsp.status().atc_resets < TOKENS as u64 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await
            .is_ok(),
            "the TSP never got every SUCCESS: {:?}",
            w.tsp.status()
        );
        // Let a late duplicate show.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let tsp = w.tsp.status();
        eprintln!("campaign_crash: every SUCCESS at the TSP {} after COMPLETED; TSP {tsp:?}", secs(t0.elapsed()));
        assert_eq!(tsp.atc_resets, TOKENS as u64, "one ATC reset per token: {tsp:?}");
        assert_eq!(tsp.recoveries_started, TOKENS as u64, "one recovery per token: {tsp:?}");
        assert_eq!(tsp.new_data_calls_rejected_total(), 0, "{tsp:?}");

        // The devices: one install per token per version, each confirmed, all on v2.
        let fleet = w.fleet.status();
        eprintln!("campaign_crash: fleet {fleet:?}");
        assert_eq!(fleet.installs, 2 * TOKENS as u64, "one install per token per version: {fleet:?}");
        assert_eq!(fleet.installs, fleet.confirmed, "{fleet:?}");
        assert_eq!(fleet.apps_installed, TOKENS as u64, "{fleet:?}");
        assert_eq!(
            (fleet.failures_reported, fleet.decrypt_errors, fleet.check_errors),
            (0, 0, 0),
            "{fleet:?}"
        );
        let not_v2: Vec<_> = w.fleet.apps().into_iter().filter(|a| a.profile_version != "v2" || a.atc != 0).collect();
        assert!(not_v2.is_empty(), "{} applications not fresh on v2, e.g. {:?}", not_v2.len(), &not_v2[..not_v2.len().min(5)]);

        // The hub: each token ACTIVE on v2 with exactly one confirmed re-personalization. The
        // devices stop polling first (their applications stay), so that the hub answers quickly.
        let t0 = Instant::now();
        w.fleet.shutdown().await;
        let views: Vec<Value> = stream::iter(&tokens).map(|t| w.token(t)).buffered(CONCURRENCY).collect().await;
        let wrong: Vec<&Value> = views
            .iter()
            .filter(|v| {
                let reperso = v["personalizations"]
                    .as_array()
                    .map(|ps| ps.iter().filter(|p| p["kind"] == "REPERSO" && p["state"] == "CONFIRMED").count())
                    .unwrap_or(0);
                reperso != 1 || v["state"] != "ACTIVE" || v["profileVersion"] != "v2" || v["elementsHeld"] != json!([])
            })
            .collect();
        assert!(wrong.is_empty(), "{} tokens not re-personalized exactly once, e.g. {:?}", wrong.len(), &wrong[..wrong.len().min(3)]);
        for t in &tokens {
            let at_tsp = w.tsp.token(t).unwrap();
            assert_eq!(at_tsp.last_atc, None, "the TSP did not reset the ATC of {t}: {at_tsp:?}");
        }
        eprintln!("campaign_crash: {TOKENS} tokens checked at the hub in {}", secs(t0.elapsed()));

        // ATC in step: a second round, all approved at ATC 1, device and TSP agree.
        let t0 = Instant::now();
        let declined: Vec<TxnOutcome> = w.transact_each(&tokens).await.into_iter().filter(|o| !o.approved || o.atc != Some(1)).collect();
        assert!(declined.is_empty(), "second round: {} not approved at ATC 1, e.g. {:?}", declined.len(), &declined[..declined.len().min(5)]);
        for t in &tokens {
            let (app, at_tsp) = (w.fleet.app(t).unwrap(), w.tsp.token(t).unwrap());
            assert_eq!(Some(app.atc), at_tsp.last_atc, "ATC of {t}: device {app:?}, TSP {at_tsp:?}");
        }
        let tsp = w.tsp.status();
        assert_eq!(tsp.transactions_approved, 2 * TOKENS as u64, "{tsp:?}");
        assert_eq!(tsp.transactions_declined_total(), 0, "{tsp:?}");
        eprintln!("campaign_crash: second round approved in {}; whole test {}", secs(t0.elapsed()), secs(started.elapsed()));
    }
}
