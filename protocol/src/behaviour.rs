//! The composed libp2p behaviour of a paych node, and the swarm it runs in.
//!
//! [`Behaviour`] puts connection limits first, so that a connection over the limits is
//! denied before any other protocol sees it — the cap per remote address
//! ([`crate::ip_limits`]) before the caps per peer and in total — then identify, ping, and
//! the paych request-response protocols (voucher, reconcile, retrieval, route). [`build_swarm`]
//! wraps it in a tokio swarm over TCP with Noise and Yamux. Every size, count and queue is
//! bounded by [`Config`]: connections (pending and established, per remote address, per
//! peer, inbound and in total), idle connections (closed after a timeout), concurrent
//! streams per connection and protocol, message sizes (in [`crate::codec`]), read and
//! request timeouts. [`LimitKind::of`] says which limit denied a connection.
//!
//! Outbound requests wait in `request_response`'s own queue until a connection is up; that
//! queue has no bound of its own, so the owner of the swarm bounds the requests it has in
//! flight (the node's network loop takes commands from a bounded channel).
//!
//! This module only moves messages: it never validates vouchers, touches the store or
//! the chain. The node's event loop owns the swarm, answers inbound requests and
//! correlates responses with their requests by [`request_response::OutboundRequestId`].

use std::convert::Infallible;
use std::net::IpAddr;
use std::time::Duration;

use libp2p::core::upgrade;
use libp2p::core::Transport as _;

use libp2p::identity::Keypair;
use libp2p::swarm::{ConnectionDenied, NetworkBehaviour};
use libp2p::{
    connection_limits, identify, noise, ping, request_response, tcp, yamux, Multiaddr,
    StreamProtocol, Swarm, SwarmBuilder,
};

use crate::codec::{
    Codec, ReconcileCodec, RetrievalCodec, RouteCodec, VoucherCodec, WireMessage,
    DEFAULT_READ_TIMEOUT,
};
use crate::dial_from::DialFrom;
use crate::exchange::Exchange;
use crate::ip_limits;
use crate::messages::{ReconcileRequest, ReconcileResponse, VoucherRequest, VoucherResponse};
use crate::retrieval::{RetrievalRequest, RetrievalResponse};
use crate::route::{RouteRequest, RouteResponse};
use crate::{RECONCILE_PROTOCOL, RETRIEVAL_PROTOCOL, ROUTE_PROTOCOL, VOUCHER_PROTOCOL};

/// The protocol version a paych node announces through identify.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/paych/1.0.0";
/// The agent version a paych node announces through identify.
pub const AGENT_VERSION: &str = concat!("paych/", env!("CARGO_PKG_VERSION"));

/// The default of [`Config::max_established_incoming`].
pub const DEFAULT_MAX_ESTABLISHED_INCOMING: u32 = 224;
/// The default of [`Config::max_established`].
pub const DEFAULT_MAX_ESTABLISHED: u32 = 256;

