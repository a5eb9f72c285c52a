//! The running hub: [`Application`] opens the store and keys, binds the listeners (TSP, wallet,
//! admin; or the single development port), serves each one's routes and runs the background
//! workers until it is told to stop.

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ListenerConfig, ListenerSecurity};
use crate::http::{router_for, Apis, AppState, TspCaller};
use crate::hub::{Hub, StartError, StartupNotes};
use crate::tls::ReloadingCert;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

mod listener;
mod local;
pub use local::LocalHub;

/// A bound listener and what it serves.
struct Bound {
    apis: Apis,
    listener: TcpListener,
    cert: Option<Arc<ReloadingCert>>,
}

/// The addresses the APIs are served at (all the same on the single development port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub tsp: SocketAddr,
    pub wallet: SocketAddr,
    pub admin: SocketAddr,
}

/// The hub, bound to its listeners and ready to serve.
pub struct Application {
    bound: Vec<Bound>,
    addresses: Addresses,
    hub: AppState,
    notes: StartupNotes,
    /// Held while the application lives: no other `serve` on this SQLite file.
    _serve_lock: Option<crate::store::ServeLock>,
}

impl Application {
    /// Opens the store and keys, loads the certificates and binds the listeners (port 0 picks a
    /// free port): the three of `config.listeners`, or the single development port
    /// `config.listen`, which must be a loopback address.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        crate::telemetry::install_crypto_provider();
        crate::telemetry::metrics::install();
        let plan = listener_plan(&config)?;
        let serve_lock = crate::store::ServeLock::take(&config.database_url)?;
        let (hub, notes) = Hub::open(config, clock).await?;
        // Only the process that serves the file may take its leftover claims back: another
        // process (`tokenhub keys import`, say) would take the live hub's.
        let released = hub.store.release_stale_claims().await?;
        if released > 0 {
            tracing::info!(released, "claims left by a previous run released");
        }
        if hub.bootstrap_token().is_none() {
            return Err(StartError::BootstrapTokenRequired);
        }
        if let Some(path) = &notes.bootstrap_token_file {
            tracing::info!(
                path = %path.display(),
                created = notes.created_bootstrap_token_file,
                "the bootstrap token (it may only create and revoke admin keys) is in this file"
            );
        }
        let bound = bind(plan).await?;
        let addr_of = |want: Apis| {
            bound
                .iter()
                .find(|b| b.apis == want || b.apis == Apis::All)
                .and_then(|b| b.listener.local_addr().ok())
                .expect("a bound listener has an address")
        };
        let addresses = Addresses {
            tsp: addr_of(Apis::Tsp),
            wallet: addr_of(Apis::Wallet),
            admin: addr_of(Apis::Admin),
        };
        hub.refresh_tsp_trust().await.map_err(StartError::from)?;
        Ok(Self {
            bound,
            addresses,
            hub: Arc::new(hub),
            notes,
            _serve_lock: serve_lock,
        })
    }

    /// The wallet API's address (on the development port, every API's).
    pub fn local_addr(&self) -> SocketAddr {
        self.addresses.wallet
    }

    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    pub fn hub(&self) -> &AppState {
        &self.hub
    }

    pub fn notes(&self) -> &StartupNotes {
        &self.notes
    }

    /// Serves, and runs the background workers, until `shutdown` completes.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let workers = crate::workers::start(self.hub.clone(), stopped.clone()).await;
        let config = &self.hub.config;
        let limits = config.limits;
        let plain_caller = match &config.tsp_plain_as {
            Some(id) => TspCaller::Tsp(id.clone()),
            None => TspCaller::Unbound,
        };
        let mut certs = Vec::new();
        let mut servers = tokio::task::JoinSet::new();
        for b in self.bound {
            let name = match b.apis {
                Apis::Tsp => "TSP",
                Apis::Wallet => "wallet",
                Apis::Admin => "admin",
                Apis::All => "all APIs",
            };
            let addr = b.listener.local_addr()?;
            let tls = match &b.cert {
                Some(cert) => {
                    certs.push((metrics_name(b.apis), cert.clone()));
                    let clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>> =
                        (b.apis == Apis::Tsp).then(|| self.hub.tsp_trust.clone() as _);
                    let tls = crate::tls::server_config(cert.clone(), clients)
                        .map_err(std::io::Error::other)?;
                    tracing::info!(listener = name, %addr, mutual = b.apis == Apis::Tsp, "serving over TLS");
                    Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))
                }
                None => {
                    tracing::warn!(listener = name, %addr,
                        "PLAIN HTTP, NO TLS: for development only, never in production");
                    if b.apis == Apis::All && config.tsp_plain_as.is_none() {
                        tracing::warn!(
                            "the TSP API on this port is bound to no TSP and acts on every token"
                        );
                    }
                    None
                }
            };
            let router = crate::http::bounded(
                router_for(self.hub.clone(), b.apis),
                limits.max_requests,
                limits.request_timeout,
            );
            let served = Arc::new(listener::Served {
                apis: b.apis,
                router,
                tls,
                limits,
                trust: self.hub.tsp_trust.clone(),
                plain_caller: plain_caller.clone(),
            });
            servers.spawn(listener::serve(b.listener, served, stopped.clone()));
        }
        if !certs.is_empty() {
            tokio::spawn(watch_certificates(certs, limits.cert_poll, stopped.clone()));
        }
        shutdown.await;
        stop.send_replace(true);
        let mut served = Ok(());
        while let Some(r) = servers.join_next().await {
            if let Ok(Err(e)) = r {
                served = Err(e);
            }
        }
        crate::workers::finish(&self.hub, workers).await;
        served
    }

    /// Serves until the process is asked to stop (Ctrl-C or SIGTERM).
    pub async fn run(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }
}

