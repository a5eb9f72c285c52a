//! Simulators that play the hub's counterparts over real HTTP: a payment network's Token Service
//! Provider (TSP), and a fleet of wallets (devices) that receive profiles and pay at the TSP.
//!
//! The TSP simulator is an independent implementation of the other side of the TSP contract
//! (the TSP outgoing API v2, which it serves, and the incoming API v2, which it calls). It deliberately does not depend on the `tokenhub` crate: sharing the hub's types would
//! let a misreading of the contract pass both sides unnoticed. Only the contract's cryptography
//! comes from `tokenhub-crypto`. The device fleet follows the same rule for the wallet API: it
//! parses profiles and opens HPKE with its own code, from the contract.
//!
//! # What it does
//!
//! - `POST /tsp/trapi/v2.0/tokens` (createToken): validates like a real TSP (`x-correlation-id`
//!   1..64, `issuerId` 10 characters, `walletCardRefId` 1..64, …; errors are
//!   `400 {"responseCode", "errorMessage"}` with 111 missing, 112 malformed, 113 unknown issuer),
//!   creates a token (`tokenId` = `TKN` + 29 hex digits), answers `200 {"tokenId", "tokenInfo":
//!   {"exp": MMYY three years ahead, "last4"}}`, and then sends the token's data preparation to the
//!   hub: `PUT {hub}/trapi/v2.0/tokens/{tokenId}/data`, spread over `partial_calls` calls, retried
//!   on connection errors, 5xx and 921, and on 119 for a short while after the answer (the hub may
//!   not have recorded the token yet). A createToken repeated with the same `x-correlation-id` and
//!   card gets the same token back.
//! - `GET /tsp/trapi/v2.0/healthCheck`: `204`, echoing `x-request-id` (`400` 111 without it).
//! - `PUT /tsp/trapi/v2.0/tokens/{tokenId}/state` (updateTokenState) `{"issuerId", "state":
//!   "ACTIVE"|"SUSPENDED"|"DELETED", "reason"?}` → 204; 111/112 validation, 119 unknown token,
//!   113 wrong issuer, 432 for any change out of `DELETED`; the same state again is 204. A token
//!   is `INACTIVE` from createToken until the hub makes it `ACTIVE`.
//! - `PUT /tsp/trapi/v2.0/tokens/{tokenId}/newDataStatus` (submitNewTokenDataStatus)
//!   `{"issuerId", "status": "SUCCESS"|"FAILURE", "errorCode"?}` → 204; SUCCESS forgets the
//!   token's last ATC (the re-personalized device restarts at 0), once per `x-correlation-id`.
//! - `POST /tsp/trapi/v2.0/tokens/{tokenId}/reperso` (repersoToken) `{"issuerId", "reason"?:
//!   "PROFILE_UPDATE"}` with `x-correlation-id: C` → 204 at once; then the token's EXISTING data
//!   (never new data: the same elements and, encryption being deterministic, the same wire values
//!   as its `/data`) goes to the hub with `PUT {hub}/trapi/v2.0/tokens/{tokenId}/newData`,
//!   `x-correlation-id: C` on every part and retry, body `{"issuerId", "tokenPersoInfo"}`, spread
//!   over `partial_calls` calls. Retried on connection errors, 5xx and 921; anything else (431,
//!   432, 321, 119, …) is final and ends the recovery. The same C again while its recovery
//!   is in flight, done or dropped → 204 and nothing more; after a failed one it starts over.
//!   Refusals: 111/112, 119 unknown token, 113 wrong issuer, 432 for a `DELETED` token.
//! - `GET|PUT /sim/misbehaviour`: the [`Misbehaviour`] switches as JSON (`{"newDataOnRecovery",
//!   "dropReperso", "slowMs", "rateLimit"}`, absent = off), also
//!   [`TspSimHandle::set_misbehaviour`] / [`TspSimHandle::misbehaviour`] and
//!   [`TspSimConfig::misbehaviour`] from the start: recover with a fresh random `cmk_ac` (on the
//!   wire only: the vault keeps the existing key, which the hub must insist on with 431); answer
//!   repersoToken 204 but never send `/newData`; delay every answer of the outgoing API
//!   (healthCheck included, `/sim/*` not); answer `503` (empty body, `Retry-After: 1`) above R
//!   calls per second on the outgoing API except healthCheck — a token bucket of R calls
//!   refilled at R/s, so a caller paced at ≤ R/s never sees a 503 (counted in `rateLimited`).
//! - `POST /sim/transactions` `{"tokenId", "atc", "amount", "currency", "unpredictableNumber",
//!   "cryptogram"}` → `200 {"approved", "reason"}`: approved only for an `ACTIVE` token, with
//!   the cryptogram its `cmk_ac` gives ([`emv`]) and an ATC greater than the last one accepted;
//!   otherwise `TOKEN_NOT_ACTIVE`, `BAD_CRYPTOGRAM`, `REPLAY` or `UNKNOWN_TOKEN`.
//! - Cards on file (`tsp::cof_api`): `POST /tsp/trapi/v2.0/cardOnFileTokens` (createToken for a
//!   card a requestor encrypted to the simulator's key: [`seal_card`], `GET /sim/encryption-key`),
//!   `…/cardOnFileTokens/{tokenId}/transactionCredentials`, `DELETE …/cardOnFileTokens/{tokenId}`;
//!   `POST /sim/authorizations` (each cryptogram authorizes its own amount and merchant once) and
//!   `POST /sim/cardOnFile/{tokenId}/renewal` (a new token PAN, sent to the hub as an update).
//! - `GET /sim/status`: counters, see [`TspSimStatus`]; `GET /sim/tokens/{tokenId}`: one token's
//!   state, last ATC and transaction counts ([`SimTokenView`]).
//!
//! # The data elements (the contract with the hub's demo profile)
//!
//! | name | value | keyIndex |
//! |---|---|---|
//! | `cmk_ac` | 16-byte card master key for application cryptograms, encrypted (CBC, zero IV, ISO 9797-1 method 2 padding) under the key set's `kek`; upper-case hex of the ciphertext (32 bytes under an AES KEK, 24 under 3DES) | the `kek`'s `keyIndex` |
//! | `cmk_rp` | a second 16-byte card master key, for remote payment; same treatment | the `kek`'s |
//! | `track2_data` | track 2 equivalent data as packed nibbles: token PAN (16 digits, Luhn-valid) `D` YYMM (= `tokenInfo.exp`) service code `201`, 11 discretionary digits, `F` pad: 18 bytes, encrypted the same way under the `dek`; upper-case hex | the `dek`'s |
//! | `psn` | PAN sequence number, `00`..`99`, plain | none |
//! | `par` | payment account reference, 29 upper-case alphanumerics, plain | none |
//!
//! The clear values stay in the simulator's memory, per token, for the operations that need them
//! later (cryptogram validation, recovery for re-personalization). Neither clear nor encrypted
//! values are ever logged.
//!
//! # The device fleet
//!
//! [`Fleet::start`] registers N devices (`POST /wallet/v1/devices`, each its own X25519 key) and
//! runs one long-poll loop per device (`GET /wallet/v1/devices/{deviceId}/personalizations`).
//! A device opens each offered profile (HPKE to its key, `aad` = the personalization id), checks
//! its DGIs ([`device::profile`]), installs a payment application at ATC 0 and reports the
//! result (`POST /wallet/v1/personalizations/{id}/result`). [`Fleet::transact`] increments the
//! ATC, computes the ARQC ([`emv`]) and pays at the TSP simulator. Behaviours (offline, report
//! FAILURE, never confirm) switch per device at run time. [`device::run`] is the
//! `tokenhub device-sim` command.
//!
//! # Layout
//!
//! - [`device`]: the device fleet: `FleetConfig`, `Fleet` (start, behaviours, applications,
//!   transactions, status, shutdown), and [`device::run`] with `DeviceSimConfig`.
//!   - [`device::profile`]: parsing and checking a CPS profile (DGIs, BER-TLV records).
//!   - `device::wallet`: the hub's wallet API as a device calls it.
//!   - `device::run`: the command's loop (status lines, periodic transactions).
//! - [`emv`]: session keys and application cryptograms (a documented simplification of EMV),
//!   shared by the devices that compute them and the TSP that checks them.
//! - [`tsp`]: the TSP simulator: `TspSimConfig`, [`spawn`] (tests, the demo) and [`run`] (the
//!   `tokenhub tsp-sim` command), `TspSimHandle`.
//!   - `tsp::api`: the HTTP routes and the request validation.
//!   - `tsp::lifecycle`: updateTokenState and submitNewTokenDataStatus.
//!   - `tsp::reperso`: repersoToken and the recovery it sends (`/newData`).
//!   - `tsp::misbehaviour`: the switches, the rate limit's token bucket, the middleware.
//!   - `tsp::transactions`: authorizing transactions (state, cryptogram, ATC).
//!   - `tsp::delivery`: sending `/data` (and a recovery's `/newData`) to the hub, with the retry
//!     rules.
//!   - [`tsp::elements`]: generating the data elements and their wire form.
//!   - `tsp::vault`: the tokens in memory. `tsp::status`: the counters.
//!   - `tsp::scan`: every form of a token's data, for tests that scan the hub's storage.
//!
//! # TLS
//!
//! The workspace builds reqwest without a crypto provider. [`spawn`] and [`Fleet::start`] install
//! aws-lc-rs as the process default if nothing is installed yet, so a binary that installs its own must do so
//! before, or ignore the "already installed" error.
#![forbid(unsafe_code)]

pub mod certs;
pub mod device;
pub mod emv;
pub mod profiles;
pub mod requestor;
pub mod tsp;

pub use device::{
    AppView, Behaviour, DeviceSimConfig, Fleet, FleetConfig, FleetStatus, TxnOutcome, TxnSummary,
};

pub use tsp::{
    load_key_set, run, seal_card, spawn, AuthReason, Authorization, AuthorizationAnswer,
    DerivedTokens, HubHealth, Misbehaviour, RetryPolicy, SimTls, SimTokenView, TokenUpdate,
    TransactionAnswer, TransactionRequest, TspSimConfig, TspSimHandle, TspSimStatus, TspTokenState,
    TxnReason, UpdateAnswer, ELEMENT_NAMES, MAX_TOKENS_PER_CARD, TRANSACTIONS_PATH,
    TRANSACTION_TYPES,
};
