//! Personalizations (a profile for a device, sealed to it when the device first asks for it and
//! offered until the device settles it) and the fingerprints of the elements a token was
//! personalized with.

use std::collections::BTreeMap;

use super::{query, query_scalar, Row, Tx};
use super::{Store, StoreError};

pub use crate::domain::personalization::{Kind, Personalization, PersonalizationState};

const COLUMNS: &str =
    "personalization_id, token_id, device_id, profile_version, kind, state, enc, \
    ciphertext, tries, next_offer_ms, expires_ms, result_reason, correlation_id, created_ms";

fn from_row(r: &Row) -> Result<Personalization, StoreError> {
    Ok(Personalization {
        personalization_id: r.get("personalization_id")?,
        token_id: r.get("token_id")?,
        device_id: r.get("device_id")?,
        profile_version: r.get("profile_version")?,
        kind: r.get("kind")?,
        state: r.get("state")?,
        enc: r.get("enc")?,
        ciphertext: r.get("ciphertext")?,
        tries: r.get("tries")?,
        next_offer_ms: r.get("next_offer_ms")?,
        expires_ms: r.get("expires_ms")?,
        result_reason: r.get("result_reason")?,
        correlation_id: r.get("correlation_id")?,
        created_ms: r.get("created_ms")?,
    })
}

/// The personalizations of device `$1` that may be offered at `$2` with at most `$3` offers each.
const OFFERABLE: &str = "device_id = $1 AND state = 'PENDING' AND next_offer_ms <= $2 \
    AND tries < $3 AND expires_ms > $2";

/// The fingerprints the token was personalized with, by element name.
async fn fingerprints(
    conn: impl Into<super::sql::Exec<'_>>,
    token_id: &str,
) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
    let blob: Option<Vec<u8>> =
        query_scalar("SELECT fingerprints FROM token_fingerprint_sets WHERE token_id = $1")
            .bind(token_id)
            .fetch_optional(conn)
            .await?;
    blob.map_or_else(|| Ok(BTreeMap::new()), |b| decode_fingerprints(&b))
}

impl Tx {
    /// The fingerprints the token was personalized with, by element name, as this transaction
    /// sees them.
    pub async fn token_fingerprints(
        &mut self,
        token_id: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
        fingerprints(self, token_id).await
    }

    /// Replaces the token's fingerprints (one row per token: one page written, where a row per
    /// element wrote 40 rows and their index entries).
    pub async fn replace_token_fingerprints(
        &mut self,
        token_id: &str,
        fingerprints: &[(String, Vec<u8>)],
    ) -> Result<(), StoreError> {
        if fingerprints.is_empty() {
            query("DELETE FROM token_fingerprint_sets WHERE token_id = $1")
                .bind(token_id)
                .execute(self)
                .await?;
            return Ok(());
        }
        query(
            "INSERT INTO token_fingerprint_sets (token_id, fingerprints) VALUES ($1, $2) \
             ON CONFLICT (token_id) DO UPDATE SET fingerprints = excluded.fingerprints",
        )
        .bind(token_id)
        .bind(encode_fingerprints(fingerprints)?)
        .execute(self)
        .await?;
        Ok(())
    }
}

/// A token's fingerprints as one blob: for each element, the length of its name (2 bytes, big
/// endian), the name (UTF-8), the length of its fingerprint (2 bytes), the fingerprint.
/// (Migration 0011 writes the same encoding from the rows it replaces.)
fn encode_fingerprints(fingerprints: &[(String, Vec<u8>)]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(
        fingerprints
            .iter()
            .map(|(n, f)| 4 + n.len() + f.len())
            .sum(),
    );
    for (name, fp) in fingerprints {
        for field in [name.as_bytes(), fp.as_slice()] {
            let len = u16::try_from(field.len()).map_err(|_| {
                StoreError::Corrupt(format!("a fingerprint field of {} bytes", field.len()))
            })?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field);
        }
    }
    Ok(out)
}

fn decode_fingerprints(mut blob: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
    let corrupt = || StoreError::Corrupt("a token's fingerprints do not decode".into());
    let field = |blob: &mut &[u8]| -> Result<Vec<u8>, StoreError> {
        let (len, rest) = blob.split_first_chunk::<2>().ok_or_else(corrupt)?;
        let len = usize::from(u16::from_be_bytes(*len));
        let (value, rest) = rest.split_at_checked(len).ok_or_else(corrupt)?;
        *blob = rest;
        Ok(value.to_vec())
    };
    let mut out = BTreeMap::new();
    while !blob.is_empty() {
        let name = String::from_utf8(field(&mut blob)?).map_err(|_| corrupt())?;
        let fp = field(&mut blob)?;
        out.insert(name, fp);
    }
    Ok(out)
}

