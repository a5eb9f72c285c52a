//! The exit codes of `tokenhub`, in one place, so a script can tell what went wrong: the hub's
//! refusals become [`CliError`]s where they are met, and [`report`] prints the cause to stderr
//! (the API's error code and message; never a key nor a value) and picks the code.

use std::process::ExitCode;

/// Done.
pub const OK: u8 = 0;
/// Any other failure: a file that cannot be read, the store, a broken audit chain.
pub const OTHER: u8 = 1;
/// The command line is wrong (clap's own code, also for a missing admin key).
pub const USAGE: u8 = 2;
/// The hub has no such object (HTTP 404).
pub const NOT_FOUND: u8 = 3;
/// The hub refused the request: invalid, a conflict, a TSP's refusal (HTTP 400, 409, 422 and
/// every other 4xx below).
pub const REFUSED: u8 = 4;
/// The admin key is missing, wrong or revoked (401), or its role does not allow this (403).
pub const UNAUTHORIZED: u8 = 5;
/// The hub cannot be reached, failed (5xx), is overloaded (429), or reports itself unhealthy:
/// worth trying again later.
pub const UNAVAILABLE: u8 = 6;

/// The text of `--help` that lists the codes.
pub const HELP: &str = "\
Exit codes:
  0  done
  1  any other failure (a file, the store, a broken audit chain)
  2  usage: the command line is wrong, or no admin key was given
  3  not found (HTTP 404)
  4  refused by the hub: invalid, a conflict, a TSP's refusal (400, 409, 422, other 4xx)
  5  unauthorized (401: no, a wrong or a revoked admin key) or forbidden (403: the key's role)
  6  the hub is unreachable, failing (5xx), overloaded (429) or unhealthy: try again later";

/// A failure whose exit code is not [`OTHER`].
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The hub answered with an error status.
    #[error("{code} (HTTP {status}): {message}{}", tsp_code.map(|c| format!(" (TSP response code {c})")).unwrap_or_default())]
    Api {
        status: u16,
        /// The API's machine code (`NOT_FOUND`, `CONFLICT`…), or `HTTP_<status>` when the answer
        /// carried none.
        code: String,
        message: String,
        tsp_code: Option<u32>,
    },
    /// No answer: refused connection, TLS, timeout.
    #[error("the hub at {url} cannot be reached: {cause}")]
    Unreachable { url: String, cause: String },
    /// No such object where the command looked itself (the store).
    #[error("{0}")]
    NotFound(String),
    /// Refused where the command decided itself (a key import with a refused key).
    #[error("{0}")]
    Refused(String),
    /// The hub answered but says a part of it is down.
    #[error("the hub is not healthy: {0}")]
    Unhealthy(String),
    /// A usage error found after parsing (e.g. no admin key).
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    pub fn code(&self) -> u8 {
        match self {
            CliError::Api { status, .. } => for_status(*status),
            CliError::Unreachable { .. } | CliError::Unhealthy(_) => UNAVAILABLE,
            CliError::Usage(_) => USAGE,
            CliError::NotFound(_) => NOT_FOUND,
            CliError::Refused(_) => REFUSED,
        }
    }
}

/// The exit code of an error status of the hub.
pub fn for_status(status: u16) -> u8 {
    match status {
        401 | 403 => UNAUTHORIZED,
        404 => NOT_FOUND,
        429 => UNAVAILABLE,
        400..=499 => REFUSED,
        500..=599 => UNAVAILABLE,
        _ => OTHER,
    }
}

/// Prints what failed to stderr and gives the exit code.
pub fn report(e: &anyhow::Error) -> ExitCode {
    let code = e
        .chain()
        .find_map(|c| c.downcast_ref::<CliError>())
        .map_or(OTHER, CliError::code);
    eprintln!("tokenhub: {e:#}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_has_its_code() {
        for (status, code) in [
            (400, REFUSED),
            (401, UNAUTHORIZED),
            (403, UNAUTHORIZED),
            (404, NOT_FOUND),
            (405, REFUSED),
            (409, REFUSED),
            (422, REFUSED),
            (429, UNAVAILABLE),
            (500, UNAVAILABLE),
            (503, UNAVAILABLE),
            (302, OTHER),
        ] {
            assert_eq!(for_status(status), code, "{status}");
        }
    }

    #[test]
    fn the_code_is_found_under_context() {
        let e = anyhow::Error::new(CliError::Api {
            status: 404,
            code: "NOT_FOUND".into(),
            message: "no token T".into(),
            tsp_code: None,
        })
        .context("reading the token");
        let found = e.chain().find_map(|c| c.downcast_ref::<CliError>());
        assert_eq!(found.map(CliError::code), Some(NOT_FOUND));
        assert_eq!(
            e.root_cause().to_string(),
            "NOT_FOUND (HTTP 404): no token T"
        );
    }
}
