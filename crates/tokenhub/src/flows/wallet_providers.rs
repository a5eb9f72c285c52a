//! Wallet providers: their registration and API keys (admin API), and who a wallet API caller is
//! and what it owns (a device is its registering provider's, for good).

use crate::domain::wallet_provider::{spki_pin, ProviderKey, WalletProvider};
use crate::error::Error;
use crate::hub::Hub;
use crate::keys::wallet_keys::{self, NewApiKey};

/// Creates or replaces a provider; a certificate pin already held by another is refused.
pub async fn put(hub: &Hub, provider: WalletProvider) -> Result<(), Error> {
    let now = hub.now_ms();
    let stored = hub
        .store
        .transact(move |tx| {
            Box::pin(async move { Ok::<_, Error>(tx.put_wallet_provider(&provider, now).await?) })
        })
        .await?;
    if stored {
        Ok(())
    } else {
        Err(Error::conflict(
            "another wallet provider is registered with this client certificate pin",
        ))
    }
}

/// A provider and its keys' records.
pub async fn get(
    hub: &Hub,
    provider_id: &str,
) -> Result<Option<(WalletProvider, Vec<ProviderKey>)>, Error> {
    let Some(p) = hub.store.wallet_provider(provider_id).await? else {
        return Ok(None);
    };
    let keys = hub.store.provider_keys(provider_id).await?;
    Ok(Some((p, keys)))
}

/// Providers by id, a page of at most `limit` after `after`, and the next page's start if any.
pub async fn page(
    hub: &Hub,
    limit: i64,
    after: Option<&str>,
) -> Result<(Vec<WalletProvider>, Option<String>), Error> {
    let page = hub.store.wallet_providers_page(limit + 1, after).await?;
    Ok(crate::flows::overview::paged(page, limit, |p| {
        p.provider_id.clone()
    }))
}

/// Makes a new API key for a provider (its other keys stay valid until revoked); `None` when the
/// provider does not exist. The key is returned once and never stored in clear.
pub async fn create_key(hub: &Hub, provider_id: &str) -> Result<Option<NewApiKey>, Error> {
    let key = wallet_keys::new_api_key();
    let now = hub.now_ms();
    let (id, key_id, hash) = (
        provider_id.to_string(),
        key.key_id.clone(),
        key.secret_hash.clone(),
    );
    let created = hub
        .store
        .transact(move |tx| {
            Box::pin(async move {
                Ok::<_, Error>(tx.insert_provider_key(&id, &key_id, &hash, now).await?)
            })
        })
        .await?;
    Ok(created.then_some(key))
}

/// Revokes a provider's key; `false` when the provider has no such key.
pub async fn revoke_key(hub: &Hub, provider_id: &str, key_id: &str) -> Result<bool, Error> {
    let now = hub.now_ms();
    let (id, key) = (provider_id.to_string(), key_id.to_string());
    hub.store
        .transact(move |tx| {
            Box::pin(async move { Ok::<_, Error>(tx.revoke_provider_key(&id, &key, now).await?) })
        })
        .await
}

/// The provider a presented API key belongs to, if it is a live key.
pub async fn by_api_key(hub: &Hub, presented: &str) -> Result<Option<String>, Error> {
    let Some(key) = wallet_keys::parse_api_key(presented) else {
        return Ok(None);
    };
    Ok(match hub.store.live_provider_key(key.key_id).await? {
        Some((provider, hash)) if key.matches(&hash) => Some(provider),
        _ => None,
    })
}

/// The provider whose client certificate (DER) this is, by its SPKI pin.
pub async fn by_certificate(hub: &Hub, certificate_der: &[u8]) -> Result<Option<String>, Error> {
    let Some(pin) = spki_pin(certificate_der) else {
        return Ok(None);
    };
    Ok(hub.store.wallet_provider_by_pin(&pin).await?)
}

/// Whether the device was registered by this provider (an unknown device is no one's).
pub async fn owns_device(hub: &Hub, provider_id: &str, device_id: &str) -> Result<bool, Error> {
    Ok(hub.store.device_provider(device_id).await?.as_deref() == Some(provider_id))
}
