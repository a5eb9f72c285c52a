//! Serving with a listener that can really go away: `downForMs` closes the listening socket (new
//! connections are refused), lets the open connections finish their request and close, and binds
//! the same port again after the time. Over TLS when the simulator has a certificate.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

/// A request to go down for a while; `ack` fires once the listening socket is closed.
pub(crate) struct DownRequest {
    pub(crate) down_for: Duration,
    pub(crate) ack: oneshot::Sender<()>,
}

/// A TCP listener that reports when axum drops it, after the socket is closed.
struct ClosingListener {
    inner: Option<TcpListener>,
    closed: Option<oneshot::Sender<()>>,
}

impl axum::serve::Listener for ClosingListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.inner.as_mut() {
            Some(listener) => axum::serve::Listener::accept(listener).await,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        match &self.inner {
            Some(listener) => listener.local_addr(),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "closed")),
        }
    }
}

impl Drop for ClosingListener {
    fn drop(&mut self) {
        // Close the socket first, then tell: whoever hears it may connect and be refused.
        drop(self.inner.take());
        if let Some(closed) = self.closed.take() {
            let _ = closed.send(());
        }
    }
}

/// [`ClosingListener`] with a TLS handshake (within [`HANDSHAKE`]) on each connection.
struct TlsListener {
    inner: ClosingListener,
    acceptor: TlsAcceptor,
}

/// How long a client has to finish its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(5);

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, addr) = self.inner.accept().await;
            // The hub is the one client: handshakes one at a time are enough here.
            match tokio::time::timeout(HANDSHAKE, self.acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => return (tls, addr),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "requestor simulator: TLS handshake failed")
                }
                Err(_) => tracing::debug!("requestor simulator: TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// One `axum::serve` on one listener, stoppable.
struct Generation {
    stop: watch::Sender<bool>,
    closed: oneshot::Receiver<()>,
    task: JoinHandle<()>,
}

fn serve(listener: TcpListener, app: Router, tls: Option<TlsAcceptor>) -> Generation {
    let (stop, mut stopped) = watch::channel(false);
    let (closed_tx, closed) = oneshot::channel();
    let listener = ClosingListener {
        inner: Some(listener),
        closed: Some(closed_tx),
    };
    let stopping = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let task = tokio::spawn(async move {
        let result = match tls {
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopping)
                    .await
            }
            Some(acceptor) => {
                let listener = TlsListener {
                    inner: listener,
                    acceptor,
                };
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopping)
                    .await
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, "requestor simulator: server error");
        }
    });
    Generation { stop, closed, task }
}

/// Serves `app` on `listener` until `stop` turns true (or its sender is dropped), going down
/// and up again on request. `down` tells whether the listener is closed right now.
pub(crate) async fn supervise(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
    mut down_requests: mpsc::UnboundedReceiver<DownRequest>,
    down: Arc<AtomicBool>,
) {
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            tracing::error!(%error, "requestor simulator: no local address");
            return;
        }
    };
    let mut old: Vec<JoinHandle<()>> = Vec::new();
    let mut listener = listener;
    loop {
        let generation = serve(listener, app.clone(), tls.clone());
        let request = tokio::select! {
            _ = stop.wait_for(|s| *s) => None,
            request = down_requests.recv() => request,
        };
        generation.stop.send_replace(true);
        let Some(request) = request else {
            // Stopping (or nobody can ask for anything any more).
            old.push(generation.task);
            break;
        };
        let _ = generation.closed.await;
        down.store(true, Ordering::SeqCst);
        tracing::info!(%addr, down_for = ?request.down_for, "requestor simulator: down");
        let _ = request.ack.send(());
        old.push(generation.task);

        // Down: wait, extending for more requests, unless stopped.
        let mut until = Instant::now() + request.down_for;
        let stopped = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break false,
                _ = stop.wait_for(|s| *s) => break true,
                request = down_requests.recv() => match request {
                    Some(request) => {
                        until = until.max(Instant::now() + request.down_for);
                        let _ = request.ack.send(());
                    }
                    None => break true,
                },
            }
        };
        if stopped {
            break;
        }
        match rebind(addr, &mut stop).await {
            Some(again) => listener = again,
            None => break,
        }
        down.store(false, Ordering::SeqCst);
        tracing::info!(%addr, "requestor simulator: up again");
    }
    for task in old {
        let _ = task.await;
    }
}

/// Binds `addr` again, retrying while the port is still busy, until stopped.
async fn rebind(addr: SocketAddr, stop: &mut watch::Receiver<bool>) -> Option<TcpListener> {
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Some(listener),
            Err(error) => {
                tracing::warn!(%addr, %error, "requestor simulator: cannot listen again yet");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stop.wait_for(|s| *s) => return None,
                }
            }
        }
    }
}
