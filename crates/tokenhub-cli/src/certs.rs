//! `tokenhub certs dev --out DIR`: a development CA and the certificates of the hub (server on
//! 127.0.0.1/localhost, and client to the TSPs), a TSP (client and server), a wallet provider
//! (client) and a token requestor (server and client). Never for production: the CA's key is
//! written beside them.

use std::path::Path;
pub use tokenhub_sim::certs::{write_dev, TSP_SUBJECT};

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

pub fn dev(out: &Path) -> anyhow::Result<()> {
    write_dev(out)?;
    print_dev(out);
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
