//! Application cryptograms: the documented simplification of EMV that the device fleet computes
//! and the TSP simulator checks.
//!
//! - Session key (EMV common session key derivation, AES variant, one block):
//!   `SK = AES-128-ECB(cmk_ac, ATC (2 bytes BE) || F0 || 00 × 13)`.
//! - Application cryptogram: `ARQC = first 8 bytes of AES-CMAC(SK, amount (6 bytes BCD) ||
//!   currency (2 bytes BCD) || unpredictable number (4 bytes) || ATC (2 bytes BE))`.
//!
//! A real card signs more (terminal country, TVR, date, AIP…); these four fields are enough to
//! show what matters here: the cryptogram depends on the card master key and on the ATC, so a
//! device whose ATC the TSP does not expect is caught.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use cmac::{Cmac, Mac};
use zeroize::Zeroizing;

/// Length of a card master key and of a session key (AES-128).
pub const KEY_LEN: usize = 16;
/// Length of the application cryptogram.
pub const ARQC_LEN: usize = 8;

/// Why transaction data read from text is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmvError {
    #[error("{field} must be {digits} decimal digits")]
    NotBcd { field: &'static str, digits: usize },
    #[error("{field} must be {digits} hexadecimal digits")]
    NotHex { field: &'static str, digits: usize },
}

/// What the cryptogram signs: the transaction as the terminal and the card see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnData {
    /// Amount authorised, 12 BCD digits in minor units (EMV tag 9F02).
    pub amount: [u8; 6],
    /// Transaction currency code, ISO 4217 numeric, 4 BCD digits (EMV tag 5F2A).
    pub currency: [u8; 2],
    /// The terminal's random number (EMV tag 9F37): makes each cryptogram unique.
    pub unpredictable_number: [u8; 4],
    /// Application transaction counter (EMV tag 9F36).
    pub atc: u16,
}

impl TxnData {
    /// Reads the wire form: `amount` 12 digits, `currency` 4 digits, `unpredictable_number` 8
    /// hex digits.
    pub fn parse(
        atc: u16,
        amount: &str,
        currency: &str,
        unpredictable_number: &str,
    ) -> Result<Self, EmvError> {
        let mut data = Self {
            amount: [0; 6],
            currency: [0; 2],
            unpredictable_number: [0; 4],
            atc,
        };
        bcd("amount", amount, &mut data.amount)?;
        bcd("currency", currency, &mut data.currency)?;
        fixed_hex(
            "unpredictableNumber",
            unpredictable_number,
            &mut data.unpredictable_number,
        )?;
        Ok(data)
    }

    /// The bytes the cryptogram is computed over.
    pub fn mac_input(&self) -> [u8; 14] {
        let mut input = [0u8; 14];
        input[..6].copy_from_slice(&self.amount);
        input[6..8].copy_from_slice(&self.currency);
        input[8..12].copy_from_slice(&self.unpredictable_number);
        input[12..].copy_from_slice(&self.atc.to_be_bytes());
        input
    }
}

/// Packs the decimal digits of `text` (exactly two per byte of `out`) as BCD.
pub fn bcd(field: &'static str, text: &str, out: &mut [u8]) -> Result<(), EmvError> {
    let digits = out.len() * 2;
    let err = || EmvError::NotBcd { field, digits };
    let bytes = text.as_bytes();
    if bytes.len() != out.len() * 2 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(err());
    }
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = ((pair[0] - b'0') << 4) | (pair[1] - b'0');
    }
    Ok(())
}

/// Decodes exactly `out.len() * 2` hex digits (either case) into `out`.
pub fn fixed_hex(field: &'static str, text: &str, out: &mut [u8]) -> Result<(), EmvError> {
    let digits = out.len() * 2;
    let err = || EmvError::NotHex { field, digits };
    if text.len() != out.len() * 2 {
        return Err(err());
    }
    hex::decode_to_slice(text, out).map_err(|_| err())
}

/// `SK = AES-128-ECB(cmk_ac, ATC || F0 || 00 × 13)`.
pub fn session_key(cmk_ac: &[u8; KEY_LEN], atc: u16) -> Zeroizing<[u8; KEY_LEN]> {
    let cipher = Aes128::new(GenericArray::from_slice(cmk_ac));
    let mut block = Zeroizing::new([0u8; KEY_LEN]);
    block[..2].copy_from_slice(&atc.to_be_bytes());
    block[2] = 0xF0;
    cipher.encrypt_block(GenericArray::from_mut_slice(&mut block[..]));
    block
}

fn cmac(session_key: &[u8; KEY_LEN], txn: &TxnData) -> Cmac<Aes128> {
    let mut mac = <Cmac<Aes128> as KeyInit>::new(GenericArray::from_slice(session_key));
    mac.update(&txn.mac_input());
    mac
}

/// `ARQC = AES-CMAC(session_key, amount || currency || UN || ATC)`, first 8 bytes.
pub fn arqc(session_key: &[u8; KEY_LEN], txn: &TxnData) -> [u8; ARQC_LEN] {
    let tag = cmac(session_key, txn).finalize().into_bytes();
    let mut out = [0u8; ARQC_LEN];
    out.copy_from_slice(&tag[..ARQC_LEN]);
    out
}

/// The cryptogram a payment application holding `cmk_ac` computes for `txn`: the session key of
/// `txn.atc`, then [`arqc`].
pub fn application_cryptogram(cmk_ac: &[u8; KEY_LEN], txn: &TxnData) -> [u8; ARQC_LEN] {
    arqc(&session_key(cmk_ac, txn.atc), txn)
}

