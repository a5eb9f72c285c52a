//! The gauges the store holds the truth of (backlogs, oldest ages, live campaigns, the store's
//! load), read and set just before a scrape renders: a handful of grouped reads per scrape,
//! nothing on the request paths.

use crate::domain::campaign::CampaignState;
use crate::error::Error;
use crate::hub::Hub;
use crate::telemetry::metrics;
use std::time::Duration;

/// How long a finished campaign's counts stay in the metrics, so that its end shows on a graph.
const FINISHED_CAMPAIGN_KEPT: Duration = Duration::from_secs(3600);

/// Sets every store-backed gauge from one read of each.
pub async fn refresh(hub: &Hub) -> Result<(), Error> {
    let now = hub.now_ms();
    let age = |oldest: Option<i64>| {
        Duration::from_millis(oldest.map_or(0, |t| u64::try_from(now - t).unwrap_or(0)))
    };
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    for b in hub.store.outbox_backlogs().await? {
        metrics::outbox(&b.owner, count(b.pending), age(b.oldest_ms), count(b.dead));
    }
    for (b, disabled) in hub.store.notification_backlogs().await? {
        metrics::requestor(
            &b.owner,
            count(b.pending),
            age(b.oldest_ms),
            count(b.dead),
            disabled,
        );
    }
    let (pending, oldest) = hub.store.pending_personalizations().await?;
    metrics::pending_personalizations(count(pending), age(oldest));
    let since = now - FINISHED_CAMPAIGN_KEPT.as_millis() as i64;
    for c in hub.store.live_campaign_counts(since).await? {
        metrics::campaign_running(&c.campaign_id, c.state == CampaignState::Running);
        for (step, n) in c.steps {
            metrics::campaign_tokens(&c.campaign_id, step.as_str(), count(n));
        }
    }
    let load = hub.store.load();
    metrics::store_load(load.writer_queue, load.pool);
    Ok(())
}
