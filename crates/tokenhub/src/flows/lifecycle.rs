//! The token lifecycle after personalization: updates from the TSP, the issuer's actions
//! (suspend, resume, delete; renew or replace a card), and what a deletion ends. Every change is
//! stamped with its `lastUpdateTimestamp` and reported to the token's requestor
//! ([`notifications::token_changed`]) in the same transaction.

use super::notifications;
use crate::domain::campaign::Step;
use crate::domain::lifecycle::{
    decide_issuer_action, decide_tsp_update, next_update_ms, CardInfo, Current, IssuerAction,
    TokenChange, Verdict,
};
use crate::domain::tsp_call::TspCall;
use crate::domain::{Code, CorrelationId, Rejection, TokenId, TokenState};
use crate::error::Error;
use crate::hub::Hub;
use crate::store::tokens::TokenRow;
use crate::store::StoreError;
use crate::store::Tx;

/// What became of an update from the TSP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TspUpdateOutcome {
    Applied,
    /// Not newer than what the hub holds: acknowledged, not applied.
    Ignored,
}

/// `POST /tokens/{tokenId}/updates` from the TSP: validated, applied if newer, durable before
/// the caller answers. From `caller_tsp` (`None`: any TSP, development only), another TSP's
/// issuer and token answer as unknown ones do.
pub async fn tsp_update(
    hub: &Hub,
    caller_tsp: Option<&str>,
    token_id: &TokenId,
    correlation_id: &CorrelationId,
    body: &[u8],
) -> Result<TspUpdateOutcome, Error> {
    let update = crate::domain::lifecycle::parse_tsp_update(body)?;
    tracing::Span::current().record("issuer_id", update.issuer_id.as_str());
    let now = hub.now_ms();
    let max_skew_ms = hub.config.max_update_skew.as_millis() as i64;
    let token_id = token_id.as_str().to_string();
    let correlation = correlation_id.as_str().to_string();
    // What rarely changes is read before the transaction, off the (serial) writer: whether the
    // issuer is registered, and the token's requestor (re-checked by id under the lock).
    let issuer_known = hub.issuer_of(caller_tsp, update.issuer_id.as_str()).await?;
    let caller = caller_tsp.map(str::to_string);
    let requestors = hub.requestors().await?;
    let (outcome, device) = hub
        .store
        .transact(move |c| {
            Box::pin(async move {
                let Some(token) = c.lock_token(&token_id).await? else {
                    let at = (now, max_skew_ms);
                    return cof_update(c, &caller, &token_id, &update, at, &correlation).await;
                };
                if let Some(caller) = &caller {
                    if c.issuer_tsp(&token.issuer_id).await?.as_ref() != Some(caller) {
                        return Err(Rejection::new(Code::UnknownToken, "no such token").into());
                    }
                }
                let requestor = token
                    .token_requestor_id
                    .as_ref()
                    .and_then(|r| requestors.get(r))
                    .map(|r| &**r);
                if !issuer_known {
                    return Err(Rejection::new(
                        Code::UnknownIssuer,
                        "issuerId is not a registered issuer",
                    )
                    .into());
                }
                if token.issuer_id != update.issuer_id.as_str() {
                    return Err(Rejection::new(
                        Code::UnknownIssuer,
                        "issuerId is not the token's issuer",
                    )
                    .into());
                }
                let current = Current {
                    state: token.state,
                    last_update_ms: token.last_update_ms,
                };
                if decide_tsp_update(current, &update, now, max_skew_ms)? == Verdict::Ignore {
                    return Ok((TspUpdateOutcome::Ignored, None));
                }
                let ts = update.last_update_ms;
                c.apply_token_change(&token_id, &update.change, ts, now)
                    .await?;
                let deleted = update.change.state == Some(TokenState::Deleted)
                    && token.state != TokenState::Deleted;
                if deleted {
                    end_work(c, &token, "the TSP deleted the token", now).await?;
                }
                let event = format!("TSP update applied: {}", describe(&update.change));
                c.add_token_event(&token_id, &event, &correlation, now)
                    .await?;
                let changed = token.with_change(&update.change, ts);
                notifications::queue_update(c, &changed, requestor, &correlation, now).await?;
                Ok::<_, Error>((
                    TspUpdateOutcome::Applied,
                    deleted.then_some(token.device_id),
                ))
            })
        })
        .await?;
    after_commit(hub, false, device.as_deref());
    Ok(outcome)
}

