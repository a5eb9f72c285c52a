//! `tokenhub device-sim`: a fleet that runs until Ctrl-C or SIGTERM, printing a status line now
//! and then and, when given the TSP simulator's URL, transacting on every installed application
//! at a fixed interval.

use std::time::Duration;

use anyhow::bail;
use tokio::task::JoinHandle;

use super::{Fleet, FleetConfig, FleetStatus, TxnSummary};

/// What `tokenhub device-sim` runs.
#[derive(Debug, Clone)]
pub struct DeviceSimConfig {
    pub fleet: FleetConfig,
    /// The TSP simulator's root (`http://HOST:PORT`, where `/sim/transactions` is); transactions
    /// run only when it is given.
    pub tsp_sim_url: Option<String>,
    /// How often each installed application makes `transactions_per_round` transactions.
    pub transactions_every: Duration,
    pub transactions_per_round: usize,
    /// Tokens transacting at once during a round.
    pub transaction_concurrency: usize,
    /// How often a status line is printed.
    pub status_every: Duration,
}

impl DeviceSimConfig {
    /// No transactions; a status line every 5 s. Transactions every 10 s, one per application,
    /// 64 tokens at once, once `tsp_sim_url` is set.
    pub fn new(fleet: FleetConfig) -> Self {
        Self {
            fleet,
            tsp_sim_url: None,
            transactions_every: Duration::from_secs(10),
            transactions_per_round: 1,
            transaction_concurrency: 64,
            status_every: Duration::from_secs(5),
        }
    }
}

/// One line for the operator: what the fleet did so far.
pub fn status_line(s: &FleetStatus) -> String {
    format!(
        "devices {} | offers {} | confirmed {} | failures reported {} | apps {} | \
         errors: decrypt {}, check {}, poll {}, result {} | transactions approved {}, declined {}",
        s.registered,
        s.personalizations_received,
        s.confirmed,
        s.failures_reported,
        s.apps_installed,
        s.decrypt_errors,
        s.check_errors,
        s.poll_errors,
        s.result_errors,
        s.transactions_approved,
        s.transactions_declined,
    )
}

fn summary_line(s: &TxnSummary) -> String {
    let declined: Vec<String> = s.declined.iter().map(|(r, n)| format!("{r} {n}")).collect();
    format!(
        "transactions on {} tokens: approved {}, declined {}{}",
        s.tokens,
        s.approved,
        s.declined_total(),
        if declined.is_empty() {
            String::new()
        } else {
            format!(" ({})", declined.join(", "))
        }
    )
}

/// Starts the fleet, runs until Ctrl-C (or SIGTERM on Unix), then stops it cleanly.
pub async fn run(config: DeviceSimConfig) -> anyhow::Result<()> {
    if config.status_every.is_zero() || config.transactions_every.is_zero() {
        bail!("status and transaction intervals must be longer than zero");
    }
    let hub = config.fleet.hub_url.clone();
    let fleet = Fleet::start(config.fleet).await?;
    println!(
        "device-sim: {} devices registered at {hub}",
        fleet.status().registered
    );
    let stop = crate::tsp::stop_signal();
    tokio::pin!(stop);
    let mut status_tick = tokio::time::interval(config.status_every);
    let mut txn_tick = tokio::time::interval(config.transactions_every);
    txn_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Skip the immediate first ticks: nothing is installed yet.
    status_tick.tick().await;
    txn_tick.tick().await;
    let mut round: Option<JoinHandle<TxnSummary>> = None;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = status_tick.tick() => println!("device-sim: {}", status_line(&fleet.status())),
            _ = txn_tick.tick(), if config.tsp_sim_url.is_some() => {
                if let Some(done) = round.take_if(|r| r.is_finished()) {
                    if let Ok(summary) = done.await {
                        println!("device-sim: {}", summary_line(&summary));
                    }
                }
                if round.is_none() {
                    let (fleet, url) = (fleet.clone(), config.tsp_sim_url.clone().unwrap_or_default());
                    let (per, conc) = (config.transactions_per_round, config.transaction_concurrency);
                    round = Some(tokio::spawn(async move { fleet.transact_all(&url, per, conc).await }));
                }
            }
        }
    }
    println!("device-sim: stopping");
    if let Some(round) = round {
        round.abort();
    }
    fleet.shutdown().await;
    println!("device-sim: {}", status_line(&fleet.status()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn lines_show_every_counter_and_every_decline_reason() {
        let line = status_line(&FleetStatus {
            registered: 3,
            confirmed: 2,
            transactions_declined: 1,
            ..FleetStatus::default()
        });
        assert!(line.starts_with("devices 3 |"), "{line}");
        assert!(line.contains("confirmed 2"), "{line}");
        assert!(line.ends_with("declined 1"), "{line}");
        let summary = summary_line(&TxnSummary {
            tokens: 2,
            approved: 3,
            declined: BTreeMap::from([("REPLAY".into(), 1)]),
        });
        assert_eq!(
            summary,
            "transactions on 2 tokens: approved 3, declined 1 (REPLAY 1)"
        );
    }
}
