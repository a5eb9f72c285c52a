//! Building a personalization's profile and sealing it to its device, the first time the device
//! asks for it.

use super::settle::conclude;
use crate::error::Error;
use crate::hub::Hub;
use crate::keys::{PersoError, Personalized, SealedProfile, TokenData};
use crate::store::personalizations::{Personalization, PersonalizationState};
use crate::store::{StoreError, Tx};
use base64::Engine;

/// A personalization's profile, built from the token's data parts and sealed to its device, or
/// why it cannot be built.
pub(super) enum Built {
    Sealed(Personalized),
    Unbuildable(String),
}

/// Builds the profile of a personalization not built yet, outside the store's serial write path.
/// The token's data parts cannot change meanwhile: `/data` and `/newData` are refused while a
/// personalization is pending. An error here is the hub's own (a store or key failure) and
/// fails nothing; [`Built::Unbuildable`] fails the personalization.
pub(super) async fn build(hub: &Hub, p: &Personalization) -> Result<Built, Error> {
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
    // The key first: the data it sealed goes with it, so parts read after it were sealed by it
    // (or are gone too). No key: the token's data was deleted (a deletion racing this build).
    let Some(data_key) = hub.store.data_key(&token.token_id).await? else {
        return Ok(Built::Unbuildable("the token holds no data".into()));
    };
    let parts = hub.store.data_parts(&token.token_id).await?;
    let Some(device_key) = hub.store.device_public_key(&p.device_id).await? else {
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
    let tsp_id = hub.issuer_tsp(&token.issuer_id).await?.unwrap_or_default();
    let data = TokenData {
        tsp_id: &tsp_id,
        token_id: &token.token_id,
        data_key: &data_key,
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

/// Inside a transaction that holds the token's lock: stores a built profile (with the
/// fingerprints of the elements it holds) unless another poll stored one first, or fails a
/// personalization whose profile cannot be built.
pub(super) async fn store_built(
    c: &mut Tx,
    p: &Personalization,
    built: Built,
    now: i64,
) -> Result<(), Error> {
    match built {
        Built::Sealed(Personalized {
            profile: SealedProfile { enc, ciphertext },
            fingerprints,
        }) => {
            if !c
                .set_personalization_profile(&p.personalization_id, &enc, &ciphertext, now)
                .await?
            {
                return Ok(());
            }
            let fingerprints: Vec<(String, Vec<u8>)> = fingerprints
                .into_iter()
                .map(|(n, f)| (n, f.to_vec()))
                .collect();
            c.replace_token_fingerprints(&p.token_id, &fingerprints)
                .await?;
            let event = format!(
                "profile {} built and sealed to device {} ({})",
                p.profile_version, p.device_id, p.personalization_id
            );
            c.add_token_event(&p.token_id, &event, &p.correlation_id, now)
                .await?;
        }
        Built::Unbuildable(reason) => {
            if let Some(p) = c.lock_personalization(&p.personalization_id).await? {
                if p.state == PersonalizationState::Pending && p.enc.is_none() {
                    conclude(c, &p, Err(&reason), now).await?;
                }
            }
        }
    }
    Ok(())
}
