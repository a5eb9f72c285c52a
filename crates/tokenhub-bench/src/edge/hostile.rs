//! Hostile clients on another listener while the TSP's `/data` is measured: connections that
//! finish their TLS handshake and then say nothing (idle), and connections that finish it and then
//! send a request's headers one byte a second (slowloris). A connection the hub closes is opened
//! again at once, so the pressure holds for the whole phase; the report says how many the hub
//! closed.

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// What the hostile clients saw.
#[derive(Default)]
pub(crate) struct Pressure {
    /// Connections open now.
    pub(crate) open: AtomicU64,
    /// Connections the hub closed (or refused) that were opened again.
    pub(crate) closed: AtomicU64,
}

/// The hostile clients, on a runtime of their own so that they do not queue behind the load.
pub(crate) struct Hostile {
    pub(crate) pressure: Arc<Pressure>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// The headers a slowloris client never finishes.
const SLOW_REQUEST: &[u8] = b"GET /wallet/v1/devices/slow/personalizations HTTP/1.1\r\n\
Host: 127.0.0.1\r\nUser-Agent: slowloris\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";

impl Hostile {
    /// Opens `idle` idle and `slow` slowloris TLS connections to `addr` (its certificate from the
    /// development CA in `certs`) and keeps them open, from a thread of niceness `nice`.
    pub(crate) fn start(
        addr: SocketAddr,
        idle: usize,
        slow: usize,
        nice: i32,
        certs: &Path,
    ) -> anyhow::Result<Self> {
        let connector = connector(certs)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("hostile")
            .on_thread_start(move || lower_priority(nice))
            .enable_all()
            .build()?;
        let pressure = Arc::new(Pressure::default());
        for _ in 0..idle {
            runtime.spawn(hold(addr, connector.clone(), pressure.clone(), false));
        }
        for _ in 0..slow {
            runtime.spawn(hold(addr, connector.clone(), pressure.clone(), true));
        }
        Ok(Self {
            pressure,
            runtime: Some(runtime),
        })
    }

    /// Waits until `want` connections are open (or 10 s have passed).
    pub(crate) async fn settle(&self, want: u64) -> u64 {
        for _ in 0..100 {
            if self.pressure.open.load(Ordering::Relaxed) >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.pressure.open.load(Ordering::Relaxed)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Gives the calling thread niceness `nice`: in the field the attackers' TLS work runs on their
/// own machines; here it shares the hub's cores, and a niced thread keeps it from counting as the
/// hub's.
fn lower_priority(nice: i32) {
    let tid = rustix::thread::gettid();
    if rustix::process::setpriority_process(Some(tid), nice).is_err() {
        tracing::warn!(nice, "the hostile clients' thread could not be niced");
    }
}

/// A TLS client that trusts the development CA.
fn connector(certs: &Path) -> anyhow::Result<TlsConnector> {
    let pem = std::fs::read(certs.join("ca.crt")).context("the development CA")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// One hostile connection, opened again whenever the hub closes it.
async fn hold(addr: SocketAddr, connector: TlsConnector, pressure: Arc<Pressure>, slow: bool) {
    let name = ServerName::IpAddress(addr.ip().into());
    loop {
        let tls = match TcpStream::connect(addr).await {
            Ok(tcp) => connector.connect(name.clone(), tcp).await.ok(),
            Err(_) => None,
        };
        let Some(mut stream) = tls else {
            pressure.closed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        pressure.open.fetch_add(1, Ordering::Relaxed);
        if slow {
            for byte in SLOW_REQUEST.iter().cycle() {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        } else {
            // Idle: wait for the hub to close the connection.
            let mut buf = [0u8; 256];
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        }
        pressure.open.fetch_sub(1, Ordering::Relaxed);
        pressure.closed.fetch_add(1, Ordering::Relaxed);
    }
}
