//! No loss and no leak: a refused call changes nothing that was accepted before it, and a data
//! element's value, clear or as the ciphertext the TSP sent, is never stored as such nor repeated
//! in an answer.

use crate::support::*;
use serde_json::json;

hub_tests!(
    a_refused_call_changes_nothing_that_was_already_accepted,
    values_never_appear_in_clear_or_as_sent_in_the_database,
    values_never_appear_in_an_error_message,
    once_the_device_confirmed_its_profile_the_hub_holds_no_data_element,
);

async fn a_refused_call_changes_nothing_that_was_already_accepted(app: TestApp) {
    let token = app.pending_token().await;
    app.put_data(&token, &data_body(&[app.cmk_ac(), psn()]))
        .await
        .assert_accepted();
    let before = app.get_token(&token).await;

    let refusals = [
        (
            data_body(&[app.track2_data(), clear("unknown_element", "1")]),
            431,
        ),
        (data_body(&[app.track2_data(), clear("psn", "ABC")]), 431),
        (
            json!({"issuerId": ISSUER, "tokenPersoInfo": [{"name": "track2_data"}]}),
            111,
        ),
        (
            json!({"issuerId": "UNKNOWN001", "tokenPersoInfo": [app.track2_data()]}),
            113,
        ),
    ];
    for (body, code) in refusals {
        app.put_data(&token, &body).await.assert_refused(code);
    }
    let after = app.get_token(&token).await;
    assert_eq!(after, before, "nothing changed");
    assert_eq!(names(&after["elementsHeld"]), ["cmk_ac", "psn"]);
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 1);

    // And what was accepted still counts: the missing element completes the data.
    app.put_data(&token, &data_body(&[app.track2_data()]))
        .await
        .assert_accepted();
    assert_eq!(app.token_state(&token).await, "PERSONALIZING");
}

async fn values_never_appear_in_clear_or_as_sent_in_the_database(app: TestApp) {
    let token = app.pending_token().await;
    let key = random_bytes(16);
    let track2 = random_bytes(19);
    let par = format!("PAR{}", hex::encode_upper(random_bytes(12)));
    let cmk = app.encrypted("cmk_ac", KEK, &key);
    let t2 = app.encrypted("track2_data", DEK, &track2);
    let sent_ciphertexts = [
        cmk["value"].as_str().unwrap().to_string(),
        t2["value"].as_str().unwrap().to_string(),
    ];
    app.put_data(&token, &data_body(&[cmk, clear("par", &par)]))
        .await
        .assert_accepted();
    app.put_data(&token, &data_body(&[t2, psn()]))
        .await
        .assert_accepted();
    assert_eq!(app.token_state(&token).await, "PERSONALIZING");

    let stored = app.stored_bytes().await;
    assert!(
        contains(&stored, token.as_bytes()),
        "the search does see the data"
    );
    let mut secrets: Vec<Vec<u8>> = vec![key.clone(), track2.clone(), par.clone().into_bytes()];
    for clear_bytes in [&key, &track2] {
        secrets.push(hex::encode_upper(clear_bytes).into_bytes());
        secrets.push(hex::encode(clear_bytes).into_bytes());
    }
    for ct in &sent_ciphertexts {
        secrets.push(ct.clone().into_bytes());
        secrets.push(ct.to_lowercase().into_bytes());
    }
    for s in &secrets {
        assert!(
            !contains(&stored, s),
            "a value the TSP sent is stored as such: {}",
            String::from_utf8_lossy(s)
        );
    }

    // Nor does the admin API show them.
    let view = app.get_token(&token).await.to_string();
    for s in &secrets {
        assert!(!contains(view.as_bytes(), s));
    }
}

async fn values_never_appear_in_an_error_message(app: TestApp) {
    let token = app.pending_token().await;
    let clear_key = hex::encode_upper(random_bytes(16));
    let track2 = "4761739001010119D22122011758928889";
    let wrong_key_ct = app.encrypt(DEK, &random_bytes(16));
    let cases = [
        data_body(&[clear("cmk_ac", &clear_key)]),
        data_body(&[clear("track2_data", track2)]),
        data_body(&[clear("psn", track2)]),
        data_body(&[clear("par", &format!("{track2}{track2}"))]),
        data_body(&[clear("unknown", track2)]),
        data_body(&[json!({"name": "cmk_ac", "value": wrong_key_ct, "keyIndex": KEK})]),
        data_body(&[json!({"name": "cmk_ac", "value": wrong_key_ct, "keyIndex": "NOKEY"})]),
        data_body(&[json!({"name": "cmk_ac", "value": format!("{track2}ZZ"), "keyIndex": KEK})]),
        data_body(&[clear("psn", track2), clear("psn", track2)]),
    ];
    for body in cases {
        let answer = app.put_data(&token, &body).await;
        assert_eq!(answer.code(), Some(431), "{answer:?}");
        for s in [clear_key.as_str(), track2, wrong_key_ct.as_str()] {
            assert!(
                !answer.body.contains(s),
                "a value is in the answer: {answer:?}"
            );
            assert!(!answer.body.to_uppercase().contains(&s.to_uppercase()));
        }
    }
}

async fn once_the_device_confirmed_its_profile_the_hub_holds_no_data_element(app: TestApp) {
    let token = app.pending_token().await;
    let par = format!("PAR{}", hex::encode_upper(random_bytes(12)));
    app.put_data(&token, &data_body(&[clear("par", &par), psn()]))
        .await
        .assert_accepted();
    app.put_data(&token, &data_body(&[app.cmk_ac(), app.track2_data()]))
        .await
        .assert_accepted();
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 2);
    app.confirm_personalization(&token).await;
    let view = app.get_token(&token).await;
    assert_eq!(view["state"], "ACTIVE");
    assert_eq!(names(&view["elementsHeld"]), Vec::<String>::new());
    assert_eq!(app.hub.store.data_part_count(&token).await.unwrap(), 0);
    assert_eq!(
        names(&view["elementsFingerprinted"]),
        ["cmk_ac", "par", "psn", "track2_data"]
    );
}
