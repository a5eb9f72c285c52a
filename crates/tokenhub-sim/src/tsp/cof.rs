//! Tokens for cards on file (a merchant's or PSP's stored card): created from a card the
//! requestor encrypted to the TSP (`card_key`), each with a token PAN in its brand's token range
//! (Luhn-valid) and a token key. Every transaction's cryptogram is the AES-CMAC of the token key
//! over the token PAN, its expiry, the ATC and the transaction's amount, currency, type and
//! merchant: it authorizes that one transaction once (`authorizations`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use aes::Aes128;
use cmac::{Cmac, Mac};
use rand::Rng;
use serde::Serialize;
use zeroize::Zeroizing;

use super::elements::{luhn_check_digit, new_token_id, YearMonth};
use super::vault::TspTokenState;

/// How many live tokens one card may have across requestors (more: 164).
pub const MAX_TOKENS_PER_CARD: usize = 3;
/// How many issued cryptograms a token remembers, oldest forgotten first.
const MAX_ISSUED: usize = 64;
const TOKEN_PAN_LEN: usize = 16;
const TOKEN_LIFETIME_YEARS: u16 = 3;

/// A card's network, from its PAN's first digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Brand {
    Visa,
    Mastercard,
}

impl Brand {
    /// The simulated network's token range for the brand.
    fn token_bin(self) -> &'static str {
        match self {
            Self::Visa => "489537",
            Self::Mastercard => "520473",
        }
    }
}

/// Why a card cannot be tokenized, with the contract's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardRefusal {
    /// 115: the range is not one the TSP knows.
    UnknownProduct,
    /// 163: a range the TSP knows but does not tokenize.
    NotSupported,
    /// 164: the card has [`MAX_TOKENS_PER_CARD`] live tokens already.
    TooManyTokens,
    /// 166: not a card number (length, digits, Luhn) or expired.
    InvalidCard,
    /// 167: this requestor has a live token for this card already.
    AlreadyEnrolled,
}

impl CardRefusal {
    pub fn code(self) -> u16 {
        match self {
            Self::UnknownProduct => 115,
            Self::NotSupported => 163,
            Self::TooManyTokens => 164,
            Self::InvalidCard => 166,
            Self::AlreadyEnrolled => 167,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::UnknownProduct => "unknown product",
            Self::NotSupported => "product not supported for tokenization",
            Self::TooManyTokens => "FPAN provisioning count exceeded",
            Self::InvalidCard => "invalid FPAN",
            Self::AlreadyEnrolled => "card already enrolled",
        }
    }
}

/// The card as the requestor sent it, opened.
pub(crate) struct Card {
    pub(crate) fpan: Zeroizing<String>,
    pub(crate) expiry: YearMonth,
}

/// The brand of a card, or why it cannot be tokenized (length, digits and Luhn first).
pub(crate) fn check_card(card: &Card, today: YearMonth) -> Result<Brand, CardRefusal> {
    let pan = card.fpan.as_str();
    if !(13..=19).contains(&pan.len()) || !pan.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CardRefusal::InvalidCard);
    }
    if luhn_check_digit(&pan[..pan.len() - 1]) != char::from(pan.as_bytes()[pan.len() - 1]) {
        return Err(CardRefusal::InvalidCard);
    }
    if card.expiry < today {
        return Err(CardRefusal::InvalidCard);
    }
    match pan.as_bytes()[0] {
        b'4' => Ok(Brand::Visa),
        b'5' => Ok(Brand::Mastercard),
        b'6' => Err(CardRefusal::UnknownProduct),
        _ => Err(CardRefusal::NotSupported),
    }
}

/// What a transaction's cryptogram is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnTerms {
    /// Minor units, 1..12 digits.
    pub(crate) amount: String,
    /// ISO 4217 alphabetic code.
    pub(crate) currency: String,
    pub(crate) kind: String,
    pub(crate) merchant_id: String,
}

struct Issued {
    atc: u32,
    cryptogram: String,
    used: bool,
}

/// One card-on-file token.
pub(crate) struct CofToken {
    pub(crate) token_id: String,
    pub(crate) requestor_id: String,
    pub(crate) issuer_id: String,
    pub(crate) state: TspTokenState,
    fpan: Zeroizing<String>,
    pub(crate) card_expiry: YearMonth,
    brand: Brand,
    token_pan: Zeroizing<String>,
    pub(crate) token_expiry: YearMonth,
    key: Zeroizing<[u8; 16]>,
    atc: u32,
    issued: Vec<Issued>,
    /// The `x-correlation-id` of the createToken that made it: a repeat gets it back.
    correlation_id: String,
}

impl CofToken {
    pub(crate) fn token_last4(&self) -> String {
        self.token_pan[TOKEN_PAN_LEN - 4..].to_string()
    }

    pub(crate) fn card_last4(&self) -> String {
        self.fpan[self.fpan.len() - 4..].to_string()
    }

    fn live(&self) -> bool {
        self.state != TspTokenState::Deleted
    }

