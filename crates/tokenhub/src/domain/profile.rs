//! A product's profile version: the dictionary of data elements the TSP sends for it and the DGI
//! template of the issuer's banking profile. Versions are immutable once defined.

use super::ids::Rejection;
use super::shared_key::KeyPurpose;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// How an element's clear value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ElementFormat {
    /// Hexadecimal digits, an even number of them (for an encrypted element: the clear bytes,
    /// counted as hex digits).
    Hex,
    /// Decimal digits only.
    Digits,
    /// Printable text (no control characters).
    Text,
}

/// One data element the product expects from the TSP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ElementDef {
    /// Case-insensitive; stored lower-case.
    pub name: String,
    /// The profile cannot be built until every required element arrived.
    #[serde(default)]
    pub required: bool,
    pub format: ElementFormat,
    /// Longest clear value, in characters (hex digits for `hex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// A sensitive element (a key, track 2) must arrive encrypted under a known `keyIndex`.
    #[serde(default)]
    pub sensitive: bool,
    /// The DGI the element is placed in (4 hex digits); absent: the element is not placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dgi: Option<String>,
    /// The BER-TLV tag (hex) under which the element goes inside the DGI's `70` record template;
    /// absent: the element's bytes are the DGI's value (secret DGIs, `8xxx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The key a value of this element is encrypted under when it arrives without `keyIndex`
    /// (the contract: the value may be encrypted even if no key index is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_key_index: Option<String>,
    /// The purpose of the key an encrypted value of this element must be under (`kek`, `dek`);
    /// absent: the one its placement implies ([`ElementDef::key_purpose`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_purpose: Option<KeyPurpose>,
}

impl ElementDef {
    /// The purpose of the key an encrypted value of this element must be under: the one the
    /// definition gives, or a KEK for the bytes of a secret DGI (`8xxx` without a tag: a key,
    /// EMV CPS), a DEK for anything else (track 2 and other data), as the TSP contract encrypts
    /// card master keys under a KEK and data under a DEK.
    pub fn key_purpose(&self) -> KeyPurpose {
        if let Some(p) = self.key_purpose {
            return p;
        }
        match (&self.dgi, &self.tag) {
            (Some(dgi), None) if dgi.starts_with('8') => KeyPurpose::Kek,
            _ => KeyPurpose::Dek,
        }
    }
}

/// A key index a profile names: as the contract's `keyIndex`, 1 to 32 characters.
fn check_key_index(owner: &str, k: &str) -> Result<(), Rejection> {
    let n = k.chars().count();
    if n == 0 || n > 32 || k.chars().any(char::is_control) {
        return Err(Rejection::format(format!(
            "{owner}: defaultKeyIndex must be 1 to 32 characters"
        )));
    }
    Ok(())
}

/// A BER-TLV tag: 1 to 3 bytes, multi-byte only when the first byte says so.
fn valid_tag(hex_tag: &str) -> bool {
    let Ok(bytes) = hex::decode(hex_tag) else {
        return false;
    };
    match bytes.as_slice() {
        [b] => b & 0x1F != 0x1F,
        [first, rest @ ..] if rest.len() <= 2 => {
            first & 0x1F == 0x1F
                && rest.iter().rev().skip(1).all(|b| b & 0x80 != 0)
                && rest.last().is_some_and(|b| b & 0x80 == 0)
        }
        _ => false,
    }
}

/// Checks one element definition and writes its name in lower case and its DGI and tag in upper
/// case; `seen` holds the names already defined, so that a name is defined once.
fn normalize_element(e: &mut ElementDef, seen: &mut HashSet<String>) -> Result<(), Rejection> {
    let n = e.name.chars().count();
    if n == 0 || n > 32 || e.name.chars().any(char::is_control) {
        return Err(Rejection::format(
            "an element name must be 1 to 32 characters",
        ));
    }
    e.name = e.name.to_lowercase();
    if !seen.insert(e.name.clone()) {
        return Err(Rejection::format(format!(
            "element {} is defined twice (names are case-insensitive)",
            e.name
        )));
    }
    if let Some(dgi) = &mut e.dgi {
        if dgi.len() != 4 || !dgi.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Rejection::format(format!(
                "element {}: dgi must be 4 hex digits",
                e.name
            )));
        }
        *dgi = dgi.to_ascii_uppercase();
    }
    if let Some(tag) = &mut e.tag {
        if e.dgi.is_none() || !valid_tag(tag) {
            return Err(Rejection::format(format!(
                "element {}: tag must be a BER-TLV tag in hex, with a dgi",
                e.name
            )));
        }
        *tag = tag.to_ascii_uppercase();
    }
    if let Some(k) = &e.default_key_index {
        check_key_index(&format!("element {}", e.name), k)?;
    }
    if e.max_length == Some(0) {
        return Err(Rejection::format(format!(
            "element {}: maxLength must be positive",
            e.name
        )));
    }
    Ok(())
}

