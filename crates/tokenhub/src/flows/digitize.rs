//! A wallet asks to digitize a card onto a device: the hub asks the issuer's TSP to create a token
//! (`createToken`) and records it, waiting for the TSP's data preparation.
//!
//! A digitization sent with an idempotency key may be sent again (its answer lost, the node that
//! took it killed): the key gives the createToken call the same `x-correlation-id` each time, the
//! contract has the TSP answer a repeat with the token it made, and the hub answers with that
//! token, recorded once. One TSP token per key, whichever node takes the repeat.

use crate::domain::catalog::Tsp;
use crate::domain::ids::{parse_slug, LastDigits, Mmyy};
use crate::domain::lifecycle::CardInfo;
use crate::domain::{CorrelationId, IssuerId, Rejection, TokenId, TokenState};
use crate::error::Error;
use crate::hub::Hub;
use crate::store::token_keys::DataKey;
use crate::store::tokens::TokenRow;
use crate::store::StoreError;
use crate::tsp_client::{CreateTokenRequest, CreateTokenResponse, DeviceInfo, TspCallError};

/// A parsed digitization request.
#[derive(Debug, Clone)]
pub struct Digitization {
    pub issuer_id: IssuerId,
    pub product_id: String,
    pub device_id: String,
    pub wallet_card_ref_id: String,
    pub token_requestor_id: Option<String>,
    /// What the issuer tells of the funding card (for the token's requestor).
    pub card: CardInfo,
    /// The wallet's `Idempotency-Key`: a repeat gets the token the first made.
    pub idempotency_key: Option<String>,
}

/// Why a digitization did not happen, in the wallet's terms.
#[derive(Debug, thiserror::Error)]
pub enum DigitizeError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotReady(String),
    /// The TSP refused (its response code is kept for the wallet).
    #[error("the TSP refused to create the token: {message}")]
    TspRefused { code: u32, message: String },
    #[error("the TSP is unavailable; try again later")]
    TspUnavailable,
    #[error("the TSP answered outside the contract: {0}")]
    TspProtocol(String),
    /// The idempotency key was sent before with another request.
    #[error("this Idempotency-Key was used for another digitization")]
    KeyReused,
    #[error(transparent)]
    Internal(#[from] Error),
}

impl From<crate::store::StoreError> for DigitizeError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(e.into())
    }
}

impl Digitization {
    pub fn parse(
        issuer_id: &str,
        product_id: &str,
        device_id: &str,
        wallet_card_ref_id: &str,
        token_requestor_id: Option<&str>,
        card: CardInfo,
    ) -> Result<Self, Rejection> {
        let n = wallet_card_ref_id.chars().count();
        if n == 0 || n > 64 {
            return Err(Rejection::format(
                "walletCardRefId must be 1 to 64 characters",
            ));
        }
        if let Some(r) = token_requestor_id {
            if r.is_empty() || r.chars().count() > 32 {
                return Err(Rejection::format(
                    "tokenRequestorId must be 1 to 32 characters",
                ));
            }
        }
        Ok(Self {
            issuer_id: IssuerId::parse(issuer_id)?,
            product_id: parse_slug("productId", product_id)?,
            device_id: parse_slug("deviceId", device_id)?,
            wallet_card_ref_id: wallet_card_ref_id.to_string(),
            token_requestor_id: token_requestor_id.map(str::to_string),
            card,
            idempotency_key: None,
        })
    }
}

/// Digitizes a card onto a device of `provider_id`: checks the catalog knows everything the call
/// needs, asks the TSP to create the token and records it, waiting for its data. Returns the
/// token, and whether it was made now (`false`: a repeat of its idempotency key).
pub async fn digitize(
    hub: &Hub,
    provider_id: &str,
    d: Digitization,
) -> Result<(TokenRow, bool), DigitizeError> {
    let (tsp, version) = check_catalog(hub, provider_id, &d).await?;
    let correlation_id = match &d.idempotency_key {
        Some(key) => keyed_correlation_id(provider_id, key),
        None => CorrelationId::from_uuid(uuid::Uuid::new_v4()),
    };
    if d.idempotency_key.is_some() {
        if let Some(made) = hub
            .store
            .keyed_digitization(correlation_id.as_str())
            .await?
        {
            return repeated(made, d.asked(), &correlation_id);
        }
    }
    let answer = request_token(hub, &tsp, &d, &correlation_id).await?;
    let (token_id, exp, last4) = read_answer(answer)?;
    let now = hub.now_ms();
    let row = TokenRow {
        token_id: token_id.to_string(),
        issuer_id: d.issuer_id.to_string(),
        product_id: d.product_id,
        profile_version: version,
        device_id: d.device_id,
        wallet_card_ref_id: d.wallet_card_ref_id,
        token_requestor_id: d.token_requestor_id,
        state: TokenState::PendingData,
        token_exp: exp.map(|e| e.as_str().to_string()),
        token_last4: last4.map(|l| l.as_str().to_string()),
        data_deadline_ms: now + hub.config.perso_ttl.as_millis() as i64,
        received_elements: Vec::new(),
        correlation_id: correlation_id.to_string(),
        created_ms: now,
        updated_ms: now,
        failure_reason: None,
        recovery: None,
        card: d.card,
        last_update_ms: None,
    };
    let stored = row.clone();
    match record_token(hub, row, now).await? {
        None => {
            tracing::info!(correlation_id = %correlation_id, token_id = %token_id, "token created; waiting for its data");
            Ok((stored, true))
        }
        // A repeat taken at the same time made it (the TSP answered both with one token).
        Some(made)
            if d.idempotency_key.is_some() && made.correlation_id == stored.correlation_id =>
        {
            repeated(made, asked_by(&stored), &correlation_id)
        }
        Some(_) => Err(DigitizeError::TspProtocol(format!(
            "createToken returned tokenId {token_id}, which already exists"
        ))),
    }
}

