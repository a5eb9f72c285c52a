//! The data preparation the simulated TSP generates for each token, in clear (the TSP owns it and
//! keeps it, to validate cryptograms and to recover it for a re-personalization) and in its wire
//! form (`tokenPersoInfo`: card master keys under the KEK, track 2 under the DEK, PSN and PAR plain).
//!
//! Generation takes the RNG and the current month as arguments so that tests can pin both.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokenhub_crypto::{encrypt_cbc_m2, Algorithm, CryptoError, KeySet, KeySetError};
use zeroize::Zeroizing;

/// Card master key for application cryptograms (contactless and in-store), encrypted under the KEK.
pub const CMK_AC: &str = "cmk_ac";
/// Card master key for remote payment (in-app, e-commerce) cryptograms, encrypted under the KEK.
pub const CMK_RP: &str = "cmk_rp";
/// Track 2 equivalent data as packed nibbles, encrypted under the DEK.
pub const TRACK2_DATA: &str = "track2_data";
/// PAN sequence number, two plain digits.
pub const PSN: &str = "psn";
/// Payment account reference, 29 plain uppercase alphanumerics.
pub const PAR: &str = "par";
/// Every element the simulator sends, in the order it sends them.
pub const ELEMENT_NAMES: [&str; 5] = [CMK_AC, CMK_RP, TRACK2_DATA, PSN, PAR];

/// The token BIN of the simulated network (a Mastercard-like range used for tests only).
const TOKEN_BIN: &str = "555544";
const PAN_LEN: usize = 16;
/// "International interchange, online authorization, no restrictions": what wallets' tokens carry.
pub const SERVICE_CODE: &str = "201";
/// 16 (PAN) + 1 (D) + 4 (YYMM) + 3 (service code) + 11 = 35 nibbles, so one `F` pads it to 18 bytes,
/// within track 2 equivalent data's 19-byte maximum (EMV tag 57).
pub const DISCRETIONARY_DIGITS: usize = 11;
/// Network tokens usually live about three years (DOMAIN.md).
const TOKEN_LIFETIME_YEARS: u16 = 3;
const PAR_LEN: usize = 29;
const PAR_ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// "TKN" + 29 hex digits = 32 characters, well within tokenId's 1..48.
const TOKEN_ID_HEX_DIGITS: usize = 29;

/// A calendar month, for expiry dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct YearMonth {
    /// Full year, e.g. 2028.
    pub year: u16,
    /// 1..=12.
    pub month: u8,
}

impl YearMonth {
    /// The current month in UTC, from the system clock.
    pub fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self::from_days_since_epoch((secs / 86_400) as i64)
    }

    /// The month holding the given day (days since 1970-01-01), by Howard Hinnant's
    /// `civil_from_days`, so that the simulator needs no date crate.
    pub fn from_days_since_epoch(days: i64) -> Self {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self {
            year: year.clamp(0, 9999) as u16,
            month: month as u8,
        }
    }

    pub fn plus_years(self, years: u16) -> Self {
        Self {
            year: self.year.saturating_add(years),
            month: self.month,
        }
    }

    /// `MMYY`, as `tokenInfo.exp` carries it.
    pub fn mmyy(self) -> String {
        format!("{:02}{:02}", self.month, self.year % 100)
    }

    /// `YYMM`, as track 2 carries it.
    pub fn yymm(self) -> String {
        format!("{:02}{:02}", self.year % 100, self.month)
    }
}

/// The key-set keys the simulator encrypts with, resolved and checked once at start-up.
pub struct SimKeys {
    kek: WrappingKey,
    dek: WrappingKey,
}

struct WrappingKey {
    key_index: String,
    algorithm: Algorithm,
    bytes: Zeroizing<Vec<u8>>,
}

/// Why a key set cannot drive the simulator; never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("the key set has no key with purpose {0:?}")]
    Missing(&'static str),
    #[error("key {key_index:?} is unusable: {source}")]
    Invalid {
        key_index: String,
        source: KeySetError,
    },
}

impl SimKeys {
    /// Takes the first `kek` and the first `dek` of the set, checking each against its KCV.
    pub fn from_key_set(keys: &KeySet) -> Result<Self, KeysError> {
        let resolve = |purpose: &'static str| -> Result<WrappingKey, KeysError> {
            let key = keys
                .by_purpose(purpose)
                .ok_or(KeysError::Missing(purpose))?;
            let bytes = key.key_bytes().map_err(|source| KeysError::Invalid {
                key_index: key.key_index.clone(),
                source,
            })?;
            Ok(WrappingKey {
                key_index: key.key_index.clone(),
                algorithm: key.algorithm,
                bytes,
            })
        };
        Ok(Self {
            kek: resolve("kek")?,
            dek: resolve("dek")?,
        })
    }
}

