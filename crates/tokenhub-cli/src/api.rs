//! The admin API's client, shared by every command that talks to a running hub: where the hub is
//! and the admin key (flags or environment), one request per call, and the hub's refusals as
//! [`CliError`]s (the API's status, code and message) that `exit` turns into exit codes.

use crate::exit::CliError;
use anyhow::Context;
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the hub is and how to authenticate; given once for a command group (before or after
/// its subcommand).
#[derive(clap::Args, Clone, Debug)]
pub struct HubArgs {
    /// The hub's admin base URL.
    #[arg(
        long,
        env = "TOKENHUB_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub hub_url: String,
    /// An admin key (`thk_...`, from `tokenhub admin-keys create`). Prefer the environment: a
    /// key on the command line is visible to other local users.
    #[arg(
        long,
        env = "TOKENHUB_ADMIN_KEY",
        hide_env_values = true,
        global = true
    )]
    pub admin_key: Option<String>,
    /// A CA certificate (PEM) to trust for an https hub besides the public roots.
    #[arg(long, env = "TOKENHUB_CA", global = true, value_name = "PEM_FILE")]
    pub ca: Option<PathBuf>,
}

/// A command group that talks to a running hub: where the hub is and the admin key (given before
/// or after the subcommand), then the subcommand.
#[derive(clap::Args)]
pub struct Remote<C: clap::Subcommand> {
    #[command(flatten)]
    pub hub: HubArgs,
    #[command(subcommand)]
    pub command: C,
}

/// Where a page of a paged list starts, and its size.
#[derive(clap::Args)]
pub struct Page {
    /// At most this many.
    #[arg(long)]
    limit: Option<u32>,
    /// The `next` of the previous page (printed on stderr after a table).
    #[arg(long)]
    cursor: Option<String>,
}

impl Page {
    pub fn url(&self, admin: &Admin, segments: &[&str]) -> Url {
        admin.url_with(
            segments,
            &[
                ("limit", self.limit.map(|l| l.to_string())),
                ("cursor", self.cursor.clone()),
            ],
        )
    }
}

/// An admin API client bound to one hub and one admin key.
pub struct Admin {
    http: reqwest::Client,
    base: Url,
    key: SecretString,
}

/// A successful answer: its status and body, as the hub sent it.
pub struct Answer {
    pub status: StatusCode,
    pub text: String,
}

impl Answer {
    /// The body as JSON (`null` when empty, as for a `204`).
    pub fn json(&self) -> anyhow::Result<Value> {
        if self.text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.text).context("the hub's answer is not JSON")
    }
}

impl Admin {
    pub fn new(hub: &HubArgs) -> anyhow::Result<Self> {
        let Some(key) = hub.admin_key.as_deref().filter(|k| !k.trim().is_empty()) else {
            return Err(CliError::Usage(
                "no admin key: set TOKENHUB_ADMIN_KEY (or give --admin-key)".into(),
            )
            .into());
        };
        Self::with_key(hub, key)
    }

    /// A client with a given credential (e.g. the bootstrap token).
    pub fn with_key(hub: &HubArgs, key: &str) -> anyhow::Result<Self> {
        let base = Url::parse(hub.hub_url.trim_end_matches('/'))
            .map_err(|e| CliError::Usage(format!("--hub-url {}: {e}", hub.hub_url)))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(
                CliError::Usage(format!("--hub-url {}: not an http(s) URL", hub.hub_url)).into(),
            );
        }
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(ca) = &hub.ca {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificate", ca.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self {
            http: builder.build().context("the HTTP client")?,
            base,
            key: SecretString::from(key.trim().to_string()),
        })
    }

    /// `{hub}/admin/v1/{segments…}`, each segment percent-encoded (an id is never a path).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["admin", "v1"]).extend(segments);
        }
        url
    }

    /// `url` with query parameters (those whose value is `None` left out).
    pub fn url_with(&self, segments: &[&str], query: &[(&str, Option<String>)]) -> Url {
        let mut url = self.url(segments);
        if query.iter().any(|(_, v)| v.is_some()) {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                if let Some(v) = v {
                    pairs.append_pair(k, v);
                }
            }
        }
        url
    }

    pub async fn get(&self, url: Url) -> anyhow::Result<Answer> {
        self.send(Method::GET, url, None).await
    }

    pub async fn put(&self, url: Url, body: &Value) -> anyhow::Result<Answer> {
        self.send(Method::PUT, url, Some(body)).await
    }

    pub async fn post(&self, url: Url, body: Option<&Value>) -> anyhow::Result<Answer> {
        self.send(Method::POST, url, body).await
    }

    pub async fn delete(&self, url: Url) -> anyhow::Result<Answer> {
        self.send(Method::DELETE, url, None).await
    }

    /// One request; an error status is a [`CliError::Api`], no answer a
    /// [`CliError::Unreachable`].
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let mut req = self
            .http
            .request(method, url.clone())
            .bearer_auth(self.key.expose_secret());
        if let Some(body) = body {
            req = req.json(body);
        }
        let unreachable = |e: reqwest::Error| CliError::Unreachable {
            url: without_query(&url),
            cause: cause_chain(&e),
        };
        let r = req.send().await.map_err(unreachable)?;
        let status = r.status();
        let text = r.text().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok(Answer { status, text });
        }
        Err(api_error(status, &text).into())
    }
}

