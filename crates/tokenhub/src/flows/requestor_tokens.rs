//! The requestor API's use cases: a token requestor (merchant, PSP) tokenizes a card it keeps on
//! file, asks for a transaction's credentials, reads and deletes its tokens. The card reaches the
//! TSP as the requestor's JWE, untouched: the hub never sees a card PAN. A token PAN is passed
//! through from the TSP to the requestor, never stored or logged. TSP calls are synchronous
//! (the requestor waits): paced and retried within the requestor's budget
//! ([`super::requestor_tsp`]).

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::notifications::{self, TokenUpdateBody};
use super::requestor_tsp::{self, Failed};
use crate::domain::catalog::Tsp;
use crate::domain::lifecycle::{format_timestamp, next_update_ms, TspUpdate};
use crate::domain::notification::Requestor;
use crate::domain::requestor_token::{card_key_id, RequestorToken};
use crate::domain::wallet_provider::ProviderKey;
use crate::domain::{Code, CorrelationId, Rejection, TokenState};
use crate::error::Error;
use crate::hub::{Hub, Signal, VerifiedKey};
use crate::keys::wallet_keys::{self, NewApiKey, REQUESTOR_PREFIX};
use crate::store::{StoreError, Tx};
use crate::tsp_client::{
    CardOnFileRequest, CredentialsRequest, TransactionCredentials, TspCallError,
};

/// Why a requestor's call did not succeed, in its terms.
#[derive(Debug, thiserror::Error)]
pub enum RequestorApiError {
    #[error("{0}")]
    Invalid(String),
    /// The card is not a JWE made to a published key.
    #[error("{0}")]
    InvalidJwe(String),
    /// Unknown, or another requestor's: the same answer.
    #[error("no such token")]
    NotFound,
    #[error("the token is {}", .0.as_str())]
    NotActive(TokenState),
    #[error("this Idempotency-Key was used for another request")]
    KeyReused,
    /// The TSP refused the card (115, 163, 164, 166, 167) or the call (its code kept).
    #[error("{message}")]
    TspRefused { code: u32, message: String },
    /// Still unavailable after the retries the requestor's budget allows: come back after this.
    #[error("the TSP is unavailable; try again later")]
    TspUnavailable(Duration),
    #[error("the TSP answered outside the contract")]
    TspProtocol(String),
    #[error(transparent)]
    Internal(#[from] Error),
}

impl From<StoreError> for RequestorApiError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.into())
    }
}

/// The requestor a presented API key (`trk_…`) belongs to, if it is a live key. A key verified
/// lately is taken from the hub's cache (its secret still compared, in constant time, with the
/// hash the store had); an unknown key id is read from the store each time.
pub async fn caller_by_key(hub: &Hub, presented: &str) -> Result<Option<Arc<Requestor>>, Error> {
    let Some(key) = wallet_keys::parse_key_with(REQUESTOR_PREFIX, presented) else {
        return Ok(None);
    };
    let now = hub.now_ms();
    let verified = match hub.requestor_keys.get(key.key_id, now) {
        Some(verified) => verified,
        None => {
            let ticket = hub.requestor_keys.ticket();
            let Some((requestor_id, secret_hash)) =
                hub.store.live_requestor_key(key.key_id).await?
            else {
                return Ok(None);
            };
            let verified = Arc::new(VerifiedKey {
                requestor_id,
                secret_hash,
            });
            if key.matches(&verified.secret_hash) {
                hub.requestor_keys
                    .insert(ticket, key.key_id, verified.clone(), now);
            }
            verified
        }
    };
    if !key.matches(&verified.secret_hash) {
        return Ok(None);
    }
    Ok(hub.requestor(&verified.requestor_id).await?)
}

/// Makes an API key for a requestor; `None` when there is no such requestor.
pub async fn issue_key(hub: &Hub, requestor_id: &str) -> Result<Option<NewApiKey>, Error> {
    let key = wallet_keys::new_key_with(REQUESTOR_PREFIX);
    let (requestor_id, key_id, hash) = (
        requestor_id.to_string(),
        key.key_id.clone(),
        key.secret_hash.clone(),
    );
    let now = hub.now_ms();
    let made = hub
        .store
        .transact(move |c| {
            Box::pin(async move {
                Ok::<_, Error>(
                    c.insert_requestor_key(&requestor_id, &key_id, &hash, now)
                        .await?,
                )
            })
        })
        .await?;
    Ok(made.then_some(key))
}

/// A requestor's API keys' records, oldest first; `None` when there is no such requestor.
pub async fn keys(hub: &Hub, requestor_id: &str) -> Result<Option<Vec<ProviderKey>>, Error> {
    if hub.store.requestor(requestor_id).await?.is_none() {
        return Ok(None);
    }
    Ok(Some(hub.store.requestor_keys(requestor_id).await?))
}

