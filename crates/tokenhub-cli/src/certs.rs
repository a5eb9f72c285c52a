//! `tokenhub certs dev --out DIR`: a development CA and the certificates of the hub (server on
//! 127.0.0.1/localhost, and client to the TSPs), a TSP (client and server), a wallet provider
//! (client) and a token requestor (server and client). Never for production: the CA's key is
//! written beside them.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use std::path::Path;

#[derive(clap::Subcommand)]
pub enum CertsCommand {
    /// Write a development CA and certificates into a folder (keys mode 0600).
    Dev {
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Dev { out } => dev(&out),
    }
}

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

pub fn dev(out: &Path) -> anyhow::Result<()> {
    write_dev(out)?;
    print_dev(out);
    Ok(())
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

fn print_dev(out: &Path) {
    let d = out.display();
    println!("development certificates written to {d} (never use them in production):");
    println!("  ca.crt            the development CA (trust it in clients; ca.key signs more)");
    println!("  hub.crt/.key      the hub's listeners: TOKENHUB_TLS_CERT={d}/hub.crt TOKENHUB_TLS_KEY={d}/hub.key");
    println!("  hub-client.crt    the hub to the TSPs: TOKENHUB_CLIENT_CERT={d}/hub-client.crt TOKENHUB_CLIENT_KEY={d}/hub-client.key");
    println!("  tsp.crt/.key      the TSP (client to the hub's TSP listener, server of its own API): register it with");
    println!("                    \"clientCertificates\": {{\"caPem\": <ca.crt>, \"subject\": \"{TSP_SUBJECT}\"}}, \"serverCaPem\": <ca.crt>");
    println!("  wallet.crt/.key   a wallet provider's client certificate");
    println!("  requestor.crt/.key a token requestor's server certificate");
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_dev_certificates_chain_to_the_dev_ca_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        super::dev(dir.path()).unwrap();
        for f in ["ca", "hub", "hub-client", "tsp", "wallet", "requestor"] {
            let cert = std::fs::read_to_string(dir.path().join(format!("{f}.crt"))).unwrap();
            assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{f}");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(dir.path().join(format!("{f}.key")))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o077, 0, "{f}.key is private");
            }
        }
        let hub = std::fs::read(dir.path().join("hub.crt")).unwrap();
        let key = std::fs::read(dir.path().join("hub.key")).unwrap();
        tokenhub::tls::certified_key(&hub, &key).expect("the hub's pair loads as the hub loads it");
    }
}
