//! # paych-node
//!
//! The servers and commands of the `paych` binary, as a library so that tests can run them
//! in-process:
//!
//! - [`devnet_rpc`]: the Lotus JSON-RPC server of `paych devnet`, serving an in-process
//!   [`paych_core::chain::devnet::Devnet`] to any Lotus client.
//! - [`api`]: the node's Lotus-style JSON-RPC API over a payment-channel manager and a
//!   wallet (`Filecoin.Paych*`, `Filecoin.Wallet*`), guarded by [`auth`]'s JWT permissions.
//! - [`network`]: the libp2p event loop and its client; answers inbound vouchers.
//! - [`pay`]: paying a flow's lane and sending the voucher to the payee.
//! - [`reconcile`]: asking a payer to fold a channel's vouchers into one combined voucher.
//! - [`client`]: a JSON-RPC client of a running daemon, for the CLI.
//! - [`metrics`]: the node's Prometheus counters, served on `/metrics`.
//! - [`daemon`]: `paych daemon` — the repo, the chain, the manager, the network and the API.
#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod client;
pub mod daemon;
pub mod devnet_rpc;
mod jsonrpc;
pub mod metrics;
pub mod network;
pub mod pay;
pub mod reconcile;
pub mod retrieval;
pub mod testnet;