/// A listener's name in the metrics' `listener` label.
fn metrics_name(apis: Apis) -> &'static str {
    match apis {
        Apis::Tsp => "tsp",
        Apis::Wallet => "wallet",
        Apis::Admin => "admin",
        Apis::All => "all",
    }
}

/// Looks at the certificate files every `poll`, and at once on SIGHUP; the metrics show when
/// each listener's certificate in use expires.
async fn watch_certificates(
    certs: Vec<(&'static str, Arc<ReloadingCert>)>,
    poll: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        for (listener, c) in &certs {
            if let Some(t) = c.not_after() {
                crate::telemetry::metrics::tls_expiry(listener, t);
            }
        }
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = hangup => tracing::info!("SIGHUP: certificates looked at again"),
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
        }
        for (_, c) in &certs {
            c.reload_if_changed();
        }
    }
}

/// The listeners `config` asks for: the three of `config.listeners`, or the single development
/// port, which must be a loopback address; a plain TSP listener must name the TSP it acts for.
fn listener_plan(config: &Config) -> Result<Vec<(Apis, ListenerConfig)>, StartError> {
    let plan: Vec<(Apis, ListenerConfig)> = match &config.listeners {
        Some(l) => vec![
            (Apis::Tsp, l.tsp.clone()),
            (Apis::Wallet, l.wallet.clone()),
            (Apis::Admin, l.admin.clone()),
        ],
        None => {
            if !config.listen.ip().is_loopback() {
                return Err(StartError::Config(format!(
                    "{} is not a loopback address: every API on one plain-HTTP port is for \
                     development only; configure the TSP, wallet and admin listeners",
                    config.listen
                )));
            }
            vec![(
                Apis::All,
                ListenerConfig {
                    addr: config.listen,
                    security: ListenerSecurity::Plain,
                },
            )]
        }
    };
    let tsp_plain = plan
        .iter()
        .any(|(a, l)| *a == Apis::Tsp && l.security == ListenerSecurity::Plain);
    if tsp_plain && config.tsp_plain_as.is_none() {
        return Err(StartError::Config(
            "a plain TSP listener must be told the TSP it acts for (TOKENHUB_TSP_PLAIN_AS)".into(),
        ));
    }
    Ok(plan)
}

/// Loads each listener's certificate and binds its address.
async fn bind(plan: Vec<(Apis, ListenerConfig)>) -> Result<Vec<Bound>, StartError> {
    let mut bound = Vec::new();
    for (apis, l) in plan {
        let cert = match &l.security {
            ListenerSecurity::Tls { cert, key } => Some(Arc::new(
                ReloadingCert::load(cert, key).map_err(|e| StartError::Config(e.to_string()))?,
            )),
            ListenerSecurity::Plain => None,
        };
        let listener = TcpListener::bind(l.addr)
            .await
            .map_err(|e| StartError::Listen(l.addr, e))?;
        bound.push(Bound {
            apis,
            listener,
            cert,
        });
    }
    Ok(bound)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
