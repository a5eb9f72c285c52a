//! The demo's acts, one function each: set up, register, digitize, pay, campaign, updates,
//! merchant (`merchant.rs`), finish. Each returns what it saw; [`Demo::finish`] stops everything and checks it all.

use super::client::Client;
use super::merchant::{self, Merchanted};
use super::summary::{Campaigned, Finished, Paid, Provisioned, Summary, Updated};
use super::{progress, updates, DemoArgs};
use anyhow::{ensure, Context};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenhub::app::LocalHub;
use tokenhub::domain::tsp_call::OutboxState;
use tokenhub::Config;
use tokenhub_sim::device::Fleet;
use tokenhub_sim::requestor::RequestorSim;
use tokenhub_sim::TspSimHandle;

const ISSUER_ID: &str = "DEMOISSUER";

/// Everything the demo runs: the hub in this process, the TSP simulator, the wallets and the
/// token requestor, all on loopback.
pub(super) struct Demo {
    args: DemoArgs,
    started: Instant,
    dir: tempfile::TempDir,
    local: LocalHub,
    hub: Arc<tokenhub::Hub>,
    sim: TspSimHandle,
    fleet: Fleet,
    requestor: RequestorSim,
    client: Client,
}

impl Demo {
    /// The hub on a fresh embedded database, the key ceremony, the simulators.
    pub(super) async fn set_up(args: DemoArgs) -> anyhow::Result<Self> {
        ensure!(args.tokens > 0, "--tokens must be at least 1");
        ensure!(
            args.merchant_cards > 0 && args.merchant_renewals <= args.merchant_cards,
            "--merchant-cards must be at least 1, --merchant-renewals at most as many"
        );
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("tokenhub-demo-")
            .tempdir()?;
        let db_path = dir.path().join("tokenhub.db");
        println!(
            "tokenhub demo: {} token(s), database {}",
            args.tokens,
            db_path.display()
        );
        // Every edge over TLS, mutual with the TSP and the requestor: development certificates made
        // for the run.
        let certs = dir.path().join("certs");
        crate::certs::write_dev(&certs)?;
        let ca_pem = std::fs::read_to_string(certs.join("ca.crt"))?;
        let mut config = hub_config(&db_path, &certs)?;
        config.keystore = tokenhub::config::KeystoreSettings::from_args(&args.keystore)?;
        let local = LocalHub::start(config).await.context("starting the hub")?;
        println!(
            "hub over TLS: TSP API {} (mutual TLS), wallet API {}, admin API {}",
            local.tsp_url(),
            local.url(),
            local.admin_url()
        );
        let hub = local.hub.clone();

        // The key ceremony: one key set, imported by the hub, handed to the TSP.
        let key_set = tokenhub_crypto::KeySet::generate();
        tokenhub::flows::keys::import(
            &hub.store,
            &hub.keys,
            "demo-tsp",
            &key_set.keys,
            "cli",
            hub.now_ms(),
        )
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?;

        // The TSP simulator and the wallets, real HTTP peers on loopback.
        let mut sim_config = tokenhub_sim::TspSimConfig::new(local.tsp_url(), key_set);
        sim_config.tls = Some(tokenhub_sim::SimTls::from_dir(&certs)?);
        sim_config.partial_calls = args.partial_calls;
        // The TSP enforces the rate it agreed with the hub (503 above it); the hub keeps to it.
        sim_config.misbehaviour.rate_limit = args.tsp_rate;
        let sim = tokenhub_sim::spawn(
            tokio::net::TcpListener::bind("127.0.0.1:0").await?,
            sim_config,
        )
        .await?;
        // The demo's admin key, made as an operator makes the first one: with the bootstrap token.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes())?)
            .build()?;
        let bootstrap = hub
            .bootstrap_token()
            .context("the demo sets a bootstrap token")?;
        let admin_key =
            crate::admin_keys::create_over_api(&http, &local.admin_url(), bootstrap, "demo")
                .await
                .context("creating the demo's admin key")?;
        // The wallets' provider, whose key every wallet call carries.
        let mut client = Client {
            http,
            base: local.admin_url(),
            wallet_base: local.url(),
            admin_key,
            wallet_key: String::new(),
        };
        client.register_wallet_provider("demo-wallet").await?;
        let mut fleet_config = tokenhub_sim::device::FleetConfig::new(local.url(), args.tokens);
        fleet_config.wait_seconds = 5;
        fleet_config.ca_pem = Some(ca_pem.clone());
        fleet_config.api_key = Some(tokenhub_sim::device::ApiKey(client.wallet_key.clone()));
        let fleet = Fleet::start(fleet_config).await?;

        // A PSP keeping the tokens on file, receiving their updates over mutual TLS.
        let mut requestor_config = tokenhub_sim::requestor::RequestorSimConfig::new(
            updates::API_KEY,
            vec![updates::SIGNING_SECRET.to_string()],
        );
        requestor_config.tls = Some(tokenhub_sim::SimTls::from_dir_as(&certs, "requestor")?);
        let requestor = RequestorSim::start(requestor_config).await?;
        println!(
            "token requestor over mutual TLS: {} (the hub presents its client certificate)",
            requestor.base_url()
        );

        Ok(Self {
            args,
            started,
            dir,
            local,
            hub,
            sim,
            fleet,
            requestor,
            client,
        })
    }

