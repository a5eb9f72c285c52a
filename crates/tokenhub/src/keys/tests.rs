//! The keys' tests, run on the software keystore and, when `TOKENHUB_TEST_SOFTHSM2` names the
//! SoftHSM2 module, on the PKCS#11 keystore.

use super::*;
use crate::domain::cps;
use crate::domain::perso::{DecryptFault, IncomingElement};
use crate::domain::ProfileDefinition;
use hpke::Deserializable;

fn keys() -> Keys {
    Keys::from_master_hex(&"11".repeat(32)).unwrap()
}

/// Runs `test` on the software keystore, then on SoftHSM2's when there is one (holding it).
fn on_each_keystore(name: &str, test: impl Fn(Keys)) {
    test(keys());
    if let Some(hsm) = softhsm::softhsm(name) {
        let _hsm = softhsm::exclusive_blocking();
        test(hsm.keys());
    }
}

#[test]
fn a_data_key_seals_and_opens_only_for_its_token() {
    on_each_keystore("a_data_key_seals_and_opens_only_for_its_token", |k| {
        let wrapped = k.new_data_key("T1").unwrap();
        let sealed = k
            .seal_for_token("T1", &wrapped, b"secret elements")
            .unwrap();
        assert_eq!(
            &*k.open_for_token("T1", &wrapped, &sealed).unwrap(),
            b"secret elements"
        );
        assert!(k.open_for_token("T2", &wrapped, &sealed).is_err());
        let other = Keys::from_master_hex(&"22".repeat(32)).unwrap();
        assert!(other.open_for_token("T1", &wrapped, &sealed).is_err());
        let mut tampered = wrapped.clone();
        tampered.bytes[20] ^= 1;
        assert!(matches!(
            k.open_for_token("T1", &tampered, &sealed),
            Err(KeyError::Unwrap)
        ));
    });
}

#[test]
fn shared_keys_are_checked_wrapped_and_decrypt_elements() {
    on_each_keystore(
        "shared_keys_are_checked_wrapped_and_decrypt_elements",
        |k| {
            for algorithm in [Algorithm::Aes128, Algorithm::Aes256, Algorithm::Tdes] {
                let shared = SharedKey::generate("KEK01", algorithm, "kek");
                let stored = k.wrap_shared_key("T", KeyPurpose::Kek, &shared).unwrap();
                assert!(!stored
                    .wrapped
                    .windows(16)
                    .any(|w| hex::encode_upper(w) == shared.hex[..32]));
                // Imported twice (the same key): the same stored form.
                assert_eq!(
                    k.wrap_shared_key("T", KeyPurpose::Kek, &shared)
                        .unwrap()
                        .wrapped
                        .len(),
                    stored.wrapped.len()
                );
                k.load_shared_keys(&[stored]).unwrap();
                let clear = shared.key_bytes().unwrap();
                let block = algorithm.block_len();
                let ct = tokenhub_crypto::encrypt_cbc_m2(algorithm, &clear, b"1234").unwrap();
                let (clear, fault) = k
                    .decrypt_whatever("T", "KEK01", KeyPurpose::Kek, &ct)
                    .unwrap();
                assert_eq!((clear.as_slice(), fault), (&b"1234"[..], None));
                assert_eq!(
                    k.decrypt_whatever("T", "NOPE", KeyPurpose::Kek, &ct)
                        .unwrap()
                        .1,
                    Some(DecryptFault::UnknownKey)
                );
                assert_eq!(
                    k.decrypt_whatever("T", "KEK01", KeyPurpose::Kek, &ct[..block - 1])
                        .unwrap()
                        .1,
                    Some(DecryptFault::Length)
                );
                assert_eq!(
                    k.decrypt_whatever("T", "KEK01", KeyPurpose::Kek, &[])
                        .unwrap()
                        .1,
                    Some(DecryptFault::Length)
                );
                let mut bad = ct.clone();
                bad[block - 1] ^= 1;
                let (clear, fault) = k
                    .decrypt_whatever("T", "KEK01", KeyPurpose::Kek, &bad)
                    .unwrap();
                assert_eq!((clear.len(), fault), (block, Some(DecryptFault::Padding)));
            }
        },
    );
}

