//! The switches that make the requestor misbehave on purpose, so that tests and benchmarks can
//! watch the hub retry, back off, give up or disable the endpoint.
//!
//! Changed at run time through the handle ([`super::RequestorSim::misbehave`] and its
//! shortcuts) or with `POST /sim/misbehaviour` and a [`MisbehaviourRequest`]; read back as a
//! [`MisbehaviourState`] (`GET /sim/misbehaviour`, `GET /sim/status`).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

/// A change of misbehaviour; absent fields leave the current setting as it is.
///
/// JSON: `{"reset": bool, "failNext": N, "retryAfter": S, "statusNext": {"code", "count",
/// "retryAfter"?}, "delayMs": MS, "downForMs": MS}`. `reset` first clears everything, then the
/// other fields apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MisbehaviourRequest {
    /// Clear every switch first.
    pub reset: bool,
    /// Answer `503` to the next N notifications without applying them (replaces the remaining
    /// count; 0 stops).
    pub fail_next: Option<u32>,
    /// With `failNext`: the `Retry-After` (seconds) of those `503`s; none when absent.
    pub retry_after: Option<u64>,
    /// Answer this status to the next `count` notifications without applying them (after any
    /// `failNext` ones).
    pub status_next: Option<StatusNext>,
    /// Answer every notification only after this many milliseconds (0: at once). The update is
    /// applied (or refused) first, then the answer waits.
    pub delay_ms: Option<u64>,
    /// Close the listener now (no connection accepted, open ones closed once idle) and listen
    /// again on the same port after this many milliseconds.
    pub down_for_ms: Option<u64>,
}

/// An arbitrary answer to the next `count` notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusNext {
    /// The HTTP status, 200..=599 (e.g. 400, 401, 404, 410, 429).
    pub code: u16,
    /// How many notifications get it.
    pub count: u32,
    /// `Retry-After` (seconds) to send with it.
    #[serde(default)]
    pub retry_after: Option<u64>,
}

/// How the requestor misbehaves now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MisbehaviourState {
    /// Notifications still to be answered `503`.
    pub fail_next: u32,
    /// Their `Retry-After`, seconds.
    pub retry_after: Option<u64>,
    /// The arbitrary status still to be answered (`count` is what remains).
    pub status_next: Option<StatusNext>,
    /// The delay before every answer, milliseconds.
    pub delay_ms: Option<u64>,
    /// Whether the listener is closed right now.
    pub down: bool,
}

/// A misbehaviour request that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MisbehaviourError {
    /// `statusNext.code` outside 200..=599.
    #[error("statusNext.code must be an HTTP status between 200 and 599, not {0}")]
    BadStatus(u16),
    /// `downForMs` while the simulator is stopping.
    #[error("the simulator is stopping")]
    Stopped,
}

/// What to answer a notification instead of handling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forced {
    pub(crate) status: StatusCode,
    pub(crate) retry_after: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    fail_next: u32,
    retry_after: Option<u64>,
    status_next: Option<StatusNext>,
    delay: Option<Duration>,
}

/// The switches, behind one lock. `down` lives with the listener.
#[derive(Debug, Default)]
pub(crate) struct Switches {
    inner: Mutex<Inner>,
}

impl Switches {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change is a few assignments that cannot panic half-way.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks and applies everything but `downForMs` (the listener's business).
    pub(crate) fn apply(&self, request: &MisbehaviourRequest) -> Result<(), MisbehaviourError> {
        if let Some(next) = &request.status_next {
            if !(200..=599).contains(&next.code) {
                return Err(MisbehaviourError::BadStatus(next.code));
            }
        }
        let mut inner = self.lock();
        if request.reset {
            *inner = Inner::default();
        }
        if let Some(n) = request.fail_next {
            inner.fail_next = n;
            inner.retry_after = request.retry_after;
        } else if request.retry_after.is_some() {
            inner.retry_after = request.retry_after;
        }
        if let Some(next) = request.status_next {
            inner.status_next = (next.count > 0).then_some(next);
        }
        if let Some(ms) = request.delay_ms {
            inner.delay = (ms > 0).then(|| Duration::from_millis(ms));
        }
        Ok(())
    }

    /// The state, `down` aside.
    pub(crate) fn state(&self, down: bool) -> MisbehaviourState {
        let inner = self.lock();
        MisbehaviourState {
            fail_next: inner.fail_next,
            retry_after: inner.retry_after,
            status_next: inner.status_next,
            delay_ms: inner
                .delay
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            down,
        }
    }

    /// Decides one notification's fate: a forced answer (consuming one of the counts), or
    /// `None` to handle it; and the delay before answering.
    pub(crate) fn take(&self) -> (Option<Forced>, Option<Duration>) {
        let mut inner = self.lock();
        let delay = inner.delay;
        if inner.fail_next > 0 {
            inner.fail_next -= 1;
            let forced = Forced {
                status: StatusCode::SERVICE_UNAVAILABLE,
                retry_after: inner.retry_after,
            };
            return (Some(forced), delay);
        }
        if let Some(next) = &mut inner.status_next {
            let forced = Forced {
                status: StatusCode::from_u16(next.code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                retry_after: next.retry_after,
            };
            next.count = next.count.saturating_sub(1);
            if next.count == 0 {
                inner.status_next = None;
            }
            return (Some(forced), delay);
        }
        (None, delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_consumed_fail_next_first() {
        let s = Switches::default();
        s.apply(&MisbehaviourRequest {
            fail_next: Some(2),
            retry_after: Some(3),
            status_next: Some(StatusNext {
                code: 410,
                count: 1,
                retry_after: None,
            }),
            delay_ms: Some(5),
            ..Default::default()
        })
        .unwrap();
        let delay = Some(Duration::from_millis(5));
        let fail = Forced {
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after: Some(3),
        };
        assert_eq!(s.take(), (Some(fail), delay));
        assert_eq!(s.take(), (Some(fail), delay));
        let gone = Forced {
            status: StatusCode::GONE,
            retry_after: None,
        };
        assert_eq!(s.take(), (Some(gone), delay));
        assert_eq!(s.take(), (None, delay));
        assert_eq!(s.state(false).status_next, None);
        s.apply(&MisbehaviourRequest {
            reset: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.state(false), MisbehaviourState::default());
        assert_eq!(s.take(), (None, None));
    }

    #[test]
    fn the_json_is_camel_case_and_checked() {
        let r: MisbehaviourRequest = serde_json::from_str(
            r#"{"failNext": 1, "statusNext": {"code": 429, "count": 2, "retryAfter": 1}, "downForMs": 10}"#,
        )
        .unwrap();
        assert_eq!(r.fail_next, Some(1));
        assert_eq!(r.status_next.unwrap().retry_after, Some(1));
        assert_eq!(r.down_for_ms, Some(10));
        let bad = MisbehaviourRequest {
            status_next: Some(StatusNext {
                code: 99,
                count: 1,
                retry_after: None,
            }),
            ..Default::default()
        };
        assert!(Switches::default().apply(&bad).is_err());
    }
}
