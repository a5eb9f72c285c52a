//! Where and how the hub listens: the TSP, wallet and admin APIs each on their own address, over
//! TLS from PEM files unless a listener is explicitly plain; or, for development on loopback only,
//! every API on one plain port (`listen`).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags and environment variables of the listeners, their TLS and the hub's client certificate.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ListenArgs {
    /// The TSP API's address (mutual TLS with the registered TSPs).
    #[arg(long, env = "TOKENHUB_TSP_LISTEN")]
    pub tsp_listen: Option<SocketAddr>,
    /// The wallet and requestor APIs' address.
    #[arg(long, env = "TOKENHUB_WALLET_LISTEN")]
    pub wallet_listen: Option<SocketAddr>,
    /// The admin API's address.
    #[arg(long, env = "TOKENHUB_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// The listeners' certificate chain (PEM), reloaded when it changes or on SIGHUP.
    #[arg(long, env = "TOKENHUB_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The listeners' private key (PEM).
    #[arg(long, env = "TOKENHUB_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Listeners served in plain HTTP, development only: any of `tsp,wallet,admin`.
    #[arg(long, env = "TOKENHUB_PLAIN_LISTENERS")]
    pub plain_listeners: Option<String>,
    /// The TSP a plain (certificate-less) TSP API acts for, development only.
    #[arg(long, env = "TOKENHUB_TSP_PLAIN_AS")]
    pub tsp_plain_as: Option<String>,
    /// The certificate chain (PEM) the hub presents to the TSPs and requestors that ask for one.
    #[arg(long, env = "TOKENHUB_CLIENT_CERT")]
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of the hub's client certificate.
    #[arg(long, env = "TOKENHUB_CLIENT_KEY")]
    pub client_key: Option<PathBuf>,
}

/// One listener: its address and how it is secured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    pub security: ListenerSecurity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerSecurity {
    /// TLS with this certificate chain and key (PEM), reloaded when the files change.
    Tls { cert: PathBuf, key: PathBuf },
    /// Plain HTTP: development only, warned about at start.
    Plain,
}

/// The three listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    /// `/trapi/v2.0`: mutual TLS with the registered TSPs.
    pub tsp: ListenerConfig,
    /// `/wallet/v1` (and the requestor API).
    pub wallet: ListenerConfig,
    /// `/admin/v1`, `/openapi.json`.
    pub admin: ListenerConfig,
}

/// How each listener bounds its clients (each listener has its own counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// A request's head must arrive within this, counted from when the connection is ready for
    /// it, so an idle keep-alive connection is closed after it too.
    pub header_read_timeout: Duration,
    /// A request (its body read and its handling) must finish within this; the wallet's long
    /// polls are shorter.
    pub request_timeout: Duration,
    pub handshake_timeout: Duration,
    /// Connections open at once; a new one above it is closed at once.
    pub max_connections: usize,
    /// Requests in progress at once; one above it is shed (`503`, `921` on the TSP API). By
    /// default the connection cap (HTTP/1.1 has one request in progress per connection), since
    /// the wallet's long polls hold theirs; set lower to shed earlier.
    pub max_requests: usize,
    /// How often the certificate files are looked at for a change.
    pub cert_poll: Duration,
    /// New TLS connections the wallet and admin listeners take per second; the others wait in the
    /// kernel's backlog. A handshake costs the hub an asymmetric signature: unbounded, a crowd
    /// reconnecting to the wallet listener would take the cores the TSP's `/data` needs.
    pub handshakes_per_second: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_requests: 10_000,
            cert_poll: Duration::from_secs(5),
            handshakes_per_second: 200,
        }
    }
}

/// `[listeners]` of the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileListeners {
    pub tsp: Option<FileListener>,
    pub wallet: Option<FileListener>,
    pub admin: Option<FileListener>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileListener {
    pub address: Option<SocketAddr>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub plain: bool,
}

/// `[limits]` of the TOML file (seconds and counts).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLimits {
    pub header_read_timeout: Option<u64>,
    pub request_timeout: Option<u64>,
    pub handshake_timeout: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_requests: Option<usize>,
    pub cert_poll: Option<u64>,
    pub handshakes_per_second: Option<u32>,
}

