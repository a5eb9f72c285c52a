//! The requestor API's records: requestors' API keys (the secret's hash only), the TSPs' card
//! encryption keys (public JWKs) and card-on-file tokens.

use super::{query, Row, Store, StoreError, Tx};
use crate::domain::requestor_token::RequestorToken;
use crate::domain::wallet_provider::ProviderKey;
use crate::domain::TokenState;

const COLUMNS: &str = "token_id, requestor_id, tsp_id, issuer_id, state, token_last_digits, \
    token_expiry_date, card_last_digits, card_expiry_date, card_art_id, requestor_reference, \
    idempotency_key, request_hash, last_update_ms, created_ms, updated_ms";

fn from_row(r: &Row) -> Result<RequestorToken, StoreError> {
    let state: String = r.get("state")?;
    Ok(RequestorToken {
        token_id: r.get("token_id")?,
        requestor_id: r.get("requestor_id")?,
        tsp_id: r.get("tsp_id")?,
        issuer_id: r.get("issuer_id")?,
        state: TokenState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("requestor token state {state}")))?,
        token_last_digits: r.get("token_last_digits")?,
        token_expiry_date: r.get("token_expiry_date")?,
        card_last_digits: r.get("card_last_digits")?,
        card_expiry_date: r.get("card_expiry_date")?,
        card_art_id: r.get("card_art_id")?,
        requestor_reference: r.get("requestor_reference")?,
        idempotency_key: r.get("idempotency_key")?,
        request_hash: r.get("request_hash")?,
        last_update_ms: r.get("last_update_ms")?,
        created_ms: r.get("created_ms")?,
        updated_ms: r.get("updated_ms")?,
    })
}

