//! Sealing a profile to a device: HPKE (RFC 9180), single shot, mode base, with
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and AES-256-GCM.
//!
//! The X25519 operations are aws-lc-rs's (assembly, about twice as fast as x25519-dalek on the
//! hub's machines: the two scalar multiplications of a seal were an eighth of the hub's CPU per
//! completed `/data`), and so is AES-GCM (`keys::gcm`); HKDF is the RustCrypto crate. Only
//! the sender's side lives here. The `hpke` crate stays the reference: the tests check this
//! module against the CFRG test vectors of RFC 9180 and open what it seals with that crate, as a
//! device does.

use super::gcm::Gcm;
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// `DHKEM(X25519, HKDF-SHA256)`, `HKDF-SHA256`, `AES-256-GCM` (RFC 9180, section 7).
const KEM_ID: u16 = 0x0020;
const KDF_ID: u16 = 0x0001;
const AEAD_ID: u16 = 0x0002;
const MODE_BASE: u8 = 0x00;
const N_SECRET: usize = 32;
const N_K: usize = 32;
const N_N: usize = 12;

/// The device's public key is not one X25519 accepts (wrong length, or a low-order point that
/// gives an all-zero shared secret), or the system failed to generate an ephemeral key.
#[derive(Debug)]
pub struct SealFailed;

