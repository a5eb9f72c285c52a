//! The requestor API (`/requestor/v1`) against the real TSP simulator: the simulator is the
//! TSP under test's outgoing API and holds the card encryption key; requestors call with their
//! `trk_` keys.

use super::{Answer, Receiver, TestApp, TSP_ID, TSP_SUBJECT};
use serde_json::{json, Value};
use tokenhub_sim::{Authorization, AuthorizationAnswer, TspSimConfig, TspSimHandle};

/// A requestor of the requestor API tests: registered, with an API key.
pub struct ApiRequestor {
    pub key: String,
}

/// The simulator as the TSP under test, its card key published, and requestor `REQ1` (its
/// updates go to a receiver) with an API key.
pub struct CardOnFile {
    pub sim: TspSimHandle,
    pub requestor: ApiRequestor,
    pub receiver: Receiver,
}

impl TestApp {
    /// Starts the TSP simulator and makes it the TSP under test, with its card key published.
    pub async fn card_on_file(&self) -> CardOnFile {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        // The simulator's own updates are not sent in these tests: the test posts them with the
        // TSP under test's certificate.
        let config = TspSimConfig::new("http://127.0.0.1:9", self.keys.clone());
        let sim = tokenhub_sim::spawn(listener, config).await.unwrap();
        let put = self
            .put_tsp_with_subject(TSP_ID, &sim.base_url(), TSP_SUBJECT)
            .await;
        assert!(put.status().is_success(), "{put:?}");
        self.admin_send(
            reqwest::Method::PUT,
            &format!("/admin/v1/tsps/{TSP_ID}/card-encryption-key"),
            Some(&sim.encryption_jwk()),
        )
        .await
        .expect(204);
        let receiver = Receiver::start().await;
        let requestor = self.api_requestor("REQ1", &receiver.base_url()).await;
        CardOnFile {
            sim,
            requestor,
            receiver,
        }
    }

    /// Registers requestor `id` (updates to `base_url`) and issues it an API key.
    pub async fn api_requestor(&self, id: &str, base_url: &str) -> ApiRequestor {
        self.register_requestor(id, base_url, 1).await;
        let made = self
            .admin_post(&format!("/admin/v1/token-requestors/{id}/api-keys"), None)
            .await;
        let key = made.expect(201)["apiKey"].as_str().unwrap().to_string();
        assert!(key.starts_with("trk_"));
        ApiRequestor { key }
    }

    /// A requestor API call with `key` (none: no `Authorization`), headers and a JSON body.
    pub async fn requestor_call(
        &self,
        key: Option<&str>,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Answer {
        let mut r = self.client.request(method, self.url(path));
        if let Some(key) = key {
            r = r.bearer_auth(key);
        }
        for (name, value) in headers {
            r = r.header(*name, *value);
        }
        if let Some(body) = body {
            r = r.json(body);
        }
        Answer::read(r.send().await.expect("the hub answers")).await
    }

    /// `POST /requestor/v1/tokens` with an idempotency key.
    pub async fn tokenize(&self, r: &ApiRequestor, idempotency_key: &str, jwe: &str) -> Answer {
        let body = json!({"encryptedCard": jwe, "requestorReference": "card-ref-1"});
        self.requestor_call(
            Some(&r.key),
            reqwest::Method::POST,
            "/requestor/v1/tokens",
            &[("idempotency-key", idempotency_key)],
            Some(&body),
        )
        .await
    }

    /// `POST /requestor/v1/tokens/{id}/transactions`: a customer-initiated e-commerce payment.
    pub async fn create_transaction(
        &self,
        r: &ApiRequestor,
        token_id: &str,
        amount: &str,
    ) -> Answer {
        let body = json!({"amount": amount, "currency": "EUR", "transactionType": "CIT_ECOM"});
        self.requestor_call(
            Some(&r.key),
            reqwest::Method::POST,
            &format!("/requestor/v1/tokens/{token_id}/transactions"),
            &[],
            Some(&body),
        )
        .await
    }

    pub async fn requestor_get(&self, r: &ApiRequestor, token_id: &str) -> Answer {
        let path = format!("/requestor/v1/tokens/{token_id}");
        self.requestor_call(Some(&r.key), reqwest::Method::GET, &path, &[], None)
            .await
    }

    pub async fn requestor_delete(&self, r: &ApiRequestor, token_id: &str) -> Answer {
        let path = format!("/requestor/v1/tokens/{token_id}");
        self.requestor_call(Some(&r.key), reqwest::Method::DELETE, &path, &[], None)
            .await
    }
}

impl CardOnFile {
    /// The card `{pan, exp 12/40}` as a JWE to the simulator's key.
    pub fn card(&self, pan: &str) -> String {
        let card = json!({"fpan": pan, "exp": "1240", "cvv": "123", "cardholderName": "A Holder"});
        tokenhub_sim::seal_card(&self.sim.encryption_jwk(), card.to_string().as_bytes()).unwrap()
    }

    /// Authorizes a payment of `amount` EUR with a Create Transaction answer, at the simulator,
    /// as the requestor's merchant.
    pub fn authorize(&self, txn: &Value, amount: &str, merchant_id: &str) -> AuthorizationAnswer {
        self.sim.authorize(&Authorization {
            token_pan: txn["tokenPan"].as_str().unwrap().to_string(),
            token_expiry_date: txn["tokenExpiryDate"].as_str().unwrap().to_string(),
            cryptogram: txn["cryptogram"].as_str().unwrap().to_string(),
            amount: amount.to_string(),
            currency: "EUR".to_string(),
            transaction_type: "CIT_ECOM".to_string(),
            merchant_id: merchant_id.to_string(),
        })
    }
}
