//! The hub's configuration as the admin API manages it: TSP connections, issuers, and the profile
//! versions of their products.

use crate::domain::campaign::Campaign;
use crate::domain::catalog::{Issuer, PutImmutable, Tsp};
use crate::domain::ProfileDefinition;
use crate::error::Error;
use crate::flows::campaign::{self, CampaignSettings};
use crate::hub::{Hub, Signal};

/// Registers or replaces a TSP connection.
/// The TSP listener trusts the TSPs as now registered from the next handshake on, on every node.
pub async fn put_tsp(hub: &Hub, tsp: Tsp) -> Result<(), Error> {
    let now = hub.now_ms();
    hub.store
        .transact(move |tx| Box::pin(async move { Ok::<_, Error>(tx.put_tsp(&tsp, now).await?) }))
        .await?;
    hub.tell_nodes(Signal::Tsps).await
}

pub async fn tsp(hub: &Hub, tsp_id: &str) -> Result<Option<Tsp>, Error> {
    Ok(hub.store.tsp(tsp_id).await?)
}

/// Every registered TSP, by id.
pub async fn tsps(hub: &Hub) -> Result<Vec<Tsp>, Error> {
    Ok(hub.store.tsps().await?)
}

pub async fn issuer(hub: &Hub, issuer_id: &str) -> Result<Option<Issuer>, Error> {
    Ok(hub.store.issuer(issuer_id).await?)
}

/// Issuers by id, a page of at most `limit` after `after`, and the next page's start if any;
/// `only`: the issuers an issuer-scoped key covers (each read by its id), else every one.
pub async fn issuers(
    hub: &Hub,
    limit: i64,
    after: Option<&str>,
    only: Option<&[String]>,
) -> Result<(Vec<Issuer>, Option<String>), Error> {
    let page = match only {
        None => hub.store.issuers_page(limit + 1, after).await?,
        Some(ids) => {
            let mut ids: Vec<&String> = ids
                .iter()
                .filter(|id| after.is_none_or(|a| id.as_str() > a))
                .collect();
            ids.sort();
            ids.dedup();
            let mut found = Vec::new();
            for id in ids {
                if found.len() as i64 > limit {
                    break;
                }
                found.extend(hub.store.issuer(id).await?);
            }
            found
        }
    };
    Ok(crate::flows::overview::paged(page, limit, |i| {
        i.issuer_id.clone()
    }))
}

/// A product's profile versions: a page of at most `limit` (version, created) after `after`,
/// where the next page starts if there is one, and the current version if one was deployed;
/// `None`: the issuer is not registered.
pub async fn profile_versions(
    hub: &Hub,
    issuer_id: &str,
    product_id: &str,
    limit: i64,
    after: Option<&str>,
) -> Result<Option<ProfileVersionsPage>, Error> {
    if hub.store.issuer(issuer_id).await?.is_none() {
        return Ok(None);
    }
    let page = hub
        .store
        .profile_versions_page(issuer_id, product_id, limit + 1, after)
        .await?;
    let (page, next) = crate::flows::overview::paged(page, limit, |(v, _)| v.clone());
    let current = hub.store.current_version(issuer_id, product_id).await?;
    Ok(Some(ProfileVersionsPage {
        versions: page,
        next,
        current,
    }))
}

/// A page of a product's profile versions.
pub struct ProfileVersionsPage {
    /// Each version and when it was defined (ms).
    pub versions: Vec<(String, i64)>,
    pub next: Option<String>,
    /// The deployed version, if any.
    pub current: Option<String>,
}

/// A profile version's stored definition (canonical JSON), if it is defined.
pub async fn profile_version(
    hub: &Hub,
    issuer_id: &str,
    product_id: &str,
    version: &str,
) -> Result<Option<String>, Error> {
    Ok(hub
        .store
        .profile_version(issuer_id, product_id, version)
        .await?)
}

/// Whether the TSP of a registered issuer is registered as one that sends parameters the contract
/// does not define (read only for a call that carries some).
pub async fn issuer_tsp_accepts_extras(hub: &Hub, issuer_id: &str) -> Result<bool, Error> {
    let Some(issuer) = hub.store.issuer(issuer_id).await? else {
        return Ok(false);
    };
    Ok(hub
        .store
        .tsp(&issuer.tsp_id)
        .await?
        .is_some_and(|t| t.accepts_extra_parameters))
}

