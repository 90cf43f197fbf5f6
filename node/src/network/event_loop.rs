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
use paych_core::combine::ReconcileStatus;
use paych_core::types::TokenAmount;
use paych_protocol::{
    Behaviour, Codec, Event, Exchange, LimitKind, ReconcileRequest, ReconcileResponse,
    RetrievalRequest, RetrievalResponse, RetrievalStatus, RouteKind, RouteRequest, RouteResponse,
    RouteStatus, VoucherRequest, VoucherResponse, VoucherStatus, WireMessage,
};
use tokio::sync::mpsc;

use super::{
    Command, Held, Inbound, InboundId, InboundRequest, NetworkConfig, NetworkError, Outbound,
    Reply, Responder, Response, INBOUND_QUEUE, MAX_ADDRS_PER_REQUEST, MAX_INBOUND_IN_FLIGHT,
    MAX_OUTBOUND_IN_FLIGHT, MAX_PENDING_CONNECTS, MAX_RECONCILE_IN_FLIGHT, MAX_RETRIEVAL_WAITING,
    MAX_ROUTE_IN_FLIGHT, RESPONSE_QUEUE,
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

/// What the loop keeps of an inbound request handed out: what its answer goes through.
type Kept<Resp> = (InboundRequestId, ResponseChannel<Resp>);

/// The loop's requests of one protocol: inbound ones handed out and not answered yet,
/// answers being sent with what their handler asked the loop to hold until each is sent or
/// fails, and outbound ones awaiting their answer.
struct Lane<Resp> {
    waiting: Waiting<Kept<Resp>>,
    sending: HashMap<InboundRequestId, Held>,
    outbound: HashMap<OutboundRequestId, Reply<Resp>>,
}

impl<Resp> Lane<Resp> {
    fn new(waiting: Waiting<Kept<Resp>>) -> Self {
        Lane { waiting, sending: HashMap::new(), outbound: HashMap::new() }
    }
}

/// How the loop refuses an inbound request over a cap: the reason counted, and how the log
/// line names the request and what it counts of the peer's.
struct OverCap {
    refusal: Refusal,
    request: &'static str,
    counted: &'static str,
}

/// A protocol's exchange in the swarm and its lane in the loop.
type Parts<'a, P> = (
    &'a mut Exchange<Codec<P, <P as LoopProtocol>::Response>>,
    &'a mut Lane<<P as LoopProtocol>::Response>,
);

/// One of the loop's request-response protocols, named by its request type.
trait LoopProtocol: WireMessage {
    type Response: WireMessage;
    /// The protocol's name in metrics and logs.
    const LABEL: &'static str;
    const OVER_CAP: OverCap;
    fn parts(l: &mut EventLoop) -> Parts<'_, Self>;
    fn inbound(self, id: InboundId, peer: PeerId) -> InboundRequest;
    /// The loop's own answer to a request over a cap.
    fn rate_limited() -> Self::Response;
}

/// Declares the protocols the loop runs, one a row: the request and answer types, the
/// protocol's field in [`Behaviour`] and in the loop, its [`InboundRequest`] variant, its
/// label and [`OverCap`] facts, and its answer to a request over a cap.
macro_rules! loop_protocols {
    ($($request:ident => $response:ident: $field:ident, $lane:ident, $variant:ident,
        ($label:literal, $refusal:ident, $name:literal, $counted:literal),
        $rate_limited:expr;)*) => {$(
        impl LoopProtocol for $request {
            type Response = $response;
            const LABEL: &'static str = $label;
            const OVER_CAP: OverCap = OverCap {
                refusal: Refusal::$refusal,
                request: $name,
                counted: $counted,
            };
            fn parts(l: &mut EventLoop) -> Parts<'_, Self> {
                (&mut l.swarm.behaviour_mut().$field, &mut l.$lane)
            }
            fn inbound(self, id: InboundId, peer: PeerId) -> InboundRequest {
                InboundRequest::$variant { id, peer, request: Box::new(self) }
            }
            fn rate_limited() -> $response {
                $rate_limited
            }
        }
    )*};
}