/// Checks one DGI of the template and writes its number and data in upper case.
fn normalize_template_dgi(d: &mut TemplateDgi) -> Result<(), Rejection> {
    if d.dgi.len() != 4 || !d.dgi.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Rejection::format("a template dgi must be 4 hex digits"));
    }
    if d.data.len() % 2 != 0 || !d.data.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Rejection::format(format!(
            "template DGI {}: data must be an even number of hex digits",
            d.dgi
        )));
    }
    d.dgi = d.dgi.to_ascii_uppercase();
    d.data = d.data.to_ascii_uppercase();
    Ok(())
}

/// One DGI of the issuer's banking-profile template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateDgi {
    /// Two bytes as four hex digits, e.g. `0101`.
    pub dgi: String,
    /// The DGI's fixed content, hex.
    pub data: String,
}

/// The body of `PUT /admin/v1/issuers/{issuerId}/products/{productId}/profiles/{version}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileDefinition {
    pub data_elements: Vec<ElementDef>,
    pub template: Vec<TemplateDgi>,
    /// The key of every sensitive element that names none of its own, for values that arrive
    /// without `keyIndex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_key_index: Option<String>,
    /// Positions in `data_elements` by name, made at the first lookup (a `/data` call looks up
    /// each of its elements, and linear scans showed in the hub's profile).
    #[serde(skip)]
    #[schema(ignore)]
    by_name: OnceLock<HashMap<String, usize>>,
    /// The names of the required elements, sorted, made at the first completeness check.
    #[serde(skip)]
    #[schema(ignore)]
    required_sorted: OnceLock<Vec<String>>,
}

/// Two definitions are equal when they define the same elements and template.
impl PartialEq for ProfileDefinition {
    fn eq(&self, other: &Self) -> bool {
        self.data_elements == other.data_elements
            && self.template == other.template
            && self.default_key_index == other.default_key_index
    }
}

impl Eq for ProfileDefinition {}

impl ProfileDefinition {
    /// Checks the definition and normalizes element names to lower case.
    pub fn validate(mut self) -> Result<Self, Rejection> {
        // Names change below: an index made before would be stale.
        self.by_name = OnceLock::new();
        self.required_sorted = OnceLock::new();
        if self.data_elements.is_empty() {
            return Err(Rejection::format("dataElements must not be empty"));
        }
        let mut seen = HashSet::new();
        for e in &mut self.data_elements {
            normalize_element(e, &mut seen)?;
        }
        for d in &mut self.template {
            normalize_template_dgi(d)?;
        }
        if let Some(k) = &self.default_key_index {
            check_key_index("the profile", k)?;
        }
        self.check_record_dgis()?;
        Ok(self)
    }