impl Tx {
    /// Records a new API key of a requestor. `false` when the requestor does not exist.
    pub async fn insert_requestor_key(
        &mut self,
        requestor_id: &str,
        key_id: &str,
        secret_hash: &[u8],
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = query(
            "INSERT INTO requestor_keys (key_id, requestor_id, secret_hash, created_ms) \
             SELECT $1, requestor_id, $3, $4 FROM token_requestors WHERE requestor_id = $2",
        )
        .bind(key_id)
        .bind(requestor_id)
        .bind(secret_hash)
        .bind(now)
        .execute(self)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Revokes a requestor's key (at its first revocation's time). `false`: no such key.
    pub async fn revoke_requestor_key(
        &mut self,
        requestor_id: &str,
        key_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = query(
            "UPDATE requestor_keys SET revoked_ms = COALESCE(revoked_ms, $3) \
             WHERE requestor_id = $1 AND key_id = $2",
        )
        .bind(requestor_id)
        .bind(key_id)
        .bind(now)
        .execute(self)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Sets (or, with `None`, removes) the TSP's card encryption key. `false`: no such TSP.
    pub async fn set_tsp_card_key(
        &mut self,
        tsp_id: &str,
        jwk: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done =
            query("UPDATE tsps SET card_encryption_jwk = $2, updated_ms = $3 WHERE tsp_id = $1")
                .bind(tsp_id)
                .bind(jwk)
                .bind(now)
                .execute(self)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a new token; `false` (nothing written) when the token id, or the requestor's
    /// idempotency key, is taken already.
    pub async fn insert_requestor_token(&mut self, t: &RequestorToken) -> Result<bool, StoreError> {
        let done = query(&format!(
            "INSERT INTO requestor_tokens ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15, $16) ON CONFLICT DO NOTHING"
        ))
        .bind(&t.token_id)
        .bind(&t.requestor_id)
        .bind(&t.tsp_id)
        .bind(&t.issuer_id)
        .bind(t.state.as_str())
        .bind(&t.token_last_digits)
        .bind(&t.token_expiry_date)
        .bind(&t.card_last_digits)
        .bind(&t.card_expiry_date)
        .bind(&t.card_art_id)
        .bind(&t.requestor_reference)
        .bind(&t.idempotency_key)
        .bind(&t.request_hash)
        .bind(t.last_update_ms)
        .bind(t.created_ms)
        .bind(t.updated_ms)
        .execute(self)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn lock_requestor_token(
        &mut self,
        token_id: &str,
    ) -> Result<Option<RequestorToken>, StoreError> {
        super::lock_row(
            self,
            "requestor_tokens",
            COLUMNS,
            "token_id",
            token_id,
            from_row,
        )
        .await
    }

    /// Writes what a change may change: state, digits, expiries, card art, the stamp.
    pub async fn update_requestor_token(&mut self, t: &RequestorToken) -> Result<(), StoreError> {
        query(
            "UPDATE requestor_tokens SET state = $2, token_last_digits = $3, token_expiry_date = $4, \
             card_last_digits = $5, card_expiry_date = $6, card_art_id = $7, last_update_ms = $8, \
             updated_ms = $9 WHERE token_id = $1",
        )
        .bind(&t.token_id)
        .bind(t.state.as_str())
        .bind(&t.token_last_digits)
        .bind(&t.token_expiry_date)
        .bind(&t.card_last_digits)
        .bind(&t.card_expiry_date)
        .bind(&t.card_art_id)
        .bind(t.last_update_ms)
        .bind(t.updated_ms)
        .execute(self)
        .await?;
        Ok(())
    }
}

impl Store {
    /// A requestor's API keys' records (never a secret's hash), oldest first.
    pub async fn requestor_keys(&self, requestor_id: &str) -> Result<Vec<ProviderKey>, StoreError> {
        query(
            "SELECT key_id, created_ms, revoked_ms FROM requestor_keys \
             WHERE requestor_id = $1 ORDER BY created_ms, key_id",
        )
        .bind(requestor_id)
        .fetch_all(self.reader())
        .await?
        .iter()
        .map(|r| {
            Ok(ProviderKey {
                key_id: r.get("key_id")?,
                created_ms: r.get("created_ms")?,
                revoked_ms: r.get("revoked_ms")?,
            })
        })
        .collect()
    }

    /// A key that is not revoked: its requestor and its secret's hash.
    pub async fn live_requestor_key(
        &self,
        key_id: &str,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let row = query(
            "SELECT requestor_id, secret_hash FROM requestor_keys \
             WHERE key_id = $1 AND revoked_ms IS NULL",
        )
        .bind(key_id)
        .fetch_optional(self.reader())
        .await?;
        row.map(|r| Ok((r.get("requestor_id")?, r.get("secret_hash")?)))
            .transpose()
    }

    /// Every TSP's card encryption key that is set: TSP id and public JWK.
    pub async fn tsp_card_keys(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = query(
            "SELECT tsp_id, card_encryption_jwk FROM tsps \
             WHERE card_encryption_jwk IS NOT NULL ORDER BY tsp_id",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| Ok((r.get("tsp_id")?, r.get("card_encryption_jwk")?)))
            .collect()
    }

    pub async fn requestor_token(
        &self,
        token_id: &str,
    ) -> Result<Option<RequestorToken>, StoreError> {
        let row = query(&format!(
            "SELECT {COLUMNS} FROM requestor_tokens WHERE token_id = $1"
        ))
        .bind(token_id)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The TSP and state of the requestor's token (another's is `None`, as an unknown one): one
    /// read by the primary key, the columns a transaction needs.
    pub async fn requestor_token_state(
        &self,
        requestor_id: &str,
        token_id: &str,
    ) -> Result<Option<(String, TokenState)>, StoreError> {
        let row = query(
            "SELECT tsp_id, state FROM requestor_tokens WHERE token_id = $1 AND requestor_id = $2",
        )
        .bind(token_id)
        .bind(requestor_id)
        .fetch_optional(self.reader())
        .await?;
        row.map(|r| {
            let state: String = r.get("state")?;
            let state = TokenState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("requestor token state {state}")))?;
            Ok((r.get("tsp_id")?, state))
        })
        .transpose()
    }

    /// The token a requestor made with an idempotency key.
    pub async fn requestor_token_by_key(
        &self,
        requestor_id: &str,
        idempotency_key: &str,
    ) -> Result<Option<RequestorToken>, StoreError> {
        let row = query(&format!(
            "SELECT {COLUMNS} FROM requestor_tokens WHERE requestor_id = $1 AND idempotency_key = $2"
        ))
        .bind(requestor_id)
        .bind(idempotency_key)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(from_row).transpose()
    }
}