    /// The TSP, the issuer, profile v1 deployed, the token requestor.
    pub(super) async fn register(&self) -> anyhow::Result<()> {
        let client = &self.client;
        let ca = std::fs::read_to_string(self.dir.path().join("certs").join("ca.crt"))?;
        client
            .admin_put(
                "/admin/v1/tsps/demo-tsp",
                json!({"baseUrl": self.sim.base_url(), "rateLimitPerSecond": self.args.tsp_rate,
                       "clientCertificates": {"caPem": ca, "subject": crate::certs::TSP_SUBJECT},
                       "serverCaPem": ca}),
            )
            .await?;
        client
            .admin_put(
                &format!("/admin/v1/issuers/{ISSUER_ID}"),
                json!({"name": "Demo Bank", "tspId": "demo-tsp"}),
            )
            .await?;
        client
            .admin_put(
                &format!("/admin/v1/issuers/{ISSUER_ID}/products/classic/profiles/v1"),
                tokenhub_sim::profiles::profile_v1(),
            )
            .await?;
        client
            .admin_post(
                &format!("/admin/v1/issuers/{ISSUER_ID}/products/classic/profiles/v1/deploy"),
                json!({}),
            )
            .await?;
        client
            .admin_put(
                &format!("/admin/v1/token-requestors/{}", updates::REQUESTOR_ID),
                json!({"merchantId": updates::MERCHANT_ID, "baseUrl": self.requestor.base_url(),
                       "apiKey": updates::API_KEY, "signingSecrets": [updates::SIGNING_SECRET],
                       "serverCaPem": ca}),
            )
            .await?;
        Ok(())
    }