impl std::fmt::Debug for SimKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimKeys")
            .field("kek", &self.kek.key_index)
            .field("dek", &self.dek.key_index)
            .finish_non_exhaustive()
    }
}

/// One entry of `tokenPersoInfo` as it travels.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersoElement {
    pub name: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_index: Option<String>,
}

impl std::fmt::Debug for PersoElement {
    // Values are keys and track 2 (under encryption, but still): never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersoElement")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("key_index", &self.key_index)
            .finish()
    }
}

/// What the wallet shows of a token: `tokenInfo` of createToken's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Token expiry, MMYY.
    pub exp: String,
    /// Last four digits of the token PAN.
    pub last4: String,
}

/// Track 2 equivalent data: PAN, separator `D`, expiry YYMM, service code, discretionary data.
#[derive(Clone)]
pub struct Track2 {
    pan: Zeroizing<String>,
    expiry: YearMonth,
    discretionary: Zeroizing<String>,
}

impl Track2 {
    pub fn pan(&self) -> &str {
        &self.pan
    }

    pub fn expiry(&self) -> YearMonth {
        self.expiry
    }

    /// The nibbles as hex characters, padded with `F` to a whole number of bytes.
    pub fn nibbles(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(38));
        s.push_str(&self.pan);
        s.push('D');
        s.push_str(&self.expiry.yymm());
        s.push_str(SERVICE_CODE);
        s.push_str(&self.discretionary);
        if s.len() % 2 == 1 {
            s.push('F');
        }
        s
    }

    /// The packed bytes (two nibbles a byte). `D` and `F` are hex digits, so packing is a hex decode.
    pub fn packed(&self) -> Zeroizing<Vec<u8>> {
        // Only digits, `D` and `F` are ever pushed, and the length is even: this cannot fail.
        Zeroizing::new(hex::decode(self.nibbles().as_bytes()).unwrap_or_default())
    }
}

impl std::fmt::Debug for Track2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Track2(<redacted>)")
    }
}

/// Everything the TSP generated for one token, in clear. Held only in the simulator's memory.
#[derive(Clone)]
pub struct ClearElements {
    pub cmk_ac: Zeroizing<[u8; 16]>,
    pub cmk_rp: Zeroizing<[u8; 16]>,
    pub track2: Track2,
    pub psn: String,
    pub par: String,
}

impl std::fmt::Debug for ClearElements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClearElements(<redacted>)")
    }
}

impl ClearElements {
    /// Fresh data for a new token expiring `TOKEN_LIFETIME_YEARS` after `today`.
    pub fn generate(rng: &mut impl Rng, today: YearMonth) -> Self {
        let mut cmk_ac = Zeroizing::new([0u8; 16]);
        let mut cmk_rp = Zeroizing::new([0u8; 16]);
        rng.fill(&mut cmk_ac[..]);
        rng.fill(&mut cmk_rp[..]);
        let track2 = Track2 {
            pan: Zeroizing::new(token_pan(rng)),
            expiry: today.plus_years(TOKEN_LIFETIME_YEARS),
            discretionary: Zeroizing::new(digits(rng, DISCRETIONARY_DIGITS)),
        };
        let par = (0..PAR_LEN)
            .map(|_| char::from(PAR_ALPHABET[rng.gen_range(0..PAR_ALPHABET.len())]))
            .collect();
        Self {
            cmk_ac,
            cmk_rp,
            track2,
            psn: format!("{:02}", rng.gen_range(0..100u8)),
            par,
        }
    }

    /// What createToken answers: the same expiry and last digits as the token PAN in track 2.
    pub fn token_info(&self) -> TokenInfo {
        let pan = self.track2.pan();
        TokenInfo {
            exp: self.track2.expiry.mmyy(),
            last4: pan[pan.len().saturating_sub(4)..].to_string(),
        }
    }

    /// The wire form, in [`ELEMENT_NAMES`] order. Encryption is deterministic (CBC, zero IV), so
    /// the same clear data always gives the same values: what a recovery for re-personalization
    /// needs.
    pub fn to_wire(&self, keys: &SimKeys) -> Result<Vec<PersoElement>, CryptoError> {
        let encrypted = |name: &str, key: &WrappingKey, clear: &[u8]| {
            encrypt_cbc_m2(key.algorithm, &key.bytes, clear).map(|ct| PersoElement {
                name: name.to_string(),
                value: hex::encode_upper(ct),
                key_index: Some(key.key_index.clone()),
            })
        };
        let plain = |name: &str, value: &str| PersoElement {
            name: name.to_string(),
            value: value.to_string(),
            key_index: None,
        };
        Ok(vec![
            encrypted(CMK_AC, &keys.kek, &self.cmk_ac[..])?,
            encrypted(CMK_RP, &keys.kek, &self.cmk_rp[..])?,
            encrypted(TRACK2_DATA, &keys.dek, &self.track2.packed())?,
            plain(PSN, &self.psn),
            plain(PAR, &self.par),
        ])
    }
}

