//! The request's form, on `/data` and `/newData`: mandatory fields and headers (111), formats at
//! their boundaries (112: the limit is accepted, one over is refused), bodies that are not JSON,
//! content types, oversized bodies, unknown fields, and the `x-correlation-id` echo.

use crate::support::*;
use serde_json::{json, Value};

hub_tests!(
    data_without_issuer_id_is_rejected_with_111,
    data_without_token_perso_info_is_rejected_with_111,
    data_with_an_element_without_a_name_is_rejected_with_111,
    data_with_an_element_without_a_value_is_rejected_with_111,
    data_without_x_correlation_id_is_rejected_with_111,
    new_data_without_issuer_id_is_rejected_with_111,
    new_data_with_an_element_without_a_name_or_value_is_rejected_with_111,
    new_data_without_x_correlation_id_is_rejected_with_111,
    data_that_does_not_parse_as_json_is_rejected_with_112,
    data_that_is_json_but_not_an_object_is_rejected_with_112,
    fields_of_the_wrong_json_type_are_rejected_with_112,
    token_id_of_1_and_48_characters_is_accepted_and_49_is_rejected_with_112,
    an_empty_token_id_is_rejected_with_111,
    a_token_id_with_control_characters_or_not_utf8_is_rejected_with_112,
    issuer_id_that_is_not_10_characters_is_rejected_with_112,
    two_hundred_elements_are_accepted_and_201_are_rejected_with_112,
    element_name_of_1_and_32_characters_is_accepted_and_0_or_33_are_rejected_with_112,
    key_index_of_32_characters_is_accepted_and_0_or_33_are_rejected_with_112,
    an_empty_value_is_rejected_with_112,
    a_one_character_value_is_accepted,
    token_info_exp_that_is_not_mmyy_is_rejected_with_112,
    token_info_last4_of_2_and_10_digits_is_accepted_and_1_or_11_are_rejected_with_112,
    token_info_that_is_not_an_object_is_rejected_with_112,
    x_correlation_id_of_1_and_64_characters_is_accepted_and_65_is_rejected_with_112,
    a_content_type_that_is_not_json_is_rejected_with_112,
    json_with_a_charset_or_without_a_content_type_is_accepted,
    parameters_the_contract_does_not_define_are_refused_with_112_unless_the_tsp_sends_them,
    a_body_of_2_mib_is_refused_and_the_hub_still_answers,
    x_correlation_id_is_echoed_on_every_answer,
);

const JSON: (&str, &str) = ("content-type", "application/json");

/// A body for `/data` with each element given.
fn with_elements(elements: Vec<Value>) -> Value {
    data_body(&elements)
}

// ---- 111: a mandatory field or header is missing ----

async fn data_without_issuer_id_is_rejected_with_111(app: TestApp) {
    let token = app.pending_token().await;
    app.put_data(&token, &json!({"tokenPersoInfo": [psn()]}))
        .await
        .assert_refused(111);
    app.put_data(
        &token,
        &json!({"issuerId": null, "tokenPersoInfo": [psn()]}),
    )
    .await
    .assert_refused(111);
}

async fn data_without_token_perso_info_is_rejected_with_111(app: TestApp) {
    let token = app.pending_token().await;
    app.put_data(&token, &json!({"issuerId": ISSUER}))
        .await
        .assert_refused(111);
}

async fn data_with_an_element_without_a_name_is_rejected_with_111(app: TestApp) {
    let token = app.pending_token().await;
    app.put_data(
        &token,
        &with_elements(vec![psn(), json!({"value": "1234"})]),
    )
    .await
    .assert_refused(111);
    assert_eq!(
        app.elements_held(&token).await,
        Vec::<String>::new(),
        "nothing of the call is kept"
    );
}

async fn data_with_an_element_without_a_value_is_rejected_with_111(app: TestApp) {
    let token = app.pending_token().await;
    app.put_data(&token, &with_elements(vec![json!({"name": "psn"})]))
        .await
        .assert_refused(111);
    app.put_data(
        &token,
        &with_elements(vec![json!({"name": "psn", "value": null})]),
    )
    .await
    .assert_refused(111);
}

async fn data_without_x_correlation_id_is_rejected_with_111(app: TestApp) {
    let token = app.pending_token().await;
    let answer = app
        .put_data_with_headers(
            &token,
            &[JSON],
            serde_json::to_vec(&data_body(&[psn()])).unwrap(),
        )
        .await;
    answer.assert_refused(111);
    assert_eq!(answer.correlation_id, None);
    assert_eq!(app.elements_held(&token).await, Vec::<String>::new());
}

