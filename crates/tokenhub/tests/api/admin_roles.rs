//! Admin roles against every admin route, table-driven: each caller (the bootstrap token and a key
//! of each role) gets the route, `403`, or, for an issuer-admin on another issuer's object,
//! exactly what the route answers for a missing object, and nothing of that object changes.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};
use tokenhub::domain::TokenState;

hub_tests!(config = requestors_allowed;
    each_role_gets_each_admin_route_or_403_or_another_issuers_object_as_missing,
);

/// What a route acts on (the spec's table, written apart from the hub's).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Global,
    Issuer,
    OfIssuer,
    AdminKeys,
    Audit,
    SharedKeys,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    Bootstrap,
    Admin,
    ReadOnly,
    IssuerAdmin,
    KeyCustodian,
}

#[derive(Debug, PartialEq)]
enum Expect {
    Allowed,
    Forbidden,
}

fn expect(caller: Caller, kind: Kind, method: &Method) -> Expect {
    let read = method == Method::GET;
    let allowed = match caller {
        Caller::Bootstrap => kind == Kind::AdminKeys,
        Caller::Admin => true,
        Caller::ReadOnly => read && kind != Kind::AdminKeys,
        Caller::KeyCustodian => kind == Kind::SharedKeys,
        Caller::IssuerAdmin => matches!(kind, Kind::Issuer | Kind::OfIssuer),
    };
    if allowed {
        Expect::Allowed
    } else {
        Expect::Forbidden
    }
}

/// One route: the path on the caller's issuer's object, and for the issuer's routes the same on
/// the other issuer's object and on one that does not exist (the missing answer's reference).
struct Route {
    method: Method,
    kind: Kind,
    own: String,
    /// (other issuer's path, path of a missing object, the missing id to write as the other's).
    other: Option<(String, String, String, String)>,
    body: Option<Value>,
}

fn route(method: Method, kind: Kind, own: &str, body: Option<Value>) -> Route {
    Route {
        method,
        kind,
        own: own.to_string(),
        other: None,
        body,
    }
}

/// `own` with `{}` for the object's id: the own, other and missing variants.
fn scoped(method: Method, kind: Kind, pattern: &str, ids: [&str; 3], body: Option<Value>) -> Route {
    let [own, other, missing] = ids;
    Route {
        method,
        kind,
        own: pattern.replace("{}", own),
        other: Some((
            pattern.replace("{}", other),
            pattern.replace("{}", missing),
            missing.to_string(),
            other.to_string(),
        )),
        body,
    }
}

/// Objects of both issuers: tokens (SUSPENDED, so each has a notification), campaigns.
struct World {
    tokens: [String; 2],
    campaigns: [String; 2],
    notifications: [String; 2],
}

