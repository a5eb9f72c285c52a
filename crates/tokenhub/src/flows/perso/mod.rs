//! The TSP's data preparation arriving (`/data`, `/newData`): decided on what the token holds,
//! checked, sealed under the token's data key, and committed before the answer leaves. Partial
//! calls are merged; the token moves to `PERSONALIZING` once every element its profile version
//! requires is held.
//!
//! A call is decided once before its transaction, then its values are decrypted and checked, and
//! its part sealed, all outside the store's writer; the transaction reads the context again under
//! the token's lock and decides again, with no decryption.

mod apply;

use crate::domain::data_call::{self, CallNames, DataCall, Decision, TokenAtCall};
use crate::domain::perso::{self, DataSubmission, Operation};
use crate::domain::profile::ProfileDefinition;
use crate::domain::{Code, CorrelationId, Rejection, TokenId, TokenState};
use crate::error::Error;
use crate::flows::deliver;
use crate::hub::Hub;
use crate::keys::CheckedCall;
use crate::store::token_data::{CallKey, DataCallContext};
use crate::store::token_keys::DataKey;
use crate::store::tokens::{ElementNames, TokenRow};
use crate::store::StoreError;
use std::sync::Arc;

/// What a successful call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Stored; the token now holds this many elements and is in this state. When this call
    /// completed the data, `delivery` names the device a personalization was queued for.
    Stored {
        state: TokenState,
        held: usize,
        delivery: Option<String>,
    },
    /// A call with this correlation id was applied before: nothing was done again.
    Repeat,
    /// Refused, and the refusal itself was recorded (recovered data that differs: the
    /// re-personalization failed and the TSP is told so).
    Refused(Rejection),
}

/// Handles `PUT /tokens/{tokenId}/data` (`op = Data`) or `/newData` (`op = NewData`) from
/// `caller_tsp` (`None`: any TSP, development only): another TSP's issuer and token answer as
/// unknown ones do.
pub async fn submit(
    hub: &Arc<Hub>,
    caller_tsp: Option<&str>,
    token_id: &TokenId,
    correlation_id: &CorrelationId,
    body: &[u8],
    op: Operation,
) -> Result<Applied, Error> {
    let submission = perso::parse_submission(body, op)?;
    tracing::Span::current().record("issuer_id", submission.issuer_id.as_str());
    let operation = match op {
        Operation::Data => "submitTokenData",
        Operation::NewData => "submitNewTokenData",
    };
    crate::telemetry::metrics::tsp_api_elements(operation, submission.elements.len());
    match submit_parsed(hub, caller_tsp, token_id, correlation_id, submission, op).await {
        // The token's data (and key) were deleted while the call was sealed, and a new key
        // made since: the call is sealed again, under it.
        Err(Error::Store(StoreError::DataKeyChanged(_))) => {
            let submission = perso::parse_submission(body, op)?;
            submit_parsed(hub, caller_tsp, token_id, correlation_id, submission, op).await
        }
        other => other,
    }
}