/// Limits and timeouts of a node's networking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Inbound connections, pending and established, from one remote address (an IPv4
    /// address or an IPv6 /64) at once, of which at most
    /// [`ip_limits::MAX_PENDING_INBOUND_PER_IP`] still being upgraded. Identities cost
    /// nothing, so this, not the per-peer cap, is what keeps one host from taking every
    /// slot; keep it well below `max_established_incoming`.
    pub max_inbound_per_ip: u32,
    /// Connections established with one peer at once (in and out).
    pub max_established_per_peer: u32,
    /// Inbound connections established at once: below `max_established`, so that inbound
    /// connections cannot take the slots this node needs to dial its own payees.
    pub max_established_incoming: u32,
    /// Connections established at once, in total.
    pub max_established: u32,
    /// Inbound connections still being upgraded (Noise, Yamux) at once.
    pub max_pending_incoming: u32,
    /// Outbound connections still being dialled or upgraded at once.
    pub max_pending_outgoing: u32,
    /// A connection with no open stream is closed after this long: a peer that connects and
    /// does nothing holds its slot this long at most.
    pub idle_connection_timeout: Duration,
    /// How long reading one inbound request may take (capped by the protocol's request
    /// timeout). Reading a response is bounded by the request timeout instead, since it
    /// includes the responder's work.
    pub read_timeout: Duration,
    /// How long a voucher exchange may take, from sending the request to reading the
    /// response (the payee validates and stores durably before answering).
    pub voucher_request_timeout: Duration,
    /// How long a reconciliation may take (the payer may consult the chain).
    pub reconcile_request_timeout: Duration,
    /// Concurrent voucher streams per connection, inbound and outbound together.
    pub voucher_max_concurrent_streams: usize,
    /// Concurrent reconcile streams per connection, inbound and outbound together.
    pub reconcile_max_concurrent_streams: usize,
    /// How long one retrieval exchange (a manifest or a chunk) may take.
    pub retrieval_request_timeout: Duration,
    /// Concurrent retrieval streams per connection, inbound and outbound together.
    pub retrieval_max_concurrent_streams: usize,
    /// How long one route exchange may take, from sending the request to reading the
    /// response. An offer's answer waits for the downstream hop (the hub forwards the offer
    /// to the payee and answers once the payee has), so a hub should give its own downstream
    /// request less than this.
    pub route_request_timeout: Duration,
    /// Concurrent route streams per connection, inbound and outbound together.
    pub route_max_concurrent_streams: usize,
    /// Time between two pings on a connection.
    pub ping_interval: Duration,
    /// A ping unanswered for this long fails.
    pub ping_timeout: Duration,
    /// How often identify re-sends the local information to a connected peer.
    pub identify_interval: Duration,
    /// How many peers' identify information is cached.
    pub identify_cache_size: usize,
    /// The addresses handed to peers instead of the listen addresses (e.g. a relay's, or a
    /// public address in front of a NAT): when any is given, identify shares only these —
    /// the swarm's external addresses — and never the listen addresses.
    pub announce: Vec<Multiaddr>,
    /// The local IP address outbound TCP connections leave from ([`DialFrom`]); `None`:
    /// the system's choice.
    pub dial_from: Option<IpAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_inbound_per_ip: ip_limits::DEFAULT_MAX_INBOUND_PER_IP,
            max_established_per_peer: 2,
            max_established_incoming: DEFAULT_MAX_ESTABLISHED_INCOMING,
            max_established: DEFAULT_MAX_ESTABLISHED,
            max_pending_incoming: 32,
            max_pending_outgoing: 32,
            idle_connection_timeout: Duration::from_secs(60),
            read_timeout: DEFAULT_READ_TIMEOUT,
            voucher_request_timeout: Duration::from_secs(15),
            reconcile_request_timeout: Duration::from_secs(60),
            voucher_max_concurrent_streams: 32,
            reconcile_max_concurrent_streams: 4,
            retrieval_request_timeout: Duration::from_secs(30),
            retrieval_max_concurrent_streams: 64,
            route_request_timeout: Duration::from_secs(60),
            route_max_concurrent_streams: 32,
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(20),
            identify_interval: Duration::from_secs(5 * 60),
            identify_cache_size: 100,
            announce: Vec::new(),
            dial_from: None,
        }
    }
}

/// The events of a paych node's [`Behaviour`].
#[derive(Debug)]
pub enum Event {
    /// Identify exchanged information with a peer.
    Identify(Box<identify::Event>),
    /// A ping succeeded or failed.
    Ping(ping::Event),
    /// A voucher exchange: an inbound request to answer, a response, or a failure.
    Voucher(VoucherEvent),
    /// A reconciliation: an inbound request to answer, a response, or a failure.
    Reconcile(ReconcileEvent),
    /// A retrieval exchange: an inbound request to answer, a response, or a failure.
    Retrieval(RetrievalEvent),
    /// A route exchange: an inbound request to answer, a response, or a failure.
    Route(RouteEvent),
}

/// The events of `/paych/voucher/1.0.0`.
pub type VoucherEvent = request_response::Event<VoucherRequest, VoucherResponse>;
/// The events of `/paych/reconcile/2.0.0`.
pub type ReconcileEvent = request_response::Event<ReconcileRequest, ReconcileResponse>;
/// The events of `/paych/retrieval/2.0.0`.
pub type RetrievalEvent = request_response::Event<RetrievalRequest, RetrievalResponse>;
/// The events of `/paych/route/1.0.0`.
pub type RouteEvent = request_response::Event<RouteRequest, RouteResponse>;

