//! `/paych/route/1.0.0` through the node's real network layer over loopback libp2p: a route
//! request reaches the node's route handler with the peer it came from and its answer
//! returns; a node without a handler answers `NotAHub`; a peer flooding requests is answered
//! `Busy` beyond its in-flight cap while the requests within it are still answered; a
//! handler that panics is answered `Internal` and frees its slot; replacements made for one
//! peer while a request to it is out go together in one `ReplaceMany`, and a batch refused
//! goes again one replacement at a time; a route's replacement queued twice goes in the
//! batch once, and again alone after it.

use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use paych_core::invoice::payment_hash;
use paych_core::types::{Address, SignedVoucher, TokenAmount};
use paych_node::host::HostConfig;
use paych_node::inbound::route::{RouteHandlerSlot, HANDLER_FAILED, NOT_A_HUB};
use paych_node::inbound::InboundConfig;
use paych_node::metrics::Metrics;
use paych_node::network::NetworkConfig;
use paych_node::route::replacer::{Replacer, Sent};
use paych_protocol::{RouteReplacement, RouteRequest, RouteResponse, RouteStatus};
use paych_testkit::deadline::{eventually, within};
use paych_testkit::devnet::{Net, Node};
use paych_testkit::node::{assert_refusals, host, metered_host, target};
use paych_testkit::route::{
    conditional_voucher, offer, route_host, send_route, RouteAnswer, ScriptedRoute,
};

const SECRET: [u8; 32] = [7; 32];

/// A hub that fulfils every offer with [`SECRET`], takes every replacement and hands out
/// a policy.
fn answering_hub() -> RouteAnswer {
    Box::new(|_, request| match request {
        RouteRequest::Offer { .. } => RouteResponse::fulfilled(SECRET.to_vec()),
        RouteRequest::Replace { .. } | RouteRequest::ReplaceMany { .. } => RouteResponse::ok(),
        RouteRequest::Policy => RouteResponse::policy(b"a signed policy".to_vec()),
    })
}

fn channel() -> Address {
    Address::new_id(1001)
}

/// The unconditional voucher replacing the conditional one on lane `lane`, of the route
/// whose secret is `lane` repeated.
fn replacement(payer: &Node, lane: u64) -> RouteRequest {
    replacement_of(payer, lane, lane)
}

/// [`replacement`] of the route whose secret is `route` repeated.
fn replacement_of(payer: &Node, lane: u64, route: u64) -> RouteRequest {
    let voucher = payer.sign(SignedVoucher::new(channel(), lane, 2, TokenAmount::from_atto(1000)));
    let secret = [u8::try_from(route).unwrap_or(u8::MAX); 32];
    RouteRequest::Replace { payment_hash: payment_hash(&secret).to_vec(), voucher }
}

fn count_line(metric: &str, kind: &str, status: &str, count: usize) -> String {
    format!("paych_route_requests_{metric}_total{{kind=\"{kind}\",status=\"{status}\"}} {count}\n")
}

