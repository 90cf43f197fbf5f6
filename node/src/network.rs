//! The node's libp2p networking: an [`EventLoop`] task owns the swarm; a cloneable
//! [`NetworkClient`] talks to it through a bounded command channel with one-shot replies
//! (the pattern of rust-libp2p's file-sharing example).
//!
//! Inbound voucher requests are handed to the [`PaymentChannelManager`] on a task of their
//! own, so that validating and storing a voucher never blocks the loop; the loop keeps
//! the request's response channel keyed by a local id and answers when the task reports
//! back through a bounded channel. Everything is bounded: commands queued
//! ([`COMMAND_QUEUE`]), outbound requests in flight ([`MAX_OUTBOUND_IN_FLIGHT`]), inbound
//! requests in flight per peer ([`NetworkConfig::max_inbound_per_peer`], answered
//! `RateLimited` beyond) and in total ([`MAX_INBOUND_IN_FLIGHT`]).
//!
//! Inbound reconcile requests go the same way, with their own bounds
//! ([`NetworkConfig::max_reconcile_per_peer`], [`MAX_RECONCILE_IN_FLIGHT`]): the request's
//! peer record proves which Filecoin key the requesting peer holds ([`proven_key`]: it must
//! verify and name the PeerId the connection authenticated), the manager answers only the
//! channel's payee, checks the request against the node's [`ReconcilePolicy`] and records
//! the combined voucher durably before the answer is sent.
//!
//! Inbound retrieval requests are answered in place by the [`RetrievalProvider`]; each
//! manifest or chunk handed out stays counted against the provider's budget of responses in
//! flight (per peer and in total) until libp2p reports it sent or failed, and a voucher
//! carrying a flow reference is credited to that flow only as
//! [`crate::retrieval::credit_payment`] allows.
//!
//! Every connection denied by a limit and every request refused (over an in-flight cap,
//! answered with an error status, or unreadable) is counted and logged through
//! [`Metrics::refused`], with a [`Refusal`] reason.
//!
//! A voucher request may carry an announce: the payer's signed peer record. It is checked
//! against the channel's payer (`from`) before the voucher is added, refused as
//! `InvalidSignature` when it is not signed by that key, and kept (the highest sequence
//! number per address) once the voucher is held — so the payee can reach the payer later
//! knowing only the channel's `from`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, InboundRequestId, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionDenied, ConnectionId, DialError, ListenError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};
use paych_core::actor::ActorError;
use paych_core::chain::ChainError;
use paych_core::combine::{ReconcilePolicy, ReconcileStatus};
use paych_core::manager::{AddOutcome, AddVoucherError, PaymentChannelManager};
use paych_core::redemption::{PolicyRefusal, Unredeemable};
use paych_core::store::PeerRecord as StoredPeerRecord;
use paych_core::types::TokenAmount;
use paych_protocol::{
    build_swarm, Announce, Behaviour, Config, Event, LimitKind, ReconcileRequest,
    ReconcileResponse, RetrievalRequest, RetrievalResponse, RetrievalStatus, SignedPeerRecord,
    SwarmError, VoucherRequest, VoucherResponse, VoucherStatus,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::retrieval::{credit_payment, InFlight, RetrievalProvider};

use crate::metrics::{status_label, Metrics};
use crate::refusals::Refusal;

/// Commands waiting for the event loop, at most.
pub const COMMAND_QUEUE: usize = 64;
/// Outbound voucher requests awaiting their response, at most.
pub const MAX_OUTBOUND_IN_FLIGHT: usize = 256;
/// Inbound voucher requests being handled, at most, over all peers.
pub const MAX_INBOUND_IN_FLIGHT: usize = 256;
/// Addresses of the peer one `send_voucher` may add, at most.
pub const MAX_ADDRS_PER_REQUEST: usize = 8;
/// Connections being dialled on behalf of `connect`, at most.
pub const MAX_PENDING_CONNECTS: usize = 64;
/// Inbound reconcile requests being handled, at most, over all peers.
pub const MAX_RECONCILE_IN_FLIGHT: usize = 32;
/// Handled inbound requests waiting for the loop to send their response, at most.
const DONE_QUEUE: usize = 64;

/// How the node's networking behaves.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The limits and timeouts of the swarm.
    pub protocol: Config,
    /// The least a voucher must add to its lane to be accepted.
    pub min_delta: TokenAmount,
    /// Inbound voucher requests one peer may have in flight; more are answered
    /// `RateLimited`.
    pub max_inbound_per_peer: usize,
    /// The blobs served over `/paych/retrieval/1.0.0`, credited with the payments that
    /// vouchers carrying a flow reference bring.
    pub retrieval: Arc<RetrievalProvider>,
    /// The terms on which this node, as a payer, folds vouchers into a combined one.
    pub reconcile_policy: ReconcilePolicy,
    /// Inbound reconcile requests one peer may have in flight; more are answered
    /// `RateLimited`.
    pub max_reconcile_per_peer: usize,
    /// Where the loop counts vouchers, connections and refusals.
    pub metrics: Arc<Metrics>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            protocol: Config::default(),
            min_delta: TokenAmount::default(),
            max_inbound_per_peer: 8,
            retrieval: Arc::new(RetrievalProvider::default()),
            reconcile_policy: ReconcilePolicy::default(),
            max_reconcile_per_peer: 1,
            metrics: Arc::default(),
        }
    }
}

