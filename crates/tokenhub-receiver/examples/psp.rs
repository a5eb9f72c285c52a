//! A PSP on tokenhub, the whole requestor job: it tokenizes a card on file, pays with the token,
//! receives the token's updates into a SQLite file, and when an update changes the token's last
//! digits it discards the token PAN it kept and pays again, which fetches the current one with
//! Create Transaction.
//!
//! ```text
//! PSP_HUB_URL=https://127.0.0.1:8444 PSP_REQUESTOR_KEY=trk_... \
//! PSP_API_KEY=my-api-key PSP_SIGNING_SECRETS=whsec_... \
//!     cargo run -p tokenhub-receiver --example psp -- 8081 psp-tokens.db
//! ```
//!
//! Arguments: the port (default `PSP_PORT` or 8081) and the database file (default `PSP_DB` or
//! `psp-tokens.db`). `PSP_HUB_URL` is the hub's requestor API root, `PSP_REQUESTOR_KEY` the
//! requestor's `trk_` key; `PSP_API_KEY` and `PSP_SIGNING_SECRETS` (several separated by commas
//! or spaces during a rotation) authenticate the hub's updates. `PSP_CARD_PAN` and
//! `PSP_CARD_EXPIRY` (MMYY) name the card (a test card by default). Register
//! `http://127.0.0.1:PORT` as the requestor's `baseUrl` at the hub.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokenhub_receiver::{
    encrypt_card, router, CardData, Hooks, Payment, Receiver, RequestorClient, SqliteStore,
    TokenPans, TokenUpdate, Verifier,
};
use tokio::sync::mpsc;

/// The token PANs this PSP keeps, and who to tell when one is discarded.
struct Psp {
    pans: TokenPans,
    discarded: mpsc::UnboundedSender<String>,
}

impl Psp {
    /// Runs `f` on the kept PANs; when it discarded one, the token is paid with again.
    fn forget(&self, token_id: &str, f: impl FnOnce(&TokenPans)) {
        let before = self.pans.discarded();
        f(&self.pans);
        if self.pans.discarded() > before {
            println!("{token_id}: new last digits; the token PAN kept is discarded");
            let _ = self.discarded.send(token_id.to_string());
        }
    }
}

impl Hooks for Psp {
    fn discard_token_pan(&self, token_id: &str) {
        self.forget(token_id, |pans| pans.discard_token_pan(token_id));
    }

    fn on_update(&self, update: &TokenUpdate) {
        println!(
            "{}: state {}, token …{}, as of {}",
            update.token_id,
            update
                .token_state
                .map_or("-".to_string(), |s| s.to_string()),
            update.token_last_digits.as_deref().unwrap_or("-"),
            update.last_update_timestamp_text,
        );
        self.forget(&update.token_id, |pans| pans.on_update(update));
    }
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name}"))
}

/// One payment: Create Transaction (the token PAN is kept) and what goes to the acquirer.
async fn pay(
    psp: &Psp,
    client: &RequestorClient,
    token_id: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let payment = Payment {
        amount: "1299".into(),
        currency: "EUR".into(),
        transaction_type: "MIT_RECURRING".into(),
    };
    let c = psp.pans.pay(client, token_id, &payment).await?;
    // The acquirer gets the token PAN, expiry, cryptogram and ECI; never print the PAN.
    let last4 = c
        .token_pan
        .get(c.token_pan.len().saturating_sub(4)..)
        .unwrap_or("");
    println!(
        "{token_id}: paid 12.99 EUR with token PAN …{last4}, ECI {}",
        c.eci
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    // reqwest is built without a TLS crypto provider: the application picks one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .or_else(|| env("PSP_PORT").ok())
        .map_or(Ok(8081), |p| p.parse())?;
    let db = args
        .next()
        .or_else(|| env("PSP_DB").ok())
        .unwrap_or_else(|| "psp-tokens.db".into());
    let secrets = env("PSP_SIGNING_SECRETS")?;
    let secrets: Vec<&str> = secrets
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .collect();
    let card = CardData {
        pan: env("PSP_CARD_PAN").unwrap_or_else(|_| "4111111111111111".into()),
        expiry: env("PSP_CARD_EXPIRY").unwrap_or_else(|_| "1230".into()),
        cvv: None,
        cardholder_name: None,
    };

    // Receiving the hub's updates: the token PANs kept are the hooks.
    let (discarded, mut to_refetch) = mpsc::unbounded_channel();
    let psp = Arc::new(Psp {
        pans: TokenPans::default(),
        discarded,
    });
    let verifier = Verifier::new(env("PSP_API_KEY")?, secrets)?;
    let receiver = Arc::new(Receiver::with_hooks(
        verifier,
        SqliteStore::open(&db).await?,
        psp.clone(),
    ));
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    println!(
        "receiving token updates at http://{}/notify-token-update",
        listener.local_addr()?
    );
    tokio::spawn(async move { axum::serve(listener, router(receiver)).await });

    // Tokenize the card (encrypted to the TSP's published key: the hub never sees it) and pay.
    let client = RequestorClient::with_defaults(&env("PSP_HUB_URL")?, &env("PSP_REQUESTOR_KEY")?)?;
    let (tsp, jwk) = client
        .encryption_keys()
        .await?
        .into_iter()
        .next()
        .ok_or("no card encryption key")?;
    let token = client
        .tokenize(&encrypt_card(&jwk, &card)?, "customer-1-card-1", None)
        .await?;
    println!(
        "{}: tokenized at {tsp}, token …{}",
        token.token_id,
        token.token_last_digits.as_deref().unwrap_or("-")
    );
    pay(&psp, &client, &token.token_id).await?;

    // A renewal's update discarded a PAN: the next payment fetches the current one.
    loop {
        tokio::select! {
            Some(token_id) = to_refetch.recv() => pay(&psp, &client, &token_id).await?,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    println!("stopped: {} token PAN(s) discarded", psp.pans.discarded());
    Ok(())
}
