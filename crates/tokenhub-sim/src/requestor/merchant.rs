//! The requestor simulator as a merchant's PSP with cards on file, on the receiver library: it
//! tokenizes cards (each encrypted to the key the hub publishes, so the hub never sees it), pays
//! with each token (Create Transaction through the hub, then the token PAN and cryptogram
//! authorized at the TSP simulator's `POST /sim/authorizations`), and follows renewals: an
//! update with new last digits discards the kept token PAN, and the next payment fetches the
//! current one. Card numbers derive from a seed ([`card_pan`]), so a test knows every PAN used
//! without the simulator ever showing one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use tokenhub_receiver::{
    encrypt_card, CardData, ClientError, CofToken, Credentials, Payment, RequestorClient,
};

use super::book::Book;
use crate::tsp::elements::{luhn_check_digit, YearMonth};
use crate::tsp::{Authorization, AuthorizationAnswer};

/// Tries of a call the hub answered as retryable (503, 429, transport).
const TRIES: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// How the merchant reaches the hub and the TSP simulator.
#[derive(Clone)]
pub struct MerchantConfig {
    /// The hub's requestor API root (its wallet listener), e.g. `https://127.0.0.1:8444`.
    pub hub_url: String,
    /// The requestor's API key (`trk_…`) for the requestor API.
    pub requestor_key: String,
    /// The merchant id the requestor is registered with (the TSP binds cryptograms to it).
    pub merchant_id: String,
    /// The TSP simulator's root, where `POST /sim/authorizations` is.
    pub tsp_sim_url: String,
    /// A CA (PEM) trusted for the hub's and the TSP simulator's certificates.
    pub ca_pem: Option<String>,
    /// The card numbers' seed, 0..100,000 ([`card_pan`]).
    pub card_seed: u32,
    /// Tokenizations or payments under way at once.
    pub concurrency: usize,
}

impl std::fmt::Debug for MerchantConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MerchantConfig")
            .field("hub_url", &self.hub_url)
            .field("merchant_id", &self.merchant_id)
            .field("tsp_sim_url", &self.tsp_sim_url)
            .field("card_seed", &self.card_seed)
            .finish_non_exhaustive()
    }
}

impl MerchantConfig {
    /// A random card seed, 16 at a time.
    pub fn new(
        hub_url: impl Into<String>,
        requestor_key: impl Into<String>,
        merchant_id: impl Into<String>,
        tsp_sim_url: impl Into<String>,
    ) -> Self {
        Self {
            hub_url: hub_url.into(),
            requestor_key: requestor_key.into(),
            merchant_id: merchant_id.into(),
            tsp_sim_url: tsp_sim_url.into(),
            ca_pem: None,
            card_seed: rand::random::<u32>() % 100_000,
            concurrency: 16,
        }
    }
}

/// The `index`-th card number of the merchant seeded `seed`: 16 Luhn-valid digits, Visa (4…)
/// for an even index and Mastercard (5…) for an odd one, different for every (seed, index).
pub fn card_pan(seed: u32, index: u64) -> String {
    let brand = if index % 2 == 0 { '4' } else { '5' };
    let mut pan = format!("{brand}{:05}{:09}", seed % 100_000, index % 1_000_000_000);
    let check = luhn_check_digit(&pan);
    pan.push(check);
    pan
}

/// What a tokenization round did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tokenized {
    /// The new tokens, in card order.
    pub token_ids: Vec<String>,
    /// Cards refused or that failed.
    pub failed: u64,
}

/// What a payment round did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRound {
    pub approved: u64,
    pub declined: u64,
    /// Payments that got no credentials or no answer.
    pub errors: u64,
}

pub(crate) struct Merchant {
    client: RequestorClient,
    http: reqwest::Client,
    authorizations_url: String,
    merchant_id: String,
    seed: u32,
    next_card: AtomicU64,
    concurrency: usize,
    book: Arc<Book>,
}

impl Merchant {
    pub(crate) fn new(config: MerchantConfig, book: Arc<Book>) -> anyhow::Result<Self> {
        crate::tsp::ensure_crypto_provider();
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &config.ca_pem {
            http = http.tls_built_in_root_certs(false).add_root_certificate(
                reqwest::Certificate::from_pem(ca.as_bytes()).context("the CA")?,
            );
        }
        let http = http
            .build()
            .context("building the merchant's HTTP client")?;
        Ok(Self {
            client: RequestorClient::new(&config.hub_url, &config.requestor_key, http.clone()),
            authorizations_url: format!(
                "{}/sim/authorizations",
                config.tsp_sim_url.trim_end_matches('/')
            ),
            http,
            merchant_id: config.merchant_id,
            seed: config.card_seed,
            next_card: AtomicU64::new(0),
            concurrency: config.concurrency.max(1),
            book,
        })
    }