async fn world(app: &TestApp) -> World {
    app.register_issuer(OTHER_ISSUER).await;
    let r = app
        .put_profile_version(OTHER_ISSUER, PRODUCT, VERSION, &profile_definition())
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        app.deploy(OTHER_ISSUER, PRODUCT, VERSION).await.status(),
        200
    );
    let receiver = Receiver::start().await;
    app.register_requestor(REQUESTOR, &receiver.base_url(), 1)
        .await;
    let mut tokens = Vec::new();
    let mut notifications = Vec::new();
    let mut campaigns = Vec::new();
    for issuer in [ISSUER, OTHER_ISSUER] {
        let token = app
            .digitize_with(json!({"issuerId": issuer, "tokenRequestorId": REQUESTOR}))
            .await;
        app.set_token_state(&token, TokenState::Active).await;
        app.token_action(&token, "suspend", None).await.expect(200);
        let n = app.token_notifications(&token).await;
        notifications.push(notification_id(&n[0]).to_string());
        tokens.push(token);
        let r = app
            .put_profile_version(issuer, PRODUCT, "v2", &profile_definition())
            .await;
        assert_eq!(r.status(), 201);
        let deployed = app
            .admin_post(
                &format!("/admin/v1/issuers/{issuer}/products/{PRODUCT}/profiles/v2/deploy"),
                Some(&json!({"campaign": {}})),
            )
            .await;
        campaigns.push(
            deployed.expect(202)["campaignId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    World {
        tokens: tokens.try_into().unwrap(),
        campaigns: campaigns.try_into().unwrap(),
        notifications: notifications.try_into().unwrap(),
    }
}

fn routes(w: &World) -> Vec<Route> {
    use Kind::*;
    let t = [w.tokens[0].as_str(), w.tokens[1].as_str(), "no-such-token"];
    let c = [
        w.campaigns[0].as_str(),
        w.campaigns[1].as_str(),
        "no-such-campaign",
    ];
    let n = [
        w.notifications[0].as_str(),
        w.notifications[1].as_str(),
        "999999999",
    ];
    let i = [ISSUER, OTHER_ISSUER, "UNKNOWN001"];
    let card = json!({"cardExpiryDate": "1231", "cardLastDigits": "9876"});
    vec![
        route(Method::PUT, Global, &format!("/admin/v1/tsps/{TSP_ID}"), None)
            .with_body(json!({"baseUrl": "http://127.0.0.1:9/tsp"})),
        route(Method::GET, Global, &format!("/admin/v1/tsps/{TSP_ID}"), None),
        route(Method::GET, Global, "/admin/v1/tsps", None),
        route(Method::PUT, Global, &format!("/admin/v1/token-requestors/{REQUESTOR}"), None)
            .with_body(json!({"merchantId": "m", "baseUrl": "http://127.0.0.1:9", "apiKey": "k", "signingSecrets": [signing_secret(32)]})),
        route(Method::GET, Global, &format!("/admin/v1/token-requestors/{REQUESTOR}"), None),
        route(Method::POST, Global, &format!("/admin/v1/token-requestors/{REQUESTOR}/enable"), None),
        route(Method::POST, Global, &format!("/admin/v1/token-requestors/{REQUESTOR}/dead-letters/replay"), None),
        route(Method::GET, Global, &format!("/admin/v1/token-requestors/{REQUESTOR}/notifications"), None),
        route(Method::GET, Global, "/admin/v1/overview", None),
        route(Method::GET, Global, "/admin/v1/campaigns", None),
        route(Method::GET, Global, "/admin/v1/token-requestors", None),
        route(Method::GET, Global, "/admin/v1/wallet-providers", None),
        route(Method::GET, Global, &format!("/admin/v1/token-requestors/{REQUESTOR}/api-keys"), None),
        // An issuer-admin's list holds only its own issuers (`admin_lists.rs`).
        route(Method::GET, OfIssuer, "/admin/v1/issuers", None),
        scoped(Method::GET, Issuer, "/admin/v1/issuers/{}", i, None),
        scoped(Method::GET, Issuer, "/admin/v1/issuers/{}/tokens", i, None),
        scoped(Method::GET, Issuer, &format!("/admin/v1/issuers/{{}}/products/{PRODUCT}/profiles"), i, None),
        scoped(Method::GET, Issuer, &format!("/admin/v1/issuers/{{}}/products/{PRODUCT}/profiles/{VERSION}"), i, None),
        scoped(Method::PUT, Issuer, &format!("/admin/v1/issuers/{{}}/products/{PRODUCT}/profiles/v9"), i, Some(profile_definition())),
        scoped(Method::POST, Issuer, &format!("/admin/v1/issuers/{{}}/products/{PRODUCT}/profiles/{VERSION}/deploy"), i, Some(json!({}))),
        scoped(Method::POST, Issuer, "/admin/v1/issuers/{}/cards/no-such-card/renew", i, Some(card.clone())),
        scoped(Method::POST, Issuer, "/admin/v1/issuers/{}/cards/no-such-card/replace", i, Some(card)),
        scoped(Method::GET, OfIssuer, "/admin/v1/tokens/{}", t, None),
        scoped(Method::GET, OfIssuer, "/admin/v1/tokens/{}/notifications", t, None),
        scoped(Method::POST, OfIssuer, "/admin/v1/tokens/{}/resume", t, Some(json!({}))),
        scoped(Method::POST, OfIssuer, "/admin/v1/tokens/{}/suspend", t, None),
        scoped(Method::GET, OfIssuer, "/admin/v1/campaigns/{}", c, None),
        scoped(Method::GET, OfIssuer, "/admin/v1/campaigns/{}/report", c, None),
        scoped(Method::POST, OfIssuer, "/admin/v1/campaigns/{}/pause", c, None),
        scoped(Method::POST, OfIssuer, "/admin/v1/campaigns/{}/resume", c, None),
        scoped(Method::GET, OfIssuer, "/admin/v1/notifications/{}", n, None),
        scoped(Method::POST, OfIssuer, "/admin/v1/notifications/{}/replay", n, None),
        // Last: they end the objects.
        scoped(Method::POST, OfIssuer, "/admin/v1/campaigns/{}/cancel", c, None),
        scoped(Method::POST, OfIssuer, "/admin/v1/tokens/{}/delete", t, None),
        route(Method::GET, AdminKeys, "/admin/v1/admin-keys", None),
        route(Method::POST, AdminKeys, "/admin/v1/admin-keys", Some(json!({"role": "read-only"}))),
        route(Method::GET, Audit, "/admin/v1/audit", None),
        route(Method::GET, SharedKeys, "/admin/v1/shared-keys", None),
        route(Method::POST, SharedKeys, "/admin/v1/shared-keys", None)
            .with_body(json!({"tspId": TSP_ID, "keys": tokenhub_crypto::KeySet::generate().keys})),
        route(Method::POST, SharedKeys, &format!("/admin/v1/shared-keys/{TSP_ID}/NO-SUCH-KEY/retire"), None),
    ]
}

impl Route {
    fn with_body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

/// Registering an issuer has no missing answer (a new one is created): another issuer's is `404`.
async fn issuer_registration(app: &TestApp, credential: &str, caller: Caller) {
    let body = json!({"name": "Bank", "tspId": TSP_ID});
    for (issuer, own) in [(ISSUER, true), (OTHER_ISSUER, false)] {
        let path = format!("/admin/v1/issuers/{issuer}");
        let a = app
            .admin_as(credential, Method::PUT, &path, Some(&body))
            .await;
        let want = match (caller, own) {
            (Caller::Admin, _) | (Caller::IssuerAdmin, true) => 200,
            (Caller::IssuerAdmin, false) => 404,
            _ => 403,
        };
        assert_eq!(a.status, want, "{caller:?} PUT {path}: {a:?}");
    }
}

async fn each_role_gets_each_admin_route_or_403_or_another_issuers_object_as_missing(app: TestApp) {
    let w = world(&app).await;
    let mut callers = vec![(Caller::Bootstrap, ADMIN_TOKEN.to_string())];
    for (caller, body) in [
        (Caller::ReadOnly, json!({"role": "read-only"})),
        (Caller::KeyCustodian, json!({"role": "key-custodian"})),
        (
            Caller::IssuerAdmin,
            json!({"role": "issuer-admin", "issuers": [ISSUER]}),
        ),
        (Caller::Admin, json!({"role": "admin"})),
    ] {
        callers.push((caller, app.create_admin_key(&body).await));
    }
    for (caller, credential) in &callers {
        issuer_registration(&app, credential, *caller).await;
        for r in routes(&w) {
            let want = expect(*caller, r.kind, &r.method);
            let a = app
                .admin_as(credential, r.method.clone(), &r.own, r.body.as_ref())
                .await;
            let what = format!("{caller:?} {} {}", r.method, r.own);
            match want {
                Expect::Forbidden => {
                    assert_eq!(a.status, 403, "{what}: {a:?}");
                    assert_eq!(a.json["error"], "FORBIDDEN", "{what}");
                }
                Expect::Allowed => {
                    assert!(![401, 403].contains(&a.status), "{what}: {a:?}");
                    assert!(
                        !a.text.contains("does not exist") && !a.text.contains("no token"),
                        "{what}: {a:?}"
                    );
                }
            }
            let (Caller::IssuerAdmin, Some((other, missing, missing_id, other_id))) =
                (caller, &r.other)
            else {
                continue;
            };
            // Another issuer's object answers what a missing one answers (to the admin).
            let reference = app
                .admin_send(r.method.clone(), missing, r.body.as_ref())
                .await;
            let a = app
                .admin_as(credential, r.method.clone(), other, r.body.as_ref())
                .await;
            assert_eq!(
                a.status, reference.status,
                "{caller:?} {} {other}: {a:?}",
                r.method
            );
            assert_eq!(
                a.text,
                reference.text.replace(missing_id.as_str(), other_id),
                "{caller:?} {} {other}",
                r.method
            );
        }
    }
    // Nothing of the other issuer's changed.
    assert_eq!(app.token_state(&w.tokens[1]).await, "SUSPENDED");
    let c = app
        .admin_get(&format!("/admin/v1/campaigns/{}", w.campaigns[1]))
        .await;
    assert_ne!(c.expect(200)["state"], "CANCELLED");
    assert_eq!(app.token_state(&w.tokens[0]).await, "DELETED");
}