fn assert_counted(metrics: &Metrics, line: &str) {
    let text = metrics.encode();
    assert!(text.contains(line), "{line:?} not in {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_request_reaches_the_handler_and_its_answer_returns() {
    let net = Net::new();
    let [payer, hub] = net.nodes(0).await;
    let (handler, mut probe) = ScriptedRoute::new(answering_hub());
    let hub_metrics = Arc::new(Metrics::new());
    let hub_config = HostConfig::default().with_metrics(hub_metrics.clone());
    let (hub_net, hub_peer, hub_addrs) = route_host(hub.m(), hub_config, handler).await;
    let (payer_metrics, payer_net, payer_peer, _) =
        metered_host(payer.m(), HostConfig::default()).await;

    // An offer: the handler sees the payer's peer and the very request; the secret returns.
    let voucher =
        payer.sign(conditional_voucher(channel(), 0, 1, 1000, payment_hash(&SECRET), 900));
    let request = offer(b"the invoice's CBOR".to_vec(), voucher);
    let response = send_route(&payer_net, hub_peer, &hub_addrs, request.clone()).await;
    assert_eq!(response, RouteResponse::fulfilled(SECRET.to_vec()));
    assert_eq!(probe.next().await, (payer_peer, request));

    // A replacement and a policy request, each answered by the handler.
    let request = replacement(&payer, 0);
    let response = send_route(&payer_net, hub_peer, &hub_addrs, request.clone()).await;
    assert_eq!(response, RouteResponse::ok());
    assert_eq!(probe.next().await, (payer_peer, request));
    let response = send_route(&payer_net, hub_peer, &hub_addrs, RouteRequest::Policy).await;
    assert_eq!(response, RouteResponse::policy(b"a signed policy".to_vec()));
    assert_eq!(probe.next().await, (payer_peer, RouteRequest::Policy));

    // Both sides counted each exchange by kind and status.
    for kind in ["offer", "replace", "policy"] {
        assert_counted(&hub_metrics, &count_line("received", kind, "ok", 1));
        assert_counted(&payer_metrics, &count_line("sent", kind, "ok", 1));
    }

    // The payer routes nothing: the hub asking it is answered NotAHub, counted as a refusal.
    let payer_addrs = payer_net.listen_addrs().await.unwrap();
    let response = send_route(&hub_net, payer_peer, &payer_addrs, RouteRequest::Policy).await;
    assert_eq!(response.status, RouteStatus::NotAHub, "{response:?}");
    assert_counted(&payer_metrics, &count_line("received", "policy", "not_a_hub", 1));
    assert_counted(&hub_metrics, &count_line("sent", "policy", "not_a_hub", 1));
    assert_refusals(&payer_metrics, "route_refused", 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answers_not_a_hub_until_its_route_handler_is_set_and_after_it_is_cleared() {
    let net = Net::new();
    let [payer, hub] = net.nodes(0).await;
    let slot = RouteHandlerSlot::new();
    let inbound = InboundConfig { route: slot.clone(), ..InboundConfig::default() };
    let (_hub_net, hub_peer, hub_addrs) =
        host(hub.m(), HostConfig { inbound, ..HostConfig::default() }).await;
    let (payer_net, _, _) = host(payer.m(), HostConfig::default()).await;
    let ask = || send_route(&payer_net, hub_peer, &hub_addrs, RouteRequest::Policy);

    assert_eq!(ask().await, RouteResponse::refused(RouteStatus::NotAHub, NOT_A_HUB));
    let (handler, _probe) = ScriptedRoute::new(answering_hub());
    slot.set(handler);
    assert_eq!(ask().await, RouteResponse::policy(b"a signed policy".to_vec()));
    slot.clear();
    assert_eq!(ask().await.status, RouteStatus::NotAHub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_route_requests_is_answered_busy_beyond_its_cap() {
    const CAP: usize = 2;
    const FLOOD: usize = 5;
    let net = Net::new();
    let [payer, hub] = net.nodes(0).await;
    let hub_metrics = Arc::new(Metrics::new());
    let network = NetworkConfig { max_route_per_peer: CAP, ..NetworkConfig::default() };
    let hub_config =
        HostConfig { network, ..HostConfig::default() }.with_metrics(hub_metrics.clone());
    // The handler holds every request until the test lets it through.
    let (handler, mut probe) = ScriptedRoute::gated(answering_hub());
    let (_hub_net, hub_peer, hub_addrs) = route_host(hub.m(), hub_config, handler).await;
    let (payer_net, _, _) = host(payer.m(), HostConfig::default()).await;
    within("the connection", payer_net.connect(target(hub_peer, &hub_addrs))).await.unwrap();

    let mut flood: FuturesUnordered<_> = (0..FLOOD as u64)
        .map(|lane| {
            let (net, addrs, request) =
                (payer_net.clone(), hub_addrs.clone(), replacement(&payer, lane));
            tokio::spawn(async move { net.ask(hub_peer, addrs, request).await })
        })
        .collect();

    // Two requests are held by the handler: the first three answers are the loop's refusals.
    for _ in CAP..FLOOD {
        let answer = within("a refusal", flood.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(answer.status, RouteStatus::Busy, "{answer:?}");
    }
    for _ in 0..CAP {
        probe.next().await;
    }
    assert!(probe.seen.try_recv().is_err(), "a request over the cap reached the handler");

    // Let them through: both are answered by the handler.
    probe.release(CAP);
    for _ in 0..CAP {
        let answer = within("an answer", flood.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(answer, RouteResponse::ok());
    }
    assert_refusals(&hub_metrics, "route_busy", FLOOD - CAP);
    assert_counted(&hub_metrics, &count_line("received", "replace", "busy", FLOOD - CAP));
    assert_counted(&hub_metrics, &count_line("received", "replace", "ok", CAP));

    // Their slots are free again: the next request reaches the handler.
    probe.release(1);
    let answer = send_route(&payer_net, hub_peer, &hub_addrs, replacement(&payer, 9)).await;
    assert_eq!(answer, RouteResponse::ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_handler_that_panics_is_answered_internal_and_frees_its_slot() {
    let net = Net::new();
    let [payer, hub] = net.nodes(0).await;
    let network = NetworkConfig { max_route_per_peer: 1, ..NetworkConfig::default() };
    let (handler, _probe) = ScriptedRoute::new(Box::new(|_, _| panic!("a handler bug")));
    let (_hub_net, hub_peer, hub_addrs) =
        route_host(hub.m(), HostConfig { network, ..HostConfig::default() }, handler).await;
    let (payer_net, _, _) = host(payer.m(), HostConfig::default()).await;

    // With one slot per peer, the second answer shows the first freed its slot.
    for _ in 0..2 {
        let answer = send_route(&payer_net, hub_peer, &hub_addrs, RouteRequest::Policy).await;
        assert_eq!(answer, RouteResponse::refused(RouteStatus::Internal, HANDLER_FAILED));
    }
}

/// A payer's [`Replacer`] sending to a hub whose route handler answers `answer`, each
/// request held until the test releases it.
struct Batching {
    payer: Node,
    replacer: Arc<Replacer>,
    hub_peer: libp2p::PeerId,
    hub_addrs: Vec<libp2p::Multiaddr>,
    probe: paych_testkit::route::RouteProbe,
    _hub_net: paych_node::network::NetworkClient,
}

impl Batching {
    async fn start(net: &Net, answer: RouteAnswer) -> Self {
        let [payer, hub] = net.nodes(0).await;
        let (handler, probe) = ScriptedRoute::gated(answer);
        let (_hub_net, hub_peer, hub_addrs) =
            route_host(hub.m(), HostConfig::default(), handler).await;
        let (payer_net, _, _) = host(payer.m(), HostConfig::default()).await;
        let replacer = Replacer::new(payer_net);
        Batching { payer, replacer, hub_peer, hub_addrs, probe, _hub_net }
    }

    /// Sends, in the background, the replacement on `lane` of the route whose secret is
    /// `route` repeated.
    fn send(&self, lane: u64, route: u64) -> tokio::task::JoinHandle<Sent> {
        let RouteRequest::Replace { payment_hash, voucher } =
            replacement_of(&self.payer, lane, route)
        else {
            unreachable!("a replacement")
        };
        let (replacer, peer, addrs) =
            (self.replacer.clone(), self.hub_peer, self.hub_addrs.clone());
        tokio::spawn(async move { replacer.send(peer, addrs, payment_hash, voucher).await })
    }

    /// Sends the replacement on lane 0 (held at the hub), then `lanes` as (lane, route) while
    /// it is out; releases the first, checks it taken, and answers what came next, which
    /// must be one `ReplaceMany`, with the senders of `lanes`.
    async fn batch_behind_a_first(
        &mut self,
        lanes: &[(u64, u64)],
    ) -> (Vec<RouteReplacement>, Vec<tokio::task::JoinHandle<Sent>>) {
        let first = self.send(0, 0);
        let (_, seen) = self.probe.next().await;
        assert!(matches!(seen, RouteRequest::Replace { ref voucher, .. } if voucher.lane == 0));
        let rest: Vec<_> = lanes.iter().map(|&(lane, route)| self.send(lane, route)).collect();
        let (replacer, peer) = (self.replacer.clone(), self.hub_peer);
        eventually("the replacements waiting", || async { replacer.waiting(peer) == lanes.len() })
            .await;
        self.probe.release(1);
        assert_eq!(within("the first replacement", first).await.ok(), Some(Sent::Taken));
        let (_, seen) = self.probe.next().await;
        let RouteRequest::ReplaceMany { replacements } = seen else {
            panic!("the waiting replacements did not go together: {seen:?}")
        };
        (replacements, rest)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacements_made_while_one_is_out_go_together_and_a_refused_batch_goes_again_alone() {
    let net = Net::new();
    // Every batch is refused; alone, the replacement on lane 3 is refused and the others taken.
    let mut b = Batching::start(
        &net,
        Box::new(|_, request| match request {
            RouteRequest::ReplaceMany { .. } => {
                RouteResponse::refused(RouteStatus::BadReplacement, "replacement 3 of 4: no")
            }
            RouteRequest::Replace { voucher, .. } if voucher.lane == 3 => {
                RouteResponse::refused(RouteStatus::BadReplacement, "no")
            }
            _ => RouteResponse::ok(),
        }),
    )
    .await;

    // Four made while the first is out wait for it, then go together (in the order their
    // spawned senders queued them).
    let (replacements, rest) = b.batch_behind_a_first(&[(1, 1), (2, 2), (3, 3), (4, 4)]).await;
    let mut lanes: Vec<u64> = replacements.iter().map(|r| r.voucher.lane).collect();
    lanes.sort();
    assert_eq!(lanes, vec![1, 2, 3, 4]);
    // Refused together, they go again alone: each learns its own answer.
    b.probe.release(1);
    let mut alone = Vec::new();
    for _ in 0..4 {
        match b.probe.next().await.1 {
            RouteRequest::Replace { voucher, .. } => alone.push(voucher.lane),
            other => panic!("not sent alone: {other:?}"),
        }
    }
    alone.sort();
    assert_eq!(alone, vec![1, 2, 3, 4]);
    b.probe.release(4);
    for (lane, sent) in (1..=4).zip(rest) {
        let sent = within("a replacement's answer", sent).await.unwrap();
        match lane {
            3 => assert!(
                matches!(sent, Sent::Refused { status: RouteStatus::BadReplacement, .. }),
                "{sent:?}"
            ),
            _ => assert_eq!(sent, Sent::Taken, "lane {lane}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_queued_twice_goes_in_the_batch_once_and_again_alone() {
    let net = Net::new();
    let mut b = Batching::start(&net, answering_hub()).await;

    // While the first is out, route 1's replacement is queued twice.
    let (replacements, rest) = b.batch_behind_a_first(&[(1, 1), (2, 1), (3, 3)]).await;
    let hashes: std::collections::HashSet<_> =
        replacements.iter().map(|r| r.payment_hash.clone()).collect();
    assert_eq!((replacements.len(), hashes.len()), (2, 2), "a hash named twice in one request");
    b.probe.release(1);
    let (_, seen) = b.probe.next().await;
    let RouteRequest::Replace { payment_hash: hash, .. } = seen else {
        panic!("the second replacement of route 1 did not go alone: {seen:?}")
    };
    assert_eq!(hash, payment_hash(&[1; 32]).to_vec());
    b.probe.release(1);
    for sent in rest {
        assert_eq!(within("a replacement's answer", sent).await.unwrap(), Sent::Taken);
    }
}
