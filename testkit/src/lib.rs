//! The test kit of paych: what every crate's tests, the benches and the fuzz targets build
//! on, so that a test reads as the scenario it shows rather than the setup it needs.
//!
//! Real parts only: real secp256k1 keys, the in-process devnet
//! (`paych_core::chain::devnet`), sled stores on temporary directories, libp2p swarms on
//! loopback, the `paych` binary as a process. Nothing here is a mock.
//!
//! - [`amounts`]: attoFIL and FIL from plain numbers.
//! - [`keys`]: deterministic keys, signed vouchers, a stranger's key, address and signature,
//!   high-s signature twins.
//! - [`actor_env`]: the actor's view of a chain (`ActorEnv`) with a payer, a payee, a
//!   stranger and a channel, for the actor rule tests.
//! - [`deadline`]: the one deadline a test waits for anything, and waiting within it.
//! - [`devnet`]: a devnet mining on a timer or on demand, and nodes on it (a keystore, a
//!   sled store and a manager each) funded from its faucet.
//! - [`channel`]: a payer and a payee node with a funded channel between them, covered
//!   vouchers on it, and the reconciliation honest parties run on it.
//! - [`store`]: a snapshot of everything a store holds, to show that a refusal changed
//!   nothing, and a sled store whose durability a test decides.
//! - [`swarm`]: protocol swarms on loopback, a scripted responder and requests driven to
//!   their answer.
//! - [`raw_peer`]: a peer that writes whatever bytes it is given on the voucher protocol,
//!   and may stall mid-request.
//! - [`vouchers`]: vouchers assembled from the parts property tests generate.
//! - [`onchain`]: parties with raw keys acting on a devnet through a `Chain` — in process or
//!   a Lotus client over JSON-RPC — creating channels and redeeming vouchers, no manager.
//! - [`node`]: a node's networking in process (its host on loopback, with limits or
//!   metrics), a payer reaching a payee through it, vouchers sent and answered, refusals
//!   counted, and idle connections dialed from another loopback address.
//! - [`route`]: a scripted route handler that reports what it is handed and may hold it at
//!   a gate, a node's networking started with it, route requests sent.
//! - [`daemon`]: `paych daemon` and `paych devnet` as processes on 127.0.0.1.
//! - [`tls`]: a test CA and certificate, and a TLS proxy on 127.0.0.1 in front of a server
//!   (the Lotus client over `https`).
//!
//! The kit depends on `paych-core`, `paych-protocol` and `paych-node`; a crate's
//! integration tests use it as a dev-dependency (cargo allows that cycle for `paych-node`'s
//! own integration tests). Unit tests inside those crates must not (they would see a second
//! copy of the crate under test).
//!
//! A kit function fails the test it serves by panicking, so `unwrap` and `expect` are
//! allowed here as in tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![warn(missing_docs)]

pub mod actor_env;
pub mod amounts;
pub mod channel;
pub mod daemon;
pub mod deadline;
pub mod devnet;
pub mod keys;
pub mod node;
pub mod onchain;
pub mod raw_peer;
pub mod route;
pub mod routing;
pub mod store;
pub mod swarm;
pub mod tls;
pub mod vouchers;
