//! The layout of a sealed data part: the elements of one `/data` or `/newData` call as they are
//! kept, sealed under the token's data key, until the device holds its profile.

use super::perso::IncomingElement;

/// The first byte of a part: the version of its layout.
const PART_BINARY: u8 = 0x01;
const VALUE_TEXT: u8 = 0;
const VALUE_UPPER_HEX: u8 = 1;
const VALUE_LOWER_HEX: u8 = 2;

/// The elements of one call as their part holds them (sealed under the token's data key): per
/// element, its name, key index and value, each with its length (u16, u16, u32, big-endian), after
/// a byte telling how the value is kept. A hex value (most of them: keys, cryptograms,
/// ciphertexts) is kept as its bytes, half its text, with its case; anything else as its text.
/// Hex kept as bytes makes a part about half the size of the call's text: fewer database pages
/// written per call.
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
        // byte occur.
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

/// Reads a part back (the layout of [`encode_part`]).
pub fn decode_part(bytes: &[u8]) -> Result<Vec<IncomingElement>, String> {
    match bytes.split_first() {
        Some((&PART_BINARY, rest)) => decode_binary_part(rest),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn element(name: &str, value: &str, key_index: Option<&str>) -> IncomingElement {
        IncomingElement {
            name: name.into(),
            value: value.into(),
            key_index: key_index.map(Into::into),
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
        assert!(
            decode_part(&json).is_err(),
            "only the binary layout is read"
        );
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
    }
}
