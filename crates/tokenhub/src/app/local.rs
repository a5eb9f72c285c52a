//! A hub served inside the calling process on a loopback port, for the demo and the benches: the
//! same [`Application`] as `tokenhub serve`, with a handle to stop it and reach its state.

use super::Application;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::hub::{Hub, StartError};
use std::net::SocketAddr;
use std::sync::Arc;

pub struct LocalHub {
    pub hub: Arc<Hub>,
    /// The wallet API's address (on the development port, every API's).
    pub addr: SocketAddr,
    pub addresses: super::Addresses,
    /// Whether the listeners serve TLS (`https://`).
    pub tls: bool,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl LocalHub {
    /// Builds the hub from `config` (its database migrated, its workers started) and serves it.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let app = Application::build_with_clock(config, Arc::new(SystemClock)).await?;
        let addr = app.local_addr();
        let addresses = app.addresses();
        let tls = app.bound.iter().all(|b| b.cert.is_some());
        let hub = app.hub().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            hub,
            addr,
            addresses,
            tls,
            stop,
            server,
        })
    }

    /// The wallet API's base URL (on the development port, every API's).
    pub fn url(&self) -> String {
        self.url_of(self.addr)
    }

    pub fn tsp_url(&self) -> String {
        self.url_of(self.addresses.tsp)
    }

    pub fn admin_url(&self) -> String {
        self.url_of(self.addresses.admin)
    }

    fn url_of(&self, addr: SocketAddr) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{addr}")
    }

    /// Stops serving and the workers, and waits for them.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        self.server.await.map_err(std::io::Error::other)?
    }
}
