//! A SoftHSM2 token for the hub's own tests (feature `test-hooks`): made once per test process in
//! a directory of its own (`SOFTHSM2_CONF` points at its configuration), when
//! `TOKENHUB_TEST_SOFTHSM2` names the module (`/usr/lib/softhsm/libsofthsm2.so`; `.ci/run` sets
//! it). The module is one per process, so a test that takes the HSM away holds [`exclusive`]
//! and every test using the HSM takes it too.

use super::pkcs11::Pkcs11Config;
use secrecy::SecretString;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub const TOKEN_LABEL: &str = "tokenhub-test";
const SO_PIN: &str = "1234";
const USER_PIN: &str = "5678";

pub struct SoftHsm {
    pub module: PathBuf,
    tokens: PathBuf,
    away: PathBuf,
}

static HSM: OnceLock<Option<SoftHsm>> = OnceLock::new();
static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The test token, or `None` (with a note on stderr) when `TOKENHUB_TEST_SOFTHSM2` is unset.
pub fn softhsm(test: &str) -> Option<&'static SoftHsm> {
    let hsm = HSM.get_or_init(|| {
        let module = std::env::var_os("TOKENHUB_TEST_SOFTHSM2")?;
        Some(SoftHsm::init(PathBuf::from(module)))
    });
    if hsm.is_none() {
        eprintln!("{test}: skipped, TOKENHUB_TEST_SOFTHSM2 is not set (the SoftHSM2 module)");
    }
    hsm.as_ref()
}

/// Held by every test that uses the HSM, so that one taking it away disturbs no other.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.lock().await
}

/// [`exclusive`] outside a runtime.
pub fn exclusive_blocking() -> tokio::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.blocking_lock()
}

impl SoftHsm {
    fn init(module: PathBuf) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tokenhub-softhsm-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).expect("a directory for the SoftHSM2 tokens");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("the SoftHSM2 configuration");
        // Read by the module when it is initialized: before any test loads it.
        std::env::set_var("SOFTHSM2_CONF", &conf);
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", TOKEN_LABEL])
            .args(["--so-pin", SO_PIN, "--pin", USER_PIN])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .expect("softhsm2-util runs (Debian package softhsm2)");
        assert!(
            out.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            module,
            away: dir.join("tokens-away"),
            tokens,
        }
    }

    /// How the hub reaches the test token.
    pub fn config(&self) -> Pkcs11Config {
        Pkcs11Config {
            module: self.module.clone(),
            token_label: TOKEN_LABEL.into(),
            pin: SecretString::from(USER_PIN),
        }
    }

    /// The hub's keys on the test token, with master-key version 1 made as a first start makes
    /// it.
    pub fn keys(&self) -> crate::keys::Keys {
        let keys = crate::keys::Keys::pkcs11(self.config()).expect("the test token opens");
        keys.first_version(0).expect("version 1 is made");
        keys
    }

    /// The same token with a wrong PIN.
    pub fn config_with_pin(&self, pin: &str) -> Pkcs11Config {
        Pkcs11Config {
            pin: SecretString::from(pin),
            ..self.config()
        }
    }

    /// Restarts the HSM under the hub: the module is finalized (every session of the process
    /// closed, every handle void), as when an HSM restarts.
    pub fn restart(&self) {
        // Dropping a context finalizes the module, whoever initialized it.
        drop(cryptoki::context::Pkcs11::new(&self.module).expect("the module loads"));
    }

    /// Takes the token away (its files moved, the module finalized): the HSM is unreachable
    /// until [`SoftHsm::plug`].
    pub fn unplug(&self) {
        std::fs::rename(&self.tokens, &self.away).expect("the tokens move away");
        self.restart();
    }

    pub fn plug(&self) {
        std::fs::rename(&self.away, &self.tokens).expect("the tokens come back");
    }
}
