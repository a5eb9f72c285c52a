//! A shared key decrypts only for its owner, for its purpose, while active; anything else is
//! an unknown key, decrypted with the same stand-in and so the same work.

use super::*;
use crate::domain::perso::DecryptFault;

fn keys() -> Keys {
    Keys::from_master_hex(&"11".repeat(32)).unwrap()
}

#[test]
fn another_tsps_key_a_wrong_purpose_or_a_retired_key_is_an_unknown_key() {
    let k = keys();
    let ours = SharedKey::generate("KEK01", Algorithm::Tdes, "kek");
    let theirs = SharedKey::generate("KEK01", Algorithm::Aes128, "kek");
    let only_theirs = SharedKey::generate("KEK-B", Algorithm::Tdes, "kek");
    let mut retired = k
        .wrap_shared_key(
            "A",
            KeyPurpose::Kek,
            &SharedKey::generate("OLD", Algorithm::Tdes, "kek"),
        )
        .unwrap();
    retired.state = KeyState::Retired;
    k.load_shared_keys(&[
        k.wrap_shared_key("A", KeyPurpose::Kek, &ours).unwrap(),
        k.wrap_shared_key("B", KeyPurpose::Kek, &theirs).unwrap(),
        k.wrap_shared_key("B", KeyPurpose::Kek, &only_theirs)
            .unwrap(),
        retired,
    ])
    .unwrap();
    let ct =
        tokenhub_crypto::encrypt_cbc_m2(Algorithm::Tdes, &ours.key_bytes().unwrap(), b"0123456789")
            .unwrap();
    let (clear, fault) = k
        .decrypt_whatever("A", "KEK01", KeyPurpose::Kek, &ct)
        .unwrap();
    assert_eq!((clear.as_slice(), fault), (&b"0123456789"[..], None));
    // The key index is per TSP: B's KEK01 is another key.
    assert!(k.knows_key("A", "KEK01") && k.knows_key("B", "KEK01"));
    assert!(!k.knows_key("C", "KEK01"));
    let unknown = k
        .decrypt_whatever("A", "NO-SUCH-KEY", KeyPurpose::Kek, &ct)
        .unwrap();
    assert_eq!(unknown.1, Some(DecryptFault::UnknownKey));
    for (tsp, index, purpose) in [
        ("A", "KEK-B", KeyPurpose::Kek),
        ("C", "KEK01", KeyPurpose::Kek),
        ("A", "KEK01", KeyPurpose::Dek),
        ("A", "OLD", KeyPurpose::Kek),
    ] {
        let got = k.decrypt_whatever(tsp, index, purpose, &ct).unwrap();
        assert_eq!(got.1, Some(DecryptFault::UnknownKey), "{tsp}/{index}");
        // The stand-in's decryption: the same bytes, so the same work, as a key nobody holds.
        assert_eq!(*got.0, *unknown.0, "{tsp}/{index}");
    }
}

#[test]
fn a_wrap_opens_only_for_the_owner_index_and_purpose_it_was_made_for() {
    let k = keys();
    let key = SharedKey::generate("KEK01", Algorithm::Aes128, "kek");
    let stored = k.wrap_shared_key("A", KeyPurpose::Kek, &key).unwrap();
    for moved in [
        StoredKey {
            tsp_id: "B".into(),
            ..stored.clone()
        },
        StoredKey {
            purpose: KeyPurpose::Dek,
            ..stored.clone()
        },
        StoredKey {
            key_index: "KEK02".into(),
            ..stored.clone()
        },
    ] {
        assert!(matches!(
            k.load_shared_keys(&[moved]),
            Err(KeyError::Unwrap)
        ));
    }
    // A key without an owner (imported before keys had owners) is not loaded at all.
    let unowned = StoredKey {
        tsp_id: String::new(),
        ..stored
    };
    k.load_shared_keys(&[unowned]).unwrap();
    assert!(!k.knows_key("", "KEK01"));
}

#[test]
fn a_key_wrapped_before_keys_had_owners_still_opens_once_given_one() {
    let k = keys();
    let key = SharedKey::generate("KEK01", Algorithm::Aes128, "kek");
    let clear = key.key_bytes().unwrap();
    // As the hub wrapped shared keys before: bound to the index alone.
    let wrapped = k
        .keystore
        .wrap(1, b"tokenhub/shared-key/v1/KEK01", &clear)
        .unwrap();
    let migrated = StoredKey {
        tsp_id: "A".into(),
        key_index: "KEK01".into(),
        algorithm: Algorithm::Aes128,
        purpose: KeyPurpose::Kek,
        state: KeyState::Active,
        kcv: key.kcv.clone(),
        wrapped,
        bound: false,
        master_version: 1,
    };
    k.load_shared_keys(&[migrated]).unwrap();
    assert!(k.knows_key("A", "KEK01"));
}
