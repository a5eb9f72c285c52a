//! The personalization profile in the EMV CPS manner: a sequence of DGIs (2-byte identifier, BER
//! length — one byte, or `FF` and two bytes — and value). Records (`SSRR` DGIs whose template starts
//! with tag `70`) hold BER-TLV; secret DGIs (`8xxx`) hold raw values.
//!
//! [`build`] fills the product's template with a token's element values as the profile version
//! places them; [`encode`] and [`decode`] are the wire form. Pure: called by `keys`, which alone
//! holds the clear values.

use super::profile::{ElementDef, ElementFormat, ProfileDefinition};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// One DGI of a built profile.
#[derive(Clone, PartialEq, Eq)]
pub struct Dgi {
    pub id: u16,
    pub value: Vec<u8>,
}

impl std::fmt::Debug for Dgi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A DGI may hold a key: show its id and size only.
        write!(f, "Dgi({:04X}, {} bytes)", self.id, self.value.len())
    }
}

impl Drop for Dgi {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.value.zeroize();
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("element {0} is required by the profile version but is not held")]
    Missing(String),
    #[error("element {0} cannot be placed: {1}")]
    Placement(String, String),
    #[error("DGI {0:04X} would be longer than 65535 bytes")]
    TooLong(u16),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the profile ends inside a DGI header at byte {0}")]
    TruncatedHeader(usize),
    #[error("DGI {0:04X} claims {1} bytes but only {2} remain")]
    TruncatedValue(u16, usize, usize),
}

/// An element's clear value, as `keys` recovered it.
pub enum ClearValue<'a> {
    /// Sent in clear: the text of `value`.
    Text(&'a str),
    /// Sent encrypted: the decrypted bytes.
    Bytes(&'a [u8]),
}

/// The bytes an element contributes to the profile: hex → its bytes; digits → packed BCD (padded
/// with `F` to a whole byte); text → UTF-8. Decrypted `digits` and `text` are ASCII/UTF-8 bytes and
/// are converted the same way. These are also the bytes a fingerprint is computed over, so a value
/// resent in another letter case or under another key gives the same fingerprint.
pub fn canonical_bytes(
    def: &ElementDef,
    value: ClearValue<'_>,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let text = match (def.format, &value) {
        (ElementFormat::Hex, ClearValue::Bytes(b)) => return Ok(Zeroizing::new(b.to_vec())),
        (ElementFormat::Hex, ClearValue::Text(t)) => {
            return super::perso::decode_hex(t)
                .map(Zeroizing::new)
                .ok_or_else(|| "not hex".to_string());
        }
        (_, ClearValue::Text(t)) => Zeroizing::new(t.to_string()),
        (_, ClearValue::Bytes(b)) => Zeroizing::new(
            std::str::from_utf8(b)
                .map_err(|_| "not UTF-8".to_string())?
                .to_string(),
        ),
    };
    match def.format {
        ElementFormat::Digits => packed_bcd(&text).ok_or_else(|| "not digits".to_string()),
        _ => Ok(Zeroizing::new(text.as_bytes().to_vec())),
    }
}

/// The length of [`canonical_bytes`]' result, or its error, without making the bytes: what a
/// `/data` call needs of each element (the sizes a profile is checked with).
pub fn canonical_len(def: &ElementDef, value: ClearValue<'_>) -> Result<usize, String> {
    let text = match (def.format, &value) {
        (ElementFormat::Hex, ClearValue::Bytes(b)) => return Ok(b.len()),
        (ElementFormat::Hex, ClearValue::Text(t)) => {
            return (t.len() % 2 == 0 && t.bytes().all(|b| b.is_ascii_hexdigit()))
                .then_some(t.len() / 2)
                .ok_or_else(|| "not hex".to_string());
        }
        (_, ClearValue::Text(t)) => *t,
        (_, ClearValue::Bytes(b)) => std::str::from_utf8(b).map_err(|_| "not UTF-8".to_string())?,
    };
    match def.format {
        ElementFormat::Digits if text.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(text.len().div_ceil(2))
        }
        ElementFormat::Digits => Err("not digits".to_string()),
        _ => Ok(text.len()),
    }
}

