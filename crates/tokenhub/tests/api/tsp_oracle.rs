//! No oracle: every refused value (unknown key, wrong length, wrong padding, a clear value of the
//! wrong format or length) gets the same answer, so a captured ciphertext cannot be decrypted
//! block by block by asking the hub whether its corruptions decrypt.

use crate::support::*;
use serde_json::{json, Value};
use tokenhub_crypto::Algorithm;

hub_tests!(
    every_corruption_of_a_card_master_key_gets_the_same_answer_on_data,
    every_corruption_of_a_card_master_key_gets_the_same_answer_on_new_data,
);

/// A captured `cmk_ac` (a card master key under the KEK) and every corruption an attacker would
/// send: each byte of its last block and of the block before flipped, wrong lengths, the value
/// under an unknown key, under another key, not hex, and clear values of the wrong length. Those
/// the hub may accept (a flip that happens to leave a right padding, checked here with the key)
/// are left out: what is asserted is that all the others are refused alike.
fn corruptions(app: &TestApp) -> (Value, Vec<Value>) {
    let key = app.keys.find(KEK).unwrap();
    let bytes = key.key_bytes().unwrap();
    let clear = random_bytes(16);
    let ciphertext = tokenhub_crypto::encrypt_cbc_m2(key.algorithm, &bytes, &clear).unwrap();
    let n = ciphertext.len();
    let cmk = |ct: &[u8], key_index: &str| json!({"name": "cmk_ac", "value": hex::encode_upper(ct), "keyIndex": key_index});
    let valid = cmk(&ciphertext, KEK);
    let mut corrupt: Vec<Vec<u8>> = Vec::new();
    for at in n - 32..n {
        for flip in [0x01, 0x80, 0xFF] {
            let mut c = ciphertext.clone();
            c[at] ^= flip;
            corrupt.push(c);
        }
    }
    corrupt.push(ciphertext[..n - 1].to_vec());
    corrupt.push(ciphertext[..n - 16].to_vec());
    corrupt.push([&ciphertext[..], &[0]].concat());
    corrupt.push([&ciphertext[..], &ciphertext[n - 16..]].concat());
    corrupt.push(ciphertext[..1].to_vec());
    let accepted_locally = |ct: &[u8]| {
        tokenhub_crypto::decrypt_cbc_m2(Algorithm::Aes128, &bytes, ct)
            .is_ok_and(|clear| clear.len() * 2 <= 32)
    };
    let mut refused: Vec<Value> = corrupt
        .iter()
        .filter(|c| !accepted_locally(c))
        .map(|c| cmk(c, KEK))
        .collect();
    assert!(refused.len() > 90, "almost every corruption is refused");
    refused.push(cmk(&ciphertext, "NO-SUCH-KEY"));
    refused.push(cmk(&ciphertext, DEK));
    refused.push(
        json!({"name": "cmk_ac", "value": &hex::encode_upper(&ciphertext)[1..], "keyIndex": KEK}),
    );
    refused.push(json!({"name": "cmk_ac", "value": "zz", "keyIndex": KEK}));
    // A right padding around a clear value too long for cmk_ac (at most 32 hex digits).
    refused.push(app.encrypted("cmk_ac", KEK, &random_bytes(17)));
    // A clear value of the wrong format next to a valid encrypted one.
    refused.push(json!([valid.clone(), {"name": "psn", "value": "0A"}]));
    (valid, refused)
}

/// Sends each refused body through `send` and asserts one identical answer for all of them.
async fn assert_one_answer<F, Fut>(refused: Vec<Value>, send: F)
where
    F: Fn(Vec<Value>) -> Fut,
    Fut: std::future::Future<Output = TspAnswer>,
{
    let mut first: Option<(u16, String)> = None;
    for element in refused {
        let elements = match element {
            Value::Array(items) => items,
            one => vec![one, psn()],
        };
        let answer = send(elements.clone()).await;
        answer.assert_refused(431);
        let seen = (answer.status, answer.body.clone());
        match &first {
            None => first = Some(seen),
            Some(want) => assert_eq!(&seen, want, "{elements:?}"),
        }
    }
    let (_, body) = first.unwrap();
    assert!(!body.contains("cmk_ac") && !body.contains("psn"), "{body}");
}

async fn every_corruption_of_a_card_master_key_gets_the_same_answer_on_data(app: TestApp) {
    let token = app.pending_token().await;
    let (valid, refused) = corruptions(&app);
    assert_one_answer(refused, |elements| {
        let (app, token) = (&app, &token);
        async move { app.put_data(token, &data_body(&elements)).await }
    })
    .await;
    // Nothing of the refused calls was kept, and the captured value itself is accepted.
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 0);
    app.put_data(&token, &data_body(&[valid, psn()]))
        .await
        .assert_accepted();
}

async fn every_corruption_of_a_card_master_key_gets_the_same_answer_on_new_data(app: TestApp) {
    let token = app.active_token().await;
    let (_, refused) = corruptions(&app);
    assert_one_answer(refused, |elements| {
        let (app, token) = (&app, &token);
        async move {
            let body = json!({"issuerId": ISSUER, "tokenPersoInfo": elements});
            app.put_new_data(token, &body).await
        }
    })
    .await;
    assert_eq!(app.token_state(&token).await, "ACTIVE");
}
