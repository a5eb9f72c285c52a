//! Re-personalization of one token (seed 000): the hub keeps none of the TSP's data, so it asks the
//! TSP to recover it (`repersoToken`, through the outbox), checks that what comes back with
//! `/newData` is exactly what the token was personalized with (by the keyed fingerprints), rebuilds
//! the profile with the new version, delivers it, and tells the TSP how it went
//! (`submitNewTokenDataStatus`): on SUCCESS the TSP resets its ATC to 0, in step with the device.
//!
//! A `/newData` for an ACTIVE token with no recovery open is a TSP-initiated renewal: new data is
//! allowed there; the same delivery and status follow, and the fingerprints are replaced.

use crate::domain::campaign::Step;
use crate::domain::tsp_call::TspCall;
use crate::domain::{Code, Rejection, TokenState};
use crate::error::Error;
use crate::hub::Hub;
use crate::store::personalizations::Personalization;
use crate::store::tokens::{Recovery, TokenRow};
use crate::store::StoreError;
use crate::store::Tx;

/// Opens a recovery on an ACTIVE token and queues `repersoToken`. Returns `false` (and changes
/// nothing) when the token cannot be re-personalized now.
pub async fn start(
    conn: &mut Tx,
    token: &TokenRow,
    target_version: &str,
    campaign_id: Option<&str>,
    now: i64,
) -> Result<bool, Error> {
    if token.state != TokenState::Active || token.recovery.is_some() {
        return Ok(false);
    }
    // The recovery starts from nothing: parts staged by a renewal left incomplete must not count
    // toward it (they were never compared with what the token was personalized with).
    if !token.received_elements.is_empty() {
        conn.delete_token_data(&token.token_id, now).await?;
    }
    let recovery = Recovery {
        correlation_id: uuid::Uuid::new_v4().to_string(),
        target_version: target_version.to_string(),
        deadline_ms: None,
        campaign_id: campaign_id.map(str::to_string),
    };
    conn.set_recovery(&token.token_id, Some(&recovery), now)
        .await?;
    let body = serde_json::json!({"issuerId": token.issuer_id, "reason": "PROFILE_UPDATE"});
    super::tsp_calls::enqueue(
        conn,
        token,
        TspCall::RepersoToken,
        &recovery.correlation_id,
        &body,
        now,
    )
    .await?;
    conn.add_token_event(
        &token.token_id,
        &format!("re-personalization to {target_version} started: repersoToken queued"),
        &recovery.correlation_id,
        now,
    )
    .await?;
    Ok(true)
}

/// Ends the token's re-personalization: closes the recovery, deletes the recovered data, tells
/// the TSP (`submitNewTokenDataStatus`) and records the campaign step.
pub async fn finish(
    conn: &mut Tx,
    token: &TokenRow,
    correlation_id: &str,
    outcome: Result<(), &str>,
    now: i64,
) -> Result<(), Error> {
    let campaign = token.recovery.as_ref().and_then(|r| r.campaign_id.clone());
    conn.set_recovery(&token.token_id, None, now).await?;
    conn.delete_token_data(&token.token_id, now).await?;
    let body = match outcome {
        Ok(()) => serde_json::json!({"issuerId": token.issuer_id, "status": "SUCCESS"}),
        Err(_) => {
            serde_json::json!({"issuerId": token.issuer_id, "status": "FAILURE", "errorCode": 911})
        }
    };
    super::tsp_calls::enqueue(
        conn,
        token,
        TspCall::NewDataStatus,
        correlation_id,
        &body,
        now,
    )
    .await?;
    let event = match outcome {
        Ok(()) => "re-personalization done: newDataStatus SUCCESS queued".to_string(),
        Err(why) => format!("re-personalization failed: {why}; newDataStatus FAILURE queued"),
    };
    conn.add_token_event(&token.token_id, &event, correlation_id, now)
        .await?;
    if let Some(c) = campaign {
        let (step, reason) = match outcome {
            Ok(()) => (Step::Done, None),
            Err(why) => (Step::Failed, Some(why)),
        };
        conn.set_campaign_step(&c, &token.token_id, step, reason, now)
            .await?;
    }
    Ok(())
}

/// The device's result of a re-personalization.
pub async fn on_device_result(
    conn: &mut Tx,
    p: &Personalization,
    outcome: Result<(), &str>,
    now: i64,
) -> Result<(), Error> {
    let token = conn
        .lock_token(&p.token_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("token {} is gone", p.token_id)))?;
    if outcome.is_ok() {
        conn.set_token_profile_version(&p.token_id, &p.profile_version, now)
            .await?;
    }
    finish(conn, &token, &p.correlation_id, outcome, now).await
}

/// A recovered element's fingerprint differs from (or was never among) those the token was
/// personalized with: the TSP generated new data. Records the failure and returns the 431 to answer.
pub async fn refuse_recovery(
    conn: &mut Tx,
    token: &TokenRow,
    correlation_id: &str,
    element: &str,
    now: i64,
) -> Result<Rejection, Error> {
    let why = format!(
        "recovered element {element} differs from the data the token was personalized with"
    );
    finish(conn, token, correlation_id, Err(&why), now).await?;
    tracing::warn!(token_id = %token.token_id, correlation_id, element, "recovered data differs: nothing delivered");
    Ok(Rejection::new(Code::InvalidPersoData, why))
}

/// The TSP acknowledged `repersoToken`: the recovery's time to live starts.
pub async fn on_reperso_acknowledged(
    conn: &mut Tx,
    token_id: &str,
    correlation_id: &str,
    ttl_ms: i64,
    now: i64,
) -> Result<(), Error> {
    conn.start_recovery_clock(token_id, correlation_id, now + ttl_ms)
        .await?;
    Ok(())
}

/// The TSP refused `repersoToken` for good: the re-personalization fails.
pub async fn on_reperso_refused(
    conn: &mut Tx,
    token_id: &str,
    correlation_id: &str,
    why: &str,
    now: i64,
) -> Result<(), Error> {
    let Some(token) = conn.lock_token(token_id).await? else {
        return Ok(());
    };
    if token
        .recovery
        .as_ref()
        .is_some_and(|r| r.correlation_id == correlation_id)
    {
        finish(
            conn,
            &token,
            correlation_id,
            Err(&format!("the TSP refused repersoToken: {why}")),
            now,
        )
        .await?;
    }
    Ok(())
}

/// Fails the recoveries whose time to live ran out without the data (and with no delivery under
/// way). Returns how many.
pub async fn expire(hub: &Hub) -> Result<usize, Error> {
    let now = hub.now_ms();
    hub.store
        .transact(move |c| {
            Box::pin(async move {
                let mut ids = c.expired_recoveries(now, 128).await?;
                // Tokens are locked in the order of their ids, as every path that locks several.
                ids.sort_unstable();
                for id in &ids {
                    if let Some(token) = c.lock_token(id).await? {
                        if let Some(r) = token.recovery.clone() {
                            finish(
                                c,
                                &token,
                                &r.correlation_id,
                                Err("the TSP did not send the recovered data in time"),
                                now,
                            )
                            .await?;
                        }
                    }
                }
                Ok::<_, Error>(ids.len())
            })
        })
        .await
}