    /// Tokenizes `count` new cards, each encrypted to the first key the hub publishes.
    pub(crate) async fn tokenize(&self, count: u64) -> anyhow::Result<Tokenized> {
        let keys = self
            .client
            .encryption_keys()
            .await
            .context("reading the hub's card encryption keys")?;
        let (_, jwk) = keys
            .into_iter()
            .next()
            .context("the hub publishes no card encryption key")?;
        let first = self.next_card.fetch_add(count, Ordering::SeqCst);
        let expiry = YearMonth::now().plus_years(3).mmyy();
        let made: Vec<Option<String>> = stream::iter(first..first + count)
            .map(|index| {
                let (jwk, expiry) = (&jwk, &expiry);
                async move {
                    let card = CardData {
                        pan: card_pan(self.seed, index),
                        expiry: expiry.clone(),
                        cvv: None,
                        cardholder_name: None,
                    };
                    match self.tokenize_one(jwk, &card, index).await {
                        Ok(token) => {
                            self.book.tokenized(
                                &token.token_id,
                                index,
                                token.token_last_digits.clone(),
                            );
                            Some(token.token_id)
                        }
                        Err(e) => {
                            tracing::warn!(card = index, error = %e, "merchant: tokenization failed");
                            self.book.tokenize_failed();
                            None
                        }
                    }
                }
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        let failed = made.iter().filter(|t| t.is_none()).count() as u64;
        Ok(Tokenized {
            token_ids: made.into_iter().flatten().collect(),
            failed,
        })
    }

    async fn tokenize_one(
        &self,
        jwk: &serde_json::Value,
        card: &CardData,
        index: u64,
    ) -> anyhow::Result<CofToken> {
        let jwe = encrypt_card(jwk, card)?;
        // The same key on a retry: the hub answers with the token it made, one TSP call.
        let key = format!("card-{}-{index}", self.seed);
        let reference = format!("customer-{index}");
        retrying(|| self.client.tokenize(&jwe, &key, Some(&reference)))
            .await
            .map_err(Into::into)
    }

    /// Pays once with each of `token_ids` (every token on file when `None`).
    pub(crate) async fn pay(&self, token_ids: Option<Vec<String>>) -> PaymentRound {
        let ids = token_ids.unwrap_or_else(|| self.book.token_ids());
        let answers: Vec<Option<bool>> = stream::iter(ids)
            .map(|id| async move { self.pay_one(&id).await })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut round = PaymentRound::default();
        for a in answers {
            match a {
                Some(true) => round.approved += 1,
                Some(false) => round.declined += 1,
                None => round.errors += 1,
            }
        }
        round
    }

    /// Create Transaction (the PAN is kept, replacing a discarded one), then the authorization;
    /// whether it was approved, `None` on an error.
    async fn pay_one(&self, token_id: &str) -> Option<bool> {
        let index = self.book.card_index(token_id).unwrap_or(0);
        let payment = Payment {
            amount: (100 + index % 100 * 25).to_string(),
            currency: "EUR".into(),
            transaction_type: "MIT_RECURRING".into(),
        };
        let credentials =
            match retrying(|| self.book.pans.pay(&self.client, token_id, &payment)).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%token_id, error = %e, "merchant: no transaction credentials");
                    self.book.payment_error();
                    return None;
                }
            };
        self.book.credentials(token_id, &credentials);
        let authorization = self.authorization(&credentials, &payment);
        match self.authorize(&authorization).await {
            Ok(answer) => {
                self.book.authorized(token_id, authorization, &answer);
                Some(answer.approved)
            }
            Err(e) => {
                tracing::warn!(%token_id, error = %e, "merchant: the authorization failed");
                self.book.payment_error();
                None
            }
        }
    }

    fn authorization(&self, c: &Credentials, payment: &Payment) -> Authorization {
        Authorization {
            token_pan: c.token_pan.clone(),
            token_expiry_date: c.token_expiry_date.clone(),
            cryptogram: c.cryptogram.clone(),
            amount: payment.amount.clone(),
            currency: payment.currency.clone(),
            transaction_type: payment.transaction_type.clone(),
            merchant_id: self.merchant_id.clone(),
        }
    }

    async fn authorize(&self, auth: &Authorization) -> anyhow::Result<AuthorizationAnswer> {
        let answer = self
            .http
            .post(&self.authorizations_url)
            .json(auth)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.without_url()))?;
        answer
            .json()
            .await
            .map_err(|e| anyhow::anyhow!("the TSP's answer: {}", e.without_url()))
    }

    /// Sends a token's last authorization again, as it was (the first token's when `None`); the
    /// TSP must decline it. `None` when there is no payment to replay.
    pub(crate) async fn replay(
        &self,
        token_id: Option<&str>,
    ) -> anyhow::Result<Option<(String, AuthorizationAnswer)>> {
        let Some((id, auth)) = self.book.last_authorization(token_id) else {
            return Ok(None);
        };
        let answer = self.authorize(&auth).await?;
        self.book.replayed(&answer);
        Ok(Some((id, answer)))
    }
}

/// Calls `f` up to [`TRIES`] times while its error is retryable.
async fn retrying<T, F, Fut>(mut f: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match f().await {
            Err(e) if e.is_retryable() && tries < TRIES => tokio::time::sleep(RETRY_PAUSE).await,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_are_luhn_valid_distinct_and_alternate_brands() {
        let a = card_pan(42, 0);
        let b = card_pan(42, 1);
        assert_eq!(a.len(), 16);
        assert!(a.starts_with("400042") && b.starts_with("500042"));
        assert_ne!(card_pan(42, 2), card_pan(43, 2));
        for pan in [&a, &b] {
            assert_eq!(luhn_check_digit(&pan[..15]), char::from(pan.as_bytes()[15]));
        }
    }
}
