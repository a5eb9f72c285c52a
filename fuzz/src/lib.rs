//! What the fuzz targets share: a fixed product profile and the hub's software keystore holding
//! two known test keys (from the shared test vectors), so that encrypted values are decrypted and
//! checked as the hub does.

use std::sync::OnceLock;
use tokenhub::domain::ProfileDefinition;
use tokenhub::keys::Keys;
use tokenhub_crypto::{Algorithm, SharedKey};

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
    pub wrapped_data_key: Vec<u8>,
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
                keys.wrap_shared_key(&SharedKey {
                    key_index: index.to_string(),
                    algorithm: *algorithm,
                    purpose: "dek".into(),
                    hex: hex.to_string(),
                    kcv: kcv.to_string(),
                })
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
