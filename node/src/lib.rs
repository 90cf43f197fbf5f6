//! # paych-node
//!
//! The servers and commands of the `paych` binary, as a library so that tests can run them
//! in-process:
//!
//! - [`devnet_rpc`]: the Lotus JSON-RPC server of `paych devnet`, serving an in-process
//!   [`paych_core::chain::devnet::Devnet`] to any Lotus client.
#![warn(missing_docs)]

pub mod devnet_rpc;
