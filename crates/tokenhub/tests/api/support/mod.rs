//! The one harness every test uses: a real hub over real HTTP on port 0, on a fresh database (an
//! SQLite file in a temporary folder, or a fresh PostgreSQL database), with a `ManualClock` the
//! test can move, the key ceremony's keys imported, and one fake TSP that records every call.
//!
//! The fake TSP never sends `/data` by itself: the test plays the TSP and sends exactly the calls
//! a case needs. [`TestApp`] has one method per endpoint so that test bodies read like the
//! contract; the methods are grouped by the API they call.

pub mod admin_api;
pub mod app;
pub mod certs;
pub mod flaky_tsp;
pub mod lifecycle;
pub mod postgres;
pub mod receiver;
pub mod requestor_api;
pub mod requestors;
pub mod seed;
pub mod tls;
pub mod tls_tsp;
pub mod tsp;
pub mod tsp_api;
pub mod wallet_api;

pub use admin_api::*;
pub use app::*;
pub use certs::*;
pub use flaky_tsp::*;
pub use lifecycle::*;
pub use postgres::*;
pub use receiver::*;
pub use requestors::*;
pub use seed::*;
pub use tls::*;
pub use tls_tsp::*;
pub use tsp::*;
pub use tsp_api::*;
pub use wallet_api::*;

use std::time::Duration;

pub const ADMIN_TOKEN: &str = "bootstrap-token-for-the-api-tests-0123456789";
pub const MASTER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
pub const PERSO_TTL: Duration = Duration::from_secs(900);
pub const TSP_ID: &str = "tsp-under-test";
pub const ISSUER: &str = "ISSUER0001";
/// A second registered issuer, for "registered, but not the token's issuer".
pub const OTHER_ISSUER: &str = "ISSUER0002";
pub const PRODUCT: &str = "visa-classic";
pub const VERSION: &str = "v1";
pub const DEVICE: &str = "device-0001";
/// The wallet provider that registers [`DEVICE`] and makes every wallet call of the harness.
pub const WALLET_PROVIDER: &str = "wallet-under-test";
/// The ceremony's keys: an AES-128 KEK and a 3DES DEK (`KeySet::generate`), plus a key whose
/// index is 32 characters long, the most the contract allows.
pub const KEK: &str = "KEK01";
pub const DEK: &str = "DEK01";
pub const LONG_KEY_INDEX: &str = "KEY-INDEX-OF-32-CHARACTERS-12345";
/// An optional element whose name is 32 characters long, the most the contract allows.
pub const LONG_NAME: &str = "an_element_name_of_32_characters";
/// Optional elements `opt001`..`opt200` (digits, at most 4), so that one call can carry 200
/// distinct, valid elements.
pub const OPTIONAL_COUNT: usize = 200;
/// The token info the fake TSP answers `createToken` with.
pub const TSP_EXP: &str = "1229";
pub const TSP_LAST4: &str = "4321";

/// Runs each test body (an `async fn name(app: TestApp)` of the calling module, written once) on
/// both backends: `area::name::sqlite` and `area::name::postgres`. With `config = f;` first, the
/// hub's configuration goes through `f: fn(&mut Config)` (a name in scope where the macro is
/// called) before the hub starts.
macro_rules! hub_tests {
    (@each $config:expr; $($name:ident),*) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let app =
                        $crate::support::spawn_app_with($crate::support::Backend::Sqlite, $config)
                            .await;
                    super::$name(app).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(url) = $crate::support::postgres_url_or_skip(module_path!()) else {
                        return;
                    };
                    let app = $crate::support::spawn_app_with(
                        $crate::support::Backend::Postgres(url),
                        $config,
                    )
                    .await;
                    super::$name(app).await;
                }
            }
        )*
    };
    (config = $config:ident; $($name:ident),* $(,)?) => {
        hub_tests!(@each super::$config; $($name),*);
    };
    ($($name:ident),* $(,)?) => {
        hub_tests!(@each $crate::support::default_config; $($name),*);
    };
}
