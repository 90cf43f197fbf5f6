//! The provider's side of a paid retrieval as the node runs it: each inbound manifest or
//! chunk request is answered by the [`RetrievalProvider`] at once (it reads memory only),
//! and the answer stays counted against the provider's budget of responses in flight (per
//! peer and in total) until the network reports it sent or failed; a voucher carrying a flow
//! reference is credited to that flow only as [`Crediting::credit`] allows — an `Accepted`
//! delta from the peer the channel's payer bound its key to.
//!
//! Every answer with an error status is counted and logged with its reason; the provider's
//! load is exported on `/metrics`. Never touches the swarm: answers go back through the
//! network's [`crate::network::Responder`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use libp2p::PeerId;
use paych_core::manager::PaymentChannelManager;
use paych_core::types::{Address, TokenAmount};
use paych_protocol::{
    RetrievalRequest, RetrievalResponse, RetrievalStatus, VoucherResponse, VoucherStatus,
};

use super::Context;
use crate::metrics::Metrics;
use crate::network::{Held, InboundId};
use crate::reconcile_as_payee::find_peer;
use crate::refusals::Refusal;
use crate::retrieval::provider::{InFlight, RetrievalProvider};

/// Payers' verified peer records kept, at most (beyond, the cache starts again).
const MAX_PAYER_PEERS: usize = 4096;

/// Answers retrieval request `id` from `peer` in place and hands the answer back with the
/// provider's count of it, held until it is sent.
pub(super) async fn answer(
    context: &Context,
    id: InboundId,
    peer: PeerId,
    request: &RetrievalRequest,
) {
    let provider = &context.config.retrieval;
    let metrics = &context.config.metrics;
    let served = {
        let _span =
            tracing::debug_span!("retrieval_request", %peer, index = ?request.index).entered();
        provider.serve(peer, request)
    };
    if served.response.status() == Some(RetrievalStatus::RateLimited) {
        metrics.rate_limited("retrieval");
    }
    count_refusal(metrics, peer, &served.response);
    count_load(provider, metrics);
    let held = served.in_flight.map(|in_flight| {
        let sending = Sending {
            in_flight: Some(in_flight),
            provider: provider.clone(),
            metrics: metrics.clone(),
        };
        Box::new(sending) as Held
    });
    context.responder.retrieval(id, served.response, held).await;
}

/// A response in flight, counted against the provider's bounds until the network drops it
/// (sent or failed); the load on `/metrics` is counted again then.
struct Sending {
    in_flight: Option<InFlight>,
    provider: Arc<RetrievalProvider>,
    metrics: Arc<Metrics>,
}

impl Drop for Sending {
    fn drop(&mut self) {
        drop(self.in_flight.take());
        count_load(&self.provider, &self.metrics);
    }
}

fn count_load(provider: &RetrievalProvider, metrics: &Metrics) {
    let usage = provider.usage();
    metrics.set_retrieval_load(usage.in_flight.responses, usage.in_flight.bytes, usage.open_flows);
}

/// Counts and logs a retrieval request answered with an error status.
fn count_refusal(metrics: &Metrics, peer: PeerId, response: &RetrievalResponse) {
    let refusal = match response.status() {
        Some(RetrievalStatus::Ok) => return,
        Some(RetrievalStatus::RateLimited) => Refusal::RetrievalRateLimited,
        _ => Refusal::RetrievalRefused,
    };
    let message = response.message.as_deref().unwrap_or("");
    metrics.refused(
        refusal,
        format_args!("retrieval request from {peer}: status {}: {message}", response.status),
    );
}

/// What a voucher answer did to the retrieval flow it named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credit {
    /// The accepted delta was added to the flow.
    Credited(TokenAmount),
    /// The manager did not answer `Accepted` with a positive delta (a replayed voucher, an
    /// older one, a refusal): nothing to credit.
    NothingAccepted,
    /// The sender is not the peer the channel's payer bound its key to.
    NotThePayer,
    /// The sender has no open flow by that reference on that channel.
    NoOpenFlow,
}

/// Credits retrieval flows with what vouchers paid, knowing which peer each payer is.
pub struct Crediting {
    provider: Arc<RetrievalProvider>,
    /// Payer key address → (the sequence of its peer record, its verified PeerId).
    payers: Mutex<HashMap<Address, (u64, PeerId)>>,
}

impl Crediting {
    /// Credits the flows of `provider`.
    pub fn new(provider: Arc<RetrievalProvider>) -> Self {
        Crediting { provider, payers: Mutex::new(HashMap::new()) }
    }

    /// Credits the flow `flow` of `peer` on `channel` with what the manager accepted from
    /// that voucher (`response`), if `peer` is the channel's payer: only an `Accepted`
    /// answer credits, and only its delta.
    pub async fn credit(
        &self,
        manager: &PaymentChannelManager,
        peer: PeerId,
        channel: Address,
        flow: &[u8],
        response: &VoucherResponse,
    ) -> Credit {
        if response.status() != Some(VoucherStatus::Accepted) || !response.delta.is_positive() {
            return Credit::NothingAccepted;
        }
        let from = match manager.channel_parties(&channel).await {
            Ok((from, _)) => from,
            Err(_) => return Credit::NotThePayer,
        };
        if self.payer_peer(manager, &from) != Some(peer) {
            tracing::debug!(%peer, "voucher not credited: the sender is not the channel's payer");
            return Credit::NotThePayer;
        }
        if self.provider.credit(peer, channel, flow, &response.delta) {
            Credit::Credited(response.delta.clone())
        } else {
            tracing::debug!(%peer, "voucher not credited: no open flow by that reference");
            Credit::NoOpenFlow
        }
    }

    /// The PeerId the payer `from` bound its key to in the signed peer record the node
    /// holds (verified once per record sequence), if it holds one.
    fn payer_peer(&self, manager: &PaymentChannelManager, from: &Address) -> Option<PeerId> {
        let held = manager.peer_record(from).ok()??;
        let cached = self.payers.lock().unwrap_or_else(|e| e.into_inner()).get(from).copied();
        if let Some((sequence, peer)) = cached {
            if sequence == held.sequence {
                return Some(peer);
            }
        }
        let (peer, _) = find_peer(manager, from).ok()?;
        let mut payers = self.payers.lock().unwrap_or_else(|e| e.into_inner());
        if payers.len() >= MAX_PAYER_PEERS {
            payers.clear();
        }
        payers.insert(*from, (held.sequence, peer));
        Some(peer)
    }
}
