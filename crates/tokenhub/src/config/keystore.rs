//! Which keystore holds the hub's keys: `--keystore software|pkcs11` (`TOKENHUB_KEYSTORE`), and for
//! PKCS#11 the module and the token's label (flags, variables or the file's `[keystore]` table)
//! and the PIN, read from `TOKENHUB_PKCS11_PIN` or the file named by `TOKENHUB_PKCS11_PIN_FILE`
//! only: never a flag (it would show in the process list) nor the configuration file.

use super::ConfigError;
use crate::keys::{KeystoreKind, Pkcs11Config};
use secrecy::SecretString;
use serde::Deserialize;
use std::path::PathBuf;

/// The flags (and their variables) of every command that opens the store.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KeystoreArgs {
    /// Where the keys live: `software` (the master key in memory, the default) or `pkcs11` (an
    /// HSM).
    #[arg(long, env = "TOKENHUB_KEYSTORE")]
    pub keystore: Option<String>,
    /// With `--keystore pkcs11`: the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so.
    #[arg(long, env = "TOKENHUB_PKCS11_MODULE")]
    pub pkcs11_module: Option<PathBuf>,
    /// With `--keystore pkcs11`: the label of the token holding the hub's keys.
    #[arg(long, env = "TOKENHUB_PKCS11_TOKEN")]
    pub pkcs11_token: Option<String>,
}

/// The file's `[keystore]` table (no PIN).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileKeystore {
    kind: Option<String>,
    pkcs11_module: Option<PathBuf>,
    pkcs11_token: Option<String>,
}

/// The keystore the hub opens; `pkcs11` is set exactly when `kind` is PKCS#11.
#[derive(Debug, Clone)]
pub struct KeystoreSettings {
    pub kind: KeystoreKind,
    pub pkcs11: Option<Pkcs11Config>,
    /// How many keys a master-key rotation re-wraps per step (`TOKENHUB_REWRAP_BATCH`).
    pub rewrap_batch: i64,
    /// The pause between a rotation's steps (`TOKENHUB_REWRAP_PAUSE_MS`): the re-wrapping
    /// yields the store to the hub's calls in between.
    pub rewrap_pause: std::time::Duration,
}

impl Default for KeystoreSettings {
    fn default() -> Self {
        Self {
            kind: KeystoreKind::default(),
            pkcs11: None,
            rewrap_batch: 500,
            rewrap_pause: std::time::Duration::from_millis(10),
        }
    }
}

/// The re-wrap pace from the environment.
fn rewrap_pace(
    env: &dyn Fn(&str) -> Option<String>,
    mut settings: KeystoreSettings,
) -> Result<KeystoreSettings, ConfigError> {
    if let Some(b) = env("TOKENHUB_REWRAP_BATCH") {
        settings.rewrap_batch = b
            .trim()
            .parse()
            .ok()
            .filter(|b| (1..=100_000).contains(b))
            .ok_or_else(|| ConfigError::Invalid("TOKENHUB_REWRAP_BATCH is 1 to 100000".into()))?;
    }
    if let Some(p) = env("TOKENHUB_REWRAP_PAUSE_MS") {
        let ms: u64 = p.trim().parse().map_err(|_| {
            ConfigError::Invalid("TOKENHUB_REWRAP_PAUSE_MS is a number of ms".into())
        })?;
        settings.rewrap_pause = std::time::Duration::from_millis(ms);
    }
    Ok(settings)
}

impl KeystoreSettings {
    /// The settings of `args` and the process's environment (for commands without a
    /// configuration file, e.g. `tokenhub demo`).
    pub fn from_args(args: &KeystoreArgs) -> Result<Self, ConfigError> {
        resolve(args, &FileKeystore::default(), &|k| std::env::var(k).ok())
    }
}

pub fn resolve(
    args: &KeystoreArgs,
    file: &FileKeystore,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<KeystoreSettings, ConfigError> {
    let invalid = |m: &str| ConfigError::Invalid(m.to_string());
    let kind = match args.keystore.as_ref().or(file.kind.as_ref()) {
        None => KeystoreKind::Software,
        Some(s) => {
            KeystoreKind::parse(s).ok_or_else(|| invalid("keystore is software or pkcs11"))?
        }
    };
    if kind == KeystoreKind::Software {
        return rewrap_pace(env, KeystoreSettings::default());
    }
    let module = args
        .pkcs11_module
        .clone()
        .or(file.pkcs11_module.clone())
        .ok_or_else(|| {
            invalid("--keystore pkcs11 needs --pkcs11-module (TOKENHUB_PKCS11_MODULE)")
        })?;
    let token_label = args
        .pkcs11_token
        .clone()
        .or(file.pkcs11_token.clone())
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| invalid("--keystore pkcs11 needs --pkcs11-token (TOKENHUB_PKCS11_TOKEN)"))?;
    let pin = match (env("TOKENHUB_PKCS11_PIN"), env("TOKENHUB_PKCS11_PIN_FILE")) {
        (Some(pin), None) => pin,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::Invalid(format!("TOKENHUB_PKCS11_PIN_FILE {path}: {e}")))?
            .trim_end_matches(['\r', '\n'])
            .to_string(),
        (Some(_), Some(_)) => {
            return Err(invalid(
                "give TOKENHUB_PKCS11_PIN or TOKENHUB_PKCS11_PIN_FILE, not both",
            ))
        }
        (None, None) => return Err(invalid(
            "--keystore pkcs11 needs the PIN in TOKENHUB_PKCS11_PIN or TOKENHUB_PKCS11_PIN_FILE",
        )),
    };
    if pin.is_empty() {
        return Err(invalid("the PKCS#11 PIN is empty"));
    }
    let settings = KeystoreSettings {
        kind,
        pkcs11: Some(Pkcs11Config {
            module,
            token_label,
            pin: SecretString::from(pin),
        }),
        ..KeystoreSettings::default()
    };
    rewrap_pace(env, settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kind: &str) -> KeystoreArgs {
        KeystoreArgs {
            keystore: Some(kind.into()),
            pkcs11_module: Some("/lib/p11.so".into()),
            pkcs11_token: Some("hub".into()),
        }
    }

    #[test]
    fn the_pin_comes_from_the_environment_or_a_file_and_nowhere_else() {
        let none = |_: &str| None;
        let file = FileKeystore::default();
        assert_eq!(
            resolve(&KeystoreArgs::default(), &file, &none)
                .unwrap()
                .kind,
            KeystoreKind::Software
        );
        assert!(resolve(&args("pkcs11"), &file, &none).is_err());
        assert!(resolve(&args("hsm"), &file, &none).is_err());
        let from_env = |k: &str| (k == "TOKENHUB_PKCS11_PIN").then(|| "1234".to_string());
        let s = resolve(&args("pkcs11"), &file, &from_env).unwrap();
        let p11 = s.pkcs11.unwrap();
        assert_eq!(
            (p11.token_label.as_str(), s.kind),
            ("hub", KeystoreKind::Pkcs11)
        );
        assert!(!format!("{p11:?}").contains("1234"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "5678\n").unwrap();
        let p = path.display().to_string();
        let from_file = |k: &str| (k == "TOKENHUB_PKCS11_PIN_FILE").then(|| p.clone());
        let p11 = resolve(&args("pkcs11"), &file, &from_file)
            .unwrap()
            .pkcs11
            .unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(p11.pin.expose_secret(), "5678");
        let both = |_: &str| Some("1".to_string());
        assert!(resolve(&args("pkcs11"), &file, &both).is_err());
    }
}
