//! One device's life in the fleet: registering, long-polling, opening and installing offers,
//! removing deleted tokens, and reporting results, with retries where the hub may be busy.

use super::*;

pub(super) const REGISTER_ATTEMPTS: u32 = 8;
pub(super) const RESULT_ATTEMPTS: u32 = 5;

pub(super) async fn register_with_retries(
    http: &reqwest::Client,
    hub: &Url,
    device: &Device,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        match wallet::register(http, hub, &device.id, &device.public_key, timeout).await {
            Ok(()) => return Ok(()),
            Err(e) if e.retryable() && attempt + 1 < REGISTER_ATTEMPTS => {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("registering device {}", device.id));
            }
        }
    }
}

/// Sleeps `d`, or less if the fleet stops; `false` when it stopped.
pub(super) async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// One device's life: poll, handle what comes, repeat; obey its behaviour; stop with the fleet.
pub(super) async fn device_loop(
    inner: Arc<Inner>,
    device: Arc<Device>,
    mut stop: watch::Receiver<bool>,
    start_delay: Duration,
) {
    if !start_delay.is_zero() && !pause(start_delay, &mut stop).await {
        return;
    }
    let mut behaviour = device.behaviour.subscribe();
    let poll_timeout =
        Duration::from_secs(inner.config.wait_seconds) + inner.config.request_timeout;
    let mut failures: u32 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        if *behaviour.borrow_and_update() == Behaviour::Offline {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = behaviour.wait_for(|b| *b != Behaviour::Offline) => continue,
            }
        }
        let started = Instant::now();
        let polled = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            // Gone offline: the poll is dropped, whatever it would have brought (the hub offers
            // unconfirmed personalizations again).
            _ = behaviour.wait_for(|b| *b == Behaviour::Offline) => continue,
            polled = async {
                // Held while the answer is handled too (results are posted to the hub), so that
                // the fleet never has more than `max_concurrent_polls` requests open at the hub.
                // The semaphore is never closed, so acquiring cannot fail.
                let permit = inner.polls.acquire().await;
                let polled = wallet::poll(&inner.http, &inner.hub, &device.id, inner.config.wait_seconds, poll_timeout).await;
                (permit, polled)
            } => polled,
        };
        let (_permit, polled) = polled;
        match polled {
            Ok(offers) => {
                failures = 0;
                let empty = offers.is_empty();
                for offer in offers {
                    if offer.get("action").and_then(Value::as_str) == Some("REMOVE") {
                        handle_removal(&inner, &device, &offer).await;
                    } else {
                        handle_offer(&inner, &device, offer, &mut stop).await;
                    }
                }
                // A hub that answers an empty list at once (instead of waiting) must not be
                // hammered.
                if empty
                    && started.elapsed() < Duration::from_millis(100)
                    && !pause(Duration::from_millis(500), &mut stop).await
                {
                    return;
                }
            }
            Err(e) => {
                inner.count(&inner.counters.poll_errors);
                tracing::debug!(device = %device.id, error = %e, "poll failed");
                if matches!(e, CallError::Status(s) if s == reqwest::StatusCode::NOT_FOUND) {
                    // The hub does not know this device (a fresh database?): register again.
                    let _ = wallet::register(
                        &inner.http,
                        &inner.hub,
                        &device.id,
                        &device.public_key,
                        inner.config.request_timeout,
                    )
                    .await;
                }
                if !pause(backoff(failures), &mut stop).await {
                    return;
                }
                failures = failures.saturating_add(1);
            }
        }
    }
}

/// Why an offer was not installed.
pub(super) enum Refusal {
    Decrypt(&'static str),
    Check(String),
}

impl Refusal {
    fn reason(&self) -> String {
        match self {
            Self::Decrypt(why) => format!("the profile does not decrypt: {why}"),
            Self::Check(why) => format!("the profile fails its checks: {why}"),
        }
    }
}

/// Reads one offer: its fields, then opens and checks the profile.
pub(super) fn open_offer(
    device: &Device,
    offer: Value,
) -> Result<(Offer, String, PaymentProfile), Refusal> {
    let offer: Offer = serde_json::from_value(offer).map_err(|_| {
        Refusal::Check("the offer lacks a field or has one of the wrong type".into())
    })?;
    let version = match &offer.profile_version {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(Refusal::Check("profileVersion is not a version".into())),
    };
    let enc = URL_SAFE_NO_PAD
        .decode(&offer.profile.enc)
        .map_err(|_| Refusal::Decrypt("enc is not base64url without padding"))?;
    let ciphertext = URL_SAFE_NO_PAD
        .decode(&offer.profile.ciphertext)
        .map_err(|_| Refusal::Decrypt("ciphertext is not base64url without padding"))?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc)
        .map_err(|_| Refusal::Decrypt("enc is not an X25519 public key"))?;
    let plaintext = Zeroizing::new(
        hpke::single_shot_open::<Aead, Kdf, Kem>(
            &hpke::OpModeR::Base,
            &device.secret,
            &enc,
            PROFILE_HPKE_INFO,
            &ciphertext,
            offer.personalization_id.as_bytes(),
        )
        .map_err(|_| Refusal::Decrypt("not sealed to this device for this personalization"))?,
    );
    let profile = profile::check(&plaintext).map_err(|e| Refusal::Check(e.to_string()))?;
    Ok((offer, version, profile))
}