/// The hub's `{"error", "message", "tspResponseCode"}`; another body (a proxy's page, an empty
/// `405`) is not repeated: only its status is told.
fn api_error(status: StatusCode, text: &str) -> CliError {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    match (body["error"].as_str(), body["message"].as_str()) {
        (Some(code), Some(message)) => CliError::Api {
            status: status.as_u16(),
            code: code.to_string(),
            message: message.to_string(),
            tsp_code: body["tspResponseCode"]
                .as_u64()
                .and_then(|c| u32::try_from(c).ok()),
        },
        _ => CliError::Api {
            status: status.as_u16(),
            code: format!("HTTP_{}", status.as_u16()),
            message: status
                .canonical_reason()
                .unwrap_or("no explanation")
                .to_string(),
            tsp_code: None,
        },
    }
}

/// A URL fit for a message: no query, no credentials.
fn without_query(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// An error and its causes (`connection refused` is a cause of reqwest's error), on one line.
fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A JSON body from a file, or from stdin for `-`.
pub fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading the body from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    // serde_json's message names a line and column, never the text.
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// A PEM file's text, for a body field.
pub fn read_pem(path: &Path) -> anyhow::Result<String> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        pem.contains("-----BEGIN CERTIFICATE-----"),
        "{} holds no PEM certificate",
        path.display()
    );
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(url: &str) -> Admin {
        tokenhub::telemetry::install_crypto_provider();
        let hub = HubArgs {
            hub_url: url.into(),
            admin_key: Some("thk_x".into()),
            ca: None,
        };
        Admin::new(&hub).unwrap()
    }

    #[test]
    fn ids_are_path_segments_never_paths() {
        let a = admin("http://127.0.0.1:8080/");
        assert_eq!(
            a.url(&["tokens", "a/../b?c"]).as_str(),
            "http://127.0.0.1:8080/admin/v1/tokens/a%2F..%2Fb%3Fc"
        );
        let a = admin("https://hub.example/prefix");
        assert_eq!(
            a.url_with(&["audit"], &[("after", Some("3".into())), ("limit", None)])
                .as_str(),
            "https://hub.example/prefix/admin/v1/audit?after=3"
        );
    }

    #[test]
    fn a_url_in_a_message_carries_no_credentials() {
        let u = Url::parse("https://ops:pw@hub.example/admin/v1/audit?after=3").unwrap();
        assert_eq!(without_query(&u), "https://hub.example/admin/v1/audit");
    }

    #[test]
    fn no_admin_key_is_a_usage_error() {
        let hub = HubArgs {
            hub_url: "http://127.0.0.1:8080".into(),
            admin_key: None,
            ca: None,
        };
        let e = Admin::new(&hub).err().unwrap();
        assert_eq!(
            e.downcast_ref::<CliError>().map(CliError::code),
            Some(crate::exit::USAGE)
        );
    }

    #[test]
    fn the_api_error_is_read_and_another_body_is_not_repeated() {
        let e = api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"error":"PROVISIONING_LIMIT_REACHED","message":"the TSP refused","tspResponseCode":164}"#,
        );
        assert_eq!(
            e.to_string(),
            "PROVISIONING_LIMIT_REACHED (HTTP 422): the TSP refused (TSP response code 164)"
        );
        let e = api_error(StatusCode::BAD_GATEWAY, "<html>secret-ish page</html>");
        assert_eq!(e.to_string(), "HTTP_502 (HTTP 502): Bad Gateway");
    }
}
