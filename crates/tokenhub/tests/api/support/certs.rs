//! The certificates of the tests, made once per process with rcgen: a test CA, the hub's server
//! certificate (127.0.0.1, localhost), the TSP under test's client certificate, a second TSP's,
//! and a certificate with the TSP's subject from a CA nobody registered.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use std::sync::OnceLock;

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl Pem {
    /// Certificate then key, as `reqwest::Identity::from_pem` reads them.
    pub fn identity(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(format!("{}{}", self.cert, self.key).as_bytes()).unwrap()
    }
}

pub struct TestCerts {
    /// The test CA (PEM): the hub's server certificates and the TSPs' client certificates.
    pub ca: String,
    /// The hub's server certificate and a second one (a rotation).
    pub hub: Pem,
    pub hub_rotated: Pem,
    /// The TSP under test's client certificate (`CN=tsp-under-test`).
    pub tsp: Pem,
    /// Another TSP's client certificate (`CN=tsp-b`), from the same CA.
    pub tsp_b: Pem,
    /// `CN=tsp-under-test`, from a CA nobody registered.
    pub rogue: Pem,
    /// The CA nobody registered.
    pub rogue_ca: String,
    /// The hub's client certificate for its calls to the TSPs (`CN=hub-client`).
    pub hub_client: Pem,
}

pub const TSP_SUBJECT: &str = "CN=tsp-under-test";
pub const TSP_B_SUBJECT: &str = "CN=tsp-b";

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

fn leaf(ca: &Ca, cn: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> Pem {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![usage];
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

pub fn test_certs() -> &'static TestCerts {
    static CERTS: OnceLock<TestCerts> = OnceLock::new();
    CERTS.get_or_init(|| {
        let test_ca = ca("tokenhub test CA");
        let rogue_ca = ca("a CA nobody registered");
        let server = ExtendedKeyUsagePurpose::ServerAuth;
        let client = ExtendedKeyUsagePurpose::ClientAuth;
        TestCerts {
            ca: test_ca.cert.pem(),
            hub: leaf(&test_ca, "hub", &["127.0.0.1", "localhost"], server.clone()),
            hub_rotated: leaf(&test_ca, "hub rotated", &["127.0.0.1", "localhost"], server),
            tsp: leaf(&test_ca, "tsp-under-test", &[], client.clone()),
            hub_client: leaf(&test_ca, "hub-client", &[], client.clone()),
            tsp_b: leaf(&test_ca, "tsp-b", &[], client.clone()),
            rogue: leaf(&rogue_ca, "tsp-under-test", &[], client),
            rogue_ca: rogue_ca.cert.pem(),
        }
    })
}

/// A client builder that trusts the test CA only.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(test_certs().ca.as_bytes()).unwrap())
}

/// A client that trusts the test CA only and presents `identity` when asked.
pub fn client_with(identity: Option<&Pem>) -> reqwest::Client {
    let mut b = client_builder();
    if let Some(id) = identity {
        b = b.identity(id.identity());
    }
    b.build().unwrap()
}
