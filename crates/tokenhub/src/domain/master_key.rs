//! The master key's versions (pure): each wrap the hub keeps names the version it was made
//! under; a rotation adds a version (ACTIVE: new wraps use the newest), the older ones are
//! RETIRING while a background job re-wraps what they wrapped, then RETIRED (destroyed where the
//! hub can).

/// A master-key version's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterKeyState {
    Active,
    Retiring,
    Retired,
}

impl MasterKeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Retiring => "RETIRING",
            Self::Retired => "RETIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(Self::Active),
            "RETIRING" => Some(Self::Retiring),
            "RETIRED" => Some(Self::Retired),
            _ => None,
        }
    }
}

impl std::fmt::Display for MasterKeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A master-key version as the store records it (no key material: a check value wrapped under
/// it, and, for the software keystore, the fingerprint key wrapped under it).
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKeyVersion {
    pub version: i64,
    pub state: MasterKeyState,
    /// A fixed text wrapped under this version: a node whose key opens it holds the same key.
    pub check: Vec<u8>,
    /// The software keystore's fingerprint key wrapped under this version (none in an HSM).
    pub fingerprint_key: Option<Vec<u8>>,
    pub created_ms: i64,
    pub retired_ms: Option<i64>,
}

impl std::fmt::Debug for MasterKeyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKeyVersion(v{} {})", self.version, self.state)
    }
}

/// The version new wraps are made under: the newest active one.
pub fn current(versions: &[MasterKeyVersion]) -> Option<i64> {
    versions
        .iter()
        .filter(|v| v.state == MasterKeyState::Active)
        .map(|v| v.version)
        .max()
}

/// A key or secret wrapped under the master key, with the version it was wrapped under.
#[derive(Clone, PartialEq, Eq)]
pub struct Wrapped {
    pub bytes: Vec<u8>,
    pub master_version: i64,
}

impl std::fmt::Debug for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wrapped(v{})", self.master_version)
    }
}

/// Where a rotation's re-wrapping stands, for the admin API and the CLI.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RewrapProgress {
    /// Data keys, requestor credentials and shared keys still wrapped under an older version.
    pub remaining: i64,
    /// Re-wrapped since the rotation began.
    pub rewrapped: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(version: i64, state: MasterKeyState) -> MasterKeyVersion {
        MasterKeyVersion {
            version,
            state,
            check: vec![],
            fingerprint_key: None,
            created_ms: 0,
            retired_ms: None,
        }
    }

    #[test]
    fn new_wraps_use_the_newest_active_version() {
        use MasterKeyState::*;
        assert_eq!(current(&[]), None);
        assert_eq!(current(&[v(1, Retiring), v(2, Active)]), Some(2));
        assert_eq!(
            current(&[v(1, Retired), v(2, Retiring), v(3, Active)]),
            Some(3)
        );
        assert_eq!(current(&[v(1, Retiring)]), None);
        for s in [Active, Retiring, Retired] {
            assert_eq!(MasterKeyState::parse(s.as_str()), Some(s));
        }
        assert_eq!(MasterKeyState::parse("active"), None);
    }
}
