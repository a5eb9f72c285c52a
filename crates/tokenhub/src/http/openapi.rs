//! The hub's OpenAPI document, served at `/openapi.json`: the admin and wallet APIs generated from
//! the handlers' annotations, plus the TSP incoming API v2 exactly as published
//! (`spec/tsp-incoming-api-v2.json`, mounted under `/trapi/v2.0`).

use super::AppState;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

/// The published TSP incoming API v2, as shipped in `shared/spec/`.
pub const TSP_INCOMING_SPEC: &str = include_str!("../../spec/tsp-incoming-api-v2.json");

#[derive(OpenApi)]
#[openapi(
    info(title = "tokenhub", description = "Token Service Hub: admin, wallet and TSP APIs"),
    paths(
        super::admin::put_tsp,
        super::admin::put_issuer,
        super::admin::put_profile_version,
        super::admin::deploy,
        super::admin::get_token,
        super::admin::get_campaign,
        super::admin::pause_campaign,
        super::admin::resume_campaign,
        super::admin::cancel_campaign,
        super::admin::campaign_report,
        super::wallet::register_device,
        super::wallet::create_digitization,
        super::wallet::poll_personalizations,
        super::wallet::post_result,
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
    doc["openapi"] = serde_json::Value::String("3.1.0".into());
    doc
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
    }
}