/// A sealed message: the encapsulated key and the ciphertext.
pub struct Sealed {
    pub enc: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Seals `plaintext` to the holder of `recipient` (a raw X25519 public key) with a fresh
/// ephemeral key.
pub fn seal(
    recipient: &[u8],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, SealFailed> {
    let ephemeral = PrivateKey::generate(&X25519).map_err(|_| SealFailed)?;
    seal_with(&ephemeral, recipient, info, aad, plaintext)
}

fn seal_with(
    ephemeral: &PrivateKey,
    recipient: &[u8],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, SealFailed> {
    let (enc, shared_secret) = encap(ephemeral, recipient)?;
    let (key, base_nonce) = key_schedule(shared_secret.as_slice(), info)?;
    // The first (and only) message: the nonce is the base nonce xor 0.
    let ciphertext = Gcm::new(key.as_slice())
        .and_then(|gcm| gcm.seal(&[], base_nonce, aad, plaintext))
        .map_err(|_| SealFailed)?;
    Ok(Sealed { enc, ciphertext })
}

/// `Encap(pkR)` of DHKEM (RFC 9180, 4.1) with the ephemeral key given.
fn encap(
    ephemeral: &PrivateKey,
    recipient: &[u8],
) -> Result<(Vec<u8>, Zeroizing<[u8; N_SECRET]>), SealFailed> {
    let enc = ephemeral
        .compute_public_key()
        .map_err(|_| SealFailed)?
        .as_ref()
        .to_vec();
    // aws-lc refuses a peer key of the wrong length and an all-zero result, as RFC 9180 (7.1.4)
    // requires of X25519.
    let dh = agreement::agree(
        ephemeral,
        UnparsedPublicKey::new(&X25519, recipient),
        SealFailed,
        |secret| {
            let secret: [u8; 32] = secret.try_into().map_err(|_| SealFailed)?;
            Ok(Zeroizing::new(secret))
        },
    )?;
    let suite = kem_suite_id();
    let eae_prk = labeled_extract(&suite, b"", b"eae_prk", &[dh.as_slice()]);
    let mut shared_secret = Zeroizing::new([0u8; N_SECRET]);
    labeled_expand(
        &eae_prk,
        &suite,
        b"shared_secret",
        &[&enc, recipient],
        shared_secret.as_mut_slice(),
    )?;
    Ok((enc, shared_secret))
}

/// `KeySchedule` in mode base (RFC 9180, 5.1): the AEAD key and base nonce.
fn key_schedule(
    shared_secret: &[u8],
    info: &[u8],
) -> Result<(Zeroizing<[u8; N_K]>, [u8; N_N]), SealFailed> {
    let suite = hpke_suite_id();
    let psk_id_hash = labeled_extract(&suite, b"", b"psk_id_hash", &[]);
    let info_hash = labeled_extract(&suite, b"", b"info_hash", &[info]);
    let context: [&[u8]; 3] = [&[MODE_BASE], psk_id_hash.as_slice(), info_hash.as_slice()];
    let secret = labeled_extract(&suite, shared_secret, b"secret", &[]);
    let mut key = Zeroizing::new([0u8; N_K]);
    labeled_expand(&secret, &suite, b"key", &context, key.as_mut_slice())?;
    let mut base_nonce = [0u8; N_N];
    labeled_expand(&secret, &suite, b"base_nonce", &context, &mut base_nonce)?;
    Ok((key, base_nonce))
}

fn kem_suite_id() -> Vec<u8> {
    [b"KEM".as_slice(), &KEM_ID.to_be_bytes()].concat()
}

fn hpke_suite_id() -> Vec<u8> {
    [
        b"HPKE".as_slice(),
        &KEM_ID.to_be_bytes(),
        &KDF_ID.to_be_bytes(),
        &AEAD_ID.to_be_bytes(),
    ]
    .concat()
}

/// `LabeledExtract(salt, label, ikm)`; `ikm` in pieces.
fn labeled_extract(suite: &[u8], salt: &[u8], label: &[u8], ikm: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let mut extract = hkdf::HkdfExtract::<Sha256>::new(Some(salt));
    for piece in [b"HPKE-v1".as_slice(), suite, label].iter().chain(ikm) {
        extract.input_ikm(piece);
    }
    let (prk, _) = extract.finalize();
    Zeroizing::new(prk.into())
}

/// `LabeledExpand(prk, label, info, L)` with `L = out.len()`; `info` in pieces. (Every output here
/// is 12 or 32 bytes, which HKDF always gives.)
fn labeled_expand(
    prk: &[u8; 32],
    suite: &[u8],
    label: &[u8],
    info: &[&[u8]],
    out: &mut [u8],
) -> Result<(), SealFailed> {
    let length = u16::try_from(out.len())
        .map_err(|_| SealFailed)?
        .to_be_bytes();
    let mut pieces: Vec<&[u8]> = vec![&length, b"HPKE-v1", suite, label];
    pieces.extend_from_slice(info);
    Hkdf::<Sha256>::from_prk(prk)
        .map_err(|_| SealFailed)?
        .expand_multi_info(&pieces, out)
        .map_err(|_| SealFailed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpke::{Deserializable, Kem as _, Serializable};
    type Kem = hpke::kem::X25519HkdfSha256;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// The CFRG test vector of RFC 9180 for mode base, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
    /// AES-256-GCM (as shipped with the `hpke` crate, `test-vectors-5f503c5.json`), first
    /// encryption.
    #[test]
    fn matches_the_rfc_9180_test_vector() {
        let sk_em = unhex("179d4b53b6365c45b600c4163b61d95cbc2f4d9e36f1695558dce265ab8bab11");
        let pk_rm = unhex("430f4b9859665145a6b1ba274024487bd66f03a2dd577d7753c68d7d7d00c00c");
        let info = unhex("4f6465206f6e2061204772656369616e2055726e");
        let ephemeral = PrivateKey::from_private_key(&X25519, &sk_em).unwrap();

        let (enc, shared_secret) = encap(&ephemeral, &pk_rm).unwrap();
        assert_eq!(
            hex::encode(&enc),
            "6c93e09869df3402d7bf231bf540fadd35cd56be14f97178f0954db94b7fc256"
        );
        assert_eq!(
            hex::encode(shared_secret.as_slice()),
            "3101c54c3a4f87439eaac080699ed9bbcc726ffe44e860c0424ccb7e3e2ead7b"
        );
        let (key, base_nonce) = key_schedule(shared_secret.as_slice(), &info).unwrap();
        assert_eq!(
            hex::encode(key.as_slice()),
            "f50b0609186798729ed0564b36ef2ef8044f1f9d05636874d1f46c819c7a669f"
        );
        assert_eq!(hex::encode(base_nonce), "151d9929e2449747889bc923");

        let sealed = seal_with(
            &ephemeral,
            &pk_rm,
            &info,
            &unhex("436f756e742d30"),
            &unhex("4265617574792069732074727574682c20747275746820626561757479"),
        )
        .unwrap();
        assert_eq!(sealed.enc, enc);
        assert_eq!(
            hex::encode(&sealed.ciphertext),
            "e5d84cd531cfb583096e7cfa9641bd3079cf3a91cda813c52deb5f512be9931980a41de125a925cdad859d5b7a"
        );
    }

    #[test]
    fn the_hpke_crate_opens_what_is_sealed_and_only_with_the_same_aad() {
        let (sk, pk) = Kem::gen_keypair(&mut rand::rngs::OsRng);
        for plaintext in [&b""[..], b"x", &[0xA5; 5000]] {
            let sealed = seal(&pk.to_bytes(), b"info", b"aad", plaintext).unwrap();
            let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed.enc).unwrap();
            let open = |aad: &[u8]| {
                hpke::single_shot_open::<hpke::aead::AesGcm256, hpke::kdf::HkdfSha256, Kem>(
                    &hpke::OpModeR::Base,
                    &sk,
                    &enc,
                    b"info",
                    &sealed.ciphertext,
                    aad,
                )
            };
            assert_eq!(open(b"aad").unwrap(), plaintext);
            assert!(open(b"other").is_err());
        }
    }

    #[test]
    fn keys_that_x25519_refuses_are_refused() {
        // Wrong lengths, and a low-order point (all-zero shared secret).
        for bad in [&[9u8; 31][..], &[9u8; 33], &[0u8; 32], &[]] {
            assert!(seal(bad, b"info", b"aad", b"pt").is_err());
        }
    }
}
