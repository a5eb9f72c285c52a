//! Logging, and the metrics ([`metrics`]). Lines are structured (`tracing`); every request and
//! job runs inside a span that carries the ids it concerns (`http/request_log.rs`), so every line
//! it causes can be found by them. Set `RUST_LOG` to change the level and
//! `TOKENHUB_LOG_FORMAT=json` for JSON lines (with the current span).

use tracing_subscriber::EnvFilter;

pub mod metrics;

/// The filter when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,hyper=warn,tower_http=warn";

/// Keeps the log's writer thread; dropping it writes out what is still queued.
pub type LogGuard = tracing_appender::non_blocking::WorkerGuard;

/// Installs the global subscriber once, with `default_filter` unless `RUST_LOG` says otherwise;
/// later calls do nothing. Lines are written to standard error by a thread of their own (a
/// request does not wait for the write), never dropped: a full queue makes the logger wait. Keep
/// the guard until the process ends.
pub fn init(default_filter: &str) -> Option<LogGuard> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("TOKENHUB_LOG_FORMAT").is_ok_and(|v| v == "json");
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("tokenhub-log")
        .finish(std::io::stderr());
    // JSON lines carry the current span only: it holds the ids (`http/request_log.rs`, the
    // workers' spans).
    let installed = if json {
        json_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .try_init()
    };
    installed.is_ok().then_some(guard)
}

/// Installs aws-lc-rs as the process's rustls provider (both sqlx and reqwest use rustls; with
/// more than one provider compiled in, rustls needs to be told which). Safe to call repeatedly.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