fn packed_bcd(digits: &str) -> Option<Zeroizing<Vec<u8>>> {
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nibbles: Vec<u8> = digits.bytes().map(|b| b - b'0').collect();
    if nibbles.len() % 2 == 1 {
        nibbles.push(0xF);
    }
    Some(Zeroizing::new(
        nibbles.chunks(2).map(|p| (p[0] << 4) | p[1]).collect(),
    ))
}

/// Builds the profile: the template's DGIs in order, each record DGI (`70` template) with the
/// tagged elements placed in it appended inside the template, each untagged element concatenated
/// as the DGI's value; DGIs named only by elements follow, in the order of the element dictionary.
pub fn build(
    def: &ProfileDefinition,
    values: &BTreeMap<String, Zeroizing<Vec<u8>>>,
) -> Result<Vec<Dgi>, BuildError> {
    build_with(def, |name| values.get(name).map(|v| v.as_slice()))
}

/// [`build`], with each element's value (by name) from `value`.
fn build_with<'v>(
    def: &ProfileDefinition,
    value: impl Fn(&str) -> Option<&'v [u8]>,
) -> Result<Vec<Dgi>, BuildError> {
    for name in def.required_names() {
        if value(name).is_none() {
            return Err(BuildError::Missing(name.to_string()));
        }
    }
    let mut order: Vec<u16> = Vec::new();
    let mut contents: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
    for t in &def.template {
        let id = parse_dgi_id(&t.dgi)
            .ok_or_else(|| BuildError::Placement(t.dgi.clone(), "bad DGI".into()))?;
        let data = hex::decode(&t.data)
            .map_err(|_| BuildError::Placement(t.dgi.clone(), "bad template data".into()))?;
        if !contents.contains_key(&id) {
            order.push(id);
        }
        contents.entry(id).or_default().extend_from_slice(&data);
    }
    for e in &def.data_elements {
        let (Some(dgi), Some(value)) = (&e.dgi, value(&e.name)) else {
            continue;
        };
        let id = parse_dgi_id(dgi)
            .ok_or_else(|| BuildError::Placement(e.name.clone(), "bad DGI".into()))?;
        if !contents.contains_key(&id) {
            order.push(id);
        }
        let content = contents.entry(id).or_default();
        match &e.tag {
            None => content.extend_from_slice(value),
            Some(tag) => {
                let tag = hex::decode(tag)
                    .map_err(|_| BuildError::Placement(e.name.clone(), "bad tag".into()))?;
                let tlv = tlv(&tag, value);
                append_to_record(content, &tlv)
                    .map_err(|why| BuildError::Placement(e.name.clone(), why))?;
            }
        }
    }
    let mut out = Vec::with_capacity(order.len());
    for id in order {
        let value = contents.remove(&id).unwrap_or_default();
        if value.len() > 0xFFFF {
            return Err(BuildError::TooLong(id));
        }
        out.push(Dgi { id, value });
    }
    Ok(out)
}

/// The size in bytes each element takes in a profile (its canonical bytes, [`canonical_bytes`]),
/// by the element's place in the profile version's definition it was made for: all that building
/// a profile depends on ([`check_fits`]). A name the definition does not define has no place, and
/// no size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElementSizes(Vec<Option<usize>>);

impl ElementSizes {
    /// No size yet for any element of `def`.
    pub fn for_profile(def: &ProfileDefinition) -> Self {
        Self(vec![None; def.data_elements.len()])
    }

    /// The sizes of named values, for `def` (names it does not define are left out).
    pub fn of<'a>(
        def: &ProfileDefinition,
        sizes: impl IntoIterator<Item = (&'a str, usize)>,
    ) -> Self {
        let mut out = Self::for_profile(def);
        for (name, size) in sizes {
            if let Some(i) = def.element_index(name) {
                out.set(i, size);
            }
        }
        out
    }

