//! Standard Webhooks signatures and the checks a receiver makes before trusting a request.
//!
//! A signature is `v1,` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")),
//! where the key is the base64-decoded part of the secret after its `whsec_` prefix. The
//! `webhook-signature` header is a space-separated list of such entries, one per secret the
//! sender signs with (several during a rotation).

use std::fmt;
use std::time::Duration;

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// `authorization`: `APIKEY <apiKey>`.
pub const AUTHORIZATION: &str = "authorization";
/// The delivery's id, the same on every retry of one update.
pub const WEBHOOK_ID: &str = "webhook-id";
/// The attempt's time, unix seconds.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// The space-separated `v1,<base64>` signatures.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// The hub's correlation id, for the logs.
pub const X_CORRELATION_ID: &str = "x-correlation-id";

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// How far `webhook-timestamp` may be from the receiver's clock, either way, by default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The longest `webhook-id` accepted.
const MAX_WEBHOOK_ID_LEN: usize = 256;
/// At most this many entries of `webhook-signature` are looked at.
const MAX_SIGNATURE_ENTRIES: usize = 32;

/// A secret that cannot be used. The message never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The part after `whsec_` is not base64.
    #[error("the signing secret is not base64 after its whsec_ prefix")]
    NotBase64,
    /// The secret decodes to no bytes.
    #[error("the signing secret is empty")]
    Empty,
    /// No secret at all was given.
    #[error("at least one signing secret is needed")]
    NoSecret,
}

