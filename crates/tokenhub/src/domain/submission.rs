//! Parsing a `/data` or `/newData` body into the exact error codes of the contract.
//!
//! Parsing walks the JSON by hand rather than deriving, because the contract tells a missing field
//! (111) from a malformed one (112) and serde's errors do not; and because the element count must
//! be known before the elements are built.

use super::ids::{IssuerId, LastDigits, Mmyy, Rejection};
use serde_json::{Map, Value};

/// At most this many elements in one call (`maxItems`).
pub const MAX_ELEMENTS: usize = 200;
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
    /// Where the body carries parameters the contract does not define (`the body`,
    /// `tokenPersoInfo[2]`, `tokenInfo`); their names and values are not kept. Refused with 112
    /// unless the TSP is registered as one that sends extras.
    pub extras: Vec<String>,
}

/// Which operation the body is for: `/data` requires `tokenPersoInfo` and has no `tokenInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Data,
    NewData,
}

/// Parses a `/data` or `/newData` body. The body is read in one pass that keeps at most
/// [`MAX_ELEMENTS`] elements: the elements after those are only counted, never built, so that a
/// body of many tiny elements costs no more memory than the limit allows.
pub fn parse_submission(body: &[u8], op: Operation) -> Result<DataSubmission, Rejection> {
    let top: Top = serde_json::from_slice(body)
        .map_err(|_| Rejection::format("the body is not a valid JSON object"))?;
    let Top { fields, extra } = top;
    let mut extras = Vec::new();
    if extra || (op == Operation::Data && fields.token_info.is_some()) {
        extras.push("the body".to_string());
    }
    let issuer_id = match fields.issuer_id.filter(|v| !v.is_null()) {
        None => return Err(Rejection::missing("issuerId")),
        Some(Value::String(s)) => IssuerId::parse(&s)?,
        Some(_) => return Err(Rejection::format("issuerId must be a string")),
    };
    let elements = match fields.elements {
        None | Some(Elements::Null) if op == Operation::Data => {
            return Err(Rejection::missing("tokenPersoInfo"))
        }
        None | Some(Elements::Null) => Vec::new(),
        Some(Elements::Items(items)) => parse_elements(&items, &mut extras)?,
        Some(Elements::TooMany(n)) => {
            return Err(Rejection::format(format!(
                "tokenPersoInfo has {n} elements; at most {MAX_ELEMENTS} are allowed"
            )))
        }
        Some(Elements::NotArray) => {
            return Err(Rejection::format("tokenPersoInfo must be an array"))
        }
    };
    let token_info = match (op, fields.token_info.filter(|v| !v.is_null())) {
        (Operation::NewData, Some(Value::Object(info))) => {
            Some(parse_token_info(&info, &mut extras)?)
        }
        (Operation::NewData, Some(_)) => {
            return Err(Rejection::format("tokenInfo must be an object"));
        }
        _ => None,
    };
    Ok(DataSubmission {
        issuer_id,
        elements,
        token_info,
        extras,
    })
}

/// The body's top level: the fields the contract defines, and whether there are others (skipped
/// unread).
struct Top {
    fields: TopFields,
    extra: bool,
}

#[derive(Default)]
struct TopFields {
    issuer_id: Option<Value>,
    elements: Option<Elements>,
    token_info: Option<Value>,
}

/// `tokenPersoInfo` as read: its first [`MAX_ELEMENTS`] items, or only how many there are.
enum Elements {
    Null,
    NotArray,
    Items(Vec<Value>),
    TooMany(usize),
}

impl<'de> serde::Deserialize<'de> for Top {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Top;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
                let mut fields = TopFields::default();
                let mut extra = false;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "issuerId" => fields.issuer_id = Some(map.next_value()?),
                        "tokenPersoInfo" => fields.elements = Some(map.next_value()?),
                        "tokenInfo" => fields.token_info = Some(map.next_value()?),
                        _ => {
                            extra = true;
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Top { fields, extra })
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> serde::Deserialize<'de> for Elements {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Elements;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Elements, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Value>()? {
                    if items.len() == MAX_ELEMENTS {
                        // The rest is counted, unbuilt.
                        let mut n = MAX_ELEMENTS + 1;
                        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                            n += 1;
                        }
                        return Ok(Elements::TooMany(n));
                    }
                    items.push(item);
                }
                Ok(Elements::Items(items))
            }
            fn visit_unit<E>(self) -> Result<Elements, E> {
                Ok(Elements::Null)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Elements, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Elements::NotArray)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Elements, E> {
                Ok(Elements::NotArray)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Elements, E> {
                Ok(Elements::NotArray)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Elements, E> {
                Ok(Elements::NotArray)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Elements, E> {
                Ok(Elements::NotArray)
            }
            fn visit_str<E>(self, _: &str) -> Result<Elements, E> {
                Ok(Elements::NotArray)
            }
        }
        d.deserialize_any(V)
    }
}

