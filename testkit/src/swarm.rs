//! Protocol swarms on loopback: a fresh swarm, listening on an ephemeral port, a responder
//! task that answers with scripted functions and reports what it sees, and requests driven
//! until their answer arrives.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, InboundFailure, OutboundFailure, OutboundRequestId};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ListenError, NetworkBehaviour, SwarmEvent};
use libp2p::{connection_limits, Multiaddr, PeerId, Swarm};
use paych_core::crypto;
use paych_core::types::{Address, TokenAmount};
use paych_protocol::{
    build_swarm, ip_limits, Behaviour, Config, Event, ReconcileRequest, ReconcileResponse,
    VoucherRequest, VoucherResponse,
};
use tokio::sync::mpsc;

/// Every swarm test gives up after this long.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Awaits `test`, failing it if it has not finished within [`TEST_TIMEOUT`].
pub async fn in_time<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, test).await.expect("test timed out")
}

/// How many events a responder reports before it waits for the test to read them.
const SEEN_QUEUE: usize = 64;

/// A swarm with a fresh identity.
pub fn new_swarm(config: &Config) -> Swarm<Behaviour> {
    build_swarm(Keypair::generate_ed25519(), config).unwrap()
}

/// Starts listening on an ephemeral loopback port and returns the address.
pub async fn listen<B: NetworkBehaviour>(swarm: &mut Swarm<B>) -> Multiaddr {
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return address;
        }
    }
}

/// Dials `peer` at `addr` from `swarm`, even when a connection to it is open already.
pub fn dial_anew<B: NetworkBehaviour>(swarm: &mut Swarm<B>, peer: PeerId, addr: &Multiaddr) {
    let opts = DialOpts::peer_id(peer)
        .addresses(vec![addr.clone()])
        .condition(PeerCondition::Always)
        .build();
    swarm.dial(opts).unwrap();
}

/// Runs `swarm` in a task, ignoring its events (abort the task to stop it).
pub fn drive<B>(mut swarm: Swarm<B>) -> tokio::task::JoinHandle<()>
where
    B: NetworkBehaviour + Send + 'static,
    B::ToSwarm: Send,
{
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    })
}

/// What a responder swarm saw.
#[derive(Debug)]
pub enum Seen {
    /// A voucher request was answered.
    Voucher(PeerId, Box<VoucherRequest>),
    /// A reconcile request was answered.
    Reconcile(PeerId, Box<ReconcileRequest>),
    /// A voucher request failed on the way in.
    VoucherInboundFailure(PeerId, InboundFailure),
    /// A reconcile request failed on the way in.
    ReconcileInboundFailure(PeerId, InboundFailure),
    /// An inbound connection failed; the connection limit it exceeded, if that was why.
    IncomingDenied(Option<u32>),
    /// An inbound connection was denied for its address; the cap.
    IncomingDeniedPerIp(u32),
    /// A connection was established; the number of connections with that peer.
    Established(PeerId, u32),
}

/// How a responder answers a voucher request.
pub type VoucherAnswer = Box<dyn Fn(PeerId, &VoucherRequest) -> VoucherResponse + Send>;
/// How a responder answers a reconcile request.
pub type ReconcileAnswer = Box<dyn Fn(PeerId, &ReconcileRequest) -> ReconcileResponse + Send>;

