//! `paych invoice …`: a payee's invoices. `create` asks the daemon for a signed invoice
//! (`PaychInvoice`) and prints its text form and fields; `decode` reads a text form without
//! a daemon and prints its fields and whether the payee's signature verifies. `paych
//! pay-invoice` pays one through a hub (`PaychPayInvoice`) and prints the receipt.

use std::time::Duration;

use anyhow::{anyhow, Context};
use paych_core::invoice::{unix_now, Invoice};
use paych_core::lotus_json::api::InvoiceJson;
use paych_core::types::{Network, TokenAmount};
use paych_node::rpc::methods::{PaychInvoice, PaychPayInvoice, WalletDefaultAddress};
use paych_node::rpc::params::{InvoiceHubs, InvoiceText};

use super::show::{fil, write_rows};
use super::{addr, Daemon, InvoiceCommand, RepoArg};

/// Runs a `paych invoice …` command, addresses printed for `network` (`--network`, if
/// given; `decode` prints for the test networks otherwise).
pub async fn run_invoice(
    out: &mut String,
    command: InvoiceCommand,
    network: Option<Network>,
) -> anyhow::Result<()> {
    match command {
        InvoiceCommand::Create { amount, expiry, hub, payee, repo } => {
            create(out, &repo, network, amount, expiry, hub, payee).await
        }
        InvoiceCommand::Decode { text } => decode(out, &text, network.unwrap_or(Network::Testnet)),
    }
}

/// `paych invoice create`: the daemon signs an invoice from `payee` (else its default key).
async fn create(
    out: &mut String,
    repo: &RepoArg,
    network: Option<Network>,
    amount: TokenAmount,
    expiry: Duration,
    hubs: Vec<String>,
    payee: Option<String>,
) -> anyhow::Result<()> {
    let hubs = hubs
        .iter()
        .map(|pair| InvoiceHubs::parse_pair(pair).map_err(|e| anyhow!("--hub {pair}: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let daemon = Daemon::on(repo, network)?;
    let payee = match payee {
        Some(payee) => addr(&payee)?,
        None => match daemon.api.call::<WalletDefaultAddress>(()).await? {
            Some(default) => addr(&default)?,
            None => anyhow::bail!("the wallet has no default address: pass --payee"),
        },
    };
    let params = (payee, amount, expiry.as_secs(), InvoiceHubs(hubs));
    let invoice = daemon.api.call::<PaychInvoice>(params).await?;
    out.push_str(&format!("{}\n", invoice.text));
    write_rows(out, &field_rows(&invoice)?);
    Ok(())
}

/// `paych pay-invoice`: the daemon pays the invoice through a hub; the receipt's rows.
pub async fn pay(
    out: &mut String,
    daemon: &Daemon,
    text: String,
    max_fee: Option<TokenAmount>,
) -> anyhow::Result<()> {
    let receipt = daemon.api.call::<PaychPayInvoice>((InvoiceText(text), max_fee)).await?;
    write_rows(
        out,
        &[
            ("Paid", fil(&receipt.amount)?),
            ("Fee", fil(&receipt.fee)?),
            ("Hub", receipt.hub.clone()),
            ("Channel", receipt.channel.clone()),
            ("Lane", receipt.lane.to_string()),
            ("Payment Hash", receipt.payment_hash.clone()),
            ("Secret", receipt.secret.clone()),
        ],
    );
    Ok(())
}

/// `paych invoice decode`: the fields, whether the signature verifies and whether the
/// invoice may still be paid.
fn decode(out: &mut String, text: &str, network: Network) -> anyhow::Result<()> {
    let invoice = Invoice::from_text(text)
        .context("cannot decode the invoice: expected the paychinv1… text that `paych invoice create` prints")?;
    let mut rows = field_rows(&InvoiceJson::new(&invoice, network)?)?;
    let signature = match invoice.verify_signature() {
        Ok(()) => "valid".to_owned(),
        Err(e) => format!("invalid: {e}"),
    };
    let now = unix_now();
    let state = if now > invoice.expiry { "expired" } else { "payable" };
    rows.extend([("Signature", signature), ("State", state.to_owned())]);
    write_rows(out, &rows);
    Ok(())
}

/// The invoice's fields, one row each.
fn field_rows(invoice: &InvoiceJson) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut rows = vec![
        ("Invoice", invoice.id.clone()),
        ("Amount", fil(&invoice.amount)?),
        ("Payment Hash", invoice.payment_hash.clone()),
        ("Payee", invoice.payee.clone()),
        ("Expiry", invoice.expiry.to_string()),
        ("Payee Margin", format!("{} epochs", invoice.payee_margin)),
    ];
    rows.extend(
        invoice.hubs.iter().map(|hub| ("Hub", format!("{} {}", hub.address, hub.multiaddr))),
    );
    Ok(rows)
}
