//! The simulated TSP over TLS: it presents its client certificate to the hub's TSP listener,
//! trusts the CA the hub's certificate is issued from, and serves its own API over TLS.

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The simulator's certificate and key (client to the hub, server of its own API), and the CA
/// it trusts for the hub's certificate, all PEM.
#[derive(Clone)]
pub struct SimTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for SimTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTls").finish_non_exhaustive()
    }
}

impl SimTls {
    /// `DIR/ca.crt`, `DIR/tsp.crt`, `DIR/tsp.key`, as `tokenhub certs dev` writes them.
    pub fn from_dir(dir: &std::path::Path) -> anyhow::Result<Self> {
        Self::from_dir_as(dir, "tsp")
    }

    /// `DIR/ca.crt`, `DIR/{name}.crt`, `DIR/{name}.key` (`requestor` for the requestor
    /// simulator).
    pub fn from_dir_as(dir: &std::path::Path, name: &str) -> anyhow::Result<Self> {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .with_context(|| format!("reading {}", dir.join(f).display()))
        };
        Ok(Self {
            ca_pem: read("ca.crt")?,
            cert_pem: read(&format!("{name}.crt"))?,
            key_pem: read(&format!("{name}.key"))?,
        })
    }

    /// A client builder that presents the certificate and trusts only the CA.
    pub(crate) fn client(
        &self,
        b: reqwest::ClientBuilder,
    ) -> anyhow::Result<reqwest::ClientBuilder> {
        let identity =
            reqwest::Identity::from_pem(format!("{}\n{}", self.cert_pem, self.key_pem).as_bytes())
                .context("the simulator's certificate and key")?;
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).context("the CA")?;
        Ok(b.identity(identity)
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca))
    }

    fn acceptor(&self) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
        self.server(false)
    }

    /// A server's TLS, asking every client for a certificate of the CA when `clients_of_the_ca`.
    pub(crate) fn server(
        &self,
        clients_of_the_ca: bool,
    ) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
        let certs = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("the simulator's certificate")?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).context("the key")?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = if clients_of_the_ca {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
                roots.add(ca.context("the CA")?)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

/// Serves `app` over TLS on `listener` until `stop` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: &SimTls,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let acceptor = tls.acceptor().map_err(std::io::Error::other)?;
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => a?,
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp))
                    .await
            else {
                return;
            };
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    tower::ServiceExt::oneshot(app.clone(), req)
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}
