//! How long the hub keeps what it no longer needs, and how often the shred sweep looks: flags,
//! `TOKENHUB_RETENTION_*` and the file's `[retention]` table, over the defaults.

use serde::Deserialize;
use std::time::Duration;

/// What the shred sweep deletes, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Between two sweeps (1 min). Data whose time to live ran out is deleted (and its key
    /// destroyed) at the next sweep.
    pub sweep_interval: Duration,
    /// How long a `DELETED` token's records (state, events, fingerprints, call records) stay
    /// before they are purged and its id becomes unknown (30 days).
    pub deleted_tokens: Duration,
    /// How long a settled call to a TSP (done or dead) stays in the outbox (30 days).
    pub outbox: Duration,
    /// How long a settled notification (delivered, superseded or dead) and its attempts stay
    /// (30 days).
    pub notifications: Duration,
    /// How long a token's events stay (90 days).
    pub events: Duration,
    /// How long a hub node that stopped, or stopped beating, stays listed (1 day).
    pub nodes: Duration,
}

const DAY: u64 = 24 * 3600;

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            sweep_interval: Duration::from_secs(60),
            deleted_tokens: Duration::from_secs(30 * DAY),
            outbox: Duration::from_secs(30 * DAY),
            notifications: Duration::from_secs(30 * DAY),
            events: Duration::from_secs(90 * DAY),
            nodes: Duration::from_secs(DAY),
        }
    }
}

/// The flags (and their variables) of `tokenhub serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RetentionArgs {
    /// Time between two shred sweeps, e.g. `1m` (the default).
    #[arg(long, env = "TOKENHUB_RETENTION_SWEEP_INTERVAL")]
    pub retention_sweep_interval: Option<String>,
    /// How long a DELETED token's records stay before they are purged, e.g. `30d` (the default).
    #[arg(long, env = "TOKENHUB_RETENTION_DELETED_TOKENS")]
    pub retention_deleted_tokens: Option<String>,
    /// How long a settled outbox call stays, e.g. `30d` (the default).
    #[arg(long, env = "TOKENHUB_RETENTION_OUTBOX")]
    pub retention_outbox: Option<String>,
    /// How long a settled notification stays, e.g. `30d` (the default).
    #[arg(long, env = "TOKENHUB_RETENTION_NOTIFICATIONS")]
    pub retention_notifications: Option<String>,
    /// How long a token event stays, e.g. `90d` (the default).
    #[arg(long, env = "TOKENHUB_RETENTION_EVENTS")]
    pub retention_events: Option<String>,
    /// How long a node that stopped, or stopped beating, stays listed, e.g. `1d` (the default).
    #[arg(long, env = "TOKENHUB_RETENTION_NODES")]
    pub retention_nodes: Option<String>,
}

/// The file's `[retention]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRetention {
    sweep_interval: Option<String>,
    deleted_tokens: Option<String>,
    outbox: Option<String>,
    notifications: Option<String>,
    events: Option<String>,
    nodes: Option<String>,
}

/// The settings from the flags over the file over the defaults.
pub fn resolve(args: &RetentionArgs, file: &FileRetention) -> Result<RetentionSettings, String> {
    let d = RetentionSettings::default();
    let duration = |name: &str, arg: &Option<String>, file: &Option<String>, default| match arg
        .as_ref()
        .or(file.as_ref())
    {
        None => Ok(default),
        Some(s) => match humantime::parse_duration(s.trim()) {
            Ok(d) if !d.is_zero() => Ok(d),
            _ => Err(format!(
                "retention {name}: {s:?} is not a duration such as 30s, 1m or 30d"
            )),
        },
    };
    Ok(RetentionSettings {
        sweep_interval: duration(
            "sweep_interval",
            &args.retention_sweep_interval,
            &file.sweep_interval,
            d.sweep_interval,
        )?,
        deleted_tokens: duration(
            "deleted_tokens",
            &args.retention_deleted_tokens,
            &file.deleted_tokens,
            d.deleted_tokens,
        )?,
        outbox: duration("outbox", &args.retention_outbox, &file.outbox, d.outbox)?,
        notifications: duration(
            "notifications",
            &args.retention_notifications,
            &file.notifications,
            d.notifications,
        )?,
        events: duration("events", &args.retention_events, &file.events, d.events)?,
        nodes: duration("nodes", &args.retention_nodes, &file.nodes, d.nodes)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_which_beats_the_defaults_and_nonsense_is_refused() {
        let file: FileRetention = toml::from_str("outbox = \"7d\"\nevents = \"1d\"\n").unwrap();
        let s = resolve(&RetentionArgs::default(), &file).unwrap();
        assert_eq!(s.outbox, Duration::from_secs(7 * DAY));
        assert_eq!(s.events, Duration::from_secs(DAY));
        assert_eq!(s.deleted_tokens, Duration::from_secs(30 * DAY));
        assert_eq!(s.nodes, Duration::from_secs(DAY));
        let args = RetentionArgs {
            retention_outbox: Some("1h".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve(&args, &file).unwrap().outbox,
            Duration::from_secs(3600)
        );
        let bad = RetentionArgs {
            retention_events: Some("0s".into()),
            ..Default::default()
        };
        assert!(resolve(&bad, &file).unwrap_err().contains("events"));
        assert!(toml::from_str::<FileRetention>("forever = \"1d\"").is_err());
    }
}