/// Six values (the fifth cut short, the sixth's padding broken) each under AES1, TDES, AES2, an
/// unknown key, a DEK asked as a KEK, and AES1 again, in that order, keys loaded in `k`.
fn mixed_values(k: &Keys) -> Vec<elements::Encrypted> {
    let mut stored = Vec::new();
    let mut clear_keys = std::collections::HashMap::new();
    for (index, algorithm, purpose) in [
        ("AES1", Algorithm::Aes128, KeyPurpose::Kek),
        ("AES2", Algorithm::Aes256, KeyPurpose::Kek),
        ("TDES", Algorithm::Tdes, KeyPurpose::Kek),
        ("DEK1", Algorithm::Aes128, KeyPurpose::Dek),
    ] {
        let shared = SharedKey::generate(index, algorithm, "k");
        stored.push(k.wrap_shared_key("T", purpose, &shared).unwrap());
        clear_keys.insert(index, (algorithm, shared.key_bytes().unwrap()));
    }
    k.load_shared_keys(&stored).unwrap();
    let values: [&[u8]; 6] = [
        b"",
        b"1",
        b"0123456789abcdef",
        b"a longer value, three blocks",
        b"x",
        b"0123456789abcdef0",
    ];
    let mut asked = Vec::new();
    for (n, value) in values.iter().enumerate() {
        for index in ["AES1", "TDES", "AES2", "NOPE", "DEK1", "AES1"] {
            let (algorithm, key) = clear_keys
                .get(index)
                .cloned()
                .unwrap_or_else(|| clear_keys["AES1"].clone());
            let mut ct = tokenhub_crypto::encrypt_cbc_m2(algorithm, &key, value).unwrap();
            match n {
                4 => ct.truncate(ct.len() - 1),
                // The last clear byte, a zero of the padding, flipped.
                5 => {
                    let at = ct.len() - algorithm.block_len() - 1;
                    ct[at] ^= 1;
                }
                _ => {}
            }
            asked.push(elements::Encrypted {
                key_index: index.to_string(),
                purpose: KeyPurpose::Kek,
                ciphertext: ct,
            });
        }
    }
    asked
}

/// A call's values under two keys of each cipher, an unknown key and a key of the wrong
/// purpose, some of them wrong, decrypted together (one keystore operation per key): each gets
/// what it gets decrypted alone.
#[test]
fn values_decrypted_together_are_each_what_they_are_alone() {
    on_each_keystore(
        "values_decrypted_together_are_each_what_they_are_alone",
        |k| {
            let asked = mixed_values(&k);
            let views: Vec<_> = asked.iter().map(elements::Encrypted::asked).collect();
            let together = k.decrypt_all("T", &views).unwrap();
            assert_eq!(together.len(), asked.len());
            for (a, (clear, fault)) in asked.iter().zip(&together) {
                let (alone, alone_fault) = k
                    .decrypt_whatever("T", &a.key_index, a.purpose, &a.ciphertext)
                    .unwrap();
                assert_eq!(
                    (clear.as_slice(), fault),
                    (alone.as_slice(), &alone_fault),
                    "{}",
                    a.key_index
                );
            }
            let right: Vec<_> = together.iter().filter(|(_, f)| f.is_none()).collect();
            assert_eq!(
                right.len(),
                4 * 4,
                "AES1 twice, TDES and AES2, for the first four values"
            );
            assert_eq!(right[0].0.as_slice(), b"");
            assert_eq!(right[4].0.as_slice(), b"1");
            assert_eq!(right[15].0.as_slice(), b"a longer value, three blocks");
            let faults: Vec<_> = together.iter().map(|(_, f)| *f).collect();
            assert_eq!(faults[3], Some(DecryptFault::UnknownKey));
            assert_eq!(
                faults[4],
                Some(DecryptFault::UnknownKey),
                "a key of another purpose"
            );
            assert_eq!(faults[4 * 6], Some(DecryptFault::Length));
            assert_eq!(faults[5 * 6 + 1], Some(DecryptFault::Padding));
        },
    );
}

/// A profile version with a card master key (DGI 8001) and a PSN in a record.
fn key_and_psn_profile() -> ProfileDefinition {
    serde_json::from_value::<ProfileDefinition>(serde_json::json!({
        "dataElements": [
            {"name": "cmk_ac", "required": true, "format": "hex", "sensitive": true, "dgi": "8001"},
            {"name": "psn", "required": true, "format": "digits", "dgi": "0101", "tag": "5F34"}
        ],
        "template": [{"dgi": "9102", "data": "A5"}]
    }))
    .unwrap()
    .validate()
    .unwrap()
}

