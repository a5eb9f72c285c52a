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
    /// How the TSP's client certificates are recognised on the TSP listener; `None`: no
    /// certificate is accepted as this TSP.
    pub client_auth: Option<TspClientAuth>,
    /// The CA certificates (PEM) the TSP's server certificate is issued from, trusted for the
    /// hub's calls to it besides the public roots.
    pub server_ca_pem: Option<String>,
}

/// The CAs a TSP's client certificates are issued from and how its own are told apart: the
/// leaf's subject, and/or the SHA-256 of its public key (any one of the pins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TspClientAuth {
    pub ca_pem: String,
    pub subject: Option<String>,
    pub spki_sha256: Vec<String>,
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
