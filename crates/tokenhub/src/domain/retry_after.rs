//! `Retry-After` (RFC 9110, section 10.2.3) as the hub's outbound clients read it: a number of
//! seconds or an HTTP date, how long to wait before the next attempt.

use std::time::Duration;

/// The longest wait a `Retry-After` can ask for: a day (a larger value is read as this much).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The wait `value` asks for, at `now_ms` (Unix milliseconds, the clock the date is compared
/// with); `None` when it is neither form. A date in the past asks for no wait.
pub fn parse(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        Duration::from_millis((at.timestamp_millis() - now_ms).max(0) as u64)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2015-10-21T07:28:00Z in Unix milliseconds.
    const DATE_MS: i64 = 1_445_412_480_000;

    #[test]
    fn seconds_and_http_dates_are_read_and_capped() {
        assert_eq!(parse("7", 0), Some(Duration::from_secs(7)));
        assert_eq!(parse(" 0 ", 0), Some(Duration::ZERO));
        assert_eq!(parse("999999", 0), Some(MAX_RETRY_AFTER));
        let date = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(parse(date, DATE_MS - 90_000), Some(Duration::from_secs(90)));
        assert_eq!(parse(date, DATE_MS + 1), Some(Duration::ZERO));
        assert_eq!(parse(date, 0), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn anything_else_is_not_a_retry_after() {
        for v in ["soon", "", "-1", "1.5", "Wed, 21 Oct 2015"] {
            assert_eq!(parse(v, 0), None, "{v:?}");
        }
    }
}
