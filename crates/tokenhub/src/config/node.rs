//! Who this hub node is among the nodes sharing one database, how often it says it is alive, and
//! how long its claims hold: flags, `TOKENHUB_NODE_ID`, `TOKENHUB_HEARTBEAT_INTERVAL`,
//! `TOKENHUB_CLAIM_LEASE` and the file's `[node]` table, over the defaults.

use serde::Deserialize;
use std::time::Duration;

/// This node's identity and timings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// This node's id: its row in `nodes` and the claimer beside every row it claims. Made at
    /// start from the host name and a random suffix unless configured (a stable id keeps one row
    /// across restarts).
    pub id: String,
    /// Between two heartbeats (1 s).
    pub heartbeat_interval: Duration,
    /// How long a claim on an outbox call or a token update holds (30 s): a node that dies
    /// mid-call has its rows taken over after this (on SQLite at once: a new `serve` releases the
    /// file's claims at start), and a node silent this long is not live.
    pub claim_lease: Duration,
}

/// The shortest lease: longer than the longest call a claim covers (the TSP client's and the
/// notifier's 10 s time-outs), so that no call still under way is claimed by another node.
pub const MIN_CLAIM_LEASE: Duration = Duration::from_secs(15);

/// The longest node id (it is stored beside every claim).
const MAX_ID_CHARS: usize = 64;

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            id: generated_id(),
            heartbeat_interval: Duration::from_secs(1),
            claim_lease: Duration::from_secs(30),
        }
    }
}

impl NodeSettings {
    /// [`Self::claim_lease`] in ms, as claims and heartbeats are stamped.
    pub fn claim_lease_ms(&self) -> i64 {
        i64::try_from(self.claim_lease.as_millis()).unwrap_or(i64::MAX)
    }
}

/// `<host name>-<8 hex digits>`: the host says where the node runs, the suffix tells two
/// processes on one host (or one host's restarts) apart.
fn generated_id() -> String {
    let host: String = whoami::fallible::hostname()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(MAX_ID_CHARS - 9)
        .collect();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    if host.is_empty() {
        format!("node-{suffix}")
    } else {
        format!("{host}-{suffix}")
    }
}

/// The flags (and their variables) of `tokenhub serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NodeArgs {
    /// This node's id among the nodes sharing the database (letters, digits, `-_.:`, at most 64);
    /// made from the host name and a random suffix when unset.
    #[arg(long, env = "TOKENHUB_NODE_ID")]
    pub node_id: Option<String>,
    /// Time between two heartbeats of this node, e.g. `1s` (the default); at most a third of the
    /// claim lease.
    #[arg(long, env = "TOKENHUB_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<String>,
    /// How long a node's claim on a call or an update holds, and how long a silent node stays
    /// live, e.g. `30s` (the default; at least 15s).
    #[arg(long, env = "TOKENHUB_CLAIM_LEASE")]
    pub claim_lease: Option<String>,
}

/// The file's `[node]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNode {
    id: Option<String>,
    heartbeat_interval: Option<String>,
    claim_lease: Option<String>,
}

/// The settings from the flags over the file over the defaults.
pub fn resolve(args: &NodeArgs, file: &FileNode) -> Result<NodeSettings, String> {
    let d = NodeSettings::default();
    let duration = |name: &str, v: Option<&String>, default: Duration| match v {
        None => Ok(default),
        Some(s) => match humantime::parse_duration(s.trim()) {
            Ok(d) if !d.is_zero() => Ok(d),
            _ => Err(format!(
                "node {name}: {s:?} is not a duration such as 1s or 30s"
            )),
        },
    };
    let id = match args.node_id.as_ref().or(file.id.as_ref()) {
        Some(id) => parse_id(id.trim())?,
        None => d.id,
    };
    let heartbeat_interval = duration(
        "heartbeat_interval",
        args.heartbeat_interval
            .as_ref()
            .or(file.heartbeat_interval.as_ref()),
        d.heartbeat_interval,
    )?;
    let claim_lease = duration(
        "claim_lease",
        args.claim_lease.as_ref().or(file.claim_lease.as_ref()),
        d.claim_lease,
    )?;
    if claim_lease < MIN_CLAIM_LEASE {
        return Err("node claim_lease must be at least 15s".into());
    }
    // A live node must not be seen silent for missing a beat or two.
    if heartbeat_interval * 3 > claim_lease {
        return Err("node heartbeat_interval must be at most a third of claim_lease".into());
    }
    Ok(NodeSettings {
        id,
        heartbeat_interval,
        claim_lease,
    })
}

/// A configured node id: 1 to 64 letters, digits or `-_.:` (it shows in logs and the admin API).
fn parse_id(id: &str) -> Result<String, String> {
    let plain = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS || !plain {
        return Err(format!(
            "node id: {id:?} is not 1 to {MAX_ID_CHARS} letters, digits or -_.:"
        ));
    }
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_which_beats_a_generated_id_and_nonsense_is_refused() {
        let file: FileNode = toml::from_str("id = \"hub-a\"\nclaim_lease = \"20s\"\n").unwrap();
        let s = resolve(&NodeArgs::default(), &file).unwrap();
        assert_eq!(s.id, "hub-a");
        assert_eq!(s.claim_lease, Duration::from_secs(20));
        assert_eq!(s.heartbeat_interval, Duration::from_secs(1));
        let args = NodeArgs {
            node_id: Some("hub-b".into()),
            ..Default::default()
        };
        assert_eq!(resolve(&args, &file).unwrap().id, "hub-b");
        let short = NodeArgs {
            claim_lease: Some("5s".into()),
            ..Default::default()
        };
        assert!(resolve(&short, &FileNode::default()).is_err());
        let slow = NodeArgs {
            heartbeat_interval: Some("11s".into()),
            ..Default::default()
        };
        assert!(resolve(&slow, &FileNode::default()).is_err());
        for bad in ["", "a b", "x".repeat(65).as_str(), "né"] {
            let args = NodeArgs {
                node_id: Some(bad.into()),
                ..Default::default()
            };
            assert!(resolve(&args, &FileNode::default()).is_err(), "{bad:?}");
        }
        assert!(toml::from_str::<FileNode>("name = \"x\"").is_err());
    }

    #[test]
    fn generated_ids_are_distinct_and_valid() {
        let (a, b) = (generated_id(), generated_id());
        assert_ne!(a, b);
        assert_eq!(parse_id(&a), Ok(a.clone()));
        assert!(a.chars().count() <= MAX_ID_CHARS);
    }
}