/// A field that is there and not `null`.
fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn parse_elements(
    items: &[Value],
    extras: &mut Vec<String>,
) -> Result<Vec<IncomingElement>, Rejection> {
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
        if e.keys()
            .any(|k| !matches!(k.as_str(), "name" | "value" | "keyIndex"))
        {
            extras.push(format!("tokenPersoInfo[{i}]"));
        }
        out.push(IncomingElement {
            name: name.to_lowercase(),
            value: value.clone(),
            key_index,
        });
    }
    Ok(out)
}

fn parse_token_info(
    info: &Map<String, Value>,
    extras: &mut Vec<String>,
) -> Result<TokenInfo, Rejection> {
    if info.keys().any(|k| !matches!(k.as_str(), "exp" | "last4")) {
        extras.push("tokenInfo".to_string());
    }
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

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_submission(&body, Operation::Data);
            let _ = parse_submission(&body, Operation::NewData);
        }

        #[test]
        fn name_length_limit_is_32_characters(name in "\\PC{1,40}") {
            let r = parse(json!({"issuerId": "ISSUER0001", "tokenPersoInfo": [{"name": name.clone(), "value": "00"}]}), Operation::Data);
            prop_assert_eq!(r.is_ok(), name.chars().count() <= 32);
        }

        #[test]
        fn element_count_limit_is_200(n in 0usize..260) {
            let items: Vec<Value> = (0..n).map(|i| json!({"name": format!("e{i}"), "value": "00"})).collect();
            let r = parse(json!({"issuerId": "ISSUER0001", "tokenPersoInfo": items}), Operation::Data);
            prop_assert_eq!(r.is_ok(), n <= 200);
        }

        #[test]
        fn the_element_count_is_known_before_the_elements_are_built(n in 201usize..100_000) {
            let body = format!(r#"{{"issuerId":"ISSUER0001","tokenPersoInfo":[{}{{}}]}}"#, "{},".repeat(n - 1));
            let r = parse_submission(body.as_bytes(), Operation::Data).unwrap_err();
            prop_assert_eq!(r.code, Code::Format);
            prop_assert!(r.message.contains(&format!("has {n} elements")), "{}", r.message);
        }
    }

    #[test]
    fn a_hundred_thousand_elements_are_counted_not_built() {
        let body = format!(
            r#"{{"tokenPersoInfo":[{}[]]}}"#,
            r#"{"name":"a","value":"b"},"#.repeat(99_999)
        );
        let top: Top = serde_json::from_str(&body).unwrap();
        assert!(matches!(
            top.fields.elements,
            Some(Elements::TooMany(100_000))
        ));
    }

    #[test]
    fn parameters_the_contract_does_not_define_are_located_not_named() {
        let s = parse(
            json!({"issuerId": "ISSUER0001", "x": 1, "tokenPersoInfo": [{"name": "psn", "value": "01"}, {"name": "psn", "value": "01", "cvv": "123"}], "tokenInfo": {"exp": "1230", "cvv": "1"}}),
            Operation::NewData,
        )
        .unwrap();
        assert_eq!(s.extras, ["the body", "tokenPersoInfo[1]", "tokenInfo"]);
        let s = parse(
            json!({"issuerId": "ISSUER0001", "tokenPersoInfo": [], "tokenInfo": {}}),
            Operation::Data,
        )
        .unwrap();
        assert_eq!(s.extras, ["the body"]);
        let s = parse(
            json!({"issuerId": "ISSUER0001", "tokenPersoInfo": [{"name": "psn", "value": "01", "keyIndex": "K"}]}),
            Operation::Data,
        )
        .unwrap();
        assert!(s.extras.is_empty());
    }
}
