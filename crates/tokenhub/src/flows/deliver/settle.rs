//! The device's result, and the personalizations it never confirmed: the token's data goes, the
//! token's state follows, and the TSP and the token's requestor are told.

use crate::domain::tsp_call::TspCall;
use crate::domain::TokenState;
use crate::error::Error;
use crate::hub::Hub;
use crate::store::personalizations::{Kind, Personalization, PersonalizationState};
use crate::store::tokens::TokenRow;
use crate::store::{StoreError, Tx};
use crate::telemetry::metrics::{self, PersoEvent};

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

/// Applies the device's result, sent by `provider_id`. Repeating the same result is harmless. A
/// personalization of a device of another provider is [`SettleError::NotFound`], as a missing one.
pub async fn settle(
    hub: &Hub,
    provider_id: &str,
    personalization_id: &str,
    result: DeviceResult,
) -> Result<(), SettleError> {
    let now = hub.now_ms();
    let pid = personalization_id.to_string();
    let provider = provider_id.to_string();
    let confirmed = matches!(result, DeviceResult::Success);
    let settled = hub
        .store
        .transact(move |c| {
            Box::pin(async move {
                // Tokens before personalizations, on every path (a deletion holds the token and
                // fails its personalizations).
                let Some(token_id) = c.personalization_token(&pid).await? else {
                    return Err(SettleError::NotFound);
                };
                c.lock_token(&token_id).await?;
                let Some(p) = c.lock_personalization(&pid).await? else {
                    return Err(SettleError::NotFound);
                };
                if c.device_provider(&p.device_id).await?.as_deref() != Some(provider.as_str()) {
                    return Err(SettleError::NotFound);
                }
                match (p.state, &result) {
                    (PersonalizationState::Confirmed, DeviceResult::Success)
                    | (PersonalizationState::Failed, DeviceResult::Failure(_)) => return Ok(None),
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
                Ok(Some(p.created_ms))
            })
        })
        .await?;
    if let Some(queued_ms) = settled {
        if confirmed {
            let waited = u64::try_from(now - queued_ms).unwrap_or(0);
            metrics::personalization_confirmed(std::time::Duration::from_millis(waited));
            metrics::personalizations(PersoEvent::Confirmed, 1);
        } else {
            metrics::personalizations(PersoEvent::Failed, 1);
        }
        hub.outbox_wake.notify_one();
        hub.notify_wake.notify_one();
    }
    Ok(())
}

/// Settles a personalization with the device's outcome: the sealed profile and the token's data
/// go; a first personalization makes the token ACTIVE (or failed, DELETED) and the TSP is told; a
/// re-personalization ends as `reperso` says. The caller holds the token's lock (taken before the
/// personalization's).
pub(super) async fn conclude(
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
    c.settle_personalization(&p.personalization_id, state, outcome.err(), now)
        .await?;
    let token = c.lock_token(&p.token_id).await?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "token {} of {} is gone",
            p.token_id, p.personalization_id
        ))
    })?;
    c.delete_token_data(&p.token_id, now).await?;
    c.add_token_event(&p.token_id, &event, &p.correlation_id, now)
        .await?;
    match (p.kind, outcome) {
        (Kind::Reperso, _) => crate::flows::reperso::on_device_result(c, p, outcome, now).await?,
        (Kind::Perso, _) if token.state != TokenState::Personalizing => {}
        (Kind::Perso, Ok(())) => {
            c.set_token_state(&p.token_id, TokenState::Active, now)
                .await?;
            enqueue_state(c, &token, TokenState::Active, None, &p.correlation_id, now).await?;
            crate::flows::notifications::token_changed(
                c,
                &p.token_id,
                None,
                &p.correlation_id,
                now,
            )
            .await?;
        }
        (Kind::Perso, Err(reason)) => {
            let why = format!("personalization failed: {reason}");
            c.set_token_failure(&p.token_id, TokenState::Deleted, &why, now)
                .await?;
            crate::flows::notifications::token_changed(
                c,
                &p.token_id,
                None,
                &p.correlation_id,
                now,
            )
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
    crate::flows::tsp_calls::enqueue(
        c,
        token,
        TspCall::UpdateTokenState,
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
                let mut overdue = c.overdue_personalizations(max_tries, now, 256).await?;
                // Tokens before personalizations, and tokens in the order of their ids: another
                // node's sweep or a deletion may hold some of them.
                overdue.sort_by(|a, b| a.token_id.cmp(&b.token_id));
                let mut swept = 0;
                for candidate in &overdue {
                    c.lock_token(&candidate.token_id).await?;
                    let Some(p) = c
                        .lock_personalization(&candidate.personalization_id)
                        .await?
                    else {
                        continue;
                    };
                    if !p.is_overdue(max_tries, now) {
                        continue;
                    }
                    let reason = if p.tries >= max_tries {
                        format!("not confirmed by the device after {} deliveries", p.tries)
                    } else {
                        "never fetched by the device before it expired".to_string()
                    };
                    conclude(c, &p, Err(&reason), now).await?;
                    swept += 1;
                }
                Ok::<_, Error>(swept)
            })
        })
        .await?;
    metrics::personalizations(PersoEvent::Failed, swept as u64);
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
