//! The TSP's data preparation arriving (`/data`, `/newData`): checked, sealed under the token's data
//! key, and committed before the answer leaves. Partial calls are merged; the token moves to
//! `PERSONALIZING` once every element its profile version requires is held.

use crate::domain::perso::{self, DataSubmission, ElementSizes, Operation};
use crate::domain::profile::ProfileDefinition;
use crate::domain::token::{check_submit_data, check_submit_new_data, TokenSnapshot};
use crate::domain::tsp_call::TspCall;
use crate::domain::{Code, CorrelationId, Rejection, TokenId, TokenState};
use crate::error::Error;
use crate::flows::deliver;
use crate::flows::deliver::Target;
use crate::flows::reperso;
use crate::hub::Hub;
use crate::keys::TokenData;
use crate::store::personalizations::{self, Kind};
use crate::store::tokens::{self, DataPart, ElementNames};
use crate::store::Tx;
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

/// Handles `PUT /tokens/{tokenId}/data` (`op = Data`) or `/newData` (`op = NewData`).
pub async fn submit(
    hub: &Arc<Hub>,
    token_id: &TokenId,
    correlation_id: &CorrelationId,
    body: &[u8],
    op: Operation,
) -> Result<Applied, Error> {
    let submission = perso::parse_submission(body, op)?;
    if !hub.issuer_exists(submission.issuer_id.as_str()).await? {
        return Err(
            Rejection::new(Code::UnknownIssuer, "issuerId is not a registered issuer").into(),
        );
    }
    let Some(token) = hub.store.token(token_id.as_str()).await? else {
        return Err(Rejection::new(Code::UnknownToken, "no such token").into());
    };
    if token.issuer_id != submission.issuer_id.as_str() {
        return Err(
            Rejection::new(Code::UnknownIssuer, "issuerId is not the token's issuer").into(),
        );
    }
    let names = ElementNames::of(submission.elements.iter().map(|e| e.name.as_str()));
    if let Err(refusal) = check_state(op, &token.snapshot(), hub.now_ms()) {
        // A repeat of a call that was applied (its answer was lost) is acknowledged again.
        if is_repeat(hub, token_id, correlation_id, names, op).await? {
            return Ok(Applied::Repeat);
        }
        return Err(refusal.into());
    }
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
    if submission
        .elements
        .iter()
        .filter_map(|e| e.key_index.as_deref())
        .any(|k| !hub.keys.knows_key(k))
    {
        hub.reload_keys().await?;
    }
    let sizes = hub.keys.check_elements(&profile, &submission.elements)?;

    let sealed = if submission.elements.is_empty() {
        None
    } else {
        let clear = zeroize::Zeroizing::new(perso::encode_part(&submission.elements));
        Some(
            hub.keys
                .seal_for_token(token_id.as_str(), &token.data_key, &clear)?,
        )
    };
    // The call that completes the data checks here, in parallel with other calls rather than in
    // the store's serial write path, that the data makes a profile; the transaction checks again
    // only if the token's stored parts changed meanwhile.
    let (held, completes) = held_after(&token.received_elements, &submission, &profile);
    let parts = if completes && sealed.is_some() {
        // A token that held no element had no part stored when it was read (the transaction
        // reads the parts again, and checks again if they differ).
        let parts = if token.received_elements.is_empty() {
            Vec::new()
        } else {
            tokens::data_parts(hub.store.reader(), token_id.as_str()).await?
        };
        deliver::check_builds(hub, &token, &profile, &parts, &sizes)?;
        Some(parts)
    } else {
        None
    };
    // Shared with the transaction, so that the writer thread only reads them: they are freed
    // here, once it is done, not by the writer (a call's 40 values and names are ~100
    // allocations).
    let checked = Arc::new(Checked {
        sizes,
        parts,
        received_before: token.received_elements,
        names,
        held,
        completes,
    });
    let submission = Arc::new(submission);
    let (checked_here, submission_here) = (checked.clone(), submission.clone());
    let now = hub.now_ms();
    let token_id = token_id.clone();
    let correlation_id = correlation_id.clone();
    let context = hub.clone();
    let applied = hub
        .store
        .transact(move |conn| {
            Box::pin(async move {
                apply(
                    conn,
                    &context,
                    Target {
                        version: &version,
                        def: &profile,
                    },
                    &token_id,
                    &correlation_id,
                    op,
                    &submission,
                    sealed,
                    &checked,
                    now,
                )
                .await
            })
        })
        .await;
    drop((checked_here, submission_here));
    let applied = applied?;
    if let Applied::Stored {
        delivery: Some(device_id),
        ..
    } = &applied
    {
        hub.devices.notify(device_id);
    }
    Ok(applied)
}

