//! The loop that owns the swarm: runs [`Command`]s, hands inbound requests out as
//! [`InboundRequest`]s within the caps, sends the [`Response`]s that come back, and routes
//! the answers to outbound requests to their callers.

use std::collections::HashMap;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, InboundRequestId, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionDenied, ConnectionId, DialError, ListenError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};
use paych_core::reconcile::ReconcileStatus;
use paych_core::types::TokenAmount;
use paych_protocol::{
    Behaviour, Event, LimitKind, ReconcileResponse, RetrievalResponse, RetrievalStatus,
    VoucherResponse, VoucherStatus,
};
use tokio::sync::mpsc;

use super::{
    Command, Held, InboundId, InboundRequest, NetworkConfig, NetworkError, Outbound, Reply,
    Response, MAX_ADDRS_PER_REQUEST, MAX_INBOUND_IN_FLIGHT, MAX_OUTBOUND_IN_FLIGHT,
    MAX_PENDING_CONNECTS, MAX_RECONCILE_IN_FLIGHT, MAX_RETRIEVAL_WAITING,
};
use crate::metrics::status_label;
use crate::refusals::Refusal;

/// Inbound requests of one protocol handed out and not answered yet, bounded per peer and
/// in total; each keeps what its answer needs (the response channel).
struct Waiting<C> {
    per_peer_limit: usize,
    total_limit: usize,
    requests: HashMap<InboundId, (PeerId, C)>,
    per_peer: HashMap<PeerId, usize>,
}

impl<C> Waiting<C> {
    fn new(per_peer_limit: usize, total_limit: usize) -> Self {
        Waiting { per_peer_limit, total_limit, requests: HashMap::new(), per_peer: HashMap::new() }
    }

    /// Takes the request `id` of `peer`, or answers how many `peer` has in flight when a cap
    /// is reached.
    fn admit(&mut self, id: InboundId, peer: PeerId, channel: C) -> Result<(), (usize, C)> {
        let in_flight = self.per_peer.get(&peer).copied().unwrap_or(0);
        if in_flight >= self.per_peer_limit || self.requests.len() >= self.total_limit {
            return Err((in_flight, channel));
        }
        self.requests.insert(id, (peer, channel));
        *self.per_peer.entry(peer).or_default() += 1;
        Ok(())
    }

    /// The request `id`, no longer counted.
    fn take(&mut self, id: InboundId) -> Option<(PeerId, C)> {
        let (peer, channel) = self.requests.remove(&id)?;
        if let Some(count) = self.per_peer.get_mut(&peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_peer.remove(&peer);
            }
        }
        Some((peer, channel))
    }
}

/// Owns the swarm: runs commands, hands inbound requests out, sends their answers, routes
/// responses to outbound requests.
pub(super) struct EventLoop {
    swarm: Swarm<Behaviour>,
    config: NetworkConfig,
    commands: mpsc::Receiver<Command>,
    responses: mpsc::Receiver<Response>,
    requests: mpsc::Sender<InboundRequest>,
    stop: mpsc::Receiver<()>,
    next_inbound: u64,
    vouchers: Waiting<ResponseChannel<VoucherResponse>>,
    reconciles: Waiting<ResponseChannel<ReconcileResponse>>,
    retrievals: Waiting<(InboundRequestId, ResponseChannel<RetrievalResponse>)>,
    /// Retrieval answers being sent, with what their handler asked the loop to hold until
    /// each is sent or fails (the provider's count of work in flight).
    retrievals_sending: HashMap<InboundRequestId, Held>,
    outbound_vouchers: HashMap<OutboundRequestId, Reply<VoucherResponse>>,
    outbound_retrievals: HashMap<OutboundRequestId, Reply<RetrievalResponse>>,
    outbound_reconciles: HashMap<OutboundRequestId, Reply<ReconcileResponse>>,
    /// `connect` calls waiting for their connection.
    connects: HashMap<ConnectionId, (Multiaddr, Reply<PeerId>)>,
    /// Connected peers, with their established connections (bounded by the connection
    /// limits) and the remote address of each.
    connected: HashMap<PeerId, HashMap<ConnectionId, Multiaddr>>,
}

