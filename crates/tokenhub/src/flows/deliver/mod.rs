//! Personalization delivery: a personalization is queued when a token's data is complete
//! ([`queue_personalization`], inside that transaction); the device long-polls for it ([`poll`]),
//! which builds its profile and seals it to the device the first time it is offered, and says how
//! it went ([`settle`]); deliveries never confirmed fail ([`sweep`]).
//!
//! On the device's SUCCESS the token becomes ACTIVE, its data elements are deleted (only keyed
//! fingerprints stay) and `updateTokenState ACTIVE` goes to the TSP through the outbox. On FAILURE,
//! or when the tries run out, the token is marked failed (DELETED, with the reason) and the TSP is
//! told the same way.

mod poll;
mod profile;
mod settle;

pub use poll::{poll, DeviceWork, Offer};
pub use settle::{enqueue_state, settle, sweep, DeviceResult, SettleError};

use crate::domain::perso::ElementSizes;
use crate::domain::{Code, ProfileDefinition, Rejection};
use crate::error::Error;
use crate::hub::Hub;
use crate::keys::{PersoError, TokenData};
use crate::store::personalizations::{Kind, Personalization, PersonalizationState};
use crate::store::token_keys::DataKey;
use crate::store::tokens::TokenRow;
use crate::store::Tx;

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
    conn.insert_personalization(
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
    tsp_id: &str,
    token: &TokenRow,
    data_key: &DataKey,
    def: &ProfileDefinition,
    parts: &[Vec<u8>],
    incoming: &ElementSizes,
) -> Result<(), Error> {
    let data = TokenData {
        tsp_id,
        token_id: &token.token_id,
        data_key,
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