/// Revokes one of a requestor's keys; `false` when it has no such key.
pub async fn revoke_key(hub: &Hub, requestor_id: &str, key_id: &str) -> Result<bool, Error> {
    let (id, key, now) = (requestor_id.to_string(), key_id.to_string(), hub.now_ms());
    let revoked = hub
        .store
        .transact(move |c| {
            Box::pin(async move { Ok::<_, Error>(c.revoke_requestor_key(&id, &key, now).await?) })
        })
        .await;
    // Forgotten whatever the outcome: a revocation that may have committed holds at once here,
    // and on the other nodes once told (before the answer).
    hub.tell_nodes(Signal::RequestorKey(key_id.to_string()))
        .await?;
    revoked
}

/// Sets the TSP's card encryption key (a public JWK with a `kid`); `Ok(false)`: no such TSP.
pub async fn set_card_key(
    hub: &Hub,
    tsp_id: &str,
    jwk: &serde_json::Value,
) -> Result<bool, RequestorApiError> {
    crate::domain::requestor_token::check_public_jwk(jwk).map_err(RequestorApiError::Invalid)?;
    let (tsp_id, text, now) = (tsp_id.to_string(), jwk.to_string(), hub.now_ms());
    Ok(hub
        .store
        .transact(move |c| {
            Box::pin(
                async move { Ok::<_, Error>(c.set_tsp_card_key(&tsp_id, Some(&text), now).await?) },
            )
        })
        .await?)
}

/// Every published card encryption key: TSP id and public JWK.
pub async fn encryption_keys(hub: &Hub) -> Result<Vec<(String, serde_json::Value)>, Error> {
    let keys = hub.store.tsp_card_keys().await?;
    Ok(keys
        .into_iter()
        .filter_map(|(tsp, jwk)| Some((tsp, serde_json::from_str(&jwk).ok()?)))
        .collect())
}

/// A tokenization request, parsed.
pub struct Tokenize {
    /// The compact JWE of the card, made to a TSP's published key.
    pub encrypted_card: String,
    pub requestor_reference: Option<String>,
    pub idempotency_key: String,
    /// The request's body, hashed: a key reused for another body is refused.
    pub body: Vec<u8>,
}

/// The TSP whose published key the JWE names (by `kid`).
async fn tsp_for_card(hub: &Hub, jwe: &str) -> Result<Arc<Tsp>, RequestorApiError> {
    let kid = card_key_id(jwe).map_err(RequestorApiError::InvalidJwe)?;
    let keys = hub.store.tsp_card_keys().await?;
    let tsp_id = keys
        .into_iter()
        .find(|(_, jwk)| {
            serde_json::from_str::<serde_json::Value>(jwk)
                .ok()
                .is_some_and(|j| j["kid"].as_str() == Some(kid.as_str()))
        })
        .map(|(tsp, _)| tsp)
        .ok_or_else(|| {
            RequestorApiError::InvalidJwe("the JWE's kid is not a published encryption key".into())
        })?;
    hub.tsp(&tsp_id)
        .await?
        .ok_or_else(|| RequestorApiError::Internal(StoreError::Corrupt("TSP gone".into()).into()))
}

fn tsp_error(call: &str, e: Failed) -> RequestorApiError {
    match e {
        Failed::Final(TspCallError::Refused { code, message }) => RequestorApiError::TspRefused {
            code,
            message: message
                .unwrap_or_else(|| super::digitize::describe_tsp_code(code).to_string()),
        },
        Failed::Unavailable { why, retry_after } => {
            tracing::warn!(call, reason = %why, "TSP still unavailable; the requestor is to retry");
            RequestorApiError::TspUnavailable(retry_after)
        }
        // Not made by `requestor_tsp::call` (an unavailable TSP is `Failed::Unavailable`).
        Failed::Final(TspCallError::Unavailable(_)) => {
            RequestorApiError::TspUnavailable(Duration::from_secs(1))
        }
        Failed::Final(TspCallError::Protocol(why)) => {
            tracing::warn!(call, reason = %why, "TSP answered outside the contract");
            RequestorApiError::TspProtocol(why)
        }
    }
}

/// A requestor token's TSP (gone: unavailable, as the TSP would be).
async fn token_tsp(hub: &Hub, tsp_id: &str) -> Result<Arc<Tsp>, RequestorApiError> {
    hub.tsp(tsp_id)
        .await?
        .ok_or(RequestorApiError::TspUnavailable(Duration::from_secs(1)))
}

