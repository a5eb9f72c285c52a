//! A hub served in this process on a loopback port, for the demo and the benches.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use tokenhub::clock::SystemClock;
use tokenhub::config::Config;
use tokenhub::Hub;

pub(crate) struct LocalHub {
    pub hub: Arc<Hub>,
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl LocalHub {
    /// Builds the hub from `config` (its database migrated, its workers started) and serves it.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let app = tokenhub::Application::build_with_clock(config, Arc::new(SystemClock))
            .await
            .context("starting the hub")?;
        let addr = app.local_addr();
        let hub = app.hub().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            hub,
            addr,
            stop,
            server,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and the workers, and waits for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.server.await??;
        Ok(())
    }
}