impl Store {
    /// The fingerprints the token was personalized with, by element name.
    pub async fn token_fingerprints(
        &self,
        token_id: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
        fingerprints(self.reader(), token_id).await
    }

    /// Names of the elements the hub keeps fingerprints of for a token.
    pub async fn fingerprint_names(&self, token_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(fingerprints(self.reader(), token_id)
            .await?
            .into_keys()
            .collect())
    }

    /// A token's personalizations, newest first.
    pub async fn personalizations_of(
        &self,
        token_id: &str,
    ) -> Result<Vec<Personalization>, StoreError> {
        let rows = query(&format!(
            "SELECT {COLUMNS} FROM personalizations WHERE token_id = $1 ORDER BY created_ms DESC"
        ))
        .bind(token_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(from_row).collect()
    }
}

impl Tx {
    pub async fn insert_personalization(
        &mut self,
        p: &Personalization,
        now: i64,
    ) -> Result<(), StoreError> {
        query(&format!(
        "INSERT INTO personalizations ({COLUMNS}, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)"
    ))
    .bind(&p.personalization_id)
    .bind(&p.token_id)
    .bind(&p.device_id)
    .bind(&p.profile_version)
    .bind(p.kind.as_str())
    .bind(p.state.as_str())
    .bind(&p.enc)
    .bind(&p.ciphertext)
    .bind(p.tries)
    .bind(p.next_offer_ms)
    .bind(p.expires_ms)
    .bind(&p.result_reason)
    .bind(&p.correlation_id)
    .bind(now)
    .execute(self)
    .await?;
        Ok(())
    }

    /// The token of a personalization, read without a lock (it never changes): a transaction
    /// that locks both locks the token first, then the personalization.
    pub async fn personalization_token(
        &mut self,
        personalization_id: &str,
    ) -> Result<Option<String>, StoreError> {
        query_scalar("SELECT token_id FROM personalizations WHERE personalization_id = $1")
            .bind(personalization_id)
            .fetch_optional(self)
            .await
    }

    /// Locks a personalization; its token must be locked already (tokens before personalizations).
    pub async fn lock_personalization(
        &mut self,
        personalization_id: &str,
    ) -> Result<Option<Personalization>, StoreError> {
        super::lock_row(
            self,
            "personalizations",
            COLUMNS,
            "personalization_id",
            personalization_id,
            from_row,
        )
        .await
    }

