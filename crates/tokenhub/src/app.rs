//! The running hub: [`Application`] opens the store and keys, binds the listener, serves the HTTP
//! router and runs the background workers until it is told to stop.

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::http::{router, AppState};
use crate::hub::{Hub, StartError, StartupNotes};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

mod local;
pub use local::LocalHub;

/// The hub, bound to its listener and ready to serve.
pub struct Application {
    listener: TcpListener,
    hub: AppState,
    notes: StartupNotes,
}

impl Application {
    /// Opens the store and keys and binds `config.listen` (port 0 picks a free port).
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        crate::telemetry::install_crypto_provider();
        let listen = config.listen;
        let (hub, notes) = Hub::open(config, clock).await?;
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
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| StartError::Listen(listen, e))?;
        Ok(Self {
            listener,
            hub: Arc::new(hub),
            notes,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
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
        let app = router(self.hub.clone());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut workers = crate::workers::spawn(self.hub.clone(), stopped);
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        stop.send_replace(true);
        while workers.join_next().await.is_some() {}
        served
    }

    /// Serves until the process is asked to stop (Ctrl-C or SIGTERM).
    pub async fn run(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }
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
