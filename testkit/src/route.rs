//! Route requests in tests: a [`RouteHandler`] that answers with a scripted function and
//! reports every request it is handed (and may hold them at a gate until the test opens it),
//! a node's networking started with it, route requests sent, and sample requests.

use std::sync::Arc;

use libp2p::{Multiaddr, PeerId};
use paych_core::manager::PaymentChannelManager;
use paych_core::types::{Address, SignedVoucher, TokenAmount};
use paych_node::host::HostConfig;
use paych_node::inbound::route::{RouteHandler, RouteHandlerSlot};
use paych_node::network::NetworkClient;
use paych_protocol::{RouteRequest, RouteResponse};
use tokio::sync::{mpsc, Semaphore};

use crate::deadline::within;
use crate::node::{host, Hosted};

/// How many requests a [`ScriptedRoute`] reports before it waits for the test to read them.
const SEEN_QUEUE: usize = 64;

/// How a [`ScriptedRoute`] answers a request.
pub type RouteAnswer = Box<dyn Fn(PeerId, &RouteRequest) -> RouteResponse + Send + Sync>;

/// A route handler that reports each request it is handed (the peer and the request) on a
/// channel, waits at its gate, if it has one, until the test lets the request through, then
/// answers with its function.
pub struct ScriptedRoute {
    answer: RouteAnswer,
    seen: mpsc::Sender<(PeerId, RouteRequest)>,
    gate: Option<Arc<Semaphore>>,
}

/// What a test holds of a [`ScriptedRoute`]: the requests it was handed, and its gate.
pub struct RouteProbe {
    /// Each request the handler was handed, with the peer it came from, in order.
    pub seen: mpsc::Receiver<(PeerId, RouteRequest)>,
    /// The gate: each permit added lets one held request through (`None`: no gate).
    pub gate: Option<Arc<Semaphore>>,
}

impl ScriptedRoute {
    /// A handler answering with `answer` at once, and the probe that sees its requests.
    pub fn new(answer: RouteAnswer) -> (Arc<Self>, RouteProbe) {
        Self::build(answer, None)
    }

    /// A handler that holds every request until the test adds a permit to the probe's gate,
    /// then answers with `answer`.
    pub fn gated(answer: RouteAnswer) -> (Arc<Self>, RouteProbe) {
        Self::build(answer, Some(Arc::new(Semaphore::new(0))))
    }

    fn build(answer: RouteAnswer, gate: Option<Arc<Semaphore>>) -> (Arc<Self>, RouteProbe) {
        let (seen, rx) = mpsc::channel(SEEN_QUEUE);
        let handler = Arc::new(ScriptedRoute { answer, seen, gate: gate.clone() });
        (handler, RouteProbe { seen: rx, gate })
    }
}

#[async_trait::async_trait]
impl RouteHandler for ScriptedRoute {
    async fn handle(&self, peer: PeerId, request: RouteRequest) -> RouteResponse {
        let response = (self.answer)(peer, &request);
        let _ = self.seen.send((peer, request)).await;
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        response
    }
}

impl RouteProbe {
    /// The next request the handler was handed, within the deadline.
    pub async fn next(&mut self) -> (PeerId, RouteRequest) {
        within("a route request reaching the handler", self.seen.recv()).await.unwrap()
    }

    /// Lets `n` held requests through the gate.
    pub fn release(&self, n: usize) {
        self.gate.as_ref().expect("a gated handler").add_permits(n);
    }
}

/// The networking of `manager` started with `config` and `handler` answering its route
/// requests, listening on loopback.
pub async fn route_host(
    manager: &PaymentChannelManager,
    mut config: HostConfig,
    handler: Arc<dyn RouteHandler>,
) -> Hosted {
    config.inbound.route = RouteHandlerSlot::with(handler);
    host(manager, config).await
}

/// Sends `request` from `net` to `peer` (at `addrs`) and waits (within the deadline) for
/// the answer.
pub async fn send_route(
    net: &NetworkClient,
    peer: PeerId,
    addrs: &[Multiaddr],
    request: RouteRequest,
) -> RouteResponse {
    within("the route exchange", net.ask(peer, addrs.to_vec(), request)).await.unwrap()
}

/// A conditional voucher as an offer carries one, unsigned: `amount` on `lane` of
/// `channel` at `nonce`, locked to `payment_hash` until `lock`.
pub fn conditional_voucher(
    channel: Address,
    lane: u64,
    nonce: u64,
    amount: u64,
    payment_hash: [u8; 32],
    lock: i64,
) -> SignedVoucher {
    let mut voucher = SignedVoucher::new(channel, lane, nonce, TokenAmount::from_atto(amount));
    voucher.secret_hash = payment_hash.to_vec();
    voucher.time_lock_max = lock;
    voucher
}

/// An offer of `voucher` with `invoice` bytes.
pub fn offer(invoice: Vec<u8>, voucher: SignedVoucher) -> RouteRequest {
    RouteRequest::Offer { invoice, voucher }
}