    /// The size of the element at `place` in the definition, if it has one.
    pub fn at(&self, place: usize) -> Option<usize> {
        self.0.get(place).copied().flatten()
    }

    /// Sets the size of the element at `place` (a place of the definition these sizes are for).
    pub fn set(&mut self, place: usize, size: usize) {
        if let Some(slot) = self.0.get_mut(place) {
            *slot = Some(size);
        }
    }

    fn longest(&self) -> usize {
        self.0.iter().flatten().copied().max().unwrap_or(0)
    }
}

/// Whether values of these sizes make a profile of `def`: [`build`] fails on sizes alone, since a
/// validated profile version never puts an untagged element into a DGI that takes tagged ones (the
/// only place a value's bytes are read). An element's size is the one the first of `layers` that
/// has it gives; every layer was made for `def`.
pub fn check_fits(def: &ProfileDefinition, layers: &[&ElementSizes]) -> Result<(), BuildError> {
    let longest = layers.iter().map(|s| s.longest()).max().unwrap_or(0);
    let zeros = vec![0u8; longest];
    build_with(def, |name| {
        let place = def.element_index(name)?;
        layers
            .iter()
            .find_map(|sizes| sizes.at(place))
            .map(|len| &zeros[..len])
    })
    .map(drop)
}

fn parse_dgi_id(s: &str) -> Option<u16> {
    (s.len() == 4)
        .then(|| u16::from_str_radix(s, 16).ok())
        .flatten()
}

/// BER length encoding.
fn ber_len(len: usize, out: &mut Vec<u8>) {
    match len {
        0..=0x7F => out.push(len as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, len as u8]),
        _ => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
    }
}

fn tlv(tag: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len() + 3 + value.len());
    out.extend_from_slice(tag);
    ber_len(value.len(), &mut out);
    out.extend_from_slice(value);
    out
}

/// Appends `tlv` inside the DGI's `70` record template (re-encoding its length), or creates the
/// template when the DGI is empty. A DGI holding something else cannot take tagged elements.
fn append_to_record(content: &mut Vec<u8>, tlv_bytes: &[u8]) -> Result<(), String> {
    let inner: Vec<u8> = if content.is_empty() {
        Vec::new()
    } else {
        let (tag, value, rest) = read_tlv(content).ok_or("the DGI's template is not BER-TLV")?;
        if tag != [0x70] || !rest.is_empty() {
            return Err("the DGI's template is not a single 70 record template".into());
        }
        value.to_vec()
    };
    let mut value = inner;
    value.extend_from_slice(tlv_bytes);
    *content = tlv(&[0x70], &value);
    Ok(())
}

/// Reads one BER-TLV: (tag, value, rest).
pub fn read_tlv(data: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let first = *data.first()?;
    let mut i = 1;
    if first & 0x1F == 0x1F {
        while *data.get(i)? & 0x80 != 0 {
            i += 1;
        }
        i += 1;
    }
    let tag = data.get(..i)?;
    let l0 = *data.get(i)?;
    i += 1;
    let len = match l0 {
        0..=0x7F => l0 as usize,
        0x81 => {
            i += 1;
            *data.get(i - 1)? as usize
        }
        0x82 => {
            i += 2;
            u16::from_be_bytes([*data.get(i - 2)?, *data.get(i - 1)?]) as usize
        }
        _ => return None,
    };
    let value = data.get(i..i.checked_add(len)?)?;
    Some((tag, value, &data[i + len..]))
}

