//! Tokens, the data preparation held for them (sealed), and their event history.

use super::{query, query_scalar, Row, Tx};
use super::{Store, StoreError};
use crate::domain::lifecycle::{CardInfo, TokenChange};
use crate::domain::TokenState;

pub use crate::domain::token::{Recovery, TokenRow};

pub(super) const TOKEN_COLUMNS: &str =
    "token_id, issuer_id, product_id, profile_version, device_id, \
    wallet_card_ref_id, token_requestor_id, state, token_exp, token_last4, \
    data_deadline_ms, received_elements, correlation_id, created_ms, updated_ms, failure_reason, \
    recovery_correlation_id, recovery_version, recovery_deadline_ms, recovery_campaign_id, \
    card_last_digits, card_expiry_date, card_art_id, last_update_ms";

pub(super) fn token_from_row(r: &Row) -> Result<TokenRow, StoreError> {
    let state: String = r.get("state")?;
    let received: String = r.get("received_elements")?;
    Ok(TokenRow {
        token_id: r.get("token_id")?,
        issuer_id: r.get("issuer_id")?,
        product_id: r.get("product_id")?,
        profile_version: r.get("profile_version")?,
        device_id: r.get("device_id")?,
        wallet_card_ref_id: r.get("wallet_card_ref_id")?,
        token_requestor_id: r.get("token_requestor_id")?,
        state: TokenState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("token state {state}")))?,
        token_exp: r.get("token_exp")?,
        token_last4: r.get("token_last4")?,
        data_deadline_ms: r.get("data_deadline_ms")?,
        received_elements: split_names(&received),
        correlation_id: r.get("correlation_id")?,
        created_ms: r.get("created_ms")?,
        updated_ms: r.get("updated_ms")?,
        failure_reason: r.get("failure_reason")?,
        recovery: match (
            r.get::<Option<String>>("recovery_correlation_id")?,
            r.get::<Option<String>>("recovery_version")?,
        ) {
            (Some(correlation_id), Some(target_version)) => Some(Recovery {
                correlation_id,
                target_version,
                deadline_ms: r.get("recovery_deadline_ms")?,
                campaign_id: r.get("recovery_campaign_id")?,
            }),
            _ => None,
        },
        card: CardInfo {
            last_digits: r.get("card_last_digits")?,
            expiry_date: r.get("card_expiry_date")?,
            art_id: r.get("card_art_id")?,
        },
        last_update_ms: r.get("last_update_ms")?,
    })
}

/// Element names as the store keeps them: joined by commas, in the order given. Made once by the
/// call's checks (outside the serial write path) and bound as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElementNames {
    joined: String,
    count: usize,
}

impl ElementNames {
    pub fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out = Self::default();
        for name in names {
            if out.count > 0 {
                out.joined.push(',');
            }
            out.joined.push_str(name);
            out.count += 1;
        }
        out
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn contains(&self, name: &str) -> bool {
        self.joined.split(',').any(|n| n == name)
    }
}

fn split_names(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// One call's elements, sealed under the token's data key.
pub struct DataPart<'a> {
    pub operation: &'a str,
    pub correlation_id: &'a str,
    pub element_names: &'a ElementNames,
    pub sealed: &'a [u8],
}

impl Tx {
    /// Appends one call's sealed part after the token's last one.
    pub async fn append_token_data(
        &mut self,
        token_id: &str,
        part: &DataPart<'_>,
        now: i64,
    ) -> Result<(), StoreError> {
        query(
        "INSERT INTO token_data (token_id, seq, operation, correlation_id, element_names, sealed, created_ms) \
         VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM token_data WHERE token_id = $1), $2, $3, $4, $5, $6)",
    )
    .bind(token_id)
    .bind(part.operation)
    .bind(part.correlation_id)
    .bind(part.element_names.joined.as_str())
    .bind(part.sealed)
    .bind(now)
    .execute(self)
    .await?;
        Ok(())
    }

    /// The sealed parts held for a token, oldest first, as this transaction sees them.
    pub async fn data_parts(&mut self, token_id: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        data_parts(self, token_id).await
    }

