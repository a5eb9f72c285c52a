//! Personalization delivery: a personalization is queued when a token's data is complete
//! ([`queue_personalization`], inside that transaction); the device long-polls for it ([`poll`]),
//! which builds its profile and seals it to the device the first time it is offered, and says how
//! it went ([`settle`]); deliveries never confirmed fail ([`sweep`]).
//!
//! On the device's SUCCESS the token becomes ACTIVE, its data elements are deleted (only keyed
//! fingerprints stay) and `updateTokenState ACTIVE` goes to the TSP through the outbox. On FAILURE,
//! or when the tries run out, the token is marked failed (DELETED, with the reason) and the TSP is
//! told the same way.

use crate::domain::perso::ElementSizes;
use crate::domain::{Code, ProfileDefinition, Rejection, TokenState};
use crate::error::Error;
use crate::hub::Hub;
use crate::keys::{PersoError, Personalized, SealedProfile, TokenData};
use crate::store::outbox;
use crate::store::personalizations::{self, Kind, Personalization, PersonalizationState};
use crate::store::tokens::{self, TokenRow};
use crate::store::Tx;
use crate::store::{catalog, StoreError};
use base64::Engine;
use std::time::Duration;

/// The profile version a personalization builds.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub version: &'a str,
    pub def: &'a ProfileDefinition,
}

/// Time-ordered (UUID v7, 74 random bits): a new id lands at the end of the primary key's index,
/// on a page the previous commits wrote too, where a random one landed on a page of its own,
/// one page more per commit (and a split of it now and then).
fn new_personalization_id() -> String {
    format!("prs_{}", uuid::Uuid::now_v7().simple())
}

/// Inside the transaction that completed the token's data: records a personalization of `kind`
/// to `version` for the token's device, to be built when the device asks for it. Returns its id.
pub async fn queue_personalization(
    conn: &mut Tx,
    hub: &Hub,
    token: &TokenRow,
    version: &str,
    kind: Kind,
    correlation_id: &str,
    now: i64,
) -> Result<String, Error> {
    let personalization_id = new_personalization_id();
    let delivery = hub.config.delivery;
    personalizations::insert(
        conn,
        &Personalization {
            personalization_id: personalization_id.clone(),
            token_id: token.token_id.clone(),
            device_id: token.device_id.clone(),
            profile_version: version.to_string(),
            kind,
            state: PersonalizationState::Pending,
            enc: None,
            ciphertext: None,
            tries: 0,
            next_offer_ms: now,
            expires_ms: now + delivery.ttl.as_millis() as i64,
            result_reason: None,
            correlation_id: correlation_id.to_string(),
            created_ms: now,
        },
        now,
    )
    .await?;
    Ok(personalization_id)
}

/// Checks that the token's data (its stored `parts`, and the elements of the call that completes
/// it, by their sizes) makes a profile of `def`: the call that completes data that cannot make
/// one is refused with 911 and nothing of it is kept, so the TSP can send values that fit.
pub fn check_builds(
    hub: &Hub,
    token: &TokenRow,
    def: &ProfileDefinition,
    parts: &[Vec<u8>],
    incoming: &ElementSizes,
) -> Result<(), Error> {
    let data = TokenData {
        token_id: &token.token_id,
        wrapped_data_key: &token.data_key,
        sealed: parts,
        incoming: &[],
    };
    hub.keys
        .check_builds(data, incoming, def)
        .map_err(|e| match e {
            PersoError::Keys(k) => Error::Keys(k),
            other => Rejection::new(
                Code::Failed,
                format!("the profile could not be built: {other}"),
            )
            .into(),
        })
}

/// A personalization's profile, built from the token's data parts and sealed to its device, or
/// why it cannot be built.
enum Built {
    Sealed(Personalized),
    Unbuildable(String),
}

/// Builds the profile of a personalization not built yet, outside the store's serial write path.
/// The token's data parts cannot change meanwhile: `/data` and `/newData` are refused while a
/// personalization is pending. An error here is the hub's own (a store or key failure) and
/// fails nothing; [`Built::Unbuildable`] fails the personalization.
async fn build(hub: &Hub, p: &Personalization) -> Result<Built, Error> {
    let token = hub.store.token(&p.token_id).await?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "token {} of {} is gone",
            p.token_id, p.personalization_id
        ))
    })?;
    let Some(def) = hub
        .profile(&token.issuer_id, &token.product_id, &p.profile_version)
        .await?
    else {
        return Ok(Built::Unbuildable(format!(
            "profile version {} is not defined at the hub",
            p.profile_version
        )));
    };
    let parts = tokens::data_parts(hub.store.reader(), &token.token_id).await?;
    let Some(device_key) = catalog::device_key(hub.store.reader(), &p.device_id).await? else {
        return Ok(Built::Unbuildable(format!(
            "device {} is gone",
            p.device_id
        )));
    };
    let Ok(device_key) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&device_key)
    else {
        return Ok(Built::Unbuildable(format!(
            "device {} has no valid public key",
            p.device_id
        )));
    };
    let data = TokenData {
        token_id: &token.token_id,
        wrapped_data_key: &token.data_key,
        sealed: &parts,
        incoming: &[],
    };
    match hub
        .keys
        .personalize(data, &def, &device_key, &p.personalization_id)
    {
        Ok(built) => Ok(Built::Sealed(built)),
        Err(PersoError::Keys(k)) => Err(Error::Keys(k)),
        Err(other) => Ok(Built::Unbuildable(format!(
            "the profile could not be built: {other}"
        ))),
    }
}