impl EventLoop {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        config: NetworkConfig,
        commands: mpsc::Receiver<Command>,
        responses: mpsc::Receiver<Response>,
        requests: mpsc::Sender<InboundRequest>,
        stop: mpsc::Receiver<()>,
    ) -> Self {
        EventLoop {
            vouchers: Waiting::new(config.max_inbound_per_peer, MAX_INBOUND_IN_FLIGHT),
            reconciles: Waiting::new(config.max_reconcile_per_peer, MAX_RECONCILE_IN_FLIGHT),
            retrievals: Waiting::new(MAX_RETRIEVAL_WAITING, MAX_RETRIEVAL_WAITING),
            swarm,
            config,
            commands,
            responses,
            requests,
            stop,
            next_inbound: 0,
            retrievals_sending: HashMap::new(),
            outbound_vouchers: HashMap::new(),
            outbound_retrievals: HashMap::new(),
            outbound_reconciles: HashMap::new(),
            connects: HashMap::new(),
            connected: HashMap::new(),
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                Some(response) = self.responses.recv() => self.on_response(response),
                _ = self.stop.recv() => break,
            }
        }
        tracing::debug!("network event loop stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Listen { addr, reply } => {
                let result = self
                    .swarm
                    .listen_on(addr.clone())
                    .map(|_| ())
                    .map_err(|e| NetworkError::Listen { addr, reason: e.to_string() });
                let _ = reply.send(result);
            }
            Command::Connect { addr, reply } => self.connect(addr, reply),
            Command::Peers { reply } => {
                let peers = self
                    .connected
                    .iter()
                    .filter_map(|(peer, conns)| Some((*peer, conns.values().next()?.clone())))
                    .collect();
                let _ = reply.send(Ok(peers));
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(Ok(self.swarm.listeners().cloned().collect()));
            }
            Command::Send { peer, addrs, request } => self.send_request(peer, addrs, request),
            Command::Disconnect { peer, reply } => {
                // Err means there was no connection: nothing to close.
                let _ = self.swarm.disconnect_peer_id(peer);
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// Sends an outbound request unless too many are in flight, adding at most
    /// [`MAX_ADDRS_PER_REQUEST`] of the peer's addresses.
    fn send_request(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, request: Outbound) {
        if self.outbound_in_flight() >= MAX_OUTBOUND_IN_FLIGHT {
            let _ = match request {
                Outbound::Voucher(_, reply) => reply.send(Err(NetworkError::Busy)).is_ok(),
                Outbound::Retrieval(_, reply) => reply.send(Err(NetworkError::Busy)).is_ok(),
                Outbound::Reconcile(_, reply) => reply.send(Err(NetworkError::Busy)).is_ok(),
            };
            return;
        }
        for addr in addrs.into_iter().take(MAX_ADDRS_PER_REQUEST) {
            self.swarm.add_peer_address(peer, addr);
        }
        let behaviour = self.swarm.behaviour_mut();
        match request {
            Outbound::Voucher(request, reply) => {
                let id = behaviour.voucher.send_request(&peer, *request);
                self.outbound_vouchers.insert(id, reply);
            }
            Outbound::Retrieval(request, reply) => {
                let id = behaviour.retrieval.send_request(&peer, *request);
                self.outbound_retrievals.insert(id, reply);
            }
            Outbound::Reconcile(request, reply) => {
                let id = behaviour.reconcile.send_request(&peer, *request);
                tracing::debug!(%peer, ?id, "reconcile request sent");
                self.outbound_reconciles.insert(id, reply);
            }
        }
    }

    fn connect(&mut self, addr: Multiaddr, reply: Reply<PeerId>) {
        if self.connects.len() >= MAX_PENDING_CONNECTS {
            let _ = reply.send(Err(NetworkError::Busy));
            return;
        }
        let peer = match addr.iter().last() {
            Some(Protocol::P2p(peer)) => Some(peer),
            _ => None,
        };
        let opts = match peer {
            Some(peer) => DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build(),
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        let connection_id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.connects.insert(connection_id, (addr, reply));
            }
            Err(DialError::DialPeerConditionFalse(_)) if peer.is_some() => {
                // Connected (or being dialled) already.
                let _ = reply.send(peer.ok_or(NetworkError::Stopped));
            }
            Err(e) => {
                let _ = reply.send(Err(NetworkError::Dial { addr, reason: e.to_string() }));
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<Event>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                let remote = endpoint.get_remote_address().clone();
                self.connected.entry(peer_id).or_default().insert(connection_id, remote);
                self.count_connections();
                if let Some((_, reply)) = self.connects.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, .. } => {
                if let Some(conns) = self.connected.get_mut(&peer_id) {
                    conns.remove(&connection_id);
                    if conns.is_empty() {
                        self.connected.remove(&peer_id);
                    }
                }
                self.count_connections();
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error: ListenError::Denied { cause },
                ..
            } => {
                self.count_denied(&cause, format_args!("inbound connection from {send_back_addr}"))
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, peer_id } => {
                if let DialError::Denied { cause } = &error {
                    let peer = peer_id.map_or_else(|| "a peer".to_owned(), |p| p.to_string());
                    self.count_denied(cause, format_args!("outbound connection to {peer}"));
                }
                if let Some((addr, reply)) = self.connects.remove(&connection_id) {
                    let _ = reply.send(Err(NetworkError::Dial { addr, reason: error.to_string() }));
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
            }
            SwarmEvent::Behaviour(Event::Voucher(event)) => {
                self.count_voucher_sent(&event);
                match route(&mut self.outbound_vouchers, event) {
                    Routed::Request { peer, request, channel, .. } => {
                        self.on_voucher_request(peer, request, channel)
                    }
                    routed => self.after_routing("voucher", routed),
                }
            }
            SwarmEvent::Behaviour(Event::Reconcile(event)) => {
                match route(&mut self.outbound_reconciles, event) {
                    Routed::Request { peer, request, channel, .. } => {
                        self.on_reconcile_request(peer, request, channel)
                    }
                    routed => self.after_routing("reconcile", routed),
                }
            }
            SwarmEvent::Behaviour(Event::Retrieval(event)) => self.on_retrieval_event(event),
            _ => {}
        }
    }

    /// Counts and logs a connection a limit denied (other denials are not limits).
    fn count_denied(&self, cause: &ConnectionDenied, what: std::fmt::Arguments<'_>) {
        if let Some(limit) = LimitKind::of(cause) {
            self.config.metrics.refused(Refusal::of_limit(limit), format_args!("{what}: {cause}"));
        }
    }

    /// Counts and logs an inbound request the codec refused.
    fn count_inbound_failure(
        &self,
        protocol: &str,
        peer: PeerId,
        error: &request_response::InboundFailure,
    ) {
        tracing::debug!(%peer, %error, "inbound {protocol} request failed");
        if let request_response::InboundFailure::Io(e) = error {
            self.config.metrics.refused(
                Refusal::RequestUnreadable,
                format_args!("{protocol} request from {peer}: {e}"),
            );
        }
    }

    fn count_connections(&self) {
        let connections = self.connected.values().map(HashMap::len).sum();
        self.config.metrics.set_connections(connections, self.connected.len());
    }

    fn outbound_in_flight(&self) -> usize {
        self.outbound_vouchers.len()
            + self.outbound_reconciles.len()
            + self.outbound_retrievals.len()
    }

    fn next_id(&mut self) -> InboundId {
        let id = InboundId(self.next_inbound);
        self.next_inbound = self.next_inbound.wrapping_add(1);
        id
    }

    /// Hands out the request `make` names, of `peer`, if the requests waiting (`waiting`)
    /// admit it; otherwise answers how many `peer` has in flight, with `channel`, to refuse.
    fn admit<C>(
        &mut self,
        waiting: fn(&mut Self) -> &mut Waiting<C>,
        peer: PeerId,
        channel: C,
        make: impl FnOnce(InboundId) -> InboundRequest,
    ) -> Option<(usize, C)> {
        let id = self.next_id();
        match waiting(self).admit(id, peer, channel) {
            Ok(()) => {
                self.hand_out(make(id));
                None
            }
            Err(refused) => Some(refused),
        }
    }

    /// Hands `request` out; when nobody takes requests any more (the node is stopping), the
    /// request is forgotten and its stream dropped.
    fn hand_out(&mut self, request: InboundRequest) {
        if let Err(error) = self.requests.try_send(request) {
            let id = match error.into_inner() {
                InboundRequest::Voucher { id, .. } => self.vouchers.take(id).map(drop),
                InboundRequest::Reconcile { id, .. } => self.reconciles.take(id).map(drop),
                InboundRequest::Retrieval { id, .. } => self.retrievals.take(id).map(drop),
            };
            tracing::debug!(found = id.is_some(), "inbound request dropped: nobody answers");
        }
    }

    fn on_response(&mut self, response: Response) {
        match response {
            Response::Voucher(id, response) => {
                let Some((peer, channel)) = self.vouchers.take(id) else { return };
                if self.swarm.behaviour_mut().voucher.send_response(channel, response).is_err() {
                    tracing::debug!(%peer, "voucher response not sent: the stream is gone");
                }
            }
            Response::Reconcile(id, response) => {
                let Some((peer, channel)) = self.reconciles.take(id) else { return };
                if self.swarm.behaviour_mut().reconcile.send_response(channel, *response).is_err() {
                    tracing::debug!(%peer, "reconcile response not sent: the stream is gone");
                }
            }
            Response::Retrieval(id, response, held) => {
                let Some((peer, (request_id, channel))) = self.retrievals.take(id) else { return };
                match self.swarm.behaviour_mut().retrieval.send_response(channel, *response) {
                    Ok(()) => {
                        if let Some(held) = held {
                            self.retrievals_sending.insert(request_id, held);
                        }
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "retrieval response not sent: the stream is gone")
                    }
                }
            }
        }
    }

    /// Counts the answer to an outbound voucher request (or its failure).
    fn count_voucher_sent(&self, event: &paych_protocol::VoucherEvent) {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message { message: M::Response { response, .. }, .. } => {
                let status = response.status().map(status_label);
                self.config.metrics.voucher_sent(status, &response.delta);
            }
            E::OutboundFailure { .. } => {
                self.config.metrics.voucher_sent(None, &TokenAmount::default())
            }
            _ => {}
        }
    }

    /// Counts and logs an inbound request of `protocol` answered `RateLimited` for being over
    /// a cap.
    fn count_rate_limited(
        &self,
        protocol: &'static str,
        refusal: Refusal,
        what: std::fmt::Arguments<'_>,
    ) {
        self.config.metrics.rate_limited(protocol);
        self.config.metrics.refused(refusal, what);
    }

    /// Counts an inbound request of `protocol` that failed; nothing else is left to do.
    fn after_routing<Req, Resp>(&self, protocol: &str, routed: Routed<Req, Resp>) {
        if let Routed::Failed { peer, error, .. } = routed {
            self.count_inbound_failure(protocol, peer, &error)
        }
    }

    fn on_voucher_request(
        &mut self,
        peer: PeerId,
        request: paych_protocol::VoucherRequest,
        channel: ResponseChannel<VoucherResponse>,
    ) {
        let request = |id| InboundRequest::Voucher { id, peer, request: Box::new(request) };
        let Some((in_flight, channel)) = self.admit(|l| &mut l.vouchers, peer, channel, request)
        else {
            return;
        };
        let response = VoucherResponse::rejected(
            VoucherStatus::RateLimited,
            TokenAmount::default(),
            "too many vouchers in flight; retry later",
        );
        let what = format_args!("voucher from {peer}: {in_flight} in flight");
        self.count_rate_limited("voucher", Refusal::VoucherRateLimited, what);
        let status = status_label(VoucherStatus::RateLimited);
        self.config.metrics.voucher_received(status, &response.delta);
        let _ = self.swarm.behaviour_mut().voucher.send_response(channel, response);
    }

    fn on_reconcile_request(
        &mut self,
        peer: PeerId,
        request: paych_protocol::ReconcileRequest,
        channel: ResponseChannel<ReconcileResponse>,
    ) {
        let request = |id| InboundRequest::Reconcile { id, peer, request: Box::new(request) };
        let Some((in_flight, channel)) = self.admit(|l| &mut l.reconciles, peer, channel, request)
        else {
            return;
        };
        let response = ReconcileResponse::refused(
            ReconcileStatus::RateLimited,
            "too many reconcile requests in flight; retry later",
        );
        let what = format_args!("reconcile request from {peer}: {in_flight} in flight");
        self.count_rate_limited("reconcile", Refusal::ReconcileRateLimited, what);
        let _ = self.swarm.behaviour_mut().reconcile.send_response(channel, response);
    }

    fn on_retrieval_event(&mut self, event: paych_protocol::RetrievalEvent) {
        match route(&mut self.outbound_retrievals, event) {
            Routed::Request { peer, request_id, request, channel } => {
                self.on_retrieval_request(peer, request_id, request, channel)
            }
            Routed::Failed { peer, request_id, error } => {
                self.count_inbound_failure("retrieval", peer, &error);
                self.retrievals_sending.remove(&request_id);
            }
            Routed::Sent(request_id) => {
                self.retrievals_sending.remove(&request_id);
            }
            Routed::Answered => {}
        }
    }

    fn on_retrieval_request(
        &mut self,
        peer: PeerId,
        request_id: InboundRequestId,
        request: paych_protocol::RetrievalRequest,
        channel: ResponseChannel<RetrievalResponse>,
    ) {
        let request = |id| InboundRequest::Retrieval { id, peer, request: Box::new(request) };
        let kept = (request_id, channel);
        let Some((waiting, (_, channel))) = self.admit(|l| &mut l.retrievals, peer, kept, request)
        else {
            return;
        };
        let response = RetrievalResponse::refused(
            RetrievalStatus::RateLimited,
            "too many retrieval requests waiting; retry later",
        );
        let what = format_args!("retrieval request from {peer}: {waiting} waiting");
        self.count_rate_limited("retrieval", Refusal::RetrievalRateLimited, what);
        let _ = self.swarm.behaviour_mut().retrieval.send_response(channel, response);
    }
}

