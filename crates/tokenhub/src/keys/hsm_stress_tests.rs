//! The PKCS#11 keystore under concurrent use (SoftHSM2, when `TOKENHUB_TEST_SOFTHSM2` names it):
//! many threads decrypting known values under shared keys, opening data keys, failing to open
//! others and fingerprinting at once must each get the exact answer, never a wrong clear value
//! nor an error for a good input.

use super::*;
use crate::domain::perso::DecryptFault;
use crate::domain::StoredKey;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokenhub_crypto::SharedKey;

/// One known value under one shared key.
struct Known {
    key_index: String,
    clear: Vec<u8>,
    ciphertext: Vec<u8>,
}

/// Runs `threads` threads doing every kind of key operation for `run`, and returns what went
/// wrong (empty when every answer was right).
fn stress(k: &Keys, threads: usize, run: Duration) -> Vec<String> {
    let mut known = Vec::new();
    let mut stored = Vec::new();
    for (i, algorithm) in [Algorithm::Aes128, Algorithm::Aes256, Algorithm::Tdes]
        .into_iter()
        .cycle()
        .take(6)
        .enumerate()
    {
        let key_index = format!("STRESS{i}");
        let shared = SharedKey::generate(&key_index, algorithm, "kek");
        stored.push(k.wrap_shared_key("T", KeyPurpose::Kek, &shared).unwrap());
        let key = shared.key_bytes().unwrap();
        for len in [1usize, 7, 16, 19, 40] {
            let clear: Vec<u8> = (0..len).map(|b| (b * 31 + i * 7) as u8).collect();
            let ciphertext = tokenhub_crypto::encrypt_cbc_m2(algorithm, &key, &clear).unwrap();
            known.push(Known {
                key_index: key_index.clone(),
                clear,
                ciphertext,
            });
        }
    }
    k.load_shared_keys(&stored).unwrap();
    let stored = &stored;
    let tokens: Vec<(String, crate::domain::Wrapped, Vec<u8>)> = (0..8)
        .map(|i| {
            let token = format!("TOKEN{i}");
            let wrapped = k.new_data_key(&token).unwrap();
            let sealed = k
                .seal_for_token(&token, &wrapped, token.as_bytes())
                .unwrap();
            (token, wrapped, sealed)
        })
        .collect();
    let value = Zeroizing::new(b"4111111111111111".to_vec());
    let values = BTreeMap::from([("pan".to_string(), value)]);
    let fingerprint = k.fingerprints_for("TOKEN0", values.iter()).unwrap();
    let ops = AtomicUsize::new(0);
    let until = Instant::now() + run;
    let wrong = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (known, stored, tokens, values, fingerprint, ops, wrong) = (
                &known,
                &stored,
                &tokens,
                &values,
                &fingerprint,
                &ops,
                &wrong,
            );
            scope.spawn(move || {
                let mut n = t;
                while Instant::now() < until {
                    n += 1;
                    if let Err(e) = one_op(k, n, known, stored, tokens, values, fingerprint) {
                        wrong.lock().unwrap().push(e);
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let wrong = wrong.into_inner().unwrap();
    eprintln!(
        "{} operations on {threads} threads, {} wrong",
        ops.load(Ordering::Relaxed),
        wrong.len()
    );
    wrong
}

/// The `n`th operation of a thread, checked.
fn one_op(
    k: &Keys,
    n: usize,
    known: &[Known],
    stored: &[StoredKey],
    tokens: &[(String, crate::domain::Wrapped, Vec<u8>)],
    values: &BTreeMap<String, Zeroizing<Vec<u8>>>,
    fingerprint: &BTreeMap<String, Fingerprint>,
) -> Result<(), String> {
    let v = &known[n % known.len()];
    match n % 10 {
        // A known value, and the same value with a wrong padding.
        0 | 1 => {
            let got = k.decrypt_whatever("T", &v.key_index, KeyPurpose::Kek, &v.ciphertext);
            match got {
                Ok((clear, None)) if *clear == v.clear => Ok(()),
                Ok((_, fault)) => Err(format!("{}: wrong clear value ({fault:?})", v.key_index)),
                Err(e) => Err(format!("{}: {e}", v.key_index)),
            }
        }
        2 => {
            let got = k.decrypt_whatever("T", "UNKNOWN", KeyPurpose::Kek, &v.ciphertext);
            match got {
                Ok((_, Some(DecryptFault::UnknownKey))) => Ok(()),
                Ok((_, fault)) => Err(format!("the stand-in key: {fault:?}")),
                Err(e) => Err(format!("the stand-in key: {e}")),
            }
        }
        3 | 4 | 6 => data_key_op(k, n, tokens),
        7 => {
            let label = format!("requestor{n}");
            let got = k
                .keystore
                .seal_secret(1, label.as_bytes(), b"secret")
                .and_then(|s| k.keystore.open_secret(1, label.as_bytes(), &s));
            match got {
                Ok(clear) if *clear == *b"secret" => Ok(()),
                Ok(_) => Err("a wrong secret".into()),
                Err(e) => Err(format!("a secret: {e}")),
            }
        }
        // The keys read again (as a reload does): found, and their KCVs checked.
        8 => k
            .load_shared_keys(&stored[n % stored.len()..][..1])
            .map_err(|e| format!("reloading a key: {e}")),
        _ => match k.fingerprints_for("TOKEN0", values.iter()) {
            Ok(f) if f == *fingerprint => Ok(()),
            Ok(_) => Err("a wrong fingerprint".into()),
            Err(e) => Err(format!("fingerprints: {e}")),
        },
    }
}

/// The data-key operations of [`one_op`].
fn data_key_op(
    k: &Keys,
    n: usize,
    tokens: &[(String, crate::domain::Wrapped, Vec<u8>)],
) -> Result<(), String> {
    match n % 10 {
        3 => {
            let (token, wrapped, sealed) = &tokens[n % tokens.len()];
            match k.open_for_token(token, wrapped, sealed) {
                Ok(clear) if *clear == *token.as_bytes() => Ok(()),
                Ok(_) => Err(format!("{token}: wrong data")),
                Err(e) => Err(format!("{token}: {e}")),
            }
        }
        // A data key that does not open (another token's label): the HSM refuses it, and the
        // session it failed on serves the next operation.
        4 => {
            let (_, wrapped, sealed) = &tokens[n % tokens.len()];
            match k.open_for_token("OTHER", wrapped, sealed) {
                Err(KeyError::Unwrap) => Ok(()),
                Ok(_) => Err("another token's data key opened".into()),
                Err(e) => Err(format!("another token's data key: {e}")),
            }
        }
        // A fresh data key, wrapped and opened again.
        6 => {
            let token = format!("NEW{n}");
            let got = k.new_data_key(&token).and_then(|w| {
                let sealed = k.seal_for_token(&token, &w, token.as_bytes())?;
                k.open_for_token(&token, &w, &sealed)
            });
            match got {
                Ok(clear) if *clear == *token.as_bytes() => Ok(()),
                Ok(_) => Err(format!("{token}: wrong data")),
                Err(e) => Err(format!("{token}: {e}")),
            }
        }
        _ => Ok(()),
    }
}

#[test]
fn concurrent_hsm_operations_each_get_the_right_answer() {
    let Some(hsm) = softhsm::softhsm("concurrent_hsm_operations_each_get_the_right_answer") else {
        return;
    };
    let _hsm = softhsm::exclusive_blocking();
    let k = hsm.keys();
    let wrong = stress(&k, 8, Duration::from_secs(3));
    assert!(
        wrong.is_empty(),
        "{} wrong: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    // The software keystore answers the same.
    assert!(stress(&keys_for_stress(), 4, Duration::from_millis(300)).is_empty());
}

#[test]
#[ignore = "heavy: run by hand on an HSM (many threads, a minute)"]
fn concurrent_hsm_operations_each_get_the_right_answer_at_length() {
    let Some(hsm) =
        softhsm::softhsm("concurrent_hsm_operations_each_get_the_right_answer_at_length")
    else {
        return;
    };
    let _hsm = softhsm::exclusive_blocking();
    let k = hsm.keys();
    let wrong = stress(&k, 32, Duration::from_secs(60));
    assert!(
        wrong.is_empty(),
        "{} wrong: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
}

fn keys_for_stress() -> Keys {
    Keys::from_master_hex(&"33".repeat(32)).unwrap()
}
