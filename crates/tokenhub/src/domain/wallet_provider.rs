//! Wallet providers, the callers of the wallet API: their record, their API keys' records, and how
//! a client certificate names one (the SHA-256 of its SubjectPublicKeyInfo, a pin that survives
//! the certificate's renewal under the same key).

use super::ids::Rejection;
use sha2::{Digest, Sha256};

/// A registered wallet provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletProvider {
    pub provider_id: String,
    pub name: String,
    /// Lower-case hex SPKI SHA-256 of the client certificate the provider may present instead of
    /// an API key.
    pub spki_sha256: Option<String>,
}

/// An API key's record: never its secret, which the store holds only hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderKey {
    pub key_id: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// `clientCertSpkiSha256`: 64 hex digits, kept in lower case.
pub fn parse_spki_pin(field: &str, s: &str) -> Result<String, Rejection> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(Rejection::format(format!(
            "{field} must be the 64 hex digits of a SHA-256"
        )))
    }
}

/// The pin of a DER certificate: lower-case hex SHA-256 of its SubjectPublicKeyInfo; `None` when
/// the bytes are not a certificate.
pub fn spki_pin(certificate_der: &[u8]) -> Option<String> {
    Some(hex::encode(Sha256::digest(spki(certificate_der)?)))
}

/// The DER of a certificate's SubjectPublicKeyInfo (RFC 5280: `Certificate ::= SEQUENCE {
/// tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer, validity,
/// subject, subjectPublicKeyInfo, … } … }`).
fn spki(der: &[u8]) -> Option<&[u8]> {
    let (cert, _) = tlv(der, 0x30)?;
    let (tbs, _) = tlv(cert.content, 0x30)?;
    let mut rest = tbs.content;
    if rest.first() == Some(&0xA0) {
        rest = tlv(rest, 0xA0)?.1;
    }
    for tag in [0x02, 0x30, 0x30, 0x30, 0x30] {
        rest = tlv(rest, tag)?.1;
    }
    Some(tlv(rest, 0x30)?.0.whole)
}

struct Tlv<'a> {
    whole: &'a [u8],
    content: &'a [u8],
}

/// One DER element of `tag` at the start of `input`, and what follows it.
fn tlv(input: &[u8], tag: u8) -> Option<(Tlv<'_>, &[u8])> {
    let (&t, after_tag) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut after_len) = after_tag.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || after_len.len() < n {
            return None;
        }
        let (bytes, rest) = after_len.split_at(n);
        after_len = rest;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let header = input.len() - after_len.len();
    let (content, rest) = after_len.split_at_checked(len)?;
    Some((
        Tlv {
            whole: &input[..header + len],
            content,
        },
        rest,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed P-256 certificate made with `openssl req -x509 -newkey ec`; its pin computed
    /// by `openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum`.
    const CERT_DER_HEX: &str = concat!(
        "3082019330820139a00302010202143cbfde9ee2d49dcdf60641177d51c566a5d24e48300a06082a8648ce3d",
        "040302301f311d301b06035504030c1477616c6c65742d70726f76696465722d74657374301e170d32363132",
        "30333038343632345a170d3336313133303038343632345a301f311d301b06035504030c1477616c6c65742d",
        "70726f76696465722d746573743059301306072a8648ce3d020106082a8648ce3d03010703420004a4664953",
        "51fa54cd59daa24a128bc26dbf66158b03f25ed8376c2338d1342b2b5b020b89acabeb87802e77b4e33088b5",
        "fbe58989a569c30d8f12847e5d83c9e0a3533051301d0603551d0e04160414be6efc73df8d8ab74ed14971a3",
        "c43767dfd05b25301f0603551d23041830168014be6efc73df8d8ab74ed14971a3c43767dfd05b25300f0603",
        "551d130101ff040530030101ff300a06082a8648ce3d04030203480030450221008b1ec84805937e5f7f73c8",
        "20c66669af0c69e95484d589601635418af399f57702206b668ff9d93ae707d6b6ace61c9efb67889e7293b7",
        "5972c812d39197b3e3be0e",
    );
    const CERT_PIN: &str = "2a923039eb85a019b14f3b70d70fa5c53b41f5fda1ce5bbba6bfe5830613b0ed";

    #[test]
    fn the_pin_of_a_certificate_is_the_sha256_of_its_spki() {
        let der = hex::decode(CERT_DER_HEX).unwrap();
        assert_eq!(spki_pin(&der).as_deref(), Some(CERT_PIN));
    }

    #[test]
    fn bytes_that_are_not_a_certificate_have_no_pin() {
        let der = hex::decode(CERT_DER_HEX).unwrap();
        assert_eq!(spki_pin(&der[..der.len() / 2]), None);
        assert_eq!(spki_pin(&[]), None);
        assert_eq!(spki_pin(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(spki_pin(b"not a certificate"), None);
    }

    #[test]
    fn a_pin_is_64_hex_digits_kept_in_lower_case() {
        assert_eq!(
            parse_spki_pin("p", &"AB".repeat(32)).unwrap(),
            "ab".repeat(32)
        );
        assert!(parse_spki_pin("p", &"ab".repeat(31)).is_err());
        assert!(parse_spki_pin("p", &"zz".repeat(32)).is_err());
    }
}
