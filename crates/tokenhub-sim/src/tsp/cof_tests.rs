//! The card-on-file vault's unit tests.
use super::*;

const TODAY: YearMonth = YearMonth {
    year: 2026,
    month: 6,
};

fn card(pan: &str) -> Card {
    Card {
        fpan: Zeroizing::new(pan.to_string()),
        expiry: YearMonth {
            year: 2028,
            month: 1,
        },
    }
}

fn terms(amount: &str) -> TxnTerms {
    TxnTerms {
        amount: amount.into(),
        currency: "EUR".into(),
        kind: "CIT_ECOM".into(),
        merchant_id: "M1".into(),
    }
}

fn luhn(pan: &str) -> bool {
    luhn_check_digit(&pan[..pan.len() - 1]) == char::from(pan.as_bytes()[pan.len() - 1])
}

#[test]
fn cards_are_refused_with_the_contract_codes() {
    let check = |pan: &str| check_card(&card(pan), TODAY).map_err(CardRefusal::code);
    assert_eq!(check("4111111111111111"), Ok(Brand::Visa));
    assert_eq!(check("5555555555554444"), Ok(Brand::Mastercard));
    assert_eq!(check("4111111111111112"), Err(166), "Luhn");
    assert_eq!(check("41111"), Err(166));
    assert_eq!(check("6011111111111117"), Err(115));
    assert_eq!(check("378282246310005"), Err(163));
    let mut expired = card("4111111111111111");
    expired.expiry = YearMonth {
        year: 2026,
        month: 5,
    };
    assert_eq!(check_card(&expired, TODAY), Err(CardRefusal::InvalidCard));
}

#[test]
fn token_pans_are_in_the_brand_range_and_luhn_valid() {
    let vault = CofVault::default();
    let made = vault
        .create("R1", "ISSUER0001", "c1", card("5555555555554444"), TODAY)
        .unwrap();
    let creds = vault
        .credentials(&made.token_id, "R1", &terms("100"))
        .unwrap()
        .unwrap();
    assert!(creds.token_pan.starts_with("520473"));
    assert!(luhn(&creds.token_pan));
    assert_eq!(creds.token_pan[12..], made.token_last4);
    assert_eq!(made.card_last4, "4444");
}

#[test]
fn enrolment_is_once_per_requestor_and_card_and_limited_per_card() {
    let vault = CofVault::default();
    let pan = "4111111111111111";
    let first = vault.create("R1", "I", "c1", card(pan), TODAY).unwrap();
    let again = vault.create("R1", "I", "c1", card(pan), TODAY).unwrap();
    assert!(again.replay);
    assert_eq!(again.token_id, first.token_id);
    let code = |r: Result<CofCreated, CardRefusal>| r.err().map(CardRefusal::code);
    assert_eq!(
        code(vault.create("R1", "I", "c2", card(pan), TODAY)),
        Some(167)
    );
    vault.create("R2", "I", "c3", card(pan), TODAY).unwrap();
    vault.create("R3", "I", "c4", card(pan), TODAY).unwrap();
    assert_eq!(
        code(vault.create("R4", "I", "c5", card(pan), TODAY)),
        Some(164)
    );
    assert_eq!(vault.delete(&first.token_id, "R1"), Some(true));
    assert!(vault.create("R4", "I", "c6", card(pan), TODAY).is_ok());
}

#[test]
fn a_cryptogram_authorizes_its_own_terms_exactly_once() {
    let vault = CofVault::default();
    let t = vault
        .create("R1", "I", "c1", card("4111111111111111"), TODAY)
        .unwrap();
    let c = vault
        .credentials(&t.token_id, "R1", &terms("100"))
        .unwrap()
        .unwrap();
    let auth = |pan: &str, exp: &str, crypto: &str, amount: &str| {
        vault.authorize(pan, exp, crypto, &terms(amount))
    };
    let (pan, exp, crypto) = (&c.token_pan, &c.token_expiry_date, &c.cryptogram);
    assert_eq!(auth(pan, exp, crypto, "101"), AuthReason::BadCryptogram);
    let mut other_merchant = terms("100");
    other_merchant.merchant_id = "M2".into();
    assert_eq!(
        vault.authorize(pan, exp, crypto, &other_merchant),
        AuthReason::BadCryptogram
    );
    assert_eq!(auth(pan, "0101", crypto, "100"), AuthReason::ExpiryMismatch);
    assert_eq!(
        auth("4111111111111111", exp, crypto, "100"),
        AuthReason::UnknownToken
    );
    assert_eq!(auth(pan, exp, crypto, "100"), AuthReason::Approved);
    assert_eq!(auth(pan, exp, crypto, "100"), AuthReason::Replay);
    assert!(vault.credentials(&t.token_id, "R2", &terms("1")).is_none());
}

#[test]
fn a_renewal_changes_the_pan_and_voids_the_old_one() {
    let vault = CofVault::default();
    let t = vault
        .create("R1", "I", "c1", card("4111111111111111"), TODAY)
        .unwrap();
    let old = vault
        .credentials(&t.token_id, "R1", &terms("100"))
        .unwrap()
        .unwrap();
    let renewed = vault.renew(&t.token_id, TODAY).unwrap();
    assert_ne!(renewed.token_last4, t.token_last4);
    let new = vault
        .credentials(&t.token_id, "R1", &terms("100"))
        .unwrap()
        .unwrap();
    assert_ne!(new.token_pan, old.token_pan);
    assert!(luhn(&new.token_pan) && new.token_pan.starts_with("489537"));
    let t100 = terms("100");
    assert_eq!(
        vault.authorize(
            &old.token_pan,
            &old.token_expiry_date,
            &old.cryptogram,
            &t100
        ),
        AuthReason::UnknownToken
    );
    assert_eq!(
        vault.authorize(
            &new.token_pan,
            &new.token_expiry_date,
            &new.cryptogram,
            &t100
        ),
        AuthReason::Approved
    );
    let mut used = vault.pans_used();
    used.sort();
    let mut expected = vec!["4111111111111111".to_string(), old.token_pan, new.token_pan];
    expected.sort();
    assert_eq!(used, expected, "the card PAN and both token PANs");
    vault.delete(&t.token_id, "R1");
    assert_eq!(
        vault.credentials(&t.token_id, "R1", &t100).unwrap().err(),
        Some(TspTokenState::Deleted)
    );
}
