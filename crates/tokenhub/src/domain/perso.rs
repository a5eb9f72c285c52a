//! Incoming data preparation (`/data`, `/newData`): parsing the body into the exact error codes of
//! the contract, and checking each element against the product's profile version.
//!
//! Parsing walks a `serde_json::Value` by hand rather than deriving, because the contract tells a
//! missing field (111) from a malformed one (112) and serde's errors do not.

use super::cps;
use super::ids::{IssuerId, LastDigits, Mmyy, Rejection};
use super::profile::{ElementDef, ElementFormat, ProfileDefinition};
use serde_json::{Map, Value};

/// At most this many elements in one call (`maxItems`).
pub const MAX_ELEMENTS: usize = 200;
/// At most this many characters of values, all elements of one call together.
pub const MAX_TOTAL_VALUE_CHARS: usize = 100_000;

/// One element as the TSP sent it. `value` may be ciphertext; it never appears in a message.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IncomingElement {
    /// Lower-cased: names are case-insensitive.
    pub name: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "keyIndex")]
    pub key_index: Option<String>,
}

impl std::fmt::Debug for IncomingElement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingElement")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("key_index", &self.key_index)
            .finish()
    }
}

/// `tokenInfo` of `/newData`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenInfo {
    pub exp: Option<Mmyy>,
    pub last4: Option<LastDigits>,
}

/// A parsed `/data` or `/newData` body.
#[derive(Debug, Clone)]
pub struct DataSubmission {
    pub issuer_id: IssuerId,
    pub elements: Vec<IncomingElement>,
    pub token_info: Option<TokenInfo>,
}

/// Which operation the body is for: `/data` requires `tokenPersoInfo` and has no `tokenInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Data,
    NewData,
}

pub fn parse_submission(body: &[u8], op: Operation) -> Result<DataSubmission, Rejection> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| Rejection::format("the body is not valid JSON"))?;
    let Value::Object(obj) = value else {
        return Err(Rejection::format("the body must be a JSON object"));
    };
    let issuer_id = match present(&obj, "issuerId") {
        None => return Err(Rejection::missing("issuerId")),
        Some(Value::String(s)) => IssuerId::parse(s)?,
        Some(_) => return Err(Rejection::format("issuerId must be a string")),
    };
    let elements = match present(&obj, "tokenPersoInfo") {
        None if op == Operation::Data => return Err(Rejection::missing("tokenPersoInfo")),
        None => Vec::new(),
        Some(Value::Array(items)) => parse_elements(items)?,
        Some(_) => return Err(Rejection::format("tokenPersoInfo must be an array")),
    };
    let token_info = match (op, present(&obj, "tokenInfo")) {
        (Operation::NewData, Some(Value::Object(info))) => Some(parse_token_info(info)?),
        (Operation::NewData, Some(_)) => {
            return Err(Rejection::format("tokenInfo must be an object"));
        }
        _ => None,
    };
    Ok(DataSubmission {
        issuer_id,
        elements,
        token_info,
    })
}

