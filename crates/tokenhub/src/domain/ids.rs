//! Identifiers and the TSP API's response codes. Parse, don't validate: every identifier that comes
//! from outside is turned into a newtype by a `parse` that fails with the exact code the TSP API
//! contract gives for that fault.

use std::fmt;

/// The `responseCode` values of the TSP API (`errorRes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 111: a mandatory field or header is missing.
    Missing,
    /// 112: a field breaks its format.
    Format,
    /// 113: unknown issuer, or not the token's issuer.
    UnknownIssuer,
    /// 119: no such token.
    UnknownToken,
    /// 321: another operation on this token is still under way.
    Ongoing,
    /// 322: the operation's time to live expired.
    Expired,
    /// 431: invalid perso data.
    InvalidPersoData,
    /// 432: the token's state does not allow the operation.
    StateForbids,
    /// 911: the operation failed for a reason the hub understands.
    Failed,
    /// 921: unexpected server error (retryable).
    Unexpected,
}

impl Code {
    pub fn number(self) -> u16 {
        match self {
            Code::Missing => 111,
            Code::Format => 112,
            Code::UnknownIssuer => 113,
            Code::UnknownToken => 119,
            Code::Ongoing => 321,
            Code::Expired => 322,
            Code::InvalidPersoData => 431,
            Code::StateForbids => 432,
            Code::Failed => 911,
            Code::Unexpected => 921,
        }
    }
}

/// A refusal with its contract code and a message for the caller. Messages name fields and rules,
/// never values: a value may be a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: Code,
    pub message: String,
}

impl Rejection {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn missing(field: &str) -> Self {
        Self::new(Code::Missing, format!("{field} is missing"))
    }
    pub fn format(message: impl Into<String>) -> Self {
        Self::new(Code::Format, message)
    }
    pub fn perso(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidPersoData, message)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code.number(), self.message)
    }
}

impl std::error::Error for Rejection {}

fn char_len_between(s: &str, min: usize, max: usize) -> bool {
    let n = s.chars().count();
    n >= min && n <= max
}

/// The TSP's reference of a token: 1..48 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(String);

impl TokenId {
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        if s.is_empty() {
            return Err(Rejection::missing("tokenId"));
        }
        if !char_len_between(s, 1, 48) || s.chars().any(char::is_control) {
            return Err(Rejection::format("tokenId must be 1 to 48 characters"));
        }
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The issuer of the funding card: exactly 10 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IssuerId(String);

impl IssuerId {
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        if s.chars().count() != 10 || s.chars().any(char::is_control) {
            return Err(Rejection::format("issuerId must be exactly 10 characters"));
        }
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IssuerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `x-correlation-id` (or `x-request-id`): 1..64 visible ASCII characters, set by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CorrelationId(String);

impl CorrelationId {
    /// `header` is the header's name, for the message.
    pub fn parse(header: &str, value: Option<&[u8]>) -> Result<Self, Rejection> {
        let Some(raw) = value else {
            return Err(Rejection::missing(&format!("header {header}")));
        };
        let Ok(s) = std::str::from_utf8(raw) else {
            return Err(Rejection::format(format!(
                "header {header} must be visible ASCII"
            )));
        };
        if s.is_empty() || s.len() > 64 {
            return Err(Rejection::format(format!(
                "header {header} must be 1 to 64 characters"
            )));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(Rejection::format(format!(
                "header {header} must be visible ASCII"
            )));
        }
        Ok(Self(s.to_string()))
    }
    /// A fresh id for an operation the hub starts itself.
    pub fn from_uuid(id: uuid::Uuid) -> Self {
        Self(id.to_string())
    }
    /// The id of an operation a caller may send again: `prefix` (a few letters and a dash) and
    /// the first 20 bytes of `digest`, in hex; the same digest, the same id.
    pub fn keyed(prefix: &'static str, digest: &[u8]) -> Self {
        let n = digest.len().min(20);
        Self(format!("{prefix}{}", hex::encode(&digest[..n])))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Token expiry or card expiry as `MMYY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mmyy(String);

impl Mmyy {
    pub fn parse(field: &str, s: &str) -> Result<Self, Rejection> {
        let ok = s.len() == 4
            && s.bytes().all(|b| b.is_ascii_digit())
            && matches!(s[..2].parse::<u8>(), Ok(1..=12));
        if !ok {
            return Err(Rejection::format(format!("{field} must be MMYY")));
        }
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Last digits of the token PAN shown in the wallet: 2..10 digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastDigits(String);

impl LastDigits {
    pub fn parse(field: &str, s: &str, min: usize, max: usize) -> Result<Self, Rejection> {
        if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Rejection::format(format!(
                "{field} must be {min} to {max} digits"
            )));
        }
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name given by an operator to a TSP connection, an issuer's product, a device and the like:
/// 1..64 characters from `[A-Za-z0-9._-]`, so it is safe in paths and logs.
pub fn parse_slug(field: &str, s: &str) -> Result<String, Rejection> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(s.to_string())
    } else {
        Err(Rejection::format(format!(
            "{field} must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn token_id_bounds() {
        assert_eq!(TokenId::parse("").unwrap_err().code, Code::Missing);
        assert!(TokenId::parse(&"a".repeat(48)).is_ok());
        assert_eq!(
            TokenId::parse(&"a".repeat(49)).unwrap_err().code,
            Code::Format
        );
        assert!(
            TokenId::parse(&"é".repeat(48)).is_ok(),
            "characters, not bytes"
        );
    }

    #[test]
    fn issuer_id_is_exactly_ten_characters() {
        assert!(IssuerId::parse("ISSUER0001").is_ok());
        assert_eq!(IssuerId::parse("ISSUER001").unwrap_err().code, Code::Format);
        assert_eq!(
            IssuerId::parse("ISSUER00001").unwrap_err().code,
            Code::Format
        );
    }

    #[test]
    fn correlation_id_header_rules() {
        assert_eq!(
            CorrelationId::parse("x", None).unwrap_err().code,
            Code::Missing
        );
        assert_eq!(
            CorrelationId::parse("x", Some(b"")).unwrap_err().code,
            Code::Format
        );
        assert!(CorrelationId::parse("x", Some(&[b'a'; 64])).is_ok());
        assert_eq!(
            CorrelationId::parse("x", Some(&[b'a'; 65]))
                .unwrap_err()
                .code,
            Code::Format
        );
    }

    #[test]
    fn mmyy_rules() {
        assert!(Mmyy::parse("exp", "1229").is_ok());
        for bad in ["1329", "0029", "12/9", "122", "12290"] {
            assert_eq!(
                Mmyy::parse("exp", bad).unwrap_err().code,
                Code::Format,
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn token_id_accepts_exactly_1_to_48_characters(s in "\\PC{0,60}") {
            let n = s.chars().count();
            match TokenId::parse(&s) {
                Ok(t) => { prop_assert!((1..=48).contains(&n)); prop_assert_eq!(t.as_str(), s.as_str()); }
                Err(r) => prop_assert!(n == 0 || n > 48 || s.chars().any(char::is_control), "{:?}", r),
            }
        }

        #[test]
        fn issuer_id_accepts_exactly_10_characters(s in "\\PC{0,20}") {
            prop_assert_eq!(IssuerId::parse(&s).is_ok(), s.chars().count() == 10);
        }

        #[test]
        fn last_digits_accept_2_to_10_digits(s in "[0-9a]{0,12}") {
            let ok = (2..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
            prop_assert_eq!(LastDigits::parse("last4", &s, 2, 10).is_ok(), ok);
        }
    }
}
