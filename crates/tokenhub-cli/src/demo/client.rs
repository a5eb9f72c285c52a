//! A small client of the hub's own APIs, as an operator's script would use them.

use anyhow::{ensure, Context};
use serde_json::Value;

pub(super) struct Client {
    pub(super) http: reqwest::Client,
    /// The admin API's base URL.
    pub(super) base: String,
    /// The wallet API's base URL.
    pub(super) wallet_base: String,
    pub(super) admin_key: String,
    /// The demo wallet provider's API key, which every wallet call carries.
    pub(super) wallet_key: String,
}

impl Client {
    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        ensure!(status.is_success(), "HTTP {status}: {text}");
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    pub(super) async fn admin_put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(
            self.http
                .put(format!("{}{path}", self.base))
                .bearer_auth(&self.admin_key)
                .json(&body),
        )
        .await
        .with_context(|| format!("PUT {path}"))
    }

    pub(super) async fn admin_post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(&self.admin_key)
                .json(&body),
        )
        .await
        .with_context(|| format!("POST {path}"))
    }

    pub(super) async fn get_admin(&self, path: &str) -> anyhow::Result<Value> {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.admin_key),
        )
        .await
        .with_context(|| format!("GET {path}"))
    }

    /// A wallet API call, as the demo's wallet provider.
    pub(super) async fn wallet_post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(
            self.http
                .post(format!("{}{path}", self.wallet_base))
                .bearer_auth(&self.wallet_key)
                .json(&body),
        )
        .await
        .with_context(|| format!("POST {path}"))
    }

    /// Registers a wallet provider and makes it an API key; the key.
    pub(super) async fn register_wallet_provider(
        &mut self,
        provider_id: &str,
    ) -> anyhow::Result<()> {
        let path = format!("/admin/v1/wallet-providers/{provider_id}");
        self.admin_put(&path, serde_json::json!({"name": "Demo Wallet"}))
            .await?;
        let key = self
            .admin_post(&format!("{path}/api-keys"), serde_json::json!({}))
            .await?;
        self.wallet_key = key["apiKey"]
            .as_str()
            .context("the new key's answer has no apiKey")?
            .to_string();
        Ok(())
    }
}
