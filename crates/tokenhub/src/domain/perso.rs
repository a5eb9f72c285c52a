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

/// The first byte of a part in the binary layout of [`encode_part`]; parts sealed before it are
/// JSON arrays (`[`) and still read.
const PART_BINARY: u8 = 0x01;
const VALUE_TEXT: u8 = 0;
const VALUE_UPPER_HEX: u8 = 1;
const VALUE_LOWER_HEX: u8 = 2;

/// The elements of one call as their part holds them (sealed under the token's data key): per
/// element, its name, key index and value, each with its length (u16, u16, u32, big-endian), after
/// a byte telling how the value is kept. A hex value (most of them: keys, cryptograms,
/// ciphertexts) is kept as its bytes, half its text, with its case; anything else as its text.
/// The part of a 40-element call is ~5 KB instead of ~9.7 KB of JSON: one page of the database
/// less to write per call.
pub fn encode_part(elements: &[IncomingElement]) -> Vec<u8> {
    let forms: Vec<u8> = elements.iter().map(|e| value_form(&e.value)).collect();
    let size = 1 + elements
        .iter()
        .zip(&forms)
        .map(|(e, form)| {
            let value = if *form == VALUE_TEXT {
                e.value.len()
            } else {
                e.value.len() / 2
            };
            2 + e.name.len() + 2 + e.key_index.as_ref().map_or(0, String::len) + 1 + 4 + value
        })
        .sum::<usize>();
    // Sized once: a vector that grows leaves copies of the clear values behind it.
    let mut out = Vec::with_capacity(size);
    out.push(PART_BINARY);
    for (e, form) in elements.iter().zip(forms) {
        let key_index = e.key_index.as_deref().unwrap_or("");
        for field in [e.name.as_bytes(), key_index.as_bytes()] {
            out.extend_from_slice(&(field.len() as u16).to_be_bytes());
            out.extend_from_slice(field);
        }
        let at = out.len();
        if form != VALUE_TEXT {
            out.push(form);
            out.extend_from_slice(&((e.value.len() / 2) as u32).to_be_bytes());
            let start = out.len();
            out.resize(start + e.value.len() / 2, 0);
            if const_hex::decode_to_slice(&e.value, &mut out[start..]).is_ok() {
                continue;
            }
            // Not reached (`value_form` checked the digits); kept as text if it were.
            out.truncate(at);
        }
        out.push(VALUE_TEXT);
        out.extend_from_slice(&(e.value.len() as u32).to_be_bytes());
        out.extend_from_slice(e.value.as_bytes());
    }
    out
}

/// How [`encode_part`] keeps a value: as bytes when it is hex of one case (digits alone count as
/// upper case: they read back the same), else as text. Names and key indexes are at most 32
/// characters and values at most 100,000, so every length fits its field.
fn value_form(value: &str) -> u8 {
    let b = value.as_bytes();
    if b.is_empty() || b.len() % 2 != 0 || b.len() / 2 > u32::MAX as usize {
        VALUE_TEXT
    } else {
        // One pass with no early exit, which the compiler turns into vector code: which kinds of
        // byte occur (two `all` scans, a byte at a time, were ~5 % of the HTTP workers' time).
        let (mut upper, mut lower, mut other) = (0u8, 0u8, 0u8);
        for &c in b {
            let is_digit = u8::from(c.wrapping_sub(b'0') < 10);
            let is_upper = u8::from(c.wrapping_sub(b'A') < 6);
            let is_lower = u8::from(c.wrapping_sub(b'a') < 6);
            upper |= is_upper;
            lower |= is_lower;
            other |= 1 ^ (is_digit | is_upper | is_lower);
        }
        match (other, upper, lower) {
            (0, _, 0) => VALUE_UPPER_HEX,
            (0, 0, _) => VALUE_LOWER_HEX,
            _ => VALUE_TEXT,
        }
    }
}

/// Reads a part back: the layout of [`encode_part`], or the JSON array parts were before it.
pub fn decode_part(bytes: &[u8]) -> Result<Vec<IncomingElement>, String> {
    match bytes.first() {
        Some(&PART_BINARY) => decode_binary_part(&bytes[1..]),
        Some(b'[') => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        _ => Err("not a data part".into()),
    }
}