fn parse_all<I, T>(secrets: I) -> Result<Vec<Secret>, SecretError>
where
    I: IntoIterator<Item = T>,
    T: AsRef<str>,
{
    let secrets = secrets
        .into_iter()
        .map(|s| Secret::parse(s.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    if secrets.is_empty() {
        return Err(SecretError::NoSecret);
    }
    Ok(secrets)
}

/// A signing secret, `whsec_<base64 key>` (a bare base64 key is taken as well). Its `Debug`
/// does not show the key.
#[derive(Clone)]
pub struct Secret {
    key: Vec<u8>,
}

impl Secret {
    /// Parses `whsec_<base64>` (or a bare base64 key).
    pub fn parse(secret: &str) -> Result<Self, SecretError> {
        let encoded = secret.trim();
        let encoded = encoded.strip_prefix(SECRET_PREFIX).unwrap_or(encoded);
        let key = BASE64.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self { key })
    }

    /// The raw HMAC of `{id}.{timestamp}.{body}`.
    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// The signature entry `v1,<base64>` of one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!(
            "v1,{}",
            BASE64.encode(self.mac(id, &timestamp.to_string(), body))
        )
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Signs one message with one secret: the `v1,<base64>` entry for `webhook-signature`.
///
/// ```
/// let signature = tokenhub_receiver::sign(
///     "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
///     "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
///     1674087231,
///     br#"{"type":"example","timestamp":"2023-01-19T00:00:00Z"}"#,
/// )
/// .unwrap();
/// assert_eq!(signature, "v1,2xzsMzAe4FdrykGtjKnnTR2vTId5l4T5aJ2PryHpAHc=");
/// ```
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SecretError> {
    Ok(Secret::parse(secret)?.sign(id, timestamp, body))
}

/// Signs with every active secret: what a sender puts in `webhook-signature`.
#[derive(Debug, Clone)]
pub struct Signer {
    secrets: Vec<Secret>,
}

impl Signer {
    /// A signer with these secrets (at least one), in this order.
    pub fn new<I, T>(secrets: I) -> Result<Self, SecretError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        Ok(Self {
            secrets: parse_all(secrets)?,
        })
    }

    /// The `webhook-signature` value: one `v1,<base64>` entry per secret, space-separated.
    pub fn signature_header(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        self.secrets
            .iter()
            .map(|s| s.sign(id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Why a request is not trusted. Messages name headers, never their values nor any secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No `authorization` header, or not `APIKEY <key>`.
    #[error("missing or malformed authorization header (expected APIKEY <key>)")]
    MissingApiKey,
    /// `authorization: APIKEY` with another key.
    #[error("wrong API key")]
    WrongApiKey,
    /// A header the request needs is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header is present but unusable (not text, not a number, too long).
    #[error("malformed header {0}")]
    MalformedHeader(&'static str),
    /// `webhook-timestamp` is further from now than the tolerance.
    #[error("webhook-timestamp outside the tolerance")]
    TimestampOutOfTolerance,
    /// No `v1` entry of `webhook-signature` matches any configured secret.
    #[error("no valid signature")]
    BadSignature,
}

impl VerifyError {
    /// Whether the request is malformed (400) rather than not authenticated (401): a missing
    /// or malformed `webhook-id` or `webhook-timestamp`.
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            VerifyError::MissingHeader(WEBHOOK_ID | WEBHOOK_TIMESTAMP)
                | VerifyError::MalformedHeader(WEBHOOK_ID | WEBHOOK_TIMESTAMP)
        )
    }
}

/// A request that passed [`Verifier::verify`]: its delivery id and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `webhook-id`.
    pub webhook_id: String,
    /// `webhook-timestamp`, unix seconds.
    pub timestamp: i64,
}

/// Checks the API key, the timestamp and the signatures of incoming requests.
///
/// Any of several secrets may have signed (a rotation: configure the new secret next to the old
/// one until the sender has switched). The comparisons of keys and signatures take constant time.
#[derive(Clone)]
pub struct Verifier {
    api_key: String,
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("api_key", &"..")
            .field("secrets", &self.secrets.len())
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

impl Verifier {
    /// A verifier expecting `authorization: APIKEY <api_key>` and a signature by any of
    /// `secrets` (at least one), with the default tolerance ([`DEFAULT_TOLERANCE`]).
    pub fn new<I, T>(api_key: impl Into<String>, secrets: I) -> Result<Self, SecretError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        Ok(Self {
            api_key: api_key.into(),
            secrets: parse_all(secrets)?,
            tolerance: DEFAULT_TOLERANCE,
        })
    }

    /// Accepts timestamps this far from now, either way.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The tolerance in force.
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// Checks a request against the clock: API key, then the presence of `webhook-id` and
    /// `webhook-timestamp`, the timestamp's tolerance, and the signature of `body`.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, VerifyError> {
        self.verify_at(headers, body, chrono::Utc::now().timestamp())
    }

    /// [`Verifier::verify`] with `now` (unix seconds) in place of the clock.
    pub fn verify_at(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, VerifyError> {
        self.check_api_key(headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()))?;

        let webhook_id = text_header(headers, WEBHOOK_ID)?;
        if webhook_id.is_empty() || webhook_id.len() > MAX_WEBHOOK_ID_LEN {
            return Err(VerifyError::MalformedHeader(WEBHOOK_ID));
        }
        let timestamp_text = text_header(headers, WEBHOOK_TIMESTAMP)?;
        let signatures = match headers.get(WEBHOOK_SIGNATURE) {
            None => return Err(VerifyError::MissingHeader(WEBHOOK_SIGNATURE)),
            Some(v) => v
                .to_str()
                .map_err(|_| VerifyError::MalformedHeader(WEBHOOK_SIGNATURE))?,
        };
        self.verify_signature_at(webhook_id, timestamp_text, body, signatures, now)
    }

    /// Checks `authorization` (`APIKEY <key>`, the scheme in any case) in constant time.
    pub fn check_api_key(&self, authorization: Option<&str>) -> Result<(), VerifyError> {
        let value = authorization.ok_or(VerifyError::MissingApiKey)?.trim();
        let (scheme, key) = value.split_once(' ').ok_or(VerifyError::MissingApiKey)?;
        if !scheme.eq_ignore_ascii_case("APIKEY") {
            return Err(VerifyError::MissingApiKey);
        }
        if bool::from(key.trim().as_bytes().ct_eq(self.api_key.as_bytes())) {
            Ok(())
        } else {
            Err(VerifyError::WrongApiKey)
        }
    }

    /// Checks the timestamp and the signatures alone, from the header values.
    pub fn verify_signature_at(
        &self,
        webhook_id: &str,
        webhook_timestamp: &str,
        body: &[u8],
        webhook_signature: &str,
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let timestamp: i64 = webhook_timestamp
            .trim()
            .parse()
            .map_err(|_| VerifyError::MalformedHeader(WEBHOOK_TIMESTAMP))?;
        if now.abs_diff(timestamp) > self.tolerance.as_secs() {
            return Err(VerifyError::TimestampOutOfTolerance);
        }

        let given: Vec<Vec<u8>> = webhook_signature
            .split_ascii_whitespace()
            .take(MAX_SIGNATURE_ENTRIES)
            .filter_map(|entry| entry.split_once(','))
            .filter(|(version, _)| *version == "v1")
            .filter_map(|(_, sig)| BASE64.decode(sig).ok())
            .collect();
        // The timestamp text is signed as sent, not as parsed.
        let timestamp_text = webhook_timestamp.trim();
        let mut valid = subtle::Choice::from(0u8);
        for secret in &self.secrets {
            let expected = secret.mac(webhook_id, timestamp_text, body);
            for sig in &given {
                valid |= expected.as_slice().ct_eq(sig.as_slice());
            }
        }
        if bool::from(valid) {
            Ok(Verified {
                webhook_id: webhook_id.to_string(),
                timestamp,
            })
        } else {
            Err(VerifyError::BadSignature)
        }
    }
}

