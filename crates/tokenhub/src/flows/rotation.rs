//! Master-key rotation without downtime: `rotate` makes a new version (in the HSM's token or the
//! key file) and records it; new wraps use it at once on this node and within a tick of the
//! re-wrap worker on the others. The re-wrap job (one node at a time, under a
//! lease) walks the data keys, the requestors' credentials and the shared keys in key order from
//! a cursor kept in the store, so a restart resumes where it stopped; each row is written back
//! only if unchanged since it was read. When a pass finds nothing left, the older versions are
//! retired and destroyed where the hub can.

use crate::domain::admin::AuditRecord;
use crate::domain::master_key::{MasterKeyState, MasterKeyVersion, RewrapProgress};
use crate::error::Error;
use crate::keys::Keys;
use crate::store::master_keys::{Rewrap, RewrapPhase};
use crate::store::{Store, StoreError};

/// How long after a rotation began its last pass may run: every node has read the new version
/// by then (they read the versions at every tick of the re-wrap worker), so a later wrap under
/// an older version is refused by the store rather than missed.
pub const VERSION_PICKUP_MS: i64 = 5_000;

pub use crate::hub::adopt_master_keys as adopt;

/// The versions and, during a rotation, how far its re-wrapping has come.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub versions: Vec<VersionView>,
    /// The version new wraps use.
    pub current: Option<i64>,
    pub rotation: Option<RotationView>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionView {
    pub version: i64,
    pub state: String,
    pub created_ms: i64,
    pub retired_ms: Option<i64>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationView {
    pub target: i64,
    #[serde(flatten)]
    pub progress: RewrapProgress,
}

pub async fn status(store: &Store) -> Result<Status, Error> {
    let versions = store.master_key_versions().await?;
    let current = crate::domain::master_key::current(&versions);
    let rotating = versions.iter().any(|v| v.state == MasterKeyState::Retiring);
    let rotation = match (rotating, current) {
        (true, Some(target)) => Some(RotationView {
            target,
            progress: store.rewrap_progress(target).await?,
        }),
        _ => None,
    };
    Ok(Status {
        versions: versions
            .iter()
            .map(|v| VersionView {
                version: v.version,
                state: v.state.to_string(),
                created_ms: v.created_ms,
                retired_ms: v.retired_ms,
            })
            .collect(),
        current,
        rotation,
    })
}

/// Starts a rotation: a new version made and recorded, the older ones RETIRING. Refused
/// (conflict) while another rotation runs. Audited in the same transaction, as done by `actor`.
pub async fn rotate(
    store: &Store,
    keys: &Keys,
    actor: &str,
    now: i64,
) -> Result<MasterKeyVersion, Error> {
    let versions = store.master_key_versions().await?;
    if versions.iter().any(|v| v.state == MasterKeyState::Retiring) {
        return Err(Error::conflict(
            "a rotation is running: it must finish before another begins",
        ));
    }
    let next = keys.blocking(|k| k.next_version(&versions, now))?;
    let (record, actor) = (next.clone(), actor.to_string());
    let begun = store
        .transact(move |c| {
            Box::pin(async move {
                let begun = c.begin_rotation(&record, now).await?;
                let audit = AuditRecord {
                    at_ms: now,
                    actor,
                    action: "master-key.rotate".into(),
                    object_type: "master-key".into(),
                    object_id: record.version.to_string(),
                    correlation_id: uuid::Uuid::new_v4().to_string(),
                    status: if begun { 202 } else { 409 },
                };
                c.append_audit(audit).await?;
                Ok::<_, Error>(begun)
            })
        })
        .await?;
    if !begun {
        return Err(Error::conflict(
            "a rotation is running: it must finish before another begins",
        ));
    }
    let versions = store.master_key_versions().await?;
    keys.blocking(|k| k.adopt_versions(&versions))?;
    Ok(next)
}

/// What one step of the re-wrap job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No rotation is running, or another node holds it.
    Idle,
    /// Some rows re-wrapped (or a phase ended): step again.
    Progressed(i64),
    /// The last pass must wait until every node has read the new version.
    Waiting,
    /// The rotation ended: the older versions are retired.
    Finished,
}

/// One step of the re-wrap job for `node` (holding it for `lease_ms`): at most `batch` rows.
pub async fn rewrap_step(
    store: &Store,
    keys: &Keys,
    node: &str,
    batch: i64,
    lease_ms: i64,
    now: i64,
) -> Result<Step, Error> {
    let owner = node.to_string();
    let job = store
        .transact(move |c| {
            Box::pin(async move { c.claim_rewrap(&owner, now, now + lease_ms).await })
        })
        .await?;
    let Some(job) = job else {
        return Ok(Step::Idle);
    };
    match job.phase {
        RewrapPhase::DataKeys => {
            let rows = store
                .data_keys_to_rewrap(&job.cursor, job.target, batch)
                .await?;
            let done = keys.blocking(|k| {
                rows.into_iter()
                    .map(|(id, from)| {
                        let to = k.rewrap_data_key(&id, &from, job.target)?;
                        Ok((id, from, to))
                    })
                    .collect::<Result<Vec<_>, crate::keys::KeyError>>()
            })?;
            commit_batch(
                store,
                node,
                &job,
                RewrapPhase::Credentials,
                done,
                Row::DataKey,
            )
            .await
        }
        RewrapPhase::Credentials => {
            let rows = store
                .credentials_to_rewrap(&job.cursor, job.target, batch)
                .await?;
            let done = keys.blocking(|k| {
                rows.into_iter()
                    .map(|(id, from)| {
                        let to = k.rewrap_credentials(&id, &from, job.target)?;
                        Ok((id, from, to))
                    })
                    .collect::<Result<Vec<_>, crate::keys::KeyError>>()
            })?;
            commit_batch(
                store,
                node,
                &job,
                RewrapPhase::SharedKeys,
                done,
                Row::Credentials,
            )
            .await
        }
        RewrapPhase::SharedKeys => rewrap_shared(store, keys, node, &job).await,
        RewrapPhase::Final => finish(store, keys, node, &job, now).await,
    }
}