impl From<Infallible> for Event {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

impl From<identify::Event> for Event {
    fn from(event: identify::Event) -> Self {
        Event::Identify(Box::new(event))
    }
}

impl From<ping::Event> for Event {
    fn from(event: ping::Event) -> Self {
        Event::Ping(event)
    }
}

impl From<VoucherEvent> for Event {
    fn from(event: VoucherEvent) -> Self {
        Event::Voucher(event)
    }
}

impl From<ReconcileEvent> for Event {
    fn from(event: ReconcileEvent) -> Self {
        Event::Reconcile(event)
    }
}

impl From<RetrievalEvent> for Event {
    fn from(event: RetrievalEvent) -> Self {
        Event::Retrieval(event)
    }
}

impl From<RouteEvent> for Event {
    fn from(event: RouteEvent) -> Self {
        Event::Route(event)
    }
}

/// The behaviour of a paych node. Field order is the order in which the swarm consults
/// the behaviours, so connection limits come first.
#[derive(NetworkBehaviour)]
#[behaviour(to_swarm = "Event")]
pub struct Behaviour {
    /// Denies inbound connections over [`Config::max_inbound_per_ip`].
    pub ip_limits: ip_limits::Behaviour,
    /// Denies connections over [`Config`]'s other limits.
    pub connection_limits: connection_limits::Behaviour,
    /// Exchanges protocol and agent versions, listen addresses and observed addresses.
    pub identify: identify::Behaviour,
    /// Measures round trips and detects dead connections.
    pub ping: ping::Behaviour,
    /// `/paych/voucher/1.0.0`.
    pub voucher: Exchange<VoucherCodec>,
    /// `/paych/reconcile/2.0.0`.
    pub reconcile: Exchange<ReconcileCodec>,
    /// `/paych/retrieval/2.0.0`.
    pub retrieval: Exchange<RetrievalCodec>,
    /// `/paych/route/1.0.0`.
    pub route: Exchange<RouteCodec>,
}

impl Behaviour {
    /// The behaviour of the node with libp2p identity `keypair`.
    pub fn new(keypair: &Keypair, config: &Config) -> Self {
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established_per_peer(Some(config.max_established_per_peer))
            .with_max_established_incoming(Some(config.max_established_incoming))
            .with_max_established(Some(config.max_established))
            .with_max_pending_incoming(Some(config.max_pending_incoming))
            .with_max_pending_outgoing(Some(config.max_pending_outgoing));
        let identify =
            identify::Config::new(IDENTIFY_PROTOCOL_VERSION.to_owned(), keypair.public())
                .with_agent_version(AGENT_VERSION.to_owned())
                .with_interval(config.identify_interval)
                .with_cache_size(config.identify_cache_size)
                .with_hide_listen_addrs(!config.announce.is_empty());
        let ping = ping::Config::new()
            .with_interval(config.ping_interval)
            .with_timeout(config.ping_timeout);
        Behaviour {
            ip_limits: ip_limits::Behaviour::new(config.max_inbound_per_ip),
            connection_limits: connection_limits::Behaviour::new(limits),
            identify: identify::Behaviour::new(identify),
            ping: ping::Behaviour::new(ping),
            voucher: exchange(
                VOUCHER_PROTOCOL,
                config.read_timeout,
                config.voucher_request_timeout,
                config.voucher_max_concurrent_streams,
            ),
            reconcile: exchange(
                RECONCILE_PROTOCOL,
                config.read_timeout,
                config.reconcile_request_timeout,
                config.reconcile_max_concurrent_streams,
            ),
            retrieval: exchange(
                RETRIEVAL_PROTOCOL,
                config.read_timeout,
                config.retrieval_request_timeout,
                config.retrieval_max_concurrent_streams,
            ),
            route: exchange(
                ROUTE_PROTOCOL,
                config.read_timeout,
                config.route_request_timeout,
                config.route_max_concurrent_streams,
            ),
        }
    }
}

/// The connection limit that denied a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// [`Config::max_inbound_per_ip`].
    InboundPerIp,
    /// [`Config::max_established_per_peer`].
    EstablishedPerPeer,
    /// [`Config::max_established_incoming`].
    EstablishedIncoming,
    /// Outbound connections established (not capped by [`Config`]).
    EstablishedOutgoing,
    /// [`Config::max_established`].
    EstablishedTotal,
    /// [`Config::max_pending_incoming`].
    PendingIncoming,
    /// [`Config::max_pending_outgoing`].
    PendingOutgoing,
}

