//! The math of a key ceremony: a key entered as components by separate custodians (XOR, each
//! component and the whole key checked against their KCVs), or received wrapped under a transport
//! key (AES Key Wrap, RFC 3394 / NIST SP 800-38F "KW", on AWS-LC).
//!
//! No function here reads or writes a file: the callers decide where components come from, and
//! every clear buffer is returned in [`Zeroizing`].

use crate::{kcv, Algorithm, CryptoError};
use zeroize::Zeroizing;

/// What refuses a ceremony; never carries key material. A component is named by its position
/// (1-based), so the custodian who entered it can enter it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CeremonyError {
    #[error("a key is entered as 2 or 3 components, not {0}")]
    ComponentCount(usize),
    #[error("component {0} is not hex")]
    ComponentNotHex(usize),
    #[error("component {0} is not a key of the algorithm's length")]
    ComponentLength(usize),
    #[error("component {0} does not match its check value")]
    ComponentKcv(usize),
    #[error("the combined key does not match the key's check value")]
    KeyKcv,
    #[error("the transport key must be AES-128 or AES-256 (16 or 32 bytes)")]
    TransportKeyLength,
    #[error("the wrapped key does not unwrap under the transport key (wrong key, or altered)")]
    Unwrap,
    #[error("the unwrapped key is not a key of the algorithm's length")]
    KeyLength,
}

/// One custodian's component: hex, and its own KCV (6 hex digits).
pub struct Component {
    pub hex: Zeroizing<String>,
    pub kcv: String,
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Component")
            .field("hex", &"<redacted>")
            .field("kcv", &self.kcv)
            .finish()
    }
}

/// Whether `key`'s KCV under `alg` is `expected` (hex, either case).
pub fn kcv_matches(alg: Algorithm, key: &[u8], expected: &str) -> bool {
    kcv(alg, key).is_ok_and(|k| hex::encode_upper(k).eq_ignore_ascii_case(expected.trim()))
}

/// The KCV of `key` as 6 upper-case hex digits.
pub fn kcv_hex(alg: Algorithm, key: &[u8]) -> Result<String, CryptoError> {
    kcv(alg, key).map(hex::encode_upper)
}

/// Combines 2 or 3 components into the key (XOR), checking each component against its own KCV
/// (a component is a key of the same algorithm and length) and the result against `key_kcv`.
pub fn combine(
    alg: Algorithm,
    components: &[Component],
    key_kcv: &str,
) -> Result<Zeroizing<Vec<u8>>, CeremonyError> {
    if !(2..=3).contains(&components.len()) {
        return Err(CeremonyError::ComponentCount(components.len()));
    }
    let mut key: Option<Zeroizing<Vec<u8>>> = None;
    for (i, c) in components.iter().enumerate() {
        let n = i + 1;
        let bytes = Zeroizing::new(
            hex::decode(c.hex.trim()).map_err(|_| CeremonyError::ComponentNotHex(n))?,
        );
        if !alg.accepts_key_len(bytes.len()) {
            return Err(CeremonyError::ComponentLength(n));
        }
        if !kcv_matches(alg, &bytes, &c.kcv) {
            return Err(CeremonyError::ComponentKcv(n));
        }
        match &mut key {
            None => key = Some(bytes),
            Some(k) if k.len() == bytes.len() => {
                k.iter_mut().zip(bytes.iter()).for_each(|(a, b)| *a ^= b);
            }
            Some(_) => return Err(CeremonyError::ComponentLength(n)),
        }
    }
    let key = key.ok_or(CeremonyError::ComponentCount(0))?;
    if !kcv_matches(alg, &key, key_kcv) {
        return Err(CeremonyError::KeyKcv);
    }
    Ok(key)
}

/// A component made by [`split`]: its bytes and its KCV.
pub type SplitComponent = (Zeroizing<Vec<u8>>, String);

/// Splits `key` into `count` (2 or 3) random components whose XOR is the key, each with its KCV:
/// what a ceremony's generating side hands its custodians, one component each.
pub fn split(
    alg: Algorithm,
    key: &[u8],
    count: usize,
) -> Result<Vec<SplitComponent>, CeremonyError> {
    use rand::RngCore;
    if !(2..=3).contains(&count) {
        return Err(CeremonyError::ComponentCount(count));
    }
    if !alg.accepts_key_len(key.len()) {
        return Err(CeremonyError::KeyLength);
    }
    let mut last = Zeroizing::new(key.to_vec());
    let mut out = Vec::with_capacity(count);
    for _ in 1..count {
        let mut c = Zeroizing::new(vec![0u8; key.len()]);
        rand::rngs::OsRng.fill_bytes(&mut c);
        last.iter_mut().zip(c.iter()).for_each(|(a, b)| *a ^= b);
        out.push(c);
    }
    out.push(last);
    out.into_iter()
        .map(|c| {
            let k = kcv_hex(alg, &c).map_err(|_| CeremonyError::KeyLength)?;
            Ok((c, k))
        })
        .collect()
}

