//! The token update body a token requestor's receiver parses (`TokenUpdate::from_json`), and the
//! RFC 3339 timestamps in it: what parses serializes back to a body that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenhub_receiver::{parse_timestamp, TokenUpdate};

fuzz_target!(|body: &[u8]| {
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = parse_timestamp(text);
    }
    let Ok(update) = TokenUpdate::from_json(body) else {
        return;
    };
    let again =
        TokenUpdate::from_json(update.to_json().as_bytes()).expect("a body it wrote parses");
    assert_eq!(again, update);
    assert!(!update.token_pan_changed_from(&again));
});