/// Whether `cryptogram` is the one `cmk_ac` gives for `txn`, compared in constant time. Any
/// length other than 8 bytes is simply wrong.
pub fn verify(cmk_ac: &[u8; KEY_LEN], txn: &TxnData, cryptogram: &[u8]) -> bool {
    cryptogram.len() == ARQC_LEN
        && cmac(&session_key(cmk_ac, txn.atc), txn)
            .verify_truncated_left(cryptogram)
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 00 01 02 … 0F.
    fn cmk() -> [u8; 16] {
        std::array::from_fn(|i| i as u8)
    }

    fn txn(atc: u16) -> TxnData {
        TxnData::parse(atc, "000000001000", "0978", "DEADBEEF").unwrap()
    }

    // The pinned values were computed once with Python's `cryptography` package (an independent
    // AES and CMAC implementation), following the formulas of the module documentation.
    #[test]
    fn session_keys_match_the_pinned_vectors() {
        assert_eq!(
            hex::encode_upper(*session_key(&cmk(), 1)),
            "3A9979458D82F193321BA11527DE6C4C"
        );
        assert_eq!(
            hex::encode_upper(*session_key(&cmk(), 2)),
            "712FADF111F8658F753B0A55002FF967"
        );
        assert_eq!(
            hex::encode_upper(*session_key(&cmk(), 0x1234)),
            "F97DE1EBA74B99098B5A1CE2082DAB9D"
        );
    }

    #[test]
    fn cryptograms_match_the_pinned_vectors() {
        assert_eq!(
            hex::encode_upper(application_cryptogram(&cmk(), &txn(1))),
            "E082BAF0759B60B5"
        );
        assert_eq!(
            hex::encode_upper(application_cryptogram(&cmk(), &txn(2))),
            "6D42E79746B270D7"
        );
        assert_eq!(
            hex::encode_upper(application_cryptogram(&cmk(), &txn(0x1234))),
            "9A088C7C5BC4626B"
        );
    }

    #[test]
    fn the_mac_input_is_amount_currency_un_and_atc() {
        assert_eq!(
            hex::encode_upper(txn(0x0102).mac_input()),
            "0000000010000978DEADBEEF0102"
        );
    }

    #[test]
    fn different_atcs_give_different_session_keys_and_cryptograms() {
        let mut seen = std::collections::HashSet::new();
        for atc in 0..500u16 {
            let sk = session_key(&cmk(), atc);
            assert!(seen.insert(*sk), "session key of ATC {atc} repeats");
            // The same data under another ATC signs differently, even keeping the session key.
            let a = arqc(&sk, &txn(atc));
            let b = arqc(&sk, &txn(atc.wrapping_add(1)));
            assert_ne!(a, b);
        }
        assert_ne!(
            application_cryptogram(&cmk(), &txn(1)),
            application_cryptogram(&cmk(), &txn(2))
        );
    }

    #[test]
    fn every_field_and_the_key_change_the_cryptogram() {
        let base = txn(7);
        let reference = application_cryptogram(&cmk(), &base);
        let mut other_key = cmk();
        other_key[15] ^= 1;
        assert_ne!(application_cryptogram(&other_key, &base), reference);
        for change in [
            TxnData {
                amount: [0, 0, 0, 0, 0x10, 0x01],
                ..base
            },
            TxnData {
                currency: [0x08, 0x40],
                ..base
            },
            TxnData {
                unpredictable_number: [0xDE, 0xAD, 0xBE, 0xEE],
                ..base
            },
        ] {
            assert_ne!(application_cryptogram(&cmk(), &change), reference);
        }
    }

    #[test]
    fn verify_accepts_the_right_cryptogram_only() {
        let t = txn(3);
        let good = application_cryptogram(&cmk(), &t);
        assert!(verify(&cmk(), &t, &good));
        let mut bad = good;
        bad[7] ^= 0x80;
        assert!(!verify(&cmk(), &t, &bad));
        assert!(!verify(&cmk(), &txn(4), &good), "another ATC");
        assert!(!verify(&cmk(), &t, &good[..7]));
        assert!(!verify(&cmk(), &t, &[]));
        let mut longer = good.to_vec();
        longer.push(0);
        assert!(!verify(&cmk(), &t, &longer));
    }

    #[test]
    fn wire_fields_are_checked() {
        let parsed = TxnData::parse(1, "000000001000", "0978", "deadBEEF").unwrap();
        assert_eq!(parsed.amount, [0, 0, 0, 0, 0x10, 0]);
        assert_eq!(parsed.currency, [0x09, 0x78]);
        assert_eq!(parsed.unpredictable_number, [0xDE, 0xAD, 0xBE, 0xEF]);
        for (amount, currency, un) in [
            ("00000000100", "0978", "DEADBEEF"),
            ("0000000010000", "0978", "DEADBEEF"),
            ("00000000100A", "0978", "DEADBEEF"),
            ("000000001000", "978", "DEADBEEF"),
            ("000000001000", "097A", "DEADBEEF"),
            ("000000001000", "0978", "DEADBEE"),
            ("000000001000", "0978", "DEADBEEG"),
            ("000000001000", "0978", "DEADBEEF00"),
            ("00000000100é", "0978", "DEADBEEF"),
            ("", "", ""),
        ] {
            assert!(
                TxnData::parse(1, amount, currency, un).is_err(),
                "{amount} {currency} {un}"
            );
        }
    }
}
