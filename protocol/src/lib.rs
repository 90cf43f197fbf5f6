//! # paych-protocol
//!
//! The wire protocols paych nodes speak to each other over libp2p. This crate turns bytes
//! into typed messages and events; it never touches the store or the chain.
//!
//! - [`messages`]: the messages of `/paych/voucher/1.0.0` and `/paych/reconcile/2.0.0` and
//!   the signed peer record, in tuple DAG-CBOR with typed decoding errors;
//! - [`retrieval`]: the messages of `/paych/retrieval/2.0.0`, the paid chunk transfer, and
//!   the BLAKE2b-256 chunk hashes and root that let a client check every chunk;
//! - [`route`]: the messages of `/paych/route/1.0.0`, payments routed through a hub with
//!   hash-locked vouchers, and their status codes;
//! - [`codec`]: the request-response [`Codec`] — one message per stream, a hard size limit
//!   per message, a read timeout;
//! - [`exchange`]: [`Exchange`], the request-response behaviour that also reports requests
//!   the codec refused;
//! - [`ip_limits`]: the cap on inbound connections from one remote address;
//! - [`dial_from`]: the TCP transport whose dials may leave from one chosen local address;
//! - [`behaviour`]: the composed [`Behaviour`] (connection limits, identify, ping and the
//!   paych protocols), its [`Config`] and [`Event`], and [`build_swarm`].
//!
//! Every byte layout and status code is written down in `docs/protocol.md`.
#![warn(missing_docs)]

pub mod behaviour;
pub mod codec;
pub mod dial_from;
pub mod exchange;
pub mod ip_limits;
pub mod messages;
pub mod retrieval;
pub mod route;

pub use behaviour::{
    build_swarm, Behaviour, Config, Event, LimitKind, ReconcileEvent, RetrievalEvent, RouteEvent,
    SwarmError, VoucherEvent,
};
pub use codec::{
    Codec, CodecError, ReconcileCodec, RetrievalCodec, RouteCodec, VoucherCodec, WireMessage,
};
pub use exchange::Exchange;
pub use messages::{
    Announce, DecodeError, EncodeError, PeerRecord, PeerRecordError, ReconcileRequest,
    ReconcileResponse, RuleViolation, SignedPeerRecord, VerifiedPeer, VoucherRequest,
    VoucherResponse, VoucherStatus,
};
pub use retrieval::{Manifest, RetrievalRequest, RetrievalResponse, RetrievalStatus};
pub use route::{
    RouteKind, RouteReplacement, RouteRequest, RouteResponse, RouteStatus, RouteViolation,
};

/// Protocol id of the voucher exchange: a payer sends a voucher, the payee validates,
/// stores and acknowledges it.
pub const VOUCHER_PROTOCOL: &str = "/paych/voucher/1.0.0";
/// Protocol id of reconciliation: a payee asks the payer to fold many vouchers into one.
pub const RECONCILE_PROTOCOL: &str = "/paych/reconcile/2.0.0";
/// Protocol id of the paid chunk transfer used by retrievals.
pub const RETRIEVAL_PROTOCOL: &str = "/paych/retrieval/2.0.0";
/// Protocol id of routed payments: a payer pays a payee through a hub with hash-locked
/// vouchers, each leg one request of this protocol.
pub const ROUTE_PROTOCOL: &str = "/paych/route/1.0.0";