loop_protocols! {
    VoucherRequest => VoucherResponse: voucher, vouchers, Voucher,
        ("voucher", VoucherRateLimited, "voucher", "in flight"),
        VoucherResponse::rejected(VoucherStatus::RateLimited, TokenAmount::default(), VOUCHERS_BUSY);
    ReconcileRequest => ReconcileResponse: reconcile, reconciles, Reconcile,
        ("reconcile", ReconcileRateLimited, "reconcile request", "in flight"),
        ReconcileResponse::refused(ReconcileStatus::RateLimited, RECONCILES_BUSY);
    RetrievalRequest => RetrievalResponse: retrieval, retrievals, Retrieval,
        ("retrieval", RetrievalRateLimited, "retrieval request", "waiting"),
        RetrievalResponse::refused(RetrievalStatus::RateLimited, RETRIEVALS_BUSY);
    RouteRequest => RouteResponse: route, routes, Route,
        ("route", RouteBusy, "route request", "in flight"),
        RouteResponse::refused(RouteStatus::Busy, ROUTES_BUSY);
}

/// The message of the loop's answer to a voucher over a cap.
const VOUCHERS_BUSY: &str = "too many vouchers in flight; retry later";
/// The message of the loop's answer to a reconcile request over a cap.
const RECONCILES_BUSY: &str = "too many reconcile requests in flight; retry later";
/// The message of the loop's answer to a retrieval request over a cap.
const RETRIEVALS_BUSY: &str = "too many retrieval requests waiting; retry later";
/// The message of the loop's answer to a route request over a cap.
const ROUTES_BUSY: &str = "too many route requests in flight; retry later";

/// Owns the swarm: runs commands, hands inbound requests out, sends their answers, routes
/// responses to outbound requests.
pub(super) struct EventLoop {
    swarm: Swarm<Behaviour>,
    config: NetworkConfig,
    /// What the clients ask.
    commands: mpsc::Receiver<Command>,
    /// Answers to the inbound requests handed out.
    responses: mpsc::Receiver<Response>,
    /// Where inbound requests are handed out.
    requests: mpsc::Sender<InboundRequest>,
    /// A client's request to stop.
    stop: mpsc::Receiver<()>,
    /// The name of the next inbound request handed out.
    next_inbound: u64,
    vouchers: Lane<VoucherResponse>,
    reconciles: Lane<ReconcileResponse>,
    /// Retrievals; what their answers hold is the provider's count of work in flight.
    retrievals: Lane<RetrievalResponse>,
    /// Route requests; an offer's answer waits for the downstream hop.
    routes: Lane<RouteResponse>,
    /// What each outbound route request asked, until its answer (or failure) is counted.
    route_kinds: HashMap<OutboundRequestId, RouteKind>,
    /// `connect` calls waiting for their connection.
    connects: HashMap<ConnectionId, (Multiaddr, Reply<PeerId>)>,
    /// Connected peers, with their established connections (bounded by the connection
    /// limits) and the remote address of each.
    connected: HashMap<PeerId, HashMap<ConnectionId, Multiaddr>>,
}

