//! Signals between the nodes that share one PostgreSQL database, on its `LISTEN`/`NOTIFY`
//! channel [`CHANNEL`]: a wake-up (a device's long poll, the outbox, the notifier) or a change
//! that every node's caches must drop. A signal names a kind and, where it concerns one thing, the
//! id of that thing (a device, a requestor key, an issuer): never a value or a secret. A signal is
//! a hint: one that is lost costs a waiter its poll interval and a cache its time to live, never
//! a wrong answer. SQLite is single-node: nothing is sent there.

use super::{query, Dialect, Store, StoreError};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use std::time::Duration;

/// The channel every node listens on.
pub const CHANNEL: &str = "tokenhub_signals";

/// The longest payload sent: PostgreSQL refuses a `NOTIFY` payload of 8000 bytes or more (and
/// with it every other signal of the same statement).
const MAX_PAYLOAD: usize = 1000;

/// What a node tells the others.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    /// The device has work (a profile queued, a token to remove): its long polls look again.
    Device(String),
    /// Every device long-polling: signals may have been lost.
    AllDevices,
    /// A TSP call was queued or made due.
    Outbox,
    /// A token update was queued, or a requestor's endpoint changed.
    Notifier,
    /// A token requestor was put: the requestors are read again.
    Requestors,
    /// A requestor's API key was revoked: it is verified against the store again.
    RequestorKey(String),
    /// Every cached requestor key is verified again.
    AllRequestorKeys,
    /// An issuer was put (its TSP may have changed).
    Issuer(String),
    /// Every cached issuer binding is read again.
    AllIssuers,
    /// A TSP was put: the TSPs and the TSP listener's trust are read again.
    Tsps,
    /// A shared key was imported or retired: the shared keys are read again.
    SharedKeys,
}

impl Signal {
    /// The signal that covers this one and every other of its kind (what a full queue sends).
    pub fn widened(&self) -> Signal {
        match self {
            Signal::Device(_) => Signal::AllDevices,
            Signal::RequestorKey(_) => Signal::AllRequestorKeys,
            Signal::Issuer(_) => Signal::AllIssuers,
            other => other.clone(),
        }
    }

    fn parts(&self) -> (&'static str, &str) {
        match self {
            Signal::Device(id) => ("device", id),
            Signal::AllDevices => ("devices", ""),
            Signal::Outbox => ("outbox", ""),
            Signal::Notifier => ("notifier", ""),
            Signal::Requestors => ("requestors", ""),
            Signal::RequestorKey(id) => ("requestor-key", id),
            Signal::AllRequestorKeys => ("requestor-keys", ""),
            Signal::Issuer(id) => ("issuer", id),
            Signal::AllIssuers => ("issuers", ""),
            Signal::Tsps => ("tsps", ""),
            Signal::SharedKeys => ("shared-keys", ""),
        }
    }

    /// `ORIGIN KIND ID` (the id may be empty); `None` when it cannot be sent (too long, or a NUL,
    /// which PostgreSQL's text refuses): the widened signal is sent instead.
    pub fn payload(&self, origin: &str) -> Option<String> {
        let (kind, id) = self.parts();
        let payload = format!("{origin} {kind} {id}");
        (payload.len() <= MAX_PAYLOAD && !payload.contains('\0')).then_some(payload)
    }

    /// The origin and the signal of a payload; `None` for one this version does not know.
    pub fn parse(payload: &str) -> Option<(&str, Signal)> {
        let mut parts = payload.splitn(3, ' ');
        let (origin, kind, id) = (parts.next()?, parts.next()?, parts.next()?);
        let id = || Some(id.to_string()).filter(|i| !i.is_empty());
        let signal = match kind {
            "device" => Signal::Device(id()?),
            "devices" => Signal::AllDevices,
            "outbox" => Signal::Outbox,
            "notifier" => Signal::Notifier,
            "requestors" => Signal::Requestors,
            "requestor-key" => Signal::RequestorKey(id()?),
            "requestor-keys" => Signal::AllRequestorKeys,
            "issuer" => Signal::Issuer(id()?),
            "issuers" => Signal::AllIssuers,
            "tsps" => Signal::Tsps,
            "shared-keys" => Signal::SharedKeys,
            _ => return None,
        };
        Some((origin, signal))
    }
}

