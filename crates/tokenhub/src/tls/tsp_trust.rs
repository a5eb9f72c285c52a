//! Which client certificates the TSP listener accepts, and which TSP presents each: a chain must
//! lead to a CA some registered TSP presents certificates from (checked in the handshake), and
//! its leaf must then match exactly one TSP's CA and identity (subject or public-key pin), or the
//! connection acts for no TSP.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};
use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};
use std::sync::{Arc, RwLock};

/// How a registered TSP's client certificates are recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TspIdentity {
    pub tsp_id: String,
    /// The CA certificates (PEM) the TSP's client certificates are issued from.
    pub ca_pem: String,
    /// The leaf's subject, e.g. `CN=tsp-a, O=Example` (compared with spaces after commas ignored).
    pub subject: Option<String>,
    /// SHA-256 of the leaf's SubjectPublicKeyInfo, lower-case hex; any one matches.
    pub spki_sha256: Vec<String>,
}

struct Known {
    tsp_id: String,
    verifier: Arc<dyn ClientCertVerifier>,
    subject: Option<String>,
    pins: Vec<String>,
}

#[derive(Default)]
struct State {
    /// Accepts a chain to any registered TSP's CA; `None` while no TSP has one.
    any: Option<Arc<dyn ClientCertVerifier>>,
    known: Vec<Known>,
}

/// The TSP listener's client verifier, rebuilt when the TSPs change.
#[derive(Default)]
pub struct TspTrust {
    state: RwLock<Arc<State>>,
}

impl std::fmt::Debug for TspTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TspTrust").finish_non_exhaustive()
    }
}

fn verifier(certs: Vec<CertificateDer<'static>>) -> Option<Arc<dyn ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    for c in certs {
        if roots.add(c).is_err() {
            return None;
        }
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), super::provider())
        .build()
        .ok()
}

/// `CN=a,O=b` and `CN=a, O=b` alike.
fn normalize_subject(s: &str) -> String {
    s.split(',').map(str::trim).collect::<Vec<_>>().join(",")
}

impl TspTrust {
    /// Trusts exactly these TSPs from now on (a TSP whose CA does not load is left out, logged).
    pub fn replace(&self, tsps: Vec<TspIdentity>) {
        let mut all = Vec::new();
        let mut known = Vec::new();
        for t in tsps {
            let Ok(certs) = super::parse_certificates(&t.ca_pem) else {
                tracing::error!(tsp_id = %t.tsp_id, "the TSP's client CA does not load; ignored");
                continue;
            };
            let Some(v) = verifier(certs.clone()) else {
                tracing::error!(tsp_id = %t.tsp_id, "the TSP's client CA is not a usable root");
                continue;
            };
            all.extend(certs);
            known.push(Known {
                tsp_id: t.tsp_id,
                verifier: v,
                subject: t.subject.as_deref().map(normalize_subject),
                pins: t
                    .spki_sha256
                    .iter()
                    .map(|p| p.to_ascii_lowercase())
                    .collect(),
            });
        }
        let any = if all.is_empty() { None } else { verifier(all) };
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(State { any, known });
    }

    fn current(&self) -> Arc<State> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The one TSP that presents this chain (leaf first), if exactly one does.
    pub fn identify(&self, chain: &[CertificateDer<'_>]) -> Option<String> {
        let (leaf, intermediates) = chain.split_first()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf).ok()?;
        let subject = normalize_subject(&parsed.subject().to_string());
        let pin = hex::encode(Sha256::digest(parsed.public_key().raw));
        let now = UnixTime::now();
        let state = self.current();
        let mut matching = state.known.iter().filter(|k| {
            let who = k.subject.as_ref().is_none_or(|s| *s == subject)
                && (k.pins.is_empty() || k.pins.contains(&pin))
                && (k.subject.is_some() || !k.pins.is_empty());
            who && k
                .verifier
                .verify_client_cert(leaf, intermediates, now)
                .is_ok()
        });
        let first = matching.next()?;
        if matching.next().is_some() {
            tracing::warn!("a client certificate matches more than one TSP; refused");
            return None;
        }
        Some(first.tsp_id.clone())
    }
}

impl ClientCertVerifier for TspTrust {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would borrow from a state that can be replaced; clients send their
        // certificate without them.
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match &self.current().any {
            Some(v) => v.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &super::provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &super::provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        super::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