/// Tokenizes a card on file; a repeat of the same idempotency key gets the same token without a
/// second TSP call. Returns the token and whether it was made now.
pub async fn tokenize(
    hub: &Hub,
    requestor: &Requestor,
    t: Tokenize,
) -> Result<(RequestorToken, bool), RequestorApiError> {
    let request_hash = Sha256::digest(&t.body).to_vec();
    let rid = requestor.requestor_id.as_str();
    if let Some(made) = hub
        .store
        .requestor_token_by_key(rid, &t.idempotency_key)
        .await?
    {
        return replayed(made, &request_hash);
    }
    let tsp = tsp_for_card(hub, &t.encrypted_card).await?;
    // The same key gives the same correlation id, so the TSP recognises a repeat too.
    let key_hash = Sha256::digest(format!("{rid}\n{}", t.idempotency_key));
    let correlation_id = CorrelationId::keyed("cof-", &key_hash);
    let request = CardOnFileRequest {
        token_requestor_id: rid,
        ciphered_card_info: &t.encrypted_card,
        requestor_card_ref_id: t.requestor_reference.as_deref(),
    };
    let answer = requestor_tsp::call(hub, &tsp, "createCardOnFileToken", || {
        hub.tsp
            .create_card_on_file_token(&tsp.base_url, correlation_id.as_str(), &request)
    })
    .await
    .map_err(|e| tsp_error("createToken (card on file)", e))?;
    let now = hub.now_ms();
    let (token_info, card_info) = (
        answer.token_info.unwrap_or_default(),
        answer.card_info.unwrap_or_default(),
    );
    let token = RequestorToken {
        token_id: answer.token_id,
        requestor_id: rid.to_string(),
        tsp_id: tsp.tsp_id.clone(),
        issuer_id: answer.issuer_id,
        state: TokenState::Active,
        token_last_digits: token_info.last4,
        token_expiry_date: token_info.exp,
        card_last_digits: card_info.last4,
        card_expiry_date: card_info.exp,
        card_art_id: answer.card_art_id,
        requestor_reference: t.requestor_reference,
        idempotency_key: t.idempotency_key,
        request_hash: request_hash.clone(),
        last_update_ms: now,
        created_ms: now,
        updated_ms: now,
    };
    crate::domain::requestor_token::check_answer(&token).map_err(RequestorApiError::TspProtocol)?;
    let row = token.clone();
    let inserted = hub
        .store
        .transact(move |c| {
            Box::pin(async move { Ok::<_, Error>(c.insert_requestor_token(&row).await?) })
        })
        .await?;
    if inserted {
        tracing::info!(token_id = %token.token_id, requestor_id = rid, %correlation_id, "card-on-file token created");
        return Ok((token, true));
    }
    // A concurrent request with the same key got there first.
    match hub
        .store
        .requestor_token_by_key(rid, &token.idempotency_key)
        .await?
    {
        Some(made) => replayed(made, &request_hash),
        None => Err(RequestorApiError::TspProtocol(
            "createToken returned a tokenId that already exists".into(),
        )),
    }
}

fn replayed(
    made: RequestorToken,
    request_hash: &[u8],
) -> Result<(RequestorToken, bool), RequestorApiError> {
    if made.request_hash != request_hash {
        return Err(RequestorApiError::KeyReused);
    }
    Ok((made, false))
}

/// The requestor's own token; another's answers as an unknown one.
pub async fn get(
    hub: &Hub,
    requestor_id: &str,
    token_id: &str,
) -> Result<RequestorToken, RequestorApiError> {
    match hub.store.requestor_token(token_id).await? {
        Some(t) if t.requestor_id == requestor_id => Ok(t),
        _ => Err(RequestorApiError::NotFound),
    }
}

/// What a transaction is.
pub struct Terms {
    pub amount: String,
    pub currency: String,
    pub transaction_type: String,
}

/// The credentials of one transaction with an ACTIVE token.
pub async fn transact(
    hub: &Hub,
    requestor: &Requestor,
    token_id: &str,
    terms: &Terms,
) -> Result<TransactionCredentials, RequestorApiError> {
    // Read at each call (its owner and state are current); the TSP comes from the hub's cache.
    let (tsp_id, state) = hub
        .store
        .requestor_token_state(&requestor.requestor_id, token_id)
        .await?
        .ok_or(RequestorApiError::NotFound)?;
    if state != TokenState::Active {
        return Err(RequestorApiError::NotActive(state));
    }
    let tsp = token_tsp(hub, &tsp_id).await?;
    let request = CredentialsRequest {
        token_requestor_id: &requestor.requestor_id,
        amount: &terms.amount,
        currency: &terms.currency,
        transaction_type: &terms.transaction_type,
        merchant_id: &requestor.merchant_id,
    };
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let credentials = requestor_tsp::call(hub, &tsp, "getTransactionCredentials", || {
        hub.tsp
            .transaction_credentials(&tsp.base_url, token_id, &correlation_id, &request)
    })
    .await
    .map_err(|e| tsp_error("transactionCredentials", e))?;
    crate::domain::requestor_token::check_credentials(
        &credentials.token_pan,
        &credentials.token_expiry_date,
    )
    .map_err(RequestorApiError::TspProtocol)?;
    Ok(credentials)
}

