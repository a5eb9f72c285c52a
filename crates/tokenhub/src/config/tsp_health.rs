//! How the hub watches each TSP's health (`GET {baseUrl}/healthCheck`): flags, `TOKENHUB_TSP_HEALTH_*`
//! and the file's `[tsp_health]` table, over the defaults.

use serde::Deserialize;
use std::time::Duration;

/// How often, how patiently and how decisively the hub checks each registered TSP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TspHealthSettings {
    /// Between two checks of one TSP (30 s).
    pub interval: Duration,
    /// How long one check may take (3 s, as the contract expects).
    pub timeout: Duration,
    /// Failed checks in a row that make a TSP `DOWN` (3): its calls are then held.
    pub down_after: u32,
    /// Successful checks in a row that bring a `DOWN` TSP back `UP` (2).
    pub up_after: u32,
}

impl Default for TspHealthSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(3),
            down_after: 3,
            up_after: 2,
        }
    }
}

/// The flags (and their variables) of `tokenhub serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TspHealthArgs {
    /// Time between two health checks of a TSP, e.g. `30s` (the default).
    #[arg(long, env = "TOKENHUB_TSP_HEALTH_INTERVAL")]
    pub tsp_health_interval: Option<String>,
    /// How long a TSP's health check may take, e.g. `3s` (the default).
    #[arg(long, env = "TOKENHUB_TSP_HEALTH_TIMEOUT")]
    pub tsp_health_timeout: Option<String>,
    /// Failed health checks in a row after which a TSP is DOWN and its calls are held (3).
    #[arg(long, env = "TOKENHUB_TSP_HEALTH_DOWN_AFTER")]
    pub tsp_health_down_after: Option<u32>,
    /// Successful health checks in a row after which a DOWN TSP is UP again (2).
    #[arg(long, env = "TOKENHUB_TSP_HEALTH_UP_AFTER")]
    pub tsp_health_up_after: Option<u32>,
}

/// The file's `[tsp_health]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTspHealth {
    interval: Option<String>,
    timeout: Option<String>,
    down_after: Option<u32>,
    up_after: Option<u32>,
}

/// The settings from the flags over the file over the defaults.
pub fn resolve(args: &TspHealthArgs, file: &FileTspHealth) -> Result<TspHealthSettings, String> {
    let d = TspHealthSettings::default();
    let duration = |name: &str, v: Option<&String>, default: Duration| match v {
        None => Ok(default),
        Some(s) => match humantime::parse_duration(s.trim()) {
            Ok(d) if !d.is_zero() => Ok(d),
            _ => Err(format!(
                "tsp_health {name}: {s:?} is not a duration such as 500ms or 30s"
            )),
        },
    };
    let count = |name: &str, v: Option<u32>, default: u32| match v {
        Some(0) => Err(format!("tsp_health {name} must be at least 1")),
        v => Ok(v.unwrap_or(default)),
    };
    Ok(TspHealthSettings {
        interval: duration(
            "interval",
            args.tsp_health_interval.as_ref().or(file.interval.as_ref()),
            d.interval,
        )?,
        timeout: duration(
            "timeout",
            args.tsp_health_timeout.as_ref().or(file.timeout.as_ref()),
            d.timeout,
        )?,
        down_after: count(
            "down_after",
            args.tsp_health_down_after.or(file.down_after),
            d.down_after,
        )?,
        up_after: count(
            "up_after",
            args.tsp_health_up_after.or(file.up_after),
            d.up_after,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_which_beats_the_defaults_and_nonsense_is_refused() {
        let file: FileTspHealth = toml::from_str("interval = \"5s\"\ndown_after = 4\n").unwrap();
        let s = resolve(&TspHealthArgs::default(), &file).unwrap();
        assert_eq!(s.interval, Duration::from_secs(5));
        assert_eq!((s.down_after, s.up_after), (4, 2));
        assert_eq!(s.timeout, Duration::from_secs(3));
        let args = TspHealthArgs {
            tsp_health_interval: Some("250ms".into()),
            ..Default::default()
        };
        let s = resolve(&args, &file).unwrap();
        assert_eq!(s.interval, Duration::from_millis(250));
        let zero = TspHealthArgs {
            tsp_health_up_after: Some(0),
            ..Default::default()
        };
        assert!(resolve(&zero, &file).is_err());
        let bad = TspHealthArgs {
            tsp_health_timeout: Some("soon".into()),
            ..Default::default()
        };
        assert!(resolve(&bad, &file).unwrap_err().contains("soon"));
    }
}
