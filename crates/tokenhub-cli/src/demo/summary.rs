//! What the demo's acts saw, printed as one table, and the checks that decide its exit status.

use super::merchant::Merchanted;
use super::updates::Report;
use anyhow::ensure;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokenhub_sim::{FleetStatus, TspSimStatus, TxnOutcome, TxnSummary};

/// The digitize act: every token from digitization to ACTIVE.
pub(super) struct Provisioned {
    pub(super) token_ids: Vec<String>,
    pub(super) installed: usize,
    /// The TSP was told of every activation.
    pub(super) outbox_drained: bool,
    pub(super) time: Duration,
}

/// The pay act.
pub(super) struct Paid {
    pub(super) txns: TxnSummary,
    pub(super) replay: TxnOutcome,
}

/// The campaign act, and the payments after it.
pub(super) struct Campaigned {
    pub(super) view: Value,
    pub(super) done: usize,
    pub(super) failed: u64,
    pub(super) status_drained: bool,
    pub(super) time: Duration,
    pub(super) txns_after: TxnSummary,
    pub(super) on_v2: usize,
    pub(super) atc_in_sync: usize,
}

/// The updates act.
pub(super) struct Updated {
    pub(super) report: Report,
    pub(super) removals_wanted: u64,
}

/// What the hub, the TSP and the devices hold at the end.
pub(super) struct Finished {
    pub(super) states: Vec<(String, i64)>,
    pub(super) active: usize,
    pub(super) parts: i64,
    pub(super) sealed_profiles: i64,
    pub(super) tsp: TspSimStatus,
    pub(super) fleet: FleetStatus,
}

pub(super) struct Summary {
    pub(super) tokens: usize,
    pub(super) transactions: usize,
    pub(super) provisioned: Provisioned,
    pub(super) paid: Paid,
    pub(super) campaigned: Campaigned,
    pub(super) updated: Updated,
    pub(super) merchanted: Merchanted,
    pub(super) finished: Finished,
}

