//! The merchant's book of cards on file: each token it holds with the last digits it knows, the
//! token PANs it keeps ([`TokenPans`], discarded when an update changes a token's last digits),
//! and what its payments did. The receiver's hooks feed it the hub's updates; the merchant
//! ([`super::merchant`]) its tokenizations, payments and authorizations.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use tokenhub_receiver::{Credentials, TokenPans, TokenUpdate};

use crate::tsp::{Authorization, AuthorizationAnswer};

/// What the merchant did and saw, as `GET /sim/merchant` serves it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MerchantStats {
    /// Cards tokenized (tokens on file).
    pub tokenized: u64,
    /// Tokenizations the hub or the TSP refused, or that failed.
    pub tokenize_failed: u64,
    /// Payments authorized by the TSP.
    pub approved: u64,
    /// Payments the TSP declined, by its reason.
    pub declined: BTreeMap<String, u64>,
    /// Payments that got no credentials or no answer (the hub refused Create Transaction, or an
    /// endpoint could not be reached).
    pub payment_errors: u64,
    /// Updates that changed the last digits of a token on file (a renewal at the TSP).
    pub renewals_seen: u64,
    /// Token PANs kept and discarded on such an update.
    pub pans_discarded: u64,
    /// Payments after a renewal whose Create Transaction gave a token PAN ending with the new
    /// last digits.
    pub pans_refetched: u64,
    /// Payments after a renewal whose token PAN did not end with the new last digits.
    pub refetch_mismatches: u64,
    /// Authorizations sent again as they were.
    pub replays: u64,
    /// Replays the TSP declined.
    pub replays_declined: u64,
}

impl MerchantStats {
    /// Every declined payment.
    pub fn declined_total(&self) -> u64 {
        self.declined.values().sum()
    }
}

/// One token on file.
struct OnFile {
    /// The card's number in the merchant's sequence (its PAN derives from it).
    card_index: u64,
    /// The token PAN's last digits as last known (tokenization, then updates).
    last_digits: Option<String>,
    /// The last digits changed since the last payment: the next one fetches the new PAN.
    renewed: bool,
    /// The last authorization sent, kept for the replay check (in memory only).
    last_authorization: Option<Authorization>,
}

#[derive(Default)]
struct Inner {
    tokens: BTreeMap<String, OnFile>,
    /// Token ids in the order they were tokenized.
    order: Vec<String>,
    stats: MerchantStats,
}

/// The merchant's book, shared by the merchant and the receiver's hooks.
#[derive(Default)]
pub(crate) struct Book {
    pub(crate) pans: TokenPans,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Book {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Book").finish_non_exhaustive()
    }
}

impl Book {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn stats(&self) -> MerchantStats {
        let mut stats = self.lock().stats.clone();
        stats.pans_discarded = self.pans.discarded();
        stats
    }

    /// The tokens on file, in the order they were tokenized.
    pub(crate) fn token_ids(&self) -> Vec<String> {
        self.lock().order.clone()
    }

    pub(crate) fn tokenized(&self, token_id: &str, card_index: u64, last_digits: Option<String>) {
        let mut inner = self.lock();
        if inner.tokens.contains_key(token_id) {
            return;
        }
        inner.tokens.insert(
            token_id.to_string(),
            OnFile {
                card_index,
                last_digits,
                renewed: false,
                last_authorization: None,
            },
        );
        inner.order.push(token_id.to_string());
        inner.stats.tokenized += 1;
    }

    pub(crate) fn tokenize_failed(&self) {
        self.lock().stats.tokenize_failed += 1;
    }

    pub(crate) fn card_index(&self, token_id: &str) -> Option<u64> {
        self.lock().tokens.get(token_id).map(|t| t.card_index)
    }

    /// A payment got its credentials: after a renewal, they must carry the new PAN.
    pub(crate) fn credentials(&self, token_id: &str, credentials: &Credentials) {
        let mut inner = self.lock();
        let Some(t) = inner.tokens.get_mut(token_id) else {
            return;
        };
        if !std::mem::take(&mut t.renewed) {
            return;
        }
        let fits = t
            .last_digits
            .as_deref()
            .is_some_and(|d| credentials.token_pan.ends_with(d));
        if fits {
            inner.stats.pans_refetched += 1;
        } else {
            inner.stats.refetch_mismatches += 1;
        }
    }

    pub(crate) fn payment_error(&self) {
        self.lock().stats.payment_errors += 1;
    }

    /// The TSP's answer to a payment's authorization.
    pub(crate) fn authorized(
        &self,
        token_id: &str,
        authorization: Authorization,
        answer: &AuthorizationAnswer,
    ) {
        let mut inner = self.lock();
        if let Some(t) = inner.tokens.get_mut(token_id) {
            t.last_authorization = Some(authorization);
        }
        if answer.approved {
            inner.stats.approved += 1;
        } else {
            *inner
                .stats
                .declined
                .entry(answer.reason.clone())
                .or_default() += 1;
        }
    }

