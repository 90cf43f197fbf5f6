//! The node's handling of the requests peers send: it takes the [`InboundRequest`]s the
//! network hands out and answers each through the manager and the retrieval provider —
//! vouchers and their announces ([`vouchers`]), reconcile requests as the channel's payer
//! ([`reconcile_as_payer`]), manifest and chunk requests with the crediting of paid flows
//! ([`retrieval`]), route requests through the node's route handler ([`route`]).
//!
//! Voucher, reconcile and route requests are answered on tasks of their own, so that validating
//! and storing never holds up other requests; the network bounds how many are in flight.
//! Retrieval requests are answered in place (the provider reads memory only). Every answer
//! is durable before it goes back (the manager's rule), and every refusal decided here is
//! counted with its reason.
//!
//! This module never touches the swarm or its limits ([`crate::network`] does), and never
//! sends requests of its own.

pub mod reconcile_as_payer;
pub mod retrieval;
pub mod route;
pub mod vouchers;

use std::sync::Arc;

use paych_core::combine::ReconcilePolicy;
use paych_core::manager::PaymentChannelManager;
use paych_core::types::TokenAmount;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::network::{Inbound, InboundRequest, Responder};
use crate::retrieval::provider::RetrievalProvider;
use retrieval::Crediting;
use route::RouteHandlerSlot;

/// How the node answers inbound requests.
#[derive(Debug, Clone)]
pub struct InboundConfig {
    /// The least a voucher must add to its lane to be accepted.
    pub min_delta: TokenAmount,
    /// The terms on which this node, as a payer, folds vouchers into a combined one.
    pub reconcile_policy: ReconcilePolicy,
    /// The blobs served over `/paych/retrieval/2.0.0`, credited with the payments that
    /// vouchers carrying a flow reference bring.
    pub retrieval: Arc<RetrievalProvider>,
    /// Where answers and refusals are counted.
    pub metrics: Arc<Metrics>,
    /// What answers `/paych/route/1.0.0`; empty (the default), every route request is
    /// answered `NotAHub`. Shared: set it before or after the node starts.
    pub route: RouteHandlerSlot,
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig {
            min_delta: TokenAmount::default(),
            reconcile_policy: ReconcilePolicy::default(),
            retrieval: Arc::new(RetrievalProvider::default()),
            metrics: Arc::default(),
            route: RouteHandlerSlot::default(),
        }
    }
}

/// What every answer needs; cheap to clone.
#[derive(Clone)]
struct Context {
    manager: PaymentChannelManager,
    config: Arc<InboundConfig>,
    crediting: Arc<Crediting>,
    responder: Responder,
}

/// Answers the requests of `inbound` through `manager` until the network stops handing
/// them out.
pub fn spawn(
    manager: PaymentChannelManager,
    config: InboundConfig,
    inbound: Inbound,
) -> JoinHandle<()> {
    let Inbound { mut requests, responder } = inbound;
    let crediting = Arc::new(Crediting::new(config.retrieval.clone()));
    let context = Context { manager, config: Arc::new(config), crediting, responder };
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            match request {
                InboundRequest::Voucher { id, peer, request } => {
                    let span = vouchers::span(peer, &request);
                    let answer = vouchers::answer(context.clone(), id, peer, *request);
                    tokio::spawn(answer.instrument(span));
                }
                InboundRequest::Reconcile { id, peer, request } => {
                    let span = reconcile_as_payer::span(peer, &request);
                    let answer = reconcile_as_payer::answer(context.clone(), id, peer, *request);
                    tokio::spawn(answer.instrument(span));
                }
                InboundRequest::Retrieval { id, peer, request } => {
                    retrieval::answer(&context, id, peer, &request).await
                }
                InboundRequest::Route { id, peer, request } => {
                    let span = route::span(peer, &request);
                    let answer = route::answer(context.clone(), id, peer, *request);
                    tokio::spawn(answer.instrument(span));
                }
            }
        }
        tracing::debug!("inbound handling stopped");
    })
}