    fn cryptogram(&self, atc: u32, terms: &TxnTerms) -> String {
        let mut mac = <Cmac<Aes128> as Mac>::new_from_slice(&self.key[..]).expect("16-byte key");
        for part in [
            self.token_pan.as_bytes(),
            self.token_expiry.mmyy().as_bytes(),
            &atc.to_be_bytes(),
            terms.amount.as_bytes(),
            terms.currency.as_bytes(),
            terms.kind.as_bytes(),
            terms.merchant_id.as_bytes(),
        ] {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        hex::encode_upper(mac.finalize().into_bytes())
    }
}

/// A transaction's credentials: what the requestor puts in its authorization request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Credentials {
    pub(crate) token_pan: String,
    pub(crate) token_expiry_date: String,
    pub(crate) cryptogram: String,
    pub(crate) eci: &'static str,
    pub(crate) atc: u32,
}

impl std::fmt::Debug for CofToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CofToken")
            .field("token_id", &self.token_id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// What an authorization found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthReason {
    Approved,
    UnknownToken,
    TokenNotActive,
    ExpiryMismatch,
    BadCryptogram,
    /// The cryptogram was used already.
    Replay,
}

impl AuthReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "APPROVED",
            Self::UnknownToken => "UNKNOWN_TOKEN",
            Self::TokenNotActive => "TOKEN_NOT_ACTIVE",
            Self::ExpiryMismatch => "EXPIRY_MISMATCH",
            Self::BadCryptogram => "BAD_CRYPTOGRAM",
            Self::Replay => "REPLAY",
        }
    }
}

#[derive(Default)]
struct Inner {
    tokens: HashMap<String, CofToken>,
    /// Token PAN → token id, for authorizations.
    by_pan: HashMap<String, String>,
    /// Token PANs renewals replaced.
    retired: Vec<Zeroizing<String>>,
}

/// Every card-on-file token, in memory.
#[derive(Default)]
pub(crate) struct CofVault {
    inner: Mutex<Inner>,
}

/// What [`CofVault::create`] did.
pub(crate) struct CofCreated {
    pub(crate) token_id: String,
    pub(crate) issuer_id: String,
    pub(crate) token_last4: String,
    pub(crate) token_expiry: String,
    pub(crate) card_last4: String,
    pub(crate) card_expiry: String,
    pub(crate) replay: bool,
}

/// What [`CofVault::renew`] changed.
pub(crate) struct Renewed {
    pub(crate) issuer_id: String,
    pub(crate) token_last4: String,
    pub(crate) token_expiry: String,
}

fn token_pan(rng: &mut impl Rng, brand: Brand) -> Zeroizing<String> {
    let mut pan = Zeroizing::new(String::with_capacity(TOKEN_PAN_LEN));
    pan.push_str(brand.token_bin());
    while pan.len() < TOKEN_PAN_LEN - 1 {
        pan.push(char::from(b'0' + rng.gen_range(0..10u8)));
    }
    let check = luhn_check_digit(&pan);
    pan.push(check);
    pan
}

impl CofVault {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tokenizes `card` for `requestor_id`; the same `correlation_id` from the same requestor
    /// gets the token it made back.
    pub(crate) fn create(
        &self,
        requestor_id: &str,
        issuer_id: &str,
        correlation_id: &str,
        card: Card,
        today: YearMonth,
    ) -> Result<CofCreated, CardRefusal> {
        let mut inner = self.lock();
        if let Some(t) = inner
            .tokens
            .values()
            .find(|t| t.correlation_id == correlation_id && t.requestor_id == requestor_id)
        {
            return Ok(created(t, true));
        }
        let brand = check_card(&card, today)?;
        let of_card: Vec<&CofToken> = inner
            .tokens
            .values()
            .filter(|t| t.live() && *t.fpan == *card.fpan)
            .collect();
        if of_card.iter().any(|t| t.requestor_id == requestor_id) {
            return Err(CardRefusal::AlreadyEnrolled);
        }
        if of_card.len() >= MAX_TOKENS_PER_CARD {
            return Err(CardRefusal::TooManyTokens);
        }
        let mut rng = rand::thread_rng();
        let mut key = Zeroizing::new([0u8; 16]);
        rng.fill(&mut key[..]);
        let token = CofToken {
            token_id: new_token_id(&mut rng),
            requestor_id: requestor_id.to_string(),
            issuer_id: issuer_id.to_string(),
            state: TspTokenState::Active,
            fpan: card.fpan,
            card_expiry: card.expiry,
            brand,
            token_pan: token_pan(&mut rng, brand),
            token_expiry: today.plus_years(TOKEN_LIFETIME_YEARS),
            key,
            atc: 0,
            issued: Vec::new(),
            correlation_id: correlation_id.to_string(),
        };
        let answer = created(&token, false);
        inner
            .by_pan
            .insert(token.token_pan.to_string(), token.token_id.clone());
        inner.tokens.insert(token.token_id.clone(), token);
        Ok(answer)
    }

