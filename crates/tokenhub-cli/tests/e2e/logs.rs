//! The log an on-call engineer queries: a demo run with `TOKENHUB_LOG_FORMAT=json` writes JSON
//! lines only, and every `/data` call the TSP simulator sent is found in the hub's log by its
//! correlation id: one `request` line, with its status, duration, what came of it and the ids of
//! the call. A refused call is that one line too, with the refusal's code and reason and nothing of
//! its body.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

#[test]
fn every_data_call_of_a_demo_run_is_found_in_the_json_log_by_its_correlation_id() {
    let out = Command::new(env!("CARGO_BIN_EXE_tokenhub"))
        .args(["demo", "--tokens", "12", "--transactions", "1"])
        .env("TOKENHUB_LOG_FORMAT", "json")
        // The hub at info; the simulator's "data call answered" lines (debug) say what it sent.
        .env("RUST_LOG", "info,tokenhub_sim::tsp::delivery=debug")
        .output()
        .expect("the demo starts");
    let stderr = String::from_utf8(out.stderr).expect("the log is UTF-8");
    assert!(
        out.status.success(),
        "the demo failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );

    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();

    // What the TSP simulator sent and the hub accepted: correlation id → token id.
    let sent: BTreeMap<&str, &str> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "data call answered")
        .filter(|l| l["fields"]["operation"] == "data")
        .filter(|l| l["fields"]["verdict"] == "Accepted")
        .map(|l| {
            (
                l["fields"]["correlation_id"].as_str().unwrap(),
                l["fields"]["token_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        sent.len() >= 12,
        "the simulator sent {} /data calls",
        sent.len()
    );

    // The hub's one line per request, for its /data route.
    let answered: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "request")
        .filter(|l| l["span"]["route"] == "/trapi/v2.0/tokens/{token_id}/data")
        .collect();
    let mut found = BTreeSet::new();
    for line in &answered {
        assert_eq!(line["level"], "INFO");
        assert!(line["fields"]["status"].as_u64().is_some(), "{line}");
        assert!(line["fields"]["duration_ms"].as_f64().is_some(), "{line}");
        let span = &line["span"];
        let Some(correlation) = span["correlation_id"].as_str() else {
            panic!("a /data request line without its correlation id: {line}");
        };
        // A call the simulator retried has earlier attempts with other statuses.
        if let Some(token) = sent
            .get(correlation)
            .filter(|_| line["fields"]["status"] == 204)
        {
            assert_eq!(span["token_id"].as_str(), Some(*token), "{line}");
            // What came of the call is the line's own.
            let fields = &line["fields"];
            assert_eq!(fields["operation"], "submitTokenData", "{line}");
            assert!(
                ["accepted", "repeat: acknowledged again"]
                    .contains(&fields["outcome"].as_str().unwrap_or("")),
                "{line}"
            );
            if fields["outcome"] == "accepted" {
                assert!(fields["token_state"].is_string(), "no token state: {line}");
                assert!(fields["elements_held"].is_u64(), "no elements held: {line}");
            }
            assert!(span["tsp_id"].is_string(), "no TSP id: {line}");
            assert!(span["issuer_id"].is_string(), "no issuer id: {line}");
            found.insert(correlation);
        }
    }
    let missing: Vec<_> = sent.keys().filter(|c| !found.contains(*c)).collect();
    assert!(missing.is_empty(), "not in the hub's log: {missing:?}");
}

/// A refused TSP call writes one line at `info`, its `request` line, with the refusal's code and
/// reason as the caller was told them, and nothing of what its body carried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_tsp_call_is_one_request_line_with_its_code_and_reason_and_no_value() {
    use crate::harness::*;
    tokenhub::telemetry::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hub.log");
    let settings = HubSettings {
        env: [("RUST_LOG", "info"), ("TOKENHUB_LOG_FORMAT", "json")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
        log_to: Some(log.clone()),
        ..HubSettings::default()
    };
    let keys = tokenhub_crypto::KeySet::generate();
    let mut hub = HubProcess::start(Backend::Sqlite, &keys, settings).await;
    // A card number and a data element's value, in a body the hub refuses.
    let secrets = ["4111111111111111", "C0FFEE0123456789ABCDEF"];
    let body = format!(
        r#"{{"issuerId":"NOSUCHBANK","pan":"{}","dataElements":[{{"tag":"9F10","value":"{}"}}]}}"#,
        secrets[0], secrets[1]
    );
    let answer = reqwest::Client::new()
        .put(format!(
            "{}/trapi/v2.0/tokens/tok-refused-1/data",
            hub.url()
        ))
        .header("x-correlation-id", "refused-call-1")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let refusal: Value = answer.json().await.unwrap();
    // The log's own thread writes the line just after the answer.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("refused-call-1")
        && std::time::Instant::now() < until
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    hub.kill();

    let text = std::fs::read_to_string(&log).unwrap();
    for secret in secrets {
        assert!(!text.contains(secret), "a value of the body was logged");
    }
    let lines: Vec<Value> = (text.lines())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["span"]["correlation_id"] == "refused-call-1")
        .collect();
    assert_eq!(lines.len(), 1, "one line for the call: {lines:?}\n{text}");
    let (line, fields) = (&lines[0], &lines[0]["fields"]);
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(fields["message"], "request", "{line}");
    assert_eq!(fields["status"], 400, "{line}");
    assert_eq!(fields["operation"], "submitTokenData", "{line}");
    assert_eq!(fields["response_code"], refusal["responseCode"], "{line}");
    assert_eq!(fields["reason"], refusal["errorMessage"], "{line}");
    assert!(fields["outcome"].is_null(), "{line}");
    assert_eq!(line["span"]["token_id"], "tok-refused-1", "{line}");
}
