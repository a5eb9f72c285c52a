//! Incoming data preparation (`/data`, `/newData`): checking each element against the product's
//! profile version (the body is parsed in `submission`), with one answer for every refused value.

use super::cps;
use super::ids::Rejection;
use super::profile::{ElementDef, ElementFormat, ProfileDefinition};
use super::shared_key::KeyPurpose;

/// At most this many characters of values, all elements of one call together.
pub const MAX_TOTAL_VALUE_CHARS: usize = 100_000;

pub use super::submission::{
    parse_submission, DataSubmission, IncomingElement, Operation, TokenInfo, MAX_ELEMENTS,
};

/// Why an encrypted value could not be checked; found by the `keys` module, told to the hub's log
/// only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecryptFault {
    UnknownKey,
    /// Not a whole number of cipher blocks.
    Length,
    /// The padding is wrong after decryption.
    Padding,
}

/// Decrypts `ciphertext` under the key `key_index` of the calling TSP, which must be an active
/// key of `purpose`, and runs `check` on the clear bytes, which never leave the decryptor. A key
/// of another TSP, of another purpose, or retired is an unknown key. Implemented inside `keys` (`Keys::check_elements`).
///
/// The decryption and the check run whatever is wrong with the value (under a stand-in key when
/// the key is unknown, on the whole blocks when the length is wrong, on every clear byte when the
/// padding is wrong), and only then is the fault returned: how long a refusal takes must not tell
/// where the value failed.
pub trait ElementDecryptor {
    fn check_decrypted(
        &self,
        key_index: &str,
        purpose: KeyPurpose,
        ciphertext: &[u8],
        check: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> (Option<DecryptFault>, Result<(), String>);
}

pub use super::cps::ElementSizes;

/// The one answer to every refused value (unknown key, wrong length, wrong padding, clear value of
/// the wrong format or length): telling them apart, or naming the element that failed first,
/// would make the hub an oracle on ciphertexts it is sent.
pub const VALUE_REFUSED: &str =
    "a value in tokenPersoInfo is refused (its key, length, padding and format are not told apart)";

/// A call's elements refused: the answer, and the detail for the hub's own log (element names,
/// key indexes and rules, never values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementsRefused {
    pub rejection: Rejection,
    pub detail: String,
}

impl ElementsRefused {
    fn plain(rejection: Rejection) -> Self {
        Self {
            detail: rejection.message.clone(),
            rejection,
        }
    }
}

/// Gives each element that arrived without `keyIndex` the key its profile version names for it,
/// if any (the contract: a value may be encrypted even if no key index is given), so that it is
/// decrypted, checked, stored and built as one that named its key.
pub fn resolve_default_keys(profile: &ProfileDefinition, elements: &mut [IncomingElement]) {
    for e in elements.iter_mut().filter(|e| e.key_index.is_none()) {
        if let Some(place) = profile.element_index(&e.name) {
            e.key_index = profile.default_key(place).map(str::to_string);
        }
    }
}

/// Checks every element of one call against the profile version (431 for any fault); returns the
/// size each takes in a profile. What the call's shape shows (names, repeats, total size, a
/// sensitive element with no key) is checked first and told; then every value is checked, all of
/// them whatever fails, and any failure gets the one answer [`VALUE_REFUSED`].
pub fn check_elements(
    profile: &ProfileDefinition,
    elements: &[IncomingElement],
    decryptor: &dyn ElementDecryptor,
) -> Result<ElementSizes, ElementsRefused> {
    // A value has no more characters than bytes: the characters are counted only when the bytes
    // are over the limit.
    let bytes: usize = elements.iter().map(|e| e.value.len()).sum();
    let total: usize = if bytes > MAX_TOTAL_VALUE_CHARS {
        elements.iter().map(|e| e.value.chars().count()).sum()
    } else {
        bytes
    };
    if total > MAX_TOTAL_VALUE_CHARS {
        return Err(ElementsRefused::plain(Rejection::perso(format!(
            "the values together are {total} characters; at most {MAX_TOTAL_VALUE_CHARS} are allowed"
        ))));
    }
    let mut sizes = ElementSizes::for_profile(profile);
    let mut places = Vec::with_capacity(elements.len());
    let mut seen = vec![false; profile.data_elements.len()];
    for e in elements {
        let Some(place) = profile.element_index(&e.name) else {
            return Err(ElementsRefused::plain(Rejection::perso(format!(
                "element {} is not defined by the product's profile",
                e.name
            ))));
        };
        if std::mem::replace(&mut seen[place], true) {
            return Err(ElementsRefused::plain(Rejection::perso(format!(
                "element {} appears more than once",
                e.name
            ))));
        }
        if e.key_index.is_none() && profile.data_elements[place].sensitive {
            return Err(ElementsRefused::plain(Rejection::perso(format!(
                "element {}: a sensitive element must arrive encrypted under a keyIndex \
                 (the profile names no default key for it)",
                e.name
            ))));
        }
        places.push(place);
    }
    let mut first_fault = None;
    for (e, &place) in elements.iter().zip(&places) {
        match check_element(&profile.data_elements[place], e, decryptor) {
            Ok(size) => sizes.set(place, size),
            Err(why) => {
                first_fault.get_or_insert_with(|| format!("element {}: {why}", e.name));
            }
        }
    }
    match first_fault {
        None => Ok(sizes),
        Some(detail) => Err(ElementsRefused {
            rejection: Rejection::perso(VALUE_REFUSED),
            detail,
        }),
    }
}

