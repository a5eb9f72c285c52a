//! Talking to the hub's listeners below reqwest: raw TLS connections (with or without a client
//! certificate) to hold connections open, send bytes slowly, or see which certificate is served.

use super::{correlation_id, test_certs, Pem, TestApp, TspAnswer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The DER of a PEM certificate.
pub fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

fn connector(identity: Option<&Pem>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(test_certs().ca.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(id.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A TLS connection to `base` (`https://127.0.0.1:PORT`), handshake done.
pub async fn tls_connect(
    base: &str,
    identity: Option<&Pem>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let addr = base.trim_start_matches("https://");
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    connector(identity).connect(name, tcp).await
}

/// The certificate the listener at `base` serves to a new connection.
pub async fn served_certificate(base: &str) -> Vec<u8> {
    let tls = tls_connect(base, None).await.expect("a TLS connection");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// A reqwest client that trusts the test CA and presents `identity`; a fresh connection pool.
pub fn tsp_client(identity: Option<&Pem>) -> reqwest::Client {
    super::client_with(identity)
}

impl TestApp {
    /// A TSP API call through `client`, with a fresh correlation id and a JSON body.
    pub async fn tsp_call_with(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Result<TspAnswer> {
        let r = client
            .request(method, self.url(path))
            .header("x-correlation-id", correlation_id())
            .json(body)
            .send()
            .await?;
        Ok(TspAnswer::read(r).await)
    }
}
