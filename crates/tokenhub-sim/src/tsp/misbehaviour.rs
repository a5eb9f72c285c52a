//! Switches that make the simulated TSP misbehave on purpose, so that tests can prove the hub
//! notices: recover with new data, drop recoveries, answer slowly, rate-limit.
//!
//! They change at run time: [`crate::TspSimHandle::set_misbehaviour`], or
//! `PUT /sim/misbehaviour` with the JSON of [`Misbehaviour`] (`GET` reads it back) for a simulator
//! running as its own process.
//!
//! The rate limit is a **token bucket**: it holds at most R calls (a burst of one second's worth)
//! and refills continuously at R per second; a call finding it empty is answered `503` (empty
//! body, `Retry-After: 1`, `x-correlation-id` echoed). So a caller pacing itself at R/s or less
//! never sees a 503, whatever the phase of its clock against the simulator's; one going faster
//! sees 503s once the burst is spent. It counts every call of the outgoing API (createToken,
//! repersoToken, updateTokenState, newDataStatus), answered or refused, but not `healthCheck`
//! and not `/sim/*`. Changing the misbehaviour refills the bucket.
//!
//! `slow` delays the answer to every call of the outgoing API, `healthCheck` included (a slow
//! TSP is slow to everything), `/sim/*` excluded. The rate limit decides on arrival, before the
//! delay.
//!
//! `down_for` takes the TSP down from the moment it is set (or from the start) for that long:
//! every call of the outgoing API, `healthCheck` included, is answered `503` (empty body,
//! `Retry-After: 1`, the id header echoed) and does nothing; `/sim/*` keeps answering. Then it is
//! back, on the same port, by itself. On the command line: `--misbehave down-for=30s`.
//!
//! `fail_percent` answers that share of the calls the rate limit admitted (`healthCheck` aside)
//! at random with `503` or `429` (half each, `Retry-After: 1`), doing nothing; `stall_percent`
//! holds that share of them for `stall` before handling them: a TSP that is flaky and sometimes
//! stuck, as a chaos run wants it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::SimState;

/// How the simulator misbehaves; the default is not at all.
///
/// JSON (`/sim/misbehaviour`): `{"newDataOnRecovery": bool, "dropReperso": bool, "slowMs":
/// number|null, "rateLimit": number|null, "downForMs": number|null, "failPercent":
/// number|null, "stallPercent": number|null, "stallMs": number|null}`; absent fields are off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Misbehaviour {
    /// Recover with a NEW `cmk_ac` (a fresh random key, encrypted like the real one) instead of
    /// the token's existing one; the other elements stay as they are. The vault is not changed:
    /// the token keeps (and keeps validating cryptograms with) its existing key, as it would if
    /// the hub refuses the new one (431), which it must.
    pub new_data_on_recovery: bool,
    /// Answer 204 to `repersoToken` but never send `/newData`.
    pub drop_reperso: bool,
    /// Answer every call of the outgoing API only after this delay.
    #[serde(rename = "slowMs", with = "millis")]
    pub slow: Option<Duration>,
    /// Answer 503 above this many calls per second on the outgoing API (token bucket, see the
    /// module documentation). `Some(0)` refuses every call.
    pub rate_limit: Option<u32>,
    /// Be down (every call of the outgoing API answered 503) for this long from when it is set.
    #[serde(rename = "downForMs", with = "millis")]
    pub down_for: Option<Duration>,
    /// Answer this share (percent) of the admitted calls `503` or `429` at random.
    pub fail_percent: Option<u8>,
    /// Hold this share (percent) of the admitted calls for [`Self::stall`] first.
    pub stall_percent: Option<u8>,
    /// How long a stalled call is held (2 s when `stall_percent` is set without it).
    #[serde(rename = "stallMs", with = "millis")]
    pub stall: Option<Duration>,
}