impl EventLoop {
    /// The loop of `swarm`, run as `config` says, taking `commands` until `stop`; with the
    /// inbound side it hands requests out on and takes their answers from.
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        config: NetworkConfig,
        commands: mpsc::Receiver<Command>,
        stop: mpsc::Receiver<()>,
    ) -> (Self, Inbound) {
        let (responder, responses) = mpsc::channel(RESPONSE_QUEUE);
        let (requests, inbound) = mpsc::channel(INBOUND_QUEUE);
        let inbound = Inbound { requests: inbound, responder: Responder { responses: responder } };
        let event_loop = EventLoop {
            vouchers: Lane::new(Waiting::new(config.max_inbound_per_peer, MAX_INBOUND_IN_FLIGHT)),
            reconciles: Lane::new(Waiting::new(
                config.max_reconcile_per_peer,
                MAX_RECONCILE_IN_FLIGHT,
            )),
            retrievals: Lane::new(Waiting::new(MAX_RETRIEVAL_WAITING, MAX_RETRIEVAL_WAITING)),
            routes: Lane::new(Waiting::new(config.max_route_per_peer, MAX_ROUTE_IN_FLIGHT)),
            route_kinds: HashMap::new(),
            swarm,
            config,
            commands,
            responses,
            requests,
            stop,
            next_inbound: 0,
            connects: HashMap::new(),
            connected: HashMap::new(),
        };
        (event_loop, inbound)
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
                Outbound::Route(_, reply) => reply.send(Err(NetworkError::Busy)).is_ok(),
            };
            return;
        }
        for addr in addrs.into_iter().take(MAX_ADDRS_PER_REQUEST) {
            self.swarm.add_peer_address(peer, addr);
        }
        match request {
            Outbound::Voucher(request, reply) => {
                self.send_to(peer, *request, reply);
            }
            Outbound::Retrieval(request, reply) => {
                self.send_to(peer, *request, reply);
            }
            Outbound::Reconcile(request, reply) => {
                let id = self.send_to(peer, *request, reply);
                tracing::debug!(%peer, ?id, "reconcile request sent");
            }
            Outbound::Route(request, reply) => {
                let kind = request.kind();
                let id = self.send_to(peer, *request, reply);
                self.route_kinds.insert(id, kind);
                tracing::debug!(%peer, ?id, kind = kind.label(), "route request sent");
            }
        }
    }

    /// Sends `request` to `peer`; its answer goes to `reply`.
    fn send_to<P: LoopProtocol>(
        &mut self,
        peer: PeerId,
        request: P,
        reply: Reply<P::Response>,
    ) -> OutboundRequestId {
        let (exchange, lane) = P::parts(self);
        let id = exchange.send_request(&peer, request);
        lane.outbound.insert(id, reply);
        id
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
                if self.on_protocol_event(event) {
                    let status = status_label(VoucherStatus::RateLimited);
                    self.config.metrics.voucher_received(status, &TokenAmount::default());
                }
            }
            SwarmEvent::Behaviour(Event::Reconcile(event)) => {
                self.on_protocol_event(event);
            }
            SwarmEvent::Behaviour(Event::Retrieval(event)) => {
                self.on_protocol_event(event);
            }
            SwarmEvent::Behaviour(Event::Route(event)) => {
                self.count_route_sent(&event);
                let kind = inbound_route_kind(&event);
                if self.on_protocol_event(event) {
                    let busy = RouteStatus::Busy.label();
                    self.config
                        .metrics
                        .route_received(kind.map_or("unknown", RouteKind::label), busy);
                }
            }
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
        self.vouchers.outbound.len()
            + self.reconciles.outbound.len()
            + self.retrievals.outbound.len()
            + self.routes.outbound.len()
    }

    fn next_id(&mut self) -> InboundId {
        let id = InboundId(self.next_inbound);
        self.next_inbound = self.next_inbound.wrapping_add(1);
        id
    }

    /// Hands `request` out; when nobody takes requests any more (the node is stopping), the
    /// request is forgotten and its stream dropped.
    fn hand_out(&mut self, request: InboundRequest) {
        if let Err(error) = self.requests.try_send(request) {
            let id = match error.into_inner() {
                InboundRequest::Voucher { id, .. } => self.vouchers.waiting.take(id).map(drop),
                InboundRequest::Reconcile { id, .. } => self.reconciles.waiting.take(id).map(drop),
                InboundRequest::Retrieval { id, .. } => self.retrievals.waiting.take(id).map(drop),
                InboundRequest::Route { id, .. } => self.routes.waiting.take(id).map(drop),
            };
            tracing::debug!(found = id.is_some(), "inbound request dropped: nobody answers");
        }
    }

    fn on_response(&mut self, response: Response) {
        match response {
            Response::Voucher(id, response) => {
                self.send_answer::<VoucherRequest>(id, response, None)
            }
            Response::Reconcile(id, response) => {
                self.send_answer::<ReconcileRequest>(id, *response, None)
            }
            Response::Retrieval(id, response, held) => {
                self.send_answer::<RetrievalRequest>(id, *response, held)
            }
            Response::Route(id, response) => self.send_answer::<RouteRequest>(id, *response, None),
        }
    }

    /// Sends `response` on the stream of inbound request `id`, if it still waits, holding
    /// `held` until it is sent or fails.
    fn send_answer<P: LoopProtocol>(
        &mut self,
        id: InboundId,
        response: P::Response,
        held: Option<Held>,
    ) {
        let (exchange, lane) = P::parts(self);
        let Some((peer, (request_id, channel))) = lane.waiting.take(id) else { return };
        match exchange.send_response(channel, response) {
            Ok(()) => {
                if let Some(held) = held {
                    lane.sending.insert(request_id, held);
                }
            }
            Err(_) => {
                tracing::debug!(%peer, "{} response not sent: the stream is gone", P::LABEL)
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

    /// Counts the answer to an outbound route request (or its failure) by what it asked.
    fn count_route_sent(&mut self, event: &paych_protocol::RouteEvent) {
        use request_response::{Event as E, Message as M};
        let (request_id, status) = match event {
            E::Message { message: M::Response { request_id, response }, .. } => {
                (request_id, Some(response.status.label()))
            }
            E::OutboundFailure { request_id, .. } => (request_id, None),
            _ => return,
        };
        if let Some(kind) = self.route_kinds.remove(request_id) {
            self.config.metrics.route_sent(kind.label(), status);
        }
    }

    /// Hands the inbound request of `event` out, counts its failure or forgets what its sent
    /// answer held; answers to outbound requests go to their callers. Whether `event` was a
    /// request the loop answered `RateLimited` itself.
    fn on_protocol_event<P: LoopProtocol>(
        &mut self,
        event: request_response::Event<P, P::Response>,
    ) -> bool {
        match route(&mut P::parts(self).1.outbound, event) {
            Routed::Request { peer, request_id, request, channel } => {
                return self.on_request(peer, request_id, request, channel)
            }
            Routed::Failed { peer, request_id, error } => {
                self.count_inbound_failure(P::LABEL, peer, &error);
                P::parts(self).1.sending.remove(&request_id);
            }
            Routed::Sent(request_id) => {
                P::parts(self).1.sending.remove(&request_id);
            }
            Routed::Answered => {}
        }
        false
    }

    /// Hands `request` of `peer` out if its protocol's caps admit it; otherwise answers it
    /// `RateLimited`, counted and logged, and says so.
    fn on_request<P: LoopProtocol>(
        &mut self,
        peer: PeerId,
        request_id: InboundRequestId,
        request: P,
        channel: ResponseChannel<P::Response>,
    ) -> bool {
        let id = self.next_id();
        let Err((count, (_, channel))) =
            P::parts(self).1.waiting.admit(id, peer, (request_id, channel))
        else {
            self.hand_out(request.inbound(id, peer));
            return false;
        };
        let response = P::rate_limited();
        let OverCap { refusal, request: named, counted } = P::OVER_CAP;
        let what = format_args!("{named} from {peer}: {count} {counted}");
        self.config.metrics.rate_limited(P::LABEL);
        self.config.metrics.refused(refusal, what);
        let _ = P::parts(self).0.send_response(channel, response);
        true
    }
}

/// What the inbound route request of `event` asks, if `event` is one.
fn inbound_route_kind(event: &paych_protocol::RouteEvent) -> Option<RouteKind> {
    use request_response::{Event as E, Message as M};
    match event {
        E::Message { message: M::Request { request, .. }, .. } => Some(request.kind()),
        _ => None,
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
            let failure = match &error {
                // libp2p's request-response refuses a request locally, before opening a
                // stream, with this text when the connection's streams are all in use.
                request_response::OutboundFailure::Io(e) if e.to_string() == STREAMS_EXHAUSTED => {
                    NetworkError::StreamsExhausted { peer }
                }
                _ => NetworkError::Request { peer, reason: error.to_string() },
            };
            answer(waiting, request_id, Err(failure));
            Routed::Answered
        }
        E::InboundFailure { peer, request_id, error, .. } => {
            Routed::Failed { peer, request_id, error }
        }
        E::ResponseSent { request_id, .. } => Routed::Sent(request_id),
    }
}

/// What libp2p's request-response answers a request its connection has no stream left
/// for (`libp2p-request-response`'s handler, `max_concurrent_streams`).
const STREAMS_EXHAUSTED: &str = "max sub-streams reached";

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
