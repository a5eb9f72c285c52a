//! Peers of the hub served over TLS that require a client certificate of the test CA and record
//! the subject of the certificate each call came with: a TSP answering `createToken`, or any
//! fixed answer (a requestor).

use super::{test_certs, TSP_EXP, TSP_LAST4};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

pub struct TlsTsp {
    pub base_url: String,
    /// The client certificate's subject of each `createToken`.
    pub callers: Arc<Mutex<Vec<String>>>,
}

/// The hub's client certificate and key files (made once per process).
pub fn hub_client_files() -> (PathBuf, PathBuf) {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let c = &test_certs().hub_client;
        std::fs::write(dir.path().join("client.crt"), &c.cert).unwrap();
        std::fs::write(dir.path().join("client.key"), &c.key).unwrap();
        dir
    });
    (dir.path().join("client.crt"), dir.path().join("client.key"))
}

impl TlsTsp {
    pub async fn spawn() -> Self {
        let (addr, callers) = MutualTlsPeer::spawn(|| {
            let body = serde_json::json!({
                "tokenId": format!("TKN{}", uuid::Uuid::new_v4().simple()),
                "tokenInfo": {"exp": TSP_EXP, "last4": TSP_LAST4},
            });
            hyper::Response::builder()
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap()
        })
        .await;
        Self {
            base_url: format!("https://{addr}/tsp/trapi/v2.0"),
            callers,
        }
    }
}

/// A server over TLS (the test CA's `hub` certificate, for 127.0.0.1) that requires a client
/// certificate of the test CA, answers every request with `answer()` and records the subject of
/// the certificate each request came with.
pub struct MutualTlsPeer;

impl MutualTlsPeer {
    pub async fn spawn(
        answer: fn() -> hyper::Response<axum::body::Body>,
    ) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
        let certs = test_certs();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(certs.ca.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                CertificateDer::pem_slice_iter(certs.hub.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(certs.hub.key.as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let callers = Arc::new(Mutex::new(Vec::new()));
        let seen = callers.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let der = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
                    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
                    let subject = cert.subject().to_string();
                    let service = hyper::service::service_fn(move |_req| {
                        seen.lock().unwrap().push(subject.clone());
                        async move { Ok::<_, std::convert::Infallible>(answer()) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        (addr, callers)
    }
}