    /// Stores the sealed profile of a pending personalization that has none yet. Returns whether it
    /// did (another poll may have stored one first).
    pub async fn set_personalization_profile(
        &mut self,
        personalization_id: &str,
        enc: &[u8],
        ciphertext: &[u8],
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = query(
            "UPDATE personalizations SET enc = $2, ciphertext = $3, updated_ms = $4 \
         WHERE personalization_id = $1 AND state = 'PENDING' AND enc IS NULL",
        )
        .bind(personalization_id)
        .bind(enc)
        .bind(ciphertext)
        .bind(now)
        .execute(self)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes the device's personalizations that may be offered now (their profile built), counting
    /// one more try for each and holding them back for `window_ms` (the time the device has to
    /// confirm).
    pub async fn take_offers(
        &mut self,
        device_id: &str,
        max_tries: i64,
        window_ms: i64,
        now: i64,
    ) -> Result<Vec<Personalization>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM personalizations WHERE {OFFERABLE} AND enc IS NOT NULL \
         ORDER BY created_ms{}",
            self.dialect().for_update()
        );
        let rows = query(&sql)
            .bind(device_id)
            .bind(now)
            .bind(max_tries)
            .fetch_all(&mut *self)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut p = from_row(r)?;
            p.tries += 1;
            p.next_offer_ms = now + window_ms;
            query(
            "UPDATE personalizations SET tries = $2, next_offer_ms = $3, updated_ms = $4 WHERE personalization_id = $1",
        )
        .bind(&p.personalization_id)
        .bind(p.tries)
        .bind(p.next_offer_ms)
        .bind(now)
        .execute(&mut *self)
        .await?;
            out.push(p);
        }
        Ok(out)
    }

    /// Settles a personalization: its sealed profile is dropped, its outcome kept.
    pub async fn settle_personalization(
        &mut self,
        personalization_id: &str,
        state: PersonalizationState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        query(
        "UPDATE personalizations SET state = $2, result_reason = $3, enc = NULL, ciphertext = NULL, \
         updated_ms = $4 WHERE personalization_id = $1",
    )
    .bind(personalization_id)
    .bind(state.as_str())
    .bind(reason)
    .bind(now)
    .execute(self)
    .await?;
        Ok(())
    }

    /// Pending personalizations that ran out of tries (and of the last window) or expired
    /// unfetched, not locked: their tokens are locked first (see [`Tx::personalization_token`]),
    /// then each is locked and checked again.
    pub async fn overdue_personalizations(
        &mut self,
        max_tries: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<Personalization>, StoreError> {
        // Two indexed lookups (expired; out of tries and past their last offer's window) rather than
        // one OR that would read every pending personalization.
        let expired = format!(
            "SELECT {COLUMNS} FROM personalizations WHERE state = 'PENDING' AND expires_ms <= $1 \
         LIMIT $2"
        );
        let exhausted = format!(
            "SELECT {COLUMNS} FROM personalizations WHERE state = 'PENDING' AND tries >= $3 \
         AND next_offer_ms <= $1 LIMIT $2"
        );
        let mut rows = query(&expired)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *self)
            .await?;
        rows.extend(
            query(&exhausted)
                .bind(now)
                .bind(limit)
                .bind(max_tries)
                .fetch_all(&mut *self)
                .await?,
        );
        let mut found: Vec<Personalization> = Vec::with_capacity(rows.len());
        for r in &rows {
            let p = from_row(r)?;
            if !found
                .iter()
                .any(|f| f.personalization_id == p.personalization_id)
            {
                found.push(p);
            }
        }
        found.sort_by_key(|p| p.created_ms);
        found.truncate(limit.max(0) as usize);
        Ok(found)
    }

    /// Whether the token has a personalization waiting for its device.
    pub async fn has_pending_personalization(
        &mut self,
        token_id: &str,
    ) -> Result<bool, StoreError> {
        let found: Option<i64> = query_scalar(
            "SELECT 1 FROM personalizations WHERE token_id = $1 AND state = 'PENDING' LIMIT 1",
        )
        .bind(token_id)
        .fetch_optional(self)
        .await?;
        Ok(found.is_some())
    }

    /// Fails the token's pending personalizations (the token was deleted). Returns how many.
    pub async fn fail_pending_personalizations(
        &mut self,
        token_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let done = query(
            "UPDATE personalizations SET state = 'FAILED', result_reason = $2, enc = NULL, \
         ciphertext = NULL, updated_ms = $3 WHERE token_id = $1 AND state = 'PENDING'",
        )
        .bind(token_id)
        .bind(reason)
        .bind(now)
        .execute(self)
        .await?;
        Ok(done.rows_affected())
    }
}

impl Store {
    /// The device's pending personalizations whose profile is not built yet (never offered).
    pub async fn unbuilt_personalizations(
        &self,
        device_id: &str,
        max_tries: i64,
        now: i64,
    ) -> Result<Vec<Personalization>, StoreError> {
        let rows = query(&format!(
            "SELECT {COLUMNS} FROM personalizations WHERE {OFFERABLE} AND enc IS NULL \
         ORDER BY created_ms"
        ))
        .bind(device_id)
        .bind(now)
        .bind(max_tries)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Whether the device has a personalization it could be offered now, and whether it has a
    /// deleted token to remove: one cheap query for each turn of a long poll.
    pub async fn device_work(
        &self,
        device_id: &str,
        max_tries: i64,
        now: i64,
    ) -> Result<(bool, bool), StoreError> {
        let row = query(&format!(
            "SELECT (SELECT 1 FROM personalizations WHERE {OFFERABLE} LIMIT 1) AS offers, \
         (SELECT 1 FROM tokens WHERE device_id = $1 AND removal_pending = 1 LIMIT 1) AS removals",
        ))
        .bind(device_id)
        .bind(now)
        .bind(max_tries)
        .fetch_one(self.reader())
        .await?;
        let offers: Option<i64> = row.get("offers")?;
        let removals: Option<i64> = row.get("removals")?;
        Ok((offers.is_some(), removals.is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fingerprints_decode_to_what_was_encoded(
            set in proptest::collection::btree_map("\\PC{0,40}", proptest::collection::vec(any::<u8>(), 0..64), 0..50)
        ) {
            let list: Vec<(String, Vec<u8>)> = set.clone().into_iter().collect();
            prop_assert_eq!(decode_fingerprints(&encode_fingerprints(&list).unwrap()).unwrap(), set);
        }

        #[test]
        fn any_bytes_decode_or_fail_without_panicking(blob in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_fingerprints(&blob);
        }
    }

    #[test]
    fn a_truncated_blob_is_corrupt() {
        let blob = encode_fingerprints(&[("psn".into(), vec![1, 2, 3])]).unwrap();
        for end in 1..blob.len() {
            assert!(decode_fingerprints(&blob[..end]).is_err(), "{end}");
        }
        assert!(encode_fingerprints(&[("n".into(), vec![0; 70_000])]).is_err());
    }
}