/// What is left of one protocol's event once the answers to outbound requests have gone to
/// their callers.
enum Routed<Req, Resp> {
    /// An inbound request.
    Request {
        peer: PeerId,
        request_id: InboundRequestId,
        request: Req,
        channel: ResponseChannel<Resp>,
    },
    /// An inbound request whose answer could not be read or sent.
    Failed { peer: PeerId, request_id: InboundRequestId, error: request_response::InboundFailure },
    /// The answer to an inbound request was sent.
    Sent(InboundRequestId),
    /// An outbound request was answered (or failed), and its caller told.
    Answered,
}

/// Tells the callers of outbound requests (in `waiting`) their answers, and returns what is
/// left of `event`.
fn route<Req, Resp>(
    waiting: &mut HashMap<OutboundRequestId, Reply<Resp>>,
    event: request_response::Event<Req, Resp>,
) -> Routed<Req, Resp> {
    use request_response::{Event as E, Message as M};
    match event {
        E::Message { peer, message: M::Request { request_id, request, channel }, .. } => {
            Routed::Request { peer, request_id, request, channel }
        }
        E::Message { message: M::Response { request_id, response }, .. } => {
            answer(waiting, request_id, Ok(response));
            Routed::Answered
        }
        E::OutboundFailure { peer, request_id, error, .. } => {
            let failure = NetworkError::Request { peer, reason: error.to_string() };
            answer(waiting, request_id, Err(failure));
            Routed::Answered
        }
        E::InboundFailure { peer, request_id, error, .. } => {
            Routed::Failed { peer, request_id, error }
        }
        E::ResponseSent { request_id, .. } => Routed::Sent(request_id),
    }
}