#[derive(Clone, Copy)]
enum Row {
    DataKey,
    Credentials,
}

type Rewrapped = (String, crate::domain::Wrapped, crate::domain::Wrapped);

/// Writes a batch and moves the cursor in one transaction; an empty batch ends the phase.
async fn commit_batch(
    store: &Store,
    node: &str,
    job: &Rewrap,
    next: RewrapPhase,
    done: Vec<Rewrapped>,
    row: Row,
) -> Result<Step, Error> {
    let count = done.len() as i64;
    let to = match done.last() {
        Some((id, _, _)) => Rewrap {
            cursor: id.clone(),
            ..job.clone()
        },
        None => Rewrap {
            phase: next,
            cursor: String::new(),
            ..job.clone()
        },
    };
    let node = node.to_string();
    store
        .transact(move |c| {
            Box::pin(async move {
                for (id, from, to) in &done {
                    match row {
                        Row::DataKey => c.rewrap_data_key(id, from, to).await?,
                        Row::Credentials => c.rewrap_credentials(id, from, to).await?,
                    }
                }
                if c.advance_rewrap(&node, &to, count).await? {
                    Ok(())
                } else {
                    // Another node took the job over: this batch is its to write.
                    Err(StoreError::Commit(
                        "the re-wrap lease was taken over".into(),
                    ))
                }
            })
        })
        .await?;
    Ok(Step::Progressed(count))
}

async fn rewrap_shared(
    store: &Store,
    keys: &Keys,
    node: &str,
    job: &Rewrap,
) -> Result<Step, Error> {
    let target = job.target;
    let shared: Vec<_> = store
        .shared_keys()
        .await?
        .into_iter()
        .filter(|k| k.master_version < target)
        .collect();
    let done = keys.blocking(|k| {
        shared
            .into_iter()
            .map(|from| Ok((k.rewrap_shared_key(&from, target)?, from)))
            .collect::<Result<Vec<_>, crate::keys::KeyError>>()
    })?;
    let count = done.len() as i64;
    let to = Rewrap {
        phase: RewrapPhase::Final,
        cursor: String::new(),
        ..job.clone()
    };
    let node = node.to_string();
    store
        .transact(move |c| {
            Box::pin(async move {
                for (to, from) in &done {
                    c.rewrap_shared_key(from, to).await?;
                }
                if c.advance_rewrap(&node, &to, count).await? {
                    Ok(())
                } else {
                    Err(StoreError::Commit(
                        "the re-wrap lease was taken over".into(),
                    ))
                }
            })
        })
        .await?;
    Ok(Step::Progressed(count))
}

/// The last pass: once every node has read the new version, retires the older ones if nothing
/// is wrapped under them any more (else another pass from the start), then destroys them.
async fn finish(
    store: &Store,
    keys: &Keys,
    node: &str,
    job: &Rewrap,
    now: i64,
) -> Result<Step, Error> {
    if now < job.started_ms + VERSION_PICKUP_MS {
        return Ok(Step::Waiting);
    }
    let (owner, target) = (node.to_string(), job.target);
    let finished = store
        .transact(move |c| {
            Box::pin(async move {
                let retired = c.finish_rotation(&owner, target, now).await?;
                if let Some(versions) = &retired {
                    let audit = AuditRecord {
                        at_ms: now,
                        actor: "tokenhub".into(),
                        action: "master-key.retire".into(),
                        object_type: "master-key".into(),
                        object_id: versions
                            .iter()
                            .map(i64::to_string)
                            .collect::<Vec<_>>()
                            .join(","),
                        correlation_id: uuid::Uuid::new_v4().to_string(),
                        status: 200,
                    };
                    c.append_audit(audit).await?;
                }
                Ok::<_, StoreError>(retired)
            })
        })
        .await;
    let retired = match finished {
        Ok(Some(retired)) => retired,
        Ok(None) => return Ok(Step::Idle),
        Err(StoreError::RewrapIncomplete(_)) => {
            let again = Rewrap {
                phase: RewrapPhase::DataKeys,
                cursor: String::new(),
                ..job.clone()
            };
            let node = node.to_string();
            store
                .transact(move |c| {
                    Box::pin(async move { c.advance_rewrap(&node, &again, 0).await })
                })
                .await?;
            return Ok(Step::Progressed(0));
        }
        Err(e) => return Err(e.into()),
    };
    let versions = store.master_key_versions().await?;
    keys.blocking(|k| k.adopt_versions(&versions))?;
    for version in retired {
        keys.destroy_version(version)?;
        tracing::info!(version, "master-key version retired and destroyed");
    }
    Ok(Step::Finished)
}
