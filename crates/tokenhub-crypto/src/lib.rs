//! The symmetric cryptography of the TSP contract, shared by the hub's `keys` module (which decrypts
//! what a TSP sends) and the simulators (which encrypt as a TSP does).
//!
//! - **Key check value (KCV)**: AES = first 3 bytes of AES-CMAC over 16 zero bytes; 3DES = first
//!   3 bytes of 3DES-ECB over 8 zero bytes.
//! - **Data element encryption**: CBC with a zero IV and ISO 9797-1 method 2 padding (`80 00…`,
//!   always at least one byte), under AES-128, AES-256 or two/three-key 3DES.
//!
//! - **Key ceremonies** (`ceremony`): a key from 2 or 3 components (XOR, each with its KCV) or
//!   unwrapped from under a transport key (AES Key Wrap, RFC 3394).
//!
//! Every function takes key bytes and returns owned buffers wrapped in [`Zeroizing`], so clear
//! material is wiped when the caller drops it. Checked against the independent vectors in
//! `tests/vectors/keys.json` (see the tests).
#![deny(unsafe_code)]

pub mod ceremony;
mod tdes;

use aes::cipher::{
    block_padding::{Iso7816, RawPadding},
    BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit,
};
use cmac::{Cmac, Mac};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The block ciphers a key shared at a key ceremony can be for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    #[serde(rename = "aes128")]
    Aes128,
    #[serde(rename = "aes256")]
    Aes256,
    /// Two-key (16 bytes) or three-key (24 bytes) triple DES.
    #[serde(rename = "3des")]
    Tdes,
}

impl Algorithm {
    pub fn parse(s: &str) -> Result<Self, CryptoError> {
        match s.to_ascii_lowercase().as_str() {
            "aes128" | "aes-128" => Ok(Self::Aes128),
            "aes256" | "aes-256" => Ok(Self::Aes256),
            "3des" | "tdes" | "des3" => Ok(Self::Tdes),
            _ => Err(CryptoError::UnknownAlgorithm),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aes128 => "aes128",
            Self::Aes256 => "aes256",
            Self::Tdes => "3des",
        }
    }

    /// Block size in bytes: ciphertexts are a whole number of blocks.
    pub fn block_len(self) -> usize {
        match self {
            Self::Aes128 | Self::Aes256 => 16,
            Self::Tdes => 8,
        }
    }

