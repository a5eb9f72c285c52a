//! Wake-ups and cache drops that reach every node sharing the database. A wake of this node's
//! waiters (a device's long poll, the outbox, the notifier) wakes them here at once and is queued
//! as a [`Signal`] for the other nodes, which a sender sends in batches; a change to a cached row
//! is applied here and sent before the change is answered ([`Hub::tell_nodes`]). Each node
//! listens (`workers/signals.rs`) and applies what the others send; it skips its own signals,
//! whose work it did when it sent them (waking twice would be harmless: a spare permit, a cache
//! read again). On SQLite nothing is queued or sent: one node, whose own wakes are all there is.

use super::Hub;
use crate::error::Error;
pub use crate::store::signals::Signal;
use crate::store::signals::SignalListener;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The most signals waiting to be sent: past it, a signal about one thing (a device) goes as one
/// about every thing of its kind (every device), so the queue stays bounded and nothing is missed.
const MAX_PENDING: usize = 10_000;

/// This node's signals waiting for the sender, and the name they go under.
pub struct SignalQueue {
    /// This node's name in its signals (random per start): a node skips what it sent itself.
    node: String,
    /// Whether signals travel (PostgreSQL).
    shared: bool,
    pending: Mutex<BTreeSet<Signal>>,
    ready: Notify,
}

impl SignalQueue {
    pub fn new(shared: bool) -> Arc<Self> {
        use rand::RngCore;
        Arc::new(Self {
            node: format!("{:016x}", rand::rngs::OsRng.next_u64()),
            shared,
            pending: Mutex::default(),
            ready: Notify::new(),
        })
    }

    /// This node's name in the signals it sends.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether signals travel between nodes.
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// Queues `signal` for the other nodes (nothing on SQLite).
    pub fn queue(&self, signal: Signal) {
        if !self.shared {
            return;
        }
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.len() >= MAX_PENDING {
                pending.insert(signal.widened());
            } else {
                pending.insert(signal);
            }
        }
        self.ready.notify_one();
    }

    /// Every signal queued, once there is at least one.
    pub async fn next_batch(&self) -> Vec<Signal> {
        loop {
            let batch =
                std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
            if !batch.is_empty() {
                return batch.into_iter().collect();
            }
            // A signal queued between the take and this wait left a permit: no wait then.
            self.ready.notified().await;
        }
    }
}

/// Wakes one of this node's workers, and the same worker of every other node.
pub struct Wake {
    here: Notify,
    signal: Signal,
    queue: Arc<SignalQueue>,
}

impl Wake {
    pub fn new(signal: Signal, queue: Arc<SignalQueue>) -> Self {
        Self {
            here: Notify::new(),
            signal,
            queue,
        }
    }

    /// Wakes the worker here (a permit is kept if it is not waiting) and on every node.
    pub fn notify_one(&self) {
        self.here.notify_one();
        self.queue.queue(self.signal.clone());
    }

    /// Wakes the worker on this node only (another node's signal).
    pub fn notify_here(&self) {
        self.here.notify_one();
    }

    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.here.notified()
    }
}

/// One wake-up signal per device that is long-polling. A signal sent while nobody waits is kept
/// (`Notify::notify_one` stores a permit), so a personalization committed between a poll's check
/// and its wait is not missed.
pub struct DeviceSignals {
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
    queue: Arc<SignalQueue>,
}

impl DeviceSignals {
    pub fn new(queue: Arc<SignalQueue>) -> Self {
        Self {
            waiting: Mutex::default(),
            queue,
        }
    }

    /// The device's signal; take it before checking for work, then wait on it.
    pub fn subscribe(&self, device_id: &str) -> Arc<Notify> {
        let mut map = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(device_id.to_string()).or_default().clone()
    }

    /// Drops the device's signal when its last poll ends.
    pub fn unsubscribe(&self, device_id: &str, signal: Arc<Notify>) {
        let mut map = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        drop(signal);
        if map
            .get(device_id)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            map.remove(device_id);
        }
    }

    /// Whether a poll of the device is under way on this node.
    pub fn polling(&self, device_id: &str) -> bool {
        let map = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        map.contains_key(device_id)
    }

    /// Wakes the device's polls here and on every node.
    pub fn notify(&self, device_id: &str) {
        self.notify_here(device_id);
        self.queue.queue(Signal::Device(device_id.to_string()));
    }

    /// Wakes the device's polls on this node only.
    pub fn notify_here(&self, device_id: &str) {
        let map = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(device_id) {
            s.notify_one();
        }
    }

    /// Wakes every poll on this node (signals may have been lost): each looks again.
    pub fn notify_all_here(&self) {
        let map = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        for s in map.values() {
            s.notify_one();
        }
    }
}

/// This node's subscription to the other nodes' signals.
pub struct Subscription(SignalListener);

