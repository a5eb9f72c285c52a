//! Triple DES (two-key or three-key EDE) in CBC with a zero IV, on AWS-LC's DES (the library
//! `aws-lc-rs` already brings for TLS and AES-GCM): a call's DEK-encrypted elements are decrypted
//! on the hot path, and AWS-LC's table-driven DES does that work in a fraction of the time of
//! pure-Rust rounds. The `des` crate stays as the reference the tests compare with.
#![allow(unsafe_code)]

use crate::CryptoError;
use aws_lc_sys::{
    DES_cblock, DES_ede3_cbc_encrypt, DES_key_schedule, DES_set_key_unchecked, DES_DECRYPT,
    DES_ENCRYPT,
};
use zeroize::{Zeroize, Zeroizing};

#[derive(Clone, Copy)]
pub enum Direction {
    Encrypt,
    Decrypt,
}

/// The three key schedules of one key, wiped when dropped.
struct Schedules([DES_key_schedule; 3]);

impl Drop for Schedules {
    fn drop(&mut self) {
        for ks in &mut self.0 {
            for pair in &mut ks.subkeys {
                pair.zeroize();
            }
        }
    }
}

/// `key` is 16 bytes (K1 K2, with K3 = K1) or 24 (K1 K2 K3).
fn schedules(key: &[u8]) -> Result<Schedules, CryptoError> {
    let third = match key.len() {
        16 => 0,
        24 => 2,
        _ => return Err(CryptoError::KeyLength),
    };
    let mut out = Schedules([DES_key_schedule::default(); 3]);
    for (slot, part) in [0, 1, third].into_iter().enumerate() {
        let mut block = DES_cblock { bytes: [0; 8] };
        block.bytes.copy_from_slice(&key[8 * part..8 * part + 8]);
        // SAFETY: both pointers are to live values of the types the function takes; it reads 8
        // bytes from the first and writes the schedule into the second.
        unsafe { DES_set_key_unchecked(&block, &mut out.0[slot]) };
        block.bytes.zeroize();
    }
    Ok(out)
}

/// CBC with a zero IV over `data`, a whole number of 8-byte blocks.
pub fn cbc(
    key: &[u8],
    data: &[u8],
    direction: Direction,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if data.len() % 8 != 0 {
        return Err(CryptoError::CiphertextLength);
    }
    let ks = schedules(key)?;
    let mut out = Zeroizing::new(vec![0u8; data.len()]);
    let mut iv = DES_cblock { bytes: [0; 8] };
    let enc = match direction {
        Direction::Encrypt => DES_ENCRYPT,
        Direction::Decrypt => DES_DECRYPT,
    };
    // SAFETY: `data` and `out` are both `data.len()` bytes (whole blocks, so the function reads
    // and writes exactly that many); the schedules and the IV outlive the call.
    unsafe {
        DES_ede3_cbc_encrypt(
            data.as_ptr(),
            out.as_mut_ptr(),
            data.len(),
            &ks.0[0],
            &ks.0[1],
            &ks.0[2],
            &mut iv,
            enc,
        )
    };
    Ok(out)
}