    /// A DGI that takes tagged elements must be a record: empty, or one `70` template, and
    /// takes no untagged element.
    fn check_record_dgis(&self) -> Result<(), Rejection> {
        for e in self.data_elements.iter().filter(|e| e.tag.is_some()) {
            let dgi = e.dgi.as_deref().unwrap_or_default();
            if let Some(raw) = self
                .data_elements
                .iter()
                .find(|o| o.tag.is_none() && o.dgi.as_deref() == Some(dgi))
            {
                return Err(Rejection::format(format!(
                    "DGI {dgi} takes tagged elements ({}) and an untagged one ({}): an element \
                     without a tag needs a DGI of its own",
                    e.name, raw.name
                )));
            }
            for t in self
                .template
                .iter()
                .filter(|t| t.dgi == dgi && !t.data.is_empty())
            {
                let bytes = hex::decode(&t.data).unwrap_or_default();
                let is_record = matches!(super::cps::read_tlv(&bytes), Some((tag, _, rest)) if tag == [0x70] && rest.is_empty());
                if !is_record {
                    return Err(Rejection::format(format!(
                        "template DGI {dgi} takes tagged elements ({}) so its data must be one 70 record template",
                        e.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// The element called `name` (already lower-case).
    pub fn element(&self, name: &str) -> Option<&ElementDef> {
        self.element_index(name).map(|i| &self.data_elements[i])
    }

    /// The key a value of the element at `place` is encrypted under when it arrives without
    /// `keyIndex`: its own default, or the profile's for a sensitive element; `None`: such a
    /// value is clear.
    pub fn default_key(&self, place: usize) -> Option<&str> {
        let e = &self.data_elements[place];
        e.default_key_index
            .as_deref()
            .or(self.default_key_index.as_deref().filter(|_| e.sensitive))
    }

    /// Every key index the definition names as a default.
    pub fn default_keys(&self) -> impl Iterator<Item = &str> {
        self.default_key_index
            .iter()
            .chain(
                self.data_elements
                    .iter()
                    .filter_map(|e| e.default_key_index.as_ref()),
            )
            .map(String::as_str)
    }

    /// The place of the element `name` in [`Self::data_elements`].
    pub fn element_index(&self, name: &str) -> Option<usize> {
        let by_name = self.by_name.get_or_init(|| {
            let mut by_name = HashMap::with_capacity(self.data_elements.len());
            for (i, e) in self.data_elements.iter().enumerate() {
                // The first of two equal names, as a scan would find (a validated definition
                // has none).
                by_name.entry(e.name.clone()).or_insert(i);
            }
            by_name
        });
        by_name.get(name).copied()
    }

    /// Whether `held` (sorted, each name once) has every element this version requires: one walk
    /// along both sorted lists.
    pub fn holds_every_required<S: AsRef<str>>(&self, held: &[S]) -> bool {
        let required = self.required_sorted.get_or_init(|| {
            let mut names: Vec<String> = self.required_names().map(str::to_string).collect();
            names.sort_unstable();
            names.dedup();
            names
        });
        let mut held = held.iter();
        required.iter().all(|r| held.any(|h| h.as_ref() == r))
    }

    pub fn required_names(&self) -> impl Iterator<Item = &str> {
        self.data_elements
            .iter()
            .filter(|e| e.required)
            .map(|e| e.name.as_str())
    }

    /// The canonical JSON the store keeps; two bodies that mean the same thing give the same text.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("a profile definition always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(json: serde_json::Value) -> Result<ProfileDefinition, String> {
        serde_json::from_value::<ProfileDefinition>(json)
            .map_err(|e| e.to_string())?
            .validate()
            .map_err(|r| r.message)
    }

    proptest::proptest! {
        /// The walk along both sorted lists says what a lookup of each required name says.
        #[test]
        fn completeness_is_each_required_name_held(
            elements in proptest::collection::vec(("[a-f]{1,2}", proptest::bool::ANY), 1..12),
            held in proptest::collection::btree_set("[a-f]{1,2}", 0..16),
        ) {
            let mut seen = HashSet::new();
            let data_elements: Vec<serde_json::Value> = elements
                .iter()
                .filter(|(name, _)| seen.insert(name.clone()))
                .map(|(name, required)| serde_json::json!({"name": name, "required": required, "format": "hex"}))
                .collect();
            let d = def(serde_json::json!({"dataElements": data_elements, "template": []})).unwrap();
            let held: Vec<String> = held.into_iter().collect();
            let expected = d.required_names().all(|r| held.iter().any(|h| h == r));
            proptest::prop_assert_eq!(d.holds_every_required(&held), expected);
        }
    }

    #[test]
    fn names_are_lower_cased_and_must_be_unique() {
        let d = def(serde_json::json!({
            "dataElements": [{"name": "Track2_Data", "required": true, "format": "hex", "sensitive": true}],
            "template": [{"dgi": "0101", "data": "a0"}]
        }))
        .unwrap();
        assert_eq!(d.data_elements[0].name, "track2_data");
        assert_eq!(d.template[0].data, "A0");
        let dup = def(serde_json::json!({
            "dataElements": [{"name": "A", "format": "hex"}, {"name": "a", "format": "text"}],
            "template": []
        }));
        assert!(dup.unwrap_err().contains("twice"));
    }

    #[test]
    fn a_dgi_takes_tagged_elements_or_untagged_ones_not_both() {
        let mixed = def(serde_json::json!({
            "dataElements": [
                {"name": "psn", "format": "digits", "dgi": "0101", "tag": "5F34"},
                {"name": "raw", "format": "hex", "dgi": "0101"}
            ],
            "template": []
        }));
        assert!(mixed.unwrap_err().contains("needs a DGI of its own"));
        let apart = def(serde_json::json!({
            "dataElements": [
                {"name": "psn", "format": "digits", "dgi": "0101", "tag": "5F34"},
                {"name": "raw", "format": "hex", "dgi": "0202"},
                {"name": "raw2", "format": "hex", "dgi": "0202"}
            ],
            "template": []
        }));
        assert!(apart.is_ok());
    }

    #[test]
    fn bad_templates_and_formats_are_refused() {
        assert!(def(
            serde_json::json!({"dataElements": [{"name": "a", "format": "base64"}], "template": []})
        )
        .is_err());
        assert!(def(serde_json::json!({"dataElements": [{"name": "a", "format": "hex"}], "template": [{"dgi": "01", "data": ""}]})).is_err());
        assert!(def(serde_json::json!({"dataElements": [{"name": "a", "format": "hex"}], "template": [{"dgi": "0101", "data": "ABC"}]})).is_err());
        assert!(def(serde_json::json!({"dataElements": [], "template": []})).is_err());
    }
}
