//! For tests that prove the hub keeps nothing: the forms in which a token's data could appear in
//! the hub's database if it leaked there.

impl super::TspSimHandle {
    /// Every form of the token's data elements worth scanning another system's storage for:
    /// the clear values (keys and track 2 as hex, PSN, PAR, the token PAN) and the wire values
    /// (ciphertext hex) the hub received. For tests only: a real TSP never hands these out.
    pub fn values_for_scan(&self, token_id: &str) -> Option<Vec<String>> {
        let keys = &self.state.keys;
        self.state.vault.with_token(token_id, |t| {
            let c = &t.clear;
            let mut out = vec![
                hex::encode_upper(*c.cmk_ac),
                hex::encode_upper(*c.cmk_rp),
                c.track2.nibbles().to_string(),
                hex::encode_upper(&*c.track2.packed()),
                c.track2.pan().to_string(),
                c.psn.clone(),
                c.par.clone(),
            ];
            if let Ok(wire) = c.to_wire(keys) {
                out.extend(wire.into_iter().map(|e| e.value));
            }
            out
        })
    }
}