/// A TSP update of a token that is not a wallet token: perhaps a requestor's card-on-file token.
async fn cof_update(
    c: &mut Tx,
    caller: &Option<String>,
    token_id: &str,
    update: &crate::domain::lifecycle::TspUpdate,
    (now, max_skew_ms): (i64, i64),
    correlation: &str,
) -> Result<(TspUpdateOutcome, Option<String>), Error> {
    let check = |state, held| {
        let current = Current {
            state,
            last_update_ms: Some(held),
        };
        Ok(decide_tsp_update(current, update, now, max_skew_ms)? != Verdict::Ignore)
    };
    let caller = caller.as_deref();
    let applied =
        super::requestor_tokens::tsp_update(c, caller, token_id, update, check, correlation, now)
            .await?;
    match applied {
        Some(true) => Ok((TspUpdateOutcome::Applied, None)),
        Some(false) => Ok((TspUpdateOutcome::Ignored, None)),
        None => Err(Rejection::new(Code::UnknownToken, "no such token").into()),
    }
}

/// Why an issuer's action was not applied.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Internal(#[from] Error),
}

impl From<StoreError> for LifecycleError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.into())
    }
}

/// Suspends, resumes or deletes a token for its issuer: the TSP is told (`updateTokenState`,
/// through the outbox) and so is the token's requestor. Repeating an action is harmless.
/// Returns the token as it is now.
pub async fn issuer_action(
    hub: &Hub,
    token_id: &str,
    action: IssuerAction,
    reason: Option<String>,
) -> Result<TokenRow, LifecycleError> {
    let now = hub.now_ms();
    let id = token_id.to_string();
    let (row, device) = hub
        .store
        .transact(move |c| {
            Box::pin(async move {
                let Some(token) = c.lock_token(&id).await? else {
                    return Err(LifecycleError::NotFound(format!("no token {id}")));
                };
                let Some(to) =
                    decide_issuer_action(token.state, action).map_err(LifecycleError::Conflict)?
                else {
                    return Ok((token, None));
                };
                let correlation = uuid::Uuid::new_v4().to_string();
                let change = TokenChange {
                    state: Some(to),
                    ..Default::default()
                };
                let ts = next_update_ms(token.last_update_ms, now);
                c.apply_token_change(&id, &change, ts, now).await?;
                let deleted = to == TokenState::Deleted;
                if deleted {
                    end_work(c, &token, "the issuer deleted the token", now).await?;
                }
                super::deliver::enqueue_state(c, &token, to, reason.as_deref(), &correlation, now)
                    .await?;
                let event = format!(
                    "issuer {}: state {}{}",
                    action.as_str(),
                    to.as_str(),
                    reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
                c.add_token_event(&id, &event, &correlation, now).await?;
                notifications::token_changed(c, &id, Some(ts), &correlation, now).await?;
                let row = c
                    .lock_token(&id)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("token {id} is gone")))?;
                Ok::<_, LifecycleError>((row, deleted.then_some(token.device_id)))
            })
        })
        .await?;
    after_commit(hub, true, device.as_deref());
    Ok(row)
}

/// A renewed or replaced card: what changes, and what the TSP is given for it.
#[derive(Debug, Clone, Default)]
pub struct CardUpdate {
    pub card: CardInfo,
    /// `issuerCardRefId`, `newCipheredCardInfo`, `cipheredCardInfoKeyId` of `updateToken`, passed
    /// to the TSP as they are (the hub cannot read the ciphered card).
    pub issuer_card_ref_id: Option<String>,
    pub new_ciphered_card_info: Option<String>,
    pub ciphered_card_info_key_id: Option<String>,
    /// `renewed` or `replaced`, for the token's history.
    pub what: &'static str,
}

