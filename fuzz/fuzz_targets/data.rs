//! `/data` and `/newData`: the body parser, then the element checks against a fixed profile
//! version with the software keystore, sealing, the part's layout and the sizes a profile is
//! built with.
//!
//! Input: one mode byte, then the body. Mode bit 0: `/newData` (else `/data`); bit 1: the harness
//! encrypts each value under a test key its element names (the hex's bytes, or the text's) before
//! the check, so that values the fuzzer writes reach the checks of clear bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenhub::domain::perso::Operation;
use tokenhub_fuzz::{check_call, data_fixture};

fuzz_target!(|input: &[u8]| {
    let Some((&mode, body)) = input.split_first() else {
        return;
    };
    let op = if mode & 1 == 1 {
        Operation::NewData
    } else {
        Operation::Data
    };
    check_call(
        data_fixture(),
        &data_fixture().profile,
        body,
        op,
        mode & 2 == 2,
    );
});
