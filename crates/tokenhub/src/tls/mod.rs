//! TLS of the listeners and of the calls to the TSPs: certificates from PEM files that are
//! reloaded when they change (connections in flight keep theirs), TLS 1.2 and 1.3 only on
//! aws-lc-rs, and the TSPs' trust ([`TspTrust`]): which client certificates the TSP listener
//! accepts and which TSP each one is.

mod tsp_trust;

pub use tsp_trust::{TspIdentity, TspTrust};

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}: {1}")]
    Invalid(String, String),
}

/// aws-lc-rs, built once.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// The certificates of a PEM text, at least one, each a parseable X.509 certificate.
pub fn parse_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "not a PEM certificate list".to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate".into());
    }
    for c in &certs {
        x509_parser::parse_x509_certificate(c)
            .map_err(|_| "not an X.509 certificate".to_string())?;
    }
    Ok(certs)
}

/// A certificate chain and its private key from PEM texts.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "the certificate file is not PEM".to_string())?;
    if certs.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|_| "the key file holds no PEM private key".to_string())?;
    let key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("the private key cannot be used: {e}"))?;
    let ck = CertifiedKey::new(certs, key);
    ck.keys_match()
        .map_err(|_| "the private key is not the certificate's".to_string())?;
    Ok(ck)
}

/// A listener's certificate, read from its files and read again when they change: each new
/// handshake takes the current one.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' bytes as last loaded, to tell a change without trusting mtimes.
    loaded: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl ReloadingCert {
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let (cert, key) = read_pair(cert_path, key_path)?;
        let ck = certified_key(&cert, &key)
            .map_err(|e| TlsError::Invalid(cert_path.display().to_string(), e))?;
        Ok(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(Arc::new(ck)),
            loaded: Mutex::new((cert, key)),
        })
    }

    /// When the certificate in use (the chain's first) expires, in Unix seconds.
    pub fn not_after(&self) -> Option<i64> {
        let current = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let leaf = current.cert.first()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf).ok()?;
        Some(parsed.validity().not_after.timestamp())
    }

    /// Loads the files again if they changed; a pair that does not load is logged and the
    /// certificate in use kept. Returns whether a new certificate is in use.
    pub fn reload_if_changed(&self) -> bool {
        let (cert, key) = match read_pair(&self.cert_path, &self.key_path) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "certificate files unreadable; the current one is kept");
                return false;
            }
        };
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.0 == cert && loaded.1 == key {
            return false;
        }
        match certified_key(&cert, &key) {
            Ok(ck) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ck);
                *loaded = (cert, key);
                tracing::info!(cert = %self.cert_path.display(), "certificate reloaded");
                true
            }
            // A rotation writes two files: the pair may be caught half-written; the next look
            // sees it whole.
            Err(e) => {
                tracing::warn!(cert = %self.cert_path.display(), error = %e,
                    "new certificate files do not load; the current one is kept");
                false
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let c = std::fs::read(cert).map_err(|e| TlsError::Read(cert.display().to_string(), e))?;
    let k = std::fs::read(key).map_err(|e| TlsError::Read(key.display().to_string(), e))?;
    Ok((c, k))
}

/// A listener's TLS configuration: TLS 1.3 and 1.2, HTTP/1.1, the reloading certificate, and
/// client certificates required and checked by `clients` when given.
pub fn server_config(
    cert: Arc<ReloadingCert>,
    clients: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<ServerConfig, rustls::Error> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match clients {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
