//! A device's long poll: the profiles to install (built and sealed on first offer) and the tokens
//! to remove.

use super::profile::{build, store_built, Built};
use crate::error::Error;
use crate::hub::Hub;
use crate::telemetry::metrics::{self, PersoEvent};
use std::time::Duration;

/// What a device's poll brings: profiles to install, tokens to remove.
#[derive(Debug, Clone)]
pub enum DeviceWork {
    Install(Offer),
    /// A deleted token the device must remove (listed until the device confirms the removal).
    Remove {
        token_id: String,
    },
}

/// A personalization to offer the device, its profile sealed to the device.
#[derive(Debug, Clone)]
pub struct Offer {
    pub personalization_id: String,
    pub token_id: String,
    pub profile_version: String,
    pub enc: Vec<u8>,
    pub ciphertext: Vec<u8>,
    /// What the TSP said of the token (`tokenInfo`: expiry MMYY, last digits) for the wallet to
    /// display, as the token holds it when offered.
    pub token_exp: Option<String>,
    pub token_last4: Option<String>,
}

/// The device's personalizations that may be offered now; when there are none, waits up to `wait`
/// for one to be committed.
pub async fn poll(hub: &Hub, device_id: &str, wait: Duration) -> Result<Vec<DeviceWork>, Error> {
    let signal = hub.devices.subscribe(device_id);
    let deadline = tokio::time::Instant::now() + wait;
    let result = loop {
        let (offers, removals) = hub
            .store
            .device_work(
                device_id,
                hub.config.delivery.max_tries as i64,
                hub.now_ms(),
            )
            .await?;
        let mut work: Vec<DeviceWork> = Vec::new();
        if offers {
            work.extend(
                take_offers(hub, device_id)
                    .await?
                    .into_iter()
                    .map(DeviceWork::Install),
            );
        }
        if removals {
            work.extend(
                hub.store
                    .removals_for_device(device_id)
                    .await?
                    .into_iter()
                    .map(|token_id| DeviceWork::Remove { token_id }),
            );
        }
        let now = tokio::time::Instant::now();
        if !work.is_empty() || now >= deadline {
            break Ok(work);
        }
        // Where another node may commit the personalization, its signal may be lost on the way.
        let nap = match hub.store.foreign_commits_poll() {
            Some(every) => (deadline - now).min(every),
            None => deadline - now,
        };
        let _ = tokio::time::timeout(nap, signal.notified()).await;
    };
    hub.devices.unsubscribe(device_id, signal);
    result
}

async fn take_offers(hub: &Hub, device_id: &str) -> Result<Vec<Offer>, Error> {
    let delivery = hub.config.delivery;
    let max_tries = delivery.max_tries as i64;
    // Profiles are built when their device first asks for them: sealed to the key it has now.
    let mut built = Vec::new();
    for p in hub
        .store
        .unbuilt_personalizations(device_id, max_tries, hub.now_ms())
        .await?
    {
        let b = build(hub, &p).await?;
        built.push((p, b));
    }
    let concluded = built
        .iter()
        .any(|(_, b)| matches!(b, Built::Unbuildable(_)));
    let now = hub.now_ms();
    let device = device_id.to_string();
    let taken = hub
        .store
        .transact(move |c| {
            Box::pin(async move {
                // Tokens before personalizations: storing a profile writes the token's rows, and
                // a deletion holds the token while it fails the personalization.
                let mut tokens: Vec<&str> =
                    built.iter().map(|(p, _)| p.token_id.as_str()).collect();
                tokens.sort_unstable();
                tokens.dedup();
                for token_id in tokens {
                    c.lock_token(token_id).await?;
                }
                for (p, b) in built {
                    store_built(c, &p, b, now).await?;
                }
                let window = delivery.window.as_millis() as i64;
                Ok::<_, Error>(c.take_offers(&device, max_tries, window, now).await?)
            })
        })
        .await?;
    if concluded {
        hub.outbox_wake.notify_one();
        hub.notify_wake.notify_one();
    }
    let first = taken.iter().filter(|p| p.tries <= 1).count() as u64;
    metrics::personalizations(PersoEvent::Offered, first);
    metrics::personalizations(PersoEvent::Reoffered, taken.len() as u64 - first);
    let mut offers = Vec::with_capacity(taken.len());
    for p in taken {
        let (Some(enc), Some(ciphertext)) = (p.enc, p.ciphertext) else {
            continue;
        };
        let token = hub.store.token(&p.token_id).await?;
        let (token_exp, token_last4) = token.map_or((None, None), |t| (t.token_exp, t.token_last4));
        offers.push(Offer {
            enc,
            ciphertext,
            personalization_id: p.personalization_id,
            token_id: p.token_id,
            profile_version: p.profile_version,
            token_exp,
            token_last4,
        });
    }
    Ok(offers)
}
