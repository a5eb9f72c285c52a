//! What the hub is configured with: the TSPs it talks to and the issuers whose tokens it holds.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tsp {
    pub tsp_id: String,
    pub base_url: String,
    /// Calls per second the TSP agreed to take from the hub; `None`: no limit.
    pub rate_limit: Option<i64>,
    /// The TSP is known to send parameters the contract does not define: they are ignored
    /// rather than refused with 112.
    pub accepts_extra_parameters: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    pub issuer_id: String,
    pub name: String,
    pub tsp_id: String,
}

/// What happened to a `PUT` of something that is immutable once written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutImmutable {
    Created,
    /// The same thing was there already: nothing changed.
    Unchanged,
    /// Something different was there already: refused.
    Conflict,
}