    /// Whether `len` is a valid key length for this algorithm.
    pub fn accepts_key_len(self, len: usize) -> bool {
        match self {
            Self::Aes128 => len == 16,
            Self::Aes256 => len == 32,
            Self::Tdes => len == 16 || len == 24,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can go wrong; no variant carries key material or data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("unknown algorithm (expected aes128, aes256 or 3des)")]
    UnknownAlgorithm,
    #[error("the key length does not fit the algorithm")]
    KeyLength,
    #[error("the ciphertext is not a whole number of cipher blocks")]
    CiphertextLength,
    #[error("the plaintext does not end with ISO 9797-1 method 2 padding")]
    Padding,
}

/// The 3-byte key check value of `key`.
pub fn kcv(alg: Algorithm, key: &[u8]) -> Result<[u8; 3], CryptoError> {
    if !alg.accepts_key_len(key.len()) {
        return Err(CryptoError::KeyLength);
    }
    let full: Vec<u8> = match alg {
        Algorithm::Aes128 => cmac_zero::<aes::Aes128>(key),
        Algorithm::Aes256 => cmac_zero::<aes::Aes256>(key),
        Algorithm::Tdes => {
            // One block in CBC with a zero IV is the block in ECB.
            tdes::cbc(key, &[0u8; 8], tdes::Direction::Encrypt)?.to_vec()
        }
    };
    Ok([full[0], full[1], full[2]])
}

fn cmac_zero<C>(key: &[u8]) -> Vec<u8>
where
    C: aes::cipher::BlockCipher
        + aes::cipher::BlockEncrypt
        + Clone
        + KeyInit
        + aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
    Cmac<C>: KeyInit + Mac,
{
    // Key length was checked by the caller, so this cannot fail.
    let mut mac = <Cmac<C> as KeyInit>::new_from_slice(key).expect("key length checked");
    mac.update(&[0u8; 16]);
    mac.finalize().into_bytes().to_vec()
}

/// Encrypts `plaintext` with CBC, zero IV, ISO 9797-1 method 2 padding.
pub fn encrypt_cbc_m2(
    alg: Algorithm,
    key: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if !alg.accepts_key_len(key.len()) {
        return Err(CryptoError::KeyLength);
    }
    Ok(match alg {
        Algorithm::Aes128 => enc::<aes::Aes128>(key, &[0; 16], plaintext),
        Algorithm::Aes256 => enc::<aes::Aes256>(key, &[0; 16], plaintext),
        Algorithm::Tdes => {
            // The padding goes into the block after the last whole one (always at least 1 byte).
            let whole = plaintext.len() / 8 * 8;
            let mut padded = Zeroizing::new(Vec::with_capacity(whole + 8));
            padded.extend_from_slice(plaintext);
            padded.resize(whole + 8, 0);
            Iso7816::raw_pad(&mut padded[whole..], plaintext.len() - whole);
            tdes::cbc(key, &padded, tdes::Direction::Encrypt)?.to_vec()
        }
    })
}

/// Refuses a key of the wrong length for `alg`, and a ciphertext that is not whole blocks.
fn check_cbc_lengths(alg: Algorithm, key: &[u8], ciphertext: &[u8]) -> Result<(), CryptoError> {
    if !alg.accepts_key_len(key.len()) {
        return Err(CryptoError::KeyLength);
    }
    if ciphertext.is_empty() || ciphertext.len() % alg.block_len() != 0 {
        return Err(CryptoError::CiphertextLength);
    }
    Ok(())
}

/// Decrypts a CBC (zero IV) ciphertext and removes its ISO 9797-1 method 2 padding.
pub fn decrypt_cbc_m2(
    alg: Algorithm,
    key: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    check_cbc_lengths(alg, key, ciphertext)?;
    match alg {
        Algorithm::Aes128 => dec::<aes::Aes128>(key, &[0; 16], ciphertext),
        Algorithm::Aes256 => dec::<aes::Aes256>(key, &[0; 16], ciphertext),
        Algorithm::Tdes => {
            // The padding is read in the last block, as the AES path's decryptor reads it.
            let mut clear = tdes::cbc(key, ciphertext, tdes::Direction::Decrypt)?;
            let last = clear.len() - 8;
            let kept = Iso7816::raw_unpad(&clear[last..])
                .map_err(|_| CryptoError::Padding)?
                .len();
            clear.truncate(last + kept);
            Ok(clear)
        }
    }
}

/// Decrypts a CBC (zero IV) ciphertext and reads its ISO 9797-1 method 2 padding without a branch
/// on what the clear bytes hold: every block is decrypted and every byte of the last one read, so
/// the time taken does not tell a wrong padding from a right one (that difference alone is a
/// padding oracle). Returns the clear bytes without their padding and `1` when the padding is
/// right; all the clear bytes and `0` otherwise. Only the key's and the ciphertext's lengths,
/// which the caller knows, are refused as errors.
pub fn decrypt_cbc_m2_ct(
    alg: Algorithm,
    key: &[u8],
    ciphertext: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, subtle::Choice), CryptoError> {
    let clear = decrypt_cbc_raw(alg, key, ciphertext)?;
    Ok(unpad_m2_ct(alg, clear))
}

/// Decrypts whole blocks with CBC (zero IV) and no padding removed: what an HSM's `CKM_AES_CBC` or
/// `CKM_DES3_CBC` returns, for [`unpad_m2_ct`] to read.
pub fn decrypt_cbc_raw(
    alg: Algorithm,
    key: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    check_cbc_lengths(alg, key, ciphertext)?;
    Ok(match alg {
        Algorithm::Aes128 => dec_raw::<aes::Aes128>(key, ciphertext),
        Algorithm::Aes256 => dec_raw::<aes::Aes256>(key, ciphertext),
        Algorithm::Tdes => tdes::cbc(key, ciphertext, tdes::Direction::Decrypt)?,
    })
}

/// Reads the ISO 9797-1 method 2 padding of decrypted blocks without a branch on what they hold
/// (see [`decrypt_cbc_m2_ct`]): the bytes without their padding and `1` when it is right; all the
/// bytes and `0` otherwise (also when `clear` is shorter than a block).
pub fn unpad_m2_ct(
    alg: Algorithm,
    mut clear: Zeroizing<Vec<u8>>,
) -> (Zeroizing<Vec<u8>>, subtle::Choice) {
    let Some(last) = clear.len().checked_sub(alg.block_len()) else {
        return (clear, 0.into());
    };
    let (right, pad) = m2_padding_ct(&clear[last..]);
    let kept = clear.len() - pad;
    clear.truncate(kept);
    (clear, right)
}

/// The length of the method 2 padding that ends `block` (`80` then zeros) and whether there is
/// one, found by reading every byte with constant-time selections; `0` when there is none.
fn m2_padding_ct(block: &[u8]) -> (subtle::Choice, usize) {
    use subtle::{ConditionallySelectable, ConstantTimeEq};
    let mut found = subtle::Choice::from(0);
    let mut wrong = subtle::Choice::from(0);
    let mut len = 0u64;
    for (i, byte) in block.iter().enumerate().rev() {
        let marker = byte.ct_eq(&0x80);
        let zero = byte.ct_eq(&0x00);
        len.conditional_assign(&((block.len() - i) as u64), !found & marker);
        wrong |= !found & !marker & !zero;
        found |= marker;
    }
    let right = found & !wrong;
    let len = u64::conditional_select(&0, &len, right);
    (right, len as usize)
}

fn dec_raw<C>(key: &[u8], ciphertext: &[u8]) -> Zeroizing<Vec<u8>>
where
    C: aes::cipher::BlockCipher + aes::cipher::BlockDecryptMut + KeyInit,
{
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    cbc::Decryptor::<C>::new_from_slices(key, &[0; 16])
        .expect("key and IV lengths checked")
        .decrypt_padded_mut::<aes::cipher::block_padding::NoPadding>(&mut buf)
        .expect("whole blocks checked");
    buf
}

fn enc<C>(key: &[u8], iv: &[u8], plaintext: &[u8]) -> Vec<u8>
where
    C: aes::cipher::BlockCipher + aes::cipher::BlockEncryptMut + KeyInit,
{
    cbc::Encryptor::<C>::new_from_slices(key, iv)
        .expect("key and IV lengths checked")
        .encrypt_padded_vec_mut::<Iso7816>(plaintext)
}

fn dec<C>(key: &[u8], iv: &[u8], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError>
where
    C: aes::cipher::BlockCipher + aes::cipher::BlockDecryptMut + KeyInit,
{
    let out = cbc::Decryptor::<C>::new_from_slices(key, iv)
        .expect("key and IV lengths checked")
        .decrypt_padded_vec_mut::<Iso7816>(ciphertext)
        .map_err(|_| CryptoError::Padding)?;
    Ok(Zeroizing::new(out))
}

/// One symmetric key shared between a TSP and the hub, in clear: what a ceremony makes in memory
/// (from components or a transport wrap, `ceremony`) and what a development key-set file holds
/// (`tokenhub keys dev-generate`, read by `tokenhub keys import --file` and the TSP simulator;
/// never for real keys).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedKey {
    /// The name both sides use for the key (`keyIndex` in the TSP API).
    pub key_index: String,
    pub algorithm: Algorithm,
    /// What the TSP uses it for: `kek` (encrypts keys) or `dek` (encrypts track 2 and other data).
    pub purpose: String,
    /// The clear key, hex.
    pub hex: String,
    /// Its key check value, 6 hex digits.
    pub kcv: String,
}

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedKey")
            .field("key_index", &self.key_index)
            .field("algorithm", &self.algorithm)
            .field("purpose", &self.purpose)
            .field("hex", &"<redacted>")
            .field("kcv", &self.kcv)
            .finish()
    }
}