impl Misbehaviour {
    /// Turns on one switch written as on the command line: `down-for=30s`, `slow=500ms`,
    /// `rate-limit=20`, `drop-reperso`, `new-data-on-recovery`.
    pub fn switch_on(&mut self, switch: &str) -> Result<(), String> {
        let (name, value) = match switch.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (switch.trim(), None),
        };
        let duration = |v: Option<&str>| {
            let v = v.ok_or_else(|| format!("{name} needs a duration, e.g. {name}=30s"))?;
            humantime::parse_duration(v)
                .map_err(|_| format!("{name}: {v:?} is not a duration such as 500ms or 30s"))
        };
        match name {
            "down-for" => self.down_for = Some(duration(value)?),
            "slow" => self.slow = Some(duration(value)?),
            "rate-limit" => {
                let v = value.ok_or("rate-limit needs a number of calls per second")?;
                self.rate_limit = Some(v.parse().map_err(|_| format!("rate-limit: {v:?}"))?);
            }
            "fail-percent" | "stall-percent" => {
                let v =
                    value.ok_or_else(|| format!("{name} needs a percentage, e.g. {name}=30"))?;
                let pct: u8 = v
                    .parse()
                    .ok()
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| format!("{name}: {v:?} is not a percentage"))?;
                if name == "fail-percent" {
                    self.fail_percent = Some(pct);
                } else {
                    self.stall_percent = Some(pct);
                }
            }
            "stall" => self.stall = Some(duration(value)?),
            "drop-reperso" if value.is_none() => self.drop_reperso = true,
            "new-data-on-recovery" if value.is_none() => self.new_data_on_recovery = true,
            _ => {
                return Err(format!(
                    "unknown misbehaviour {switch:?}: down-for=DURATION, slow=DURATION, \
                     rate-limit=N, fail-percent=N, stall-percent=N, stall=DURATION, \
                     drop-reperso, new-data-on-recovery"
                ))
            }
        }
        Ok(())
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// The current misbehaviour and the rate limit's bucket, behind one lock.
pub(crate) struct Switches {
    inner: Mutex<Inner>,
}

struct Inner {
    current: Misbehaviour,
    bucket: Bucket,
    /// Until when the simulator is down (`down_for` after it was set).
    down_until: Option<Instant>,
}

