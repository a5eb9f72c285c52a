//! Admin credentials and the audit log's chain (pure): the roles and what each may reach, the
//! key's presented form, and the hash that links each audit entry to the one before it.

use crate::domain::named::named_enum;
use sha2::{Digest, Sha256};

named_enum! {
    /// What an admin API key may do (the table is in `http/admin_scope.rs`).
    pub enum Role ("an admin role") {
        /// Reads every admin resource but the admin keys; changes nothing.
        ReadOnly = "read-only",
        /// Acts on the objects of its issuers only; another issuer's object is as if missing.
        IssuerAdmin = "issuer-admin",
        /// Shared-key import and rotation only.
        KeyCustodian = "key-custodian",
        /// Everything.
        Admin = "admin",
    }
}

/// An object of the admin API that belongs to one issuer, found by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerObject {
    Token,
    Campaign,
    Notification,
}

/// Presented keys start with this, then the key's id, `_`, and its secret.
pub const KEY_PREFIX: &str = "thk_";
/// Hex digits of a key's id (random, public: it names the key in lists and the audit log).
pub const KEY_ID_HEX: usize = 16;
/// Hex digits of a key's secret (32 random bytes: a hash of it cannot be reversed by search).
pub const SECRET_HEX: usize = 64;

/// An admin API key as the store keeps it: the secret only as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminKey {
    pub key_id: String,
    pub role: Role,
    /// The issuers an `issuer-admin` acts for (empty for every other role).
    pub issuers: Vec<String>,
    /// The operator's note on whose key it is.
    pub label: String,
    pub secret_hash: Vec<u8>,
    pub created_ms: i64,
    /// Who created it: a key's id, `bootstrap` or `cli`.
    pub created_by: String,
    pub revoked_ms: Option<i64>,
}

impl AdminKey {
    /// Whether the key acts for `issuer_id`.
    pub fn covers(&self, issuer_id: &str) -> bool {
        self.issuers.iter().any(|i| i == issuer_id)
    }
}

/// The key's id and secret out of a presented `thk_<id>_<secret>`, or `None` if it has not that
/// form (nothing is looked up for it).
pub fn parse_presented(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (hex(id, KEY_ID_HEX) && hex(secret, SECRET_HEX)).then_some((id, secret))
}

/// The presented form of a key.
pub fn presented(key_id: &str, secret: &str) -> String {
    format!("{KEY_PREFIX}{key_id}_{secret}")
}

/// What the store keeps of a secret.
pub fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// One thing done, as the audit log records it. Never a secret or a data element's value:
/// objects are named by their ids only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub at_ms: i64,
    /// The admin key's id, `bootstrap`, or `cli` (a command run on the store).
    pub actor: String,
    /// e.g. `POST /admin/v1/tokens/{token_id}/suspend`, `admin-key.create`.
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub correlation_id: String,
    /// The HTTP status answered (or the one the outcome maps to).
    pub status: i64,
}

/// An appended record with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// 1, 2, 3… without gaps.
    pub seq: i64,
    pub record: AuditRecord,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// The hash before the first entry.
pub const GENESIS: [u8; 32] = [0; 32];

/// SHA-256 of the previous hash and the entry's canonical content (every field, length-prefixed,
/// so no two contents encode alike).
pub fn chain_hash(prev: &[u8], seq: i64, r: &AuditRecord) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"tokenhub-audit-v1");
    h.update((prev.len() as u32).to_be_bytes());
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(r.at_ms.to_be_bytes());
    h.update(r.status.to_be_bytes());
    for s in [
        &r.actor,
        &r.action,
        &r.object_type,
        &r.object_id,
        &r.correlation_id,
    ] {
        h.update((s.len() as u32).to_be_bytes());
        h.update(s.as_bytes());
    }
    h.finalize().to_vec()
}

/// Where a chain is broken, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq}: {why}")]
pub struct ChainBreak {
    /// The first entry that does not follow (or, for a missing tail, the head's seq).
    pub seq: i64,
    pub why: &'static str,
}

