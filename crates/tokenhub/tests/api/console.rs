//! The operator console (`/console` on the admin listener): its assets, served from the binary
//! under a strict Content-Security-Policy; and the admin reads its pages need, `GET /overview`,
//! `GET /campaigns` and `GET /token-requestors`, for the keys that read everything.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};
use tokenhub::domain::TokenState;

hub_tests!(config = requestors_allowed;
    the_console_is_served_on_the_admin_listener_under_a_strict_policy,
    an_unknown_console_asset_is_not_found,
    the_overview_is_for_the_keys_that_read_everything,
    the_overview_shows_the_tsps_outbox_the_tsp_api_codes_and_the_dead_letters,
    campaigns_and_requestors_are_listed_a_page_at_a_time,
);

async fn get(app: &TestApp, base: &str, path: &str) -> reqwest::Response {
    app.client
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("the hub answers")
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

fn assert_console_headers(r: &reqwest::Response) {
    let csp = header(r, "content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(header(r, "x-frame-options"), "DENY");
    assert_eq!(header(r, "x-content-type-options"), "nosniff");
    assert_eq!(header(r, "cache-control"), "no-store");
}

async fn the_console_is_served_on_the_admin_listener_under_a_strict_policy(app: TestApp) {
    let r = get(&app, &app.admin_address, "/console").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    assert_console_headers(&r);
    let page = r.text().await.unwrap();
    assert!(page.contains("/console/assets/app.js") && page.contains("/console/assets/app.css"));
    // Nothing from elsewhere (it works with no internet), and no inline script or style.
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    assert!(
        !page.contains("<script>") && !page.contains("style="),
        "{page}"
    );

    for (asset, kind) in [("app.js", "text/javascript"), ("app.css", "text/css")] {
        let r = get(
            &app,
            &app.admin_address,
            &format!("/console/assets/{asset}"),
        )
        .await;
        assert_eq!(r.status(), 200, "{asset}");
        assert!(header(&r, "content-type").starts_with(kind), "{asset}");
        assert_console_headers(&r);
        let text = r.text().await.unwrap();
        assert!(
            !text.contains("https://") && !text.contains("http://"),
            "{asset}"
        );
    }
    let script = get(&app, &app.admin_address, "/console/assets/app.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(script.contains("sessionStorage") && !script.contains("localStorage"));
    assert!(!script.contains("innerHTML") && !script.contains("eval("));

    // Not on the TSP's or the wallets' listeners.
    for base in [&app.tsp_address, &app.wallet_address] {
        assert_eq!(get(&app, base, "/console").await.status(), 404, "{base}");
    }
}

async fn an_unknown_console_asset_is_not_found(app: TestApp) {
    for path in [
        "/console/assets/nope.js",
        "/console/assets/..%2Fapp.js",
        "/console/assets/",
        "/console/other",
    ] {
        let r = get(&app, &app.admin_address, path).await;
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = get(&app, &app.admin_address, "/console/assets/nope.js").await;
    assert_console_headers(&r);
}

async fn the_overview_is_for_the_keys_that_read_everything(app: TestApp) {
    let reader = app.create_admin_key(&json!({"role": "read-only"})).await;
    let issuer_admin = app
        .create_admin_key(&json!({"role": "issuer-admin", "issuers": [ISSUER]}))
        .await;
    let custodian = app
        .create_admin_key(&json!({"role": "key-custodian"}))
        .await;
    for path in [
        "/admin/v1/overview",
        "/admin/v1/campaigns",
        "/admin/v1/token-requestors",
    ] {
        let status = |a: Answer| a.status;
        assert_eq!(status(app.admin_as("", Method::GET, path, None).await), 401);
        assert_eq!(
            status(app.admin_as("thk_0000_nope", Method::GET, path, None).await),
            401
        );
        for refused in [ADMIN_TOKEN, issuer_admin.as_str(), custodian.as_str()] {
            let a = app.admin_as(refused, Method::GET, path, None).await;
            assert_eq!(a.status, 403, "{path}: {a:?}");
            assert_eq!(a.json["error"], "FORBIDDEN", "{path}");
        }
        for allowed in [reader.as_str(), app.admin_key.as_str()] {
            app.admin_as(allowed, Method::GET, path, None)
                .await
                .expect(200);
        }
    }
}

async fn the_overview_shows_the_tsps_outbox_the_tsp_api_codes_and_the_dead_letters(app: TestApp) {
    // A requestor that refuses for good: the update is a dead letter.
    let (_receiver, _, token) = token_of_a_requestor(&app, &[400]).await;
    let dead = eventually("a dead letter", || async {
        let d = app.requestor_notifications(REQUESTOR, "?state=DEAD").await;
        d.json.as_array().filter(|a| !a.is_empty()).cloned()
    })
    .await;
    assert_eq!(dead[0]["tokenId"], token.as_str());

    let o = app
        .admin_get("/admin/v1/overview")
        .await
        .expect(200)
        .clone();
    let tsp = find(&o["tsps"], "tspId", TSP_ID);
    assert_eq!(tsp["baseUrl"], app.tsp.base_url().trim_end_matches('/'));
    assert!(tsp["outbox"]["pending"].as_i64().is_some(), "{tsp}");
    assert!(tsp["outbox"]["dead"].as_i64().is_some(), "{tsp}");
    // The token's data call, counted by its TSP, operation and code (the counters are the
    // process's).
    let answered = o["tspApi"].as_array().unwrap();
    assert!(
        answered.iter().any(|c| c["tsp"] == TSP_ID
            && c["operation"] == "submitTokenData"
            && c["responseCode"] == "ok"
            && c["count"].as_f64() >= Some(1.0)),
        "{o}"
    );
    let n = &o["notifications"];
    assert!(n["dead"].as_i64() >= Some(1), "{n}");
    let busiest = find(&n["busiest"], "requestorId", REQUESTOR);
    assert_eq!(
        (busiest["state"].as_str(), busiest["dead"].as_i64()),
        (Some("ENABLED"), Some(1))
    );
    // Nothing of a token's, of a key's or of a secret's shows.
    let text = o.to_string();
    assert!(
        !text.contains(&token) && !text.contains(&app.admin_key),
        "{text}"
    );
}

fn find<'a>(list: &'a Value, key: &str, id: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|v| v[key] == id))
        .unwrap_or_else(|| panic!("no {id} in {list}"))
}

async fn campaigns_and_requestors_are_listed_a_page_at_a_time(app: TestApp) {
    let receiver = Receiver::start().await;
    for id in ["psp-c", "psp-a", "psp-b"] {
        app.register_requestor(id, &receiver.base_url(), 1).await;
    }
    let first = app
        .admin_get("/admin/v1/token-requestors?limit=2")
        .await
        .expect(200)
        .clone();
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["requestorId"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&first), ["psp-a", "psp-b"]);
    assert_eq!(first["items"][0]["state"], "ENABLED");
    assert_eq!(first["items"][0]["pending"], 0);
    let next = first["next"].as_str().unwrap();
    let second = app
        .admin_get(&format!("/admin/v1/token-requestors?limit=2&cursor={next}"))
        .await
        .expect(200)
        .clone();
    assert_eq!(ids(&second), ["psp-c"]);
    assert!(second.get("next").is_none(), "{second}");
    assert!(
        !first.to_string().contains("key-"),
        "no API key in the list"
    );

    // Two campaigns, one per issuer: newest first, a page of one at a time.
    app.register_issuer(OTHER_ISSUER).await;
    let mut started = Vec::new();
    for issuer in [ISSUER, OTHER_ISSUER] {
        let versions: &[&str] = if issuer == ISSUER {
            &["v2"]
        } else {
            &[VERSION, "v2"]
        };
        for version in versions {
            let r = app
                .put_profile_version(issuer, PRODUCT, version, &profile_definition())
                .await;
            assert_eq!(r.status(), 201, "{issuer} {version}");
        }
        if issuer == OTHER_ISSUER {
            assert_eq!(app.deploy(issuer, PRODUCT, VERSION).await.status(), 200);
        }
        let token = app.digitize_with(json!({"issuerId": issuer})).await;
        app.set_token_state(&token, TokenState::Active).await;
        let a = app
            .admin_post(
                &format!("/admin/v1/issuers/{issuer}/products/{PRODUCT}/profiles/v2/deploy"),
                Some(&json!({"campaign": {}})),
            )
            .await;
        started.push(a.expect(202)["campaignId"].as_str().unwrap().to_string());
        app.clock.advance(std::time::Duration::from_millis(5));
    }
    let page = app
        .admin_get("/admin/v1/campaigns?limit=1")
        .await
        .expect(200)
        .clone();
    assert_eq!(
        page["items"][0]["campaignId"],
        started[1].as_str(),
        "{page}"
    );
    assert_eq!(page["items"][0]["total"], 1);
    assert_eq!(page["items"][0]["issuerId"], OTHER_ISSUER);
    let next = page["next"].as_str().unwrap();
    let page = app
        .admin_get(&format!("/admin/v1/campaigns?limit=1&cursor={next}"))
        .await
        .expect(200)
        .clone();
    assert_eq!(
        page["items"][0]["campaignId"],
        started[0].as_str(),
        "{page}"
    );
    assert!(page.get("next").is_none(), "{page}");
    app.admin_get("/admin/v1/campaigns?cursor=nonsense")
        .await
        .expect(400);
}
