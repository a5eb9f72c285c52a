//! What the fuzz targets share: a fixed product profile and the hub's software keystore holding
//! two known test keys (from the shared test vectors), so that encrypted values are decrypted and
//! checked as the hub does.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use tokenhub::domain::cps::{self, ClearValue};
use tokenhub::domain::data_part;
use tokenhub::domain::perso::{self, Operation};
use tokenhub::domain::{KeyPurpose, ProfileDefinition, Wrapped};
use tokenhub::keys::Keys;
use tokenhub_crypto::{Algorithm, SharedKey};
use zeroize::Zeroizing;

/// The AES-128 test key (`keyIndex` `1`) and the double-length 3DES one (`keyIndex` `2`).
pub const TEST_KEYS: [(&str, Algorithm, &str, &str); 2] = [
    (
        "1",
        Algorithm::Aes128,
        "2B7E151628AED2A6ABF7158809CF4F3C",
        "7AD386",
    ),
    (
        "2",
        Algorithm::Tdes,
        "0123456789ABCDEFFEDCBA9876543210",
        "08D7B4",
    ),
];

/// The token every `/data` call of the targets is for.
pub const TOKEN_ID: &str = "TKN0000000000000001";
/// The TSP that owns the test keys (the token's).
pub const TSP_ID: &str = "fuzz-tsp";

/// The profile version the `/data` target checks elements against: every format, sensitive
/// elements with and without default keys, tagged and untagged placements.
pub const PROFILE_JSON: &str = r#"{
  "dataElements": [
    {"name": "cmk_ac", "required": true, "format": "hex", "maxLength": 32, "sensitive": true, "dgi": "8000"},
    {"name": "cmk_rp", "required": true, "format": "hex", "maxLength": 32, "sensitive": true, "dgi": "8001", "defaultKeyIndex": "2"},
    {"name": "track2_data", "required": true, "format": "hex", "maxLength": 38, "sensitive": true, "dgi": "0101", "tag": "57"},
    {"name": "psn", "required": true, "format": "digits", "maxLength": 2, "dgi": "0101", "tag": "5F34"},
    {"name": "par", "required": false, "format": "text", "maxLength": 29, "dgi": "0102", "tag": "9F24"},
    {"name": "cvm", "required": false, "format": "text", "dgi": "0103"}
  ],
  "template": [{"dgi": "9102", "data": "A5058801015F2D02656E"}, {"dgi": "0101", "data": "7000"}],
  "defaultKeyIndex": "1"
}"#;

/// What the `/data` target works with, made once.
pub struct DataFixture {
    pub profile: ProfileDefinition,
    pub keys: Keys,
    pub wrapped_data_key: Wrapped,
}

pub fn data_fixture() -> &'static DataFixture {
    static FIXTURE: OnceLock<DataFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let profile: ProfileDefinition =
            serde_json::from_str(PROFILE_JSON).expect("the profile parses");
        let profile = profile.validate().expect("the profile is valid");
        let keys = Keys::from_master_hex(&"00".repeat(32)).expect("a master key");
        let stored: Vec<_> = TEST_KEYS
            .iter()
            .map(|(index, algorithm, hex, kcv)| {
                keys.wrap_shared_key(
                    TSP_ID,
                    KeyPurpose::Dek,
                    &SharedKey {
                        key_index: index.to_string(),
                        algorithm: *algorithm,
                        purpose: "dek".into(),
                        hex: hex.to_string(),
                        kcv: kcv.to_string(),
                    },
                )
                .expect("the test key matches its KCV")
            })
            .collect();
        keys.load_shared_keys(&stored).expect("the test keys load");
        let wrapped_data_key = keys.new_data_key(TOKEN_ID).expect("a data key");
        DataFixture {
            profile,
            keys,
            wrapped_data_key,
        }
    })
}

