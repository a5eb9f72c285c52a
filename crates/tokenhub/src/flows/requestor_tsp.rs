//! The TSP calls a token requestor waits for (card-on-file createToken, transaction credentials,
//! deletion), made under the outbox's rules in the time a waiting caller can give: every attempt
//! keeps to the TSP's agreed rate (the per-TSP pacer the outbox uses); `921`, `429`, `408`,
//! `5xx`, time-outs and connection errors are tried again after a jittered exponential backoff,
//! never before the TSP's `Retry-After`; the contract's refusals are final at once. When the
//! budget (`requestor_tsp_budget`) is spent, or the TSP asks for a wait that does not fit in it,
//! the requestor is told to come back (`503` with the TSP's wait as its `Retry-After`).
//!
//! Every attempt of one call carries the same `x-correlation-id`. For createToken it is derived
//! from the requestor's `Idempotency-Key`, and the contract has a repeat of a correlation id get
//! the token it made: an attempt whose answer was lost, or the requestor's own retry after a
//! `503`, never makes a second token.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::catalog::Tsp;
use crate::hub::Hub;
use crate::tsp_client::{TspCallError, Unsent};

/// Attempts of one call at most, the first included.
pub const MAX_ATTEMPTS: u32 = 4;
/// The first wait between attempts; it doubles at each, with equal jitter.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The wait a requestor is told when the TSP named none.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The longest wait passed on to a requestor (a TSP asking for more is asked again sooner).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Why a call did not succeed.
#[derive(Debug)]
pub enum Failed {
    /// The TSP refused the call, or answered outside the contract: trying again changes nothing.
    Final(TspCallError),
    /// The TSP was still unavailable when the budget ran out; come back after `retry_after`.
    Unavailable { why: String, retry_after: Duration },
}

/// Makes `attempt` until it succeeds, fails for good, or the budget is spent; `call` names it in
/// the logs and metrics (the contract's operation name).
pub async fn call<T, F, Fut>(
    hub: &Hub,
    tsp: &Tsp,
    call: &'static str,
    mut attempt: F,
) -> Result<T, Failed>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Unsent>>,
{
    let deadline = Instant::now() + hub.config.requestor_tsp_budget;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let started = Instant::now();
        // The pacing counts in the budget: a TSP whose agreed rate is used up is unavailable now.
        let outcome = tokio::time::timeout_at(deadline, async {
            pace(hub, tsp).await?;
            attempt().await
        })
        .await
        .unwrap_or_else(|_| {
            Err(TspCallError::Unavailable("no answer within the requestor's budget".into()).into())
        });
        let error = outcome.as_ref().err().map(|u| &u.error);
        super::tsp_calls::measured_outcome(&tsp.tsp_id, call, error, started.elapsed());
        let (why, asked) = match outcome {
            Ok(answer) => return Ok(answer),
            Err(Unsent {
                error: TspCallError::Unavailable(why),
                retry_after,
            }) => (why, retry_after),
            Err(Unsent { error, .. }) => return Err(Failed::Final(error)),
        };
        let wait = backoff(attempts).max(asked.unwrap_or_default());
        let next = Instant::now() + wait;
        tracing::warn!(call, tsp_id = %tsp.tsp_id, attempts, reason = %why, retry_after = ?asked, "TSP call failed");
        if attempts >= MAX_ATTEMPTS || next >= deadline {
            let retry_after = asked
                .unwrap_or(DEFAULT_RETRY_AFTER)
                .clamp(DEFAULT_RETRY_AFTER, MAX_RETRY_AFTER);
            return Err(Failed::Unavailable { why, retry_after });
        }
        tokio::time::sleep_until(next).await;
    }
}

/// Waits for a slot of the TSP's rate; a store that cannot tell makes the attempt unavailable
/// (tried again like a TSP that did not answer).
async fn pace(hub: &Hub, tsp: &Tsp) -> Result<(), Unsent> {
    if let Some(rate) = tsp.rate_limit {
        hub.tsp_pacer
            .acquire(&hub.store, &tsp.tsp_id, rate)
            .await
            .map_err(|e| TspCallError::Unavailable(format!("reading the TSP's rate: {e}")))?;
    }
    Ok(())
}

/// [`FIRST_BACKOFF`] doubled at each attempt, with equal jitter (half fixed, half random, as the
/// outbox's) so that the retries of many requestors spread out.
fn backoff(attempts: u32) -> Duration {
    let full = FIRST_BACKOFF.saturating_mul(1 << attempts.clamp(1, MAX_ATTEMPTS).saturating_sub(1));
    full / 2 + rand::Rng::gen_range(&mut rand::thread_rng(), Duration::ZERO..=full / 2)
}

/// The `Retry-After` a requestor is given, in whole seconds (rounded up, at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_within_its_jitter() {
        for attempts in 1..=MAX_ATTEMPTS {
            let full = FIRST_BACKOFF * (1 << (attempts - 1));
            let d = backoff(attempts);
            assert!(d >= full / 2 && d <= full, "{attempts}: {d:?}");
        }
        assert!(backoff(99) <= FIRST_BACKOFF * 8);
    }

    #[test]
    fn a_requestor_is_told_whole_seconds_rounded_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(MAX_RETRY_AFTER), 300);
    }
}