    /// Every wallet digitizes a card; the TSP sends the data; the hub builds and delivers the
    /// profile; the device installs it and confirms; the hub tells the TSP the token is ACTIVE.
    pub(super) async fn digitize(&self) -> anyhow::Result<Provisioned> {
        let tokens = self.args.tokens;
        let bar = progress(tokens as u64, "digitizing");
        let started = Instant::now();
        let token_ids = self.digitize_all(&bar).await?;
        bar.finish();
        let bar = progress(tokens as u64, "installing");
        // Until the hub acknowledged every SUCCESS: only then does its outbox hold the call that
        // tells the TSP the token is ACTIVE, which the payments need.
        let installed = loop {
            let status = self.fleet.status();
            bar.set_position(status.apps_installed);
            let confirmed = status.confirmed as usize >= tokens;
            if confirmed || started.elapsed() > Duration::from_secs(120) {
                break status.apps_installed as usize;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        bar.finish();
        let outbox_drained = wait_outbox_drained(&self.hub, Duration::from_secs(60)).await?;
        Ok(Provisioned {
            token_ids,
            installed,
            outbox_drained,
            time: started.elapsed(),
        })
    }

    async fn digitize_all(&self, bar: &indicatif::ProgressBar) -> anyhow::Result<Vec<String>> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let client = &self.client;
        stream::iter(self.fleet.device_ids().iter().enumerate())
            .map(|(i, device_id)| async move {
                let answer = client
                    .wallet_post(
                        "/wallet/v1/digitizations",
                        json!({"issuerId": ISSUER_ID, "productId": "classic", "deviceId": device_id,
                               "walletCardRefId": format!("card-{i:06}"),
                               "tokenRequestorId": updates::REQUESTOR_ID,
                               "card": {"lastDigits": format!("{:04}", i % 10_000), "expiryDate": "0928",
                                        "artId": "art-classic"}}),
                    )
                    .await?;
                bar.inc(1);
                answer["tokenId"]
                    .as_str()
                    .map(str::to_string)
                    .context("the digitization answer has no tokenId")
            })
            .buffer_unordered(self.args.concurrency.max(1))
            .try_collect()
            .await
    }

    /// Every device pays; then one replays its last transaction, which the TSP must decline.
    pub(super) async fn pay(&self, token_ids: &[String]) -> anyhow::Result<Paid> {
        let bar = progress(self.args.tokens as u64, "paying");
        bar.set_position(0);
        let txns = self
            .fleet
            .transact_all(&self.sim.sim_url(), self.args.transactions, 64)
            .await;
        bar.set_position(txns.tokens as u64);
        bar.finish();
        let replay = match token_ids.first() {
            Some(t) => self.fleet.replay_last(t, &self.sim.sim_url()).await,
            None => anyhow::bail!("no token was digitized"),
        };
        Ok(Paid { txns, replay })
    }

    /// The issuer enables transit: a new profile version, deployed with a campaign that
    /// re-personalizes every ACTIVE token; the TSP recovers each token's data, the device installs
    /// the new profile (ATC back to 0) and the TSP, told SUCCESS, resets its ATC too. Then every
    /// device pays again.
    pub(super) async fn campaign(&self, token_ids: &[String]) -> anyhow::Result<Campaigned> {
        let started = Instant::now();
        let view = self.run_campaign().await?;
        let status_drained = wait_outbox_drained(&self.hub, Duration::from_secs(60)).await?;
        let time = started.elapsed();
        let bar = progress(self.args.tokens as u64, "paying");
        let txns_after = self
            .fleet
            .transact_all(&self.sim.sim_url(), self.args.transactions, 64)
            .await;
        bar.set_position(txns_after.tokens as u64);
        bar.finish();
        let mut on_v2 = 0;
        let mut atc_in_sync = 0;
        for t in token_ids {
            let app = self.fleet.app(t);
            if app.as_ref().is_some_and(|a| a.profile_version == "v2") {
                on_v2 += 1;
            }
            let tsp_atc = self.sim.token(t).and_then(|s| s.last_atc);
            if app.is_some_and(|a| Some(a.atc) == tsp_atc) {
                atc_in_sync += 1;
            }
        }
        Ok(Campaigned {
            done: view["done"].as_u64().unwrap_or(0) as usize,
            failed: view["failed"].as_u64().unwrap_or(0),
            view,
            status_drained,
            time,
            txns_after,
            on_v2,
            atc_in_sync,
        })
    }

    /// Profile v2 put and deployed with a campaign, followed to its end; the campaign's view.
    async fn run_campaign(&self) -> anyhow::Result<serde_json::Value> {
        let client = &self.client;
        client
            .admin_put(
                &format!("/admin/v1/issuers/{ISSUER_ID}/products/classic/profiles/v2"),
                tokenhub_sim::profiles::profile_v2(),
            )
            .await?;
        let deployed = client
            .admin_post(
                &format!("/admin/v1/issuers/{ISSUER_ID}/products/classic/profiles/v2/deploy"),
                json!({"campaign": {"ratePerSecond": self.args.campaign_rate, "maxInFlight": 256}}),
            )
            .await?;
        let campaign_id = deployed["campaignId"]
            .as_str()
            .context("no campaignId")?
            .to_string();
        println!(
            "campaign {campaign_id}: profile v2 (transit) to {} token(s)",
            deployed["total"]
        );
        let campaign_url = format!("{}/admin/v1/campaigns/{campaign_id}", client.base);
        crate::campaign::watch_campaign(&client.http, &campaign_url, &client.admin_key).await?;
        client
            .get_admin(&format!("/admin/v1/campaigns/{campaign_id}"))
            .await
    }

    /// The TSP changes tokens; the requestor keeps up; the devices of deleted tokens remove them.
    pub(super) async fn updates(&self, token_ids: &[String]) -> anyhow::Result<Updated> {
        println!(
            "token updates: the TSP extends expiries, changes last digits, suspends, resumes, deletes"
        );
        let report =
            updates::run(&self.hub, &self.sim, &self.requestor, ISSUER_ID, token_ids).await?;
        let removals_wanted = report.deleted as u64;
        let removals_until = Instant::now() + Duration::from_secs(30);
        while self.fleet.status().removals < removals_wanted && Instant::now() < removals_until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Updated {
            report,
            removals_wanted,
        })
    }

