//! The byte layouts the hub reads: a CPS profile's DGIs (`cps::decode`), BER-TLV (`read_tlv`) and
//! a sealed data part's layout (`data_part::decode_part`). Whatever decodes encodes back to bytes
//! that decode the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenhub::domain::{cps, data_part};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(dgis) = cps::decode(bytes) {
        let wire = cps::encode(&dgis);
        assert_eq!(cps::decode(&wire).expect("re-encoded DGIs decode"), dgis);
        for d in &dgis {
            walk_tlv(&d.value, 0);
        }
    }
    walk_tlv(bytes, 0);
    if let Ok(elements) = data_part::decode_part(bytes) {
        let again = data_part::decode_part(&data_part::encode_part(&elements))
            .expect("a re-encoded part decodes");
        assert_eq!(again, elements);
    }
});

/// Reads every TLV of `data`, into constructed ones, a few levels deep.
fn walk_tlv(mut data: &[u8], depth: u8) {
    while let Some((tag, value, rest)) = cps::read_tlv(data) {
        assert!(rest.len() < data.len(), "reading a TLV consumes bytes");
        if depth < 4 && tag.first().is_some_and(|t| t & 0x20 != 0) {
            walk_tlv(value, depth + 1);
        }
        data = rest;
    }
}
