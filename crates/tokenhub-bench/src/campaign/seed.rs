//! Seeding (not measured): the hub's catalogue through the admin API, then the ACTIVE tokens and
//! the fingerprints a personalization leaves behind, straight into the store.

use super::{CampaignArgs, ISSUER_ID, PRODUCT_ID, SEED_BATCH, TSP_ID};

/// The wallet provider whose devices the bench's are, and whose API key they call with.
const WALLET_PROVIDER: &str = "bench-wallet";
use crate::bootstrap::{import_key_set, in_process, Admin};
use anyhow::{ensure, Context};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::json;
use std::sync::Arc;
use tokenhub::app::LocalHub;
use tokenhub::domain::perso::{self, Operation};
use tokenhub::domain::{ProfileDefinition, TokenState};
use tokenhub::keys::TokenData;
use tokenhub::store::tokens::TokenRow;
use tokenhub::Config;
use tokenhub_sim::device::light::LightDevices;
use tokenhub_sim::tsp::elements::SimKeys;
use tokenhub_sim::{DerivedTokens, TspSimHandle};

/// Seeds the hub's database (timed, not measured); the database's size after, in MB, and the
/// wallet provider's API key.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn seed_hub(
    args: &CampaignArgs,
    database_url: &str,
    master_key: &str,
    admin_token: &str,
    key_set: &tokenhub_crypto::KeySet,
    sim: &TspSimHandle,
    derived: &DerivedTokens,
    devices: &Arc<LightDevices>,
) -> anyhow::Result<(f64, String)> {
    let seeding = std::time::Instant::now();
    let mut config = Config::for_database(database_url);
    config.listen = "127.0.0.1:0".parse()?;
    config.admin_token = Some(admin_token.to_string());
    config.master_key = Some(master_key.to_string());
    // The simulators listen on http:// loopback.
    config.outbound.allow_plain_http = true;
    // The requestor simulator (when there is one) listens on loopback too.
    config.notify.outbound_allow =
        tokenhub::config::parse_cidrs("127.0.0.0/8").map_err(|e| anyhow::anyhow!(e))?;
    let local = in_process(config).await?;
    let seeded = async {
        let wallet_key = register(args, &local, key_set, sim).await?;
        insert_tokens(args, &local.hub, key_set, derived, devices).await?;
        anyhow::Ok(wallet_key)
    }
    .await;
    local.stop().await?;
    let wallet_key = seeded?;
    let db_mb = crate::bootstrap::database_mb(database_url).await;
    println!(
        "seeded {} token(s) in {:.1} s (database {db_mb:.0} MB)",
        args.tokens,
        seeding.elapsed().as_secs_f64()
    );
    Ok((db_mb, wallet_key))
}

/// The key set, the TSP, the issuer, profile v1 deployed and v2 put, the wallet provider, through
/// the admin API; the provider's API key.
async fn register(
    args: &CampaignArgs,
    local: &LocalHub,
    key_set: &tokenhub_crypto::KeySet,
    sim: &TspSimHandle,
) -> anyhow::Result<String> {
    import_key_set(&local.hub, TSP_ID, key_set).await?;
    let admin = Admin {
        http: reqwest::Client::new(),
        base: local.url(),
        token: crate::bootstrap::admin_key(&local.hub.store).await?,
    };
    use reqwest::Method;
    admin
        .send(
            Method::PUT,
            &format!("/admin/v1/tsps/{TSP_ID}"),
            json!({"baseUrl": sim.base_url(), "rateLimitPerSecond": args.tsp_rate}),
        )
        .await?;
    admin
        .send(
            Method::PUT,
            &format!("/admin/v1/issuers/{ISSUER_ID}"),
            json!({"name": "Campaign Bench Bank", "tspId": TSP_ID}),
        )
        .await?;
    let product = format!("/admin/v1/issuers/{ISSUER_ID}/products/{PRODUCT_ID}/profiles");
    admin
        .send(
            Method::PUT,
            &format!("{product}/v1"),
            tokenhub_sim::profiles::profile_v1(),
        )
        .await?;
    admin
        .send(Method::POST, &format!("{product}/v1/deploy"), json!({}))
        .await?;
    admin
        .send(
            Method::PUT,
            &format!("{product}/v2"),
            tokenhub_sim::profiles::profile_v2(),
        )
        .await?;
    if let Some(base_url) = &args.requestor_url {
        use crate::notifications::{REQUESTOR, SECRET};
        admin
            .send(
                Method::PUT,
                &format!("/admin/v1/token-requestors/{REQUESTOR}"),
                json!({"merchantId": "CHAOS-MERCHANT", "baseUrl": base_url,
                       "apiKey": "bench-key", "signingSecrets": [SECRET], "maxInFlight": 64}),
            )
            .await?;
    }
    let provider = format!("/admin/v1/wallet-providers/{WALLET_PROVIDER}");
    admin
        .send(Method::PUT, &provider, json!({"name": "Bench Wallet"}))
        .await?;
    let key = admin
        .send_json(Method::POST, &format!("{provider}/api-keys"), json!({}))
        .await?;
    key["apiKey"]
        .as_str()
        .map(str::to_string)
        .context("the new key's answer has no apiKey")
}