    /// A merchant's PSP tokenizes cards on file, pays, follows the TSP's renewals.
    pub(super) async fn merchant(&self) -> anyhow::Result<Merchanted> {
        merchant::run(merchant::Stage {
            client: &self.client,
            sim: &self.sim,
            certs: &self.dir.path().join("certs"),
            tsp_id: "demo-tsp",
            cards: self.args.merchant_cards,
            renewals: self.args.merchant_renewals,
        })
        .await
    }

    /// Stops everything, prints what the acts saw and checks it.
    pub(super) async fn finish(
        self,
        provisioned: Provisioned,
        paid: Paid,
        campaigned: Campaigned,
        updated: Updated,
        merchanted: Merchanted,
    ) -> anyhow::Result<()> {
        self.requestor.shutdown().await?;
        let states = self.hub.store.token_states().await?;
        // Tokens ACTIVE before the TSP's updates suspended and deleted some.
        let active = states
            .iter()
            .filter(|(s, _)| s != "PENDING_DATA" && s != "PERSONALIZING")
            .map(|(_, n)| *n)
            .sum::<i64>() as usize;
        let (parts, sealed_profiles) = self.hub.store.retained_data().await?;
        let finished = Finished {
            states,
            active,
            parts,
            sealed_profiles,
            tsp: self.sim.status(),
            fleet: self.fleet.status(),
        };
        self.fleet.shutdown().await;
        self.sim.shutdown().await?;
        self.local.stop().await?;

        let summary = Summary {
            tokens: self.args.tokens,
            transactions: self.args.transactions,
            provisioned,
            paid,
            campaigned,
            updated,
            merchanted,
            finished,
        };
        summary.print(self.started);
        if self.args.keep {
            let kept = self.dir.keep();
            println!("kept the demo folder: {}", kept.display());
        }
        summary.check()
    }
}

/// The hub's configuration: a fresh embedded database, quick retries towards the TSP and the
/// token requestor (both on loopback).
fn hub_config(db_path: &std::path::Path, certs: &std::path::Path) -> anyhow::Result<Config> {
    use tokenhub::config::{ListenerConfig, ListenerSecurity, Listeners};
    let mut config = Config::for_database(&format!("sqlite://{}", db_path.display()));
    config.listen = "127.0.0.1:0".parse()?;
    let tls = || -> anyhow::Result<ListenerConfig> {
        Ok(ListenerConfig {
            addr: "127.0.0.1:0".parse()?,
            security: ListenerSecurity::Tls {
                cert: certs.join("hub.crt"),
                key: certs.join("hub.key"),
            },
        })
    };
    config.listeners = Some(Listeners {
        tsp: tls()?,
        wallet: tls()?,
        admin: tls()?,
    });
    config.client_identity = Some((certs.join("hub-client.crt"), certs.join("hub-client.key")));
    config.admin_token = Some(format!("demo-{}", uuid::Uuid::new_v4().simple()));
    config.outbox_backoff = Duration::from_millis(200);
    // The token requestor runs on loopback; its retries are quick in a demo.
    config.notify.outbound_allow =
        tokenhub::config::parse_cidrs("127.0.0.0/8").map_err(|e| anyhow::anyhow!(e))?;
    config.notify.retry_schedule = tokenhub::config::parse_schedule("100ms,200ms,500ms,1s,2s,5s")
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(config)
}

/// Waits until no outbox call is pending (every call owed to the TSP made).
async fn wait_outbox_drained(hub: &tokenhub::Hub, timeout: Duration) -> anyhow::Result<bool> {
    let until = Instant::now() + timeout;
    loop {
        let counts = hub.store.outbox_counts().await?;
        let pending = counts
            .iter()
            .find(|(s, _)| *s == OutboxState::Pending)
            .map_or(0, |(_, n)| *n);
        let dead = counts
            .iter()
            .find(|(s, _)| *s == OutboxState::Dead)
            .map_or(0, |(_, n)| *n);
        if pending == 0 {
            return Ok(dead == 0);
        }
        if Instant::now() > until {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
