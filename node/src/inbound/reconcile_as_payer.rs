//! The payer's answer to a payee's reconcile request: the request's peer record proves
//! which Filecoin key the requesting peer holds ([`proven_key`]: it must verify and name
//! the PeerId the connection authenticated), the manager answers only the channel's payee,
//! checks the request against the node's [`ReconcilePolicy`] and records the combined
//! voucher durably before the answer is returned ([`answer_reconcile`]).
//!
//! The payee's side — asking a payer — is [`crate::reconcile_as_payee`]. Never touches the
//! swarm: the answer goes back through the network's [`crate::network::Responder`].

use libp2p::PeerId;
use paych_core::combine::{ReconcilePolicy, ReconcileStatus};
use paych_core::manager::PaymentChannelManager;
use paych_protocol::{ReconcileRequest, ReconcileResponse, SignedPeerRecord};

use super::Context;
use crate::network::InboundId;
use crate::refusals::Refusal;

/// The span a reconcile request from `peer` is answered in.
pub(super) fn span(peer: PeerId, request: &ReconcileRequest) -> tracing::Span {
    tracing::info_span!(
        "reconcile_inbound",
        %peer,
        vouchers = request.vouchers.len(),
        req_val = %request.req_val.atto()
    )
}

/// Answers reconcile request `id` from `peer` (the node runs it on a task of its own), and
/// counts the outcome (a refusal with its reason).
pub(super) async fn answer(
    context: Context,
    id: InboundId,
    peer: PeerId,
    request: ReconcileRequest,
) {
    let policy = &context.config.reconcile_policy;
    let response = answer_reconcile(&context.manager, peer, &request, policy).await;
    tracing::debug!(status = response.status, "reconcile answered");
    count_answer(&context, peer, &response);
    context.responder.reconcile(id, response).await;
}

/// Counts the answer to a reconcile request from `peer`, and logs a refusal.
fn count_answer(context: &Context, peer: PeerId, response: &ReconcileResponse) {
    let metrics = &context.config.metrics;
    let outcome = if response.status == 0 { "success" } else { "refused" };
    metrics.reconciliation("payer", outcome);
    if response.status != 0 {
        metrics.refused(
            Refusal::ReconcileRefused,
            format_args!(
                "reconcile request from {peer}: status {}: {}",
                response.status,
                response.message.as_deref().unwrap_or("")
            ),
        );
    }
}

/// The key address `peer` proves it holds with `record`: the record's signature verifies
/// and it names `peer`, the PeerId the authenticated connection comes from. A record that
/// does not verify, or that names another peer (a replay of someone else's record), proves
/// nothing.
pub fn proven_key(peer: PeerId, record: &SignedPeerRecord) -> Option<paych_core::types::Address> {
    match record.verify() {
        Ok(verified) if verified.peer_id == peer => Some(verified.address),
        Ok(verified) => {
            tracing::debug!(%peer, named = %verified.peer_id, "reconcile record names another peer");
            None
        }
        Err(error) => {
            tracing::debug!(%peer, %error, "reconcile record does not verify");
            None
        }
    }
}

/// The payer's answer to a reconcile request from `peer`, through the manager, which
/// answers only the channel's payee (the key `peer` proves with the request's record, see
/// [`proven_key`]); the answer to a request seen before is the one recorded then, byte for
/// byte. Every answer is durable before it is returned.
pub async fn answer_reconcile(
    manager: &PaymentChannelManager,
    peer: PeerId,
    request: &ReconcileRequest,
    policy: &ReconcilePolicy,
) -> ReconcileResponse {
    let hash = match request.request_hash() {
        Ok(hash) => hash,
        Err(e) => {
            return ReconcileResponse::refused(ReconcileStatus::InvalidVoucher, e.to_string())
        }
    };
    let requester = proven_key(peer, &request.payee_record);
    let encode = |combined: &paych_core::types::SignedVoucher| {
        ReconcileResponse::success(combined.clone()).to_cbor()
    };
    match manager
        .reconcile_as_payer(
            requester.as_ref(),
            &hash,
            &request.vouchers,
            &request.req_val,
            policy,
            encode,
        )
        .await
    {
        Ok(bytes) => match ReconcileResponse::from_cbor(&bytes) {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(error = %e, "a recorded reconcile answer does not decode");
                ReconcileResponse::refused(ReconcileStatus::Internal, "recorded answer unreadable")
            }
        },
        Err(refusal) => {
            if refusal.status == ReconcileStatus::Internal {
                tracing::warn!(message = %refusal.message, "reconcile refused on an internal error");
            }
            refusal.into()
        }
    }
}
