//! The hub in a process of its own (this binary's hidden `serve`), so that its memory and CPU
//! are its own.

use anyhow::{bail, ensure, Context};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenhub::clock::SystemClock;
use tokenhub::config::{Config, ServeArgs};

pub(crate) struct HubProcess {
    pub(crate) child: Option<Child>,
    pub(crate) pid: u32,
}

impl HubProcess {
    pub(crate) fn spawn(
        exe: &Path,
        database_url: &str,
        port: u16,
        master_key: &str,
        admin_token: &str,
        log_filter: &str,
        log_path: &Path,
    ) -> anyhow::Result<Self> {
        Self::spawn_with(
            exe,
            database_url,
            port,
            (master_key, admin_token),
            log_filter,
            log_path,
            &[],
        )
    }

    /// [`Self::spawn`] with more environment (node id, lease, retry schedule); the log is
    /// appended to, so that a node restarted on the same file keeps its earlier lives' lines.
    pub(crate) fn spawn_with(
        exe: &Path,
        database_url: &str,
        port: u16,
        (master_key, admin_token): (&str, &str),
        log_filter: &str,
        log_path: &Path,
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let child = Command::new(exe)
            .arg("serve")
            .env("TOKENHUB_DATABASE_URL", database_url)
            .env("TOKENHUB_LISTEN", format!("127.0.0.1:{port}"))
            .env("TOKENHUB_MASTER_KEY", master_key)
            .env("TOKENHUB_ADMIN_TOKEN", admin_token)
            .env("TOKENHUB_ALLOW_PLAIN_HTTP_ENDPOINTS", "true")
            .env("RUST_LOG", log_filter)
            .env_remove("TOKENHUB_CONFIG")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} serve", exe.display()))?;
        let pid = child.id();
        Ok(Self {
            child: Some(child),
            pid,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) async fn wait_ready(&mut self, url: &str) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("the hub exited at start: {status}");
                }
            }
            let r = http
                .get(format!("{url}/trapi/v2.0/healthCheck"))
                .header("x-request-id", "bench")
                .send()
                .await;
            if matches!(r, Ok(ref r) if r.status() == 204) {
                return Ok(());
            }
            ensure!(Instant::now() < until, "the hub did not start within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process is still running (not exited, not killed).
    pub(crate) fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `SIGKILL` (what [`Child::kill`] sends on Unix), then reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The hidden `serve` subcommand: the hub as `tokenhub serve` runs it (configured by the same
/// flags and environment), until it is killed or asked to stop.
pub(crate) async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args)?;
    let app = tokenhub::Application::build_with_clock(config, Arc::new(SystemClock)).await?;
    tracing::info!(listen = %app.local_addr(), "tokenhub is serving");
    app.run().await.context("serving")
}