/// A token bucket of `rate` capacity refilled at `rate` per second.
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl Bucket {
    fn full(rate: Option<u32>, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate.unwrap_or(0)),
            refilled_at: now,
        }
    }

    /// Takes one call's token; false when the bucket is empty.
    fn take(&mut self, rate: u32, now: Instant) -> bool {
        let rate = f64::from(rate);
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Switches {
    pub(crate) fn new(initial: Misbehaviour) -> Self {
        let now = Instant::now();
        let bucket = Bucket::full(initial.rate_limit, now);
        Self {
            inner: Mutex::new(Inner {
                down_until: initial.down_for.map(|d| now + d),
                current: initial,
                bucket,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update is a plain assignment: a poisoned lock is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn get(&self) -> Misbehaviour {
        self.lock().current.clone()
    }

    /// Replaces the misbehaviour and refills the bucket.
    pub(crate) fn set(&self, next: Misbehaviour) {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.bucket = Bucket::full(next.rate_limit, now);
        inner.down_until = next.down_for.map(|d| now + d);
        inner.current = next;
    }

    /// Whether the simulator is down on purpose now.
    fn down(&self, now: Instant) -> bool {
        self.lock().down_until.is_some_and(|until| now < until)
    }

    /// Counts one call against the rate limit; false when it must be answered 503.
    fn admit(&self, now: Instant) -> bool {
        let mut inner = self.lock();
        match inner.current.rate_limit {
            None => true,
            Some(rate) => inner.bucket.take(rate, now),
        }
    }

    fn slow(&self) -> Option<Duration> {
        self.lock().current.slow
    }

    /// What chance decides for an admitted call: refused (with which status), or stalled.
    fn chance(&self) -> Chance {
        use rand::Rng;
        let current = self.lock().current.clone();
        let mut rng = rand::thread_rng();
        let roll = |pct: Option<u8>, rng: &mut rand::rngs::ThreadRng| {
            pct.is_some_and(|p| rng.gen_range(0..100u8) < p)
        };
        if roll(current.fail_percent, &mut rng) {
            let status = if rng.gen_bool(0.5) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::TOO_MANY_REQUESTS
            };
            return Chance::Refuse(status);
        }
        if roll(current.stall_percent, &mut rng) {
            return Chance::Stall(current.stall.unwrap_or(DEFAULT_STALL));
        }
        Chance::Pass
    }
}

/// How long a stalled call is held when the stall is not given.
const DEFAULT_STALL: Duration = Duration::from_secs(2);

enum Chance {
    Pass,
    Refuse(StatusCode),
    Stall(Duration),
}

/// The middleware around the outgoing API: rate limit (not for `healthCheck`), then the delay.
pub(crate) async fn guard(
    State(state): State<Arc<SimState>>,
    request: Request,
    next: Next,
) -> Response {
    if state.switches.down(Instant::now()) {
        state.counters.down_refused();
        return unavailable(&request);
    }
    let limited = !request.uri().path().ends_with("/healthCheck");
    let admitted = !limited || state.switches.admit(Instant::now());
    if let Some(delay) = state.switches.slow() {
        tokio::time::sleep(delay).await;
    }
    if admitted {
        if limited {
            state.counters.outgoing_admitted();
            match state.switches.chance() {
                Chance::Pass => {}
                Chance::Refuse(status) => {
                    state.counters.refused_on_purpose();
                    return refused(&request, status);
                }
                Chance::Stall(d) => {
                    state.counters.stalled();
                    tokio::time::sleep(d).await;
                }
            }
        }
        return next.run(request).await;
    }
    state.counters.rate_limited();
    tracing::debug!(path = request.uri().path(), "rate limit: 503");
    unavailable(&request)
}

/// `503`, empty, `Retry-After: 1`, the call's id header echoed.
fn unavailable(request: &Request) -> Response {
    refused(request, StatusCode::SERVICE_UNAVAILABLE)
}

/// `status`, empty, `Retry-After: 1`, the call's id header echoed.
fn refused(request: &Request, status: StatusCode) -> Response {
    let mut response = status.into_response();
    let headers = response.headers_mut();
    headers.insert("retry-after", HeaderValue::from_static("1"));
    for name in ["x-correlation-id", "x-request-id"] {
        if let Some(id) = request.headers().get(name) {
            headers.insert(name, id.clone());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_of_r_then_r_per_second() {
        let start = Instant::now();
        let mut bucket = Bucket::full(Some(4), start);
        assert!((0..4).all(|_| bucket.take(4, start)));
        assert!(!bucket.take(4, start), "the burst is spent");
        assert!(!bucket.take(4, start + Duration::from_millis(200)));
        // 0.2 s + 0.1 s at 4/s = 1.2 tokens: one call.
        assert!(bucket.take(4, start + Duration::from_millis(300)));
        assert!(!bucket.take(4, start + Duration::from_millis(300)));
        // Never more than R in store, however long it waits.
        let later = start + Duration::from_secs(60);
        assert!((0..4).all(|_| bucket.take(4, later)));
        assert!(!bucket.take(4, later));
    }

    #[test]
    fn a_caller_at_the_rate_is_never_refused() {
        let start = Instant::now();
        let mut bucket = Bucket::full(Some(50), start);
        for i in 0..1000u64 {
            assert!(
                bucket.take(50, start + Duration::from_millis(20 * i)),
                "call {i}"
            );
        }
    }

    #[test]
    fn zero_refuses_everything_and_none_admits_everything() {
        let switches = Switches::new(Misbehaviour {
            rate_limit: Some(0),
            ..Misbehaviour::default()
        });
        assert!(!switches.admit(Instant::now()));
        switches.set(Misbehaviour::default());
        assert!((0..1000).all(|_| switches.admit(Instant::now())));
    }

    #[test]
    fn the_json_form_uses_camel_case_and_milliseconds() {
        let m = Misbehaviour {
            new_data_on_recovery: true,
            drop_reperso: false,
            slow: Some(Duration::from_millis(1500)),
            rate_limit: Some(20),
            down_for: Some(Duration::from_secs(2)),
            fail_percent: Some(30),
            stall_percent: Some(5),
            stall: Some(Duration::from_secs(2)),
        };
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"newDataOnRecovery": true, "dropReperso": false,
                "slowMs": 1500, "rateLimit": 20, "downForMs": 2000, "failPercent": 30,
                "stallPercent": 5, "stallMs": 2000})
        );
        assert_eq!(serde_json::from_value::<Misbehaviour>(json).unwrap(), m);
        assert_eq!(
            serde_json::from_str::<Misbehaviour>("{}").unwrap(),
            Misbehaviour::default()
        );
        assert!(serde_json::from_str::<Misbehaviour>(r#"{"rateLimit": -1}"#).is_err());
    }

    #[test]
    fn switches_read_from_the_command_line_and_down_for_ends_by_itself() {
        let mut m = Misbehaviour::default();
        m.switch_on("down-for=150ms").unwrap();
        m.switch_on("drop-reperso").unwrap();
        m.switch_on("rate-limit=5").unwrap();
        assert_eq!(m.down_for, Some(Duration::from_millis(150)));
        assert!(m.drop_reperso && m.rate_limit == Some(5));
        m.switch_on("fail-percent=30").unwrap();
        m.switch_on("stall-percent=5").unwrap();
        m.switch_on("stall=2s").unwrap();
        assert_eq!((m.fail_percent, m.stall_percent), (Some(30), Some(5)));
        assert_eq!(m.stall, Some(Duration::from_secs(2)));
        assert!(m.switch_on("fail-percent=101").is_err());
        assert!(m.switch_on("down-for").is_err());
        assert!(m.switch_on("down-for=soon").is_err());
        assert!(m.switch_on("fly").is_err());
        m.fail_percent = None;
        let switches = Switches::new(m);
        let now = Instant::now();
        assert!(switches.down(now));
        assert!(!switches.down(now + Duration::from_millis(200)));
        switches.set(Misbehaviour::default());
        assert!(!switches.down(Instant::now()));
    }
}
