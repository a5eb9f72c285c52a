//! Which admin role may call which admin route (the table is in README.md, "Admin keys and
//! roles"). Decided on the route's template, before the handler runs; an issuer-admin's object
//! found by id (a token, a campaign, a notification) is checked by the handler where it looks the
//! object up ([`super::admin::sees`]), so that another issuer's object answers exactly as a
//! missing one, refusals in the same order.

use super::ApiError;
use crate::domain::admin::Role;
use crate::flows::admin_keys::Caller;
use axum::http::Method;

/// What a route acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Object {
    /// Named by `{issuer_id}` in the path: the issuer, its profiles, products and cards.
    Issuer,
    /// The list of issuers: an issuer-admin's holds only its own (the handler picks them).
    Issuers,
    /// Found by id, belonging to an issuer: tokens, campaigns, notifications.
    OfIssuer,
    /// Shared by every issuer: TSPs, token requestors and their lists.
    Global,
    AdminKeys,
    Audit,
    /// The keys shared with TSPs and the master key's versions: the key custodian's.
    SharedKeys,
}

fn object(route: &str) -> Object {
    match route {
        r if r.starts_with("/admin-keys") => Object::AdminKeys,
        r if r.starts_with("/audit") => Object::Audit,
        r if r.starts_with("/shared-keys") || r.starts_with("/master-keys") => Object::SharedKeys,
        "/issuers" => Object::Issuers,
        r if r.starts_with("/issuers/") => Object::Issuer,
        r if r.starts_with("/tokens/")
            || r.starts_with("/campaigns/")
            || r.starts_with("/notifications/") =>
        {
            Object::OfIssuer
        }
        // Anything else (and any route added later) is global: an issuer-admin is refused it.
        _ => Object::Global,
    }
}

/// The audit log's name for what a route acts on: the resource's path segment before the last
/// parameter (`tokens`, `profiles`, `cards`…).
pub fn object_type(route: &str) -> &str {
    let segments: Vec<&str> = route.split('/').filter(|s| !s.is_empty()).collect();
    let last_param = segments.iter().rposition(|s| s.starts_with('{'));
    match last_param {
        Some(i) if i > 0 => segments[i - 1],
        _ => segments.first().copied().unwrap_or(""),
    }
}

/// Whether the role's keys see only their issuers' objects.
pub fn issuer_scoped(role: Role) -> bool {
    role == Role::IssuerAdmin
}

pub enum Decision {
    Allow,
    /// Outside the caller's role: `403`.
    Forbidden,
    /// Another issuer's: answered as the route answers an unknown issuer.
    Missing(ApiError),
}

/// The table: bootstrap → admin keys only; admin → all; read-only → every read but the admin
/// keys; key-custodian → the shared keys (import, list); issuer-admin → its issuers' objects,
/// reads and changes.
pub fn decide(
    caller: &Caller,
    method: &Method,
    route: &str,
    params: &[(String, String)],
) -> Decision {
    let object = object(route);
    let read = method == Method::GET || method == Method::HEAD;
    let key = match caller {
        Caller::Bootstrap if object == Object::AdminKeys => return Decision::Allow,
        Caller::Bootstrap => return Decision::Forbidden,
        Caller::Key(key) => key,
    };
    match key.role {
        Role::Admin => Decision::Allow,
        Role::ReadOnly if read && object != Object::AdminKeys => Decision::Allow,
        Role::KeyCustodian if object == Object::SharedKeys => Decision::Allow,
        Role::ReadOnly | Role::KeyCustodian => Decision::Forbidden,
        Role::IssuerAdmin => match object {
            Object::OfIssuer => Decision::Allow,
            Object::Issuers if read => Decision::Allow,
            Object::Issuer => {
                let issuer = param(params, "issuer_id");
                if key.covers(issuer) {
                    Decision::Allow
                } else {
                    Decision::Missing(unknown_issuer(route, params))
                }
            }
            Object::Issuers
            | Object::Global
            | Object::AdminKeys
            | Object::Audit
            | Object::SharedKeys => Decision::Forbidden,
        },
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// What each issuer route answers for an issuer that is not registered.
fn unknown_issuer(route: &str, params: &[(String, String)]) -> ApiError {
    let issuer = param(params, "issuer_id");
    if route.ends_with("/deploy") {
        ApiError::not_found(format!(
            "profile version {} of {issuer}/{} is not defined",
            param(params, "version"),
            param(params, "product_id")
        ))
    } else if route.contains("/cards/") {
        ApiError::not_found(format!("no issuer {issuer}"))
    } else {
        ApiError::not_found(format!("issuer {issuer} is not registered"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_names_the_resource_acted_on() {
        assert_eq!(object_type("/tsps/{tsp_id}"), "tsps");
        assert_eq!(object_type("/tokens/{token_id}/suspend"), "tokens");
        assert_eq!(
            object_type("/issuers/{issuer_id}/products/{product_id}/profiles/{version}/deploy"),
            "profiles"
        );
        assert_eq!(
            object_type("/token-requestors/{requestor_id}/dead-letters/replay"),
            "token-requestors"
        );
        assert_eq!(object_type("/admin-keys"), "admin-keys");
    }
}