async fn submit_parsed(
    hub: &Arc<Hub>,
    caller_tsp: Option<&str>,
    token_id: &TokenId,
    correlation_id: &CorrelationId,
    submission: DataSubmission,
    op: Operation,
) -> Result<Applied, Error> {
    if !hub
        .issuer_of(caller_tsp, submission.issuer_id.as_str())
        .await?
    {
        return Err(
            Rejection::new(Code::UnknownIssuer, "issuerId is not a registered issuer").into(),
        );
    }
    if !submission.extras.is_empty()
        && !crate::flows::catalog::issuer_tsp_accepts_extras(hub, submission.issuer_id.as_str())
            .await?
    {
        return Err(Rejection::format(format!(
            "unsupported non-standard parameters (in {}): the contract does not define them",
            submission.extras.join(", ")
        ))
        .into());
    }
    let names = CallNames::of(submission.elements.iter().map(|e| e.name.as_str()));
    let key = CallKey {
        token_id: token_id.as_str(),
        correlation_id: correlation_id.as_str(),
        names: &names,
        operation: op_name(op),
    };
    let Some(context) = hub.store.data_call_context(key).await? else {
        return Err(Rejection::new(Code::UnknownToken, "no such token").into());
    };
    if !hub.issuer_of(caller_tsp, &context.token.issuer_id).await? {
        return Err(Rejection::new(Code::UnknownToken, "no such token").into());
    }
    if context.token.issuer_id != submission.issuer_id.as_str() {
        return Err(
            Rejection::new(Code::UnknownIssuer, "issuerId is not the token's issuer").into(),
        );
    }
    // Decided before anything is decrypted (a recovery's values are compared in the transaction).
    match data_call::decide(
        call_of(op, &context.token),
        &at_call(&context),
        None,
        hub.now_ms(),
    ) {
        Decision::Repeat => return Ok(Applied::Repeat),
        Decision::Refuse(refusal) => return Err(refusal.into()),
        Decision::RefuseRecovery(_) | Decision::Apply => {}
    }
    let prepared = prepare(hub, &context.token, submission, names, op).await?;
    apply::run(hub, token_id, correlation_id, prepared).await
}

/// What the call is, as the token makes it: a `/newData` answers a recovery while one is open.
fn call_of(op: Operation, token: &TokenRow) -> DataCall {
    match (op, &token.recovery) {
        (Operation::Data, _) => DataCall::Data,
        (Operation::NewData, Some(_)) => DataCall::Recovery,
        (Operation::NewData, None) => DataCall::Renewal,
    }
}

fn at_call(context: &DataCallContext) -> TokenAtCall {
    let token = &context.token;
    TokenAtCall {
        snapshot: token.snapshot(),
        holds_data: !token.received_elements.is_empty(),
        prior: context.prior,
        delivery_pending: context.delivery_pending,
        recovery_deadline_ms: token.recovery.as_ref().and_then(|r| r.deadline_ms),
        recovery_asked: context.recovery_asked,
        recovery_completed: context.recovery_completed,
        fingerprints: context.fingerprints.clone(),
    }
}

/// A call checked and sealed outside the writer, with what the checks found: the stored parts
/// with which its data was found to make a profile (when it completes the data), and the
/// elements the token holds after it, from the token as read then.
struct Prepared {
    op: Operation,
    /// The TSP of the token's issuer, whose keys its values are under.
    tsp_id: String,
    submission: DataSubmission,
    names: CallNames,
    /// The call's names as it lists them, as its part records them.
    listed: ElementNames,
    version: String,
    profile: Arc<ProfileDefinition>,
    checked: CheckedCall,
    /// The data key the call was sealed under.
    data_key: DataKey,
    parts: Option<Vec<Vec<u8>>>,
    received_before: Vec<String>,
    held: ElementNames,
    completes: bool,
}

