//! The node's answers to `/paych/route/1.0.0`: each inbound route request goes to the
//! [`RouteHandler`] set in the node's [`RouteHandlerSlot`] — the payer, hub and payee logic
//! of routed payments, which lives elsewhere and plugs in here — and its answer goes back
//! through the network's [`crate::network::Responder`]. With no handler set, every request
//! is answered [`RouteStatus::NotAHub`].
//!
//! Each request is answered on a task of its own (an offer's answer waits for the downstream
//! hop), under a span naming the peer and what it asked; the network bounds how many are in
//! flight per peer and in total. A handler that panics is answered
//! [`RouteStatus::Internal`], so that its slot in the network's in-flight count is freed.
//! Every answer is counted by kind and status, and every refusal with its reason.
//!
//! This module never decides anything about a route: it never touches the manager, the
//! store or the swarm.

use std::sync::{Arc, RwLock};

use libp2p::PeerId;
use paych_protocol::{RouteKind, RouteRequest, RouteResponse, RouteStatus};

use super::Context;
use crate::metrics::Metrics;
use crate::network::InboundId;
use crate::refusals::Refusal;

/// The explanation of the answer of a node that routes no payments.
pub const NOT_A_HUB: &str = "this node routes no payments";
/// The explanation of the answer to a request whose handler failed.
pub const HANDLER_FAILED: &str = "the route handler failed";

/// What answers route requests: the payer, hub and payee logic of routed payments.
///
/// `handle` is called once per inbound request, on a task of its own, with the peer the
/// authenticated connection comes from; its answer is sent back as it is. It must not keep
/// the peer waiting longer than the requester's route request timeout (a hub forwarding an
/// offer gives its own downstream request less), and it must make every answer it gives
/// durable before returning it (the manager's rule). A refusal binds nobody.
#[async_trait::async_trait]
pub trait RouteHandler: Send + Sync + 'static {
    /// The answer to `request` from `peer`.
    async fn handle(&self, peer: PeerId, request: RouteRequest) -> RouteResponse;
}

/// Where a node's [`RouteHandler`] is set; cheap to clone, every clone sharing it. A node
/// starts with it empty (answering [`RouteStatus::NotAHub`]) and sets its handler once the
/// parts the handler needs — the network client a hub forwards offers with, say — exist.
#[derive(Clone, Default)]
pub struct RouteHandlerSlot {
    handler: Arc<RwLock<Option<Arc<dyn RouteHandler>>>>,
}

impl RouteHandlerSlot {
    /// An empty slot: every request is answered [`RouteStatus::NotAHub`].
    pub fn new() -> Self {
        RouteHandlerSlot::default()
    }

    /// A slot holding `handler`.
    pub fn with(handler: Arc<dyn RouteHandler>) -> Self {
        let slot = RouteHandlerSlot::new();
        slot.set(handler);
        slot
    }

    /// Sets the handler, replacing any; requests already handed to the old one finish
    /// there.
    pub fn set(&self, handler: Arc<dyn RouteHandler>) {
        *self.handler.write().unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }

    /// Empties the slot: from now on every request is answered [`RouteStatus::NotAHub`].
    pub fn clear(&self) {
        *self.handler.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The handler set now, if any.
    pub fn get(&self) -> Option<Arc<dyn RouteHandler>> {
        self.handler.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl std::fmt::Debug for RouteHandlerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteHandlerSlot").field("set", &self.get().is_some()).finish()
    }
}

/// The span a route request from `peer` is answered in: the peer, what it asks and, for a
/// request carrying a voucher, its channel, lane and nonce.
pub(super) fn span(peer: PeerId, request: &RouteRequest) -> tracing::Span {
    let kind = request.kind().label();
    match request.voucher() {
        Some(v) => tracing::info_span!(
            "route_inbound",
            %peer,
            kind,
            channel = %v.channel_addr,
            lane = v.lane,
            nonce = v.nonce
        ),
        None => tracing::info_span!("route_inbound", %peer, kind),
    }
}

/// Answers route request `id` from `peer` (the node runs it on a task of its own), and
/// counts the answer.
pub(super) async fn answer(context: Context, id: InboundId, peer: PeerId, request: RouteRequest) {
    let kind = request.kind();
    let response = answer_route(&context.config.route, peer, request).await;
    tracing::debug!(status = %response.status, "route request answered");
    count_answer(&context.config.metrics, peer, kind, &response);
    context.responder.route(id, response).await;
}

/// The answer of the handler set in `slot` to `request` from `peer`: [`RouteStatus::NotAHub`]
/// when none is set, [`RouteStatus::Internal`] when it panics.
pub async fn answer_route(
    slot: &RouteHandlerSlot,
    peer: PeerId,
    request: RouteRequest,
) -> RouteResponse {
    let Some(handler) = slot.get() else {
        return RouteResponse::refused(RouteStatus::NotAHub, NOT_A_HUB);
    };
    // On a task of its own, so that a panic in the handler is an answer, not a lost slot.
    match tokio::spawn(async move { handler.handle(peer, request).await }).await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(%error, "the route handler failed");
            RouteResponse::refused(RouteStatus::Internal, HANDLER_FAILED)
        }
    }
}

/// Counts the answer to a route request of `kind` from `peer`, and a refusal with its
/// reason.
fn count_answer(metrics: &Metrics, peer: PeerId, kind: RouteKind, response: &RouteResponse) {
    metrics.route_received(kind.label(), response.status.label());
    if response.status.is_ok() {
        return;
    }
    let refusal = match response.status {
        RouteStatus::Busy => {
            metrics.rate_limited("route");
            Refusal::RouteBusy
        }
        _ => Refusal::RouteRefused,
    };
    metrics.refused(
        refusal,
        format_args!(
            "route {} from {peer}: status {}: {}",
            kind.label(),
            response.status,
            response.message
        ),
    );
}