/// Inside a transaction: stores a built profile (with the fingerprints of the elements it holds)
/// unless another poll stored one first, or fails a personalization whose profile cannot be
/// built.
async fn store_built(c: &mut Tx, p: &Personalization, built: Built, now: i64) -> Result<(), Error> {
    match built {
        Built::Sealed(Personalized {
            profile: SealedProfile { enc, ciphertext },
            fingerprints,
        }) => {
            if !personalizations::set_profile(c, &p.personalization_id, &enc, &ciphertext, now)
                .await?
            {
                return Ok(());
            }
            let fingerprints: Vec<(String, Vec<u8>)> = fingerprints
                .into_iter()
                .map(|(n, f)| (n, f.to_vec()))
                .collect();
            personalizations::replace_fingerprints(c, &p.token_id, &fingerprints).await?;
            let event = format!(
                "profile {} built and sealed to device {} ({})",
                p.profile_version, p.device_id, p.personalization_id
            );
            tokens::add_event(c, &p.token_id, &event, &p.correlation_id, now).await?;
        }
        Built::Unbuildable(reason) => {
            if let Some(p) = personalizations::lock(c, &p.personalization_id).await? {
                if p.state == PersonalizationState::Pending && p.enc.is_none() {
                    conclude(c, &p, Err(&reason), now).await?;
                }
            }
        }
    }
    Ok(())
}

/// What a device's poll brings: profiles to install, tokens to remove.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum DeviceWork {
    Install(Offer),
    Remove(Removal),
}

/// A deleted token the device must remove (listed until the device confirms the removal).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Removal {
    /// `REMOVE`.
    pub action: &'static str,
    pub token_id: String,
}

/// A personalization as the device receives it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Offer {
    /// `INSTALL`.
    pub action: &'static str,
    pub personalization_id: String,
    pub token_id: String,
    pub profile_version: String,
    pub profile: OfferedProfile,
}

/// The profile, HPKE-sealed to the device (mode base, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
/// AES-256-GCM; info `tokenhub/profile/v1`; aad the personalization id). Base64url, no padding.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct OfferedProfile {
    pub enc: String,
    pub ciphertext: String,
}

/// The device's personalizations that may be offered now; when there are none, waits up to `wait`
/// for one to be committed.
pub async fn poll(hub: &Hub, device_id: &str, wait: Duration) -> Result<Vec<DeviceWork>, Error> {
    let signal = hub.devices.subscribe(device_id);
    let deadline = tokio::time::Instant::now() + wait;
    let result = loop {
        let (offers, removals) = personalizations::device_work(
            &hub.store,
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
                    .map(|token_id| {
                        DeviceWork::Remove(Removal {
                            action: "REMOVE",
                            token_id,
                        })
                    }),
            );
        }
        let now = tokio::time::Instant::now();
        if !work.is_empty() || now >= deadline {
            break Ok(work);
        }
        // Where another node may commit the personalization, its signal never reaches this one.
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
    for p in personalizations::unbuilt(&hub.store, device_id, max_tries, hub.now_ms()).await? {
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
                for (p, b) in built {
                    store_built(c, &p, b, now).await?;
                }
                let window = delivery.window.as_millis() as i64;
                Ok::<_, Error>(
                    personalizations::take_offers(c, &device, max_tries, window, now).await?,
                )
            })
        })
        .await?;
    if concluded {
        hub.outbox_wake.notify_one();
        hub.notify_wake.notify_one();
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    Ok(taken
        .into_iter()
        .filter_map(|p| {
            Some(Offer {
                profile: OfferedProfile {
                    enc: b64.encode(p.enc.as_ref()?),
                    ciphertext: b64.encode(p.ciphertext.as_ref()?),
                },
                action: "INSTALL",
                personalization_id: p.personalization_id,
                token_id: p.token_id,
                profile_version: p.profile_version,
            })
        })
        .collect())
}

/// What the device reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceResult {
    Success,
    Failure(String),
}

/// Why a result was not applied.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("no such personalization")]
    NotFound,
    #[error("the personalization was already settled as {0}")]
    Conflict(&'static str),
    #[error("the personalization was never offered to the device")]
    NotOffered,
    #[error(transparent)]
    Internal(#[from] Error),
}

impl From<StoreError> for SettleError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.into())
    }
}