/// A deleted token: the application goes, and the hub is told (it lists the removal until then).
pub(super) async fn handle_removal(inner: &Inner, device: &Device, item: &Value) {
    let Some(token_id) = item.get("tokenId").and_then(Value::as_str) else {
        inner.count(&inner.counters.unusable_offers);
        return;
    };
    let removed = {
        let mut apps = inner.apps();
        match apps.get(token_id) {
            Some(app) if app.device_id == device.id => apps.remove(token_id).is_some(),
            _ => false,
        }
    };
    if removed {
        tracing::debug!(device = %device.id, %token_id, "application removed: the token was deleted");
    }
    match wallet::confirm_removal(
        &inner.http,
        &inner.hub,
        &device.id,
        token_id,
        inner.config.request_timeout,
    )
    .await
    {
        Ok(()) => inner.count(&inner.counters.removals),
        Err(e) => {
            tracing::debug!(device = %device.id, %token_id, error = %e, "removal not confirmed; the hub will list it again")
        }
    }
}

pub(super) async fn handle_offer(
    inner: &Inner,
    device: &Device,
    offer: Value,
    stop: &mut watch::Receiver<bool>,
) {
    inner.count(&inner.counters.received);
    let personalization_id = match offer.get("personalizationId") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => {
            inner.count(&inner.counters.unusable_offers);
            tracing::warn!(device = %device.id, "an offer without a personalizationId was ignored");
            return;
        }
    };
    let opened = open_offer(device, offer);
    let behaviour = *device.behaviour.borrow();
    let mut installed = None;
    let body = match (opened, behaviour) {
        (Err(refusal), _) => {
            match refusal {
                Refusal::Decrypt(_) => inner.count(&inner.counters.decrypt_errors),
                Refusal::Check(_) => inner.count(&inner.counters.check_errors),
            }
            let reason = refusal.reason();
            tracing::warn!(device = %device.id, %personalization_id, %reason, "profile refused");
            serde_json::json!({"status": "FAILURE", "reason": reason})
        }
        (Ok(_), Behaviour::ReportFailure) => {
            serde_json::json!({"status": "FAILURE", "reason": SIMULATED_FAILURE_REASON})
        }
        // Like an application that dies before it finishes: nothing installed, nothing said.
        (Ok(_), Behaviour::NeverConfirm) => {
            tracing::debug!(device = %device.id, %personalization_id, "never confirms: offer dropped");
            return;
        }
        (Ok((offer, version, profile)), Behaviour::Normal | Behaviour::Offline) => {
            installed = Some(offer.token_id.clone());
            install(
                inner,
                device,
                offer.token_id,
                personalization_id.clone(),
                version,
                profile,
            );
            serde_json::json!({"status": "SUCCESS"})
        }
    };
    if behaviour == Behaviour::NeverConfirm {
        // Not even a refusal.
        return;
    }
    report(
        inner,
        device,
        &personalization_id,
        installed.as_deref(),
        &body,
        stop,
    )
    .await;
}

/// Installs a fresh application (ATC 0) for the token, unless this very personalization is
/// already installed: then the hub is only hearing the confirmation again.
pub(super) fn install(
    inner: &Inner,
    device: &Device,
    token_id: String,
    personalization_id: String,
    profile_version: String,
    profile: PaymentProfile,
) {
    let mut apps = inner.apps();
    if apps
        .get(&token_id)
        .is_some_and(|a| a.personalization_id == personalization_id && a.device_id == device.id)
    {
        return;
    }
    tracing::debug!(device = %device.id, %token_id, %personalization_id, %profile_version, "application installed");
    apps.insert(
        token_id,
        App {
            device_id: device.id.clone(),
            personalization_id,
            profile_version,
            cmk_ac: profile.cmk_ac,
            atc: 0,
            acknowledged: false,
            last4: profile.last4,
            psn: profile.psn,
            par: profile.par,
        },
    );
    drop(apps);
    inner.count(&inner.counters.installs);
}

/// Posts the result, retrying what may succeed later. `installed` names the token whose
/// application a SUCCESS confirms.
pub(super) async fn report(
    inner: &Inner,
    device: &Device,
    personalization_id: &str,
    installed: Option<&str>,
    body: &Value,
    stop: &mut watch::Receiver<bool>,
) {
    for attempt in 0..RESULT_ATTEMPTS {
        let posted = wallet::post_result(
            &inner.http,
            &inner.hub,
            personalization_id,
            body,
            inner.config.request_timeout,
        )
        .await;
        match posted {
            Ok(()) => {
                let counter = match installed {
                    None => &inner.counters.failures_reported,
                    Some(token_id) => {
                        let first = inner
                            .apps()
                            .get_mut(token_id)
                            .filter(|a| a.personalization_id == personalization_id)
                            .is_none_or(|a| !std::mem::replace(&mut a.acknowledged, true));
                        if first {
                            &inner.counters.confirmed
                        } else {
                            &inner.counters.reconfirmed
                        }
                    }
                };
                inner.count(counter);
                return;
            }
            Err(e) if e.retryable() && attempt + 1 < RESULT_ATTEMPTS => {
                if !pause(backoff(attempt), stop).await {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(device = %device.id, %personalization_id, error = %e, "result not acknowledged");
                break;
            }
        }
    }
    inner.count(&inner.counters.result_errors);
}