/// The `x-correlation-id` of a keyed digitization: the same for every repeat of the key by the
/// same provider, and nothing of the key readable from it. (Neither a provider id nor a key holds
/// a line break, so the pair is read back one way only.)
fn keyed_correlation_id(provider_id: &str, key: &str) -> CorrelationId {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(format!("{provider_id}\n{key}"));
    CorrelationId::keyed("dgt-", &hash)
}

/// What a digitization asked for: issuer, product, device, card, token requestor.
type Asked<'a> = (&'a str, &'a str, &'a str, &'a str, Option<&'a str>);

impl Digitization {
    fn asked(&self) -> Asked<'_> {
        let requestor = self.token_requestor_id.as_deref();
        let card = self.wallet_card_ref_id.as_str();
        (
            self.issuer_id.as_str(),
            &self.product_id,
            &self.device_id,
            card,
            requestor,
        )
    }
}

fn asked_by(t: &TokenRow) -> Asked<'_> {
    let requestor = t.token_requestor_id.as_deref();
    (
        &t.issuer_id,
        &t.product_id,
        &t.device_id,
        &t.wallet_card_ref_id,
        requestor,
    )
}

/// The answer to a repeat of a key: the token it made, if it was made for the same digitization.
fn repeated(
    made: TokenRow,
    asked: Asked<'_>,
    correlation_id: &CorrelationId,
) -> Result<(TokenRow, bool), DigitizeError> {
    if asked_by(&made) != asked {
        return Err(DigitizeError::KeyReused);
    }
    tracing::info!(correlation_id = %correlation_id, token_id = %made.token_id, "digitization repeated; the token made before");
    Ok((made, false))
}

/// The issuer's TSP and the product's deployed profile version, once the issuer, its TSP, the
/// product's version, the device (the caller's: another provider's answers as an unknown one) and
/// the token requestor are all known (checked in that order).
async fn check_catalog(
    hub: &Hub,
    provider_id: &str,
    d: &Digitization,
) -> Result<(Tsp, String), DigitizeError> {
    let issuer = hub
        .store
        .issuer(d.issuer_id.as_str())
        .await?
        .ok_or_else(|| {
            DigitizeError::NotFound(format!("issuer {} is not registered", d.issuer_id))
        })?;
    let tsp = hub.store.tsp(&issuer.tsp_id).await?.ok_or_else(|| {
        DigitizeError::NotReady(format!(
            "the issuer's TSP {} is not registered",
            issuer.tsp_id
        ))
    })?;
    let version = hub
        .store
        .current_version(d.issuer_id.as_str(), &d.product_id)
        .await?
        .ok_or_else(|| {
            DigitizeError::NotReady(format!(
                "product {} of issuer {} has no deployed profile version",
                d.product_id, d.issuer_id
            ))
        })?;
    if hub.store.device_provider(&d.device_id).await?.as_deref() != Some(provider_id) {
        return Err(DigitizeError::NotFound(format!(
            "device {} is not registered",
            d.device_id
        )));
    }
    if let Some(requestor) = &d.token_requestor_id {
        if hub.store.requestor(requestor).await?.is_none() {
            return Err(DigitizeError::Invalid(format!(
                "tokenRequestorId {requestor} is not a registered token requestor"
            )));
        }
    }
    Ok((tsp, version))
}

