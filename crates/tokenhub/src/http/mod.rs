//! The HTTP edge: one module per API (`tsp` for the TSP incoming API v2, `admin`, `wallet`), the
//! OpenAPI document, and [`Application`], which binds the listener and serves the router.

pub mod admin;
mod api_error;
pub mod lifecycle;
pub mod openapi;
pub mod tsp;
pub mod wallet;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::hub::{Hub, StartError, StartupNotes};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use api_error::ApiError;

/// Largest request body accepted (the TSP API's own limit, 200 elements of at most 100,000
/// characters in all, fits well within it). Larger bodies get `413`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub type AppState = Arc<Hub>;

/// Every route of the hub.
pub fn router(state: AppState) -> Router {
    Router::new()
        .nest("/trapi/v2.0", tsp::router())
        .nest("/admin/v1", admin::router(state.clone()))
        .nest("/wallet/v1", wallet::router())
        .merge(openapi::router())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(state)
}

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
