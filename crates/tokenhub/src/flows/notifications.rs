//! Token updates to token requestors (`docs/notifications.md`): whenever what a requestor is told of a
//! token changes, the token's whole current state is queued for it, in the transaction of the
//! change; `workers::notifier` delivers it.

use crate::domain::lifecycle::{format_timestamp, next_update_ms};
use crate::domain::notification::{
    Attempt, Filter, NewNotification, Notification, Requestor, RequestorState, Settle, Settlement,
};
use crate::domain::TokenState;
use crate::error::Error;
use crate::hub::Hub;
use crate::store::tokens::TokenRow;
use crate::store::{StoreError, Tx};
use crate::telemetry::metrics::{self, ClaimedWork, NotificationEvent};

/// The body of `POST {baseUrl}/notify-token-update`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenUpdateBody {
    pub token_id: String,
    pub merchant_id: String,
    /// `ACTIVE`, `SUSPENDED` or `DELETED`.
    pub token_state: String,
    pub token_last_digits: Option<String>,
    /// MMYY.
    pub token_expiry_date: Option<String>,
    pub card_last_digits: Option<String>,
    /// MMYY.
    pub card_expiry_date: Option<String>,
    pub card_art_id: Option<String>,
    /// RFC 3339, UTC, milliseconds.
    pub last_update_timestamp: String,
}

/// Records that the token changed and queues its new state for its requestor. `stamp` is the
/// change's `lastUpdateTimestamp` when it came with one (an update from the TSP, already stored);
/// without it the hub stamps the change itself. Tokens that are not yet personalized, or have no
/// registered requestor, queue nothing. Returns whether an update was queued.
pub async fn token_changed(
    c: &mut Tx,
    token_id: &str,
    stamp: Option<i64>,
    correlation_id: &str,
    now: i64,
) -> Result<bool, Error> {
    let token = c
        .lock_token(token_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("token {token_id} is gone")))?;
    let last_update_ms = match stamp {
        Some(ms) => ms,
        None => {
            let ms = next_update_ms(token.last_update_ms, now);
            c.set_token_last_update(token_id, ms).await?;
            ms
        }
    };
    if !matches!(
        token.state,
        TokenState::Active | TokenState::Suspended | TokenState::Deleted
    ) {
        return Ok(false);
    }
    let Some(requestor_id) = token.token_requestor_id.as_deref() else {
        return Ok(false);
    };
    let requestor = c.requestor(requestor_id).await?;
    let token = TokenRow {
        last_update_ms: Some(last_update_ms),
        ..token
    };
    queue_update(c, &token, requestor.as_ref(), correlation_id, now).await
}

/// Queues `token`'s state (as it is after the change, `last_update_ms` set) for `requestor`, the
/// token's requestor as the caller read it. Returns whether an update was queued.
pub async fn queue_update(
    c: &mut Tx,
    token: &TokenRow,
    requestor: Option<&Requestor>,
    correlation_id: &str,
    now: i64,
) -> Result<bool, Error> {
    let (Some(requestor), Some(last_update_ms)) = (requestor, token.last_update_ms) else {
        return Ok(false);
    };
    if !matches!(
        token.state,
        TokenState::Active | TokenState::Suspended | TokenState::Deleted
    ) {
        return Ok(false);
    }
    let body = body_of(token, &requestor.merchant_id, last_update_ms);
    queue_body(c, requestor, &body, last_update_ms, correlation_id, now).await
}

/// Queues `body`, a token's whole state as of `last_update_ms`, for `requestor`. Always queues;
/// the caller decided it is owed. Returns `true`.
pub async fn queue_body(
    c: &mut Tx,
    requestor: &Requestor,
    body: &TokenUpdateBody,
    last_update_ms: i64,
    correlation_id: &str,
    now: i64,
) -> Result<bool, Error> {
    let requestor_id = requestor.requestor_id.as_str();
    let token_id = body.token_id.as_str();
    let payload = serde_json::to_string(body).expect("the update body always serializes");
    let webhook_id = format!("tknupd_{}", uuid::Uuid::now_v7().simple());
    let superseded = c
        .enqueue_notification(
            &NewNotification {
                webhook_id: &webhook_id,
                requestor_id,
                token_id,
                correlation_id,
                payload: &payload,
                last_update_ms,
            },
            now,
        )
        .await?;
    if superseded > 0 {
        tracing::debug!(token_id, superseded, "older undelivered updates superseded");
    }
    // Counted as the transaction queues it: one rolled back afterwards counts too (rare).
    metrics::notifications(requestor_id, NotificationEvent::Queued, 1);
    Ok(true)
}

