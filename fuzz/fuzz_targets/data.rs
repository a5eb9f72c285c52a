//! `/data` and `/newData`: the body parser, then the element checks against a fixed profile
//! version with the software keystore, sealing, the part's layout and the sizes a profile is
//! built with.
//!
//! Input: one mode byte, then the body. Mode bit 0: `/newData` (else `/data`); bit 1: the harness
//! encrypts each value under a test key its element names (the hex's bytes, or the text's) before
//! the check, so that values the fuzzer writes reach the checks of clear bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenhub::domain::cps::{self, ClearValue};
use tokenhub::domain::data_part;
use tokenhub::domain::perso::{self, Operation};
use tokenhub_fuzz::{data_fixture, test_key, TOKEN_ID};

fuzz_target!(|input: &[u8]| {
    let Some((&mode, body)) = input.split_first() else {
        return;
    };
    let op = if mode & 1 == 1 {
        Operation::NewData
    } else {
        Operation::Data
    };
    let Ok(submission) = perso::parse_submission(body, op) else {
        return;
    };
    assert!(submission.elements.len() <= perso::MAX_ELEMENTS);
    let fx = data_fixture();
    let mut elements = submission.elements;
    perso::resolve_default_keys(&fx.profile, &mut elements);
    if mode & 2 == 2 {
        for e in &mut elements {
            let Some((algorithm, key)) = e.key_index.as_deref().and_then(test_key) else {
                continue;
            };
            let clear = perso::decode_hex(&e.value).unwrap_or_else(|| e.value.as_bytes().to_vec());
            let ciphertext =
                tokenhub_crypto::encrypt_cbc_m2(algorithm, &key, &clear).expect("a test key");
            e.value = hex::encode_upper(ciphertext);
        }
    }

    let checked = fx.keys.check_elements(&fx.profile, &elements);
    let sealed = fx
        .keys
        .check_and_seal(TOKEN_ID, &fx.wrapped_data_key, &fx.profile, &elements, true)
        .expect("the keystore works");
    assert_eq!(checked.is_ok(), sealed.is_ok(), "both checks agree");
    let Ok(call) = sealed else {
        return;
    };
    assert_eq!(Ok(call.sizes.clone()), checked);

    // The sealed part reads back as the elements it was made of.
    match call.sealed {
        None => assert!(elements.is_empty()),
        Some(sealed) => {
            let clear = fx
                .keys
                .open_for_token(TOKEN_ID, &fx.wrapped_data_key, &sealed)
                .expect("a sealed part opens");
            assert_eq!(
                data_part::decode_part(&clear).expect("a part decodes"),
                elements
            );
        }
    }

    // Each size the check gave is the length of the value's canonical bytes, and each value has
    // a fingerprint.
    if !elements.is_empty() {
        let fingerprints = call.fingerprints.expect("fingerprints were asked for");
        assert_eq!(fingerprints.len(), elements.len());
    }
    for e in &elements {
        let place = fx
            .profile
            .element_index(&e.name)
            .expect("a checked element is defined");
        let def = &fx.profile.data_elements[place];
        let canonical = match &e.key_index {
            None => cps::canonical_bytes(def, ClearValue::Text(&e.value)),
            Some(index) => {
                let (algorithm, key) = test_key(index).expect("only test keys decrypt");
                let ciphertext = perso::decode_hex(&e.value).expect("checked as hex");
                let clear = tokenhub_crypto::decrypt_cbc_m2(algorithm, &key, &ciphertext)
                    .expect("checked padding");
                cps::canonical_bytes(def, ClearValue::Bytes(&clear))
            }
        }
        .expect("a checked value has canonical bytes");
        assert_eq!(call.sizes.at(place), Some(canonical.len()));
    }
    let _ = cps::check_fits(&fx.profile, &[&call.sizes]);
});