    pub async fn set_token_state_and_elements(
        &mut self,
        token_id: &str,
        state: TokenState,
        received_elements: &ElementNames,
        now: i64,
    ) -> Result<(), StoreError> {
        query(
            "UPDATE tokens SET state = $2, received_elements = $3, updated_ms = $4 WHERE token_id = $1",
        )
        .bind(token_id)
        .bind(state.as_str())
        .bind(received_elements.joined.as_str())
        .bind(now)
        .execute(self)
        .await?;
        Ok(())
    }
}

/// The sealed parts held for a token, oldest first.
async fn data_parts(
    conn: impl Into<super::sql::Exec<'_>>,
    token_id: &str,
) -> Result<Vec<Vec<u8>>, StoreError> {
    query_scalar("SELECT sealed FROM token_data WHERE token_id = $1 ORDER BY seq")
        .bind(token_id)
        .fetch_all(conn)
        .await
}

/// One line of a token's history.
#[derive(Debug, Clone)]
pub struct TokenEvent {
    pub at_ms: i64,
    pub event: String,
    pub correlation_id: String,
}

impl Store {
    pub async fn token(&self, token_id: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_id = $1"
        ))
        .bind(token_id)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// The token a keyed digitization made, by its correlation id (`dgt-…`, derived from the
    /// wallet's key).
    pub async fn keyed_digitization(
        &self,
        correlation_id: &str,
    ) -> Result<Option<TokenRow>, StoreError> {
        // The `LIKE` names the partial index's condition, so that both engines use it.
        let row = query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens \
             WHERE correlation_id = $1 AND correlation_id LIKE 'dgt-%'"
        ))
        .bind(correlation_id)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub async fn token_events(&self, token_id: &str) -> Result<Vec<TokenEvent>, StoreError> {
        let rows = query(
            "SELECT at_ms, event, correlation_id FROM token_events WHERE token_id = $1 ORDER BY id",
        )
        .bind(token_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenEvent {
                    at_ms: r.get("at_ms")?,
                    event: r.get("event")?,
                    correlation_id: r.get("correlation_id")?,
                })
            })
            .collect()
    }

    /// What the store still holds of any token's data: sealed data parts, and sealed profiles
    /// waiting for their device. Both are 0 once every device confirmed.
    pub async fn retained_data(&self) -> Result<(i64, i64), StoreError> {
        let parts: i64 = query_scalar("SELECT COUNT(*) FROM token_data")
            .fetch_one(self.reader())
            .await?;
        let profiles: i64 =
            query_scalar("SELECT COUNT(*) FROM personalizations WHERE ciphertext IS NOT NULL")
                .fetch_one(self.reader())
                .await?;
        Ok((parts, profiles))
    }

    /// Tokens by state.
    pub async fn token_states(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = query("SELECT state, COUNT(*) AS n FROM tokens GROUP BY state ORDER BY state")
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|r| Ok((r.get("state")?, r.get("n")?)))
            .collect()
    }

    /// The token's sealed data parts, in order.
    pub async fn data_parts(&self, token_id: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        data_parts(self.reader(), token_id).await
    }

    /// How many sealed data parts the store holds for a token.
    pub async fn data_part_count(&self, token_id: &str) -> Result<i64, StoreError> {
        query_scalar("SELECT COUNT(*) FROM token_data WHERE token_id = $1")
            .bind(token_id)
            .fetch_one(self.reader())
            .await
    }
}

impl Store {
    /// The tokens the device must remove (deleted since it last acknowledged).
    pub async fn removals_for_device(&self, device_id: &str) -> Result<Vec<String>, StoreError> {
        query_scalar(
            "SELECT token_id FROM tokens WHERE device_id = $1 AND removal_pending = 1 ORDER BY token_id",
        )
        .bind(device_id)
        .fetch_all(self.reader())
        .await
    }
}