/// The issuer renewed or replaced a card: every ACTIVE or SUSPENDED token of it gets the new card
/// details, `updateToken` goes to the TSP and the requestor is told. Returns the tokens updated.
pub async fn card_update(
    hub: &Hub,
    issuer_id: &str,
    wallet_card_ref_id: &str,
    update: CardUpdate,
) -> Result<Vec<String>, LifecycleError> {
    let now = hub.now_ms();
    let issuer = issuer_id.to_string();
    let card_ref = wallet_card_ref_id.to_string();
    let updated = hub
        .store
        .transact(move |c| {
            Box::pin(async move {
                if c.issuer_tsp(&issuer).await?.is_none() {
                    return Err(LifecycleError::NotFound(format!("no issuer {issuer}")));
                }
                let tokens = c.lock_tokens_of_card(&issuer, &card_ref).await?;
                let live: Vec<TokenRow> = tokens
                    .into_iter()
                    .filter(|t| matches!(t.state, TokenState::Active | TokenState::Suspended))
                    .collect();
                if live.is_empty() {
                    return Err(LifecycleError::NotFound(format!(
                        "card {card_ref} of issuer {issuer} has no ACTIVE or SUSPENDED token"
                    )));
                }
                let correlation = uuid::Uuid::new_v4().to_string();
                let change = TokenChange {
                    card: update.card.clone(),
                    ..Default::default()
                };
                let mut body = serde_json::json!({ "issuerId": issuer });
                for (field, value) in [
                    ("issuerCardRefId", &update.issuer_card_ref_id),
                    ("newCipheredCardInfo", &update.new_ciphered_card_info),
                    ("cipheredCardInfoKeyId", &update.ciphered_card_info_key_id),
                ] {
                    if let Some(v) = value {
                        body[field] = serde_json::Value::String(v.clone());
                    }
                }
                let mut ids = Vec::with_capacity(live.len());
                for token in &live {
                    let ts = next_update_ms(token.last_update_ms, now);
                    c.apply_token_change(&token.token_id, &change, ts, now)
                        .await?;
                    super::tsp_calls::enqueue(
                        c,
                        token,
                        TspCall::UpdateToken,
                        &correlation,
                        &body,
                        now,
                    )
                    .await?;
                    let event = format!("issuer {} the card: {}", update.what, describe(&change));
                    c.add_token_event(&token.token_id, &event, &correlation, now)
                        .await?;
                    notifications::token_changed(c, &token.token_id, Some(ts), &correlation, now)
                        .await?;
                    ids.push(token.token_id.clone());
                }
                Ok::<_, LifecycleError>(ids)
            })
        })
        .await?;
    after_commit(hub, true, None);
    Ok(updated)
}

/// A device acknowledges that it removed a deleted token.
pub async fn removal_done(hub: &Hub, device_id: &str, token_id: &str) -> Result<bool, Error> {
    let device = device_id.to_string();
    let id = token_id.to_string();
    hub.store
        .transact(move |c| {
            Box::pin(async move {
                match c.lock_token(&id).await? {
                    Some(t) if t.device_id == device && t.state == TokenState::Deleted => {
                        c.set_removal_pending(&id, false).await?;
                        Ok::<_, Error>(true)
                    }
                    _ => Ok(false),
                }
            })
        })
        .await
}

/// What a deletion ends: the device is told to remove the token, a personalization under way is
/// failed, data held for it is deleted, an open recovery is closed (its campaign skips it).
pub(crate) async fn end_work(
    c: &mut Tx,
    token: &TokenRow,
    why: &str,
    now: i64,
) -> Result<(), Error> {
    c.set_removal_pending(&token.token_id, true).await?;
    c.fail_pending_personalizations(&token.token_id, why, now)
        .await?;
    c.delete_token_data(&token.token_id, now).await?;
    if let Some(recovery) = &token.recovery {
        c.set_recovery(&token.token_id, None, now).await?;
        if let Some(campaign) = &recovery.campaign_id {
            c.set_campaign_step(campaign, &token.token_id, Step::Skipped, Some(why), now)
                .await?;
        }
    }
    Ok(())
}

/// Wakes who has work now: the outbox when a call to the TSP was queued (an update that came
/// from the TSP queues none), the notifier, the device that must remove a token.
fn after_commit(hub: &Hub, tsp_called: bool, deleted_on_device: Option<&str>) {
    if tsp_called {
        hub.outbox_wake.notify_one();
    }
    hub.notify_wake.notify_one();
    if let Some(device) = deleted_on_device {
        hub.devices.notify(device);
    }
}

/// The change in words for the token's history (names and states only: card details are not
/// secrets, but the history need not repeat them).
fn describe(change: &TokenChange) -> String {
    let mut parts = Vec::new();
    if let Some(s) = change.state {
        parts.push(format!("state {}", s.as_str()));
    }
    for (name, set) in [
        ("tokenExpiryDate", change.token_exp.is_some()),
        ("tokenLastDigits", change.token_last4.is_some()),
        ("cardLastDigits", change.card.last_digits.is_some()),
        ("cardExpiryDate", change.card.expiry_date.is_some()),
        ("cardArtId", change.card.art_id.is_some()),
    ] {
        if set {
            parts.push(format!("new {name}"));
        }
    }
    if parts.is_empty() {
        "no field changed".into()
    } else {
        parts.join(", ")
    }
}
