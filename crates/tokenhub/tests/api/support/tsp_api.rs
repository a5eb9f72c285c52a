//! Calling the TSP incoming API (`/trapi/v2.0`) as the TSP does, and reading its answers.

use super::{correlation_id, TestApp};
use serde_json::Value;

/// An answer of the TSP incoming API, read whole.
#[derive(Debug)]
pub struct TspAnswer {
    pub status: u16,
    pub correlation_id: Option<String>,
    pub request_id: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
}

impl TspAnswer {
    pub(crate) async fn read(r: reqwest::Response) -> Self {
        let header = |name: &str| {
            r.headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let correlation_id = header("x-correlation-id");
        let request_id = header("x-request-id");
        let content_type = header("content-type");
        let status = r.status().as_u16();
        let body = r.text().await.expect("the answer's body");
        Self {
            status,
            correlation_id,
            request_id,
            content_type,
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("errorRes is JSON ({e}): {:?}", self.body))
    }

    /// `errorRes.responseCode`.
    pub fn code(&self) -> Option<u64> {
        serde_json::from_str::<Value>(&self.body)
            .ok()?
            .get("responseCode")?
            .as_u64()
    }

    pub fn message(&self) -> String {
        self.json()["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// `204`, no body.
    #[track_caller]
    pub fn assert_accepted(&self) {
        assert_eq!(self.status, 204, "expected 204, got {self:?}");
        assert!(self.body.is_empty(), "a 204 has no body: {self:?}");
    }

    /// `400 {"responseCode": code, "errorMessage": …}` (the contract's refusal).
    #[track_caller]
    pub fn assert_refused(&self, code: u64) {
        assert_eq!(
            (self.status, self.code()),
            (400, Some(code)),
            "expected 400 with responseCode {code}, got {self:?}"
        );
        assert!(
            self.content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/json")),
            "errorRes is sent as JSON: {self:?}"
        );
        assert!(
            !self.message().is_empty(),
            "errorRes carries an errorMessage: {self:?}"
        );
    }
}

impl TestApp {
    /// `PUT /trapi/v2.0/tokens/{tokenId}/data` with a fresh `x-correlation-id`.
    pub async fn put_data(&self, token_id: &str, body: &Value) -> TspAnswer {
        self.put_data_as(token_id, &correlation_id(), body).await
    }

    /// `PUT …/data` with the given `x-correlation-id` (a repeat reuses one).
    pub async fn put_data_as(
        &self,
        token_id: &str,
        correlation_id: &str,
        body: &Value,
    ) -> TspAnswer {
        self.put_data_with_headers(
            token_id,
            &[
                ("x-correlation-id", correlation_id),
                ("content-type", "application/json"),
            ],
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    /// `PUT …/data` with exactly these headers and these body bytes.
    pub async fn put_data_with_headers(
        &self,
        token_id: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> TspAnswer {
        self.put_tsp_call(
            &format!("/trapi/v2.0/tokens/{token_id}/data"),
            headers,
            body,
        )
        .await
    }

    /// `PUT /trapi/v2.0/tokens/{tokenId}/newData` with a fresh `x-correlation-id`.
    pub async fn put_new_data(&self, token_id: &str, body: &Value) -> TspAnswer {
        self.put_new_data_with_headers(
            token_id,
            &[
                ("x-correlation-id", &correlation_id()),
                ("content-type", "application/json"),
            ],
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    /// `PUT …/newData` with exactly these headers and these body bytes.
    pub async fn put_new_data_with_headers(
        &self,
        token_id: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> TspAnswer {
        self.put_tsp_call(
            &format!("/trapi/v2.0/tokens/{token_id}/newData"),
            headers,
            body,
        )
        .await
    }

    async fn put_tsp_call(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> TspAnswer {
        self.try_put_tsp_call(path, headers, body)
            .await
            .expect("the hub answers")
    }

    /// A PUT of the TSP API whose sending may fail: a hub that refuses a body before reading it
    /// all may close the connection while the client is still writing it.
    pub async fn try_put_tsp_call(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Result<TspAnswer, reqwest::Error> {
        let mut request = self.client.put(self.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Ok(TspAnswer::read(request.send().await?).await)
    }

    /// `GET /trapi/v2.0/healthCheck`, with `x-request-id` when given.
    pub async fn health_check(&self, request_id: Option<&str>) -> TspAnswer {
        let mut request = self.client.get(self.url("/trapi/v2.0/healthCheck"));
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        TspAnswer::read(request.send().await.expect("the hub answers")).await
    }

    /// `POST /trapi/v2.0/tokens/{tokenId}/updates` with exactly these headers and body bytes.
    pub async fn post_update_with_headers(
        &self,
        token_id: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> TspAnswer {
        let mut request = self
            .client
            .post(self.url(&format!("/trapi/v2.0/tokens/{token_id}/updates")))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        TspAnswer::read(request.send().await.expect("the hub answers")).await
    }

    /// A token update with the given `x-correlation-id`.
    pub async fn post_update_as(
        &self,
        token_id: &str,
        correlation_id: &str,
        body: &Value,
    ) -> TspAnswer {
        self.post_update_with_headers(
            token_id,
            &[
                ("x-correlation-id", correlation_id),
                ("content-type", "application/json"),
            ],
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    /// A token update with a fresh `x-correlation-id`.
    pub async fn post_update(&self, token_id: &str, body: &Value) -> TspAnswer {
        self.post_update_as(token_id, &correlation_id(), body).await
    }
}