#[test]
fn a_profile_is_built_from_sealed_parts_and_only_the_device_can_open_it() {
    use hpke::{Kem as _, Serializable};
    type Kem = hpke::kem::X25519HkdfSha256;
    on_each_keystore(
        "a_profile_is_built_from_sealed_parts_and_only_the_device_can_open_it",
        |k| {
            let kek = SharedKey::generate("KEK01", Algorithm::Aes128, "kek");
            k.load_shared_keys(&[k.wrap_shared_key("T", KeyPurpose::Kek, &kek).unwrap()])
                .unwrap();
            let cmk = [0x42u8; 16];
            let ct =
                tokenhub_crypto::encrypt_cbc_m2(Algorithm::Aes128, &kek.key_bytes().unwrap(), &cmk)
                    .unwrap();
            let def = key_and_psn_profile();
            let wrapped = k.new_data_key("T1").unwrap();
            let part = |els: serde_json::Value| {
                let els: Vec<IncomingElement> = serde_json::from_value(els).unwrap();
                let clear = crate::domain::data_part::encode_part(&els);
                k.seal_for_token("T1", &wrapped, &clear).unwrap()
            };
            let parts = vec![
                part(serde_json::json!([{"name": "psn", "value": "07"}])),
                part(
                    serde_json::json!([{"name": "cmk_ac", "value": hex::encode_upper(&ct), "keyIndex": "KEK01"},
                                {"name": "psn", "value": "01"}]),
                ),
            ];
            let data = |sealed, incoming| TokenData {
                token_id: "T1",
                tsp_id: "T",
                data_key: &wrapped,
                sealed,
                incoming,
            };
            let (sk, pk) = Kem::gen_keypair(&mut rand::rngs::OsRng);
            let out = k
                .personalize(data(&parts, &[]), &def, &pk.to_bytes(), "prs_1")
                .unwrap();
            assert_eq!(out.fingerprints.len(), 2);
            let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&out.profile.enc).unwrap();
            let open = |aad: &[u8]| {
                hpke::single_shot_open::<hpke::aead::AesGcm256, hpke::kdf::HkdfSha256, Kem>(
                    &hpke::OpModeR::Base,
                    &sk,
                    &enc,
                    PROFILE_HPKE_INFO,
                    &out.profile.ciphertext,
                    aad,
                )
            };
            assert!(open(b"prs_2").is_err(), "bound to its personalization id");
            let dgis = cps::decode(&open(b"prs_1").unwrap()).unwrap();
            let key_dgi = dgis.iter().find(|d| d.id == 0x8001).unwrap();
            assert_eq!(key_dgi.value, cmk);
            let record = dgis.iter().find(|d| d.id == 0x0101).unwrap();
            assert_eq!(
                record.value,
                vec![0x70, 0x04, 0x5F, 0x34, 0x01, 0x01],
                "the later psn wins"
            );
            // The same values give the same fingerprints; another value another one.
            let again = k.fingerprints(data(&parts, &[]), &def).unwrap();
            assert_eq!(again, out.fingerprints);
            let other = k.fingerprints(data(&parts[..1], &[]), &def).unwrap();
            assert_ne!(other["psn"], out.fingerprints["psn"]);
            // Elements not sealed yet count as the latest part.
            let incoming: Vec<IncomingElement> =
                serde_json::from_value(serde_json::json!([{"name": "psn", "value": "01"}]))
                    .unwrap();
            let from_incoming = k.fingerprints(data(&parts[..1], &incoming), &def).unwrap();
            assert_eq!(from_incoming["psn"], out.fingerprints["psn"]);
        },
    );
}

#[test]
fn a_wrong_kcv_is_refused_at_import() {
    on_each_keystore("a_wrong_kcv_is_refused_at_import", |k| {
        let mut shared = SharedKey::generate("K", Algorithm::Tdes, "dek");
        shared.kcv = "ABCDEF".into();
        assert!(matches!(
            k.wrap_shared_key("T", KeyPurpose::Kek, &shared),
            Err(KeyError::KcvMismatch)
        ));
    });
}

#[test]
fn the_key_file_is_created_private_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/master.key");
    let (k1, created) = Keys::from_key_file(&path).unwrap();
    assert!(created);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (k2, created) = Keys::from_key_file(&path).unwrap();
    assert!(!created);
    let wrapped = k1.new_data_key("T").unwrap();
    let sealed = k1.seal_for_token("T", &wrapped, b"x").unwrap();
    assert_eq!(&*k2.open_for_token("T", &wrapped, &sealed).unwrap(), b"x");
}

