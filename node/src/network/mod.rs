//! The node's libp2p transport: an event loop task owns the swarm; a
//! cloneable [`NetworkClient`] talks to it through a bounded command channel with one-shot
//! replies (the pattern of rust-libp2p's file-sharing example).
//!
//! **Inbound requests come out as events.** Each voucher, reconcile, retrieval or route
//! request a peer sends is handed out as an [`InboundRequest`] on the bounded channel of [`Inbound`],
//! carrying an [`InboundId`]; the answer goes back in through [`Responder`], and the loop
//! sends it on the request's stream. What a request means — adding a voucher, answering a
//! reconciliation, serving a chunk, routing a payment — is the business of
//! [`crate::inbound`], never of this module.
//!
//! **This module owns the transport's limits.** Everything is bounded: commands queued
//! ([`COMMAND_QUEUE`]), outbound requests in flight ([`MAX_OUTBOUND_IN_FLIGHT`]), inbound
//! voucher requests handed out per peer ([`NetworkConfig::max_inbound_per_peer`]) and in
//! total ([`MAX_INBOUND_IN_FLIGHT`]), inbound reconcile requests per peer
//! ([`NetworkConfig::max_reconcile_per_peer`]) and in total ([`MAX_RECONCILE_IN_FLIGHT`]),
//! inbound retrieval requests waiting for their answer ([`MAX_RETRIEVAL_WAITING`]), inbound
//! route requests per peer ([`NetworkConfig::max_route_per_peer`]) and in total
//! ([`MAX_ROUTE_IN_FLIGHT`]); a request over a cap is answered `RateLimited` (`Busy` on the
//! route protocol) by the loop itself and never handed out. Answers
//! wait in [`RESPONSE_QUEUE`]; the events fit [`INBOUND_QUEUE`], which holds every request the
//! caps admit. A retrieval answer may come with a value the loop holds until libp2p reports
//! the answer sent or failed (the provider's count of work in flight).
//!
//! Every connection denied by a limit and every request the transport refuses (over an
//! in-flight cap, or unreadable) is counted and logged through
//! [`crate::metrics::Metrics::refused`], with a [`crate::refusals::Refusal`] reason. Refusals
//! decided by the node's handling (a voucher its manager refuses, say) are counted there.
//!
//! This module never uses the payment-channel manager, the retrieval provider or any other
//! domain part: they use it.

mod event_loop;

