//! The hub's OpenAPI document, served at `/openapi.json`: the admin and wallet APIs generated from
//! the handlers' annotations, plus the TSP incoming API v2 exactly as published
//! (`spec/tsp-incoming-api-v2.json`, mounted under `/trapi/v2.0`).

use super::AppState;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

/// The published TSP incoming API v2, as shipped in `crates/tokenhub/spec/`.
pub const TSP_INCOMING_SPEC: &str = include_str!("../../spec/tsp-incoming-api-v2.json");

#[derive(OpenApi)]
#[openapi(
    info(title = "tokenhub", description = "Token Service Hub: admin, wallet, requestor and TSP APIs"),
    paths(
        super::tsps::put_tsp,
        super::tsps::get_tsp,
        super::tsps::list_tsps,
        super::health::get_health,
        super::nodes::list_nodes,
        super::issuers::put_issuer,
        super::issuers::get_issuer,
        super::issuers::list_issuers,
        super::tokens::list_issuer_tokens,
        super::profiles::list_profile_versions,
        super::profiles::get_profile_version,
        super::profiles::put_profile_version,
        super::profiles::deploy,
        super::tokens::get_token,
        super::campaigns::get_campaign,
        super::campaigns::pause_campaign,
        super::campaigns::resume_campaign,
        super::campaigns::cancel_campaign,
        super::campaigns::campaign_report,
        super::tokens::suspend_token,
        super::tokens::resume_token,
        super::tokens::delete_token,
        super::cards::renew_card,
        super::cards::replace_card,
        super::requestors::put_requestor,
        super::requestors::get_requestor,
        super::requestors::enable_requestor,
        super::notifications::requestor_notifications,
        super::notifications::token_notifications,
        super::notifications::get_notification,
        super::notifications::replay_notification,
        super::requestors::replay_dead_letters,
        super::admin_keys::create_key,
        super::admin_keys::list_keys,
        super::admin_keys::revoke_key,
        super::audit::list_audit,
        super::shared_keys::list_keys,
        super::shared_keys::import_keys,
        super::shared_keys::retire_key,
        super::master_keys::get_status,
        super::master_keys::rotate,
        super::wallet::register_device,
        super::wallet::create_digitization,
        super::wallet::poll_personalizations,
        super::wallet::post_result,
        super::wallet::token_removed,
        super::wallet_providers::put_provider,
        super::wallet_providers::get_provider,
        super::wallet_providers::list_providers,
        super::wallet_providers::create_key,
        super::wallet_providers::revoke_key,
        super::requestors::create_requestor_key,
        super::requestors::list_requestor_keys,
        super::requestors::revoke_requestor_key,
        super::tsps::put_card_key,
        super::requestor_api::encryption_keys,
        super::requestor_api::tokenize,
        super::requestor_api::get_token,
        super::requestor_api::delete_token,
        super::requestor_api::create_transaction,
        super::overview::get_overview,
        super::overview::list_campaigns,
        super::overview::list_requestors,
    ),
    modifiers(&AdminSecurity)
)]
struct HubApi;

struct AdminSecurity;

impl utoipa::Modify for AdminSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "requestor",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "wallet",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The whole document: ours, with the TSP API's paths (prefixed with its server URL) and
/// components merged in.
pub fn document() -> serde_json::Value {
    let mut doc =
        serde_json::to_value(HubApi::openapi()).expect("the generated document serializes");
    let tsp: serde_json::Value =
        serde_json::from_str(TSP_INCOMING_SPEC).expect("the shipped TSP spec is valid JSON");
    let prefix = tsp["servers"][0]["url"]
        .as_str()
        .unwrap_or("/trapi/v2.0")
        .to_string();
    if let (Some(paths), Some(tsp_paths)) = (doc["paths"].as_object_mut(), tsp["paths"].as_object())
    {
        for (path, item) in tsp_paths {
            paths.insert(format!("{prefix}{path}"), item.clone());
        }
    }
    for section in ["schemas", "parameters", "responses"] {
        if let Some(items) = tsp["components"][section].as_object() {
            let target = &mut doc["components"][section];
            if !target.is_object() {
                *target = serde_json::json!({});
            }
            for (name, item) in items {
                target[name] = item.clone();
            }
        }
    }
    add_token_updates(&mut doc, &prefix);
    doc["openapi"] = serde_json::Value::String("3.1.0".into());
    doc
}

/// The hub's addition to the TSP incoming API: token updates (`docs/tsp-api.md`).
fn add_token_updates(doc: &mut serde_json::Value, prefix: &str) {
    let schema = serde_json::json!({
        "type": "object",
        "required": ["issuerId", "lastUpdateTimestamp"],
        "properties": {
            "issuerId": {"type": "string", "minLength": 10, "maxLength": 10},
            "lastUpdateTimestamp": {"type": "string", "format": "date-time", "description": "when the change happened at the TSP; an update not newer than the one the hub holds is acknowledged and not applied"},
            "tokenState": {"type": "string", "enum": ["ACTIVE", "SUSPENDED", "DELETED"]},
            "tokenExpiryDate": {"type": "string", "pattern": "^(0[1-9]|1[0-2])[0-9]{2}$"},
            "tokenLastDigits": {"type": "string", "pattern": "^[0-9]{2,5}$"},
            "cardLastDigits": {"type": "string", "pattern": "^[0-9]{2,5}$"},
            "cardExpiryDate": {"type": "string", "pattern": "^(0[1-9]|1[0-2])[0-9]{2}$"},
            "cardArtId": {"type": "string", "minLength": 1, "maxLength": 64}
        }
    });
    doc["components"]["schemas"]["tokenUpdateReq"] = schema;
    let op = serde_json::json!({
        "post": {
            "operationId": "submitTokenUpdate",
            "summary": "A token update from the TSP (state, expiry, last digits, card details)",
            "description": "Answered 204 once stored, before it is forwarded to the token's requestor. Errors: 111, 112, 113, 119, 432 (a change out of DELETED), 921.",
            "tags": ["tsp"],
            "parameters": [
                {"name": "tokenId", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1, "maxLength": 48}},
                {"name": "x-correlation-id", "in": "header", "required": true, "schema": {"type": "string", "minLength": 1, "maxLength": 64}}
            ],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/tokenUpdateReq"}}}},
            "responses": {
                "204": {"description": "stored (or not newer than what the hub holds)"},
                "400": {"description": "refused", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/errorRes"}}}}
            }
        }
    });
    if let Some(paths) = doc["paths"].as_object_mut() {
        paths.insert(format!("{prefix}/tokens/{{tokenId}}/updates"), op);
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(document()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_tsp_part_equals_the_published_spec() {
        let published: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/spec/tsp-incoming-api-v2.json"
            ))
            .or_else(|_| {
                std::fs::read_to_string(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/spec/tsp-incoming-api-v2.json"
                ))
            })
            .unwrap(),
        )
        .unwrap();
        let doc = document();
        for (path, item) in published["paths"].as_object().unwrap() {
            assert_eq!(&doc["paths"][format!("/trapi/v2.0{path}")], item, "{path}");
        }
        for section in ["schemas", "parameters", "responses"] {
            for (name, item) in published["components"][section].as_object().unwrap() {
                assert_eq!(&doc["components"][section][name], item, "{section}/{name}");
            }
        }
        assert!(doc["paths"]["/admin/v1/tokens/{tokenId}"].is_object());
        assert!(doc["paths"]["/wallet/v1/digitizations"].is_object());
        assert!(doc["paths"]["/admin/v1/nodes"]["get"].is_object());
    }
}