/// Why a network command failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The event loop has stopped.
    #[error("the network event loop has stopped")]
    Stopped,
    /// Too many outbound requests are in flight.
    #[error("too many outbound requests in flight (at most {MAX_OUTBOUND_IN_FLIGHT})")]
    Busy,
    /// Dialling failed.
    #[error("cannot dial {addr}: {reason}")]
    Dial {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// Listening failed.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// An outbound request failed.
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The swarm could not be built.
    #[error(transparent)]
    Swarm(#[from] SwarmError),
}

type Reply<T> = oneshot::Sender<Result<T, NetworkError>>;

enum Command {
    Listen {
        addr: Multiaddr,
        reply: Reply<()>,
    },
    Connect {
        addr: Multiaddr,
        reply: Reply<PeerId>,
    },
    Peers {
        reply: Reply<Vec<(PeerId, Multiaddr)>>,
    },
    ListenAddrs {
        reply: Reply<Vec<Multiaddr>>,
    },
    SendVoucher {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: Box<VoucherRequest>,
        reply: Reply<VoucherResponse>,
    },
    SendRetrieval {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: Box<RetrievalRequest>,
        reply: Reply<RetrievalResponse>,
    },
    SendReconcile {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: Box<ReconcileRequest>,
        reply: Reply<ReconcileResponse>,
    },
    Disconnect {
        peer: PeerId,
        reply: Reply<()>,
    },
}

/// A handled inbound request, back from its task.
enum Done {
    Voucher(u64, VoucherResponse),
    Reconcile(u64, Box<ReconcileResponse>),
}

/// A handle on the event loop; cheap to clone. The loop stops when every client is dropped
/// or [`NetworkClient::shutdown`] is called.
#[derive(Clone)]
pub struct NetworkClient {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    stop: mpsc::Sender<()>,
    retrieval: Arc<RetrievalProvider>,
}

impl NetworkClient {
    /// The local peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NetworkError> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(make(reply)).await.map_err(|_| NetworkError::Stopped)?;
        rx.await.map_err(|_| NetworkError::Stopped)?
    }

    /// Starts listening on `addr`.
    pub async fn listen(&self, addr: Multiaddr) -> Result<(), NetworkError> {
        self.call(|reply| Command::Listen { addr, reply }).await
    }

    /// Connects to `addr` (which may end in `/p2p/<peer id>`, then checked) and returns the
    /// peer once a connection is up; already being connected to that peer is success.
    pub async fn connect(&self, addr: Multiaddr) -> Result<PeerId, NetworkError> {
        self.call(|reply| Command::Connect { addr, reply }).await
    }

    /// The peers connected now.
    pub async fn peers(&self) -> Result<Vec<PeerId>, NetworkError> {
        Ok(self.peer_addrs().await?.into_iter().map(|(peer, _)| peer).collect())
    }

    /// The peers connected now, each with the remote address of one of its connections.
    pub async fn peer_addrs(&self) -> Result<Vec<(PeerId, Multiaddr)>, NetworkError> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// The addresses the swarm listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetworkError> {
        self.call(|reply| Command::ListenAddrs { reply }).await
    }

    /// Sends `request` to `peer` (reachable at `addrs`, if not connected yet) and waits for
    /// its response.
    pub async fn send_voucher(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: VoucherRequest,
    ) -> Result<VoucherResponse, NetworkError> {
        self.call(|reply| Command::SendVoucher { peer, addrs, request: Box::new(request), reply })
            .await
    }

    /// Sends a retrieval request to `peer` (reachable at `addrs`, if not connected yet) and
    /// waits for its response.
    pub async fn send_retrieval(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: RetrievalRequest,
    ) -> Result<RetrievalResponse, NetworkError> {
        self.call(|reply| Command::SendRetrieval { peer, addrs, request: Box::new(request), reply })
            .await
    }

    /// The blobs this node serves over `/paych/retrieval/1.0.0`.
    pub fn retrieval(&self) -> &Arc<RetrievalProvider> {
        &self.retrieval
    }

    /// Sends a reconcile request to `peer` (reachable at `addrs`, dialled if not connected)
    /// and waits for the payer's answer.
    pub async fn send_reconcile(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: ReconcileRequest,
    ) -> Result<ReconcileResponse, NetworkError> {
        self.call(|reply| Command::SendReconcile { peer, addrs, request: Box::new(request), reply })
            .await
    }

    /// Closes every connection with `peer` (success if there is none).
    pub async fn disconnect(&self, peer: PeerId) -> Result<(), NetworkError> {
        self.call(|reply| Command::Disconnect { peer, reply }).await
    }

    /// Asks the event loop to stop (it closes the swarm's listeners and connections when
    /// dropped); wait on the loop's join handle to know it stopped.
    pub async fn shutdown(&self) {
        let _ = self.stop.try_send(());
    }
}

