//! Paid retrievals over `/paych/retrieval/1.0.0`: the provider's side ([`provider`]:
//! published blobs, open flows and what each has been paid, the bounds of unpaid work) and
//! the client's ([`client`]: fetch, check and pay chunk by chunk). The node answers inbound
//! retrieval requests with the provider in [`crate::inbound::retrieval`]; nothing here
//! touches the swarm or answers a peer by itself.

pub mod client;
pub mod provider;

pub use client::{
    parse_root, retrieve, PriceLimit, RetrieveError, Retrieved, RATE_LIMITED_ATTEMPTS,
    RATE_LIMITED_BACKOFF,
};
pub use provider::{
    Faults, InFlight, Load, PublishError, RetrievalLimits, RetrievalProvider, RetrievalUsage,
    Served, FLOW_IDLE_TIMEOUT, MAX_BYTES_IN_FLIGHT, MAX_BYTES_IN_FLIGHT_PER_PEER, MAX_FLOWS,
    MAX_FLOWS_PER_PEER, MAX_PUBLISHED_BYTES, MAX_RESPONSES_IN_FLIGHT,
    MAX_RESPONSES_IN_FLIGHT_PER_PEER, RESPONSE_ENVELOPE_BYTES,
};
