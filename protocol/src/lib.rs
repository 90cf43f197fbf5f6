//! # paych-protocol
//!
//! The wire protocols paych nodes speak to each other over libp2p. This crate turns bytes
//! into typed messages and events; it never touches the store or the chain.
#![warn(missing_docs)]

/// Protocol id of the voucher exchange: a payer sends a voucher, the payee validates,
/// stores and acknowledges it.
pub const VOUCHER_PROTOCOL: &str = "/paych/voucher/1.0.0";
/// Protocol id of reconciliation: a payee asks the payer to fold many vouchers into one.
pub const RECONCILE_PROTOCOL: &str = "/paych/reconcile/1.0.0";
/// Protocol id of the paid chunk transfer used by retrievals.
pub const RETRIEVAL_PROTOCOL: &str = "/paych/retrieval/1.0.0";
