//! Calling the admin API (`/admin/v1`) with the bearer token.

use super::{names, TestApp, TSP_ID};
use serde_json::{json, Value};

/// What the admin API says about a token.
pub type TokenView = Value;

/// What a status-and-JSON answer of the admin or wallet API says (`Null` for an empty body).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub text: String,
    pub json: Value,
    /// The `Retry-After` header, when there is one.
    pub retry_after: Option<String>,
}

impl Answer {
    pub(crate) async fn read(r: reqwest::Response) -> Self {
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let text = r.text().await.expect("the answer's body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            text,
            json,
            retry_after,
        }
    }

    /// The status is `status`; the JSON body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected answer: {self:?}");
        &self.json
    }
}

impl TestApp {
    /// An admin call, with the harness's `admin` key.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.admin_key)
    }

    /// An admin call with `credential` as the bearer, with an optional JSON body, read whole.
    pub async fn admin_as(
        &self,
        credential: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Answer {
        let mut r = self
            .client
            .request(method, self.url(path))
            .bearer_auth(credential);
        if let Some(b) = body {
            r = r.json(b);
        }
        Answer::read(r.send().await.expect("the hub answers")).await
    }

    /// Creates an admin key (`{"role": ..., "issuers": [...]}`) with the harness's admin key;
    /// the presented key.
    pub async fn create_admin_key(&self, body: &Value) -> String {
        create_key_with(&self.client, &self.admin_address, &self.admin_key, body)
            .await
            .expect(201)["apiKey"]
            .as_str()
            .expect("the new key")
            .to_string()
    }

    /// An admin call with an optional JSON body, read whole.
    pub async fn admin_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Answer {
        let mut r = self.admin(method, path);
        if let Some(b) = body {
            r = r.json(b);
        }
        Answer::read(r.send().await.expect("the hub answers")).await
    }

    pub async fn admin_get(&self, path: &str) -> Answer {
        self.admin_send(reqwest::Method::GET, path, None).await
    }

    pub async fn admin_post(&self, path: &str, body: Option<&Value>) -> Answer {
        self.admin_send(reqwest::Method::POST, path, body).await
    }

    #[allow(dead_code)]
    pub async fn put_tsp(&self, tsp_id: &str, base_url: &str) -> reqwest::Response {
        self.put_tsp_body(tsp_id, &json!({"baseUrl": base_url}))
            .await
    }

    /// Registers a TSP whose client certificates come from the test CA with this subject.
    pub async fn put_tsp_with_subject(
        &self,
        tsp_id: &str,
        base_url: &str,
        subject: &str,
    ) -> reqwest::Response {
        let body = json!({
            "baseUrl": base_url,
            "clientCertificates": {"caPem": super::test_certs().ca, "subject": subject},
        });
        self.put_tsp_body(tsp_id, &body).await
    }

    pub async fn put_tsp_body(&self, tsp_id: &str, body: &Value) -> reqwest::Response {
        self.admin(reqwest::Method::PUT, &format!("/admin/v1/tsps/{tsp_id}"))
            .json(body)
            .send()
            .await
            .expect("the hub answers")
    }

    pub async fn put_issuer(&self, issuer_id: &str, name: &str, tsp_id: &str) -> reqwest::Response {
        self.admin(
            reqwest::Method::PUT,
            &format!("/admin/v1/issuers/{issuer_id}"),
        )
        .json(&json!({"name": name, "tspId": tsp_id}))
        .send()
        .await
        .expect("the hub answers")
    }

    pub async fn put_profile_version(
        &self,
        issuer_id: &str,
        product_id: &str,
        version: &str,
        definition: &Value,
    ) -> reqwest::Response {
        self.admin(
            reqwest::Method::PUT,
            &format!("/admin/v1/issuers/{issuer_id}/products/{product_id}/profiles/{version}"),
        )
        .json(definition)
        .send()
        .await
        .expect("the hub answers")
    }

    pub async fn deploy(
        &self,
        issuer_id: &str,
        product_id: &str,
        version: &str,
    ) -> reqwest::Response {
        self.admin(
            reqwest::Method::POST,
            &format!(
                "/admin/v1/issuers/{issuer_id}/products/{product_id}/profiles/{version}/deploy"
            ),
        )
        .json(&json!({}))
        .send()
        .await
        .expect("the hub answers")
    }

    /// `GET /admin/v1/tokens/{tokenId}`, as it answers.
    pub async fn get_token_response(&self, token_id: &str) -> reqwest::Response {
        self.admin(
            reqwest::Method::GET,
            &format!("/admin/v1/tokens/{token_id}"),
        )
        .send()
        .await
        .expect("the hub answers")
    }

    /// `GET /admin/v1/tokens/{tokenId}`, which must find the token.
    pub async fn get_token(&self, token_id: &str) -> TokenView {
        let r = self.get_token_response(token_id).await;
        assert_eq!(r.status(), 200, "GET token {token_id}");
        r.json().await.unwrap()
    }

    /// The token's state, as the admin API reports it.
    pub async fn token_state(&self, token_id: &str) -> String {
        self.get_token(token_id).await["state"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The names of the elements the hub holds for the token.
    pub async fn elements_held(&self, token_id: &str) -> Vec<String> {
        names(&self.get_token(token_id).await["elementsHeld"])
    }

    /// Registers an issuer of the TSP under test.
    pub async fn register_issuer(&self, issuer_id: &str) {
        let r = self.put_issuer(issuer_id, "Test Bank", TSP_ID).await;
        assert_eq!(r.status(), 200, "register the issuer {issuer_id}");
    }

    /// The token's history, as event texts.
    pub async fn history_of(&self, token_id: &str) -> Vec<String> {
        self.get_token(token_id).await["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].as_str().unwrap().to_string())
            .collect()
    }

    /// `POST /admin/v1/tokens/{tokenId}/{action}` (`suspend`, `resume`, `delete`).
    pub async fn token_action(&self, token_id: &str, action: &str, body: Option<&Value>) -> Answer {
        self.admin_post(&format!("/admin/v1/tokens/{token_id}/{action}"), body)
            .await
    }

    /// `GET /admin/v1/tokens/{tokenId}/notifications`.
    pub async fn token_notifications(&self, token_id: &str) -> Vec<Value> {
        self.admin_get(&format!("/admin/v1/tokens/{token_id}/notifications"))
            .await
            .expect(200)
            .as_array()
            .unwrap()
            .clone()
    }

    /// `GET /admin/v1/notifications/{id}`, which must find it.
    pub async fn delivery(&self, id: i64) -> Value {
        self.admin_get(&format!("/admin/v1/notifications/{id}"))
            .await
            .expect(200)
            .clone()
    }
}

/// `POST /admin/v1/admin-keys` with `credential`.
pub async fn create_key_with(
    client: &reqwest::Client,
    address: &str,
    credential: &str,
    body: &Value,
) -> Answer {
    let r = client
        .post(format!("{address}/admin/v1/admin-keys"))
        .bearer_auth(credential)
        .json(body)
        .send()
        .await
        .expect("the hub answers");
    Answer::read(r).await
}
