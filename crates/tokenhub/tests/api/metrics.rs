//! `GET /metrics`: Prometheus's text format on the admin listener, for a key that reads
//! everything; labels from bounded sets only, never a token id, a correlation id or a value.
//!
//! The recorder is the process's, shared by every hub of this test binary: the tests look for
//! what their own calls must have added, and bound the growth of the series with room for what
//! other tests add meanwhile.

use crate::support::*;
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeSet;

hub_tests!(
    metrics_are_served_on_the_admin_listener_to_a_key_that_reads_everything,
    each_tls_listener_exports_when_its_certificate_expires,
    metrics_count_the_calls_by_operation_and_code_and_their_labels_do_not_grow_with_the_tokens,
);

impl TestApp {
    async fn scrape_as(&self, credential: &str) -> Answer {
        self.admin_as(credential, Method::GET, "/metrics", None)
            .await
    }

    async fn scrape(&self) -> String {
        let answer = self.scrape_as(&self.admin_key).await;
        answer.expect(200);
        answer.text
    }
}

async fn metrics_are_served_on_the_admin_listener_to_a_key_that_reads_everything(app: TestApp) {
    assert_eq!(app.scrape_as("").await.status, 401);
    assert_eq!(app.scrape_as("thk_0000_nope").await.status, 401);
    assert_eq!(
        app.scrape_as(ADMIN_TOKEN).await.status,
        403,
        "the bootstrap token"
    );
    let issuer_admin = app
        .create_admin_key(&json!({"role": "issuer-admin", "issuers": [ISSUER]}))
        .await;
    assert_eq!(app.scrape_as(&issuer_admin).await.status, 403);
    let custodian = app
        .create_admin_key(&json!({"role": "key-custodian"}))
        .await;
    assert_eq!(app.scrape_as(&custodian).await.status, 403);

    let reader = app.create_admin_key(&json!({"role": "read-only"})).await;
    let r = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = r.text().await.unwrap();
    assert!(text.contains("# TYPE tokenhub_store_transaction_duration_seconds histogram"));

    // Not on the TSP's or the wallets' listeners.
    for base in [&app.tsp_address, &app.wallet_address] {
        let r = app
            .client
            .get(format!("{base}/metrics"))
            .bearer_auth(&app.admin_key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{base}");
    }
}

async fn each_tls_listener_exports_when_its_certificate_expires(app: TestApp) {
    let pem = std::fs::read(app.cert_dir.join("hub.crt")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let not_after = pem.parse_x509().unwrap().validity().not_after.timestamp();
    for listener in ["tsp", "wallet", "admin"] {
        let series = format!(
            r#"tokenhub_tls_certificate_expiry_timestamp_seconds{{listener="{listener}"}}"#
        );
        let value = eventually(&series, || async {
            let v = count(&app.scrape().await, &series);
            (v > 0.0).then_some(v)
        })
        .await;
        assert_eq!(value as i64, not_after, "{series}");
    }
}

async fn metrics_count_the_calls_by_operation_and_code_and_their_labels_do_not_grow_with_the_tokens(
    app: TestApp,
) {
    let mut tokens = Vec::new();
    let mut correlation_ids = Vec::new();
    // Round one: a few tokens through their whole personalization, calls on unknown tokens.
    for _ in 0..2 {
        tokens.push(app.active_token().await);
    }
    unknown_token_calls(&app, 10, &mut tokens, &mut correlation_ids).await;
    app.health_check(Some("req-metrics"))
        .await
        .assert_accepted();
    let first = app.scrape().await;
    // Round two: many more distinct tokens and correlation ids.
    tokens.push(app.active_token().await);
    unknown_token_calls(&app, 60, &mut tokens, &mut correlation_ids).await;
    let second = app.scrape().await;

    // The TSP API's answers are counted by the calling TSP: a registered TSP's id.
    let api = |operation: &str, code: &str| {
        format!(
            r#"tokenhub_tsp_api_requests_total{{tsp="{TSP_ID}",operation="{operation}",response_code="{code}"}}"#
        )
    };
    for series in [
        api("submitTokenData", "ok"),
        api("submitTokenData", "119"),
        api("healthCheck", "ok"),
    ] {
        assert!(
            second.contains(&series),
            "{series} is missing from:\n{second}"
        );
    }
    for series in [
        r#"tokenhub_tsp_api_request_duration_seconds_bucket{operation="submitTokenData",le="+Inf"}"#,
        r#"tokenhub_tsp_api_call_elements_bucket{operation="submitTokenData",le="+Inf"}"#,
        r#"tokenhub_personalizations_total{event="queued"}"#,
        r#"tokenhub_personalizations_total{event="offered"}"#,
        r#"tokenhub_personalizations_total{event="confirmed"}"#,
        r#"tokenhub_tsp_outbox_pending_calls{tsp="tsp-under-test"}"#,
        r#"tokenhub_tsp_outbox_dead_calls{tsp="tsp-under-test"}"#,
        r#"tokenhub_personalizations_pending "#,
        r#"tokenhub_store_pool_connections "#,
        "tokenhub_store_transaction_duration_seconds_count",
        "tokenhub_personalization_confirmation_seconds_count",
        r#"tokenhub_personalization_confirmation_seconds_bucket{le="86400"}"#,
        r#"tokenhub_tsp_api_request_duration_seconds_bucket{operation="healthCheck",le="0.001"}"#,
    ] {
        assert!(
            second.contains(series),
            "{series} is missing from:\n{second}"
        );
    }
    assert!(
        second.contains(
            r#"tokenhub_tsp_calls_total{tsp="tsp-under-test",call="createToken",outcome="done"}"#
        ),
        "the createToken calls are counted:\n{second}"
    );
    assert!(count(&second, &api("submitTokenData", "119")) >= 70.0);

    let (a, b) = (series(&first), series(&second));
    let grown = b.difference(&a).count();
    assert!(
        grown < 25,
        "61 more tokens added {grown} series: {:#?}",
        b.difference(&a).collect::<Vec<_>>()
    );
    for id in tokens.iter().chain(&correlation_ids) {
        assert!(!second.contains(id.as_str()), "{id} is in the metrics");
    }
    for s in &b {
        for value in label_values(s) {
            assert!(value.len() <= 64, "a label value that is no name: {s}");
        }
    }
    // Every TSP API series names its TSP by a registered id's form (or the unbound port's).
    let api_series: Vec<_> = b
        .iter()
        .filter(|s| s.starts_with("tokenhub_tsp_api_requests_total{"))
        .collect();
    assert!(api_series.len() >= 3, "{api_series:#?}");
    for s in api_series {
        let tsp = s
            .strip_prefix(r#"tokenhub_tsp_api_requests_total{tsp=""#)
            .and_then(|rest| rest.split_once('"'))
            .map(|(tsp, _)| tsp)
            .unwrap_or_else(|| panic!("no tsp label first: {s}"));
        assert!(
            tsp == "(unbound)"
                || (!tsp.is_empty()
                    && tsp
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))),
            "a tsp label that is no TSP's id: {s}"
        );
    }
    promtool_checks(&second);
}

/// The alert rules and the dashboard name only metrics the hub exports.
#[test]
fn the_alert_rules_and_the_dashboard_use_only_the_hubs_metric_names() {
    let exported: BTreeSet<&str> = tokenhub::telemetry::metrics::names().collect();
    let ops = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops");
    for file in [
        "prometheus/tokenhub-rules.yml",
        "prometheus/tokenhub-rules.test.yml",
        "grafana/tokenhub.json",
    ] {
        let text = std::fs::read_to_string(ops.join(file)).unwrap();
        let mut used = 0;
        for (i, _) in text.match_indices("tokenhub_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| exported.contains(b))
                .unwrap_or(&name);
            assert!(
                exported.contains(base),
                "{file} names {name}, which the hub does not export"
            );
            used += 1;
        }
        assert!(used > 5, "{file} names the hub's metrics");
    }
}

/// `n` `/data` calls on tokens that do not exist (119), each its own token and correlation id.
async fn unknown_token_calls(
    app: &TestApp,
    n: usize,
    tokens: &mut Vec<String>,
    correlation_ids: &mut Vec<String>,
) {
    for _ in 0..n {
        let token = format!("TKN{}", uuid::Uuid::new_v4().simple());
        let cid = correlation_id();
        app.put_data_as(&token, &cid, &data_body(&app.required_elements()))
            .await
            .assert_refused(119);
        tokens.push(token);
        correlation_ids.push(cid);
    }
}

/// Every series of a scrape: its name and labels.
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_string()))
        .collect()
}

/// The value of one series.
fn count(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn label_values(series: &str) -> Vec<&str> {
    series
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, v)| v)
        .collect()
}

/// `promtool check metrics` on the scrape, where Prometheus's tool is installed (`.ci/run`
/// installs it).
fn promtool_checks(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("promtool is not installed: `promtool check metrics` skipped");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
