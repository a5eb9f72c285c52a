//! Token requestors as the admin API manages them: registration, their endpoint's state, replays
//! of their dead letters.

use crate::domain::notification::{NotificationState, Requestor, RequestorState};
use crate::error::Error;
use crate::hub::{Hub, Signal};
use crate::store::StoreError;

/// Creates or replaces a requestor (a disabled endpoint stays disabled) and returns it as stored.
pub async fn put(hub: &Hub, requestor: Requestor) -> Result<Requestor, Error> {
    let now = hub.now_ms();
    let id = requestor.requestor_id.clone();
    hub.store
        .transact(move |tx| {
            Box::pin(async move { Ok::<_, Error>(tx.put_requestor(&requestor, now).await?) })
        })
        .await?;
    hub.tell_nodes(Signal::Requestors).await?;
    hub.notify_wake.notify_one();
    hub.store.requestor(&id).await?.ok_or_else(|| {
        StoreError::Corrupt(format!("the requestor {id} just written is gone")).into()
    })
}

pub async fn get(hub: &Hub, requestor_id: &str) -> Result<Option<Requestor>, Error> {
    Ok(hub.store.requestor(requestor_id).await?)
}

/// The requestor's updates by state.
pub async fn notifications_by_state(
    hub: &Hub,
    requestor_id: &str,
) -> Result<Vec<(NotificationState, i64)>, Error> {
    Ok(hub.store.notification_counts(Some(requestor_id)).await?)
}

/// Enables the requestor's endpoint again; its waiting updates go out. Returns whether the
/// requestor exists.
pub async fn enable(hub: &Hub, requestor_id: &str) -> Result<bool, Error> {
    let now = hub.now_ms();
    let id = requestor_id.to_string();
    let found = hub
        .store
        .transact(move |tx| {
            Box::pin(async move {
                Ok::<_, Error>(
                    tx.set_requestor_state(&id, RequestorState::Enabled, None, now)
                        .await?,
                )
            })
        })
        .await?;
    if found {
        hub.notify_wake.notify_one();
    }
    Ok(found)
}

/// Replays every dead update of the requestor; `None` if there is no such requestor.
pub async fn replay_dead(hub: &Hub, requestor_id: &str) -> Result<Option<u64>, Error> {
    if hub.store.requestor(requestor_id).await?.is_none() {
        return Ok(None);
    }
    let now = hub.now_ms();
    let id = requestor_id.to_string();
    let replayed = hub
        .store
        .transact(move |tx| {
            Box::pin(async move { Ok::<_, Error>(tx.replay_dead_notifications(&id, now).await?) })
        })
        .await?;
    hub.notify_wake.notify_one();
    Ok(Some(replayed))
}
