//! What a `/data` or `/newData` call is decided on, read in one place, and the record of each
//! applied call by which its retry is recognised (`token_data_calls`, found by its key).

use super::tokens::TokenRow;
use super::{query, Row, Store, StoreError, Tx};
use crate::domain::data_call::{CallNames, PriorCall};
use crate::domain::TokenState;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What a call is decided on: the token, what was recorded of calls under its correlation id,
/// and, for `/newData`, the delivery under way, the recovery asked under that id and the
/// fingerprints the token was personalized with.
#[derive(Debug)]
pub struct DataCallContext {
    pub token: TokenRow,
    pub prior: PriorCall,
    pub recovery_completed: bool,
    pub delivery_pending: bool,
    pub recovery_asked: bool,
    pub fingerprints: BTreeMap<String, Vec<u8>>,
}

/// Which call, for reading its context.
#[derive(Clone, Copy)]
pub struct CallKey<'a> {
    pub token_id: &'a str,
    pub correlation_id: &'a str,
    pub names: &'a CallNames,
    /// `"data"` or `"newData"`.
    pub operation: &'a str,
}

const CALLS: &str =
    "SELECT names_digest, element_names, operation, part_held, completed FROM token_data_calls \
    WHERE token_id = $1 AND correlation_id = $2";
const PENDING: &str =
    "SELECT 1 FROM personalizations WHERE token_id = $1 AND state = 'PENDING' LIMIT 1";
const ASKED: &str =
    "SELECT 1 FROM outbox WHERE token_id = $1 AND kind = 'repersoToken' AND correlation_id = $2 LIMIT 1";

/// The calls recorded under the correlation id: whether this one's part is held, whether one of
/// this operation was applied, whether a `/newData` among them completed the data.
fn prior_of(rows: &[Row], key: CallKey<'_>) -> Result<(PriorCall, bool), StoreError> {
    let (mut prior, mut completed) = (PriorCall::None, false);
    let digest = names_digest(key.names);
    for r in rows {
        let recorded: i64 = r.get("names_digest")?;
        let names: String = r.get("element_names")?;
        let operation: String = r.get("operation")?;
        let held: i64 = r.get("part_held")?;
        let done: i64 = r.get("completed")?;
        completed |= operation == "newData" && done != 0;
        let same = recorded == digest || (!names.is_empty() && key.names.matches(&names));
        if held != 0 && same {
            prior = PriorCall::Held;
        } else if operation == key.operation && prior == PriorCall::None {
            prior = PriorCall::Applied;
        }
    }
    Ok((prior, completed))
}

/// The key a call is recorded under: the first 8 bytes of the SHA-256 of its canonical names (a
/// short key keeps the record's row, and the pages it costs the writer, small).
fn names_digest(names: &CallNames) -> i64 {
    let hash = Sha256::digest(names.canonical().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    i64::from_be_bytes(first)
}

/// Whether calls may have been applied to the token. A token waiting for its first data that
/// holds no element has had none: an applied call leaves its part, and a token's elements are the
/// names of its parts, deleted only once it is personalized or deleted. This spares the writer a
/// read for the most common call.
fn may_have_calls(token: &TokenRow) -> bool {
    token.state != TokenState::PendingData || !token.received_elements.is_empty()
}

impl Store {
    /// The context of a call, as last committed (before its transaction).
    pub async fn data_call_context(
        &self,
        key: CallKey<'_>,
    ) -> Result<Option<DataCallContext>, StoreError> {
        let Some(token) = self.token(key.token_id).await? else {
            return Ok(None);
        };
        let rows = if may_have_calls(&token) {
            query(CALLS)
                .bind(key.token_id)
                .bind(key.correlation_id)
                .fetch_all(self.reader())
                .await?
        } else {
            Vec::new()
        };
        let (prior, recovery_completed) = prior_of(&rows, key)?;
        let mut context = DataCallContext {
            token,
            prior,
            recovery_completed,
            delivery_pending: false,
            recovery_asked: false,
            fingerprints: BTreeMap::new(),
        };
        if key.operation == "newData" {
            context.delivery_pending = query(PENDING)
                .bind(key.token_id)
                .fetch_optional(self.reader())
                .await?
                .is_some();
            context.recovery_asked = query(ASKED)
                .bind(key.token_id)
                .bind(key.correlation_id)
                .fetch_optional(self.reader())
                .await?
                .is_some();
            context.fingerprints = self.token_fingerprints(key.token_id).await?;
        }
        Ok(Some(context))
    }
}

impl Tx {
    /// The context of a call inside its transaction, the token locked until it ends.
    pub async fn data_call_context(
        &mut self,
        key: CallKey<'_>,
    ) -> Result<Option<DataCallContext>, StoreError> {
        let Some(token) = self.lock_token(key.token_id).await? else {
            return Ok(None);
        };
        let rows = if may_have_calls(&token) {
            query(CALLS)
                .bind(key.token_id)
                .bind(key.correlation_id)
                .fetch_all(&mut *self)
                .await?
        } else {
            Vec::new()
        };
        let (prior, recovery_completed) = prior_of(&rows, key)?;
        let mut context = DataCallContext {
            token,
            prior,
            recovery_completed,
            delivery_pending: false,
            recovery_asked: false,
            fingerprints: BTreeMap::new(),
        };
        if key.operation == "newData" {
            context.delivery_pending = query(PENDING)
                .bind(key.token_id)
                .fetch_optional(&mut *self)
                .await?
                .is_some();
            context.recovery_asked = query(ASKED)
                .bind(key.token_id)
                .bind(key.correlation_id)
                .fetch_optional(&mut *self)
                .await?
                .is_some();
            context.fingerprints = self.token_fingerprints(key.token_id).await?;
        }
        Ok(Some(context))
    }

    /// Records an applied call: `part_held` when it stored a part, `completed` when it completed
    /// the token's data. A call applied again (after its part was deleted) updates its record.
    pub async fn record_data_call(
        &mut self,
        key: CallKey<'_>,
        part_held: bool,
        completed: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        query(
            "INSERT INTO token_data_calls (token_id, correlation_id, names_digest, operation, part_held, completed, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (token_id, correlation_id, names_digest) DO UPDATE SET part_held = excluded.part_held, \
             completed = CASE WHEN excluded.completed = 1 THEN 1 ELSE token_data_calls.completed END",
        )
        .bind(key.token_id)
        .bind(key.correlation_id)
        .bind(names_digest(key.names))
        .bind(key.operation)
        .bind(i64::from(part_held))
        .bind(i64::from(completed))
        .bind(now)
        .execute(self)
        .await?;
        Ok(())
    }

    /// The token's parts are deleted: the records of its calls stay, their parts no longer held,
    /// so that a late retry is still recognised.
    pub async fn release_call_parts(&mut self, token_id: &str) -> Result<(), StoreError> {
        query("UPDATE token_data_calls SET part_held = 0 WHERE token_id = $1 AND part_held = 1")
            .bind(token_id)
            .execute(self)
            .await?;
        Ok(())
    }
}