fn decode_binary_part(mut rest: &[u8]) -> Result<Vec<IncomingElement>, String> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if rest.len() < n {
            return Err("a data part ends too early".into());
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head)
    }
    fn text(bytes: &[u8]) -> Result<String, String> {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| "a data part holds text that is not UTF-8".into())
    }
    fn field<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], String> {
        let len = take(rest, 2)?;
        take(rest, usize::from(u16::from_be_bytes([len[0], len[1]])))
    }
    let mut elements = Vec::new();
    while !rest.is_empty() {
        let name = text(field(&mut rest)?)?;
        let key_index = field(&mut rest)?;
        let key_index = (!key_index.is_empty())
            .then(|| text(key_index))
            .transpose()?;
        let form = take(&mut rest, 1)?[0];
        let len = take(&mut rest, 4)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let value = take(&mut rest, len)?;
        let value = match form {
            VALUE_TEXT => text(value)?,
            VALUE_UPPER_HEX => hex::encode_upper(value),
            VALUE_LOWER_HEX => hex::encode(value),
            _ => return Err("a data part holds a value of an unknown form".into()),
        };
        elements.push(IncomingElement {
            name,
            value,
            key_index,
        });
    }
    Ok(elements)
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

    fn element(name: &str, value: &str, key_index: Option<&str>) -> IncomingElement {
        IncomingElement {
            name: name.into(),
            value: value.into(),
            key_index: key_index.map(Into::into),
        }
    }

    #[test]
    fn hex_is_hex_of_either_case_and_nothing_else() {
        assert_eq!(decode_hex("00aBcD"), Some(vec![0x00, 0xAB, 0xCD]));
        assert_eq!(decode_hex(""), Some(vec![]));
        for bad in ["0x00", "0X00", "abc", "zz", " 00", "00 ", "éé"] {
            assert_eq!(decode_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_part_keeps_every_value_exactly_and_hex_as_bytes() {
        let elements = vec![
            element("cmk_ac", "00112233AABBCCDD", Some("KEK01")),
            element("psn", "01", None),
            element("lower", "a0b1c2", None),
            element("mixed", "aB", None),
            element("odd", "ABC", None),
            element("text", "Café 🙂", None),
        ];
        let part = encode_part(&elements);
        assert_eq!(decode_part(&part).unwrap(), elements);
        let json = serde_json::to_vec(&elements).unwrap();
        assert!(part.len() < json.len());
        // Parts sealed before the binary layout are JSON.
        assert_eq!(decode_part(&json).unwrap(), elements);
        assert!(decode_part(b"").is_err());
        assert!(decode_part(&part[..part.len() - 1]).is_err());
    }

    proptest! {
        #[test]
        fn any_part_reads_back_as_it_was(
            elements in proptest::collection::vec(
                ("[a-z_0-9]{1,32}", "[0-9A-Fa-f]{0,40}|\\PC{0,20}", proptest::option::of("[A-Z0-9]{1,32}")),
                0..20,
            )
        ) {
            let elements: Vec<IncomingElement> = elements
                .into_iter()
                .map(|(name, value, key_index)| IncomingElement { name, value, key_index })
                .collect();
            prop_assert_eq!(decode_part(&encode_part(&elements)).unwrap(), elements);
        }

        #[test]
        fn a_value_is_kept_as_bytes_exactly_when_it_is_hex_of_one_case(value in "[0-9A-Ga-g/:@`]{0,12}|\\PC{0,8}") {
            let b = value.as_bytes();
            let even = !b.is_empty() && b.len() % 2 == 0;
            let expected = if even && b.iter().all(|c| matches!(c, b'0'..=b'9' | b'A'..=b'F')) {
                VALUE_UPPER_HEX
            } else if even && b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
                VALUE_LOWER_HEX
            } else {
                VALUE_TEXT
            };
            prop_assert_eq!(value_form(&value), expected);
        }

        #[test]
        fn reading_arbitrary_parts_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_part(&bytes);
            let mut binary = vec![PART_BINARY];
            binary.extend(bytes);
            let _ = decode_part(&binary);
        }

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