/// Applies the device's result. Repeating the same result is harmless.
pub async fn settle(
    hub: &Hub,
    personalization_id: &str,
    result: DeviceResult,
) -> Result<(), SettleError> {
    let now = hub.now_ms();
    let pid = personalization_id.to_string();
    let settled = hub
        .store
        .transact(move |c| {
            Box::pin(async move {
                let Some(p) = personalizations::lock(c, &pid).await? else {
                    return Err(SettleError::NotFound);
                };
                match (p.state, &result) {
                    (PersonalizationState::Confirmed, DeviceResult::Success)
                    | (PersonalizationState::Failed, DeviceResult::Failure(_)) => return Ok(false),
                    (PersonalizationState::Confirmed, _) => {
                        return Err(SettleError::Conflict("SUCCESS"))
                    }
                    (PersonalizationState::Failed, _) => {
                        return Err(SettleError::Conflict("FAILURE"))
                    }
                    (PersonalizationState::Pending, _) if p.tries == 0 => {
                        return Err(SettleError::NotOffered)
                    }
                    (PersonalizationState::Pending, _) => {}
                }
                match result {
                    DeviceResult::Success => conclude(c, &p, Ok(()), now).await?,
                    DeviceResult::Failure(reason) => {
                        let why = format!("the device reported FAILURE: {reason}");
                        conclude(c, &p, Err(&why), now).await?
                    }
                }
                Ok(true)
            })
        })
        .await?;
    if settled {
        hub.outbox_wake.notify_one();
        hub.notify_wake.notify_one();
    }
    Ok(())
}

/// Settles a personalization with the device's outcome: the sealed profile and the token's data
/// go; a first personalization makes the token ACTIVE (or failed, DELETED) and the TSP is told; a
/// re-personalization ends as `reperso` says.
async fn conclude(
    c: &mut Tx,
    p: &Personalization,
    outcome: Result<(), &str>,
    now: i64,
) -> Result<(), Error> {
    let (state, event) = match outcome {
        Ok(()) => (
            PersonalizationState::Confirmed,
            format!(
                "device confirmed {} ({}); data elements deleted",
                p.profile_version, p.personalization_id
            ),
        ),
        Err(reason) => (
            PersonalizationState::Failed,
            format!("personalization failed: {reason}"),
        ),
    };
    personalizations::settle(c, &p.personalization_id, state, outcome.err(), now).await?;
    let token = tokens::lock_token(c, &p.token_id).await?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "token {} of {} is gone",
            p.token_id, p.personalization_id
        ))
    })?;
    tokens::delete_data(c, &p.token_id, now).await?;
    tokens::add_event(c, &p.token_id, &event, &p.correlation_id, now).await?;
    match (p.kind, outcome) {
        (Kind::Reperso, _) => crate::flows::reperso::on_device_result(c, p, outcome, now).await?,
        (Kind::Perso, _) if token.state != TokenState::Personalizing => {}
        (Kind::Perso, Ok(())) => {
            tokens::set_state(c, &p.token_id, TokenState::Active, now).await?;
            enqueue_state(c, &token, TokenState::Active, None, &p.correlation_id, now).await?;
            super::notifications::token_changed(c, &p.token_id, None, &p.correlation_id, now)
                .await?;
        }
        (Kind::Perso, Err(reason)) => {
            let why = format!("personalization failed: {reason}");
            tokens::set_failure(c, &p.token_id, TokenState::Deleted, &why, now).await?;
            super::notifications::token_changed(c, &p.token_id, None, &p.correlation_id, now)
                .await?;
            let reason = Some("personalization failed");
            enqueue_state(
                c,
                &token,
                TokenState::Deleted,
                reason,
                &p.correlation_id,
                now,
            )
            .await?;
        }
    }
    Ok(())
}

/// Queues `updateTokenState` for the token's TSP.
pub async fn enqueue_state(
    c: &mut Tx,
    token: &TokenRow,
    state: TokenState,
    reason: Option<&str>,
    correlation_id: &str,
    now: i64,
) -> Result<(), Error> {
    let mut body = serde_json::json!({"issuerId": token.issuer_id, "state": state.as_str()});
    if let Some(r) = reason {
        body["reason"] = serde_json::Value::String(r.to_string());
    }
    super::enqueue_tsp_call(
        c,
        token,
        outbox::UPDATE_TOKEN_STATE,
        correlation_id,
        &body,
        now,
    )
    .await
}

/// Fails the personalizations that ran out of tries or were never fetched. Returns how many.
pub async fn sweep(hub: &Hub) -> Result<usize, Error> {
    let now = hub.now_ms();
    let max_tries = hub.config.delivery.max_tries as i64;
    let swept = hub
        .store
        .transact(move |c| {
            Box::pin(async move {
                let overdue = personalizations::lock_overdue(c, max_tries, now, 256).await?;
                for p in &overdue {
                    let reason = if p.tries >= max_tries {
                        format!("not confirmed by the device after {} deliveries", p.tries)
                    } else {
                        "never fetched by the device before it expired".to_string()
                    };
                    conclude(c, p, Err(&reason), now).await?;
                }
                Ok::<_, Error>(overdue.len())
            })
        })
        .await?;
    if swept > 0 {
        tracing::warn!(
            personalizations = swept,
            "personalizations failed (not confirmed in time)"
        );
        hub.outbox_wake.notify_one();
        hub.notify_wake.notify_one();
    }
    Ok(swept)
}
