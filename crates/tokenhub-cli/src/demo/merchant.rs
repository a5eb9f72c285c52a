//! The demo's merchant act: a PSP with cards on file (the requestor simulator as a merchant, on
//! the `tokenhub-receiver` library, over mutual TLS) tokenizes cards, each encrypted to the TSP's
//! key the hub publishes; pays with each (Create Transaction through the hub, authorized by the
//! TSP simulator); the TSP renews some cards (a new token PAN, new last digits) and sends the hub
//! the updates, which reach the PSP: it discards those token PANs, and its next payments fetch
//! the new ones. Every later payment must be approved, and a replayed cryptogram declined.

use super::client::Client;
use super::progress;
use anyhow::Context;
use futures::stream::{self, StreamExt};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use tokenhub_sim::requestor::{
    MerchantConfig, MerchantStats, PaymentRound, RequestorSim, RequestorSimConfig,
};
use tokenhub_sim::{AuthorizationAnswer, TspSimHandle};

/// The merchant's PSP, as registered at the hub.
pub const REQUESTOR_ID: &str = "demo-merchant";
pub const MERCHANT_ID: &str = "MERCHANT-0002";
const API_KEY: &str = "demo-merchant-api-key";
const SIGNING_SECRET: &str = "whsec_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
/// Cards tokenized per call, so that the progress bar moves.
const CHUNK: u64 = 25;

/// What the act needs of the demo.
pub(super) struct Stage<'a> {
    pub(super) client: &'a Client,
    pub(super) sim: &'a TspSimHandle,
    pub(super) certs: &'a Path,
    pub(super) tsp_id: &'a str,
    pub(super) cards: u64,
    pub(super) renewals: u64,
}

/// What the act saw.
pub(super) struct Merchanted {
    pub(super) cards: u64,
    pub(super) renewals: u64,
    /// Renewals the hub accepted (204 to the TSP's update).
    pub(super) renewals_accepted: u64,
    pub(super) first: PaymentRound,
    pub(super) later: PaymentRound,
    pub(super) replay: Option<AuthorizationAnswer>,
    pub(super) stats: MerchantStats,
    pub(super) time: Duration,
}

pub(super) async fn run(stage: Stage<'_>) -> anyhow::Result<Merchanted> {
    let started = Instant::now();
    println!(
        "merchant: a PSP tokenizes {} card(s) on file, pays, follows {} renewal(s)",
        stage.cards, stage.renewals
    );
    let psp = start_psp(&stage).await?;
    let outcome = story(&stage, &psp).await;
    let stats = psp.merchant_stats();
    psp.shutdown().await?;
    let (first, renewals_accepted, later, replay) = outcome?;
    Ok(Merchanted {
        cards: stage.cards,
        renewals: stage.renewals,
        renewals_accepted,
        first,
        later,
        replay,
        stats,
        time: started.elapsed(),
    })
}

/// The PSP's endpoint over mutual TLS, registered at the hub with an API key for the requestor
/// API; the TSP's card encryption key published.
async fn start_psp(stage: &Stage<'_>) -> anyhow::Result<RequestorSim> {
    let client = stage.client;
    let ca = std::fs::read_to_string(stage.certs.join("ca.crt"))?;
    let mut config = RequestorSimConfig::new(API_KEY, vec![SIGNING_SECRET.to_string()]);
    config.tls = Some(tokenhub_sim::SimTls::from_dir_as(stage.certs, "requestor")?);
    let psp = RequestorSim::start(config).await?;
    client
        .admin_put(
            &format!("/admin/v1/token-requestors/{REQUESTOR_ID}"),
            json!({"merchantId": MERCHANT_ID, "baseUrl": psp.base_url(), "apiKey": API_KEY,
                   "signingSecrets": [SIGNING_SECRET], "serverCaPem": ca}),
        )
        .await?;
    let key = client
        .admin_post(
            &format!("/admin/v1/token-requestors/{REQUESTOR_ID}/api-keys"),
            json!({}),
        )
        .await?;
    let key = key["apiKey"]
        .as_str()
        .context("the requestor key's answer has no apiKey")?;
    client
        .admin_put(
            &format!("/admin/v1/tsps/{}/card-encryption-key", stage.tsp_id),
            stage.sim.encryption_jwk(),
        )
        .await?;
    let mut merchant =
        MerchantConfig::new(&client.wallet_base, key, MERCHANT_ID, stage.sim.sim_url());
    merchant.ca_pem = Some(ca);
    psp.attach_merchant(merchant)?;
    Ok(psp)
}

type Story = (PaymentRound, u64, PaymentRound, Option<AuthorizationAnswer>);

async fn story(stage: &Stage<'_>, psp: &RequestorSim) -> anyhow::Result<Story> {
    let bar = progress(stage.cards, "tokenizing");
    let mut left = stage.cards;
    while left > 0 {
        let n = left.min(CHUNK);
        psp.tokenize_cards(n).await?;
        bar.inc(n);
        left -= n;
    }
    bar.finish();
    let first = psp.pay(None).await?;

    // The TSP renews cards: each token's PAN and last digits change; the hub forwards the update.
    let tokens = psp.merchant_tokens();
    let renewed = tokens.iter().take(stage.renewals as usize);
    let accepted: Vec<bool> = stream::iter(renewed)
        .map(|id| async move {
            matches!(stage.sim.renew_card_on_file(id).await, Ok(Some(a)) if a.status == 204)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let renewals_accepted = accepted.iter().filter(|a| **a).count() as u64;
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let s = psp.merchant_stats();
        if s.renewals_seen >= renewals_accepted && s.pans_discarded >= renewals_accepted {
            break;
        }
        if Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every token pays again: the renewed ones fetch their new PAN with Create Transaction.
    let later = psp.pay(None).await?;
    let replay = psp.replay_payment(None).await?.map(|(_, answer)| answer);
    Ok((first, renewals_accepted, later, replay))
}