fn check_state(op: Operation, token: &TokenSnapshot, now: i64) -> Result<(), Rejection> {
    match op {
        Operation::Data => check_submit_data(token, now),
        Operation::NewData => check_submit_new_data(token),
    }
}

/// Whether a call the token's state refuses repeats one that was applied (its answer was lost):
/// the same call among the data the hub holds, or, once the device confirmed and the hub deleted
/// the token's data, an accepted call of this operation under this correlation id in the token's
/// history (the TSP's retry can arrive after the device's confirmation).
async fn is_repeat(
    hub: &Hub,
    token_id: &TokenId,
    correlation_id: &CorrelationId,
    names: ElementNames,
    op: Operation,
) -> Result<bool, Error> {
    let (t, c) = (token_id.to_string(), correlation_id.to_string());
    let (applied, data_deleted) = hub
        .store
        .transact(move |conn| {
            Box::pin(async move {
                let applied = tokens::data_call_applied(conn, &t, &c, &names).await?;
                let deleted = tokens::data_parts(conn, &t).await?.is_empty();
                Ok::<_, Error>((applied, deleted))
            })
        })
        .await?;
    if applied || !data_deleted {
        return Ok(applied);
    }
    let accepted = format!("{} received:", op_name(op));
    Ok(hub
        .store
        .token_events(token_id.as_str())
        .await?
        .iter()
        .any(|e| e.correlation_id == correlation_id.as_str() && e.event.starts_with(&accepted)))
}