/// One device and one ACTIVE token per index, with its fingerprints, in batched transactions;
/// checks that every token is ACTIVE.
async fn insert_tokens(
    args: &CampaignArgs,
    hub: &Arc<tokenhub::Hub>,
    key_set: &tokenhub_crypto::KeySet,
    derived: &DerivedTokens,
    devices: &Arc<LightDevices>,
) -> anyhow::Result<()> {
    let def = hub
        .profile(ISSUER_ID, PRODUCT_ID, "v1")
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?
        .context("profile v1 is not defined")?;
    let sim_keys = Arc::new(SimKeys::from_key_set(key_set)?);
    let now = hub.now_ms();
    let requestor = args
        .requestor_url
        .is_some()
        .then(|| crate::notifications::REQUESTOR.to_string());
    let batches: Vec<std::ops::Range<usize>> = (0..args.tokens)
        .step_by(SEED_BATCH)
        .map(|s| s..(s + SEED_BATCH).min(args.tokens))
        .collect();
    stream::iter(batches)
        .map(|range| {
            let (hub, derived, sim_keys, def, devices, requestor) = (
                hub.clone(),
                derived.clone(),
                sim_keys.clone(),
                def.clone(),
                devices.clone(),
                requestor.clone(),
            );
            async move {
                // The crypto on a blocking thread, so that two batches use both cores while
                // the writer stores a third.
                let h = hub.clone();
                let requestor = requestor.clone();
                let rows = tokio::task::spawn_blocking(move || {
                    range
                        .map(|i| {
                            let row = seed_row(&h, &derived, &sim_keys, &def, &devices, i, now);
                            row.map(|mut r| {
                                r.token.token_requestor_id = requestor.clone();
                                r
                            })
                        })
                        .collect::<anyhow::Result<Vec<SeedRow>>>()
                })
                .await??;
                insert_rows(&hub, rows, now).await
            }
        })
        .buffer_unordered(3)
        .try_collect::<()>()
        .await?;
    let states = hub.store.token_states().await?;
    let active = states
        .iter()
        .find(|(s, _)| s == TokenState::Active.as_str())
        .map_or(0, |(_, c)| *c);
    ensure!(
        active as usize == args.tokens,
        "{active} ACTIVE token(s) after seeding, not {}",
        args.tokens
    );
    Ok(())
}

/// One batch in one transaction: each token's device, the token, its fingerprints.
async fn insert_rows(hub: &tokenhub::Hub, rows: Vec<SeedRow>, now: i64) -> anyhow::Result<()> {
    hub.store
        .transact(move |c| {
            Box::pin(async move {
                for r in &rows {
                    c.put_device(
                        &r.token.device_id,
                        &r.public_key,
                        Some(WALLET_PROVIDER),
                        now,
                    )
                    .await?;
                    c.insert_token(&r.token).await?;
                    c.replace_token_fingerprints(&r.token.token_id, &r.fingerprints)
                        .await?;
                }
                Ok::<_, tokenhub::store::StoreError>(())
            })
        })
        .await?;
    Ok(())
}

pub(crate) struct SeedRow {
    pub(crate) token: TokenRow,
    pub(crate) public_key: String,
    pub(crate) fingerprints: Vec<(String, Vec<u8>)>,
}

/// One token as a personalization leaves it: ACTIVE on v1, no data held, the fingerprints of the
/// elements the TSP sent (computed by the hub's own code from the `/data` body the TSP simulator
/// would send).
pub(crate) fn seed_row(
    hub: &tokenhub::Hub,
    derived: &DerivedTokens,
    sim_keys: &SimKeys,
    def: &ProfileDefinition,
    devices: &LightDevices,
    index: usize,
    now: i64,
) -> anyhow::Result<SeedRow> {
    let token_id = derived.token_id(index);
    let clear = derived.clear(&token_id);
    let info = clear.token_info();
    let wire = clear.to_wire(sim_keys)?;
    let body = serde_json::to_vec(&json!({"issuerId": ISSUER_ID, "tokenPersoInfo": wire}))?;
    let submission = perso::parse_submission(&body, Operation::Data)
        .map_err(|r| anyhow::anyhow!("the TSP simulator's data does not parse: {r}"))?;
    if index % SEED_BATCH == 0 {
        hub.keys
            .check_elements(TSP_ID, def, &submission.elements)?
            .map_err(|r| anyhow::anyhow!("the TSP simulator's data is refused: {r}"))?;
    }
    let held = tokenhub::domain::data_part::encode_part(&submission.elements);
    let data_key = hub.keys.new_data_key(&token_id)?;
    let sealed = hub.keys.seal_for_token(&token_id, &data_key, &held)?;
    let fingerprints: Vec<(String, Vec<u8>)> = hub
        .keys
        .fingerprints(
            TokenData {
                tsp_id: TSP_ID,
                token_id: &token_id,
                data_key: &data_key,
                sealed: std::slice::from_ref(&sealed),
                incoming: &[],
            },
            def,
        )
        .map_err(|e| anyhow::anyhow!("fingerprints of {token_id}: {e}"))?
        .into_iter()
        .map(|(name, fp)| (name, fp.to_vec()))
        .collect();
    ensure!(
        fingerprints.len() == tokenhub_sim::ELEMENT_NAMES.len(),
        "{} fingerprint(s) for {token_id}",
        fingerprints.len()
    );
    Ok(SeedRow {
        token: TokenRow {
            token_id: token_id.clone(),
            issuer_id: ISSUER_ID.into(),
            product_id: PRODUCT_ID.into(),
            profile_version: "v1".into(),
            device_id: device_id(index),
            wallet_card_ref_id: format!("card-{index}"),
            token_requestor_id: None,
            state: TokenState::Active,
            token_exp: Some(info.exp),
            token_last4: Some(info.last4),
            data_deadline_ms: now,
            received_elements: Vec::new(),
            correlation_id: format!("seed-{index}"),
            created_ms: now,
            updated_ms: now,
            failure_reason: None,
            recovery: None,
            card: Default::default(),
            last_update_ms: None,
        },
        public_key: devices.public_key(index).to_string(),
        fingerprints,
    })
}

pub(crate) fn device_id(index: usize) -> String {
    format!("bdev-{index:010}")
}