/// Asks the TSP to create the token (`createToken`), at the pace the TSP allows; its refusal or
/// silence becomes the wallet's error.
async fn request_token(
    hub: &Hub,
    tsp: &Tsp,
    d: &Digitization,
    correlation_id: &CorrelationId,
) -> Result<CreateTokenResponse, DigitizeError> {
    let span =
        tracing::info_span!("digitize", correlation_id = %correlation_id, issuer_id = %d.issuer_id);
    let _enter = span.enter();
    let request = CreateTokenRequest {
        issuer_id: d.issuer_id.to_string(),
        wallet_card_ref_id: d.wallet_card_ref_id.clone(),
        token_requestor_id: d.token_requestor_id.clone(),
        device_info: DeviceInfo {
            device_id: d.device_id.clone(),
            device_type: "PHONE",
        },
    };
    drop(_enter);
    // Every attempt waits for a slot of the TSP's rate; a store that cannot tell makes the
    // attempt unavailable (tried again like a TSP that did not answer).
    let pace = || async {
        match tsp.rate_limit {
            Some(rate) => hub
                .tsp_pacer
                .acquire(&hub.store, &tsp.tsp_id, rate)
                .await
                .map_err(|e| TspCallError::Unavailable(format!("reading the TSP's rate: {e}"))),
            None => Ok(()),
        }
    };
    let started = std::time::Instant::now();
    let answer = hub
        .tsp
        .create_token(&tsp.base_url, correlation_id, &request, pace)
        .await;
    super::tsp_calls::measured(&tsp.tsp_id, "createToken", &answer, started.elapsed());
    answer.map_err(|e| match e {
        TspCallError::Refused { code, message } => DigitizeError::TspRefused {
            code,
            message: message.unwrap_or_else(|| describe_tsp_code(code).to_string()),
        },
        TspCallError::Unavailable(why) => {
            tracing::warn!(correlation_id = %correlation_id, reason = %why, "createToken failed");
            DigitizeError::TspUnavailable
        }
        TspCallError::Protocol(why) => DigitizeError::TspProtocol(why),
    })
}

/// The token id, expiry and last digits of the TSP's answer; any that does not parse is the
/// TSP's breach of the contract.
fn read_answer(
    answer: CreateTokenResponse,
) -> Result<(TokenId, Option<Mmyy>, Option<LastDigits>), DigitizeError> {
    let token_id = TokenId::parse(&answer.token_id)
        .map_err(|r| DigitizeError::TspProtocol(format!("tokenId: {}", r.message)))?;
    let info = answer.token_info.unwrap_or_default();
    let exp = info
        .exp
        .as_deref()
        .map(|e| Mmyy::parse("tokenInfo.exp", e))
        .transpose()
        .map_err(|r| DigitizeError::TspProtocol(r.message))?;
    let last4 = info
        .last4
        .as_deref()
        .map(|l| LastDigits::parse("tokenInfo.last4", l, 2, 10))
        .transpose()
        .map_err(|r| DigitizeError::TspProtocol(r.message))?;
    Ok((token_id, exp, last4))
}

/// Records the new token and its first event in one transaction; the token of that id when one
/// already exists (nothing is written then).
async fn record_token(
    hub: &Hub,
    row: TokenRow,
    now: i64,
) -> Result<Option<TokenRow>, DigitizeError> {
    // The token's data key, made with it: on SQLite the keyring commits after the database, so
    // a key written with the data it seals could be missing to a reader that sees the data.
    let key: DataKey = hub.keys.new_data_key(&row.token_id).map_err(Error::from)?;
    let inserted = hub
        .store
        .transact(move |conn| {
            Box::pin(async move {
                if let Some(made) = conn.lock_token(&row.token_id).await? {
                    return Ok::<_, Error>(Some(made));
                }
                if !conn.insert_token(&row).await? {
                    // A repeat taken at the same moment recorded it.
                    let made = conn.lock_token(&row.token_id).await?;
                    return Ok(Some(made.ok_or_else(|| {
                        StoreError::Corrupt("a token inserted meanwhile is gone".into())
                    })?));
                }
                conn.keep_data_key(&row.token_id, &key, now).await?;
                conn.add_token_event(
                    &row.token_id,
                    "created at the TSP (createToken)",
                    &row.correlation_id,
                    now,
                )
                .await?;
                Ok(None)
            })
        })
        .await?;
    Ok(inserted)
}

/// The errorRes table's descriptions, for a TSP that sent a code without a message.
pub fn describe_tsp_code(code: u32) -> &'static str {
    match code {
        111 => "missing mandatory parameter",
        112 => "bad parameter format",
        113 => "unknown issuer",
        115 => "unknown product",
        119 => "unknown token",
        163 => "product not supported for mobile payment",
        164 => "FPAN provisioning count exceeded",
        166 => "invalid FPAN",
        167 => "card already enrolled",
        321 => "operation on token already on-going",
        322 => "time to live of the operation expired",
        432 => "current token state does not allow this operation",
        911 => "operation failed",
        921 => "unexpected server error",
        _ => "unknown response code",
    }
}

#[cfg(test)]
mod tests {
    use super::keyed_correlation_id;

    #[test]
    fn a_key_gives_one_correlation_id_per_provider_and_hides_itself() {
        let id = keyed_correlation_id("wallet-a", "order-42");
        assert_eq!(id, keyed_correlation_id("wallet-a", "order-42"));
        assert_ne!(id, keyed_correlation_id("wallet-b", "order-42"));
        assert_ne!(id, keyed_correlation_id("wallet-a", "order-43"));
        let id = id.as_str();
        assert!(id.starts_with("dgt-") && id.len() == 44, "{id}");
        assert!(!id.contains("order"), "{id}");
    }
}
