//! A development PKI for the simulators, the demo and the benches: a CA and the certificates of
//! the hub (server on 127.0.0.1/localhost, and client to the TSPs), a TSP (client and server), a
//! wallet provider (client) and a token requestor (server and client). Never for production: the
//! CA's key is written beside them.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use std::path::Path;

/// The subject the TSP's client certificate carries, as its registration names it.
pub const TSP_SUBJECT: &str = "CN=tsp-sim";

const LOCAL: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

fn write(dir: &Path, name: &str, text: &str, secret: bool) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(())
}

fn params(cn: &str, sans: &[&str]) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    Ok(p)
}

/// Writes the development CA and certificates into `out`.
pub fn write_dev(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let ca_key = KeyPair::generate()?;
    let mut ca = params("tokenhub development CA", &[])?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key)?;
    write(out, "ca.crt", &ca.pem(), false)?;
    write(out, "ca.key", &ca_key.serialize_pem(), true)?;
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let leaves: [(&str, &str, &[&str], Vec<ExtendedKeyUsagePurpose>); 5] = [
        ("hub", "tokenhub", &LOCAL, vec![ServerAuth]),
        ("hub-client", "tokenhub", &[], vec![ClientAuth]),
        ("tsp", "tsp-sim", &LOCAL, vec![ClientAuth, ServerAuth]),
        ("wallet", "wallet-provider", &[], vec![ClientAuth]),
        (
            "requestor",
            "requestor-sim",
            &LOCAL,
            vec![ServerAuth, ClientAuth],
        ),
    ];
    for (file, cn, sans, usages) in leaves {
        let key = KeyPair::generate()?;
        let mut p = params(cn, sans)?;
        p.extended_key_usages = usages;
        let cert = p.signed_by(&key, &ca, &ca_key)?;
        write(out, &format!("{file}.crt"), &cert.pem(), false)?;
        write(out, &format!("{file}.key"), &key.serialize_pem(), true)?;
    }
    Ok(())
}
