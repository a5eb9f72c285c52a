//! A key shared with a TSP at a key ceremony, as the store keeps it: wrapped under the master key
//! (only `keys` unwraps it).

use tokenhub_crypto::Algorithm;

/// A shared key wrapped under the master key, with what identifies and checks it.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub key_index: String,
    pub algorithm: Algorithm,
    /// The key check value the ceremony gave (hex), checked when the key is imported.
    pub kcv: String,
    pub wrapped: Vec<u8>,
}
