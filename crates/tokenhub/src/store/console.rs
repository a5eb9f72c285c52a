//! The lists the admin API pages through: campaigns newest first; token requestors, issuers and
//! wallet providers by id; an issuer's tokens by card; a product's profile versions; each a page read from an index (a page costs its own rows, whatever
//! the table holds).

use super::sql::query;
use super::{Row, Store, StoreError};
use crate::domain::campaign::Campaign;
use crate::domain::catalog::Issuer;
use crate::domain::notification::Requestor;
use crate::domain::wallet_provider::WalletProvider;
use crate::store::tokens::TokenRow;

impl Store {
    /// At most `limit` campaigns, newest first, created before `before` (`created_ms`,
    /// `campaign_id`) when given: the key of the previous page's last one.
    pub async fn campaigns_page(
        &self,
        limit: i64,
        before: Option<(i64, &str)>,
    ) -> Result<Vec<Campaign>, StoreError> {
        let (sql, bound) = match before {
            None => ("", None),
            Some(key) => (
                "WHERE created_ms < $2 OR (created_ms = $2 AND campaign_id < $3)",
                Some(key),
            ),
        };
        let sql = format!(
            "SELECT {} FROM campaigns {sql} ORDER BY created_ms DESC, campaign_id DESC LIMIT $1",
            super::campaigns::COLUMNS
        );
        let q = query(&sql).bind(limit);
        let q = match bound {
            Some((ms, id)) => q.bind(ms).bind(id),
            None => q,
        };
        let rows = q.fetch_all(self.reader()).await?;
        rows.iter().map(super::campaigns::from_row).collect()
    }

    /// At most `limit` requestors by id, after `after` when given.
    pub async fn requestors_page(
        &self,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<Requestor>, StoreError> {
        let rows = self
            .page_by_id(
                "token_requestors",
                super::requestors::COLUMNS,
                "requestor_id",
                limit,
                after,
            )
            .await?;
        rows.iter().map(super::requestors::from_row).collect()
    }

    /// At most `limit` issuers by id, after `after` when given.
    pub async fn issuers_page(
        &self,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<Issuer>, StoreError> {
        let rows = self
            .page_by_id(
                "issuers",
                "issuer_id, name, tsp_id",
                "issuer_id",
                limit,
                after,
            )
            .await?;
        rows.iter().map(super::catalog::issuer_of_row).collect()
    }

    /// At most `limit` wallet providers by id, after `after` when given.
    pub async fn wallet_providers_page(
        &self,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<WalletProvider>, StoreError> {
        let rows = self
            .page_by_id(
                "wallet_providers",
                "provider_id, name, spki_sha256",
                "provider_id",
                limit,
                after,
            )
            .await?;
        rows.iter().map(super::wallet_providers::from_row).collect()
    }

    /// At most `limit` of an issuer's tokens in the order of `tokens_by_card` (card, then token),
    /// after `after` (card, token) when given: a page reads its own rows of that index.
    pub async fn issuer_tokens_page(
        &self,
        issuer_id: &str,
        limit: i64,
        after: Option<(&str, &str)>,
    ) -> Result<Vec<TokenRow>, StoreError> {
        let sql = issuer_tokens_sql(after.is_some());
        let q = query(&sql).bind(limit).bind(issuer_id);
        let q = match after {
            Some((card, token)) => q.bind(card).bind(token),
            None => q,
        };
        let rows = q.fetch_all(self.reader()).await?;
        rows.iter().map(super::tokens::token_from_row).collect()
    }

    /// At most `limit` versions of a product's profile (version, created) in the order of the
    /// table's primary key, after `after` when given.
    pub async fn profile_versions_page(
        &self,
        issuer_id: &str,
        product_id: &str,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let filter = if after.is_some() {
            "AND version > $4"
        } else {
            ""
        };
        let sql = format!(
            "SELECT version, created_ms FROM profile_versions \
             WHERE issuer_id = $2 AND product_id = $3 {filter} ORDER BY version LIMIT $1"
        );
        let q = query(&sql).bind(limit).bind(issuer_id).bind(product_id);
        let q = match after {
            Some(v) => q.bind(v),
            None => q,
        };
        q.fetch_all(self.reader())
            .await?
            .iter()
            .map(|r| Ok((r.get("version")?, r.get("created_ms")?)))
            .collect()
    }

    /// A page of `table` in the order of its primary key `id` (an index: the page costs its own
    /// rows), after `after` when given.
    async fn page_by_id(
        &self,
        table: &str,
        columns: &str,
        id: &str,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<Row>, StoreError> {
        let filter = match after {
            Some(_) => format!("WHERE {id} > $2"),
            None => String::new(),
        };
        let sql = format!("SELECT {columns} FROM {table} {filter} ORDER BY {id} LIMIT $1");
        let q = query(&sql).bind(limit);
        let q = match after {
            Some(after) => q.bind(after),
            None => q,
        };
        q.fetch_all(self.reader()).await
    }
}

/// A page of an issuer's tokens: `$1` the limit, `$2` the issuer, then the card and token the
/// page starts after, if it does.
pub(super) fn issuer_tokens_sql(after: bool) -> String {
    let filter = if after {
        "AND wallet_card_ref_id >= $3 AND (wallet_card_ref_id > $3 OR token_id > $4)"
    } else {
        ""
    };
    format!(
        "SELECT {} FROM tokens WHERE issuer_id = $2 {filter} \
         ORDER BY wallet_card_ref_id, token_id LIMIT $1",
        super::tokens::TOKEN_COLUMNS
    )
}
