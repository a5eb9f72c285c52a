//! A profile definition (the admin API's body): parsed, validated, written as its canonical JSON,
//! and built into a CPS profile with values taken from the rest of the input.
//!
//! Input: the definition's JSON, then the values: for each element in turn, one length byte and
//! that many bytes (an element the input runs out for has no value; length `FF`: no value either).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use tokenhub::domain::cps::{self, ElementSizes};
use tokenhub::domain::ProfileDefinition;
use zeroize::Zeroizing;

fuzz_target!(|input: &[u8]| {
    let mut stream = serde_json::Deserializer::from_slice(input).into_iter::<ProfileDefinition>();
    let Some(Ok(def)) = stream.next() else {
        return;
    };
    let mut rest = &input[stream.byte_offset()..];
    let Ok(def) = def.validate() else {
        return;
    };

    // The canonical text is a definition that validates to itself.
    let canonical = def.canonical_json();
    let again: ProfileDefinition = serde_json::from_str(&canonical).expect("canonical JSON parses");
    let again = again
        .validate()
        .expect("a valid definition's canonical JSON is valid");
    assert_eq!(again, def);
    assert_eq!(again.canonical_json(), canonical);
    for (place, e) in def.data_elements.iter().enumerate() {
        assert_eq!(def.element_index(&e.name), Some(place));
        let _ = def.default_key(place);
    }

    let mut values = BTreeMap::new();
    let mut sizes = ElementSizes::for_profile(&def);
    for (place, e) in def.data_elements.iter().enumerate() {
        let Some((&len, tail)) = rest.split_first() else {
            break;
        };
        rest = tail;
        if len == 0xFF {
            continue;
        }
        let len = usize::from(len).min(rest.len());
        let (value, tail) = rest.split_at(len);
        rest = tail;
        values.insert(e.name.clone(), Zeroizing::new(value.to_vec()));
        sizes.set(place, len);
    }
    let held: Vec<&str> = values.keys().map(String::as_str).collect();
    let complete = def.holds_every_required(&held);

    // Sizes alone say whether a profile builds.
    let fits = cps::check_fits(&def, &[&sizes]);
    let built = cps::build(&def, &values);
    assert_eq!(fits.is_ok(), built.is_ok(), "{fits:?} / {built:?}");
    if !complete {
        assert!(
            built.is_err(),
            "a profile with a required element missing is not built"
        );
    }
    let Ok(dgis) = built else {
        return;
    };
    let wire = cps::encode(&dgis);
    assert_eq!(
        cps::decode(&wire).expect("an encoded profile decodes"),
        dgis
    );
});
