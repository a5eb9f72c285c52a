//! TSP connections, issuers, products and their profile versions, devices.

use super::{query, query_scalar, Row, Tx};
use super::{Store, StoreError};
use crate::domain::catalog::{Issuer, PutImmutable, Tsp, TspClientAuth};

impl Tx {
    pub async fn put_tsp(&mut self, tsp: &Tsp, now: i64) -> Result<(), StoreError> {
        query(
        "INSERT INTO tsps (tsp_id, base_url, created_ms, updated_ms, rate_limit, accepts_extra_parameters, \
         client_ca_pem, client_subject, client_spki_sha256, server_ca_pem) \
         VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (tsp_id) DO UPDATE SET base_url = excluded.base_url, updated_ms = excluded.updated_ms, \
         rate_limit = excluded.rate_limit, accepts_extra_parameters = excluded.accepts_extra_parameters, \
         client_ca_pem = excluded.client_ca_pem, \
         client_subject = excluded.client_subject, client_spki_sha256 = excluded.client_spki_sha256, \
         server_ca_pem = excluded.server_ca_pem",
    )
    .bind(&tsp.tsp_id)
    .bind(&tsp.base_url)
    .bind(now)
    .bind(tsp.rate_limit)
    .bind(tsp.accepts_extra_parameters)
    .bind(tsp.client_auth.as_ref().map(|a| a.ca_pem.clone()))
    .bind(tsp.client_auth.as_ref().and_then(|a| a.subject.clone()))
    .bind(tsp.client_auth.as_ref().map(|a| a.spki_sha256.join(",")))
    .bind(tsp.server_ca_pem.clone())
    .execute(self)
    .await?;
        Ok(())
    }

    pub async fn put_issuer(&mut self, issuer: &Issuer, now: i64) -> Result<(), StoreError> {
        query(
        "INSERT INTO issuers (issuer_id, name, tsp_id, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (issuer_id) DO UPDATE SET name = excluded.name, tsp_id = excluded.tsp_id, \
         updated_ms = excluded.updated_ms",
    )
    .bind(&issuer.issuer_id)
    .bind(&issuer.name)
    .bind(&issuer.tsp_id)
    .bind(now)
    .execute(self)
    .await?;
        Ok(())
    }