impl Drop for SharedKey {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.hex.zeroize();
    }
}

/// A key set: what a key ceremony produces for one TSP connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySet {
    pub keys: Vec<SharedKey>,
}

impl SharedKey {
    /// A fresh random key of `alg`, with its KCV.
    pub fn generate(key_index: &str, alg: Algorithm, purpose: &str) -> Self {
        use rand::RngCore;
        let len = match alg {
            Algorithm::Aes128 => 16,
            Algorithm::Aes256 => 32,
            Algorithm::Tdes => 16,
        };
        let mut key = Zeroizing::new(vec![0u8; len]);
        rand::rngs::OsRng.fill_bytes(&mut key);
        let kcv = kcv(alg, &key).expect("generated with the right length");
        Self {
            key_index: key_index.to_string(),
            algorithm: alg,
            purpose: purpose.to_string(),
            hex: hex::encode_upper(&*key),
            kcv: hex::encode_upper(kcv),
        }
    }

    /// The clear key bytes, checked against the algorithm and the KCV.
    pub fn key_bytes(&self) -> Result<Zeroizing<Vec<u8>>, KeySetError> {
        let key = Zeroizing::new(hex::decode(&self.hex).map_err(|_| KeySetError::NotHex)?);
        let got = kcv(self.algorithm, &key).map_err(KeySetError::Crypto)?;
        if !hex::encode_upper(got).eq_ignore_ascii_case(&self.kcv) {
            return Err(KeySetError::KcvMismatch);
        }
        Ok(key)
    }
}

