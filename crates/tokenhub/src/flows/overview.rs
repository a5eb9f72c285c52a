//! What the operator console shows that no resource's own read gives: the hub at a glance (each
//! TSP's outbox and the hub's calls to it, the TSP API's answers by code, the requestors'
//! backlogs, pending personalizations, live campaigns, the store's load) and the lists it pages
//! through. Every read is bounded: the grouped reads the metrics' gauges already make (rows still
//! in flight only), counters read back from the metrics' own exporter, and pages of an index.

use crate::domain::campaign::{Campaign, Step};
use crate::domain::notification::Requestor;
use crate::error::Error;
use crate::hub::Hub;
pub use crate::store::gauges::{Backlog, CampaignCounts, StoreLoad};
use crate::telemetry::metrics;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a finished campaign stays on the overview.
const FINISHED_CAMPAIGN_SHOWN: Duration = Duration::from_secs(3600);
/// Requestors listed on the overview: those with the most waiting (the totals count them all).
pub const OVERVIEW_REQUESTORS: usize = 20;

/// One series of a counter: its labels and its value since the hub started.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterSample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A TSP as the overview shows it.
#[derive(Debug, Clone)]
pub struct TspOverview {
    pub tsp_id: String,
    pub base_url: String,
    pub rate_limit: Option<i64>,
    pub outbox: Backlog,
    /// The hub's calls to it since start, by `call` and `outcome`.
    pub calls: Vec<CounterSample>,
}

/// The requestors' backlogs: totals over all, and the [`OVERVIEW_REQUESTORS`] with the most
/// waiting (pending and dead), each with whether its endpoint is disabled.
#[derive(Debug, Clone, Default)]
pub struct RequestorsOverview {
    pub count: usize,
    pub pending: i64,
    pub dead: i64,
    pub disabled: usize,
    pub oldest_pending_ms: Option<i64>,
    pub busiest: Vec<(Backlog, bool)>,
}

#[derive(Debug, Clone)]
pub struct Overview {
    pub now_ms: i64,
    pub tsps: Vec<TspOverview>,
    /// TSP API requests answered since start, by `tsp`, `operation` and `response_code`.
    pub tsp_api: Vec<CounterSample>,
    pub requestors: RequestorsOverview,
    /// Personalizations pending, and when the oldest was queued.
    pub personalizations: (i64, Option<i64>),
    pub campaigns: Vec<CampaignCounts>,
    pub store: StoreLoad,
}

/// The hub at a glance.
pub async fn overview(hub: &Hub) -> Result<Overview, Error> {
    let now_ms = hub.now_ms();
    let counters = metrics::render().unwrap_or_default();
    let calls = samples(&counters, metrics::TSP_CALLS);
    let backlogs = hub.store.outbox_backlogs().await?;
    let tsps = hub
        .store
        .tsps()
        .await?
        .into_iter()
        .map(|t| TspOverview {
            outbox: backlogs
                .iter()
                .find(|b| b.owner == t.tsp_id)
                .cloned()
                .unwrap_or_default(),
            calls: calls
                .iter()
                .filter(|s| s.labels.get("tsp") == Some(&t.tsp_id))
                .cloned()
                .collect(),
            tsp_id: t.tsp_id,
            base_url: t.base_url,
            rate_limit: t.rate_limit,
        })
        .collect();
    let since = now_ms - FINISHED_CAMPAIGN_SHOWN.as_millis() as i64;
    Ok(Overview {
        now_ms,
        tsps,
        tsp_api: samples(&counters, metrics::TSP_API_REQUESTS),
        requestors: requestors_overview(hub.store.notification_backlogs().await?),
        personalizations: hub.store.pending_personalizations().await?,
        campaigns: hub.store.live_campaign_counts(since).await?,
        store: hub.store.load(),
    })
}

/// A page read with one row more than `limit`: the page, and the key of its last row when that
/// one more row shows a next page.
pub fn paged<T>(
    mut page: Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let more = page.len() as i64 > limit;
    page.truncate(usize::try_from(limit).unwrap_or(0));
    let next = more.then(|| page.last().map(key)).flatten();
    (page, next)
}

