//! The node's JSON-RPC: the servers, the client and every method's declaration.
//!
//! - [`methods`]: every API method declared once (name, permission, parameter and result
//!   types); the server's dispatch, the permission table, the metrics' labels, the method
//!   table of `docs/api.md` and the typed client calls all come from it.
//! - [`params`]: the methods' parameter types, read by the server and written by the client.
//! - [`server`]: the node's API over HTTP and WebSocket, with [`auth`]'s Lotus-style JWT
//!   permissions; [`calls`] reads requests (one or a batch) and answers them with
//!   go-jsonrpc's codes and statuses; [`websocket`] serves a WebSocket connection's calls.
//! - [`chain`]: the chain methods Lotus's `paych` commands call (`StateWaitMsg`,
//!   `StateSearchMsg`, `ChainHead`) and `Version`, forwarded to the node's chain backend.
//! - the methods' handlers by namespace: `paych` (the manager), `wallet` (the keystore),
//!   `net` (libp2p: `Net*`, `PaychPay`, `PaychReconcile`), `retrieval` (paid retrieval).
//! - [`client`]: the typed client of a running daemon's API, for the CLI, the testnet and
//!   the tests.
//! - [`devnet`]: the Lotus JSON-RPC server of `paych devnet`.
//! - `envelope`: the HTTP and JSON-RPC 2.0 plumbing the two servers share.
//!
//! Response shapes are Lotus JSON ([`paych_core::lotus_json`]); the JSON-RPC envelope
//! types are [`paych_core::jsonrpc`]'s. Nothing here decides about channels or vouchers.

pub mod auth;
pub mod calls;
pub mod chain;
pub mod client;
mod context;
pub mod devnet;
mod envelope;
pub mod methods;
mod net;
pub mod params;
mod paych;
mod retrieval;
pub mod server;
mod wallet;
pub mod websocket;

pub use context::METHOD_ERROR;
pub use envelope::{ServeError, MAX_CONCURRENT_REQUESTS, MAX_REQUEST_BYTES};
