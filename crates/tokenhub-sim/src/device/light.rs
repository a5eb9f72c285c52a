//! A light driver of many wallets, for benchmarks: no task, no open long poll and no key pair per
//! device, so a million devices cost nothing until one has work.
//!
//! The caller decides when a device is visited (e.g. when the TSP simulator tells that the
//! device's token had its data recovered: the hub has then committed the profile for it) and
//! [`LightDevices::visit`] does what a wallet woken by a push notification does: poll the wallet
//! API (`GET /wallet/v1/devices/{deviceId}/personalizations?waitSeconds=N`), and report each
//! offer's result (`POST /wallet/v1/personalizations/{id}/result`). An offer is opened (HPKE,
//! the same suite and binding as [`crate::Fleet`]'s devices) and checked ([`profile::check`] and
//! the caller's own check) only when the caller asks, typically for a sample: a device reporting
//! `SUCCESS` without opening its profile is the benchmark's shortcut, not a wallet's behaviour.
//!
//! Devices share a small pool of X25519 key pairs derived from a seed (device `i` uses pair
//! `i % pool`): the hub seals every profile to the device's registered key as usual, and any
//! offer can be opened.

use std::time::Duration;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hpke::{Deserializable, Kem as _, Serializable};
use reqwest::Url;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::profile::{self, PaymentProfile};
use super::wallet::{self, Offer};
use super::{hub_url, Aead, Kdf, Kem, PROFILE_HPKE_INFO};

/// Attempts of one result (transport errors, 5xx, 429 are retried).
const RESULT_ATTEMPTS: u32 = 5;

struct KeyPair {
    secret: <Kem as hpke::Kem>::PrivateKey,
    public_key: String,
}

/// The driver (see the module documentation). Share it behind an `Arc`.
pub struct LightDevices {
    hub: Url,
    http: reqwest::Client,
    pairs: Vec<KeyPair>,
    request_timeout: Duration,
}

/// An offer opened and checked.
pub struct OpenedProfile {
    pub token_id: String,
    pub personalization_id: String,
    pub profile_version: String,
    pub profile: PaymentProfile,
}

/// A caller's check of an opened profile: `Err(reason)` makes the device report FAILURE.
pub type ProfileCheck<'a> = &'a (dyn Fn(&OpenedProfile) -> Result<(), String> + Send + Sync);

/// What one visit did.
#[derive(Debug, Default)]
pub struct Visit {
    /// Polls made (an empty answer is polled again, up to the visit's limit).
    pub polls: u32,
    /// Token ids whose personalization was confirmed (`SUCCESS` acknowledged by the hub).
    pub confirmed: Vec<String>,
    /// Every offer's token id and personalization id, as offered (reported or not): what
    /// tells a profile offered twice.
    pub offered: Vec<(String, String)>,
    /// Offers opened and checked (a subset of `confirmed`).
    pub opened: usize,
    /// Offers reported `FAILURE`: token id and reason (the profile did not open or failed a
    /// check).
    pub refused: Vec<(String, String)>,
    /// Calls that failed (poll or result, after retries), with the reason.
    pub errors: Vec<String>,
}

impl LightDevices {
    /// A driver for the hub at `hub_url` with `key_pairs` X25519 key pairs derived from `seed`.
    pub fn new(hub_url_text: &str, key_pairs: usize, seed: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(key_pairs > 0, "at least one key pair");
        let hub = hub_url(hub_url_text)?;
        crate::tsp::ensure_crypto_provider();
        let request_timeout = Duration::from_secs(10);
        let http =
            wallet::client(request_timeout, None, None).context("building the HTTP client")?;
        let pairs = (0..key_pairs)
            .map(|i| {
                let mut ikm = Zeroizing::new(seed.to_vec());
                ikm.extend_from_slice(b"/light-device/");
                ikm.extend_from_slice(&(i as u64).to_be_bytes());
                let (secret, public) = Kem::derive_keypair(&ikm);
                KeyPair {
                    secret,
                    public_key: URL_SAFE_NO_PAD.encode(public.to_bytes()),
                }
            })
            .collect();
        Ok(Self {
            hub,
            http,
            pairs,
            request_timeout,
        })
    }