/// Checks one element's value; returns the size of its canonical bytes, or why it is refused.
fn check_element(
    def: &ElementDef,
    e: &IncomingElement,
    decryptor: &dyn ElementDecryptor,
) -> Result<usize, String> {
    let Some(index) = &e.key_index else {
        return check_clear_text(def, &e.value);
    };
    // A value that is not hex is still decrypted (zeros of its length), so that it takes as
    // long as one that is.
    let (ciphertext, hex) = match decode_hex(&e.value) {
        Some(bytes) => (bytes, true),
        None => (vec![0; e.value.len() / 2], false),
    };
    let mut size = 0;
    let mut check = |clear: &[u8]| {
        size = check_clear_bytes(def, clear)?;
        Ok(())
    };
    let purpose = def.key_purpose();
    let (fault, checked) = decryptor.check_decrypted(index, purpose, &ciphertext, &mut check);
    match (hex, fault, checked) {
        (false, _, _) => Err("an encrypted value must be hex".into()),
        (true, Some(DecryptFault::UnknownKey), _) => Err(format!(
            "keyIndex {index} is not an active {purpose} of the token's TSP"
        )),
        (true, Some(DecryptFault::Length), _) => Err(format!(
            "the value is not a whole number of blocks of keyIndex {index}'s cipher"
        )),
        (true, Some(DecryptFault::Padding), _) => Err(format!(
            "the value's padding is wrong once decrypted under keyIndex {index}"
        )),
        (true, None, Err(why)) => Err(why),
        (true, None, Ok(())) => Ok(size),
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
    use serde_json::json;

    /// Decrypts nothing: the clear value is the ciphertext itself.
    struct Identity;
    impl ElementDecryptor for Identity {
        fn check_decrypted(
            &self,
            _: &str,
            _: KeyPurpose,
            ciphertext: &[u8],
            check: &mut dyn FnMut(&[u8]) -> Result<(), String>,
        ) -> (Option<DecryptFault>, Result<(), String>) {
            (None, check(ciphertext))
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
            _: KeyPurpose,
            _: &[u8],
            check: &mut dyn FnMut(&[u8]) -> Result<(), String>,
        ) -> (Option<DecryptFault>, Result<(), String>) {
            (Some(DecryptFault::UnknownKey), check(&[0; 16]))
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
            let r = check(bad.clone()).unwrap_err().rejection;
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
            check_elements(&p, &over, &NoKeys)
                .unwrap_err()
                .rejection
                .code,
            Code::InvalidPersoData
        );
    }

    /// Fails as told, after running the check.
    struct Faulty(Option<DecryptFault>);
    impl ElementDecryptor for Faulty {
        fn check_decrypted(
            &self,
            _: &str,
            _: KeyPurpose,
            ciphertext: &[u8],
            check: &mut dyn FnMut(&[u8]) -> Result<(), String>,
        ) -> (Option<DecryptFault>, Result<(), String>) {
            (self.0, check(ciphertext))
        }
    }

    #[test]
    fn every_refused_value_gets_the_same_answer_and_only_the_log_tells_why() {
        let p = profile();
        let good = el("track2_data", "A1B2", Some("K"));
        let mut answers = Vec::new();
        let mut details = Vec::new();
        for (elements, fault) in [
            (vec![good.clone()], Some(DecryptFault::UnknownKey)),
            (vec![good.clone()], Some(DecryptFault::Length)),
            (vec![good.clone()], Some(DecryptFault::Padding)),
            (vec![el("track2_data", "zz", Some("K"))], None),
            (vec![el("psn", "0A", None), good.clone()], None),
            (vec![good.clone(), el("psn", "123", None)], None),
            (vec![el("par", &"P".repeat(30), None)], None),
        ] {
            let r = check_elements(&p, &elements, &Faulty(fault)).unwrap_err();
            answers.push(r.rejection);
            details.push(r.detail);
        }
        assert!(
            answers
                .iter()
                .all(|a| *a == Rejection::perso(VALUE_REFUSED)),
            "{answers:?}"
        );
        details.dedup();
        assert_eq!(details.len(), 7, "the log tells each apart: {details:?}");
        assert!(check_elements(&p, &[good], &Faulty(None)).is_ok());
    }

    #[test]
    fn messages_never_carry_values() {
        let p = profile();
        let secret = "4761739001010119D22122011758928889";
        let r = check_elements(&p, &[el("psn", secret, None)], &NoKeys).unwrap_err();
        assert!(!r.rejection.message.contains(secret));
        assert!(!r.detail.contains(secret));
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
}