/// The test key named `key_index`, if it is one.
pub fn test_key(key_index: &str) -> Option<(Algorithm, Vec<u8>)> {
    TEST_KEYS
        .iter()
        .find(|(index, ..)| *index == key_index)
        .map(|(_, algorithm, hex, _)| (*algorithm, hex::decode(hex).expect("hex")))
}

/// Parses a `/data` or `/newData` body and checks its elements against `profile` as the hub does
/// (`encrypt`: the harness first encrypts each value under the test key its element names), then
/// asserts what must hold of a call the checks accept: both checks agree, the sealed part reads
/// back, each size is its value's canonical length, and the sizes say whether the profile builds
/// with the values themselves.
pub fn check_call(
    fx: &DataFixture,
    profile: &ProfileDefinition,
    body: &[u8],
    op: Operation,
    encrypt: bool,
) {
    let Ok(submission) = perso::parse_submission(body, op) else {
        return;
    };
    assert!(submission.elements.len() <= perso::MAX_ELEMENTS);
    let mut elements = submission.elements;
    perso::resolve_default_keys(profile, &mut elements);
    if encrypt {
        for e in &mut elements {
            let Some((algorithm, key)) = e.key_index.as_deref().and_then(test_key) else {
                continue;
            };
            let clear = perso::decode_hex(&e.value).unwrap_or_else(|| e.value.as_bytes().to_vec());
            let ciphertext =
                tokenhub_crypto::encrypt_cbc_m2(algorithm, &key, &clear).expect("a test key");
            e.value = hex::encode_upper(ciphertext);
        }
    }

    let checked = fx
        .keys
        .check_elements(TSP_ID, profile, &elements)
        .expect("the keystore works");
    let sealed = fx
        .keys
        .check_and_seal(
            TSP_ID,
            TOKEN_ID,
            &fx.wrapped_data_key,
            profile,
            &elements,
            true,
        )
        .expect("the keystore works");
    assert_eq!(checked.is_ok(), sealed.is_ok(), "both checks agree");
    let Ok(call) = sealed else {
        return;
    };
    assert_eq!(Ok(call.sizes.clone()), checked);

    // The sealed part reads back as the elements it was made of.
    match call.sealed {
        None => assert!(elements.is_empty()),
        Some(sealed) => {
            let clear = fx
                .keys
                .open_for_token(TOKEN_ID, &fx.wrapped_data_key, &sealed)
                .expect("a sealed part opens");
            assert_eq!(
                data_part::decode_part(&clear).expect("a part decodes"),
                elements
            );
        }
    }

    // Each size the check gave is the length of the value's canonical bytes, and each value has
    // a fingerprint.
    if !elements.is_empty() {
        let fingerprints = call.fingerprints.expect("fingerprints were asked for");
        assert_eq!(fingerprints.len(), elements.len());
    }
    let mut values = BTreeMap::new();
    for e in &elements {
        let place = profile
            .element_index(&e.name)
            .expect("a checked element is defined");
        let def = &profile.data_elements[place];
        let canonical = match &e.key_index {
            None => cps::canonical_bytes(def, ClearValue::Text(&e.value)),
            Some(index) => {
                let (algorithm, key) = test_key(index).expect("only test keys decrypt");
                let ciphertext = perso::decode_hex(&e.value).expect("checked as hex");
                let clear = tokenhub_crypto::decrypt_cbc_m2(algorithm, &key, &ciphertext)
                    .expect("checked padding");
                cps::canonical_bytes(def, ClearValue::Bytes(&clear))
            }
        }
        .expect("a checked value has canonical bytes");
        assert_eq!(call.sizes.at(place), Some(canonical.len()));
        values.insert(e.name.clone(), Zeroizing::new(canonical.to_vec()));
    }
    // What the sizes say of the profile is what building it with the values does.
    let fits = cps::check_fits(profile, &[&call.sizes]);
    let built = cps::build(profile, &values);
    assert_eq!(fits.is_ok(), built.is_ok(), "{fits:?} / {built:?}");
}
