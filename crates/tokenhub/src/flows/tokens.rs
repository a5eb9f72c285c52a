//! A token as the admin API shows it: its row, its history, what was fingerprinted and its
//! personalizations.

use crate::domain::personalization::Personalization;
use crate::error::Error;
use crate::hub::Hub;
use crate::store::tokens::{TokenEvent, TokenRow};

/// Everything the hub holds of a token that may be shown (no data, no keys).
#[derive(Debug)]
pub struct TokenDetail {
    pub token: TokenRow,
    pub history: Vec<TokenEvent>,
    /// Names of the elements whose keyed fingerprints are kept.
    pub fingerprinted: Vec<String>,
    /// Newest first.
    pub personalizations: Vec<Personalization>,
}

/// Where a page of an issuer's tokens starts: after this card's (`walletCardRefId`) token.
pub type TokenCursor = (String, String);

/// An issuer's tokens by card then token id, a page of at most `limit` after `after`, and where
/// the next page starts if there is one; `None`: the issuer is not registered.
pub async fn of_issuer(
    hub: &Hub,
    issuer_id: &str,
    limit: i64,
    after: Option<(&str, &str)>,
) -> Result<Option<(Vec<TokenRow>, Option<TokenCursor>)>, Error> {
    if hub.store.issuer(issuer_id).await?.is_none() {
        return Ok(None);
    }
    let mut page = hub
        .store
        .issuer_tokens_page(issuer_id, limit + 1, after)
        .await?;
    let more = page.len() as i64 > limit;
    page.truncate(usize::try_from(limit).unwrap_or(0));
    let next = more
        .then(|| {
            page.last()
                .map(|t| (t.wallet_card_ref_id.clone(), t.token_id.clone()))
        })
        .flatten();
    Ok(Some((page, next)))
}

pub async fn detail(hub: &Hub, token_id: &str) -> Result<Option<TokenDetail>, Error> {
    let Some(token) = hub.store.token(token_id).await? else {
        return Ok(None);
    };
    let history = hub.store.token_events(token_id).await?;
    let fingerprinted = hub.store.fingerprint_names(token_id).await?;
    let personalizations = hub.store.personalizations_of(token_id).await?;
    Ok(Some(TokenDetail {
        token,
        history,
        fingerprinted,
        personalizations,
    }))
}

/// Whether the store answers (health checks).
pub async fn store_answers(hub: &Hub) -> Result<(), Error> {
    Ok(hub.store.ping().await?)
}

/// What of the hub is down now: the workers stopped (waiting to be started again) and, on
/// SQLite, whether the writer thread is gone.
#[derive(Debug, Clone, Default)]
pub struct Down {
    pub workers: Vec<&'static str>,
    pub sqlite_writer: bool,
}

impl Down {
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty() && !self.sqlite_writer
    }
}

/// What of the hub is down now.
pub fn down(hub: &Hub) -> Down {
    Down {
        workers: hub.health.down(),
        sqlite_writer: !hub.store.writer_running(),
    }
}

/// Every worker's state, by name; and whether the store has an SQLite writer thread.
pub fn workers(hub: &Hub) -> (Vec<(&'static str, crate::health::WorkerState)>, bool) {
    let sqlite = hub.store.dialect() == crate::store::Dialect::Sqlite;
    (hub.health.workers(), sqlite)
}
