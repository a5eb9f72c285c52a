//! Calling the wallet API (`/wallet/v1`) as the device and the wallet do.

use super::{Answer, TestApp, DEVICE, ISSUER, PRODUCT};
use serde_json::{json, Value};

/// A digitization of a fresh card of the product onto the registered device.
pub fn digitization_body() -> Value {
    json!({
        "issuerId": ISSUER,
        "productId": PRODUCT,
        "deviceId": DEVICE,
        "walletCardRefId": format!("card-{}", uuid::Uuid::new_v4().simple()),
    })
}

impl TestApp {
    /// Registers a wallet provider through the admin API and makes it an API key; the key.
    pub async fn register_wallet_provider(&self, provider_id: &str) -> String {
        let path = format!("/admin/v1/wallet-providers/{provider_id}");
        let body = json!({"name": format!("{provider_id} Inc.")});
        self.admin_send(reqwest::Method::PUT, &path, Some(&body))
            .await
            .expect(200);
        self.new_wallet_key(provider_id).await.1
    }

    /// A new API key of a registered provider: its id and the key.
    pub async fn new_wallet_key(&self, provider_id: &str) -> (String, String) {
        let a = self
            .admin_post(
                &format!("/admin/v1/wallet-providers/{provider_id}/api-keys"),
                None,
            )
            .await;
        let v = a.expect(201);
        (
            v["keyId"].as_str().expect("a keyId").to_string(),
            v["apiKey"].as_str().expect("an apiKey").to_string(),
        )
    }

    /// A client whose every request carries `api_key` (`Authorization: Bearer`).
    pub fn wallet_client(&self, api_key: &str) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        let mut value: reqwest::header::HeaderValue =
            format!("Bearer {api_key}").parse().expect("a header value");
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
        super::client_builder()
            .default_headers(headers)
            .build()
            .expect("a client")
    }

    pub async fn register_device(&self, body: &Value) -> reqwest::Response {
        self.wallet
            .post(self.url("/wallet/v1/devices"))
            .json(body)
            .send()
            .await
            .expect("the hub answers")
    }

    pub async fn post_digitization(&self, body: &Value) -> reqwest::Response {
        self.wallet
            .post(self.url("/wallet/v1/digitizations"))
            .json(body)
            .send()
            .await
            .expect("the hub answers")
    }

    /// Digitizes a card onto the registered device; the fake TSP creates the token. Returns its id.
    pub async fn digitize(&self) -> String {
        let r = self.post_digitization(&digitization_body()).await;
        assert_eq!(r.status(), 201, "digitize: {:?}", r.text().await);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["state"], "PENDING_DATA");
        body["tokenId"].as_str().expect("a tokenId").to_string()
    }

    /// Digitizes a card and has the fake TSP call the token `token_id`.
    pub async fn digitize_as(&self, token_id: &str) -> String {
        self.tsp.next_token_id(token_id);
        let id = self.digitize().await;
        assert_eq!(id, token_id);
        id
    }

    /// Digitizes a card onto the device: [`digitization_body`] with `extra`'s fields (e.g.
    /// `tokenRequestorId`, `card`). Returns the token's id (PENDING_DATA).
    pub async fn digitize_with(&self, extra: Value) -> String {
        let mut body = digitization_body();
        for (k, v) in extra.as_object().expect("an object").iter() {
            body[k] = v.clone();
        }
        let a = Answer::read(self.post_digitization(&body).await).await;
        let v = a.expect(201);
        assert_eq!(v["state"], "PENDING_DATA");
        v["tokenId"].as_str().unwrap().to_string()
    }

    /// Plays the device: what its poll (no wait) brings.
    pub async fn device_offers(&self) -> Value {
        self.wallet
            .get(self.url(&format!("/wallet/v1/devices/{DEVICE}/personalizations")))
            .send()
            .await
            .expect("the hub answers")
            .json()
            .await
            .expect("offers")
    }

    /// Plays the device: takes the personalization offered for `token_id` and reports SUCCESS.
    pub async fn confirm_personalization(&self, token_id: &str) {
        let offers = self.device_offers().await;
        let offer = offers
            .as_array()
            .expect("an array of offers")
            .iter()
            .find(|o| o["tokenId"] == token_id)
            .unwrap_or_else(|| panic!("a personalization is offered for {token_id}: {offers}"));
        let id = offer["personalizationId"].as_str().unwrap();
        let r = self
            .wallet
            .post(self.url(&format!("/wallet/v1/personalizations/{id}/result")))
            .json(&json!({"status": "SUCCESS"}))
            .send()
            .await
            .expect("the hub answers");
        assert_eq!(r.status(), 204, "the device's result is taken");
    }

    /// The device's work now (`waitSeconds=0`).
    pub async fn device_work(&self, device_id: &str) -> Vec<Value> {
        let r = self
            .wallet
            .get(self.url(&format!(
                "/wallet/v1/devices/{device_id}/personalizations?waitSeconds=0"
            )))
            .send()
            .await
            .expect("the hub answers");
        Answer::read(r)
            .await
            .expect(200)
            .as_array()
            .unwrap()
            .clone()
    }

    /// The tokens the device is asked to remove.
    pub async fn removals(&self, device_id: &str) -> Vec<String> {
        self.device_work(device_id)
            .await
            .into_iter()
            .filter(|w| w["action"] == "REMOVE")
            .map(|w| {
                assert_eq!(
                    w.as_object().unwrap().len(),
                    2,
                    "a removal is {{action, tokenId}}: {w}"
                );
                w["tokenId"].as_str().unwrap().to_string()
            })
            .collect()
    }

    /// The device confirms it removed the token; the status.
    pub async fn confirm_removed(&self, device_id: &str, token_id: &str) -> u16 {
        self.wallet
            .post(self.url(&format!(
                "/wallet/v1/devices/{device_id}/tokens/{token_id}/removed"
            )))
            .send()
            .await
            .expect("the hub answers")
            .status()
            .as_u16()
    }
}