impl Store {
    /// Whether signals travel between nodes: on PostgreSQL only.
    pub fn signals_shared(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    /// Sends `signals` from `origin` to every node listening, in one statement (one commit:
    /// PostgreSQL drops repeats within it). Nothing on SQLite.
    pub async fn send_signals(&self, origin: &str, signals: &[Signal]) -> Result<(), StoreError> {
        if !self.signals_shared() || signals.is_empty() {
            return Ok(());
        }
        let payloads: Vec<String> = signals
            .iter()
            .filter_map(|s| s.payload(origin).or_else(|| s.widened().payload(origin)))
            .collect();
        let payloads = serde_json::to_string(&payloads)
            .map_err(|e| StoreError::Corrupt(format!("signals: {e}")))?;
        // `pg_notify` returns `void`, which the query API does not read: the rows are counted.
        query(
            "SELECT count(*) AS sent FROM (SELECT pg_notify($1, p) \
             FROM json_array_elements_text(CAST($2 AS json)) AS t(p)) AS n",
        )
        .bind(CHANNEL)
        .bind(payloads)
        .execute(self.reader())
        .await?;
        Ok(())
    }
}

/// One node's subscription to [`CHANNEL`], on a connection of its own (named
/// `application_name`, so an operator sees it in `pg_stat_activity`).
pub struct SignalListener {
    inner: PgListener,
}

impl SignalListener {
    /// Connects to `url` and listens; `None` on SQLite.
    pub async fn connect(
        store: &Store,
        url: &str,
        application_name: &str,
    ) -> Result<Option<Self>, StoreError> {
        if !store.signals_shared() {
            return Ok(None);
        }
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(options.application_name(application_name))
            .await?;
        let mut inner = PgListener::connect_with(&pool).await?;
        // A lost connection is the caller's to make again: it must learn that signals were lost.
        inner.eager_reconnect(false);
        inner.ignore_pool_close_event(true);
        inner.listen(CHANNEL).await?;
        Ok(Some(Self { inner }))
    }

    /// The next signal and its origin; `None` when the connection was lost (signals sent
    /// meanwhile are lost with it). A payload this version does not know is skipped.
    pub async fn recv(&mut self) -> Result<Option<(String, Signal)>, StoreError> {
        loop {
            let Some(notification) = self.inner.try_recv().await? else {
                return Ok(None);
            };
            if let Some((origin, signal)) = Signal::parse(notification.payload()) {
                return Ok(Some((origin.to_string(), signal)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_reads_back_as_it_was_sent() {
        for s in [
            Signal::Device("device 0001: x".into()),
            Signal::AllDevices,
            Signal::Outbox,
            Signal::Notifier,
            Signal::Requestors,
            Signal::RequestorKey("0123456789abcdef".into()),
            Signal::AllRequestorKeys,
            Signal::Issuer("ISSUER0001".into()),
            Signal::AllIssuers,
            Signal::Tsps,
            Signal::SharedKeys,
        ] {
            let payload = s.payload("node1").unwrap();
            assert_eq!(Signal::parse(&payload), Some(("node1", s)));
        }
    }

    #[test]
    fn what_cannot_be_sent_or_read_is_not() {
        assert_eq!(Signal::Device("d".repeat(MAX_PAYLOAD)).payload("n"), None);
        assert_eq!(Signal::Device("a\0b".into()).payload("n"), None);
        assert_eq!(Signal::parse("n device "), None, "a device without an id");
        assert_eq!(Signal::parse("n unknown x"), None);
        assert_eq!(Signal::parse("n outbox"), None);
        assert_eq!(
            Signal::Device("d".into()).widened(),
            Signal::AllDevices,
            "what a full queue sends instead"
        );
    }
}