/// Checks the call's elements against the profile version (431), seals them, and, when the call
/// completes the data, checks that it makes a profile (911): in parallel with other calls rather
/// than in the store's serial write path (the transaction checks again only if the token's
/// stored parts changed meanwhile).
async fn prepare(
    hub: &Hub,
    token: &TokenRow,
    mut submission: DataSubmission,
    names: CallNames,
    op: Operation,
) -> Result<Prepared, Error> {
    // A recovery rebuilds the token with the version it was opened for.
    let version = match (op, &token.recovery) {
        (Operation::NewData, Some(r)) => r.target_version.clone(),
        _ => token.profile_version.clone(),
    };
    let profile = hub
        .profile(&token.issuer_id, &token.product_id, &version)
        .await?
        .ok_or_else(|| {
            Rejection::new(
                Code::Failed,
                "the token's profile version is not defined at the hub",
            )
        })?;
    perso::resolve_default_keys(&profile, &mut submission.elements);
    let elements = &submission.elements;
    let tsp_id = keys_of_tsp(hub, token, elements).await?;
    // A `/newData`'s values are fingerprinted here, so that a recovery's comparison with what
    // the token was personalized with needs no decryption in the transaction.
    let fingerprint = op == Operation::NewData;
    let data_key = data_key_of(hub, token).await?;
    let checked = hub.keys.check_and_seal(
        &tsp_id,
        &token.token_id,
        &data_key,
        &profile,
        elements,
        fingerprint,
    )??;
    let (held, completes) = held_after(&token.received_elements, &submission, &profile);
    let parts = if completes && checked.sealed.is_some() {
        // A token that held no element had no part stored when it was read.
        let parts = if token.received_elements.is_empty() {
            Vec::new()
        } else {
            hub.store.data_parts(&token.token_id).await?
        };
        deliver::check_builds(
            hub,
            &tsp_id,
            token,
            &data_key,
            &profile,
            &parts,
            &checked.sizes,
        )?;
        Some(parts)
    } else {
        None
    };
    Ok(Prepared {
        op,
        tsp_id,
        listed: ElementNames::of(elements.iter().map(|e| e.name.as_str())),
        submission,
        names,
        version,
        profile,
        checked,
        data_key,
        parts,
        received_before: token.received_elements.clone(),
        held,
        completes,
    })
}

/// The token's TSP, which owns the keys its elements may be under (`keyIndex` is scoped per TSP),
/// with its keys read again when the elements name one this node does not hold or the keys are
/// stale.
async fn keys_of_tsp(
    hub: &Hub,
    token: &TokenRow,
    elements: &[perso::IncomingElement],
) -> Result<String, Error> {
    let tsp_id = hub.issuer_tsp(&token.issuer_id).await?.unwrap_or_default();
    let names_a_key = elements.iter().any(|e| e.key_index.is_some());
    let unknown = elements
        .iter()
        .filter_map(|e| e.key_index.as_deref())
        .any(|k| !hub.keys.knows_key(&tsp_id, k));
    if unknown || (names_a_key && hub.keys_stale()) {
        // Rate-limited: an unknown key is otherwise a cheap refusal (431). Stale keys are read
        // again so that a retirement made elsewhere holds here too.
        hub.reload_keys_if_due().await?;
    }
    Ok(tsp_id)
}

/// The token's data key. A token whose data was deleted has none (it was destroyed with the data
/// it sealed): a new one is stored in a transaction of its own, committed before anything is
/// sealed under it, so that no reader sees data without its key (on SQLite the keyring commits
/// after the database: a key written with its first part could be missing to a reader that
/// sees the part).
async fn data_key_of(hub: &Hub, token: &TokenRow) -> Result<DataKey, Error> {
    if let Some(key) = hub.store.data_key(&token.token_id).await? {
        return Ok(key);
    }
    let key: DataKey = hub.keys.new_data_key(&token.token_id)?;
    let (id, now) = (token.token_id.clone(), hub.now_ms());
    let kept = hub
        .store
        .transact(move |c| {
            Box::pin(async move {
                c.keep_data_key(&id, &key, now).await?;
                c.data_key(&id).await
            })
        })
        .await?;
    kept.ok_or_else(|| StoreError::DataKeyChanged(token.token_id.clone()).into())
}

/// The elements a token holds after a call (those it held and the call's, sorted, once each), and
/// whether they are all the profile version requires.
fn held_after(
    received: &[String],
    submission: &DataSubmission,
    profile: &ProfileDefinition,
) -> (ElementNames, bool) {
    let mut held: Vec<&str> = received
        .iter()
        .map(String::as_str)
        .chain(submission.elements.iter().map(|e| e.name.as_str()))
        .collect();
    held.sort_unstable();
    held.dedup();
    let completes = profile.holds_every_required(&held);
    (ElementNames::of(held.iter().copied()), completes)
}

fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Data => "data",
        Operation::NewData => "newData",
    }
}