/// Builds the swarm for `keypair` and spawns its [`EventLoop`]; returns a client and the
/// loop's task.
pub fn spawn(
    keypair: Keypair,
    config: NetworkConfig,
    manager: PaymentChannelManager,
) -> Result<(NetworkClient, JoinHandle<()>), NetworkError> {
    let swarm = build_swarm(keypair, &config.protocol)?;
    let local_peer_id = *swarm.local_peer_id();
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let (stop_tx, stop) = mpsc::channel(1);
    let (done_tx, done) = mpsc::channel(DONE_QUEUE);
    let retrieval = config.retrieval.clone();
    let event_loop = EventLoop {
        swarm,
        commands,
        stop,
        done_tx,
        done,
        manager,
        config,
        next_inbound: 0,
        inbound: HashMap::new(),
        inbound_per_peer: HashMap::new(),
        outbound: HashMap::new(),
        outbound_retrieval: HashMap::new(),
        retrievals_in_flight: HashMap::new(),
        reconciles: HashMap::new(),
        reconciles_per_peer: HashMap::new(),
        outbound_reconciles: HashMap::new(),
        connects: HashMap::new(),
        connected: HashMap::new(),
    };
    let handle = tokio::spawn(event_loop.run());
    Ok((NetworkClient { commands: commands_tx, local_peer_id, stop: stop_tx, retrieval }, handle))
}

/// Owns the swarm: runs commands, answers inbound requests, routes responses.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    stop: mpsc::Receiver<()>,
    done_tx: mpsc::Sender<Done>,
    done: mpsc::Receiver<Done>,
    manager: PaymentChannelManager,
    config: NetworkConfig,
    next_inbound: u64,
    inbound: HashMap<u64, (PeerId, ResponseChannel<VoucherResponse>)>,
    inbound_per_peer: HashMap<PeerId, usize>,
    outbound: HashMap<OutboundRequestId, Reply<VoucherResponse>>,
    outbound_retrieval: HashMap<OutboundRequestId, Reply<RetrievalResponse>>,
    /// Inbound retrieval responses being sent, each counted against the provider's bounds
    /// until it is sent or fails (so at most the provider's limit of responses in flight).
    retrievals_in_flight: HashMap<InboundRequestId, InFlight>,
    /// Inbound reconcile requests being handled, by local id.
    reconciles: HashMap<u64, (PeerId, ResponseChannel<ReconcileResponse>)>,
    reconciles_per_peer: HashMap<PeerId, usize>,
    outbound_reconciles: HashMap<OutboundRequestId, Reply<ReconcileResponse>>,
    /// `connect` calls waiting for their connection.
    connects: HashMap<ConnectionId, (Multiaddr, Reply<PeerId>)>,
    /// Connected peers, with their established connections (bounded by the connection
    /// limits) and the remote address of each.
    connected: HashMap<PeerId, HashMap<ConnectionId, Multiaddr>>,
}