/// A field that is there and not `null`.
fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn parse_elements(items: &[Value]) -> Result<Vec<IncomingElement>, Rejection> {
    if items.len() > MAX_ELEMENTS {
        return Err(Rejection::format(format!(
            "tokenPersoInfo has {} elements; at most {MAX_ELEMENTS} are allowed",
            items.len()
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(e) = item else {
            return Err(Rejection::format(format!(
                "tokenPersoInfo[{i}] must be an object"
            )));
        };
        let name = match present(e, "name") {
            None => return Err(Rejection::missing(&format!("tokenPersoInfo[{i}].name"))),
            Some(Value::String(s)) => s,
            Some(_) => {
                return Err(Rejection::format(format!(
                    "tokenPersoInfo[{i}].name must be a string"
                )));
            }
        };
        let value = match present(e, "value") {
            None => return Err(Rejection::missing(&format!("tokenPersoInfo[{i}].value"))),
            Some(Value::String(s)) => s,
            Some(_) => {
                return Err(Rejection::format(format!(
                    "tokenPersoInfo[{i}].value must be a string"
                )));
            }
        };
        let n = name.chars().count();
        if n == 0 || n > 32 {
            return Err(Rejection::format(format!(
                "tokenPersoInfo[{i}].name must be 1 to 32 characters"
            )));
        }
        if value.is_empty() {
            return Err(Rejection::format(format!(
                "tokenPersoInfo[{i}].value must not be empty"
            )));
        }
        let key_index = match present(e, "keyIndex") {
            None => None,
            Some(Value::String(k)) if (1..=32).contains(&k.chars().count()) => Some(k.clone()),
            Some(_) => {
                return Err(Rejection::format(format!(
                    "tokenPersoInfo[{i}].keyIndex must be a string of 1 to 32 characters"
                )));
            }
        };
        out.push(IncomingElement {
            name: name.to_lowercase(),
            value: value.clone(),
            key_index,
        });
    }
    Ok(out)
}

fn parse_token_info(info: &Map<String, Value>) -> Result<TokenInfo, Rejection> {
    let exp = match present(info, "exp") {
        None => None,
        Some(Value::String(s)) => Some(Mmyy::parse("tokenInfo.exp", s)?),
        Some(_) => return Err(Rejection::format("tokenInfo.exp must be MMYY")),
    };
    let last4 = match present(info, "last4") {
        None => None,
        Some(Value::String(s)) => Some(LastDigits::parse("tokenInfo.last4", s, 2, 10)?),
        Some(_) => return Err(Rejection::format("tokenInfo.last4 must be 2 to 10 digits")),
    };
    Ok(TokenInfo { exp, last4 })
}

/// Why an encrypted value could not be checked; decided by the `keys` module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecryptFault {
    UnknownKey,
    /// Not a whole number of blocks, or the padding is wrong after decryption.
    Undecryptable,
}

/// Decrypts `ciphertext` under the key `key_index` and runs `check` on the clear bytes, which
/// never leave the decryptor. Implemented inside `keys` (`Keys::check_elements`).
pub trait ElementDecryptor {
    fn check_decrypted(
        &self,
        key_index: &str,
        ciphertext: &[u8],
        check: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<Result<(), String>, DecryptFault>;
}

pub use super::cps::ElementSizes;

/// Checks every element of one call against the profile version (431 for any fault); returns the
/// size each takes in a profile.
pub fn check_elements(
    profile: &ProfileDefinition,
    elements: &[IncomingElement],
    decryptor: &dyn ElementDecryptor,
) -> Result<ElementSizes, Rejection> {
    // A value has no more characters than bytes: the characters are counted only when the bytes
    // are over the limit.
    let bytes: usize = elements.iter().map(|e| e.value.len()).sum();
    let total: usize = if bytes > MAX_TOTAL_VALUE_CHARS {
        elements.iter().map(|e| e.value.chars().count()).sum()
    } else {
        bytes
    };
    if total > MAX_TOTAL_VALUE_CHARS {
        return Err(Rejection::perso(format!(
            "the values together are {total} characters; at most {MAX_TOTAL_VALUE_CHARS} are allowed"
        )));
    }
    let mut sizes = ElementSizes::for_profile(profile);
    for e in elements {
        let Some(place) = profile.element_index(&e.name) else {
            return Err(Rejection::perso(format!(
                "element {} is not defined by the product's profile",
                e.name
            )));
        };
        if sizes.at(place).is_some() {
            return Err(Rejection::perso(format!(
                "element {} appears more than once",
                e.name
            )));
        }
        let size = check_element(&profile.data_elements[place], e, decryptor)?;
        sizes.set(place, size);
    }
    Ok(sizes)
}

/// Checks one element; returns the size of its canonical bytes.
fn check_element(
    def: &ElementDef,
    e: &IncomingElement,
    decryptor: &dyn ElementDecryptor,
) -> Result<usize, Rejection> {
    let fail = |why: String| Rejection::perso(format!("element {}: {why}", e.name));
    match &e.key_index {
        None if def.sensitive => Err(fail(
            "a sensitive element must arrive encrypted under a keyIndex".into(),
        )),
        None => check_clear_text(def, &e.value).map_err(fail),
        Some(index) => {
            let ciphertext = decode_hex(&e.value)
                .ok_or_else(|| fail("an encrypted value must be hex".into()))?;
            let mut size = 0;
            let mut check = |clear: &[u8]| {
                size = check_clear_bytes(def, clear)?;
                Ok(())
            };
            match decryptor.check_decrypted(index, &ciphertext, &mut check) {
                Ok(Ok(())) => Ok(size),
                Ok(Err(why)) => Err(fail(why)),
                Err(DecryptFault::UnknownKey) => {
                    Err(fail(format!("keyIndex {index} is not a known key")))
                }
                Err(DecryptFault::Undecryptable) => Err(fail(format!(
                    "the value does not decrypt under keyIndex {index} (length or padding)"
                ))),
            }
        }
    }
}

/// Hex to bytes, either case, nothing else: const-hex's SIMD decoder, without the `0x` (or `0X`)
/// prefix it would otherwise accept.
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.starts_with("0x") || s.starts_with("0X") {
        return None;
    }
    const_hex::decode(s).ok()
}

fn too_long(def: &ElementDef, len: usize) -> Result<(), String> {
    match def.max_length {
        Some(max) if len > max as usize => Err(format!(
            "the clear value is {len} characters; at most {max} are allowed"
        )),
        _ => Ok(()),
    }
}

/// A clear value sent as text: its format (the size of its canonical bytes reads it) and length;
/// returns that size.
fn check_clear_text(def: &ElementDef, value: &str) -> Result<usize, String> {
    if def.format == ElementFormat::Text && value.chars().any(char::is_control) {
        return Err(format_message(def.format));
    }
    let size = cps::canonical_len(def, cps::ClearValue::Text(value))
        .map_err(|_| format_message(def.format))?;
    let chars = match def.format {
        // ASCII, checked by the size: one byte per character.
        ElementFormat::Hex | ElementFormat::Digits => value.len(),
        ElementFormat::Text => value.chars().count(),
    };
    too_long(def, chars)?;
    Ok(size)
}

/// A clear value recovered by decryption: as [`check_clear_text`], its length counted in hex
/// digits for `hex`.
fn check_clear_bytes(def: &ElementDef, clear: &[u8]) -> Result<usize, String> {
    let size = cps::canonical_len(def, cps::ClearValue::Bytes(clear))
        .map_err(|_| format_message(def.format))?;
    let chars = match def.format {
        ElementFormat::Hex => clear.len() * 2,
        // ASCII digits, checked by the size.
        ElementFormat::Digits => clear.len(),
        ElementFormat::Text => {
            let text = std::str::from_utf8(clear).map_err(|_| format_message(def.format))?;
            if text.chars().any(char::is_control) {
                return Err(format_message(def.format));
            }
            text.chars().count()
        }
    };
    too_long(def, chars)?;
    Ok(size)
}

fn format_message(format: ElementFormat) -> String {
    match format {
        ElementFormat::Hex => "the value is not in its declared format (hex)".into(),
        ElementFormat::Digits => "the value is not in its declared format (digits)".into(),
        ElementFormat::Text => "the value is not in its declared format (text)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Code;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse(v: Value, op: Operation) -> Result<DataSubmission, Rejection> {
        parse_submission(&serde_json::to_vec(&v).unwrap(), op)
    }

    fn code(v: Value) -> Code {
        parse(v, Operation::Data).unwrap_err().code
    }

    #[test]
    fn missing_fields_are_111_and_malformed_ones_112() {
        assert_eq!(code(json!({"tokenPersoInfo": []})), Code::Missing);
        assert_eq!(
            code(json!({"issuerId": null, "tokenPersoInfo": []})),
            Code::Missing
        );
        assert_eq!(code(json!({"issuerId": "ISSUER0001"})), Code::Missing);
        assert_eq!(
            code(json!({"issuerId": 12, "tokenPersoInfo": []})),
            Code::Format
        );
        assert_eq!(
            code(json!({"issuerId": "SHORT", "tokenPersoInfo": []})),
            Code::Format
        );
        assert_eq!(
            code(json!({"issuerId": "ISSUER0001", "tokenPersoInfo": {}})),
            Code::Format
        );
        assert_eq!(
            code(json!({"issuerId": "ISSUER0001", "tokenPersoInfo": [{"value": "00"}]})),
            Code::Missing
        );
        assert_eq!(
            code(json!({"issuerId": "ISSUER0001", "tokenPersoInfo": [{"name": "psn"}]})),
            Code::Missing
        );
        assert_eq!(
            code(
                json!({"issuerId": "ISSUER0001", "tokenPersoInfo": [{"name": "", "value": "00"}]})
            ),
            Code::Format
        );
        assert_eq!(
            code(
                json!({"issuerId": "ISSUER0001", "tokenPersoInfo": [{"name": "psn", "value": ""}]})
            ),
            Code::Format
        );
        assert_eq!(
            code(
                json!({"issuerId": "ISSUER0001", "tokenPersoInfo": [{"name": "psn", "value": "00", "keyIndex": ""}]})
            ),
            Code::Format
        );
        assert_eq!(
            parse_submission(b"{", Operation::Data).unwrap_err().code,
            Code::Format
        );
        assert_eq!(
            parse_submission(b"[]", Operation::Data).unwrap_err().code,
            Code::Format
        );
    }

    #[test]
    fn new_data_may_omit_elements_and_checks_token_info() {
        let ok = parse(
            json!({"issuerId": "ISSUER0001", "tokenInfo": {"exp": "1230", "last4": "1234"}}),
            Operation::NewData,
        )
        .unwrap();
        assert!(ok.elements.is_empty());
        assert_eq!(ok.token_info.unwrap().exp.unwrap().as_str(), "1230");
        let bad = parse(
            json!({"issuerId": "ISSUER0001", "tokenInfo": {"exp": "12/30"}}),
            Operation::NewData,
        );
        assert_eq!(bad.unwrap_err().code, Code::Format);
        let bad = parse(
            json!({"issuerId": "ISSUER0001", "tokenInfo": {"last4": "1"}}),
            Operation::NewData,
        );
        assert_eq!(bad.unwrap_err().code, Code::Format);
    }

    #[test]
    fn element_names_are_case_insensitive() {
        let s = parse(
            json!({"issuerId": "ISSUER0001", "tokenPersoInfo": [{"name": "PSN", "value": "01"}]}),
            Operation::Data,
        )
        .unwrap();
        assert_eq!(s.elements[0].name, "psn");
    }

    /// Decrypts nothing: the clear value is the ciphertext itself.
    struct Identity;
    impl ElementDecryptor for Identity {
        fn check_decrypted(
            &self,
            _: &str,
            ciphertext: &[u8],
            check: &mut dyn FnMut(&[u8]) -> Result<(), String>,
        ) -> Result<Result<(), String>, DecryptFault> {
            Ok(check(ciphertext))
        }
    }

    #[test]
    fn checking_gives_the_size_of_each_value_in_a_profile() {
        let sizes = check_elements(
            &profile(),
            &[
                el("psn", "01", None),
                el("par", "PAR é", None),
                el("track2_data", "A1B2C3", Some("K")),
            ],
            &Identity,
        )
        .unwrap();
        let want = ElementSizes::of(&profile(), [("par", 6), ("psn", 1), ("track2_data", 3)]);
        assert_eq!(
            sizes, want,
            "digits as packed BCD, text as UTF-8, hex as its bytes"
        );
    }

    struct NoKeys;
    impl ElementDecryptor for NoKeys {
        fn check_decrypted(
            &self,
            _: &str,
            _: &[u8],
            _: &mut dyn FnMut(&[u8]) -> Result<(), String>,
        ) -> Result<Result<(), String>, DecryptFault> {
            Err(DecryptFault::UnknownKey)
        }
    }

    fn profile() -> ProfileDefinition {
        serde_json::from_value::<ProfileDefinition>(json!({
            "dataElements": [
                {"name": "psn", "required": true, "format": "digits", "maxLength": 2},
                {"name": "par", "format": "text", "maxLength": 29},
                {"name": "track2_data", "required": true, "format": "hex", "sensitive": true}
            ],
            "template": []
        }))
        .unwrap()
        .validate()
        .unwrap()
    }

    fn el(name: &str, value: &str, key: Option<&str>) -> IncomingElement {
        IncomingElement {
            name: name.into(),
            value: value.into(),
            key_index: key.map(Into::into),
        }
    }

    #[test]
    fn elements_are_checked_against_the_profile_with_431() {
        let p = profile();
        let check = |els: Vec<IncomingElement>| check_elements(&p, &els, &NoKeys);
        assert!(check(vec![el("psn", "01", None)]).is_ok());
        for bad in [
            vec![el("unknown", "01", None)],
            vec![el("psn", "0A", None)],
            vec![el("psn", "001", None)],
            vec![el("psn", "01", None), el("psn", "02", None)],
            vec![el("track2_data", "00", None)],
            vec![el("track2_data", "zz", Some("K1"))],
            vec![el(
                "track2_data",
                "00112233445566778899AABBCCDDEEFF",
                Some("K1"),
            )],
            vec![el("par", "a\u{7}b", None)],
        ] {
            let r = check(bad.clone()).unwrap_err();
            assert_eq!(r.code, Code::InvalidPersoData, "{bad:?}");
        }
    }

    #[test]
    fn the_100000_character_total_is_enforced() {
        let p: ProfileDefinition = serde_json::from_value::<ProfileDefinition>(json!({
            "dataElements": [{"name": "a", "format": "text"}, {"name": "b", "format": "text"}],
            "template": []
        }))
        .unwrap()
        .validate()
        .unwrap();
        let ok = vec![
            el("a", &"x".repeat(50_000), None),
            el("b", &"x".repeat(50_000), None),
        ];
        assert!(check_elements(&p, &ok, &NoKeys).is_ok());
        let over = vec![
            el("a", &"x".repeat(50_000), None),
            el("b", &"x".repeat(50_001), None),
        ];
        assert_eq!(
            check_elements(&p, &over, &NoKeys).unwrap_err().code,
            Code::InvalidPersoData
        );
    }

    #[test]
    fn messages_never_carry_values() {
        let p = profile();
        let secret = "4761739001010119D22122011758928889";
        let r = check_elements(&p, &[el("psn", secret, None)], &NoKeys).unwrap_err();
        assert!(!r.message.contains(secret));
        assert!(!format!("{:?}", el("psn", secret, None)).contains(secret));
    }

    #[test]
    fn hex_is_hex_of_either_case_and_nothing_else() {
        assert_eq!(decode_hex("00aBcD"), Some(vec![0x00, 0xAB, 0xCD]));
        assert_eq!(decode_hex(""), Some(vec![]));
        for bad in ["0x00", "0X00", "abc", "zz", " 00", "00 ", "éé"] {
            assert_eq!(decode_hex(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_submission(&body, Operation::Data);
            let _ = parse_submission(&body, Operation::NewData);
        }

        #[test]
        fn element_count_limit_is_200(n in 0usize..260) {
            let items: Vec<Value> = (0..n).map(|i| json!({"name": format!("e{i}"), "value": "00"})).collect();
            let r = parse(json!({"issuerId": "ISSUER0001", "tokenPersoInfo": items}), Operation::Data);
            prop_assert_eq!(r.is_ok(), n <= 200);
        }

        #[test]
        fn name_length_limit_is_32_characters(name in "\\PC{1,40}") {
            let r = parse(json!({"issuerId": "ISSUER0001", "tokenPersoInfo": [{"name": name.clone(), "value": "00"}]}), Operation::Data);
            prop_assert_eq!(r.is_ok(), name.chars().count() <= 32);
        }
    }
}