/// The first key a profile version of `issuer_id` names as a default that the hub does not hold
/// for the issuer's TSP (the keys are re-read once first: one may have been imported by another
/// process). `None` too for an unregistered issuer, which the put refuses.
pub async fn unknown_default_key(
    hub: &Hub,
    issuer_id: &str,
    definition: &ProfileDefinition,
) -> Result<Option<String>, Error> {
    let Some(tsp_id) = hub.issuer_tsp(issuer_id).await? else {
        return Ok(None);
    };
    if definition
        .default_keys()
        .all(|k| hub.keys.knows_key(&tsp_id, k))
    {
        return Ok(None);
    }
    hub.reload_keys().await?;
    Ok(definition
        .default_keys()
        .find(|k| !hub.keys.knows_key(&tsp_id, k))
        .map(str::to_string))
}

/// Registers or replaces an issuer; its TSP must be registered.
/// Registers or updates an issuer. Without `may_bind_tsp` (an issuer administrator) only the name
/// of an existing issuer may change: the TSP an issuer is bound to decides which TSP acts on its
/// tokens, so binding it is a global administrator's decision.
pub async fn put_issuer(hub: &Hub, issuer: Issuer, may_bind_tsp: bool) -> Result<(), Error> {
    if !may_bind_tsp {
        let current = hub.store.issuer(&issuer.issuer_id).await?;
        if current.is_none_or(|c| c.tsp_id != issuer.tsp_id) {
            return Err(Error::Forbidden(
                "only an administrator binds an issuer to a TSP".into(),
            ));
        }
    }
    if hub.store.tsp(&issuer.tsp_id).await?.is_none() {
        return Err(Error::not_found(format!(
            "TSP {} is not registered",
            issuer.tsp_id
        )));
    }
    let now = hub.now_ms();
    let id = issuer.issuer_id.clone();
    hub.store
        .transact(move |tx| {
            Box::pin(async move { Ok::<_, Error>(tx.put_issuer(&issuer, now).await?) })
        })
        .await?;
    hub.tell_nodes(Signal::Issuer(id)).await
}

/// Stores a profile version (canonical JSON) of a registered issuer's product; versions are
/// immutable.
pub async fn put_profile_version(
    hub: &Hub,
    issuer_id: &str,
    product_id: &str,
    version: &str,
    definition_json: String,
) -> Result<PutImmutable, Error> {
    if hub.store.issuer(issuer_id).await?.is_none() {
        return Err(Error::not_found(format!(
            "issuer {issuer_id} is not registered"
        )));
    }
    let now = hub.now_ms();
    let (i, p, v) = (
        issuer_id.to_string(),
        product_id.to_string(),
        version.to_string(),
    );
    hub.store
        .transact(move |tx| {
            Box::pin(async move {
                Ok::<_, Error>(
                    tx.put_profile_version(&i, &p, &v, &definition_json, now)
                        .await?,
                )
            })
        })
        .await
}

/// Makes a profile version the product's current one and, with `settings`, starts a campaign
/// over the product's ACTIVE tokens in the same transaction. `None` when the version is not
/// defined.
pub async fn deploy(
    hub: &Hub,
    issuer_id: &str,
    product_id: &str,
    version: &str,
    settings: Option<CampaignSettings>,
) -> Result<Option<Option<Campaign>>, Error> {
    let now = hub.now_ms();
    let (i, p, v) = (
        issuer_id.to_string(),
        product_id.to_string(),
        version.to_string(),
    );
    hub.store
        .transact(move |tx| {
            Box::pin(async move {
                if !tx.deploy_profile_version(&i, &p, &v, now).await? {
                    return Ok::<_, Error>(None);
                }
                let campaign = match settings {
                    Some(s) => Some(campaign::create(tx, &i, &p, &v, s, now).await?),
                    None => None,
                };
                Ok(Some(campaign))
            })
        })
        .await
}

/// Registers a device and its public key (canonical base64url) for the wallet provider that
/// registers it; a device's key and provider never change.
pub async fn put_device(
    hub: &Hub,
    device_id: &str,
    public_key: String,
    provider_id: &str,
) -> Result<PutImmutable, Error> {
    let now = hub.now_ms();
    let (id, provider) = (device_id.to_string(), provider_id.to_string());
    hub.store
        .transact(move |tx| {
            Box::pin(async move {
                Ok::<_, Error>(
                    tx.put_device(&id, &public_key, Some(&provider), now)
                        .await?,
                )
            })
        })
        .await
}
