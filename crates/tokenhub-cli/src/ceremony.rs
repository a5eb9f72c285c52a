//! `tokenhub keys import`'s key ceremony: where each custodian's component comes from (a prompt
//! on the terminal that shows nothing typed, or a file of its own, `-` for a line of stdin), and
//! the key made from the components, or unwrapped from under a transport key made from them. The
//! math is `tokenhub_crypto::ceremony`'s; nothing here writes a key anywhere.

use crate::exit::CliError;
use anyhow::Context;
use std::io::BufRead;
use std::path::PathBuf;
use tokenhub_crypto::ceremony::{self, Component};
use tokenhub_crypto::Algorithm;
use zeroize::Zeroizing;

/// Where a key's components come from: `count` prompts, or one file each.
pub struct Sources<'a> {
    /// What the components make ("the key", "the transport key"), for the prompts.
    pub what: &'a str,
    pub count: Option<usize>,
    pub files: &'a [PathBuf],
}

impl Sources<'_> {
    fn given(&self) -> bool {
        self.count.is_some() || !self.files.is_empty()
    }
}

/// Reads the components: from their files when some are given (their number is the count), else
/// prompted one custodian at a time on the terminal.
fn read_components(sources: &Sources<'_>) -> anyhow::Result<Vec<Component>> {
    let count = match (sources.count, sources.files.len()) {
        (Some(n), 0) => n,
        (None, n) => n,
        (Some(n), f) if n == f => n,
        (Some(n), f) => {
            return Err(CliError::Usage(format!(
                "{n} components announced for {}, {f} component files given",
                sources.what
            ))
            .into())
        }
    };
    if !(2..=3).contains(&count) {
        return Err(CliError::Usage(format!(
            "{} is entered as 2 or 3 components, not {count}",
            sources.what
        ))
        .into());
    }
    if sources.files.is_empty() {
        return (1..=count)
            .map(|i| prompt(sources.what, i, count))
            .collect();
    }
    let mut stdin = std::io::stdin().lock();
    sources
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let text = if f.as_os_str() == "-" {
                let mut line = Zeroizing::new(String::new());
                stdin
                    .read_line(&mut line)
                    .context("reading a component from stdin")?;
                line
            } else {
                Zeroizing::new(
                    std::fs::read_to_string(f)
                        .with_context(|| format!("reading {}", f.display()))?,
                )
            };
            parse_component(&text).ok_or_else(|| {
                CliError::Usage(format!(
                    "component {} of {}: expected `HEX KCV`",
                    i + 1,
                    sources.what
                ))
                .into()
            })
        })
        .collect()
}

/// `HEX KCV` (any whitespace between).
fn parse_component(text: &str) -> Option<Component> {
    let mut words = text.split_whitespace();
    let hex = Zeroizing::new(words.next()?.to_string());
    let kcv = words.next()?.to_string();
    words.next().is_none().then_some(Component { hex, kcv })
}

/// One custodian's component from the terminal: the component without echo, then its KCV.
fn prompt(what: &str, i: usize, n: usize) -> anyhow::Result<Component> {
    eprintln!("Custodian {i} of {n}, component {i} of {what} (hex; nothing is shown as you type).");
    let hex = Zeroizing::new(
        rpassword::prompt_password(format!("component {i}: "))
            .context("no terminal to prompt on: give each component with --component-file")?,
    );
    let kcv = rpassword::prompt_password(format!("KCV of component {i}: "))
        .context("no terminal to prompt on")?;
    Ok(Component {
        hex: Zeroizing::new(hex.trim().to_string()),
        kcv: kcv.trim().to_string(),
    })
}

/// The key of `alg` from its components, each checked against its KCV and the whole against
/// `kcv`.
pub fn from_components(
    alg: Algorithm,
    sources: &Sources<'_>,
    kcv: &str,
) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let components = read_components(sources)?;
    ceremony::combine(alg, &components, kcv)
        .map_err(|e| CliError::Refused(format!("{}: {e}", sources.what)).into())
}

/// The key of `alg` unwrapped (AES Key Wrap, RFC 3394) from under a transport key (AES-128 or
/// AES-256) made from its components, each checked against its KCV and the transport key
/// against `transport_kcv`; the key is checked against `kcv`.
pub fn from_wrapped(
    alg: Algorithm,
    wrapped_hex: &str,
    transport: &Sources<'_>,
    transport_kcv: &str,
    kcv: &str,
) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let wrapped = hex::decode(wrapped_hex.trim())
        .map_err(|_| CliError::Usage("--wrapped must be hex".into()))?;
    if !transport.given() {
        return Err(CliError::Usage(
            "a wrapped key needs its transport key: --transport-components N or --transport-component-file".into(),
        )
        .into());
    }
    let components = read_components(transport)?;
    let len = hex::decode(components[0].hex.trim()).map_or(0, |b| b.len());
    let transport_alg = ceremony::transport_algorithm(len)
        .map_err(|e| CliError::Refused(format!("{}: {e}", transport.what)))?;
    let transport_key = ceremony::combine(transport_alg, &components, transport_kcv)
        .map_err(|e| CliError::Refused(format!("{}: {e}", transport.what)))?;
    ceremony::unwrap(alg, &transport_key, &wrapped, kcv)
        .map_err(|e| CliError::Refused(format!("the wrapped key: {e}")).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_line_is_hex_then_kcv() {
        let c = parse_component("00112233 ABC123\n").unwrap();
        assert_eq!((c.hex.as_str(), c.kcv.as_str()), ("00112233", "ABC123"));
        assert!(parse_component("00112233").is_none());
        assert!(parse_component("00 11 22").is_none());
        assert!(parse_component("").is_none());
    }
}
