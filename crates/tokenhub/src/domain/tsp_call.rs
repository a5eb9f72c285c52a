//! The calls the hub owes a TSP, queued in the outbox in the transaction of the change that
//! caused them and made by the outbox worker until the TSP acknowledges (or refuses for good).

use super::named::named_enum;

named_enum! {
    /// A call the outbox makes to a token's TSP.
    pub enum TspCall ("a TSP call") {
        /// `PUT {tsp}/tokens/{tokenId}/state`.
        UpdateTokenState = "updateTokenState",
        /// `PUT {tsp}/tokens/{tokenId}/card`.
        UpdateToken = "updateToken",
        /// `POST {tsp}/tokens/{tokenId}/reperso`.
        RepersoToken = "repersoToken",
        /// `PUT {tsp}/tokens/{tokenId}/newDataStatus`.
        NewDataStatus = "submitNewTokenDataStatus",
    }
}

impl TspCall {
    /// Whether the call is a `PUT` (else a `POST`), and its path under the TSP's base URL.
    pub fn route(self, token_id: &str) -> (bool, String) {
        match self {
            TspCall::UpdateTokenState => (true, format!("/tokens/{token_id}/state")),
            TspCall::UpdateToken => (true, format!("/tokens/{token_id}/card")),
            TspCall::RepersoToken => (false, format!("/tokens/{token_id}/reperso")),
            TspCall::NewDataStatus => (true, format!("/tokens/{token_id}/newDataStatus")),
        }
    }
}

named_enum! {
    /// Where a queued call stands.
    pub enum OutboxState ("an outbox state") {
        /// Waiting to be made (or being made, while its claim holds).
        Pending = "PENDING",
        Done = "DONE",
        /// Refused for good.
        Dead = "DEAD",
    }
}

/// How one attempt at a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    Done,
    /// Try again at `at` (ms).
    Retry {
        at: i64,
        error: String,
    },
    /// Refused for good.
    Dead {
        error: String,
    },
}

/// A claimed call, to make now.
#[derive(Debug, Clone)]
pub struct QueuedCall {
    pub id: i64,
    pub call: TspCall,
    pub token_id: String,
    pub tsp_id: String,
    pub correlation_id: String,
    /// The JSON body of the call.
    pub payload: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
    /// The row's claim version this claim set: its outcome is recorded only while the row still
    /// holds it (a claim taken over after its lease records nothing).
    pub claim_version: i64,
}

/// A call to queue.
#[derive(Debug, Clone, Copy)]
pub struct NewCall<'a> {
    pub call: TspCall,
    pub token_id: &'a str,
    pub tsp_id: &'a str,
    pub correlation_id: &'a str,
    pub payload: &'a str,
}