fn requestors_overview(mut all: Vec<(Backlog, bool)>) -> RequestorsOverview {
    let mut o = RequestorsOverview {
        count: all.len(),
        ..Default::default()
    };
    for (b, disabled) in &all {
        o.pending += b.pending;
        o.dead += b.dead;
        o.disabled += usize::from(*disabled);
        o.oldest_pending_ms = match (o.oldest_pending_ms, b.oldest_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    all.sort_by_key(|(b, disabled)| {
        (
            std::cmp::Reverse((*disabled, b.dead + b.pending)),
            b.owner.clone(),
        )
    });
    all.truncate(OVERVIEW_REQUESTORS);
    o.busiest = all;
    o
}

/// A campaign and its tokens per step, as a list shows it.
pub type CampaignSummary = (Campaign, Vec<(Step, i64)>);

/// A page of campaigns, newest first, and the key of the next page's start if there is one.
pub async fn campaigns(
    hub: &Hub,
    limit: i64,
    before: Option<(i64, &str)>,
) -> Result<(Vec<CampaignSummary>, Option<(i64, String)>), Error> {
    let mut page = hub.store.campaigns_page(limit + 1, before).await?;
    let more = page.len() as i64 > limit;
    page.truncate(usize::try_from(limit).unwrap_or(0));
    let next = more
        .then(|| page.last().map(|c| (c.created_ms, c.campaign_id.clone())))
        .flatten();
    let mut out = Vec::with_capacity(page.len());
    for c in page {
        let steps = hub.store.campaign_steps(&c.campaign_id).await?;
        out.push((c, steps));
    }
    Ok((out, next))
}

/// A page of requestors by id with their backlog, and the id the next page starts after.
pub async fn requestors(
    hub: &Hub,
    limit: i64,
    after: Option<&str>,
) -> Result<(Vec<(Requestor, Backlog)>, Option<String>), Error> {
    let page = hub.store.requestors_page(limit + 1, after).await?;
    let (page, next) = paged(page, limit, |r| r.requestor_id.clone());
    let backlogs = hub.store.notification_backlogs().await?;
    let out = page
        .into_iter()
        .map(|r| {
            let b = backlogs
                .iter()
                .find(|(b, _)| b.owner == r.requestor_id)
                .map(|(b, _)| b.clone())
                .unwrap_or_default();
            (r, b)
        })
        .collect();
    Ok((out, next))
}

/// The series of one counter `family` in Prometheus's text format (the exporter's own output, so
/// the console shows exactly what a scraper sees).
pub fn samples(text: &str, family: &str) -> Vec<CounterSample> {
    text.lines()
        .filter_map(|line| line.strip_prefix(family))
        .filter_map(|rest| {
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => {
                    let (labels, value) = split_labels(r)?;
                    (labels, value)
                }
                None if rest.starts_with(' ') => (BTreeMap::new(), rest),
                None => return None,
            };
            let value = value.split_whitespace().next()?.parse().ok()?;
            Some(CounterSample { labels, value })
        })
        .collect()
}

/// `a="x",b="y"} 3` → the labels and what follows the `}`.
fn split_labels(s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.to_string(), value);
        rest = &after[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_back_from_the_text_format() {
        let text = "# TYPE tokenhub_tsp_calls_total counter\n\
            tokenhub_tsp_calls_total{tsp=\"a\",call=\"createToken\",outcome=\"done\"} 12\n\
            tokenhub_tsp_calls_total{tsp=\"b\\\"q\",call=\"x\",outcome=\"refused\"} 3\n\
            tokenhub_tsp_calls_totally{tsp=\"a\"} 9\n\
            tokenhub_other 1\n\
            tokenhub_tsp_api_requests_total 7\n";
        let calls = samples(text, "tokenhub_tsp_calls_total");
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0].labels["tsp"], "a");
        assert_eq!(calls[0].labels["outcome"], "done");
        assert_eq!(calls[0].value, 12.0);
        assert_eq!(calls[1].labels["tsp"], "b\"q");
        assert_eq!(calls[1].value, 3.0);
        let api = samples(text, "tokenhub_tsp_api_requests_total");
        assert_eq!(api.len(), 1);
        assert!(api[0].labels.is_empty());
        assert!(samples("x{a=\"unterminated 1", "x").is_empty());
    }

    #[test]
    fn the_overview_lists_the_requestors_with_the_most_waiting() {
        let b = |owner: &str, pending, dead, oldest| Backlog {
            owner: owner.into(),
            pending,
            oldest_ms: oldest,
            dead,
        };
        let mut all = vec![
            (b("quiet", 0, 0, None), false),
            (b("gone", 0, 0, None), true),
        ];
        for i in 0..30 {
            all.push((b(&format!("r{i:02}"), i, 1, Some(1000 - i)), false));
        }
        let o = requestors_overview(all);
        assert_eq!((o.count, o.disabled), (32, 1));
        assert_eq!((o.pending, o.dead), ((0..30).sum::<i64>(), 30));
        assert_eq!(o.oldest_pending_ms, Some(971));
        assert_eq!(o.busiest.len(), OVERVIEW_REQUESTORS);
        assert_eq!(o.busiest[0].0.owner, "gone", "a disabled endpoint first");
        assert_eq!(o.busiest[1].0.owner, "r29");
    }
}