fn text_header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, VerifyError> {
    headers
        .get(name)
        .ok_or(VerifyError::MissingHeader(name))?
        .to_str()
        .map(str::trim)
        .map_err(|_| VerifyError::MalformedHeader(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn a_secret_without_its_prefix_is_the_same_key() {
        let with = Secret::parse(SECRET).unwrap();
        let without = Secret::parse(SECRET.strip_prefix("whsec_").unwrap()).unwrap();
        assert_eq!(with.sign("a", 1, b"b"), without.sign("a", 1, b"b"));
    }

    #[test]
    fn bad_secrets_are_refused_without_showing_them() {
        let err = Secret::parse("whsec_not base64!").unwrap_err();
        assert_eq!(err, SecretError::NotBase64);
        assert!(!err.to_string().contains("not base64!"));
        assert_eq!(Secret::parse("whsec_").unwrap_err(), SecretError::Empty);
        assert_eq!(
            Verifier::new("k", Vec::<String>::new()).unwrap_err(),
            SecretError::NoSecret
        );
        assert_eq!(
            Signer::new(Vec::<String>::new()).unwrap_err(),
            SecretError::NoSecret
        );
        assert_eq!(
            format!("{:?}", Secret::parse(SECRET).unwrap()),
            "Secret(..)"
        );
    }

    #[test]
    fn the_api_key_scheme_is_checked() {
        let v = Verifier::new("k1", [SECRET]).unwrap();
        assert_eq!(v.check_api_key(Some("APIKEY k1")), Ok(()));
        assert_eq!(v.check_api_key(Some("apikey k1")), Ok(()));
        assert_eq!(
            v.check_api_key(Some("Bearer k1")),
            Err(VerifyError::MissingApiKey)
        );
        assert_eq!(
            v.check_api_key(Some("APIKEY")),
            Err(VerifyError::MissingApiKey)
        );
        assert_eq!(v.check_api_key(None), Err(VerifyError::MissingApiKey));
        assert_eq!(
            v.check_api_key(Some("APIKEY k2")),
            Err(VerifyError::WrongApiKey)
        );
        assert_eq!(
            v.check_api_key(Some("APIKEY k1x")),
            Err(VerifyError::WrongApiKey)
        );
        assert!(!format!("{v:?}").contains("k1"));
    }
}