fn transport_kek(transport_key: &[u8]) -> Result<aws_lc_rs::key_wrap::AesKek, CeremonyError> {
    use aws_lc_rs::key_wrap::{AesKek, AES_128, AES_256};
    let cipher = match transport_key.len() {
        16 => &AES_128,
        32 => &AES_256,
        _ => return Err(CeremonyError::TransportKeyLength),
    };
    AesKek::new(cipher, transport_key).map_err(|_| CeremonyError::TransportKeyLength)
}

/// Wraps `key` under an AES transport key with AES Key Wrap (RFC 3394): 8 bytes longer than the
/// key, which must be a multiple of 8 bytes of at least 16 (every key of [`Algorithm`] is).
pub fn wrap(transport_key: &[u8], key: &[u8]) -> Result<Vec<u8>, CeremonyError> {
    use aws_lc_rs::key_wrap::KeyWrap;
    let kek = transport_kek(transport_key)?;
    let mut out = vec![0u8; key.len() + 8];
    let n = kek
        .wrap(key, &mut out)
        .map_err(|_| CeremonyError::KeyLength)?
        .len();
    out.truncate(n);
    Ok(out)
}

/// Unwraps what [`wrap`] made (RFC 3394, its integrity check included) and checks the key's
/// length for `alg` and its KCV.
pub fn unwrap(
    alg: Algorithm,
    transport_key: &[u8],
    wrapped: &[u8],
    key_kcv: &str,
) -> Result<Zeroizing<Vec<u8>>, CeremonyError> {
    use aws_lc_rs::key_wrap::KeyWrap;
    let kek = transport_kek(transport_key)?;
    if wrapped.len() < 24 || wrapped.len() % 8 != 0 {
        return Err(CeremonyError::Unwrap);
    }
    let mut out = Zeroizing::new(vec![0u8; wrapped.len()]);
    let n = kek
        .unwrap(wrapped, &mut out)
        .map_err(|_| CeremonyError::Unwrap)?
        .len();
    out.truncate(n);
    if !alg.accepts_key_len(out.len()) {
        return Err(CeremonyError::KeyLength);
    }
    if !kcv_matches(alg, &out, key_kcv) {
        return Err(CeremonyError::KeyKcv);
    }
    Ok(out)
}