impl FileLimits {
    pub fn apply(&self) -> Result<ServerLimits, String> {
        let d = ServerLimits::default();
        let secs = |v: Option<u64>, def: Duration, name: &str| match v {
            Some(0) => Err(format!("limits.{name} must be at least 1")),
            Some(s) => Ok(Duration::from_secs(s)),
            None => Ok(def),
        };
        let count = |v: Option<usize>, def: usize, name: &str| match v {
            Some(0) => Err(format!("limits.{name} must be at least 1")),
            Some(n) => Ok(n),
            None => Ok(def),
        };
        Ok(ServerLimits {
            header_read_timeout: secs(
                self.header_read_timeout,
                d.header_read_timeout,
                "header_read_timeout",
            )?,
            request_timeout: secs(self.request_timeout, d.request_timeout, "request_timeout")?,
            handshake_timeout: secs(
                self.handshake_timeout,
                d.handshake_timeout,
                "handshake_timeout",
            )?,
            max_connections: count(self.max_connections, d.max_connections, "max_connections")?,
            max_requests: count(self.max_requests, d.max_requests, "max_requests")?,
            cert_poll: secs(self.cert_poll, d.cert_poll, "cert_poll")?,
            handshakes_per_second: count(
                self.handshakes_per_second.map(|n| n as usize),
                d.handshakes_per_second as usize,
                "handshakes_per_second",
            )? as u32,
        })
    }
}

/// What flags and environment variables say about the listeners.
pub(super) struct ListenerArgs<'a> {
    pub tsp: Option<SocketAddr>,
    pub wallet: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub cert: Option<&'a PathBuf>,
    pub key: Option<&'a PathBuf>,
    /// Listener names (`tsp`, `wallet`, `admin`) to serve in plain HTTP.
    pub plain: Option<&'a str>,
}

/// The three listeners, when any is configured: each needs an address, and a certificate and key
/// (its own, or the shared `tls_cert`/`tls_key`) unless it is plain.
pub(super) fn resolve(
    args: ListenerArgs<'_>,
    file: &FileListeners,
    file_cert: Option<&PathBuf>,
    file_key: Option<&PathBuf>,
) -> Result<Option<Listeners>, String> {
    let plain: Vec<&str> = args
        .plain
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(bad) = plain
        .iter()
        .find(|p| !matches!(**p, "tsp" | "wallet" | "admin"))
    {
        return Err(format!(
            "plain listeners: {bad:?} is not one of tsp, wallet, admin"
        ));
    }
    let any = args.tsp.is_some()
        || args.wallet.is_some()
        || args.admin.is_some()
        || file.tsp.is_some()
        || file.wallet.is_some()
        || file.admin.is_some();
    if !any {
        return Ok(None);
    }
    let one = |name: &str, flag: Option<SocketAddr>, f: Option<&FileListener>| {
        let f = f.cloned().unwrap_or_default();
        let addr = flag.or(f.address).ok_or_else(|| {
            format!(
                "the {name} listener has no address (TOKENHUB_{}_LISTEN)",
                name.to_uppercase()
            )
        })?;
        if f.plain || plain.contains(&name) {
            return Ok(ListenerConfig {
                addr,
                security: ListenerSecurity::Plain,
            });
        }
        let cert = f
            .cert
            .or_else(|| args.cert.cloned())
            .or_else(|| file_cert.cloned());
        let key = f
            .key
            .or_else(|| args.key.cloned())
            .or_else(|| file_key.cloned());
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(ListenerConfig {
                addr,
                security: ListenerSecurity::Tls { cert, key },
            }),
            _ => Err(format!(
                "the {name} listener needs a certificate and key (TOKENHUB_TLS_CERT, \
                 TOKENHUB_TLS_KEY) or to be configured plain"
            )),
        }
    };
    Ok(Some(Listeners {
        tsp: one("tsp", args.tsp, file.tsp.as_ref())?,
        wallet: one("wallet", args.wallet, file.wallet.as_ref())?,
        admin: one("admin", args.admin, file.admin.as_ref())?,
    }))
}
