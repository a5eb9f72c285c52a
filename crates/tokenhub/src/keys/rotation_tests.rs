//! Master-key versions: a key file gains a version and loses the retired one, what an old version
//! wrapped opens after its re-wrap (and across a restart), the fingerprints stay the same, a
//! node's key that is not the store's is refused, and the same on SoftHSM2.

use super::software::parse_master_keys;
use super::*;
use crate::domain::master_key::{MasterKeyState, MasterKeyVersion};

fn with_state(v: &MasterKeyVersion, state: MasterKeyState) -> MasterKeyVersion {
    MasterKeyVersion { state, ..v.clone() }
}

fn fingerprint(k: &Keys) -> [u8; 32] {
    let value = Zeroizing::new(b"5413330000000001".to_vec());
    let name = "PAN".to_string();
    k.fingerprints_for("T1", std::iter::once((&name, &value)))
        .unwrap()["PAN"]
}

#[test]
fn the_variable_and_the_file_hold_one_key_or_numbered_versions() {
    let (a, b) = ("11".repeat(32), "22".repeat(32));
    assert_eq!(
        parse_master_keys(&a).unwrap().keys().collect::<Vec<_>>(),
        [&1]
    );
    let both = parse_master_keys(&format!("1:{a},2:{b}")).unwrap();
    assert_eq!(both.keys().collect::<Vec<_>>(), [&1, &2]);
    let lines = parse_master_keys(&format!("2:{b}\n3:{a}\n")).unwrap();
    assert_eq!(lines.keys().collect::<Vec<_>>(), [&2, &3]);
    for bad in [
        String::new(),
        format!("1:{a},1:{b}"),
        format!("0:{a}"),
        format!("x:{a}"),
        format!("1:{}", "11".repeat(31)),
        "1:zz".to_string(),
    ] {
        assert!(parse_master_keys(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_key_file_gains_a_version_and_loses_the_retired_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let (k, created) = Keys::from_key_file(&path).unwrap();
    assert!(created);
    let v1 = k.first_version(0).unwrap();
    k.adopt_versions(std::slice::from_ref(&v1)).unwrap();
    let before = fingerprint(&k);
    let old = k.new_data_key("T1").unwrap();
    let sealed = k.seal_for_token("T1", &old, b"kept").unwrap();
    assert_eq!(old.master_version, 1);

    let v2 = k.next_version(std::slice::from_ref(&v1), 1).unwrap();
    assert_eq!(v2.version, 2);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("1:") && text.contains("\n2:"),
        "both versions in the file"
    );
    let rotating = [with_state(&v1, MasterKeyState::Retiring), v2.clone()];
    k.adopt_versions(&rotating).unwrap();
    assert_eq!(k.master_version(), 2);
    assert_eq!(k.new_data_key("T2").unwrap().master_version, 2);
    let new = k.rewrap_data_key("T1", &old, 2).unwrap();
    assert_eq!(&*k.open_for_token("T1", &new, &sealed).unwrap(), b"kept");

    let retired = [with_state(&v1, MasterKeyState::Retired), v2.clone()];
    k.adopt_versions(&retired).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("1:") && text.starts_with("2:"),
        "version 1 is gone"
    );
    assert!(matches!(
        k.open_for_token("T1", &old, &sealed),
        Err(KeyError::MissingVersion(1))
    ));
    assert_eq!(fingerprint(&k), before, "fingerprints outlive version 1");

    // A restart finds version 2 only, and the fingerprint key in the store's record of it.
    let (again, created) = Keys::from_key_file(&path).unwrap();
    assert!(!created);
    again.adopt_versions(&retired).unwrap();
    assert_eq!(
        &*again.open_for_token("T1", &new, &sealed).unwrap(),
        b"kept"
    );
    assert_eq!(fingerprint(&again), before);
}

#[test]
fn a_version_the_store_records_under_another_key_is_refused() {
    let ours = Keys::from_master_hex(&"11".repeat(32)).unwrap();
    let theirs = Keys::from_master_hex(&"22".repeat(32)).unwrap();
    let recorded = theirs.first_version(0).unwrap();
    assert!(matches!(
        ours.adopt_versions(&[recorded]),
        Err(KeyError::VersionMismatch(1))
    ));
    let later = MasterKeyVersion {
        version: 2,
        ..ours.first_version(0).unwrap()
    };
    assert!(matches!(
        ours.adopt_versions(&[later]),
        Err(KeyError::MissingVersion(2))
    ));
    assert!(matches!(
        ours.next_version(&[ours.first_version(0).unwrap()], 0),
        Err(KeyError::NotInVariable(2))
    ));
}

#[test]
fn an_hsm_makes_a_version_and_destroys_the_retired_one() {
    let Some(hsm) = softhsm::softhsm("an_hsm_makes_a_version_and_destroys_the_retired_one") else {
        return;
    };
    let _hsm = softhsm::exclusive_blocking();
    let k = hsm.keys();
    let v1 = k.first_version(0).unwrap();
    assert!(
        v1.fingerprint_key.is_none(),
        "the HSM keeps its fingerprint key"
    );
    k.adopt_versions(std::slice::from_ref(&v1)).unwrap();
    let before = fingerprint(&k);
    let old = k.new_data_key("T1").unwrap();
    let sealed = k.seal_for_token("T1", &old, b"kept").unwrap();
    let v2 = k.next_version(std::slice::from_ref(&v1), 1).unwrap();
    k.adopt_versions(&[with_state(&v1, MasterKeyState::Retiring), v2.clone()])
        .unwrap();
    let new = k.rewrap_data_key("T1", &old, 2).unwrap();
    let retired = [with_state(&v1, MasterKeyState::Retired), v2];
    k.adopt_versions(&retired).unwrap();
    assert!(
        !k.keystore.holds(1).unwrap(),
        "version 1's objects are destroyed"
    );
    assert!(matches!(
        k.open_for_token("T1", &old, &sealed),
        Err(KeyError::MissingVersion(1))
    ));
    let again = Keys::pkcs11(hsm.config()).unwrap();
    again.adopt_versions(&retired).unwrap();
    assert_eq!(again.master_version(), 2);
    assert_eq!(
        &*again.open_for_token("T1", &new, &sealed).unwrap(),
        b"kept"
    );
    assert_eq!(fingerprint(&again), before);
}
