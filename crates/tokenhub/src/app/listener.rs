//! One listener: accepts connections up to its cap (those above it are closed at once), runs the
//! TLS handshake within its timeout, identifies the TSP on the TSP listener, and serves HTTP/1.1
//! with a header-read timeout that also closes idle keep-alive connections.

use crate::config::ServerLimits;
use crate::http::{Apis, TspCaller};
use crate::tls::TspTrust;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

/// How long connections in progress are given to finish after the hub is told to stop.
const DRAIN: Duration = Duration::from_secs(10);

/// Everything a listener's connections share.
pub(super) struct Served {
    pub apis: Apis,
    pub router: Router,
    pub tls: Option<TlsAcceptor>,
    pub limits: ServerLimits,
    pub trust: Arc<TspTrust>,
    /// Who the TSP caller is on a connection without a client certificate to tell.
    pub plain_caller: TspCaller,
}

/// Accepts until `stop` turns true, then lets the connections finish (at most [`DRAIN`]).
pub(super) async fn serve(
    listener: TcpListener,
    served: Arc<Served>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let max = served.limits.max_connections;
    let open = Arc::new(Semaphore::new(max));
    // The TSP listener's handshakes are its registered TSPs' and are never paced.
    let pace = (served.tls.is_some() && served.apis != Apis::Tsp)
        .then(|| Duration::from_secs(1) / served.limits.handshakes_per_second.max(1));
    let mut next_handshake = tokio::time::Instant::now();
    loop {
        if let Some(gap) = pace {
            // Waiting here leaves the next connections in the kernel's backlog, where they cost
            // nothing.
            tokio::select! {
                _ = tokio::time::sleep_until(next_handshake) => {}
                _ = stopping(&mut stop) => break,
            }
            next_handshake = next_handshake.max(tokio::time::Instant::now() - gap * 8) + gap;
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopping(&mut stop) => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of descriptors or the like: wait rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::debug!("over the connection cap; closed");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let served = served.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            connection(tcp, &served, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, open.acquire_many(max as u32)).await;
    Ok(())
}

async fn connection(tcp: tokio::net::TcpStream, served: &Served, stop: watch::Receiver<bool>) {
    let Some(acceptor) = &served.tls else {
        return http(tcp, served, served.plain_caller.clone(), stop).await;
    };
    let tls =
        match tokio::time::timeout(served.limits.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return;
            }
        };
    let caller = match served.apis {
        Apis::Tsp | Apis::All => {
            let id = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| served.trust.identify(chain));
            match id {
                Some(id) => TspCaller::Tsp(id),
                None if served.apis == Apis::Tsp => {
                    tracing::warn!("a client certificate that is no registered TSP's; refused");
                    TspCaller::Unknown
                }
                None => served.plain_caller.clone(),
            }
        }
        _ => TspCaller::Unknown,
    };
    http(tls, served, caller, stop).await
}

async fn http<I>(io: I, served: &Served, caller: TspCaller, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = served.router.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(caller.clone());
            tower::ServiceExt::oneshot(router.clone(), req)
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(served.limits.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended");
            }
        }
        _ = stopping(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Completes once the hub is told to stop (no guard held across an await).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