use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use paych_protocol::{
    build_swarm, Config, ReconcileRequest, ReconcileResponse, RetrievalRequest, RetrievalResponse,
    RouteRequest, RouteResponse, SwarmError, VoucherRequest, VoucherResponse,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use event_loop::EventLoop;
use outbound::Outbound;

/// Commands waiting for the event loop, at most.
pub const COMMAND_QUEUE: usize = 64;
/// Outbound requests awaiting their response, at most.
pub const MAX_OUTBOUND_IN_FLIGHT: usize = 256;
/// Inbound voucher requests being handled, at most, over all peers.
pub const MAX_INBOUND_IN_FLIGHT: usize = 256;
/// Addresses of the peer one outbound request may add, at most.
pub const MAX_ADDRS_PER_REQUEST: usize = 8;
/// Connections being dialled on behalf of `connect`, at most.
pub const MAX_PENDING_CONNECTS: usize = 64;
/// Inbound reconcile requests being handled, at most, over all peers.
pub const MAX_RECONCILE_IN_FLIGHT: usize = 32;
/// Inbound retrieval requests handed out and not answered yet, at most, over all peers.
pub const MAX_RETRIEVAL_WAITING: usize = 256;
/// Inbound route requests being handled, at most, over all peers. An offer's answer waits
/// for the downstream hop, so these may each be in flight for up to the route request
/// timeout.
pub const MAX_ROUTE_IN_FLIGHT: usize = 256;
/// Inbound requests handed out and not taken yet, at most: room for every request the
/// in-flight caps admit, so that handing one out never waits.
pub const INBOUND_QUEUE: usize =
    MAX_INBOUND_IN_FLIGHT + MAX_RECONCILE_IN_FLIGHT + MAX_RETRIEVAL_WAITING + MAX_ROUTE_IN_FLIGHT;
/// Answers to inbound requests waiting for the loop to send them, at most.
pub const RESPONSE_QUEUE: usize = 64;

/// How the node's transport behaves.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The limits and timeouts of the swarm.
    pub protocol: Config,
    /// Inbound voucher requests one peer may have in flight; more are answered
    /// `RateLimited`.
    pub max_inbound_per_peer: usize,
    /// Inbound reconcile requests one peer may have in flight; more are answered
    /// `RateLimited`.
    pub max_reconcile_per_peer: usize,
    /// Inbound route requests one peer may have in flight; more are answered `Busy`. Keep
    /// it at most [`Config::route_max_concurrent_streams`], or streams over that are dropped
    /// unanswered instead.
    pub max_route_per_peer: usize,
    /// Where the loop counts vouchers sent, connections and the refusals it decides.
    pub metrics: Arc<Metrics>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            protocol: Config::default(),
            max_inbound_per_peer: 8,
            max_reconcile_per_peer: 1,
            max_route_per_peer: 16,
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
    /// An outbound request was not sent: its connection already carries as many streams of
    /// that protocol as it may (`max_concurrent_streams`). Nothing left this node; asking
    /// again later may work.
    #[error("request to {peer} not sent: the connection's streams for it are all in use")]
    StreamsExhausted {
        /// The peer.
        peer: PeerId,
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

/// What a [`NetworkClient`] asks of the loop.
enum Command {
    Listen { addr: Multiaddr, reply: Reply<()> },
    Connect { addr: Multiaddr, reply: Reply<PeerId> },
    Peers { reply: Reply<Vec<(PeerId, Multiaddr)>> },
    ListenAddrs { reply: Reply<Vec<Multiaddr>> },
    Send { peer: PeerId, addrs: Vec<Multiaddr>, request: Outbound },
    Disconnect { peer: PeerId, reply: Reply<()> },
}

/// A request this node sends with [`NetworkClient::ask`] — a [`VoucherRequest`], a
/// [`RetrievalRequest`], a [`ReconcileRequest`] or a [`RouteRequest`] — and the answer it
/// waits for. Implemented
/// here only: what it makes cannot be named outside this module.
pub trait Ask: Sized {
    /// The answer.
    type Response;
    /// The request with where its answer goes, for the loop.
    #[doc(hidden)]
    fn outbound(self, reply: Reply<Self::Response>) -> outbound::Outbound;
}

mod outbound {
    use super::*;

    /// An outbound request with the reply its answer goes to.
    pub enum Outbound {
        Voucher(Box<VoucherRequest>, Reply<VoucherResponse>),
        Retrieval(Box<RetrievalRequest>, Reply<RetrievalResponse>),
        Reconcile(Box<ReconcileRequest>, Reply<ReconcileResponse>),
        Route(Box<RouteRequest>, Reply<RouteResponse>),
    }
}

impl Ask for VoucherRequest {
    type Response = VoucherResponse;
    fn outbound(self, reply: Reply<VoucherResponse>) -> Outbound {
        Outbound::Voucher(Box::new(self), reply)
    }
}

impl Ask for RetrievalRequest {
    type Response = RetrievalResponse;
    fn outbound(self, reply: Reply<RetrievalResponse>) -> Outbound {
        Outbound::Retrieval(Box::new(self), reply)
    }
}

impl Ask for ReconcileRequest {
    type Response = ReconcileResponse;
    fn outbound(self, reply: Reply<ReconcileResponse>) -> Outbound {
        Outbound::Reconcile(Box::new(self), reply)
    }
}

impl Ask for RouteRequest {
    type Response = RouteResponse;
    fn outbound(self, reply: Reply<RouteResponse>) -> Outbound {
        Outbound::Route(Box::new(self), reply)
    }
}

/// The loop's name for an inbound request handed out, to be named again by its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InboundId(u64);

/// An inbound request a peer sent, handed out for the node to answer through
/// [`Responder`].
#[derive(Debug)]
pub enum InboundRequest {
    /// A voucher (`/paych/voucher/1.0.0`).
    Voucher {
        /// Names the answer.
        id: InboundId,
        /// The peer the authenticated connection comes from.
        peer: PeerId,
        /// The request.
        request: Box<VoucherRequest>,
    },
    /// A reconcile request (`/paych/reconcile/2.0.0`).
    Reconcile {
        /// Names the answer.
        id: InboundId,
        /// The peer the authenticated connection comes from.
        peer: PeerId,
        /// The request.
        request: Box<ReconcileRequest>,
    },
    /// A manifest or chunk request (`/paych/retrieval/2.0.0`).
    Retrieval {
        /// Names the answer.
        id: InboundId,
        /// The peer the authenticated connection comes from.
        peer: PeerId,
        /// The request.
        request: Box<RetrievalRequest>,
    },
    /// A route request (`/paych/route/1.0.0`).
    Route {
        /// Names the answer.
        id: InboundId,
        /// The peer the authenticated connection comes from.
        peer: PeerId,
        /// The request.
        request: Box<RouteRequest>,
    },
}

/// A value the loop holds while an answer is being sent, dropped once libp2p reports it
/// sent or failed.
pub type Held = Box<dyn std::any::Any + Send>;

/// An answer to an inbound request, for the loop to send.
enum Response {
    Voucher(InboundId, VoucherResponse),
    Reconcile(InboundId, Box<ReconcileResponse>),
    Retrieval(InboundId, Box<RetrievalResponse>, Option<Held>),
    Route(InboundId, Box<RouteResponse>),
}

/// Takes answers to inbound requests back to the loop; cheap to clone.
#[derive(Clone)]
pub struct Responder {
    responses: mpsc::Sender<Response>,
}

impl Responder {
    async fn send(&self, response: Response) {
        if self.responses.send(response).await.is_err() {
            // The loop is gone only when the node stops; the request is then dropped.
            tracing::debug!("answer dropped: the network event loop has stopped");
        }
    }

    /// Answers the voucher request `id`.
    pub async fn voucher(&self, id: InboundId, response: VoucherResponse) {
        self.send(Response::Voucher(id, response)).await
    }

    /// Answers the reconcile request `id`.
    pub async fn reconcile(&self, id: InboundId, response: ReconcileResponse) {
        self.send(Response::Reconcile(id, Box::new(response))).await
    }

    /// Answers the retrieval request `id`; `held` is kept until the answer is sent or fails.
    pub async fn retrieval(&self, id: InboundId, response: RetrievalResponse, held: Option<Held>) {
        self.send(Response::Retrieval(id, Box::new(response), held)).await
    }

    /// Answers the route request `id`.
    pub async fn route(&self, id: InboundId, response: RouteResponse) {
        self.send(Response::Route(id, Box::new(response))).await
    }
}

/// The inbound side of a running loop: the requests peers send, and where their answers go.
pub struct Inbound {
    /// Inbound requests, at most [`INBOUND_QUEUE`] waiting.
    pub requests: mpsc::Receiver<InboundRequest>,
    /// Where the answers go.
    pub responder: Responder,
}

/// A handle on the event loop; cheap to clone. The loop stops when every client is dropped
/// or [`NetworkClient::shutdown`] is called.
#[derive(Clone)]
pub struct NetworkClient {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    stop: mpsc::Sender<()>,
    /// The protocol config's `announce` addresses.
    announce: Arc<[Multiaddr]>,
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

    /// The addresses this node hands to peers (in its signed peer records): the configured
    /// announce addresses if any, else the listen addresses.
    pub async fn announce_addrs(&self) -> Result<Vec<Multiaddr>, NetworkError> {
        match self.announce.is_empty() {
            true => self.listen_addrs().await,
            false => Ok(self.announce.to_vec()),
        }
    }

    /// Sends `request` — a voucher, retrieval, reconcile or route request — to `peer` (reachable at
    /// `addrs`, dialled if not connected yet; at most [`MAX_ADDRS_PER_REQUEST`] of them are
    /// kept) and waits for its answer.
    pub async fn ask<R: Ask>(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: R,
    ) -> Result<R::Response, NetworkError> {
        self.call(|reply| Command::Send { peer, addrs, request: request.outbound(reply) }).await
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

/// Builds the swarm for `keypair` and spawns its event loop; returns a client, the inbound
/// requests with their [`Responder`], and the loop's task.
pub fn spawn(
    keypair: Keypair,
    config: NetworkConfig,
) -> Result<(NetworkClient, Inbound, JoinHandle<()>), NetworkError> {
    let swarm = build_swarm(keypair, &config.protocol)?;
    let local_peer_id = *swarm.local_peer_id();
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let (stop_tx, stop) = mpsc::channel(1);
    let announce = config.protocol.announce.clone().into();
    let (event_loop, inbound) = EventLoop::new(swarm, config, commands, stop);
    let handle = tokio::spawn(event_loop.run());
    let client = NetworkClient { commands: commands_tx, local_peer_id, stop: stop_tx, announce };
    Ok((client, inbound, handle))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn the_loop_stops_once_every_client_is_dropped_though_answers_may_still_come() {
        let (client, inbound, task) =
            spawn(Keypair::generate_ed25519(), NetworkConfig::default()).unwrap();
        client.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap()).await.unwrap();
        assert!(!wait_for_listen_addrs(&client).await.unwrap().is_empty());
        let responder = inbound.responder.clone();
        drop(client);
        tokio::time::timeout(LISTEN_WAIT, task).await.expect("the loop still runs").unwrap();
        // An answer after the loop stopped is dropped, not an error.
        responder.voucher(InboundId(0), VoucherResponse::covered(Default::default())).await;
        drop(inbound);
    }
}