impl LimitKind {
    /// Which limit `denied` stands for, if a connection limit denied the connection.
    /// `connection_limits` does not expose its limit's kind but names it in its message,
    /// which is read here (a test pins each message).
    pub fn of(denied: &ConnectionDenied) -> Option<LimitKind> {
        if denied.downcast_ref::<ip_limits::Exceeded>().is_some() {
            return Some(LimitKind::InboundPerIp);
        }
        let exceeded = denied.downcast_ref::<connection_limits::Exceeded>()?;
        let text = exceeded.to_string();
        let kind = [
            ("pending incoming", LimitKind::PendingIncoming),
            ("pending outgoing", LimitKind::PendingOutgoing),
            ("established incoming", LimitKind::EstablishedIncoming),
            ("established outgoing", LimitKind::EstablishedOutgoing),
            ("per peer", LimitKind::EstablishedPerPeer),
        ]
        .into_iter()
        .find_map(|(words, kind)| text.contains(words).then_some(kind));
        Some(kind.unwrap_or(LimitKind::EstablishedTotal))
    }
}

/// One request-response protocol, served and used (`ProtocolSupport::Full`). The codec
/// reads a request within the read timeout (never more than the request timeout, so that a
/// slow request is refused by the codec and reported with its cause rather than cut by the
/// substream timeout) and a response within the request timeout, which includes the
/// responder's work.
fn exchange<Req: WireMessage, Resp: WireMessage>(
    protocol: &'static str,
    read_timeout: Duration,
    request_timeout: Duration,
    max_concurrent_streams: usize,
) -> Exchange<Codec<Req, Resp>> {
    Exchange::new(request_response::Behaviour::with_codec(
        Codec::new(read_timeout.min(request_timeout)).with_response_timeout(request_timeout),
        [(StreamProtocol::new(protocol), request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(request_timeout)
            .with_max_concurrent_streams(max_concurrent_streams),
    ))
}

/// Why a swarm could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    /// The Noise handshake configuration could not be made from the identity.
    #[error("noise configuration: {0}")]
    Noise(#[from] noise::Error),
}

/// A tokio swarm over TCP ([`DialFrom`]: dials leave from [`Config::dial_from`]), secured
/// by Noise and multiplexed by Yamux, running [`Behaviour`] for `keypair` with `config`,
/// with [`Config::announce`] as its external addresses. It listens nowhere yet: call
/// [`Swarm::listen_on`].
pub fn build_swarm(keypair: Keypair, config: &Config) -> Result<Swarm<Behaviour>, SwarmError> {
    let noise = noise::Config::new(&keypair)?;
    let tcp = DialFrom::new(tcp::Config::default().nodelay(true), config.dial_from)
        .upgrade(upgrade::Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux::Config::default());
    let Ok(transport) =
        SwarmBuilder::with_existing_identity(keypair).with_tokio().with_other_transport(|_| tcp);
    let Ok(with_behaviour) = transport.with_behaviour(|key| Behaviour::new(key, config));
    let mut swarm = with_behaviour
        .with_swarm_config(|c| {
            // An outbound stream names its protocol and sends its request at once, without
            // waiting a round trip for the listener to confirm the protocol (multistream-select
            // "V1Lazy"); a listener that lacks the protocol fails the request all the same.
            c.with_idle_connection_timeout(config.idle_connection_timeout)
                .with_substream_upgrade_protocol_override(upgrade::Version::V1Lazy)
        })
        .build();
    for addr in &config.announce {
        swarm.add_external_address(addr.clone());
    }
    Ok(swarm)
}