/// What a call's checks before its transaction found: the sizes of its elements in a profile, the
/// stored parts with which its data was found to make one (when the call completes the data), and
/// the elements the token holds after it, from the token as read then.
struct Checked {
    sizes: ElementSizes,
    parts: Option<Vec<Vec<u8>>>,
    /// The token's elements when it was read.
    received_before: Vec<String>,
    /// The call's element names, in its order.
    names: ElementNames,
    /// The token's elements after the call ([`held_after`]).
    held: ElementNames,
    /// Whether `held` has every element the profile version requires.
    completes: bool,
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

#[allow(clippy::too_many_arguments)]
async fn apply(
    conn: &mut Tx,
    hub: &Hub,
    target: Target<'_>,
    token_id: &TokenId,
    correlation_id: &CorrelationId,
    op: Operation,
    submission: &DataSubmission,
    sealed: Option<Vec<u8>>,
    checked: &Checked,
    now: i64,
) -> Result<Applied, Error> {
    let Some(token) = conn.lock_token(token_id.as_str()).await? else {
        return Err(Rejection::new(Code::UnknownToken, "no such token").into());
    };
    let names = &checked.names;
    // A token's elements are the names of its stored parts (they are written together, and
    // deleted together): a token that holds none has no part, so neither a part this call
    // repeats nor parts to read.
    let has_parts = !token.received_elements.is_empty();
    if has_parts
        && tokens::data_call_applied(conn, token_id.as_str(), correlation_id.as_str(), names)
            .await?
    {
        return Ok(Applied::Repeat);
    }
    // Checked again under the lock: another call may have moved the token since the first look.
    check_state(op, &token.snapshot(), now)?;
    let profile = target.def;
    if op == Operation::NewData {
        if conn.has_pending_personalization(token_id.as_str()).await? {
            return Err(Rejection::new(
                Code::Ongoing,
                "the token's profile is being delivered to the device",
            )
            .into());
        }
        if token.recovery.is_none()
            && conn
                .tsp_call_was_sent(
                    token_id.as_str(),
                    TspCall::RepersoToken,
                    correlation_id.as_str(),
                )
                .await?
        {
            // The recovery this data answers is over. If its data came in whole, this call is
            // the TSP's retry of one whose answer was lost (the hub stopped before it left), and
            // the recovered parts are deleted by now, so it cannot be matched part by part.
            if personalizations::built_from(
                conn,
                token_id.as_str(),
                correlation_id.as_str(),
                Kind::Reperso,
            )
            .await?
            {
                return Ok(Applied::Repeat);
            }
            // Otherwise its time to live ran out, or it failed, before the data was whole.
            return Err(Rejection::new(
                Code::Expired,
                "the time to live of the recovery this data answers has expired",
            )
            .into());
        }
        if let Some(r) = &token.recovery {
            if r.deadline_ms.is_some_and(|d| now > d) {
                return Err(Rejection::new(
                    Code::Expired,
                    "the time to live of the recovery has expired",
                )
                .into());
            }
            // The TSP must recover the existing data, never generate new data.
            if sealed.is_some() {
                let stored = personalizations::fingerprints(&mut *conn, token_id.as_str()).await?;
                let data = TokenData {
                    token_id: token_id.as_str(),
                    wrapped_data_key: &token.data_key,
                    sealed: &[],
                    incoming: &submission.elements,
                };
                let recovered = hub.keys.fingerprints(data, profile).map_err(|e| {
                    Rejection::new(
                        Code::InvalidPersoData,
                        format!("the recovered data cannot be read: {e}"),
                    )
                })?;
                if let Some(name) = recovered
                    .iter()
                    .find(|(n, fp)| stored.get(*n).is_none_or(|s| s.as_slice() != fp.as_slice()))
                    .map(|(n, _)| n.clone())
                {
                    let refusal =
                        reperso::refuse_recovery(conn, &token, &r.correlation_id, &name, now)
                            .await?;
                    return Ok(Applied::Refused(refusal));
                }
            }
        }
    }
    // What the first look found holds unless another call changed the token's elements since.
    let recomputed;
    let (held, complete) = if token.received_elements == checked.received_before {
        (&checked.held, checked.completes)
    } else {
        let (held, complete) = held_after(&token.received_elements, submission, profile);
        recomputed = held;
        (&recomputed, complete)
    };
    if complete && sealed.is_some() {
        let parts = if has_parts {
            tokens::data_parts(&mut *conn, token_id.as_str()).await?
        } else {
            Vec::new()
        };
        if checked.parts.as_ref() != Some(&parts) {
            deliver::check_builds(hub, &token, profile, &parts, &checked.sizes)?;
        }
    }
    if let Some(sealed) = &sealed {
        let part = DataPart {
            operation: op_name(op),
            correlation_id: correlation_id.as_str(),
            element_names: names,
            sealed,
        };
        tokens::append_data(conn, token_id.as_str(), &part, now).await?;
    }
    let state = match op {
        Operation::Data if complete => TokenState::Personalizing,
        _ => token.state,
    };
    // A recovery is complete when every element the token was personalized with is back.
    let complete = complete
        && match (&token.recovery, op) {
            (Some(_), Operation::NewData) => {
                let stored = personalizations::fingerprints(&mut *conn, token_id.as_str()).await?;
                stored.keys().all(|n| held.contains(n))
            }
            _ => true,
        };
    tokens::set_state_and_elements(conn, token_id.as_str(), state, held, now).await?;
    // The data is complete: a personalization is queued for the device (its profile is built
    // when the device asks for it).
    let kind = match op {
        Operation::Data => Kind::Perso,
        Operation::NewData => Kind::Reperso,
    };
    let delivery = if complete && (state == TokenState::Personalizing || op == Operation::NewData) {
        deliver::queue_personalization(
            conn,
            hub,
            &token,
            target.version,
            kind,
            correlation_id.as_str(),
            now,
        )
        .await?;
        if let Some(campaign) = token
            .recovery
            .as_ref()
            .and_then(|r| r.campaign_id.as_deref())
        {
            conn.set_campaign_step(
                campaign,
                token_id.as_str(),
                crate::domain::campaign::Step::Delivering,
                None,
                now,
            )
            .await?;
        }
        Some(token.device_id.clone())
    } else {
        None
    };
    if let Some(info) = &submission.token_info {
        let exp = info.exp.as_ref().map(|e| e.as_str());
        let last4 = info.last4.as_ref().map(|l| l.as_str());
        conn.set_token_info(token_id.as_str(), exp, last4, now)
            .await?;
        // A renewal's new expiry or last digits are news for the token's requestor.
        let changed = (exp.is_some() && exp != token.token_exp.as_deref())
            || (last4.is_some() && last4 != token.token_last4.as_deref());
        if changed {
            super::notifications::token_changed(
                conn,
                token_id.as_str(),
                None,
                correlation_id.as_str(),
                now,
            )
            .await?;
        }
    }
    let event = format!(
        "{} received: {} element(s){}",
        op_name(op),
        submission.elements.len(),
        if state != token.state {
            format!("; state {}", state.as_str())
        } else {
            String::new()
        }
    );
    conn.add_token_event(token_id.as_str(), &event, correlation_id.as_str(), now)
        .await?;
    Ok(Applied::Stored {
        state,
        held: held.len(),
        delivery,
    })
}

fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Data => "data",
        Operation::NewData => "newData",
    }
}