    /// Every wallet call carries `api_key`, the wallet provider's.
    pub fn with_api_key(mut self, api_key: &str) -> anyhow::Result<Self> {
        self.http = wallet::client(self.request_timeout, Some(api_key), None)
            .context("building the HTTP client")?;
        Ok(self)
    }

    /// The public key (base64url, no padding) device `device_index` registers.
    pub fn public_key(&self, device_index: usize) -> &str {
        &self.pairs[device_index % self.pairs.len()].public_key
    }

    /// Visits a device that has work: polls (each poll waiting up to `wait_seconds`, at most
    /// `max_polls` polls until something is offered), then reports each offer: with `check`,
    /// the offer is opened, checked by [`profile::check`] and by `check`, and reported `SUCCESS`
    /// or `FAILURE`; without, reported `SUCCESS` unopened.
    pub async fn visit(
        &self,
        device_id: &str,
        device_index: usize,
        wait_seconds: u64,
        max_polls: u32,
        check: Option<ProfileCheck<'_>>,
    ) -> Visit {
        let mut visit = Visit::default();
        let offers = loop {
            visit.polls += 1;
            let polled = wallet::poll(
                &self.http,
                &self.hub,
                device_id,
                wait_seconds,
                self.request_timeout + Duration::from_secs(wait_seconds),
            )
            .await;
            match polled {
                Ok(items) if !items.is_empty() => break items,
                Ok(_) if visit.polls < max_polls => continue,
                Ok(_) => {
                    visit.errors.push(format!(
                        "device {device_id}: nothing offered after {} poll(s)",
                        visit.polls
                    ));
                    return visit;
                }
                Err(e) if e.retryable() && visit.polls < max_polls => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    visit
                        .errors
                        .push(format!("device {device_id}: poll failed: {e}"));
                    return visit;
                }
            }
        };
        for item in offers {
            if item.get("action").and_then(Value::as_str) == Some("REMOVE") {
                continue;
            }
            let offer: Offer = match serde_json::from_value(item) {
                Ok(o) => o,
                Err(_) => {
                    visit
                        .errors
                        .push(format!("device {device_id}: an offer lacks a field"));
                    continue;
                }
            };
            visit
                .offered
                .push((offer.token_id.clone(), offer.personalization_id.clone()));
            let verdict = match check {
                None => Ok(()),
                Some(check) => {
                    let pair = &self.pairs[device_index % self.pairs.len()];
                    open(pair, &offer).and_then(|opened| {
                        visit.opened += 1;
                        check(&opened)
                    })
                }
            };
            let body = match &verdict {
                Ok(()) => json!({"status": "SUCCESS"}),
                Err(reason) => json!({"status": "FAILURE", "reason": reason}),
            };
            match self.report(&offer.personalization_id, &body).await {
                Ok(()) => match verdict {
                    Ok(()) => visit.confirmed.push(offer.token_id),
                    Err(reason) => visit.refused.push((offer.token_id, reason)),
                },
                Err(e) => visit.errors.push(format!(
                    "personalization {}: result not recorded: {e}",
                    offer.personalization_id
                )),
            }
        }
        visit
    }

    async fn report(&self, personalization_id: &str, body: &Value) -> Result<(), String> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match wallet::post_result(
                &self.http,
                &self.hub,
                personalization_id,
                body,
                self.request_timeout,
            )
            .await
            {
                Ok(()) => return Ok(()),
                Err(e) if e.retryable() && attempt < RESULT_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// Opens the offer's profile with the device's key and checks its DGIs.
fn open(pair: &KeyPair, offer: &Offer) -> Result<OpenedProfile, String> {
    let profile_version = match &offer.profile_version {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err("profileVersion is not a version".into()),
    };
    let enc = URL_SAFE_NO_PAD
        .decode(&offer.profile.enc)
        .map_err(|_| "enc is not base64url without padding".to_string())?;
    let ciphertext = URL_SAFE_NO_PAD
        .decode(&offer.profile.ciphertext)
        .map_err(|_| "ciphertext is not base64url without padding".to_string())?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc)
        .map_err(|_| "enc is not an X25519 public key".to_string())?;
    let plaintext = Zeroizing::new(
        hpke::single_shot_open::<Aead, Kdf, Kem>(
            &hpke::OpModeR::Base,
            &pair.secret,
            &enc,
            PROFILE_HPKE_INFO,
            &ciphertext,
            offer.personalization_id.as_bytes(),
        )
        .map_err(|_| "the profile does not open with this device's key".to_string())?,
    );
    let profile = profile::check(&plaintext).map_err(|e| format!("the profile fails: {e}"))?;
    Ok(OpenedProfile {
        token_id: offer.token_id.clone(),
        personalization_id: offer.personalization_id.clone(),
        profile_version,
        profile,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_pairs_are_derived_from_the_seed_and_shared_round_robin() {
        let a = LightDevices::new("http://127.0.0.1:1", 3, b"seed").unwrap();
        let b = LightDevices::new("http://127.0.0.1:1", 3, b"seed").unwrap();
        let c = LightDevices::new("http://127.0.0.1:1", 3, b"other").unwrap();
        assert_eq!(a.public_key(0), b.public_key(0));
        assert_ne!(a.public_key(0), c.public_key(0));
        assert_ne!(a.public_key(0), a.public_key(1));
        assert_eq!(a.public_key(1), a.public_key(4));
        assert_eq!(URL_SAFE_NO_PAD.decode(a.public_key(2)).unwrap().len(), 32);
        assert!(LightDevices::new("http://127.0.0.1:1", 0, b"seed").is_err());
    }

    #[test]
    fn an_offer_sealed_to_the_device_opens_and_one_for_another_does_not() {
        let devices = LightDevices::new("http://127.0.0.1:1", 2, b"seed").unwrap();
        // A profile the device simulator accepts: cmk_ac in 8001, a record 0101 with track 2.
        let dgi = |id: u16, value: &[u8]| {
            let mut out = id.to_be_bytes().to_vec();
            out.push(value.len() as u8);
            out.extend_from_slice(value);
            out
        };
        let mut record = vec![0x57, 18];
        record.extend_from_slice(&hex::decode("5555440000000018D291220112345678901F").unwrap());
        let mut template = vec![0x70, record.len() as u8];
        template.extend_from_slice(&record);
        let mut plaintext = dgi(0x8001, &[7u8; 16]);
        plaintext.extend(dgi(0x0101, &template));
        let seal = |public_b64: &str, pid: &str| {
            let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(
                &URL_SAFE_NO_PAD.decode(public_b64).unwrap(),
            )
            .unwrap();
            let (enc, ct) = hpke::single_shot_seal::<Aead, Kdf, Kem, _>(
                &hpke::OpModeS::Base,
                &pk,
                PROFILE_HPKE_INFO,
                &plaintext,
                pid.as_bytes(),
                &mut rand::rngs::OsRng,
            )
            .unwrap();
            serde_json::from_value::<Offer>(json!({
                "personalizationId": pid, "tokenId": "T1", "profileVersion": "v2",
                "profile": {"enc": URL_SAFE_NO_PAD.encode(enc.to_bytes()),
                            "ciphertext": URL_SAFE_NO_PAD.encode(ct)}
            }))
            .unwrap()
        };
        let offer = seal(devices.public_key(0), "prs_1");
        let opened = open(&devices.pairs[0], &offer).unwrap();
        assert_eq!(opened.profile_version, "v2");
        assert_eq!(*opened.profile.cmk_ac, [7u8; 16]);
        assert_eq!(opened.profile.dgis, vec![0x8001, 0x0101]);
        assert!(open(&devices.pairs[1], &offer).is_err(), "another key");
        let mut moved = seal(devices.public_key(0), "prs_1");
        moved.personalization_id = "prs_2".into();
        assert!(open(&devices.pairs[0], &moved).is_err(), "bound to its id");
    }
}
