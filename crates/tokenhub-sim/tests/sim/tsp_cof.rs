//! Card-on-file tokens at the TSP simulator over HTTP: the card arrives as a JWE only the
//! simulator opens; tokens, transaction credentials, authorizations that work exactly once,
//! deletion, and a renewal that reaches the hub as a token update.

use serde_json::{json, Value};
use tokenhub_sim::seal_card;

use crate::helpers::{Answered, TestSim};

const VISA: &str = "4111111111111111";

struct Cof<'a> {
    sim: &'a TestSim,
    client: reqwest::Client,
}

impl<'a> Cof<'a> {
    fn new(sim: &'a TestSim) -> Self {
        Self {
            sim,
            client: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: String,
        correlation: &str,
        body: Value,
    ) -> Answered {
        let response = self
            .client
            .request(method, url)
            .header("x-correlation-id", correlation)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        Answered {
            status,
            headers,
            body,
        }
    }

    fn card(&self, pan: &str) -> String {
        let jwk = self.sim.handle.encryption_jwk();
        seal_card(
            &jwk,
            json!({"fpan": pan, "exp": "1240", "cvv": "123"})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    }

    async fn create(&self, requestor: &str, correlation: &str, jwe: &str) -> Answered {
        let url = format!("{}/cardOnFileTokens", self.sim.handle.base_url());
        let body = json!({"tokenRequestorId": requestor, "cipheredCardInfo": jwe});
        self.send(reqwest::Method::POST, url, correlation, body)
            .await
    }

    async fn credentials(&self, requestor: &str, token_id: &str, amount: &str) -> Answered {
        let url = format!(
            "{}/cardOnFileTokens/{token_id}/transactionCredentials",
            self.sim.handle.base_url()
        );
        let body = json!({"tokenRequestorId": requestor, "amount": amount, "currency": "EUR",
            "transactionType": "CIT_ECOM", "merchantId": "MERCHANT-1"});
        self.send(reqwest::Method::POST, url, "c-creds", body).await
    }

    async fn authorize(&self, creds: &Value, amount: &str) -> Value {
        let body = json!({"tokenPan": creds["tokenPan"], "tokenExpiryDate": creds["tokenExpiryDate"],
            "cryptogram": creds["cryptogram"], "amount": amount, "currency": "EUR",
            "transactionType": "CIT_ECOM", "merchantId": "MERCHANT-1"});
        let url = format!("{}/sim/authorizations", self.sim.handle.sim_url());
        self.send(reqwest::Method::POST, url, "c-auth", body)
            .await
            .body
    }
}

#[tokio::test]
async fn a_card_on_file_token_pays_once_per_cryptogram_and_a_renewal_reaches_the_hub() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let cof = Cof::new(&sim);
    let jwe = cof.card(VISA);
    let made = cof.create("REQ1", "c-1", &jwe).await;
    assert_eq!(made.status, 200, "{made:?}");
    assert_eq!(made.body["tokenState"], "ACTIVE");
    assert_eq!(made.body["cardInfo"]["last4"], "1111");
    assert_eq!(made.header("x-correlation-id"), Some("c-1"));
    let token_id = made.body["tokenId"].as_str().unwrap().to_string();
    let again = cof.create("REQ1", "c-1", &jwe).await;
    assert_eq!(
        again.body["tokenId"], made.body["tokenId"],
        "a repeat gets the same token"
    );

    let creds = cof.credentials("REQ1", &token_id, "1500").await;
    assert_eq!(creds.status, 200, "{creds:?}");
    let pan = creds.body["tokenPan"].as_str().unwrap();
    assert!(pan.starts_with("489537") && pan.len() == 16);
    assert_eq!(
        &pan[12..],
        made.body["tokenInfo"]["last4"].as_str().unwrap()
    );
    assert_eq!(creds.body["eci"], "05");
    assert_eq!(
        cof.authorize(&creds.body, "1600").await["reason"],
        "BAD_CRYPTOGRAM"
    );
    assert_eq!(
        cof.authorize(&creds.body, "1500").await["reason"],
        "APPROVED"
    );
    assert_eq!(cof.authorize(&creds.body, "1500").await["reason"], "REPLAY");
    let other = cof.credentials("REQ2", &token_id, "1500").await;
    assert_eq!(
        other.response_code(),
        Some(119),
        "another requestor's token is unknown"
    );

    let renewal = reqwest::Client::new()
        .post(format!(
            "{}/sim/cardOnFile/{token_id}/renewal",
            sim.handle.sim_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(renewal.status(), 200);
    let updates = sim.hub.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].0, token_id);
    let new_last4 = updates[0].1["tokenLastDigits"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_last4, made.body["tokenInfo"]["last4"].as_str().unwrap());
    let renewed = cof.credentials("REQ1", &token_id, "700").await;
    assert!(renewed.body["tokenPan"]
        .as_str()
        .unwrap()
        .ends_with(&new_last4));
    assert_eq!(
        cof.authorize(&renewed.body, "700").await["reason"],
        "APPROVED"
    );
}

#[tokio::test]
async fn cards_are_refused_with_the_contract_codes_and_a_bad_jwe_is_112() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let cof = Cof::new(&sim);
    let code = |a: Answered| a.response_code();
    assert_eq!(
        code(cof.create("R", "c1", &cof.card("4111111111111112")).await),
        Some(166)
    );
    assert_eq!(
        code(cof.create("R", "c2", &cof.card("6011111111111117")).await),
        Some(115)
    );
    assert_eq!(
        code(cof.create("R", "c3", &cof.card("378282246310005")).await),
        Some(163)
    );
    assert_eq!(
        code(cof.create("R", "c4", "eyJhbGciOiJub25lIn0.e30.").await),
        Some(112)
    );
    let jwe = cof.card(VISA);
    let mut tampered = jwe.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(code(cof.create("R", "c5", &tampered).await), Some(112));
    assert_eq!(cof.create("R", "c6", &jwe).await.status, 200);
    assert_eq!(
        code(cof.create("R", "c7", &cof.card(VISA)).await),
        Some(167)
    );
    assert_eq!(cof.create("S", "c8", &cof.card(VISA)).await.status, 200);
    assert_eq!(cof.create("T", "c9", &cof.card(VISA)).await.status, 200);
    assert_eq!(
        code(cof.create("U", "c10", &cof.card(VISA)).await),
        Some(164)
    );
}

#[tokio::test]
async fn a_deleted_token_gets_no_credentials_and_its_state_is_named() {
    let sim = TestSim::start(1, vec![], |_| {}).await;
    let cof = Cof::new(&sim);
    let made = cof.create("R", "c1", &cof.card(VISA)).await;
    let token_id = made.body["tokenId"].as_str().unwrap().to_string();
    let url = format!("{}/cardOnFileTokens/{token_id}", sim.handle.base_url());
    let other = cof
        .send(
            reqwest::Method::DELETE,
            url.clone(),
            "d0",
            json!({"tokenRequestorId": "S"}),
        )
        .await;
    assert_eq!(other.response_code(), Some(119));
    let deleted = cof
        .send(
            reqwest::Method::DELETE,
            url,
            "d1",
            json!({"tokenRequestorId": "R"}),
        )
        .await;
    assert_eq!(deleted.status, 204);
    let creds = cof.credentials("R", &token_id, "100").await;
    assert_eq!(creds.response_code(), Some(432));
    assert!(creds.body["errorMessage"]
        .as_str()
        .unwrap()
        .contains("DELETED"));
}
