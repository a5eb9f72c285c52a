//! The requestor's library against the hub: `tokenhub_receiver::RequestorClient` tokenizes and
//! pays, and `TokenPans`, as the receiver's hooks, discards a token PAN when an update changes the
//! token's last digits; the next payment fetches the current PAN with Create Transaction.

use crate::support::*;
use std::sync::Arc;
use tokenhub_receiver::{
    router, MemoryStore, Payment, Receiver, RequestorClient, TokenPans, Verifier,
};

hub_tests!(
    config = requestors_allowed;
    the_library_discards_a_renewed_token_pan_and_fetches_the_new_one,
);

async fn the_library_discards_a_renewed_token_pan_and_fetches_the_new_one(app: TestApp) {
    let cof = app.card_on_file().await;
    // A PSP with its own receiving endpoint, built on the library.
    let pans = Arc::new(TokenPans::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let secrets = app.register_requestor("PSP1", &base_url, 1).await;
    let verifier = Verifier::new(secrets.api_key, &secrets.signing_secrets).unwrap();
    let receiver = Arc::new(Receiver::with_hooks(
        verifier,
        MemoryStore::new(),
        pans.clone(),
    ));
    tokio::spawn(async move { axum::serve(listener, router(receiver)).await });
    let key = app
        .admin_post("/admin/v1/token-requestors/PSP1/api-keys", None)
        .await
        .expect(201)["apiKey"]
        .as_str()
        .unwrap()
        .to_string();
    let client = RequestorClient::new(&app.wallet_address, &key, app.client.clone());

    let keys = client.encryption_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    let token = client
        .tokenize(
            &cof.card("4111111111111111"),
            "psp-card-1",
            Some("customer-7"),
        )
        .await
        .unwrap();
    assert_eq!(token.token_state, "ACTIVE");
    let payment = Payment {
        amount: "999".into(),
        currency: "EUR".into(),
        transaction_type: "MIT_RECURRING".into(),
    };
    let first = pans.pay(&client, &token.token_id, &payment).await.unwrap();
    assert_eq!(
        pans.get(&token.token_id).as_deref(),
        Some(first.token_pan.as_str())
    );
    assert!(
        !format!("{first:?}").contains(&first.token_pan),
        "Debug masks the PAN"
    );

    // The TSP renews the token; the hub forwards the update to the PSP's endpoint.
    let update = cof.sim.renew_card_on_file_unsent(&token.token_id).unwrap();
    let body = serde_json::to_value(&update).unwrap();
    assert_eq!(app.post_update(&token.token_id, &body).await.status, 204);
    eventually("the PSP to discard the old token PAN", || async {
        pans.get(&token.token_id).is_none().then_some(())
    })
    .await;
    let second = pans.pay(&client, &token.token_id, &payment).await.unwrap();
    assert_ne!(second.token_pan, first.token_pan);
    assert!(second
        .token_pan
        .ends_with(update.token_last_digits.as_deref().unwrap()));
    assert_eq!(pans.get(&token.token_id), Some(second.token_pan.clone()));

    client.delete(&token.token_id).await.unwrap();
    let refused = client.create_transaction(&token.token_id, &payment).await;
    match refused {
        Err(tokenhub_receiver::ClientError::Refused { status, error, .. }) => {
            assert_eq!((status, error.as_str()), (409, "TOKEN_NOT_ACTIVE"));
        }
        other => panic!("{other:?}"),
    }
}