/// The algorithm of an AES transport key of `len` bytes, for its KCV.
pub fn transport_algorithm(len: usize) -> Result<Algorithm, CeremonyError> {
    match len {
        16 => Ok(Algorithm::Aes128),
        32 => Ok(Algorithm::Aes256),
        _ => Err(CeremonyError::TransportKeyLength),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    fn component(bytes: &[u8], alg: Algorithm) -> Component {
        Component {
            hex: Zeroizing::new(hex::encode_upper(bytes)),
            kcv: kcv_hex(alg, bytes).unwrap(),
        }
    }

    /// RFC 3394, section 4: 4.1 (128-bit KEK, 128-bit key), 4.3 (256/128), 4.5 (256/192),
    /// 4.6 (256/256).
    const RFC3394: &[(&str, &str, &str)] = &[
        (
            "000102030405060708090A0B0C0D0E0F",
            "00112233445566778899AABBCCDDEEFF",
            "1FA68B0A8112B447 AEF34BD8FB5A7B82 9D3E862371D2CFE5",
        ),
        (
            "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
            "00112233445566778899AABBCCDDEEFF",
            "64E8C3F9CE0F5BA2 63E9777905818A2A 93C8191E7D6E8AE7",
        ),
        (
            "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
            "00112233445566778899AABBCCDDEEFF0001020304050607",
            "A8F9BC1612C68B3F F6E6F4FBE30E71E4 769C8B80A32CB895 8CD5D17D6B254DA1",
        ),
        (
            "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
            "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
            "28C9F404C4B810F4 CBCCB35CFB87F826 3F5786E2D80ED326 CBC7F0E71A99F43B FB988B9B7A02DD21",
        ),
    ];

    #[test]
    fn key_wrap_matches_the_rfc_3394_vectors_both_ways() {
        for (kek, key, wrapped) in RFC3394 {
            let (kek, key, wrapped) = (h(kek), h(key), h(wrapped));
            assert_eq!(wrap(&kek, &key).unwrap(), wrapped);
            let alg = if key.len() == 16 {
                Algorithm::Aes128
            } else if key.len() == 32 {
                Algorithm::Aes256
            } else {
                Algorithm::Tdes
            };
            let kcv = kcv_hex(alg, &key).unwrap();
            assert_eq!(*unwrap(alg, &kek, &wrapped, &kcv).unwrap(), key);
        }
    }

    #[test]
    fn an_altered_wrap_a_wrong_transport_key_or_kcv_is_refused() {
        let (kek, key, wrapped) = RFC3394[0];
        let (kek, key, wrapped) = (h(kek), h(key), h(wrapped));
        let kcv = kcv_hex(Algorithm::Aes128, &key).unwrap();
        let mut bad = wrapped.clone();
        bad[10] ^= 1;
        assert_eq!(
            unwrap(Algorithm::Aes128, &kek, &bad, &kcv),
            Err(CeremonyError::Unwrap)
        );
        let mut other = kek.clone();
        other[0] ^= 1;
        assert_eq!(
            unwrap(Algorithm::Aes128, &other, &wrapped, &kcv),
            Err(CeremonyError::Unwrap)
        );
        assert_eq!(
            unwrap(Algorithm::Aes128, &kek, &wrapped, "000000"),
            Err(CeremonyError::KeyKcv)
        );
        assert_eq!(
            unwrap(Algorithm::Aes256, &kek, &wrapped, &kcv),
            Err(CeremonyError::KeyLength)
        );
        assert_eq!(
            unwrap(Algorithm::Aes128, &kek[..8], &wrapped, &kcv),
            Err(CeremonyError::TransportKeyLength)
        );
        assert_eq!(
            unwrap(Algorithm::Aes128, &kek, &wrapped[..16], &kcv),
            Err(CeremonyError::Unwrap)
        );
    }

    /// A double-length 3DES key from two components, with the KCVs a ceremony sheet would show
    /// (3DES-ECB of zeros; the KCVs of the independent vectors in `tests/vectors/keys.json`).
    #[test]
    fn two_components_make_the_key_and_every_kcv_is_checked() {
        let alg = Algorithm::Tdes;
        let c1 = h("0123456789ABCDEFFEDCBA9876543210");
        let key = h("1111111111111111 2222222222222222");
        let c2: Vec<u8> = c1.iter().zip(&key).map(|(a, b)| a ^ b).collect();
        let comps = [component(&c1, alg), component(&c2, alg)];
        let whole = kcv_hex(alg, &key).unwrap();
        assert_eq!(*combine(alg, &comps, &whole).unwrap(), key);
        assert_eq!(comps[0].kcv, "08D7B4", "3DES KCV of the first component");
        // A component that does not match its own KCV is named.
        let mut wrong = [component(&c1, alg), component(&c2, alg)];
        wrong[1].kcv = "000000".into();
        assert_eq!(
            combine(alg, &wrong, &whole),
            Err(CeremonyError::ComponentKcv(2))
        );
        // Components right one by one, the whole KCV wrong (a component entered for another key).
        assert_eq!(combine(alg, &comps, "ABCDEF"), Err(CeremonyError::KeyKcv));
        assert_eq!(
            combine(alg, &comps[..1], &whole),
            Err(CeremonyError::ComponentCount(1))
        );
        let mut not_hex = [component(&c1, alg), component(&c2, alg)];
        not_hex[0].hex = Zeroizing::new("XYZ".into());
        assert_eq!(
            combine(alg, &not_hex, &whole),
            Err(CeremonyError::ComponentNotHex(1))
        );
        let short = [
            component(&c1, alg),
            Component {
                hex: Zeroizing::new(hex::encode(&c2[..8])),
                kcv: "000000".into(),
            },
        ];
        assert_eq!(
            combine(alg, &short, &whole),
            Err(CeremonyError::ComponentLength(2))
        );
    }

    #[test]
    fn three_components_split_and_combine_for_every_algorithm() {
        for (alg, len) in [
            (Algorithm::Aes128, 16),
            (Algorithm::Aes256, 32),
            (Algorithm::Tdes, 24),
        ] {
            let key: Vec<u8> = (0..len as u8).collect();
            let parts = split(alg, &key, 3).unwrap();
            assert!(parts.iter().all(|(c, _)| c.as_slice() != key.as_slice()));
            let comps: Vec<Component> = parts
                .iter()
                .map(|(c, k)| Component {
                    hex: Zeroizing::new(hex::encode(c.as_slice())),
                    kcv: k.to_lowercase(),
                })
                .collect();
            let whole = kcv_hex(alg, &key).unwrap();
            assert_eq!(*combine(alg, &comps, &whole).unwrap(), key);
        }
    }
}
