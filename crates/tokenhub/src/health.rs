//! What runs: the state of each background worker, kept by the workers' supervisor and read by
//! the health check (`503` while one is down) and the admin API (which one).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A worker's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerState {
    /// Running now; `false` between a panic and the restart.
    pub running: bool,
    /// How many times it stopped and was started again since the hub started.
    pub restarts: u64,
}

/// The workers' states, by name.
#[derive(Default)]
pub struct Health {
    workers: Mutex<BTreeMap<&'static str, WorkerState>>,
    /// Test builds only: the workers a test ordered to panic.
    #[cfg(feature = "test-hooks")]
    panic_orders: std::sync::OnceLock<tokio::sync::watch::Sender<Vec<String>>>,
}

impl Health {
    /// `name` runs (again).
    pub fn started(&self, name: &'static str) {
        self.lock().entry(name).or_default().running = true;
    }

    /// `name` stopped other than at shutdown: down until started again.
    pub fn stopped(&self, name: &'static str) {
        let mut workers = self.lock();
        let state = workers.entry(name).or_default();
        state.running = false;
        state.restarts += 1;
    }

    /// Every worker's state, by name.
    pub fn workers(&self) -> Vec<(&'static str, WorkerState)> {
        self.lock().iter().map(|(n, s)| (*n, *s)).collect()
    }

    /// The workers down now.
    pub fn down(&self) -> Vec<&'static str> {
        self.lock()
            .iter()
            .filter(|(_, s)| !s.running)
            .map(|(n, _)| *n)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, WorkerState>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(feature = "test-hooks")]
impl Health {
    fn orders(&self) -> &tokio::sync::watch::Sender<Vec<String>> {
        self.panic_orders
            .get_or_init(|| tokio::sync::watch::Sender::new(Vec::new()))
    }

    /// Test builds only: `name` panics now and at every restart while `on`.
    pub fn order_panic(&self, name: &str, on: bool) {
        self.orders().send_modify(|names| {
            names.retain(|n| n != name);
            if on {
                names.push(name.to_string());
            }
        });
    }

    /// Test builds only: returns once `name` is ordered to panic.
    pub async fn panic_ordered(&self, name: &str) {
        let mut orders = self.orders().subscribe();
        let _ = orders
            .wait_for(|names| names.iter().any(|n| n == name))
            .await;
    }
}
