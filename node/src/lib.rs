//! # paych-node
//!
//! The servers of the `paych` binary, as a library so that tests can run them in-process.
//! It returns typed errors; the commands (`cli`, `bench`, `testnet`) live on the binary's
//! side, in `src/bin/paych/`, and are the only code that uses `anyhow`.
//!
//! - [`rpc`]: the node's Lotus-style JSON-RPC API over a payment-channel manager and a
//!   wallet (`Filecoin.Paych*`, `Filecoin.Wallet*`, `Filecoin.Net*`), every method declared
//!   once; its typed client; and the Lotus JSON-RPC server of `paych devnet`.
//! - [`limits`]: the raw sign and recover rates figures are reported against.
//! - [`network`]: the libp2p transport — the event loop owning the swarm and its limits,
//!   its client; hands inbound requests out as events and sends their answers.
//! - [`inbound`]: the node's answers to inbound vouchers, reconcile requests and retrieval
//!   requests, through the manager and the retrieval provider.
//! - [`host`]: a node's network and inbound handling for one manager, started together.
//! - [`pay`]: paying a flow's lane and sending the voucher to the payee.
//! - [`reconcile_as_payee`]: asking a payer to fold a channel's vouchers into one combined
//!   voucher.
//! - [`retrieval`]: paid retrievals — the provider's blobs and flows, the client's fetch.
//! - [`route`]: routed payments through a hub — the `[hub]` section, auto-collateral,
//!   receipts.
//! - [`metrics`]: the node's Prometheus counters, served on `/metrics`.
//! - [`refusals`]: the reasons the node refuses connections and requests, and the pacing of
//!   their log lines.
//! - [`daemon`]: `paych daemon` — the repo and its `config.toml`, the chain, the manager, the
//!   network and the API; [`daemon::DaemonError`] says what failed.
#![warn(missing_docs)]

pub mod daemon;
pub mod host;
pub mod inbound;
pub mod limits;
pub mod metrics;
pub mod network;
pub mod pay;
pub mod reconcile_as_payee;
pub mod refusals;
pub mod relay;
pub mod retrieval;
pub mod route;
pub mod rpc;

/// Parses a duration: a whole number followed by `ms`, `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("{text:?}: expected e.g. 1s or 500ms"))?;
    let millis = match unit {
        "ms" => Some(value),
        "s" => value.checked_mul(1000),
        "m" => value.checked_mul(60_000),
        "h" => value.checked_mul(3_600_000),
        _ => return Err(format!("{text:?}: the unit must be ms, s, m or h")),
    };
    millis.map(std::time::Duration::from_millis).ok_or_else(|| format!("{text:?}: too long"))
}