/// Deletes the requestor's token: the TSP is told, then the token is DELETED and the update
/// queued for the requestor like any other. Deleting a deleted token changes nothing.
pub async fn delete(
    hub: &Hub,
    requestor: &Requestor,
    token_id: &str,
) -> Result<(), RequestorApiError> {
    let token = get(hub, &requestor.requestor_id, token_id).await?;
    if token.state == TokenState::Deleted {
        return Ok(());
    }
    let tsp = token_tsp(hub, &token.tsp_id).await?;
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let rid = requestor.requestor_id.as_str();
    match requestor_tsp::call(hub, &tsp, "deleteCardOnFileToken", || {
        hub.tsp
            .delete_card_on_file_token(&tsp.base_url, token_id, &correlation_id, rid)
    })
    .await
    {
        // 119: the TSP no longer knows it (a repeat whose first answer was lost, too); deleted
        // there either way.
        Ok(()) | Err(Failed::Final(TspCallError::Refused { code: 119, .. })) => {}
        Err(e) => return Err(tsp_error("delete (card on file)", e)),
    }
    let (id, requestor, now) = (token_id.to_string(), requestor.clone(), hub.now_ms());
    hub.store
        .transact(move |c| {
            Box::pin(async move {
                let Some(mut t) = c.lock_requestor_token(&id).await? else {
                    return Ok::<_, Error>(());
                };
                if t.state == TokenState::Deleted {
                    return Ok(());
                }
                t.state = TokenState::Deleted;
                t.last_update_ms = next_update_ms(Some(t.last_update_ms), now);
                t.updated_ms = now;
                c.update_requestor_token(&t).await?;
                queue(c, &t, Some(&requestor), &correlation_id, now).await
            })
        })
        .await?;
    Ok(())
}

async fn queue(
    c: &mut Tx,
    t: &RequestorToken,
    requestor: Option<&Requestor>,
    correlation_id: &str,
    now: i64,
) -> Result<(), Error> {
    let Some(requestor) = requestor else {
        return Ok(());
    };
    let body = TokenUpdateBody {
        token_id: t.token_id.clone(),
        merchant_id: requestor.merchant_id.clone(),
        token_state: t.state.as_str().to_string(),
        token_last_digits: t.token_last_digits.clone(),
        token_expiry_date: t.token_expiry_date.clone(),
        card_last_digits: t.card_last_digits.clone(),
        card_expiry_date: t.card_expiry_date.clone(),
        card_art_id: t.card_art_id.clone(),
        last_update_timestamp: format_timestamp(t.last_update_ms),
    };
    notifications::queue_body(c, requestor, &body, t.last_update_ms, correlation_id, now).await?;
    Ok(())
}

/// A TSP's token update for a card-on-file token (called in the update's transaction when the
/// token is not a wallet token): `None` when it is not a card-on-file token either (or another
/// TSP's), else whether it was applied. Forwarded to the requestor like any other.
pub(crate) async fn tsp_update(
    c: &mut Tx,
    caller_tsp: Option<&str>,
    token_id: &str,
    update: &TspUpdate,
    check: impl FnOnce(TokenState, i64) -> Result<bool, Rejection>,
    correlation_id: &str,
    now: i64,
) -> Result<Option<bool>, Error> {
    let Some(mut t) = c.lock_requestor_token(token_id).await? else {
        return Ok(None);
    };
    if caller_tsp.is_some_and(|caller| caller != t.tsp_id) {
        return Ok(None);
    }
    if t.issuer_id != update.issuer_id.as_str() {
        return Err(
            Rejection::new(Code::UnknownIssuer, "issuerId is not the token's issuer").into(),
        );
    }
    if !check(t.state, t.last_update_ms)? {
        return Ok(Some(false));
    }
    let change = &update.change;
    if let Some(state) = change.state {
        t.state = state;
    }
    let keep = |new: &Option<String>, old: &mut Option<String>| {
        if new.is_some() {
            old.clone_from(new);
        }
    };
    keep(&change.token_exp, &mut t.token_expiry_date);
    keep(&change.token_last4, &mut t.token_last_digits);
    keep(&change.card.last_digits, &mut t.card_last_digits);
    keep(&change.card.expiry_date, &mut t.card_expiry_date);
    keep(&change.card.art_id, &mut t.card_art_id);
    t.last_update_ms = update.last_update_ms;
    t.updated_ms = now;
    c.update_requestor_token(&t).await?;
    let requestor = c.requestor(&t.requestor_id).await?;
    queue(c, &t, requestor.as_ref(), correlation_id, now).await?;
    Ok(Some(true))
}