    /// Stores a profile version unless one exists; an existing one must be identical.
    pub async fn put_profile_version(
        &mut self,
        issuer_id: &str,
        product_id: &str,
        version: &str,
        definition_json: &str,
        now: i64,
    ) -> Result<PutImmutable, StoreError> {
        let existing: Option<String> = query_scalar(
        "SELECT definition FROM profile_versions WHERE issuer_id = $1 AND product_id = $2 AND version = $3",
    )
    .bind(issuer_id)
    .bind(product_id)
    .bind(version)
    .fetch_optional(&mut *self)
    .await?;
        match existing {
            Some(def) if def == definition_json => Ok(PutImmutable::Unchanged),
            Some(_) => Ok(PutImmutable::Conflict),
            None => {
                query(
                "INSERT INTO profile_versions (issuer_id, product_id, version, definition, created_ms) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(issuer_id)
            .bind(product_id)
            .bind(version)
            .bind(definition_json)
            .bind(now)
            .execute(self)
            .await?;
                Ok(PutImmutable::Created)
            }
        }
    }

    /// Makes `version` the product's current one. `false` when the version does not exist.
    pub async fn deploy_profile_version(
        &mut self,
        issuer_id: &str,
        product_id: &str,
        version: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let exists: Option<i64> = query_scalar(
        "SELECT 1 FROM profile_versions WHERE issuer_id = $1 AND product_id = $2 AND version = $3",
    )
    .bind(issuer_id)
    .bind(product_id)
    .bind(version)
    .fetch_optional(&mut *self)
    .await?;
        if exists.is_none() {
            return Ok(false);
        }
        query(
        "INSERT INTO products (issuer_id, product_id, current_version, deployed_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (issuer_id, product_id) DO UPDATE SET current_version = excluded.current_version, \
         deployed_ms = excluded.deployed_ms",
    )
    .bind(issuer_id)
    .bind(product_id)
    .bind(version)
    .bind(now)
    .execute(self)
    .await?;
        Ok(true)
    }
}

impl Tx {
    /// Registers a device's public key once, for the wallet provider that registers it (a device
    /// of none is no provider's); a second put of the same key by the same provider changes
    /// nothing, anything else is a conflict.
    pub async fn put_device(
        &mut self,
        device_id: &str,
        public_key: &str,
        provider_id: Option<&str>,
        now: i64,
    ) -> Result<PutImmutable, StoreError> {
        let existing = query("SELECT public_key, provider_id FROM devices WHERE device_id = $1")
            .bind(device_id)
            .fetch_optional(&mut *self)
            .await?;
        if let Some(r) = existing {
            let pk: String = r.get("public_key")?;
            let owner: Option<String> = r.get("provider_id")?;
            return Ok(
                if pk == public_key && owner.is_some() && owner.as_deref() == provider_id {
                    PutImmutable::Unchanged
                } else {
                    PutImmutable::Conflict
                },
            );
        }
        query(
            "INSERT INTO devices (device_id, public_key, provider_id, created_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(device_id)
        .bind(public_key)
        .bind(provider_id)
        .bind(now)
        .execute(self)
        .await?;
        Ok(PutImmutable::Created)
    }
}

impl Tx {
    /// The TSP an issuer's tokens are with.
    pub async fn issuer_tsp(&mut self, issuer_id: &str) -> Result<Option<String>, StoreError> {
        query_scalar("SELECT tsp_id FROM issuers WHERE issuer_id = $1")
            .bind(issuer_id)
            .fetch_optional(self)
            .await
    }
}

const TSP_COLUMNS: &str = "SELECT tsp_id, base_url, rate_limit, accepts_extra_parameters, \
     client_ca_pem, client_subject, client_spki_sha256, server_ca_pem FROM tsps";

fn tsp_of_row(r: &super::sql::Row) -> Result<Tsp, StoreError> {
    let ca: Option<String> = r.get("client_ca_pem")?;
    let pins: Option<String> = r.get("client_spki_sha256")?;
    Ok(Tsp {
        tsp_id: r.get("tsp_id")?,
        base_url: r.get("base_url")?,
        rate_limit: r.get("rate_limit")?,
        accepts_extra_parameters: r.get("accepts_extra_parameters")?,
        client_auth: match ca {
            Some(ca_pem) => Some(TspClientAuth {
                ca_pem,
                subject: r.get("client_subject")?,
                spki_sha256: pins
                    .unwrap_or_default()
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect(),
            }),
            None => None,
        },
        server_ca_pem: r.get("server_ca_pem")?,
    })
}

impl Store {
    pub async fn tsp(&self, tsp_id: &str) -> Result<Option<Tsp>, StoreError> {
        let row = query(&format!("{TSP_COLUMNS} WHERE tsp_id = $1"))
            .bind(tsp_id)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(tsp_of_row).transpose()
    }

    /// Every registered TSP.
    pub async fn tsps(&self) -> Result<Vec<Tsp>, StoreError> {
        let rows = query(&format!("{TSP_COLUMNS} ORDER BY tsp_id"))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(tsp_of_row).collect()
    }

    pub async fn issuer(&self, issuer_id: &str) -> Result<Option<Issuer>, StoreError> {
        let row = query("SELECT issuer_id, name, tsp_id FROM issuers WHERE issuer_id = $1")
            .bind(issuer_id)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(issuer_of_row).transpose()
    }

    /// The stored (canonical JSON) definition of a profile version.
    pub async fn profile_version(
        &self,
        issuer_id: &str,
        product_id: &str,
        version: &str,
    ) -> Result<Option<String>, StoreError> {
        query_scalar(
            "SELECT definition FROM profile_versions WHERE issuer_id = $1 AND product_id = $2 AND version = $3",
        )
        .bind(issuer_id)
        .bind(product_id)
        .bind(version)
        .fetch_optional(self.reader())
        .await
    }

    pub async fn current_version(
        &self,
        issuer_id: &str,
        product_id: &str,
    ) -> Result<Option<String>, StoreError> {
        query_scalar(
            "SELECT current_version FROM products WHERE issuer_id = $1 AND product_id = $2",
        )
        .bind(issuer_id)
        .bind(product_id)
        .fetch_optional(self.reader())
        .await
    }

    pub async fn device_public_key(&self, device_id: &str) -> Result<Option<String>, StoreError> {
        query_scalar("SELECT public_key FROM devices WHERE device_id = $1")
            .bind(device_id)
            .fetch_optional(self.reader())
            .await
    }
}

pub(super) fn issuer_of_row(r: &Row) -> Result<Issuer, StoreError> {
    Ok(Issuer {
        issuer_id: r.get("issuer_id")?,
        name: r.get("name")?,
        tsp_id: r.get("tsp_id")?,
    })
}
