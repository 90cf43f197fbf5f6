//! Paid retrievals over `/paych/retrieval/2.0.0`: the provider's side ([`provider`]:
//! published blobs, open flows, what each has been paid and its credit window, the bounds
//! of unpaid work) and the client's ([`client`]: pipelined requests, each chunk checked,
//! checked chunks paid for while more arrive). The node answers inbound
//! retrieval requests with the provider in [`crate::inbound::retrieval`]; nothing here
//! touches the swarm or answers a peer by itself.

pub mod client;
pub mod provider;

pub use client::{
    parse_root, pipeline_depth, retrieve, PriceLimit, RetrieveError, Retrieved,
    PAYMENT_REQUIRED_ATTEMPTS, PAY_PER_WINDOW, PIPELINE_BYTES, PIPELINE_REQUESTS,
    RATE_LIMITED_ATTEMPTS, RATE_LIMITED_BACKOFF,
};
pub use provider::{
    Faults, InFlight, Load, PublishError, RetrievalLimits, RetrievalProvider, RetrievalUsage,
    Served, FLOW_IDLE_TIMEOUT, INITIAL_WINDOW_BLOB_SHARE, MAX_BYTES_IN_FLIGHT,
    MAX_BYTES_IN_FLIGHT_PER_PEER, MAX_FLOWS, MAX_FLOWS_PER_PEER, MAX_PUBLISHED_BYTES,
    MAX_RESPONSES_IN_FLIGHT, MAX_RESPONSES_IN_FLIGHT_PER_PEER, RESPONSE_ENVELOPE_BYTES,
    WINDOW_INITIAL_BYTES, WINDOW_MAX_BYTES,
};