/// A fresh tokenId: "TKN" and 29 upper-case hex digits.
pub fn new_token_id(rng: &mut impl Rng) -> String {
    const HEX: &[u8] = b"0123456789ABCDEF";
    let mut id = String::with_capacity(3 + TOKEN_ID_HEX_DIGITS);
    id.push_str("TKN");
    id.extend((0..TOKEN_ID_HEX_DIGITS).map(|_| char::from(HEX[rng.gen_range(0..16)])));
    id
}

fn digits(rng: &mut impl Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

/// A token PAN in the simulator's BIN with a valid Luhn check digit, as real PANs have.
fn token_pan(rng: &mut impl Rng) -> String {
    let mut pan = String::with_capacity(PAN_LEN);
    pan.push_str(TOKEN_BIN);
    pan.push_str(&digits(rng, PAN_LEN - TOKEN_BIN.len() - 1));
    pan.push(luhn_check_digit(&pan));
    pan
}

/// The digit that makes `payload` + digit pass the Luhn check. Non-digits are ignored.
pub fn luhn_check_digit(payload: &str) -> char {
    let sum: u32 = payload
        .bytes()
        .rev()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
        .enumerate()
        .map(|(i, d)| {
            // Counting from the right of the payload, the check digit will take position 0, so
            // the payload's rightmost digit is the first one doubled.
            if i % 2 == 0 {
                let dd = d * 2;
                if dd > 9 {
                    dd - 9
                } else {
                    dd
                }
            } else {
                d
            }
        })
        .sum();
    char::from(b'0' + ((10 - sum % 10) % 10) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};
    use tokenhub_crypto::{decrypt_cbc_m2, SharedKey};

    fn june_2025() -> YearMonth {
        YearMonth {
            year: 2025,
            month: 6,
        }
    }

    fn generate(seed: u64) -> ClearElements {
        ClearElements::generate(&mut StdRng::seed_from_u64(seed), june_2025())
    }

    fn luhn_valid(pan: &str) -> bool {
        let (payload, check) = pan.split_at(pan.len() - 1);
        luhn_check_digit(payload).to_string() == check
    }

    fn key_sets() -> Vec<KeySet> {
        vec![
            KeySet::generate(),
            KeySet {
                keys: vec![
                    SharedKey::generate("K-3DES", Algorithm::Tdes, "kek"),
                    SharedKey::generate("D-AES256", Algorithm::Aes256, "dek"),
                ],
            },
        ]
    }

    fn decrypt(set: &KeySet, element: &PersoElement) -> Vec<u8> {
        let index = element.key_index.as_deref().expect("encrypted element");
        let key = set.find(index).expect("key of the set");
        let ct = hex::decode(&element.value).expect("hex value");
        decrypt_cbc_m2(key.algorithm, &key.key_bytes().unwrap(), &ct)
            .expect("decrypts")
            .to_vec()
    }

    #[test]
    fn decrypting_the_wire_elements_gives_back_the_clear_values() {
        for set in key_sets() {
            let clear = generate(7);
            let wire = clear
                .to_wire(&SimKeys::from_key_set(&set).unwrap())
                .unwrap();
            let names: Vec<&str> = wire.iter().map(|e| e.name.as_str()).collect();
            assert_eq!(names, ELEMENT_NAMES);

            let kek = set.by_purpose("kek").unwrap().key_index.clone();
            let dek = set.by_purpose("dek").unwrap().key_index.clone();
            assert_eq!(wire[0].key_index.as_ref(), Some(&kek));
            assert_eq!(wire[1].key_index.as_ref(), Some(&kek));
            assert_eq!(wire[2].key_index.as_ref(), Some(&dek));
            assert_eq!(decrypt(&set, &wire[0]), clear.cmk_ac.to_vec());
            assert_eq!(decrypt(&set, &wire[1]), clear.cmk_rp.to_vec());
            assert_eq!(decrypt(&set, &wire[2]), clear.track2.packed().to_vec());
            for e in &wire[..3] {
                assert_eq!(e.value, e.value.to_ascii_uppercase(), "upper-case hex");
            }

            assert_eq!(wire[3].key_index, None);
            assert_eq!(wire[3].value, clear.psn);
            assert_eq!(wire[4].key_index, None);
            assert_eq!(wire[4].value, clear.par);
        }
    }

    #[test]
    fn the_two_card_master_keys_are_distinct_and_differ_between_tokens() {
        let a = generate(1);
        let b = generate(2);
        assert_ne!(*a.cmk_ac, *a.cmk_rp);
        assert_ne!(*a.cmk_ac, *b.cmk_ac);
        assert_ne!(a.track2.pan(), b.track2.pan());
    }

    #[test]
    fn track2_is_pan_separator_expiry_service_code_discretionary_and_f_padding() {
        let clear = generate(3);
        let nibbles = clear.track2.nibbles();
        assert_eq!(nibbles.len(), 36);
        let (pan, rest) = nibbles.split_at(16);
        assert!(pan.bytes().all(|b| b.is_ascii_digit()));
        assert!(pan.starts_with(TOKEN_BIN));
        assert!(luhn_valid(pan));
        assert_eq!(&rest[..1], "D");
        assert_eq!(&rest[1..5], "2806", "YYMM three years after June 2025");
        assert_eq!(&rest[5..8], SERVICE_CODE);
        let discretionary = &rest[8..19];
        assert!(discretionary.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(&rest[19..], "F");

        let packed = clear.track2.packed();
        assert_eq!(packed.len(), 18);
        assert_eq!(packed[8] >> 4, 0x0D, "the separator is the 17th nibble");
        assert_eq!(packed[17] & 0x0F, 0x0F, "the last nibble pads");
    }

    #[test]
    fn token_info_agrees_with_track2() {
        let clear = generate(4);
        let info = clear.token_info();
        assert_eq!(info.exp, "0628");
        assert_eq!(info.last4, &clear.track2.pan()[12..]);
        assert_eq!(info.last4.len(), 4);
    }

    #[test]
    fn psn_is_two_digits_and_par_is_29_uppercase_alphanumerics() {
        for seed in 0..50 {
            let clear = generate(seed);
            assert_eq!(clear.psn.len(), 2);
            assert!(clear.psn.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(clear.par.len(), 29);
            assert!(clear
                .par
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
        }
    }

    #[test]
    fn token_ids_are_tkn_and_29_hex_digits() {
        let mut rng = StdRng::seed_from_u64(5);
        let a = new_token_id(&mut rng);
        let b = new_token_id(&mut rng);
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.starts_with("TKN"));
        assert!(a[3..].bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn luhn_check_digits_match_known_pans() {
        assert_eq!(luhn_check_digit("411111111111111"), '1'); // 4111111111111111
        assert_eq!(luhn_check_digit("7992739871"), '3');
        assert_eq!(luhn_check_digit("555555555555444"), '4'); // 5555555555554444
    }

    #[test]
    fn months_come_from_days_since_the_epoch() {
        let ym = |y, m| YearMonth { year: y, month: m };
        assert_eq!(YearMonth::from_days_since_epoch(0), ym(1970, 1));
        assert_eq!(YearMonth::from_days_since_epoch(31), ym(1970, 2));
        // 2000-02-29 and 2000-03-01
        assert_eq!(YearMonth::from_days_since_epoch(11_016), ym(2000, 2));
        assert_eq!(YearMonth::from_days_since_epoch(11_017), ym(2000, 3));
        // 2024-12-31 and 2025-01-01
        assert_eq!(YearMonth::from_days_since_epoch(20_088), ym(2024, 12));
        assert_eq!(YearMonth::from_days_since_epoch(20_089), ym(2025, 1));
        assert!(YearMonth::now() >= ym(2025, 1));
    }

    #[test]
    fn a_key_set_without_a_dek_or_with_a_bad_kcv_is_refused() {
        let mut set = KeySet::generate();
        set.keys.retain(|k| k.purpose == "kek");
        assert!(matches!(
            SimKeys::from_key_set(&set),
            Err(KeysError::Missing("dek"))
        ));

        let mut set = KeySet::generate();
        set.keys[0].kcv = "000000".into();
        let err = SimKeys::from_key_set(&set).unwrap_err();
        assert!(matches!(err, KeysError::Invalid { .. }));
        assert!(!err.to_string().contains(&set.keys[0].hex));
    }

    #[test]
    fn debug_output_never_shows_values() {
        let set = KeySet::generate();
        let clear = generate(6);
        let wire = clear
            .to_wire(&SimKeys::from_key_set(&set).unwrap())
            .unwrap();
        let printed = format!(
            "{clear:?} {wire:?} {:?} {:?}",
            clear.track2,
            SimKeys::from_key_set(&set).unwrap()
        );
        assert!(!printed.contains(clear.track2.pan()));
        assert!(!printed.contains(&clear.par));
        for e in &wire {
            assert!(!printed.contains(&e.value));
        }
        for k in &set.keys {
            assert!(!printed.contains(&k.hex));
        }
    }
}
