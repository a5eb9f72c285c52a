//! `/data` and `/newData` element checks against any valid profile version: what the `data`
//! target does with its fixed profile, with the profile taken from the input.
//!
//! Input: a profile definition's JSON (kept when it validates), one mode byte (as `data`'s), then
//! the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenhub::domain::perso::Operation;
use tokenhub::domain::ProfileDefinition;
use tokenhub_fuzz::{check_call, data_fixture};

fuzz_target!(|input: &[u8]| {
    let mut stream = serde_json::Deserializer::from_slice(input).into_iter::<ProfileDefinition>();
    let Some(Ok(def)) = stream.next() else {
        return;
    };
    let Ok(profile) = def.validate() else {
        return;
    };
    let Some((&mode, body)) = input[stream.byte_offset()..].split_first() else {
        return;
    };
    let op = if mode & 1 == 1 {
        Operation::NewData
    } else {
        Operation::Data
    };
    check_call(data_fixture(), &profile, body, op, mode & 2 == 2);
});