impl Summary {
    pub(super) fn print(&self, started: Instant) {
        self.print_provisioning();
        self.print_campaign();
        self.print_updates();
        self.print_merchant();
        println!(
            "demo wall time                      {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }

    fn print_provisioning(&self) {
        let (p, paid, f) = (&self.provisioned, &self.paid, &self.finished);
        println!();
        println!("tokens digitized (createToken)      {}", p.token_ids.len());
        println!(
            "data calls sent / accepted          {} / {}",
            f.tsp.data_calls_sent, f.tsp.data_calls_accepted
        );
        println!("profiles installed on devices       {}", p.installed);
        println!("tokens personalized at the hub      {}", f.active);
        println!(
            "TSP told ACTIVE (outbox drained)    {}",
            if p.outbox_drained { "yes" } else { "NO" }
        );
        println!(
            "transactions approved / declined    {} / {}",
            paid.txns.approved,
            paid.txns.declined_total()
        );
        println!(
            "replayed ATC declined by the TSP    {} ({})",
            if paid.replay.approved { "NO" } else { "yes" },
            paid.replay.reason
        );
        println!(
            "data elements retained by the hub   {} part(s), {} sealed profile(s)",
            f.parts, f.sealed_profiles
        );
        println!(
            "provisioning                        {:.1} s, {:.0} tokens/s (digitization to ACTIVE)",
            p.time.as_secs_f64(),
            p.token_ids.len() as f64 / p.time.as_secs_f64()
        );
    }

    fn print_campaign(&self) {
        let (c, n) = (&self.campaigned, self.provisioned.token_ids.len());
        println!(
            "tokens re-personalized (campaign)    {} of {n} ({} failed)",
            c.done, c.failed
        );
        println!("devices on profile v2               {}", c.on_v2);
        println!("recovered data that differed        {}", c.failed);
        println!(
            "TSP calls refused by its rate (503)  {}",
            self.finished.tsp.rate_limited
        );
        println!(
            "transactions after the campaign     {} approved / {} declined",
            c.txns_after.approved,
            c.txns_after.declined_total()
        );
        println!(
            "ATC in sync (device = TSP)          {} of {n}",
            c.atc_in_sync
        );
        println!(
            "campaign                            {:.1} s, {:.0} tokens/s",
            c.time.as_secs_f64(),
            c.done as f64 / c.time.as_secs_f64()
        );
    }

    fn print_updates(&self) {
        let u = &self.updated.report;
        println!(
            "token updates sent by the TSP       {} ({} sent twice, {} out of order, {} refused)",
            u.updates_sent, u.duplicates_sent, u.out_of_order_sent, u.refused_by_hub
        );
        println!(
            "updates delivered to the requestor  {} in {} attempts ({} answered 503/400 on purpose, {} dead letters replayed)",
            u.deliveries, u.attempts, u.failed_on_purpose, u.dead_replayed
        );
        println!(
            "receiver: applied / duplicates / obsolete dropped   {} / {} / {}",
            u.receiver_applied, u.receiver_duplicates, u.receiver_obsolete
        );
        println!("token PANs discarded (new last digits) {}", u.pan_discards);
        println!(
            "requestor's view = hub's view       {} of {}",
            u.views_equal,
            self.provisioned.token_ids.len()
        );
        println!(
            "deleted tokens removed from devices {} of {}",
            self.finished.fleet.removals, u.deleted
        );
        println!(
            "token updates phase                 {:.1} s",
            u.time.as_secs_f64()
        );
    }

    fn print_merchant(&self) {
        let m = &self.merchanted;
        let s = &m.stats;
        println!(
            "cards on file tokenized (merchant)  {} of {} ({} failed)",
            s.tokenized, m.cards, s.tokenize_failed
        );
        println!(
            "payments approved / declined        {} / {} (authorized by the TSP)",
            m.first.approved,
            m.first.declined + m.first.errors
        );
        println!(
            "renewals: accepted / seen by PSP    {} / {} of {}",
            m.renewals_accepted, s.renewals_seen, m.renewals
        );
        println!(
            "token PANs discarded / refetched    {} / {} ({} not the new PAN)",
            s.pans_discarded, s.pans_refetched, s.refetch_mismatches
        );
        println!(
            "payments after the renewals         {} approved / {} declined",
            m.later.approved,
            m.later.declined + m.later.errors
        );
        println!(
            "replayed cryptogram declined        {}",
            match &m.replay {
                Some(a) if !a.approved => format!("yes ({})", a.reason),
                Some(a) => format!("NO ({})", a.reason),
                None => "NO (nothing replayed)".to_string(),
            }
        );
        println!(
            "merchant act                        {:.1} s",
            m.time.as_secs_f64()
        );
    }

    fn merchant_checks(&self) -> Vec<(bool, String)> {
        let m = &self.merchanted;
        let s = &m.stats;
        let clean = |r: &tokenhub_sim::requestor::PaymentRound| {
            r.approved == m.cards && r.declined == 0 && r.errors == 0
        };
        vec![
            (
                s.tokenized == m.cards && s.tokenize_failed == 0,
                format!("merchant: {} of {} cards tokenized", s.tokenized, m.cards),
            ),
            (
                clean(&m.first),
                format!("merchant's first payments: {:?}", m.first),
            ),
            (
                m.renewals_accepted == m.renewals && s.renewals_seen == m.renewals,
                format!(
                    "renewals: {} accepted by the hub, {} seen by the PSP, of {}",
                    m.renewals_accepted, s.renewals_seen, m.renewals
                ),
            ),
            (
                s.pans_discarded == m.renewals
                    && s.pans_refetched == m.renewals
                    && s.refetch_mismatches == 0,
                format!(
                    "token PANs: {} discarded, {} refetched, {} not the new one, of {}",
                    s.pans_discarded, s.pans_refetched, s.refetch_mismatches, m.renewals
                ),
            ),
            (
                clean(&m.later),
                format!("merchant's payments after the renewals: {:?}", m.later),
            ),
            (
                m.replay
                    .as_ref()
                    .is_some_and(|a| !a.approved && a.reason == "REPLAY"),
                format!("the replayed cryptogram: {:?}", m.replay),
            ),
        ]
    }

    /// Every check, in order; fails unless all hold.
    pub(super) fn check(&self) -> anyhow::Result<()> {
        let mut checks = self.campaign_checks();
        checks.extend(self.provisioning_checks());
        checks.extend(self.updates_checks());
        checks.extend(self.merchant_checks());
        let failed: Vec<&String> = checks
            .iter()
            .filter(|(ok, _)| !ok)
            .map(|(_, why)| why)
            .collect();
        for why in &failed {
            println!("CHECK FAILED: {why}");
        }
        ensure!(failed.is_empty(), "{} check(s) failed", failed.len());
        println!("all checks passed");
        Ok(())
    }

    fn expected_txns(&self) -> u64 {
        (self.tokens * self.transactions) as u64
    }

    fn campaign_checks(&self) -> Vec<(bool, String)> {
        let (c, tsp, n) = (&self.campaigned, &self.finished.tsp, self.tokens);
        vec![
            (
                c.done == n && c.on_v2 == n && c.status_drained,
                format!("campaign: {}", c.view),
            ),
            (
                tsp.rate_limited == 0,
                format!(
                    "the hub went over the TSP's rate: {} call(s) refused",
                    tsp.rate_limited
                ),
            ),
            (
                c.txns_after.approved == self.expected_txns() && c.txns_after.declined_total() == 0,
                format!("transactions after the campaign: {:?}", c.txns_after),
            ),
            (
                c.atc_in_sync == n,
                format!("ATC in sync on {} token(s) only", c.atc_in_sync),
            ),
            (
                tsp.data_calls_rejected_total() == 0,
                format!("the hub refused data calls: {:?}", tsp.data_calls_rejected),
            ),
        ]
    }

    fn provisioning_checks(&self) -> Vec<(bool, String)> {
        let (p, paid, f, n) = (&self.provisioned, &self.paid, &self.finished, self.tokens);
        vec![
            (
                p.installed == n,
                format!(
                    "{} device(s) did not install their profile",
                    n.saturating_sub(p.installed)
                ),
            ),
            (
                f.active == n,
                format!(
                    "{} token(s) are not ACTIVE: {:?}",
                    n.saturating_sub(f.active),
                    f.states
                ),
            ),
            (
                p.outbox_drained,
                "the TSP was not told of every activation".to_string(),
            ),
            (
                paid.txns.approved == self.expected_txns() && paid.txns.declined_total() == 0,
                format!("transactions: {:?}", paid.txns),
            ),
            (
                !paid.replay.approved && paid.replay.reason == "REPLAY",
                format!("the replay was not declined as such: {:?}", paid.replay),
            ),
            (
                f.parts == 0 && f.sealed_profiles == 0,
                "the hub still holds token data".to_string(),
            ),
        ]
    }

    fn updates_checks(&self) -> Vec<(bool, String)> {
        let (u, fleet) = (&self.updated.report, &self.finished.fleet);
        let removals_wanted = self.updated.removals_wanted;
        vec![
            (
                fleet.decrypt_errors == 0 && fleet.check_errors == 0,
                format!("devices: {fleet:?}"),
            ),
            (
                u.views_equal == self.tokens,
                format!(
                    "the requestor's view differs from the hub's: {:?}",
                    u.view_mismatches.iter().take(5).collect::<Vec<_>>()
                ),
            ),
            (
                u.left_pending == 0 && u.left_dead == 0 && u.refused_by_hub == 0,
                format!(
                    "token updates: {} pending, {} dead, {} refused by the hub",
                    u.left_pending, u.left_dead, u.refused_by_hub
                ),
            ),
            (
                fleet.removals >= removals_wanted,
                format!(
                    "{} of {removals_wanted} deleted tokens removed from their devices",
                    fleet.removals
                ),
            ),
        ]
    }
}