impl KeySet {
    /// The set a TSP connection needs: an AES-128 KEK for card master keys and a double-length
    /// 3DES DEK for track 2 and other data, as many TSPs still use.
    pub fn generate() -> Self {
        Self {
            keys: vec![
                SharedKey::generate("KEK01", Algorithm::Aes128, "kek"),
                SharedKey::generate("DEK01", Algorithm::Tdes, "dek"),
            ],
        }
    }

    pub fn find(&self, key_index: &str) -> Option<&SharedKey> {
        self.keys.iter().find(|k| k.key_index == key_index)
    }

    pub fn by_purpose(&self, purpose: &str) -> Option<&SharedKey> {
        self.keys.iter().find(|k| k.purpose == purpose)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    #[error("the key is not hex")]
    NotHex,
    #[error("the key check value does not match the key")]
    KcvMismatch,
    #[error(transparent)]
    Crypto(CryptoError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vectors() -> serde_json::Value {
        let text = include_str!("../tests/vectors/keys.json");
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn key_check_values_match_the_independent_vectors() {
        let v = vectors();
        for case in v["kcv"].as_array().unwrap() {
            let alg = Algorithm::parse(case["algorithm"].as_str().unwrap()).unwrap();
            let key = hex::decode(case["key"].as_str().unwrap()).unwrap();
            let got = hex::encode_upper(kcv(alg, &key).unwrap());
            assert_eq!(got, case["kcv"].as_str().unwrap(), "{case}");
        }
    }

    proptest! {
        #[test]
        fn the_constant_time_decryption_agrees_with_the_padded_one(
            alg in prop_oneof![Just(Algorithm::Aes128), Just(Algorithm::Aes256), Just(Algorithm::Tdes)],
            plain in proptest::collection::vec(any::<u8>(), 0..40),
            flip in any::<(usize, u8)>(),
        ) {
            let len = if alg == Algorithm::Aes256 { 32 } else { 16 };
            let key: Vec<u8> = (0..len).map(|i| i as u8 * 7 + 1).collect();
            let mut ct = encrypt_cbc_m2(alg, &key, &plain).unwrap();
            let (clear, right) = decrypt_cbc_m2_ct(alg, &key, &ct).unwrap();
            prop_assert!(bool::from(right));
            prop_assert_eq!(clear.as_slice(), plain.as_slice());
            // Any corruption: both agree on whether the padding is right, and on the value.
            let at = flip.0 % ct.len();
            ct[at] ^= flip.1;
            let (clear, right) = decrypt_cbc_m2_ct(alg, &key, &ct).unwrap();
            match decrypt_cbc_m2(alg, &key, &ct) {
                Ok(v) => {
                    prop_assert!(bool::from(right));
                    prop_assert_eq!(clear.as_slice(), v.as_slice());
                }
                Err(e) => {
                    prop_assert_eq!(e, CryptoError::Padding);
                    prop_assert!(!bool::from(right));
                    prop_assert_eq!(clear.len(), ct.len());
                }
            }
        }
    }

    #[test]
    fn method_2_padding_is_read_from_the_whole_last_block() {
        let cases: [(&[u8], Option<usize>); 6] = [
            (&[1, 2, 0x80, 0], Some(2)),
            (&[1, 2, 3, 0x80], Some(1)),
            (&[0x80, 0, 0, 0], Some(4)),
            (&[0x80, 0x80, 0, 0], Some(3)),
            (&[1, 0x80, 0, 1], None),
            (&[0, 0, 0, 0], None),
        ];
        for (block, want) in cases {
            let (right, len) = m2_padding_ct(block);
            assert_eq!(bool::from(right).then_some(len), want, "{block:?}");
        }
    }

    #[test]
    fn cbc_m2_matches_the_independent_vectors_both_ways() {
        let v = vectors();
        for case in v["cbc_m2"].as_array().unwrap() {
            let alg = Algorithm::parse(case["algorithm"].as_str().unwrap()).unwrap();
            let key = hex::decode(case["key"].as_str().unwrap()).unwrap();
            let pt = hex::decode(case["plaintext"].as_str().unwrap()).unwrap();
            let ct = hex::decode(case["ciphertext"].as_str().unwrap()).unwrap();
            assert_eq!(encrypt_cbc_m2(alg, &key, &pt).unwrap(), ct, "{case}");
            assert_eq!(*decrypt_cbc_m2(alg, &key, &ct).unwrap(), pt, "{case}");
        }
    }

    #[test]
    fn a_ciphertext_under_the_wrong_key_fails_its_padding_or_differs() {
        let key = [7u8; 16];
        let other = [8u8; 16];
        let ct = encrypt_cbc_m2(Algorithm::Aes128, &key, b"4761739001010119").unwrap();
        match decrypt_cbc_m2(Algorithm::Aes128, &other, &ct) {
            Err(CryptoError::Padding) => {}
            Ok(pt) => assert_ne!(&pt[..], b"4761739001010119"),
            Err(e) => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn a_generated_key_set_checks_and_a_tampered_kcv_is_refused() {
        let set = KeySet::generate();
        for k in &set.keys {
            assert!(k.key_bytes().is_ok());
        }
        let mut k = set.keys[0].clone();
        k.kcv = "000000".into();
        assert_eq!(k.key_bytes().unwrap_err(), KeySetError::KcvMismatch);
        assert!(!format!("{k:?}").contains(&k.hex));
    }

    #[test]
    fn bad_lengths_are_refused() {
        assert_eq!(
            kcv(Algorithm::Aes256, &[0; 16]),
            Err(CryptoError::KeyLength)
        );
        assert_eq!(
            decrypt_cbc_m2(Algorithm::Aes128, &[0; 16], &[0; 15]).unwrap_err(),
            CryptoError::CiphertextLength
        );
        assert_eq!(
            decrypt_cbc_m2(Algorithm::Tdes, &[0; 16], &[]).unwrap_err(),
            CryptoError::CiphertextLength
        );
    }

    proptest! {
        #[test]
        fn cbc_m2_round_trips(pt in proptest::collection::vec(any::<u8>(), 0..200),
                              key in proptest::collection::vec(any::<u8>(), 32),
                              which in 0usize..4) {
            let (alg, k) = match which {
                0 => (Algorithm::Aes128, &key[..16]),
                1 => (Algorithm::Aes256, &key[..]),
                2 => (Algorithm::Tdes, &key[..16]),
                _ => (Algorithm::Tdes, &key[..24]),
            };
            let ct = encrypt_cbc_m2(alg, k, &pt).unwrap();
            prop_assert_eq!(ct.len() % alg.block_len(), 0);
            prop_assert!(ct.len() > pt.len());
            prop_assert_eq!(&*decrypt_cbc_m2(alg, k, &ct).unwrap(), &pt);
        }

        /// AWS-LC's 3DES (the hub's) and the `des` crate's give the same ciphertexts, and the
        /// same clear text or refusal for any ciphertext, under two- and three-key 3DES.
        #[test]
        fn tdes_agrees_with_the_des_crate(
            pt in proptest::collection::vec(any::<u8>(), 0..100),
            ct in proptest::collection::vec(any::<u8>(), 1..13).prop_map(|b| b.repeat(8)),
            key in proptest::collection::vec(any::<u8>(), 24),
            two_key in any::<bool>(),
        ) {
            use aes::cipher::BlockEncrypt;
            let key = if two_key { &key[..16] } else { &key[..] };
            let (want_ct, want_pt, want_kcv) = if two_key {
                (enc::<des::TdesEde2>(key, &[0; 8], &pt), dec::<des::TdesEde2>(key, &[0; 8], &ct), {
                    let mut b = [0u8; 8].into();
                    des::TdesEde2::new_from_slice(key).unwrap().encrypt_block(&mut b);
                    b
                })
            } else {
                (enc::<des::TdesEde3>(key, &[0; 8], &pt), dec::<des::TdesEde3>(key, &[0; 8], &ct), {
                    let mut b = [0u8; 8].into();
                    des::TdesEde3::new_from_slice(key).unwrap().encrypt_block(&mut b);
                    b
                })
            };
            prop_assert_eq!(encrypt_cbc_m2(Algorithm::Tdes, key, &pt).unwrap(), want_ct.clone());
            prop_assert_eq!(decrypt_cbc_m2(Algorithm::Tdes, key, &want_ct).unwrap().to_vec(), pt);
            prop_assert_eq!(decrypt_cbc_m2(Algorithm::Tdes, key, &ct), want_pt);
            prop_assert_eq!(kcv(Algorithm::Tdes, key).unwrap(), [want_kcv[0], want_kcv[1], want_kcv[2]]);
        }

        #[test]
        fn decrypting_arbitrary_bytes_never_panics(ct in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decrypt_cbc_m2(Algorithm::Aes128, &[1; 16], &ct);
            let _ = decrypt_cbc_m2(Algorithm::Tdes, &[1; 24], &ct);
        }
    }
}
