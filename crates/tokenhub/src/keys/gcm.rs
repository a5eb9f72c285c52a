//! AES-256-GCM, on aws-lc-rs: its AES-NI and carry-less multiplication code seals a `/data` call's
//! part in a fraction of the time a pure-Rust GCM takes, on the hot path of every call. The layout is
//! standard GCM (ciphertext then the 16-byte tag), so what either sealed the other opens: the
//! tests below hold it to the RFC's vectors and to the `hpke` crate's AES-GCM (through
//! `device_seal`'s tests).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroizing;

pub const NONCE_LEN: usize = aws_lc_rs::aead::NONCE_LEN;

/// The key is not 32 bytes, the nonce not 12, the input too long for GCM, or the tag does not
/// match: nothing more is said.
#[derive(Debug)]
pub struct GcmFailed;

/// A key expanded for AES-256-GCM (freed and cleansed by aws-lc when dropped).
pub struct Gcm(LessSafeKey);

impl Gcm {
    pub fn new(key: &[u8]) -> Result<Self, GcmFailed> {
        UnboundKey::new(&AES_256_GCM, key)
            .map(|k| Gcm(LessSafeKey::new(k)))
            .map_err(|_| GcmFailed)
    }

    /// `ciphertext || tag` of `plaintext` under `nonce`, after `prefix` (copied as is): the
    /// plaintext is copied into the output and encrypted there, in one allocation sized for it,
    /// so no clear copy is left behind.
    pub fn seal(
        &self,
        prefix: &[u8],
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, GcmFailed> {
        let tag_len = self.0.algorithm().tag_len();
        let mut out = Vec::with_capacity(prefix.len() + plaintext.len() + tag_len);
        out.extend_from_slice(prefix);
        out.extend_from_slice(plaintext);
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[prefix.len()..],
            )
            .map_err(|_| GcmFailed)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// The plaintext of `ciphertext || tag` under `nonce`, or [`GcmFailed`] when it does not
    /// open.
    pub fn open(
        &self,
        nonce: &[u8],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, GcmFailed> {
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| GcmFailed)?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        let len = self
            .0
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| GcmFailed)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// The AES-256 vectors of the GCM specification (McGrew and Viega, test cases 14 and 16).
    #[test]
    fn matches_the_gcm_specification_vectors() {
        let zero = Gcm::new(&[0u8; 32]).unwrap();
        let sealed = zero.seal(&[], [0u8; 12], &[], &[0u8; 16]).unwrap();
        assert_eq!(
            hex::encode(&sealed),
            "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
        );

        let key = unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
        let nonce: [u8; 12] = unhex("cafebabefacedbaddecaf888").try_into().unwrap();
        let plaintext = unhex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let gcm = Gcm::new(&key).unwrap();
        let sealed = gcm.seal(b"p", nonce, &aad, &plaintext).unwrap();
        assert_eq!(
            hex::encode(&sealed[1..]),
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
             76fc6ece0f4e1768cddf8853bb2d551b"
        );
        assert_eq!(sealed[0], b'p');
        let opened = gcm.open(&nonce, &aad, &sealed[1..]).unwrap();
        assert_eq!(opened.as_slice(), plaintext.as_slice());
    }

    #[test]
    fn refuses_what_was_changed() {
        let gcm = Gcm::new(&[7u8; 32]).unwrap();
        let sealed = gcm.seal(&[], [1u8; 12], b"aad", b"secret").unwrap();
        assert!(gcm.open(&[1u8; 12], b"aad", &sealed).is_ok());
        assert!(gcm.open(&[1u8; 12], b"other", &sealed).is_err());
        assert!(gcm.open(&[2u8; 12], b"aad", &sealed).is_err());
        assert!(gcm.open(&[1u8; 11], b"aad", &sealed).is_err());
        assert!(gcm.open(&[1u8; 12], b"aad", &sealed[..5]).is_err());
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert!(gcm.open(&[1u8; 12], b"aad", &flipped).is_err());
        assert!(Gcm::new(&[0u8; 16]).is_err());
    }
}
