//! Admin API keys: created (the secret shown once, stored hashed), listed, revoked, and the
//! caller a presented credential stands for. Every creation and revocation is audited in its own
//! transaction.

use crate::domain::admin::{self, AdminKey, AuditRecord, Role, KEY_ID_HEX, SECRET_HEX};
use crate::error::Error;
use crate::store::Store;
use rand::RngCore;
use secrecy::SecretString;
use subtle::ConstantTimeEq;

/// Who is calling the admin API.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The bootstrap token: it may only manage admin keys.
    Bootstrap,
    Key(AdminKey),
}

impl Caller {
    /// How the audit log names the caller.
    pub fn actor(&self) -> &str {
        match self {
            Caller::Bootstrap => "bootstrap",
            Caller::Key(k) => &k.key_id,
        }
    }
}

/// What a new key is for.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub role: Role,
    pub issuers: Vec<String>,
    pub label: String,
}

/// A key just made: what is stored, and the presented form, shown once.
pub struct Created {
    pub key: AdminKey,
    pub presented: SecretString,
}

/// Most issuers one key may act for.
pub const MAX_ISSUERS: usize = 64;

/// Makes a key and stores it with its audit entry, in one transaction. An issuer-admin needs at
/// least one registered issuer; no other role takes any.
pub async fn create(
    store: &Store,
    new: NewKey,
    by: &str,
    correlation_id: &str,
    now: i64,
) -> Result<Created, Error> {
    let mut issuers = new.issuers;
    issuers.sort();
    issuers.dedup();
    match (new.role, issuers.len()) {
        (Role::IssuerAdmin, 0) => return Err(Error::invalid("an issuer-admin key needs issuers")),
        (Role::IssuerAdmin, n) if n > MAX_ISSUERS => {
            return Err(Error::invalid(format!("at most {MAX_ISSUERS} issuers")))
        }
        (Role::IssuerAdmin, _) => {}
        (_, 0) => {}
        _ => return Err(Error::invalid("only an issuer-admin key takes issuers")),
    }
    for i in &issuers {
        if store.issuer(i).await?.is_none() {
            return Err(Error::not_found(format!("issuer {i} is not registered")));
        }
    }
    let label = new.label.trim().to_string();
    if label.chars().count() > 128 || label.chars().any(char::is_control) {
        return Err(Error::invalid(
            "label must be at most 128 printable characters",
        ));
    }
    let key_id = random_hex(KEY_ID_HEX / 2);
    let secret = random_hex(SECRET_HEX / 2);
    let key = AdminKey {
        key_id: key_id.clone(),
        role: new.role,
        issuers,
        label,
        secret_hash: admin::secret_hash(&secret),
        created_ms: now,
        created_by: by.to_string(),
        revoked_ms: None,
    };
    let record = audit(now, by, "admin-key.create", &key_id, correlation_id, 201);
    let stored = key.clone();
    store
        .transact(move |tx| {
            Box::pin(async move {
                tx.insert_admin_key(&stored).await?;
                tx.append_audit(record).await?;
                Ok::<_, Error>(())
            })
        })
        .await?;
    Ok(Created {
        presented: SecretString::from(admin::presented(&key_id, &secret)),
        key,
    })
}

pub async fn list(store: &Store) -> Result<Vec<AdminKey>, Error> {
    Ok(store.admin_keys().await?)
}

/// Revokes a key: it is refused from the next request on. Whether there was a live key; the
/// attempt is audited either way.
pub async fn revoke(
    store: &Store,
    key_id: &str,
    by: &str,
    correlation_id: &str,
    now: i64,
) -> Result<bool, Error> {
    let (id, by, corr) = (
        key_id.to_string(),
        by.to_string(),
        correlation_id.to_string(),
    );
    store
        .transact(move |tx| {
            Box::pin(async move {
                let revoked = tx.revoke_admin_key(&id, now).await?;
                let status = if revoked { 204 } else { 404 };
                let record = audit(now, &by, "admin-key.revoke", &id, &corr, status);
                tx.append_audit(record).await?;
                Ok::<_, Error>(revoked)
            })
        })
        .await
}

/// The caller a bearer credential stands for: the bootstrap token (compared in constant time) or
/// a live key whose secret's hash matches (compared in constant time); `None` otherwise.
pub async fn authenticate(
    store: &Store,
    bootstrap: Option<&str>,
    presented: &str,
) -> Result<Option<Caller>, Error> {
    if let Some(b) = bootstrap {
        if !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(b.as_bytes())) {
            return Ok(Some(Caller::Bootstrap));
        }
    }
    let Some((key_id, secret)) = admin::parse_presented(presented) else {
        return Ok(None);
    };
    let given = admin::secret_hash(secret);
    let Some(key) = store.admin_key(key_id).await? else {
        return Ok(None);
    };
    let matches: bool = given.ct_eq(&key.secret_hash).into();
    Ok((matches && key.revoked_ms.is_none()).then_some(Caller::Key(key)))
}

fn audit(
    at_ms: i64,
    actor: &str,
    action: &str,
    key_id: &str,
    corr: &str,
    status: i64,
) -> AuditRecord {
    AuditRecord {
        at_ms,
        actor: actor.to_string(),
        action: action.to_string(),
        object_type: "admin-key".to_string(),
        object_id: key_id.to_string(),
        correlation_id: corr.to_string(),
        status,
    }
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// The issuer an admin object belongs to; `None` if there is no such object.
pub async fn issuer_of(
    store: &Store,
    object: crate::domain::admin::IssuerObject,
    id: &str,
) -> Result<Option<String>, Error> {
    Ok(store.issuer_of(object, id).await?)
}
