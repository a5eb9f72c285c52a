//! The lists the operator console pages through: campaigns newest first and token requestors by
//! id, each a page read from an index (a page costs its own rows, whatever the table holds).

use super::sql::query;
use super::{Store, StoreError};
use crate::domain::campaign::Campaign;
use crate::domain::notification::Requestor;

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
        let filter = if after.is_some() {
            "WHERE requestor_id > $2"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {} FROM token_requestors {filter} ORDER BY requestor_id LIMIT $1",
            super::requestors::COLUMNS
        );
        let q = query(&sql).bind(limit);
        let q = match after {
            Some(id) => q.bind(id),
            None => q,
        };
        let rows = q.fetch_all(self.reader()).await?;
        rows.iter().map(super::requestors::from_row).collect()
    }
}