/// The wire form: `id (2) | len (1, or FF + 2) | value` for each DGI.
pub fn encode(dgis: &[Dgi]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(
        dgis.iter().map(|d| d.value.len() + 5).sum(),
    ));
    for d in dgis {
        out.extend_from_slice(&d.id.to_be_bytes());
        if d.value.len() < 0xFF {
            out.push(d.value.len() as u8);
        } else {
            out.push(0xFF);
            out.extend_from_slice(&(d.value.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&d.value);
    }
    out
}

pub fn decode(mut bytes: &[u8]) -> Result<Vec<Dgi>, DecodeError> {
    let total = bytes.len();
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let at = total - bytes.len();
        if bytes.len() < 3 {
            return Err(DecodeError::TruncatedHeader(at));
        }
        let id = u16::from_be_bytes([bytes[0], bytes[1]]);
        let (len, header) = if bytes[2] == 0xFF {
            if bytes.len() < 5 {
                return Err(DecodeError::TruncatedHeader(at));
            }
            (u16::from_be_bytes([bytes[3], bytes[4]]) as usize, 5)
        } else {
            (bytes[2] as usize, 3)
        };
        let rest = &bytes[header..];
        if rest.len() < len {
            return Err(DecodeError::TruncatedValue(id, len, rest.len()));
        }
        out.push(Dgi {
            id,
            value: rest[..len].to_vec(),
        });
        bytes = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn profile() -> ProfileDefinition {
        serde_json::from_value::<ProfileDefinition>(json!({
            "dataElements": [
                {"name": "cmk_ac", "required": true, "format": "hex", "sensitive": true, "dgi": "8001"},
                {"name": "track2_data", "required": true, "format": "hex", "sensitive": true, "dgi": "0101", "tag": "57"},
                {"name": "psn", "required": true, "format": "digits", "dgi": "0101", "tag": "5F34"},
                {"name": "par", "format": "text", "dgi": "0101", "tag": "9F24"}
            ],
            "template": [
                {"dgi": "9102", "data": "A5038801FF"},
                {"dgi": "0101", "data": "70049F0701FF"}
            ]
        }))
        .unwrap()
        .validate()
        .unwrap()
    }

    fn values(pairs: &[(&str, &[u8])]) -> BTreeMap<String, Zeroizing<Vec<u8>>> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), Zeroizing::new(v.to_vec())))
            .collect()
    }

    #[test]
    fn elements_are_placed_where_the_profile_says() {
        let key = [0x11u8; 16];
        let dgis = build(
            &profile(),
            &values(&[
                ("cmk_ac", &key),
                ("track2_data", &[0x47, 0x61]),
                ("psn", &[0x01]),
            ]),
        )
        .unwrap();
        let ids: Vec<u16> = dgis.iter().map(|d| d.id).collect();
        assert_eq!(ids, vec![0x9102, 0x0101, 0x8001]);
        assert_eq!(dgis[2].value, key);
        // 70 L [9F07 01 FF] [57 02 4761] [5F34 01 01]
        assert_eq!(
            hex::encode_upper(&dgis[1].value),
            "700C9F0701FF57024761".to_string() + "5F340101"
        );
        let (tag, inner, rest) = read_tlv(&dgis[1].value).unwrap();
        assert_eq!((tag, rest.len()), (&[0x70u8][..], 0));
        assert_eq!(inner.len(), 12);
    }

    #[test]
    fn a_missing_required_element_is_refused() {
        let err = build(&profile(), &values(&[("cmk_ac", &[0; 16])])).unwrap_err();
        assert!(matches!(err, BuildError::Missing(_)));
    }

    #[test]
    fn canonical_bytes_follow_the_format() {
        let p = profile();
        let psn = p.element("psn").unwrap();
        assert_eq!(
            &*canonical_bytes(psn, ClearValue::Text("01")).unwrap(),
            &[0x01]
        );
        assert_eq!(
            &*canonical_bytes(psn, ClearValue::Text("123")).unwrap(),
            &[0x12, 0x3F]
        );
        let t2 = p.element("track2_data").unwrap();
        assert_eq!(
            canonical_bytes(t2, ClearValue::Text("ab01")).unwrap(),
            canonical_bytes(t2, ClearValue::Text("AB01")).unwrap(),
            "letter case does not change the value"
        );
        assert_eq!(
            &*canonical_bytes(t2, ClearValue::Bytes(&[1, 2])).unwrap(),
            &[1, 2]
        );
    }

    #[test]
    fn long_dgis_use_the_three_byte_length() {
        let d = vec![
            Dgi {
                id: 0x8001,
                value: vec![7; 300],
            },
            Dgi {
                id: 0x0101,
                value: vec![1; 254],
            },
        ];
        let bytes = encode(&d);
        assert_eq!(&bytes[..5], &[0x80, 0x01, 0xFF, 0x01, 0x2C]);
        assert_eq!(decode(&bytes).unwrap(), d);
    }

    proptest! {
        /// The size a `/data` call records for an element is the size of the bytes the build
        /// uses, and it fails where they fail, for any text or bytes in any format.
        #[test]
        fn canonical_len_is_the_length_of_canonical_bytes(
            text in "(?s:.{0,12})|[0-9a-fA-F]{0,12}|[0-9]{0,12}",
            bytes in proptest::collection::vec(any::<u8>(), 0..12),
        ) {
            let def = profile();
            for name in ["cmk_ac", "psn", "par"] {
                let e = def.element(name).unwrap();
                for v in [ClearValue::Text(&text), ClearValue::Bytes(&bytes), ClearValue::Bytes(text.as_bytes())] {
                    let want = canonical_bytes(e, match v {
                        ClearValue::Text(t) => ClearValue::Text(t),
                        ClearValue::Bytes(b) => ClearValue::Bytes(b),
                    }).map(|b| b.len());
                    prop_assert_eq!(canonical_len(e, v), want);
                }
            }
        }

        /// The check a completing `/data` makes (sizes only) says what the build at the device's
        /// poll will say, whatever the values: one that fits and one that does not.
        #[test]
        fn check_fits_agrees_with_build_on_sizes_alone(
            cmk in proptest::collection::vec(any::<u8>(), 0..70_000),
            track2 in proptest::collection::vec(any::<u8>(), 0..70_000),
            psn in proptest::collection::vec(any::<u8>(), 0..3),
            par in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            missing_psn in any::<bool>(),
        ) {
            let def = profile();
            let mut all = vec![("cmk_ac", cmk.as_slice()), ("track2_data", track2.as_slice())];
            if !missing_psn {
                all.push(("psn", psn.as_slice()));
            }
            if let Some(par) = &par {
                all.push(("par", par.as_slice()));
            }
            let values = values(&all);
            let sizes = ElementSizes::of(&def, values.iter().map(|(n, v)| (n.as_str(), v.len())));
            prop_assert_eq!(check_fits(&def, &[&sizes]), build(&def, &values).map(drop));
        }

        #[test]
        fn what_is_encoded_decodes_to_the_same_dgis(
            dgis in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..600)), 0..8)
        ) {
            let dgis: Vec<Dgi> = dgis.into_iter().map(|(id, value)| Dgi { id, value }).collect();
            prop_assert_eq!(decode(&encode(&dgis)).unwrap(), dgis);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
            let _ = read_tlv(&bytes);
        }

        #[test]
        fn a_built_profile_parses_back_with_every_placed_value(
            key in proptest::collection::vec(any::<u8>(), 16),
            t2 in proptest::collection::vec(any::<u8>(), 1..200),
            psn in "[0-9]{1,4}",
        ) {
            let p = profile();
            let psn_bytes = canonical_bytes(p.element("psn").unwrap(), ClearValue::Text(&psn)).unwrap();
            let dgis = build(&p, &values(&[("cmk_ac", &key), ("track2_data", &t2), ("psn", &psn_bytes)])).unwrap();
            let parsed = decode(&encode(&dgis)).unwrap();
            let key_dgi = parsed.iter().find(|d| d.id == 0x8001).unwrap();
            prop_assert_eq!(&key_dgi.value, &key);
            let record = parsed.iter().find(|d| d.id == 0x0101).unwrap();
            let (_, mut inner, _) = read_tlv(&record.value).unwrap();
            let mut found = BTreeMap::new();
            while !inner.is_empty() {
                let (tag, value, rest) = read_tlv(inner).unwrap();
                found.insert(hex::encode_upper(tag), value.to_vec());
                inner = rest;
            }
            prop_assert_eq!(&found["57"], &t2);
            prop_assert_eq!(&found["5F34"], &psn_bytes.to_vec());
        }
    }
}