impl Subscription {
    /// The next signal another node sent; `None`: the connection was lost, and signals with it.
    pub async fn next(&mut self, node: &str) -> Result<Option<Signal>, Error> {
        loop {
            match self.0.recv().await? {
                None => return Ok(None),
                Some((origin, _)) if origin == node => continue,
                Some((_, signal)) => return Ok(Some(signal)),
            }
        }
    }
}

impl Hub {
    /// Applies a change this node made to a cached row (or to the shared keys) here, then tells
    /// every other node before returning, so that an answer saying it was made comes after
    /// every node was told. A signal that cannot be sent is logged: the other nodes then see the
    /// change when their caches' time runs out.
    pub async fn tell_nodes(&self, signal: Signal) -> Result<(), Error> {
        let here = self.apply_signal(&signal).await;
        self.announce(signal).await;
        here
    }

    /// Tells every node (not this one) of a change made to the store, now.
    pub async fn announce(&self, signal: Signal) {
        let node = self.signals.node();
        if let Err(e) = self.store.send_signals(node, &[signal]).await {
            tracing::warn!(cause = %e, "the other nodes could not be told of a change");
        }
    }

    /// Sends the signals queued, once there are some (the sender's loop).
    pub async fn send_queued_signals(&self) -> Result<(), Error> {
        let batch = self.signals.next_batch().await;
        // Bounded statements: a backlog goes in several.
        for chunk in batch.chunks(500) {
            self.store.send_signals(self.signals.node(), chunk).await?;
        }
        Ok(())
    }

    /// Listens to the other nodes' signals on a connection of its own; `None` on SQLite.
    pub async fn subscribe_signals(&self) -> Result<Option<Subscription>, Error> {
        let name = format!("tokenhub-signals-{}", self.signals.node());
        let listener = SignalListener::connect(&self.store, &self.config.database_url, &name);
        Ok(listener.await?.map(Subscription))
    }

    /// Does here what `signal` asks: wakes the waiters, drops the cached rows.
    pub async fn apply_signal(&self, signal: &Signal) -> Result<(), Error> {
        match signal {
            Signal::Device(id) => self.devices.notify_here(id),
            Signal::AllDevices => self.devices.notify_all_here(),
            Signal::Outbox => self.outbox_wake.notify_here(),
            Signal::Notifier => self.notify_wake.notify_here(),
            Signal::Requestors => self.forget_requestors(),
            Signal::RequestorKey(key_id) => self.requestor_keys.forget(key_id),
            Signal::AllRequestorKeys => self.requestor_keys.forget_all(),
            Signal::Issuer(id) => self.forget_issuer(id),
            Signal::AllIssuers => self
                .issuer_tsps
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .clear(),
            Signal::Tsps => {
                self.forget_tsps();
                self.refresh_tsp_trust().await?;
            }
            Signal::SharedKeys => self.reload_keys().await?,
        }
        Ok(())
    }

    /// After signals may have been lost (the subscription's connection was lost): every waiter
    /// looks again and every cache is read again.
    pub async fn signals_missed(&self) -> Result<(), Error> {
        for signal in [
            Signal::AllDevices,
            Signal::Outbox,
            Signal::Notifier,
            Signal::Requestors,
            Signal::AllRequestorKeys,
            Signal::AllIssuers,
            Signal::Tsps,
            Signal::SharedKeys,
        ] {
            self.apply_signal(&signal).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_sends_one_signal_for_a_kind_and_nothing_is_lost() {
        let q = SignalQueue::new(true);
        for i in 0..MAX_PENDING + 5 {
            q.queue(Signal::Device(format!("d{i}")));
        }
        q.queue(Signal::Outbox);
        q.queue(Signal::Outbox);
        let batch = q.next_batch().await;
        assert_eq!(
            batch.len(),
            MAX_PENDING + 2,
            "the devices, all devices, the outbox"
        );
        assert!(batch.contains(&Signal::AllDevices));
        assert!(batch.contains(&Signal::Outbox));
        q.queue(Signal::Notifier);
        assert_eq!(
            q.next_batch().await,
            [Signal::Notifier],
            "emptied by the take"
        );
    }

    #[tokio::test]
    async fn nothing_is_queued_where_signals_do_not_travel() {
        let q = SignalQueue::new(false);
        q.queue(Signal::Outbox);
        assert!(q.pending.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_device_wake_wakes_its_polls_here_and_is_queued_for_the_others() {
        let q = SignalQueue::new(true);
        let devices = DeviceSignals::new(q.clone());
        let signal = devices.subscribe("d1");
        devices.notify("d1");
        tokio::time::timeout(std::time::Duration::from_secs(5), signal.notified())
            .await
            .expect("the poll here is woken");
        assert_eq!(q.next_batch().await, [Signal::Device("d1".into())]);
        devices.notify_all_here();
        tokio::time::timeout(std::time::Duration::from_secs(5), signal.notified())
            .await
            .expect("woken by a wake of every device");
        devices.unsubscribe("d1", signal);
        assert!(devices.waiting.lock().unwrap().is_empty());
    }
}