    /// The last authorization of `token_id`, or of the first token that has one.
    pub(crate) fn last_authorization(
        &self,
        token_id: Option<&str>,
    ) -> Option<(String, Authorization)> {
        let inner = self.lock();
        let found = |id: &String| {
            let auth = inner.tokens.get(id)?.last_authorization.clone()?;
            Some((id.clone(), auth))
        };
        match token_id {
            Some(id) => found(&id.to_string()),
            None => inner.order.iter().find_map(found),
        }
    }

    pub(crate) fn replayed(&self, answer: &AuthorizationAnswer) {
        let mut inner = self.lock();
        inner.stats.replays += 1;
        if !answer.approved {
            inner.stats.replays_declined += 1;
        }
    }

    /// An update was applied: new last digits on a token on file are a renewal; a kept PAN
    /// that does not end with them is discarded.
    pub(crate) fn on_update(&self, update: &TokenUpdate) {
        if let Some(digits) = update.token_last_digits.as_deref() {
            let mut inner = self.lock();
            let renewed = match inner.tokens.get_mut(&update.token_id) {
                Some(t) if t.last_digits.as_deref() != Some(digits) => {
                    t.last_digits = Some(digits.to_string());
                    t.renewed = true;
                    true
                }
                _ => false,
            };
            if renewed {
                inner.stats.renewals_seen += 1;
                tracing::info!(token_id = %update.token_id, "merchant: new token last digits; the kept token PAN is discarded");
            }
        }
        tokenhub_receiver::Hooks::on_update(&self.pans, update);
    }

    pub(crate) fn discard_token_pan(&self, token_id: &str) {
        tokenhub_receiver::Hooks::discard_token_pan(&self.pans, token_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(token_id: &str, digits: &str) -> TokenUpdate {
        TokenUpdate::from_json(
            format!(
                r#"{{"tokenId":"{token_id}","merchantId":"M","tokenLastDigits":"{digits}",
                    "lastUpdateTimestamp":"2026-01-01T00:00:00.000Z"}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn credentials(pan: &str) -> Credentials {
        Credentials {
            token_id: "T1".into(),
            token_pan: pan.into(),
            token_expiry_date: "1229".into(),
            cryptogram: "00".into(),
            eci: "07".into(),
        }
    }

    #[test]
    fn new_last_digits_are_a_renewal_once_and_the_next_payment_must_carry_them() {
        let book = Book::default();
        book.tokenized("T1", 0, Some("1234".into()));
        book.on_update(&update("T1", "1234"));
        book.on_update(&update("OTHER", "9999"));
        assert_eq!(book.stats().renewals_seen, 0);
        book.on_update(&update("T1", "5678"));
        book.on_update(&update("T1", "5678"));
        assert_eq!(book.stats().renewals_seen, 1);
        book.credentials("T1", &credentials("4895370000005678"));
        book.credentials("T1", &credentials("4895370000005678"));
        let stats = book.stats();
        assert_eq!((stats.pans_refetched, stats.refetch_mismatches), (1, 0));
        book.on_update(&update("T1", "0000"));
        book.credentials("T1", &credentials("4895370000005678"));
        assert_eq!(book.stats().refetch_mismatches, 1);
    }

    #[test]
    fn answers_are_counted_and_the_last_authorization_kept() {
        let book = Book::default();
        book.tokenized("T1", 0, None);
        book.tokenized("T1", 0, None);
        assert_eq!(book.token_ids(), ["T1"]);
        assert!(book.last_authorization(None).is_none());
        let auth = Authorization {
            token_pan: "4895370000001234".into(),
            token_expiry_date: "1229".into(),
            cryptogram: "AB".into(),
            amount: "100".into(),
            currency: "EUR".into(),
            transaction_type: "MIT_RECURRING".into(),
            merchant_id: "M".into(),
        };
        let approved = AuthorizationAnswer {
            approved: true,
            reason: "APPROVED".into(),
        };
        let replay = AuthorizationAnswer {
            approved: false,
            reason: "REPLAY".into(),
        };
        book.authorized("T1", auth.clone(), &approved);
        book.authorized("T1", auth.clone(), &replay);
        book.replayed(&replay);
        assert_eq!(book.last_authorization(None), Some(("T1".into(), auth)));
        let stats = book.stats();
        assert_eq!(stats.approved, 1);
        assert_eq!(stats.declined_total(), 1);
        assert_eq!((stats.replays, stats.replays_declined), (1, 1));
        assert_eq!(book.stats().tokenized, 1);
    }
}