/// Runs `swarm` in a task: answers every request with the functions given and reports what
/// it sees on the returned channel.
pub fn spawn_responder(
    mut swarm: Swarm<Behaviour>,
    answer_voucher: VoucherAnswer,
    answer_reconcile: ReconcileAnswer,
) -> mpsc::Receiver<Seen> {
    let (tx, rx) = mpsc::channel(SEEN_QUEUE);
    tokio::spawn(async move {
        loop {
            let seen = match swarm.select_next_some().await {
                SwarmEvent::Behaviour(Event::Voucher(event)) => {
                    let voucher = &mut swarm.behaviour_mut().voucher;
                    let report: Report<_> = (Seen::Voucher, Seen::VoucherInboundFailure);
                    on_exchange(voucher, event, &*answer_voucher, report)
                }
                SwarmEvent::Behaviour(Event::Reconcile(event)) => {
                    let reconcile = &mut swarm.behaviour_mut().reconcile;
                    on_exchange(
                        reconcile,
                        event,
                        &*answer_reconcile,
                        (Seen::Reconcile, Seen::ReconcileInboundFailure),
                    )
                }
                SwarmEvent::IncomingConnectionError {
                    error: ListenError::Denied { cause },
                    ..
                } if cause.downcast_ref::<ip_limits::Exceeded>().is_some() => {
                    Some(Seen::IncomingDeniedPerIp(
                        cause.downcast_ref::<ip_limits::Exceeded>().map_or(0, |e| e.limit),
                    ))
                }
                SwarmEvent::IncomingConnectionError { error, .. } => {
                    Some(Seen::IncomingDenied(match error {
                        ListenError::Denied { cause } => cause
                            .downcast::<connection_limits::Exceeded>()
                            .ok()
                            .map(|exceeded| exceeded.limit()),
                        _ => None,
                    }))
                }
                SwarmEvent::ConnectionEstablished { peer_id, num_established, .. } => {
                    Some(Seen::Established(peer_id, num_established.get()))
                }
                _ => None,
            };
            let Some(seen) = seen else { continue };
            if tx.send(seen).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// How a responder reports one exchange's events: a request answered, a request that failed
/// on the way in.
type Report<Req> = (fn(PeerId, Box<Req>) -> Seen, fn(PeerId, InboundFailure) -> Seen);

/// Answers an inbound request of one exchange with `answer` over `exchange`, and reports the
/// request, or its inbound failure, with `report`; nothing for any other event.
fn on_exchange<C>(
    exchange: &mut request_response::Behaviour<C>,
    event: request_response::Event<C::Request, C::Response>,
    answer: &(dyn Fn(PeerId, &C::Request) -> C::Response + Send),
    (request_seen, failure_seen): Report<C::Request>,
) -> Option<Seen>
where
    C: request_response::Codec + Clone + Send + 'static,
{
    match event {
        request_response::Event::Message {
            peer,
            message: request_response::Message::Request { request, channel, .. },
            ..
        } => {
            let _ = exchange.send_response(channel, answer(peer, &request));
            Some(request_seen(peer, Box::new(request)))
        }
        request_response::Event::InboundFailure { peer, error, .. } => {
            Some(failure_seen(peer, error))
        }
        _ => None,
    }
}

/// A responder swarm (see [`spawn_responder`]) with `config`, listening on loopback: its peer
/// id, its address and what it sees.
pub async fn responder(
    config: &Config,
    answer_voucher: VoucherAnswer,
    answer_reconcile: ReconcileAnswer,
) -> (PeerId, Multiaddr, mpsc::Receiver<Seen>) {
    let mut swarm = new_swarm(config);
    let addr = listen(&mut swarm).await;
    let id = *swarm.local_peer_id();
    (id, addr, spawn_responder(swarm, answer_voucher, answer_reconcile))
}

/// A payee swarm with `config` on loopback that accepts every voucher signed by `payer` and
/// refuses every reconciliation (see [`responder`]).
pub async fn payee_accepting(
    config: &Config,
    payer: Address,
) -> (PeerId, Multiaddr, mpsc::Receiver<Seen>) {
    responder(config, accept_signed_by(payer), refuse_reconcile()).await
}

/// A payee that accepts every voucher whose signature is by `payer`, crediting its whole
/// amount.
pub fn accept_signed_by(payer: Address) -> VoucherAnswer {
    Box::new(move |_, request: &VoucherRequest| {
        let voucher = &request.voucher;
        let signed = voucher.signature.as_ref().is_some_and(|sig| {
            crypto::verify(sig, &payer, &voucher.signing_bytes().unwrap()).is_ok()
        });
        if signed {
            VoucherResponse::accepted(voucher.amount.clone(), voucher.amount.clone())
        } else {
            VoucherResponse::rejected(
                paych_protocol::VoucherStatus::InvalidSignature,
                TokenAmount::default(),
                "not signed by the channel's payer",
            )
        }
    })
}

/// A payer that refuses every reconciliation.
pub fn refuse_reconcile() -> ReconcileAnswer {
    Box::new(|_, _| {
        ReconcileResponse::refused(paych_core::combine::ReconcileStatus::Internal, "not here")
    })
}

/// Defines `$name`: send a request of the exchange behind the behaviour's `$field` (whose
/// events are `Event::$variant`) and drive the swarm until its answer (or failure) arrives.
macro_rules! request_fn {
    ($(#[$doc:meta])* $name:ident, $field:ident, $variant:ident, $request:ty, $response:ty) => {
        $(#[$doc])*
        pub async fn $name(
            swarm: &mut Swarm<Behaviour>,
            peer: PeerId,
            addr: &Multiaddr,
            request: $request,
        ) -> Result<$response, OutboundFailure> {
            let exchange = &mut swarm.behaviour_mut().$field;
            let id = exchange.send_request_with_addresses(&peer, request, vec![addr.clone()]);
            let pick = |event| match event {
                Event::$variant(event) => Some(event),
                _ => None,
            };
            answer_to(swarm, id, pick).await
        }
    };
}

request_fn!(
    /// Sends a voucher request from `swarm` to `peer` at `addr` and drives the swarm until
    /// its answer (or failure) arrives.
    request_voucher,
    voucher,
    Voucher,
    VoucherRequest,
    VoucherResponse
);

request_fn!(
    /// Sends a reconcile request from `swarm` to `peer` at `addr` and drives the swarm until
    /// its answer (or failure) arrives.
    request_reconcile,
    reconcile,
    Reconcile,
    ReconcileRequest,
    ReconcileResponse
);

/// Drives `swarm` until the response to the request `id` (or its failure) arrives among the
/// events of the protocol `pick` selects.
async fn answer_to<Req, Resp>(
    swarm: &mut Swarm<Behaviour>,
    id: OutboundRequestId,
    pick: fn(Event) -> Option<request_response::Event<Req, Resp>>,
) -> Result<Resp, OutboundFailure> {
    loop {
        let SwarmEvent::Behaviour(event) = swarm.select_next_some().await else { continue };
        match pick(event) {
            Some(request_response::Event::Message {
                message: request_response::Message::Response { request_id, response },
                ..
            }) if request_id == id => return Ok(response),
            Some(request_response::Event::OutboundFailure { request_id, error, .. })
                if request_id == id =>
            {
                return Err(error)
            }
            _ => {}
        }
    }
}