/// Hands the answer to outbound request `id` to its caller, if it still waits.
fn answer<T>(
    waiting: &mut HashMap<OutboundRequestId, Reply<T>>,
    id: OutboundRequestId,
    result: Result<T, NetworkError>,
) {
    if let Some(reply) = waiting.remove(&id) {
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_peer_over_its_cap_or_a_full_table_is_refused_and_an_answer_frees_the_slot() {
        let mut waiting = Waiting::new(2, 3);
        let (a, b) = (PeerId::random(), PeerId::random());
        assert!(waiting.admit(InboundId(0), a, "a0").is_ok());
        assert!(waiting.admit(InboundId(1), a, "a1").is_ok());
        // a has two in flight: its third is refused, with the count and the channel back.
        assert_eq!(waiting.admit(InboundId(2), a, "a2").unwrap_err(), (2, "a2"));
        assert!(waiting.admit(InboundId(3), b, "b0").is_ok());
        // Three in all: b's second is refused though b has one only.
        assert_eq!(waiting.admit(InboundId(4), b, "b1").unwrap_err(), (1, "b1"));
        // Answering one of a's frees a slot, for a or anyone; an unknown id frees nothing.
        assert_eq!(waiting.take(InboundId(0)), Some((a, "a0")));
        assert_eq!(waiting.take(InboundId(0)), None);
        assert!(waiting.admit(InboundId(5), a, "a3").is_ok());
        assert_eq!(waiting.admit(InboundId(6), b, "b2").unwrap_err(), (1, "b2"));
        for id in [1, 3, 5] {
            assert!(waiting.take(InboundId(id)).is_some());
        }
        assert!(waiting.requests.is_empty() && waiting.per_peer.is_empty());
    }
}
