//! The hub nodes sharing one database, as their rows say: when each started, last said it was
//! alive and said it stopped, and what each holds (rows it claimed whose lease still runs). A
//! node is live while it has not stopped and its last heartbeat is within the claims' lease: a
//! node silent that long has its claims taken over by the others anyway.

/// A node's row (times in ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub node_id: String,
    /// The hub's version the node runs.
    pub version: String,
    pub started_ms: i64,
    pub heartbeat_ms: i64,
    /// When it said it stopped (a clean shutdown); `None` while it runs or after a crash.
    pub stopped_ms: Option<i64>,
}

impl NodeRecord {
    /// Whether the node is live at `now` for a claims' lease of `lease_ms`.
    pub fn live(&self, now: i64, lease_ms: i64) -> bool {
        self.stopped_ms.is_none() && self.heartbeat_ms > now - lease_ms
    }
}

/// What a node holds: rows of each kind of leased work it claimed and whose lease still runs.
/// Campaign steps and the sweeps lock their rows only inside one transaction, so they hold
/// nothing between two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holdings {
    /// Calls owed to TSPs (the outbox).
    pub tsp_calls: u64,
    /// Token updates owed to token requestors.
    pub notifications: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_live_until_it_stops_or_stays_silent_for_the_lease() {
        let mut n = NodeRecord {
            node_id: "a".into(),
            version: "0".into(),
            started_ms: 0,
            heartbeat_ms: 1_000,
            stopped_ms: None,
        };
        assert!(n.live(30_999, 30_000));
        assert!(!n.live(31_000, 30_000));
        n.stopped_ms = Some(1_500);
        assert!(!n.live(1_600, 30_000));
    }
}