impl Tx {
    /// Inserts the token; `false` when one of its id exists (on PostgreSQL, once the transaction
    /// that inserted it at the same moment has committed).
    pub async fn insert_token(&mut self, t: &TokenRow) -> Result<bool, StoreError> {
        let done = query(&format!(
        "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24) \
         ON CONFLICT (token_id) DO NOTHING"
    ))
    .bind(&t.token_id)
    .bind(&t.issuer_id)
    .bind(&t.product_id)
    .bind(&t.profile_version)
    .bind(&t.device_id)
    .bind(&t.wallet_card_ref_id)
    .bind(&t.token_requestor_id)
    .bind(t.state.as_str())
    .bind(&t.token_exp)
    .bind(&t.token_last4)
    .bind(t.data_deadline_ms)
    .bind(t.received_elements.join(","))
    .bind(&t.correlation_id)
    .bind(t.created_ms)
    .bind(t.updated_ms)
    .bind(&t.failure_reason)
    .bind(t.recovery.as_ref().map(|r| r.correlation_id.clone()))
    .bind(t.recovery.as_ref().map(|r| r.target_version.clone()))
    .bind(t.recovery.as_ref().and_then(|r| r.deadline_ms))
    .bind(t.recovery.as_ref().and_then(|r| r.campaign_id.clone()))
    .bind(&t.card.last_digits)
    .bind(&t.card.expiry_date)
    .bind(&t.card.art_id)
    .bind(t.last_update_ms)
    .execute(self)
    .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Reads the token and locks it until the transaction ends.
    pub async fn lock_token(&mut self, token_id: &str) -> Result<Option<TokenRow>, StoreError> {
        super::lock_row(
            self,
            "tokens",
            TOKEN_COLUMNS,
            "token_id",
            token_id,
            token_from_row,
        )
        .await
    }

    pub async fn set_token_state(
        &mut self,
        token_id: &str,
        state: TokenState,
        now: i64,
    ) -> Result<(), StoreError> {
        query("UPDATE tokens SET state = $2, updated_ms = $3 WHERE token_id = $1")
            .bind(token_id)
            .bind(state.as_str())
            .bind(now)
            .execute(self)
            .await?;
        Ok(())
    }

    /// Deletes every data part held for the token and the data key that sealed them, and
    /// forgets which elements it held (data minimization: once the device holds the profile, the
    /// hub keeps only fingerprints; crypto-shredding: a copy of the parts left anywhere no longer
    /// opens). A later call's data gets a new key.
    pub async fn delete_token_data(&mut self, token_id: &str, now: i64) -> Result<(), StoreError> {
        query("DELETE FROM token_data WHERE token_id = $1")
            .bind(token_id)
            .execute(&mut *self)
            .await?;
        self.shred_data_key(token_id).await?;
        self.release_call_parts(token_id).await?;
        query("UPDATE tokens SET received_elements = '', updated_ms = $2 WHERE token_id = $1")
            .bind(token_id)
            .bind(now)
            .execute(self)
            .await?;
        Ok(())
    }

    /// Opens (or, with `None`, closes) the token's recovery.
    pub async fn set_recovery(
        &mut self,
        token_id: &str,
        recovery: Option<&Recovery>,
        now: i64,
    ) -> Result<(), StoreError> {
        query(
        "UPDATE tokens SET recovery_correlation_id = $2, recovery_version = $3, recovery_deadline_ms = $4, \
         recovery_campaign_id = $5, updated_ms = $6 WHERE token_id = $1",
    )
    .bind(token_id)
    .bind(recovery.map(|r| r.correlation_id.clone()))
    .bind(recovery.map(|r| r.target_version.clone()))
    .bind(recovery.and_then(|r| r.deadline_ms))
    .bind(recovery.and_then(|r| r.campaign_id.clone()))
    .bind(now)
    .execute(self)
    .await?;
        Ok(())
    }

    /// Tokens whose recovery's time to live ran out and that have no delivery under way.
    pub async fn expired_recoveries(
        &mut self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        query_scalar(
        "SELECT t.token_id FROM tokens t WHERE t.recovery_deadline_ms IS NOT NULL AND t.recovery_deadline_ms < $1 \
         AND NOT EXISTS (SELECT 1 FROM personalizations p WHERE p.token_id = t.token_id AND p.state = 'PENDING') \
         ORDER BY t.recovery_deadline_ms LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(self)
    .await
    }

    /// Starts the recovery's time to live, once the TSP acknowledged `repersoToken`.
    pub async fn start_recovery_clock(
        &mut self,
        token_id: &str,
        correlation_id: &str,
        deadline_ms: i64,
    ) -> Result<(), StoreError> {
        query(
        "UPDATE tokens SET recovery_deadline_ms = $3 WHERE token_id = $1 AND recovery_correlation_id = $2 \
         AND recovery_deadline_ms IS NULL",
    )
    .bind(token_id)
    .bind(correlation_id)
    .bind(deadline_ms)
    .execute(self)
    .await?;
        Ok(())
    }

    /// Sets the profile version the token's device holds.
    pub async fn set_token_profile_version(
        &mut self,
        token_id: &str,
        version: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        query("UPDATE tokens SET profile_version = $2, updated_ms = $3 WHERE token_id = $1")
            .bind(token_id)
            .bind(version)
            .bind(now)
            .execute(self)
            .await?;
        Ok(())
    }

    pub async fn set_token_failure(
        &mut self,
        token_id: &str,
        state: TokenState,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        query("UPDATE tokens SET state = $2, failure_reason = $3, updated_ms = $4 WHERE token_id = $1")
        .bind(token_id)
        .bind(state.as_str())
        .bind(reason)
        .bind(now)
        .execute(self)
        .await?;
        Ok(())
    }

    pub async fn set_token_info(
        &mut self,
        token_id: &str,
        exp: Option<&str>,
        last4: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        query(
        "UPDATE tokens SET token_exp = COALESCE($2, token_exp), token_last4 = COALESCE($3, token_last4), \
         updated_ms = $4 WHERE token_id = $1",
    )
    .bind(token_id)
    .bind(exp)
    .bind(last4)
    .bind(now)
    .execute(self)
    .await?;
        Ok(())
    }

    pub async fn add_token_event(
        &mut self,
        token_id: &str,
        event: &str,
        correlation_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        query(
        "INSERT INTO token_events (token_id, at_ms, event, correlation_id) VALUES ($1, $2, $3, $4)",
    )
    .bind(token_id)
    .bind(now)
    .bind(event)
    .bind(correlation_id)
    .execute(self)
    .await?;
        Ok(())
    }

    /// Applies a lifecycle change and records `last_update_ms` as the newest change held.
    pub async fn apply_token_change(
        &mut self,
        token_id: &str,
        change: &TokenChange,
        last_update_ms: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        query(
        "UPDATE tokens SET state = COALESCE($2, state), token_exp = COALESCE($3, token_exp), \
         token_last4 = COALESCE($4, token_last4), card_last_digits = COALESCE($5, card_last_digits), \
         card_expiry_date = COALESCE($6, card_expiry_date), card_art_id = COALESCE($7, card_art_id), \
         last_update_ms = $8, updated_ms = $9 WHERE token_id = $1",
    )
    .bind(token_id)
    .bind(change.state.map(TokenState::as_str))
    .bind(&change.token_exp)
    .bind(&change.token_last4)
    .bind(&change.card.last_digits)
    .bind(&change.card.expiry_date)
    .bind(&change.card.art_id)
    .bind(last_update_ms)
    .bind(now)
    .execute(self)
    .await?;
        Ok(())
    }

    /// Marks (or clears) the token as one its device must remove.
    pub async fn set_removal_pending(
        &mut self,
        token_id: &str,
        pending: bool,
    ) -> Result<(), StoreError> {
        query("UPDATE tokens SET removal_pending = $2 WHERE token_id = $1")
            .bind(token_id)
            .bind(i64::from(pending))
            .execute(self)
            .await?;
        Ok(())
    }

    /// The tokens of one card (an issuer's `walletCardRefId`) in the given states, locked.
    pub async fn lock_tokens_of_card(
        &mut self,
        issuer_id: &str,
        wallet_card_ref_id: &str,
    ) -> Result<Vec<TokenRow>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE issuer_id = $1 AND wallet_card_ref_id = $2 \
         ORDER BY token_id{}",
            self.dialect().for_update()
        );
        let rows = query(&sql)
            .bind(issuer_id)
            .bind(wallet_card_ref_id)
            .fetch_all(self)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Records the `lastUpdateTimestamp` of a change the hub made itself.
    pub async fn set_token_last_update(
        &mut self,
        token_id: &str,
        last_update_ms: i64,
    ) -> Result<(), StoreError> {
        query("UPDATE tokens SET last_update_ms = $2 WHERE token_id = $1")
            .bind(token_id)
            .bind(last_update_ms)
            .execute(self)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_names_are_stored_as_the_token_reads_them_back() {
        let names = ElementNames::of(["psn", "track2_data", "cmk_ac"]);
        assert_eq!(names.len(), 3);
        assert!(names.contains("track2_data") && !names.contains("track2"));
        assert_eq!(split_names(&names.joined), ["psn", "track2_data", "cmk_ac"]);
        let none = ElementNames::of([]);
        assert!(none.is_empty());
        assert!(split_names(&none.joined).is_empty());
    }
}