fn body_of(token: &TokenRow, merchant_id: &str, last_update_ms: i64) -> TokenUpdateBody {
    TokenUpdateBody {
        token_id: token.token_id.clone(),
        merchant_id: merchant_id.to_string(),
        token_state: token.state.as_str().to_string(),
        token_last_digits: token.token_last4.clone(),
        token_expiry_date: token.token_exp.clone(),
        card_last_digits: token.card.last_digits.clone(),
        card_expiry_date: token.card.expiry_date.clone(),
        card_art_id: token.card.art_id.clone(),
        last_update_timestamp: format_timestamp(last_update_ms),
    }
}

/// Updates as the filter picks them, newest first.
pub async fn list(hub: &Hub, filter: &Filter) -> Result<Vec<Notification>, Error> {
    Ok(hub.store.notifications(filter).await?)
}

/// One update and every attempt at it.
pub async fn get(hub: &Hub, id: i64) -> Result<Option<(Notification, Vec<Attempt>)>, Error> {
    let Some(n) = hub.store.notification(id).await? else {
        return Ok(None);
    };
    let attempts = hub.store.notification_attempts(id).await?;
    Ok(Some((n, attempts)))
}

/// Puts a dead update back in line (a new series of attempts, same `webhook-id`): `None` if
/// there is no such update, `Some(false)` if it is not dead.
pub async fn replay(hub: &Hub, id: i64) -> Result<Option<bool>, Error> {
    if hub.store.notification(id).await?.is_none() {
        return Ok(None);
    }
    let now = hub.now_ms();
    let replayed = hub
        .store
        .transact(move |tx| {
            Box::pin(async move { Ok::<_, Error>(tx.replay_notification(id, now).await?) })
        })
        .await?;
    if replayed {
        hub.notify_wake.notify_one();
    }
    Ok(Some(replayed))
}

/// Every requestor whose endpoint is enabled.
pub async fn enabled_requestors(hub: &Hub) -> Result<Vec<Requestor>, Error> {
    Ok(hub.store.enabled_requestors().await?)
}

/// When the next pending update that nobody is sending falls due, if any.
pub async fn next_due(hub: &Hub) -> Result<Option<i64>, Error> {
    Ok(hub.store.next_notification_due(hub.now_ms()).await?)
}

/// Claims, in one transaction, up to `free` due updates of each requestor for `lease_ms`.
pub async fn claim<R: AsRef<Requestor> + Clone + Send + 'static>(
    hub: &Hub,
    wanted: Vec<(R, i64)>,
    lease_ms: i64,
) -> Result<Vec<(R, Notification)>, Error> {
    let now = hub.now_ms();
    let by = hub.config.node.id.clone();
    hub.store
        .transact(move |tx| {
            Box::pin(async move {
                let mut all = Vec::new();
                for (r, free) in wanted {
                    let id = r.as_ref().requestor_id.clone();
                    for n in tx
                        .claim_notifications(&id, &by, now, lease_ms, free)
                        .await?
                    {
                        all.push((r.clone(), n));
                    }
                }
                Ok::<_, Error>(all)
            })
        })
        .await
}

/// Counts one delivery attempt to `requestor` by its outcome (a held one is not an attempt).
pub fn attempted(requestor: &str, outcome: &Settle) {
    let event = match outcome {
        Settle::Delivered => NotificationEvent::Delivered,
        Settle::Retry { .. } => NotificationEvent::Retried,
        Settle::Dead => NotificationEvent::Dead,
        Settle::Hold => return,
    };
    metrics::notifications(requestor, event, 1);
}

/// Records attempts and their outcomes, and disables the endpoints that answered 410 Gone
/// (`gone`: the requestor and when it answered). An outcome whose update was claimed again
/// since (its lease ran out) is not recorded: the newer claim records its own.
pub async fn settle(
    hub: &Hub,
    settlements: Vec<Settlement>,
    gone: Vec<(String, i64)>,
) -> Result<(), Error> {
    let lost = hub
        .store
        .transact(move |tx| {
            Box::pin(async move {
                let lost = tx.settle_notifications(&settlements).await?;
                for (requestor_id, at) in gone {
                    let why = format!("answered 410 Gone at {}", format_timestamp(at));
                    tx.set_requestor_state(&requestor_id, RequestorState::Disabled, Some(&why), at)
                        .await?;
                }
                Ok::<_, Error>(lost)
            })
        })
        .await?;
    for (id, claim_version) in &lost {
        tracing::warn!(
            notification_id = id,
            claim_version,
            "the update was claimed again after its lease ran out, or superseded: this attempt's outcome is not recorded"
        );
    }
    metrics::lost_claims(ClaimedWork::Notification, lost.len() as u64);
    Ok(())
}