impl EventLoop {
    async fn run(mut self) {
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                Some(done) = self.done.recv() => match done {
                    Done::Voucher(id, response) => self.respond(id, response),
                    Done::Reconcile(id, response) => self.respond_reconcile(id, *response),
                },
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
            Command::SendVoucher { peer, addrs, request, reply } => {
                if self.outbound_in_flight() >= MAX_OUTBOUND_IN_FLIGHT {
                    let _ = reply.send(Err(NetworkError::Busy));
                    return;
                }
                for addr in addrs.into_iter().take(MAX_ADDRS_PER_REQUEST) {
                    self.swarm.add_peer_address(peer, addr);
                }
                let id = self.swarm.behaviour_mut().voucher.send_request(&peer, *request);
                self.outbound.insert(id, reply);
            }
            Command::SendRetrieval { peer, addrs, request, reply } => {
                if self.outbound_in_flight() >= MAX_OUTBOUND_IN_FLIGHT {
                    let _ = reply.send(Err(NetworkError::Busy));
                    return;
                }
                for addr in addrs.into_iter().take(MAX_ADDRS_PER_REQUEST) {
                    self.swarm.add_peer_address(peer, addr);
                }
                let id = self.swarm.behaviour_mut().retrieval.send_request(&peer, *request);
                self.outbound_retrieval.insert(id, reply);
            }
            Command::SendReconcile { peer, addrs, request, reply } => {
                if self.outbound_in_flight() >= MAX_OUTBOUND_IN_FLIGHT {
                    let _ = reply.send(Err(NetworkError::Busy));
                    return;
                }
                for addr in addrs.into_iter().take(MAX_ADDRS_PER_REQUEST) {
                    self.swarm.add_peer_address(peer, addr);
                }
                let id = self.swarm.behaviour_mut().reconcile.send_request(&peer, *request);
                tracing::debug!(%peer, ?id, "reconcile request sent");
                self.outbound_reconciles.insert(id, reply);
            }
            Command::Disconnect { peer, reply } => {
                // Err means there was no connection: nothing to close.
                let _ = self.swarm.disconnect_peer_id(peer);
                let _ = reply.send(Ok(()));
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
            SwarmEvent::Behaviour(Event::Voucher(event)) => self.on_voucher_event(event),
            SwarmEvent::Behaviour(Event::Retrieval(event)) => self.on_retrieval_event(event),
            SwarmEvent::Behaviour(Event::Reconcile(event)) => self.on_reconcile_event(event),
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

    fn outbound_in_flight(&self) -> usize {
        self.outbound.len() + self.outbound_reconciles.len() + self.outbound_retrieval.len()
    }

    fn on_reconcile_event(&mut self, event: paych_protocol::ReconcileEvent) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.on_reconcile_request(peer, request, channel)
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.outbound_reconciles.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                if let Some(reply) = self.outbound_reconciles.remove(&request_id) {
                    let _ =
                        reply.send(Err(NetworkError::Request { peer, reason: error.to_string() }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                self.count_inbound_failure("reconcile", peer, &error)
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_reconcile_request(
        &mut self,
        peer: PeerId,
        request: ReconcileRequest,
        channel: ResponseChannel<ReconcileResponse>,
    ) {
        let in_flight = self.reconciles_per_peer.get(&peer).copied().unwrap_or(0);
        if in_flight >= self.config.max_reconcile_per_peer
            || self.reconciles.len() >= MAX_RECONCILE_IN_FLIGHT
        {
            let response = ReconcileResponse::refused(
                ReconcileStatus::RateLimited,
                "too many reconcile requests in flight; retry later",
            );
            self.config.metrics.rate_limited("reconcile");
            self.config.metrics.refused(
                Refusal::ReconcileRateLimited,
                format_args!("reconcile request from {peer}: {in_flight} in flight"),
            );
            let _ = self.swarm.behaviour_mut().reconcile.send_response(channel, response);
            return;
        }
        let id = self.next_inbound;
        self.next_inbound = self.next_inbound.wrapping_add(1);
        self.reconciles.insert(id, (peer, channel));
        *self.reconciles_per_peer.entry(peer).or_default() += 1;
        let manager = self.manager.clone();
        let policy = self.config.reconcile_policy.clone();
        let done = self.done_tx.clone();
        let span = tracing::info_span!(
            "reconcile_inbound",
            %peer,
            vouchers = request.vouchers.len(),
            req_val = %request.req_val.atto()
        );
        tokio::spawn(
            async move {
                let response = answer_reconcile(&manager, peer, &request, &policy).await;
                tracing::debug!(status = response.status, "reconcile answered");
                let _ = done.send(Done::Reconcile(id, Box::new(response))).await;
            }
            .instrument(span),
        );
    }

    fn respond_reconcile(&mut self, id: u64, response: ReconcileResponse) {
        let Some((peer, channel)) = self.reconciles.remove(&id) else { return };
        if let Some(count) = self.reconciles_per_peer.get_mut(&peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.reconciles_per_peer.remove(&peer);
            }
        }
        let outcome = if response.status == 0 { "success" } else { "refused" };
        self.config.metrics.reconciliation("payer", outcome);
        if response.status != 0 {
            self.config.metrics.refused(
                Refusal::ReconcileRefused,
                format_args!(
                    "reconcile request from {peer}: status {}: {}",
                    response.status,
                    response.message.as_deref().unwrap_or("")
                ),
            );
        }
        if self.swarm.behaviour_mut().reconcile.send_response(channel, response).is_err() {
            tracing::debug!(%peer, "reconcile response not sent: the stream is gone");
        }
    }

    fn on_voucher_event(&mut self, event: paych_protocol::VoucherEvent) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.on_voucher_request(peer, request, channel)
                }
                request_response::Message::Response { request_id, response } => {
                    let status = response.status().map(status_label);
                    self.config.metrics.voucher_sent(status, &response.delta);
                    if let Some(reply) = self.outbound.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                self.config.metrics.voucher_sent(None, &TokenAmount::default());
                if let Some(reply) = self.outbound.remove(&request_id) {
                    let _ =
                        reply.send(Err(NetworkError::Request { peer, reason: error.to_string() }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                self.count_inbound_failure("voucher", peer, &error)
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_retrieval_event(&mut self, event: paych_protocol::RetrievalEvent) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request_id, request, channel } => {
                    self.on_retrieval_request(peer, request_id, request, channel)
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.outbound_retrieval.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                if let Some(reply) = self.outbound_retrieval.remove(&request_id) {
                    let _ =
                        reply.send(Err(NetworkError::Request { peer, reason: error.to_string() }));
                }
            }
            request_response::Event::InboundFailure { peer, request_id, error, .. } => {
                self.count_inbound_failure("retrieval", peer, &error);
                self.retrieval_done(request_id);
            }
            request_response::Event::ResponseSent { request_id, .. } => {
                self.retrieval_done(request_id)
            }
        }
    }

    /// Answers a retrieval request at once (the provider reads memory only) and keeps the
    /// response counted against the provider's bounds until it is sent.
    fn on_retrieval_request(
        &mut self,
        peer: PeerId,
        request_id: InboundRequestId,
        request: RetrievalRequest,
        channel: ResponseChannel<RetrievalResponse>,
    ) {
        let _span =
            tracing::debug_span!("retrieval_request", %peer, index = ?request.index).entered();
        let retrieval = self.config.retrieval.clone();
        let served = retrieval.serve(peer, &request);
        if served.response.status() == Some(RetrievalStatus::RateLimited) {
            self.config.metrics.rate_limited("retrieval");
        }
        count_retrieval_refusal(&self.config.metrics, peer, &served.response);
        match self.swarm.behaviour_mut().retrieval.send_response(channel, served.response) {
            Ok(()) => {
                if let Some(in_flight) = served.in_flight {
                    self.retrievals_in_flight.insert(request_id, in_flight);
                }
            }
            Err(_) => tracing::debug!(%peer, "retrieval response not sent: the stream is gone"),
        }
        self.count_retrieval_load();
    }

    /// A retrieval response was sent or failed: it no longer counts against the bounds.
    fn retrieval_done(&mut self, request_id: InboundRequestId) {
        if self.retrievals_in_flight.remove(&request_id).is_some() {
            self.count_retrieval_load();
        }
    }

    fn count_retrieval_load(&self) {
        let usage = self.config.retrieval.usage();
        self.config.metrics.set_retrieval_load(
            usage.in_flight.responses,
            usage.in_flight.bytes,
            usage.open_flows,
        );
    }

    fn on_voucher_request(
        &mut self,
        peer: PeerId,
        request: VoucherRequest,
        channel: ResponseChannel<VoucherResponse>,
    ) {
        let in_flight = self.inbound_per_peer.get(&peer).copied().unwrap_or(0);
        if in_flight >= self.config.max_inbound_per_peer
            || self.inbound.len() >= MAX_INBOUND_IN_FLIGHT
        {
            let response = VoucherResponse::rejected(
                VoucherStatus::RateLimited,
                TokenAmount::default(),
                "too many vouchers in flight; retry later",
            );
            self.config.metrics.rate_limited("voucher");
            self.config.metrics.refused(
                Refusal::VoucherRateLimited,
                format_args!("voucher from {peer}: {in_flight} in flight"),
            );
            self.config
                .metrics
                .voucher_received(status_label(VoucherStatus::RateLimited), &response.delta);
            let _ = self.swarm.behaviour_mut().voucher.send_response(channel, response);
            return;
        }
        let id = self.next_inbound;
        self.next_inbound = self.next_inbound.wrapping_add(1);
        self.inbound.insert(id, (peer, channel));
        *self.inbound_per_peer.entry(peer).or_default() += 1;
        let manager = self.manager.clone();
        let min_delta = self.config.min_delta.clone();
        let done = self.done_tx.clone();
        let retrieval = self.config.retrieval.clone();
        let metrics = self.config.metrics.clone();
        let span = tracing::debug_span!(
            "voucher_inbound",
            %peer,
            lane = request.voucher.lane,
            nonce = request.voucher.nonce,
            announce = request.announce.is_some()
        );
        tokio::spawn(
            async move {
                let (channel, flow) = (request.voucher.channel_addr, request.flow.clone());
                let response = answer_voucher(&manager, peer, request, min_delta).await;
                let status = response.status().map_or("unknown", status_label);
                metrics.voucher_received(status, &response.delta);
                if !response.is_held() {
                    let message = response.message.as_deref().unwrap_or("");
                    metrics.refused(
                        Refusal::VoucherRefused,
                        format_args!("voucher from {peer}: {status}: {message}"),
                    );
                }
                if let Some(flow) = &flow {
                    // Credited before the answer leaves, so the payer's next chunk request
                    // finds the payment; only an accepted delta from the channel's payer.
                    let credit =
                        credit_payment(&retrieval, &manager, peer, channel, flow, &response).await;
                    tracing::debug!(?credit, "retrieval credit");
                }
                // The loop is gone only when the node stops; the request is then dropped.
                let _ = done.send(Done::Voucher(id, response)).await;
            }
            .instrument(span),
        );
    }

    fn count_connections(&self) {
        let connections = self.connected.values().map(HashMap::len).sum();
        self.config.metrics.set_connections(connections, self.connected.len());
    }

    fn respond(&mut self, id: u64, response: VoucherResponse) {
        let Some((peer, channel)) = self.inbound.remove(&id) else { return };
        if let Some(count) = self.inbound_per_peer.get_mut(&peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.inbound_per_peer.remove(&peer);
            }
        }
        if self.swarm.behaviour_mut().voucher.send_response(channel, response).is_err() {
            tracing::debug!(%peer, "voucher response not sent: the stream is gone");
        }
    }
}

/// Counts and logs a retrieval request answered with an error status.
fn count_retrieval_refusal(metrics: &Metrics, peer: PeerId, response: &RetrievalResponse) {
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

/// Handles one inbound voucher request: checks its announce (if any) against the channel's
/// payer, adds the voucher, and keeps the announced peer record once the voucher is held.
async fn answer_voucher(
    manager: &PaymentChannelManager,
    peer: PeerId,
    request: VoucherRequest,
    min_delta: TokenAmount,
) -> VoucherResponse {
    let voucher = request.voucher;
    let announced = match request.announce {
        Some(announce) => {
            match check_announce(manager, peer, &voucher.channel_addr, &announce).await {
                Ok(record) => Some(record),
                Err(refusal) => {
                    tracing::debug!(message = ?refusal.message, "announce refused");
                    return refusal;
                }
            }
        }
        None => None,
    };
    let result = manager.voucher_add(&voucher.channel_addr, &voucher, min_delta).await;
    if let Err(error) = &result {
        tracing::debug!(%error, "voucher refused");
    }
    let response = voucher_response(result, &voucher.amount);
    if let (Some(record), true) = (announced, response.is_held()) {
        let address = record.address;
        match manager.record_peer(record).await {
            Ok(stored) => tracing::debug!(%address, stored, "peer record announced"),
            Err(error) => tracing::warn!(%address, %error, "cannot keep the peer record"),
        }
    }
    response
}

/// The announced peer record, verified: signed by the key of `from`, which is the payer of
/// the voucher's channel (and `to` its payee), naming the peer the request came from. A
/// refusal otherwise.
pub async fn check_announce(
    manager: &PaymentChannelManager,
    peer: PeerId,
    voucher_channel: &paych_core::types::Address,
    announce: &Announce,
) -> Result<StoredPeerRecord, VoucherResponse> {
    let refuse = |status: VoucherStatus, message: String| {
        VoucherResponse::rejected(status, TokenAmount::default(), message)
    };
    if &announce.channel != voucher_channel {
        return Err(refuse(
            VoucherStatus::Malformed,
            "the announce names another channel than the voucher".to_owned(),
        ));
    }
    let verified = match announce.peer_record.verify() {
        Ok(verified) => verified,
        Err(e) => return Err(refuse(VoucherStatus::InvalidSignature, e.to_string())),
    };
    if verified.address != announce.from {
        return Err(refuse(
            VoucherStatus::InvalidSignature,
            "the peer record is not signed by the announced payer".to_owned(),
        ));
    }
    if verified.peer_id != peer {
        return Err(refuse(
            VoucherStatus::Malformed,
            "the peer record names another peer than the sender".to_owned(),
        ));
    }
    match manager.channel_parties(voucher_channel).await {
        Ok((from, to)) if from == announce.from && to == announce.to => {}
        Ok(_) => {
            return Err(refuse(
                VoucherStatus::InvalidSignature,
                "the announce does not name the channel's parties: the peer record is not \
                 signed by the channel's payer"
                    .to_owned(),
            ))
        }
        Err(e) => return Err(voucher_response(Err(e.into()), &TokenAmount::default())),
    }
    let envelope = announce
        .peer_record
        .to_cbor()
        .map_err(|e| refuse(VoucherStatus::Malformed, e.to_string()))?;
    Ok(StoredPeerRecord { address: verified.address, sequence: verified.sequence, envelope })
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

/// How long [`wait_for_listen_addrs`] waits at most.
pub const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// Waits until the swarm reports at least one listen address.
pub async fn wait_for_listen_addrs(client: &NetworkClient) -> Result<Vec<Multiaddr>, NetworkError> {
    let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
    loop {
        let addrs = client.listen_addrs().await?;
        if !addrs.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(addrs);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The answer to a voucher the manager added (or refused). `voucher_amount` is the lane's
/// amount after an accepted voucher. Refusals carry a zero `lane_amount`: the payee does not
/// look the lane up again to answer a refusal.
pub fn voucher_response(
    result: Result<AddOutcome, AddVoucherError>,
    voucher_amount: &TokenAmount,
) -> VoucherResponse {
    match result {
        Ok(AddOutcome::Accepted { delta }) => {
            VoucherResponse::accepted(delta, voucher_amount.clone())
        }
        Ok(AddOutcome::Covered { lane_amount }) => VoucherResponse::covered(lane_amount),
        Ok(AddOutcome::AlreadyHeld) => VoucherResponse::already_held(voucher_amount.clone()),
        Err(error) => {
            let status = rejection_status(&error);
            if status == VoucherStatus::Internal {
                tracing::warn!(%error, "voucher refused on an internal error");
            }
            VoucherResponse::rejected(status, TokenAmount::default(), error.to_string())
        }
    }
}

/// The wire status of a voucher intake error.
pub fn rejection_status(error: &AddVoucherError) -> VoucherStatus {
    use AddVoucherError as E;
    use VoucherStatus as S;
    match error {
        E::UnknownChannel(_) | E::WrongDirection { .. } => S::UnknownChannel,
        E::Chain(ChainError::NotFound(_)) => S::UnknownChannel,
        E::InvalidVoucher(e) => actor_status(e),
        E::VoucherRefused(refusal) => policy_status(refusal),
        E::Unredeemable(why) => unredeemable_status(why),
        E::AmountBelowLane { .. } | E::ConflictingVoucher { .. } => S::StaleNonce,
        E::BelowMinDelta { .. } => S::BelowMinimum,
        E::InvalidAmount(_) | E::ForeignVoucher(_) => S::Malformed,
        E::Chain(_) | E::Store(_) | E::Encode(_) => S::Internal,
    }
}

/// The wire status of an intake policy refusal.
pub fn policy_status(refusal: &PolicyRefusal) -> VoucherStatus {
    use VoucherStatus as S;
    match refusal {
        PolicyRefusal::TimeLocked { .. } => S::TimeLock,
        PolicyRefusal::HashLocked => S::HashLocked,
        PolicyRefusal::MessageLocked(_) => S::MessageLocked,
        PolicyRefusal::Merges => S::Merges,
        PolicyRefusal::SettleHeightTooFar { .. } => S::SettleHeight,
    }
}

/// The wire status of a voucher the chain would not pay for.
pub fn unredeemable_status(why: &Unredeemable) -> VoucherStatus {
    use VoucherStatus as S;
    match why {
        Unredeemable::Settling { .. } => S::Settling,
        Unredeemable::OtherChannel(_) => S::Malformed,
        Unredeemable::TimeLockMin { .. } | Unredeemable::TimeLockMax { .. } => S::TimeLock,
        Unredeemable::Extra => S::MessageLocked,
        Unredeemable::SecretUnknown => S::HashLocked,
        Unredeemable::Actor(e) => actor_status(e),
    }
}

/// The wire status of an actor rule a voucher breaks.
pub fn actor_status(error: &ActorError) -> VoucherStatus {
    use ActorError as A;
    use VoucherStatus as S;
    match error {
        A::MissingSignature | A::InvalidSignature(_) => S::InvalidSignature,
        A::StaleNonce { .. } | A::MergeStaleNonce { .. } => S::StaleNonce,
        A::InsufficientFunds { .. } => S::InsufficientFunds,
        A::TimeLockMinNotReached { .. } | A::TimeLockMaxPassed { .. } => S::TimeLock,
        A::UpdateAfterSettled { .. }
        | A::AlreadySettling
        | A::NotSettled { .. }
        | A::CollectUnpayable { .. } => S::Settling,
        A::UnresolvableChannel(_) | A::WrongChannel { .. } => S::UnknownChannel,
        A::SecretTooLong(_)
        | A::Serialization(_)
        | A::NegativeAmount(_)
        | A::IncorrectSecret
        | A::ExtraCallFailed(_)
        | A::LaneTooLarge(_)
        | A::MergeIntoOwnLane(_)
        | A::MergeLaneMissing(_)
        | A::NegativeToSend
        | A::ConstructorCallerNotInit(_)
        | A::PartyNotFound(_)
        | A::CallerNotParty { .. } => S::Malformed,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use paych_core::store::StoreError;
    use paych_core::types::Address;

    /// An internal failure of intake: the store failed.
    fn store_failure() -> AddVoucherError {
        AddVoucherError::Store(StoreError::Backend("disk unavailable".into()))
    }

    #[test]
    fn manager_errors_map_to_wire_statuses() {
        use VoucherStatus as S;
        let invalid = |e: ActorError| rejection_status(&AddVoucherError::InvalidVoucher(e));
        assert_eq!(invalid(ActorError::MissingSignature), S::InvalidSignature);
        assert_eq!(invalid(ActorError::InvalidSignature("x".into())), S::InvalidSignature);
        assert_eq!(
            invalid(ActorError::StaleNonce { lane: 0, existing: 2, voucher: 1 }),
            S::StaleNonce
        );
        assert_eq!(
            invalid(ActorError::InsufficientFunds { to_send: atto(2), balance: atto(1) }),
            S::InsufficientFunds
        );
        assert_eq!(
            invalid(ActorError::TimeLockMinNotReached { epoch: 1, time_lock_min: 2 }),
            S::TimeLock
        );
        assert_eq!(
            invalid(ActorError::TimeLockMaxPassed { epoch: 3, time_lock_max: 2 }),
            S::TimeLock
        );
        assert_eq!(
            invalid(ActorError::UpdateAfterSettled { settling_at: 1, epoch: 2 }),
            S::Settling
        );
        assert_eq!(invalid(ActorError::MergeIntoOwnLane(1)), S::Malformed);
        assert_eq!(invalid(ActorError::UnresolvableChannel(Address::new_id(1))), S::UnknownChannel);
        assert_eq!(
            rejection_status(&AddVoucherError::UnknownChannel("t2x".into())),
            S::UnknownChannel
        );
        assert_eq!(
            rejection_status(&AddVoucherError::BelowMinDelta {
                delta: atto(1),
                min_delta: atto(2)
            }),
            S::BelowMinimum
        );
        assert_eq!(
            rejection_status(&AddVoucherError::ConflictingVoucher { lane: 0, nonce: 1 }),
            S::StaleNonce
        );
        assert_eq!(rejection_status(&store_failure()), S::Internal);
    }

    #[test]
    fn answers_carry_the_outcome() {
        let accepted = voucher_response(Ok(AddOutcome::Accepted { delta: atto(5) }), &atto(15));
        assert_eq!(accepted, VoucherResponse::accepted(atto(5), atto(15)));
        let covered =
            voucher_response(Ok(AddOutcome::Covered { lane_amount: atto(15) }), &atto(10));
        assert_eq!(covered, VoucherResponse::covered(atto(15)));
        let refused = voucher_response(Err(store_failure()), &atto(10));
        assert_eq!(refused.status(), Some(VoucherStatus::Internal));
        assert!(refused.delta.is_zero() && refused.message.is_some());
    }

    fn atto(n: u64) -> TokenAmount {
        TokenAmount::from_atto(n)
    }
}