    /// Runs `f` on the token if `requestor_id` is its requestor (`None` otherwise, as for an
    /// unknown token).
    pub(crate) fn with_token<R>(
        &self,
        token_id: &str,
        requestor_id: Option<&str>,
        f: impl FnOnce(&mut CofToken) -> R,
    ) -> Option<R> {
        let mut inner = self.lock();
        let token = inner.tokens.get_mut(token_id)?;
        if requestor_id.is_some_and(|r| r != token.requestor_id) {
            return None;
        }
        Some(f(token))
    }

    /// The next transaction's credentials; `Err(state)` when the token is not ACTIVE.
    pub(crate) fn credentials(
        &self,
        token_id: &str,
        requestor_id: &str,
        terms: &TxnTerms,
    ) -> Option<Result<Credentials, TspTokenState>> {
        self.with_token(token_id, Some(requestor_id), |t| {
            if t.state != TspTokenState::Active {
                return Err(t.state);
            }
            t.atc += 1;
            let cryptogram = t.cryptogram(t.atc, terms);
            if t.issued.len() >= MAX_ISSUED {
                t.issued.remove(0);
            }
            t.issued.push(Issued {
                atc: t.atc,
                cryptogram: cryptogram.clone(),
                used: false,
            });
            let eci = match (t.brand, terms.kind.as_str()) {
                (_, "CIT_ECOM") => "05",
                (Brand::Visa, _) => "07",
                (Brand::Mastercard, _) => "06",
            };
            Ok(Credentials {
                token_pan: t.token_pan.to_string(),
                token_expiry_date: t.token_expiry.mmyy(),
                cryptogram,
                eci,
                atc: t.atc,
            })
        })
    }

    /// Checks an authorization: the token PAN is a token's, ACTIVE, its expiry the token's, the
    /// cryptogram one issued for exactly these terms and never used. An approval uses it up.
    pub(crate) fn authorize(
        &self,
        token_pan: &str,
        expiry: &str,
        cryptogram: &str,
        terms: &TxnTerms,
    ) -> AuthReason {
        let mut inner = self.lock();
        let Some(id) = inner.by_pan.get(token_pan).cloned() else {
            return AuthReason::UnknownToken;
        };
        let Some(t) = inner.tokens.get_mut(&id) else {
            return AuthReason::UnknownToken;
        };
        if t.state != TspTokenState::Active {
            return AuthReason::TokenNotActive;
        }
        if t.token_expiry.mmyy() != expiry {
            return AuthReason::ExpiryMismatch;
        }
        let Some(i) = t.issued.iter().position(|i| i.cryptogram == cryptogram) else {
            return AuthReason::BadCryptogram;
        };
        if t.cryptogram(t.issued[i].atc, terms) != cryptogram {
            return AuthReason::BadCryptogram;
        }
        if t.issued[i].used {
            return AuthReason::Replay;
        }
        t.issued[i].used = true;
        AuthReason::Approved
    }

    /// Renews the token: a new token PAN (new last digits) and expiry; cryptograms issued for the
    /// old PAN no longer authorize. `None` for an unknown or deleted token.
    pub(crate) fn renew(&self, token_id: &str, today: YearMonth) -> Option<Renewed> {
        let mut inner = self.lock();
        let t = inner.tokens.get_mut(token_id)?;
        if !t.live() {
            return None;
        }
        let old = t.token_pan.to_string();
        let mut rng = rand::thread_rng();
        loop {
            t.token_pan = token_pan(&mut rng, t.brand);
            if t.token_last4() != old[TOKEN_PAN_LEN - 4..] {
                break;
            }
        }
        t.token_expiry = today.plus_years(TOKEN_LIFETIME_YEARS + 1);
        t.issued.clear();
        let renewed = Renewed {
            issuer_id: t.issuer_id.clone(),
            token_last4: t.token_last4(),
            token_expiry: t.token_expiry.mmyy(),
        };
        let new = t.token_pan.to_string();
        inner.by_pan.remove(&old);
        inner.by_pan.insert(new, token_id.to_string());
        inner.retired.push(Zeroizing::new(old));
        Some(renewed)
    }

    /// Every card PAN and token PAN (current or replaced by a renewal) the vault holds.
    pub(crate) fn pans_used(&self) -> Vec<String> {
        let inner = self.lock();
        let mut pans: Vec<String> = inner
            .tokens
            .values()
            .flat_map(|t| [t.fpan.to_string(), t.token_pan.to_string()])
            .collect();
        pans.extend(inner.retired.iter().map(|p| p.to_string()));
        pans
    }

    /// Deletes the token for its requestor; `Some(false)` when it was deleted already.
    pub(crate) fn delete(&self, token_id: &str, requestor_id: &str) -> Option<bool> {
        self.with_token(token_id, Some(requestor_id), |t| {
            let was_live = t.live();
            t.state = TspTokenState::Deleted;
            was_live
        })
    }
}

fn created(t: &CofToken, replay: bool) -> CofCreated {
    CofCreated {
        token_id: t.token_id.clone(),
        issuer_id: t.issuer_id.clone(),
        token_last4: t.token_last4(),
        token_expiry: t.token_expiry.mmyy(),
        card_last4: t.card_last4(),
        card_expiry: t.card_expiry.mmyy(),
        replay,
    }
}

#[cfg(test)]
#[path = "cof_tests.rs"]
mod tests;
