//! A PSP receiving tokenhub's token updates into a SQLite file and printing them.
//!
//! ```text
//! PSP_API_KEY=my-api-key PSP_SIGNING_SECRETS=whsec_... \
//!     cargo run -p tokenhub-receiver --example psp -- 8081 psp-tokens.db
//! ```
//!
//! Arguments: the port (default `PSP_PORT` or 8081) and the database file (default
//! `PSP_DB` or `psp-tokens.db`). `PSP_SIGNING_SECRETS` may hold several secrets separated by
//! commas or spaces (a rotation). Register `http://127.0.0.1:PORT` as the requestor's `baseUrl`
//! at the hub.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokenhub_receiver::{router, Hooks, Receiver, SqliteStore, TokenPans, TokenUpdate, Verifier};

/// The token PANs this PSP keeps. A payment goes through `pans.pay(&client, token_id, &payment)`
/// (a `RequestorClient` of the hub's requestor API): Create Transaction gives the cryptogram and
/// the current token PAN, which is kept until an update changes the token's last digits.
#[derive(Default)]
struct PrintingPsp {
    pans: TokenPans,
}

impl Hooks for PrintingPsp {
    fn discard_token_pan(&self, token_id: &str) {
        self.pans.discard_token_pan(token_id);
        println!("{token_id}: the token PAN changed; the next payment fetches the current one");
    }

    fn on_update(&self, update: &TokenUpdate) {
        self.pans.on_update(update);
        println!(
            "{} ({}): state {}, token …{}, card …{}, as of {}",
            update.token_id,
            update.merchant_id,
            update
                .token_state
                .map_or("-".to_string(), |s| s.to_string()),
            update.token_last_digits.as_deref().unwrap_or("-"),
            update.card_last_digits.as_deref().unwrap_or("-"),
            update.last_update_timestamp_text,
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let port: u16 = match args.next().or_else(|| std::env::var("PSP_PORT").ok()) {
        Some(port) => port.parse()?,
        None => 8081,
    };
    let db = args
        .next()
        .or_else(|| std::env::var("PSP_DB").ok())
        .unwrap_or_else(|| "psp-tokens.db".to_string());
    let api_key = std::env::var("PSP_API_KEY").map_err(|_| "set PSP_API_KEY")?;
    let secrets = std::env::var("PSP_SIGNING_SECRETS").map_err(|_| "set PSP_SIGNING_SECRETS")?;
    let secrets: Vec<&str> = secrets
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .collect();

    // The few lines a PSP needs.
    let verifier = Verifier::new(api_key, secrets)?;
    let store = SqliteStore::open(&db).await?;
    let receiver = Arc::new(Receiver::with_hooks(
        verifier,
        store,
        PrintingPsp::default(),
    ));
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    println!(
        "receiving token updates at http://{}/notify-token-update (database {db})",
        listener.local_addr()?
    );
    axum::serve(listener, router(receiver.clone()))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    println!("stopped: {:?}", receiver.stats());
    Ok(())
}
