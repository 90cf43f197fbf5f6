//! # paych-core
//!
//! The domain of a Filecoin payment-channel node, without networking or servers:
//!
//! - [`types`]: the payment-channel actor's wire types, encoded byte-for-byte as the chain
//!   encodes them (tuple DAG-CBOR), with typed decoding errors;
//! - [`crypto`]: blake2b and secp256k1 in the Filecoin conventions;
//! - [`invoice`]: the payee's signed invoice (amount, payment hash, hubs, expiry) in tuple
//!   DAG-CBOR and its `paychinv1` text form, with its checks;
//! - [`actor`]: the payment-channel actor's rules as pure functions — the single
//!   implementation used both by the devnet chain and by voucher validation;
//! - [`wallet`]: the [`wallet::Wallet`] trait and a Lotus-compatible keystore;
//! - [`chain`]: the [`chain::Chain`] trait, the in-process devnet and the Lotus client;
//! - [`lotus_json`]: the shapes values take in Lotus JSON, apart from the wire types;
//! - [`jsonrpc`]: the JSON-RPC 2.0 envelope (request, response, error object);
//! - [`store`]: the [`store::Store`] trait the manager persists through, and its sled
//!   implementation with group commit;
//! - [`network`]: the networks paych runs on (mainnet, calibnet, its devnet) as presets —
//!   address prefix, chain name, block time, confidence, settle delay — in one table;
//! - [`manager`]: the [`manager::PaymentChannelManager`] — funds, lanes, vouchers, chain
//!   messages, restart recovery and the settler;
//! - [`combine`]: the rules of folding many vouchers into one combined voucher (what
//!   reconciliation asks for and answers), as pure functions;
//! - [`route`]: routed payments through a hub — timing parameters, deadlines, the checks of
//!   conditional vouchers and secrets, the hub's fee and signed policy, refusals;
//! - [`redemption`]: what a payee's vouchers are worth on chain — the one model behind
//!   voucher intake, best-spendable, the settler and reconciliation's checks;
//! - [`watch`]: the watchtower — the payment secrets payees reveal in `UpdateChannelState`
//!   messages, found by scanning the chain's tipsets from a durable checkpoint.
#![warn(missing_docs)]

pub mod actor;
pub mod chain;
pub mod combine;
pub mod crypto;
pub mod invoice;
pub mod jsonrpc;
pub mod lotus_json;
pub mod manager;
pub mod network;
pub mod redemption;
pub mod route;
pub mod store;
pub mod types;
pub mod wallet;
pub mod watch;