#[test]
fn credentials_seal_and_open_on_each_keystore() {
    on_each_keystore("credentials_seal_and_open_on_each_keystore", |k| {
        let secret = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_string();
        let sealed = k
            .seal_requestor_credentials("r1", "key-1", &[secret])
            .unwrap();
        let auth = k
            .authenticate_delivery("r1", &sealed, "id", 42, b"{}")
            .unwrap();
        assert_eq!(auth.authorization.as_str(), "APIKEY key-1");
        assert!(k
            .authenticate_delivery("r2", &sealed, "id", 42, b"{}")
            .is_err());
    });
}

#[test]
fn a_key_held_by_one_keystore_is_refused_by_the_other() {
    let Some(hsm) = softhsm::softhsm("a_key_held_by_one_keystore_is_refused_by_the_other") else {
        return;
    };
    let _hsm = softhsm::exclusive_blocking();
    let hsm_keys = hsm.keys();
    let shared = SharedKey::generate("KEK09", Algorithm::Aes128, "kek");
    let in_hsm = hsm_keys
        .wrap_shared_key("T", KeyPurpose::Kek, &shared)
        .unwrap();
    let in_software = keys()
        .wrap_shared_key("T", KeyPurpose::Kek, &shared)
        .unwrap();
    assert!(!in_hsm
        .wrapped
        .windows(16)
        .any(|w| hex::encode_upper(w) == shared.hex[..32]));
    assert!(matches!(
        keys().load_shared_keys(std::slice::from_ref(&in_hsm)),
        Err(KeyError::OtherKeystore)
    ));
    assert!(hsm_keys.load_shared_keys(&[in_software]).is_err());
    // A row naming an object the token does not hold.
    let mut gone = in_hsm.clone();
    let last = gone.wrapped.len() - 1;
    gone.wrapped[last] ^= 1;
    assert!(matches!(
        hsm_keys.load_shared_keys(&[gone]),
        Err(KeyError::MissingObject(_))
    ));
    // A data key wrapped by one does not open under the other.
    let wrapped = hsm_keys.new_data_key("T1").unwrap();
    assert!(keys().open_for_token("T1", &wrapped, &[0; 40]).is_err());
    // Logging in is per process: a wrong PIN shows once no session of the right one is open.
    drop(hsm_keys);
    assert!(matches!(
        Keys::pkcs11(hsm.config_with_pin("0000")),
        Err(KeyError::Unavailable(_))
    ));
}

#[test]
fn a_restarted_or_lost_hsm_is_recovered_and_unavailable_meanwhile() {
    let Some(hsm) =
        softhsm::softhsm("a_restarted_or_lost_hsm_is_recovered_and_unavailable_meanwhile")
    else {
        return;
    };
    let _hsm = softhsm::exclusive_blocking();
    let k = hsm.keys();
    let shared = SharedKey::generate("KEK02", Algorithm::Tdes, "kek");
    k.load_shared_keys(&[k.wrap_shared_key("T", KeyPurpose::Kek, &shared).unwrap()])
        .unwrap();
    let ct = tokenhub_crypto::encrypt_cbc_m2(Algorithm::Tdes, &shared.key_bytes().unwrap(), b"42")
        .unwrap();
    let wrapped = k.new_data_key("T1").unwrap();
    let sealed = k.seal_for_token("T1", &wrapped, b"kept").unwrap();
    // Restarted: every session and handle void; the next call reconnects.
    hsm.restart();
    assert_eq!(
        &*k.open_for_token("T1", &wrapped, &sealed).unwrap(),
        b"kept"
    );
    assert_eq!(
        k.decrypt_whatever("T", "KEK02", KeyPurpose::Kek, &ct)
            .unwrap()
            .1,
        None
    );
    // Gone: every operation says so (no refusal, no wrong answer) until it is back.
    hsm.unplug();
    assert!(matches!(
        k.open_for_token("T1", &wrapped, &sealed),
        Err(KeyError::Unavailable(_))
    ));
    assert!(matches!(
        k.decrypt_whatever("T", "KEK02", KeyPurpose::Kek, &ct),
        Err(KeyError::Unavailable(_))
    ));
    assert!(matches!(
        k.new_data_key("T2"),
        Err(KeyError::Unavailable(_))
    ));
    hsm.plug();
    std::thread::sleep(pkcs11::RECONNECT_PAUSE);
    assert_eq!(
        &*k.open_for_token("T1", &wrapped, &sealed).unwrap(),
        b"kept"
    );
    let (clear, fault) = k
        .decrypt_whatever("T", "KEK02", KeyPurpose::Kek, &ct)
        .unwrap();
    assert_eq!((clear.as_slice(), fault), (&b"42"[..], None));
}