/// Checks a chain entry by entry, in `seq` order, so a long log is read in pages.
#[derive(Debug, Clone)]
pub struct ChainCheck {
    prev: Vec<u8>,
    next_seq: i64,
}

impl Default for ChainCheck {
    fn default() -> Self {
        Self {
            prev: GENESIS.to_vec(),
            next_seq: 1,
        }
    }
}

impl ChainCheck {
    /// The next entry must have the next seq, link to the previous hash, and hash to its own.
    pub fn next(&mut self, e: &AuditEntry) -> Result<(), ChainBreak> {
        let at = |why| ChainBreak {
            seq: self.next_seq,
            why,
        };
        if e.seq != self.next_seq {
            return Err(at("an entry is missing or out of order here"));
        }
        if e.prev_hash != self.prev {
            return Err(at("it does not link to the entry before it"));
        }
        if chain_hash(&e.prev_hash, e.seq, &e.record) != e.hash {
            return Err(at("its content does not match its hash"));
        }
        self.prev = e.hash.clone();
        self.next_seq += 1;
        Ok(())
    }

    /// The chain must end where the head (updated with every append) says it ends: a removed
    /// last entry is found here.
    pub fn finish(&self, head_seq: i64, head_hash: &[u8]) -> Result<i64, ChainBreak> {
        let last = self.next_seq - 1;
        if last != head_seq || self.prev != head_hash {
            return Err(ChainBreak {
                seq: last.min(head_seq) + 1,
                why: "the log ends before (or after) the chain's recorded head",
            });
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: i64) -> AuditRecord {
        AuditRecord {
            at_ms: 1000 + n,
            actor: "0123456789abcdef".into(),
            action: "PUT /admin/v1/tsps/{tsp_id}".into(),
            object_type: "tsps".into(),
            object_id: format!("tsp-{n}"),
            correlation_id: "c".into(),
            status: 200,
        }
    }

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut prev = GENESIS.to_vec();
        (1..=n)
            .map(|seq| {
                let r = record(seq);
                let hash = chain_hash(&prev, seq, &r);
                let e = AuditEntry {
                    seq,
                    record: r,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                e
            })
            .collect()
    }

    fn check(entries: &[AuditEntry], head: &AuditEntry) -> Result<i64, ChainBreak> {
        let mut c = ChainCheck::default();
        for e in entries {
            c.next(e)?;
        }
        c.finish(head.seq, &head.hash)
    }

    #[test]
    fn an_intact_chain_verifies_and_every_change_is_found_at_its_entry() {
        let entries = chain(4);
        let head = entries[3].clone();
        assert_eq!(check(&entries, &head), Ok(4));

        let mut edited = entries.clone();
        edited[1].record.status = 204;
        assert_eq!(check(&edited, &head).unwrap_err().seq, 2);

        let mut removed = entries.clone();
        removed.remove(2);
        assert_eq!(check(&removed, &head).unwrap_err().seq, 3);

        let mut swapped = entries.clone();
        swapped.swap(1, 2);
        assert_eq!(check(&swapped, &head).unwrap_err().seq, 2);

        let mut renumbered = entries.clone();
        renumbered.swap(1, 2);
        renumbered[1].seq = 2;
        renumbered[2].seq = 3;
        assert_eq!(check(&renumbered, &head).unwrap_err().seq, 2);

        let truncated = &entries[..3];
        assert_eq!(check(truncated, &head).unwrap_err().seq, 4);
    }

    #[test]
    fn only_the_presented_form_parses() {
        let id = "0123456789abcdef";
        let secret = "ab".repeat(32);
        assert_eq!(
            parse_presented(&presented(id, &secret)),
            Some((id, secret.as_str()))
        );
        for bad in [
            "",
            "thk_",
            "admin-token",
            &format!("thk_{id}{secret}"),
            &format!("thk_{}_{secret}", id.to_uppercase()),
            &format!("thk_{id}_{secret}0"),
            &format!("thk_{id}_{}", &secret[1..]),
        ] {
            assert_eq!(parse_presented(bad), None, "{bad}");
        }
    }
}