async fn new_data_without_issuer_id_is_rejected_with_111(app: TestApp) {
    let token = app.active_token().await;
    app.put_new_data(&token, &json!({"tokenInfo": {"exp": "1230"}}))
        .await
        .assert_refused(111);
}

async fn new_data_with_an_element_without_a_name_or_value_is_rejected_with_111(app: TestApp) {
    let token = app.active_token().await;
    for element in [json!({"value": "01"}), json!({"name": "psn"})] {
        app.put_new_data(
            &token,
            &json!({"issuerId": ISSUER, "tokenPersoInfo": [element]}),
        )
        .await
        .assert_refused(111);
    }
}

async fn new_data_without_x_correlation_id_is_rejected_with_111(app: TestApp) {
    let token = app.active_token().await;
    app.put_new_data_with_headers(&token, &[JSON], r#"{"issuerId": "ISSUER0001"}"#)
        .await
        .assert_refused(111);
}

// ---- 112: a field breaks its format ----

async fn data_that_does_not_parse_as_json_is_rejected_with_112(app: TestApp) {
    let token = app.pending_token().await;
    for body in [
        "{",
        "",
        "not json",
        r#"{"issuerId": "ISSUER0001", "tokenPersoInfo": [}"#,
        r#"{"issuerId": "ISSUER0001",}"#,
        "\u{feff}{}",
    ] {
        let answer = app
            .put_data_with_headers(&token, &[("x-correlation-id", "c-1"), JSON], body)
            .await;
        answer.assert_refused(112);
        assert_eq!(answer.correlation_id.as_deref(), Some("c-1"));
    }
    let answer = app
        .put_data_with_headers(
            &token,
            &[("x-correlation-id", "c-2"), JSON],
            vec![0xff, 0xfe, b'{'],
        )
        .await;
    answer.assert_refused(112);
}

async fn data_that_is_json_but_not_an_object_is_rejected_with_112(app: TestApp) {
    let token = app.pending_token().await;
    for body in [json!([]), json!("text"), json!(12), json!(null)] {
        app.put_data(&token, &body).await.assert_refused(112);
    }
}

async fn fields_of_the_wrong_json_type_are_rejected_with_112(app: TestApp) {
    let token = app.pending_token().await;
    for body in [
        json!({"issuerId": 1234567890, "tokenPersoInfo": []}),
        json!({"issuerId": ISSUER, "tokenPersoInfo": {}}),
        json!({"issuerId": ISSUER, "tokenPersoInfo": "psn"}),
        json!({"issuerId": ISSUER, "tokenPersoInfo": ["psn"]}),
        json!({"issuerId": ISSUER, "tokenPersoInfo": [{"name": 1, "value": "01"}]}),
        json!({"issuerId": ISSUER, "tokenPersoInfo": [{"name": "psn", "value": 1}]}),
        json!({"issuerId": ISSUER, "tokenPersoInfo": [{"name": "psn", "value": "01", "keyIndex": 1}]}),
    ] {
        app.put_data(&token, &body).await.assert_refused(112);
    }
}

async fn token_id_of_1_and_48_characters_is_accepted_and_49_is_rejected_with_112(app: TestApp) {
    for id in ["T".to_string(), "T".repeat(48)] {
        let token = app.digitize_as(&id).await;
        app.put_data(&token, &data_body(&app.required_elements()))
            .await
            .assert_accepted();
        assert_eq!(app.token_state(&token).await, "PERSONALIZING");
    }
    app.put_data(&"T".repeat(49), &data_body(&app.required_elements()))
        .await
        .assert_refused(112);
    app.put_new_data(&"T".repeat(49), &json!({"issuerId": ISSUER}))
        .await
        .assert_refused(112);
}

async fn an_empty_token_id_is_rejected_with_111(app: TestApp) {
    let answer = app.put_data("", &data_body(&[psn()])).await;
    answer.assert_refused(111);
    assert!(answer.correlation_id.is_some());
    app.put_new_data("", &json!({"issuerId": ISSUER}))
        .await
        .assert_refused(111);
}

async fn a_token_id_with_control_characters_or_not_utf8_is_rejected_with_112(app: TestApp) {
    for id in ["%00", "T%0A1", "%FF"] {
        let answer = app.put_data(id, &data_body(&[psn()])).await;
        answer.assert_refused(112);
    }
}

async fn issuer_id_that_is_not_10_characters_is_rejected_with_112(app: TestApp) {
    let token = app.pending_token().await;
    for issuer in ["", "ISSUER001", "ISSUER00001"] {
        let body = json!({"issuerId": issuer, "tokenPersoInfo": [psn()]});
        app.put_data(&token, &body).await.assert_refused(112);
        let body = json!({"issuerId": issuer});
        app.put_new_data(&token, &body).await.assert_refused(112);
    }
}

async fn two_hundred_elements_are_accepted_and_201_are_rejected_with_112(app: TestApp) {
    let token = app.pending_token().await;
    let two_hundred: Vec<Value> = (1..=200)
        .map(|i| clear(&optional_name(i), "1234"))
        .collect();
    app.put_data(&token, &data_body(&two_hundred))
        .await
        .assert_accepted();
    assert_eq!(app.elements_held(&token).await.len(), 200);

    let other = app.pending_token().await;
    let mut too_many = two_hundred.clone();
    too_many.push(psn());
    app.put_data(&other, &data_body(&too_many))
        .await
        .assert_refused(112);
    assert_eq!(app.elements_held(&other).await, Vec::<String>::new());
}

async fn element_name_of_1_and_32_characters_is_accepted_and_0_or_33_are_rejected_with_112(
    app: TestApp,
) {
    let token = app.pending_token().await;
    assert_eq!(LONG_NAME.len(), 32);
    app.put_data(&token, &data_body(&[clear(LONG_NAME, "x")]))
        .await
        .assert_accepted();
    assert_eq!(app.elements_held(&token).await, [LONG_NAME]);
    app.put_data(&token, &data_body(&[clear("", "x")]))
        .await
        .assert_refused(112);
    let thirty_three = format!("{LONG_NAME}x");
    app.put_data(&token, &data_body(&[clear(&thirty_three, "x")]))
        .await
        .assert_refused(112);
    // One character: well-formed, and refused only because the profile does not define it.
    app.put_data(&token, &data_body(&[clear("p", "x")]))
        .await
        .assert_refused(431);
}

async fn key_index_of_32_characters_is_accepted_and_0_or_33_are_rejected_with_112(app: TestApp) {
    let token = app.pending_token().await;
    assert_eq!(LONG_KEY_INDEX.len(), 32);
    let cmk = app.encrypted("cmk_ac", LONG_KEY_INDEX, &random_bytes(16));
    app.put_data(&token, &data_body(std::slice::from_ref(&cmk)))
        .await
        .assert_accepted();
    assert_eq!(app.elements_held(&token).await, ["cmk_ac"]);

    let mut empty = cmk.clone();
    empty["keyIndex"] = json!("");
    app.put_data(&token, &data_body(&[empty]))
        .await
        .assert_refused(112);
    let mut long = cmk;
    long["keyIndex"] = json!(format!("{LONG_KEY_INDEX}X"));
    app.put_data(&token, &data_body(&[long]))
        .await
        .assert_refused(112);
    // One character: well-formed, and refused only because no such key was shared.
    let mut one = app.cmk_ac();
    one["keyIndex"] = json!("K");
    app.put_data(&token, &data_body(&[one]))
        .await
        .assert_refused(431);
}

async fn an_empty_value_is_rejected_with_112(app: TestApp) {
    let token = app.pending_token().await;
    app.put_data(&token, &data_body(&[clear("par", "")]))
        .await
        .assert_refused(112);
    let mut cmk = app.cmk_ac();
    cmk["value"] = json!("");
    app.put_data(&token, &data_body(&[cmk]))
        .await
        .assert_refused(112);
}

async fn a_one_character_value_is_accepted(app: TestApp) {
    let token = app.pending_token().await;
    app.put_data(&token, &data_body(&[clear("psn", "1")]))
        .await
        .assert_accepted();
}

async fn token_info_exp_that_is_not_mmyy_is_rejected_with_112(app: TestApp) {
    let token = app.active_token().await;
    for exp in [
        "",
        "1",
        "122",
        "12299",
        "1329",
        "0029",
        "12/9",
        "ab29",
        "１２２９",
    ] {
        let body = json!({"issuerId": ISSUER, "tokenInfo": {"exp": exp}});
        let answer = app.put_new_data(&token, &body).await;
        assert_eq!(answer.code(), Some(112), "exp {exp:?}: {answer:?}");
    }
    app.put_new_data(
        &token,
        &json!({"issuerId": ISSUER, "tokenInfo": {"exp": 1229}}),
    )
    .await
    .assert_refused(112);
    for exp in ["0130", "1299"] {
        app.put_new_data(
            &token,
            &json!({"issuerId": ISSUER, "tokenInfo": {"exp": exp}}),
        )
        .await
        .assert_accepted();
    }
    assert_eq!(app.get_token(&token).await["tokenInfo"]["exp"], "1299");
}

async fn token_info_last4_of_2_and_10_digits_is_accepted_and_1_or_11_are_rejected_with_112(
    app: TestApp,
) {
    let token = app.active_token().await;
    for last4 in ["1", "12345678901"] {
        let body = json!({"issuerId": ISSUER, "tokenInfo": {"last4": last4}});
        app.put_new_data(&token, &body).await.assert_refused(112);
    }
    for last4 in ["12", "1234567890"] {
        let body = json!({"issuerId": ISSUER, "tokenInfo": {"last4": last4}});
        app.put_new_data(&token, &body).await.assert_accepted();
        assert_eq!(app.get_token(&token).await["tokenInfo"]["last4"], last4);
    }
}

async fn token_info_that_is_not_an_object_is_rejected_with_112(app: TestApp) {
    let token = app.active_token().await;
    app.put_new_data(&token, &json!({"issuerId": ISSUER, "tokenInfo": "1229"}))
        .await
        .assert_refused(112);
}

async fn x_correlation_id_of_1_and_64_characters_is_accepted_and_65_is_rejected_with_112(
    app: TestApp,
) {
    let token = app.pending_token().await;
    let body = serde_json::to_vec(&data_body(&[app.cmk_ac()])).unwrap();
    for id in ["c".to_string(), "c".repeat(64)] {
        let answer = app
            .put_data_with_headers(&token, &[("x-correlation-id", &id), JSON], body.clone())
            .await;
        answer.assert_accepted();
        assert_eq!(answer.correlation_id.as_deref(), Some(id.as_str()));
    }
    let long = "c".repeat(65);
    let answer = app
        .put_data_with_headers(&token, &[("x-correlation-id", &long), JSON], body.clone())
        .await;
    answer.assert_refused(112);
    assert_eq!(answer.correlation_id.as_deref(), Some(long.as_str()));
    app.put_data_with_headers(&token, &[("x-correlation-id", ""), JSON], body.clone())
        .await
        .assert_refused(112);
    app.put_new_data_with_headers(&token, &[("x-correlation-id", &long), JSON], body)
        .await
        .assert_refused(112);
}

async fn a_content_type_that_is_not_json_is_rejected_with_112(app: TestApp) {
    let token = app.pending_token().await;
    let body = serde_json::to_vec(&data_body(&[psn()])).unwrap();
    for content_type in [
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ] {
        let answer = app
            .put_data_with_headers(
                &token,
                &[("x-correlation-id", "c-1"), ("content-type", content_type)],
                body.clone(),
            )
            .await;
        answer.assert_refused(112);
        assert_eq!(answer.correlation_id.as_deref(), Some("c-1"));
    }
    app.put_new_data_with_headers(
        &token,
        &[("x-correlation-id", "c-2"), ("content-type", "text/plain")],
        body.clone(),
    )
    .await
    .assert_refused(112);
    assert_eq!(app.elements_held(&token).await, Vec::<String>::new());
}

async fn json_with_a_charset_or_without_a_content_type_is_accepted(app: TestApp) {
    let token = app.pending_token().await;
    let body = serde_json::to_vec(&data_body(&[psn()])).unwrap();
    app.put_data_with_headers(
        &token,
        &[
            ("x-correlation-id", "c-1"),
            ("content-type", "application/json; charset=utf-8"),
        ],
        body.clone(),
    )
    .await
    .assert_accepted();
    app.put_data_with_headers(&token, &[("x-correlation-id", "c-2")], body)
        .await
        .assert_accepted();
}

async fn parameters_the_contract_does_not_define_are_refused_with_112_unless_the_tsp_sends_them(
    app: TestApp,
) {
    let token = app.pending_token().await;
    let active = app.active_token().await;
    let mut cmk = app.cmk_ac();
    cmk["checkValue"] = json!("ABCDEF");
    let top = json!({
        "issuerId": ISSUER,
        "tokenPersoInfo": app.required_elements(),
        "requestTimestamp": "2025-01-01T00:00:00Z",
    });
    let in_element = json!({
        "issuerId": ISSUER,
        "tokenPersoInfo": [cmk, app.track2_data(), {"name": "psn", "value": "01", "comment": "x"}],
    });
    // tokenInfo is not part of /data.
    let token_info_on_data = json!({
        "issuerId": ISSUER,
        "tokenPersoInfo": app.required_elements(),
        "tokenInfo": {"exp": "1230"},
    });
    for body in [&top, &in_element, &token_info_on_data] {
        let answer = app.put_data(&token, body).await;
        answer.assert_refused(112);
        assert!(
            answer.message().contains("non-standard"),
            "{}",
            answer.message()
        );
        assert!(!answer.body.contains("checkValue") && !answer.body.contains("ABCDEF"));
    }
    assert_eq!(app.token_state(&token).await, "PENDING_DATA");
    let new_data =
        json!({"issuerId": ISSUER, "tokenInfo": {"exp": "0131", "cvv": "x"}, "extra": [1, 2]});
    app.put_new_data(&active, &new_data)
        .await
        .assert_refused(112);
    assert_ne!(app.get_token(&active).await["tokenInfo"]["exp"], "0131");

    // The TSP registered as one that sends extras: they are ignored.
    let r = app
        .admin(reqwest::Method::PUT, &format!("/admin/v1/tsps/{TSP_ID}"))
        .json(&json!({"baseUrl": app.tsp.base_url(), "acceptsExtraParameters": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["acceptsExtraParameters"], true);
    app.put_data(&token, &in_element).await.assert_accepted();
    assert_eq!(app.token_state(&token).await, "PERSONALIZING");
    app.put_new_data(&active, &new_data).await.assert_accepted();
    assert_eq!(app.get_token(&active).await["tokenInfo"]["exp"], "0131");
}

async fn a_body_of_2_mib_is_refused_and_the_hub_still_answers(app: TestApp) {
    let token = app.pending_token().await;
    let huge = format!(
        r#"{{"issuerId": "ISSUER0001", "tokenPersoInfo": [{{"name": "issuer_note", "value": "{}"}}]}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    // The answer is 413 (or 112) with the id echoed; or, when the hub closed the connection
    // before the client had written the whole body, the client's write fails: refused unread.
    let refused = |sent: Result<TspAnswer, reqwest::Error>| match sent {
        Ok(answer) => {
            assert!(
                answer.status == 413 || (answer.status == 400 && answer.code() == Some(112)),
                "{} {:?}",
                answer.status,
                answer.code()
            );
            assert_eq!(answer.correlation_id.as_deref(), Some("big"));
        }
        Err(e) => {
            let cause = format!("{e:?}");
            assert!(
                e.is_request() && cause.contains("BodyWrite"),
                "not a body the hub stopped reading: {cause}"
            );
        }
    };
    let headers = [("x-correlation-id", "big"), JSON];
    for path in ["data", "data", "newData"] {
        let path = format!("/trapi/v2.0/tokens/{token}/{path}");
        refused(app.try_put_tsp_call(&path, &headers, huge.clone()).await);
    }
    app.health_check(Some("after")).await.assert_accepted();
    app.complete_data(&token).await;
}

async fn x_correlation_id_is_echoed_on_every_answer(app: TestApp) {
    let token = app.pending_token().await;
    let active = app.active_token().await;
    let cases: Vec<(&str, String, Value, Option<u64>)> = vec![
        ("data", token.clone(), data_body(&[app.cmk_ac()]), None),
        ("data", token.clone(), json!({}), Some(111)),
        (
            "data",
            token.clone(),
            json!({"issuerId": "short", "tokenPersoInfo": []}),
            Some(112),
        ),
        (
            "data",
            token.clone(),
            json!({"issuerId": "UNKNOWN001", "tokenPersoInfo": []}),
            Some(113),
        ),
        ("data", "unknown".into(), data_body(&[]), Some(119)),
        (
            "data",
            token.clone(),
            data_body(&[clear("nope", "1")]),
            Some(431),
        ),
        ("data", active.clone(), data_body(&[psn()]), Some(432)),
        (
            "newData",
            active.clone(),
            json!({"issuerId": ISSUER, "tokenInfo": {"exp": "0130"}}),
            None,
        ),
        (
            "newData",
            token.clone(),
            json!({"issuerId": ISSUER}),
            Some(432),
        ),
        (
            "newData",
            active.clone(),
            json!({"issuerId": ISSUER, "tokenInfo": {"exp": "13"}}),
            Some(112),
        ),
    ];
    for (i, (op, id, body, code)) in cases.into_iter().enumerate() {
        let cid = format!("echo-{i}-{}", correlation_id());
        let headers = [("x-correlation-id", cid.as_str()), JSON];
        let bytes = serde_json::to_vec(&body).unwrap();
        let answer = match op {
            "data" => app.put_data_with_headers(&id, &headers, bytes).await,
            _ => app.put_new_data_with_headers(&id, &headers, bytes).await,
        };
        match code {
            None => answer.assert_accepted(),
            Some(c) => answer.assert_refused(c),
        }
        assert_eq!(
            answer.correlation_id.as_deref(),
            Some(cid.as_str()),
            "case {i}"
        );
    }
}
