//! `tokenhub cards`: the issuer's card events (`/admin/v1/issuers/{id}/cards/{ref}/renew|replace`):
//! a renewed or replaced card updates every live token of it, at the TSP and at its requestors.

use crate::api::{read_json, Admin, HubArgs};
use crate::output::Output;
use serde_json::{Map, Value};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum CardsCommand {
    /// A renewed card: a new expiry (--expiry), maybe new card art.
    Renew {
        issuer_id: String,
        wallet_card_ref_id: String,
        #[command(flatten)]
        card: CardFlags,
    },
    /// A replaced card: new last digits (--last-digits), maybe a new expiry and art.
    Replace {
        issuer_id: String,
        wallet_card_ref_id: String,
        #[command(flatten)]
        card: CardFlags,
    },
}

#[derive(clap::Args)]
pub struct CardFlags {
    /// The whole body (`CardBody` in /openapi.json), instead of the flags.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["last_digits", "expiry", "art", "issuer_card_ref_id"])]
    file: Option<PathBuf>,
    /// The card's last digits (2 to 5).
    #[arg(long)]
    last_digits: Option<String>,
    /// The card's expiry, MMYY.
    #[arg(long)]
    expiry: Option<String>,
    /// The card art's id.
    #[arg(long)]
    art: Option<String>,
    /// The issuer's reference of the card, passed to the TSP.
    #[arg(long)]
    issuer_card_ref_id: Option<String>,
}

impl CardFlags {
    fn body(&self) -> anyhow::Result<Value> {
        if let Some(f) = &self.file {
            return read_json(f);
        }
        let mut body = Map::new();
        for (name, v) in [
            ("cardLastDigits", &self.last_digits),
            ("cardExpiryDate", &self.expiry),
            ("cardArtId", &self.art),
            ("issuerCardRefId", &self.issuer_card_ref_id),
        ] {
            if let Some(v) = v {
                body.insert(name.into(), Value::String(v.clone()));
            }
        }
        Ok(Value::Object(body))
    }
}

pub async fn run(cmd: CardsCommand, hub: &HubArgs, out: Output) -> anyhow::Result<()> {
    let admin = Admin::new(hub)?;
    let (issuer, card_ref, card, action) = match cmd {
        CardsCommand::Renew {
            issuer_id,
            wallet_card_ref_id,
            card,
        } => (issuer_id, wallet_card_ref_id, card, "renew"),
        CardsCommand::Replace {
            issuer_id,
            wallet_card_ref_id,
            card,
        } => (issuer_id, wallet_card_ref_id, card, "replace"),
    };
    let url = admin.url(&["issuers", &issuer, "cards", &card_ref, action]);
    let a = admin.post(url, Some(&card.body()?)).await?;
    // The tokens the change reached.
    out.list(&a.text, "/tokenIds", &[("tokenId", "")])
}
