//! Paid retrievals between two nodes' network loops over real TCP on one in-process
//! devnet: the provider serves a published blob inside each flow's credit window; the
//! client checks each chunk against the manifest before paying for it. Most scenarios run
//! against a provider with a fixed window of one chunk (it serves chunk `i` once chunks
//! `0..i` are paid), so each step is exact; the pipelined ones run with the default,
//! growing window.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use paych_core::types::{Address, TokenAmount};
use paych_node::host::HostConfig;
use paych_node::inbound::InboundConfig;
use paych_node::metrics::Metrics;
use paych_node::network::NetworkClient;
use paych_node::pay::{Paid, Payer};
use paych_node::relay::{LinkShape, Relay};
use paych_node::retrieval::{
    self, Faults, PriceLimit, RetrievalLimits, RetrievalProvider, RetrievalUsage, RetrieveError,
};
use paych_protocol::retrieval::{Hash, MAX_CHUNK_BYTES};
use paych_protocol::{RetrievalRequest, RetrievalStatus, VoucherRequest, VoucherStatus};
use paych_testkit::amounts::atto;
use paych_testkit::deadline::DEADLINE;
use paych_testkit::devnet::{Net, Node};
use paych_testkit::node::{host, payer_to};

const CHUNK: u64 = 1000;

/// A provider serving a 4.5-chunk blob at 10 attoFIL a chunk, and a client with a channel
/// of 1000 to it.
struct Setup {
    net: Net,
    client: Node,
    provider: Node,
    /// The provider's network client, held: its loop stops once no client is left.
    _provider_net: NetworkClient,
    /// The blobs the provider serves.
    provider_blobs: Arc<RetrievalProvider>,
    provider_peer: PeerId,
    provider_addrs: Vec<Multiaddr>,
    payer: Payer,
    channel: Address,
}

/// A provider whose flows serve one chunk ahead of payment, never more.
async fn setup() -> Setup {
    setup_with(RetrievalLimits::default().with_fixed_window(CHUNK), atto(1000)).await
}

/// A provider bounded by `limits`, and a channel of `funds` to it.
async fn setup_with(limits: RetrievalLimits, funds: TokenAmount) -> Setup {
    let net = Net::new();
    let (client, provider, channel) = net.channel(10, 0, funds).await;
    let provider_blobs = Arc::new(RetrievalProvider::default().with_limits(limits));
    let config = serving(provider_blobs.clone(), Arc::default());
    let (provider_net, provider_peer, provider_addrs) = host(provider.m(), config).await;
    let (client_net, _, _) = host(client.m(), HostConfig::default()).await;
    let payer = payer_to(&client, &client_net, &provider, provider_peer, &provider_addrs);
    Setup {
        net,
        client,
        provider,
        _provider_net: provider_net,
        provider_blobs,
        provider_peer,
        provider_addrs,
        payer,
        channel,
    }
}

/// A node's configuration serving `blobs`, counting in `metrics`.
fn serving(blobs: Arc<RetrievalProvider>, metrics: Arc<Metrics>) -> HostConfig {
    let inbound = InboundConfig { retrieval: blobs, ..InboundConfig::default() };
    HostConfig { inbound, ..HostConfig::default() }.with_metrics(metrics)
}

impl Setup {
    /// The client's PeerId.
    fn client_peer(&self) -> PeerId {
        self.payer.network().local_peer_id()
    }
}

fn blob() -> Vec<u8> {
    (0..4500u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()
}

/// Another blob of five chunks, at 1 attoFIL a chunk.
fn publish_cheap(s: &Setup) -> Hash {
    let data: Vec<u8> = blob().iter().map(|b| b ^ 0x5a).collect();
    let manifest =
        s.provider_blobs.publish(data, CHUNK, atto(1), s.provider.addr, Faults::default()).unwrap();
    Hash::try_from(manifest.root.as_slice()).unwrap()
}

/// Asks the provider for chunk `index` of `root` on `flow`, from `net`'s node.
async fn ask_chunk(
    s: &Setup,
    net: &NetworkClient,
    root: Hash,
    index: u64,
    flow: &[u8],
) -> paych_protocol::RetrievalResponse {
    let request = RetrievalRequest::chunk(root, index, s.channel, flow.to_vec());
    net.ask(s.provider_peer, s.provider_addrs.clone(), request).await.unwrap()
}

/// Checks that the provider refused a chunk as not paid for yet.
fn assert_unpaid(refused: &paych_protocol::RetrievalResponse) {
    assert_eq!(refused.status(), Some(RetrievalStatus::PaymentRequired), "{:?}", refused.message);
}

/// From the payer's node: looks at chunk 0 of `root` on `flow`, free, then pays 10 on the
/// flow.
async fn open_and_pay(s: &Setup, root: Hash, flow: &[u8]) -> Paid {
    let net = s.payer.network();
    assert_eq!(ask_chunk(s, net, root, 0, flow).await.status(), Some(RetrievalStatus::Ok));
    s.payer.pay(&s.channel, atto(10), Some(flow.to_vec())).await.unwrap()
}

/// Sends `voucher` to the provider from `net`'s node, naming `flow`, without an announce.
async fn send_voucher(
    s: &Setup,
    net: &NetworkClient,
    voucher: &paych_core::types::SignedVoucher,
    flow: &[u8],
) -> paych_protocol::VoucherResponse {
    let request =
        VoucherRequest { voucher: voucher.clone(), flow: Some(flow.to_vec()), announce: None };
    net.ask(s.provider_peer, s.provider_addrs.clone(), request).await.unwrap()
}

/// A node on the same devnet that is no party to the channel.
async fn third_peer(s: &Setup) -> (Node, NetworkClient) {
    let third = s.net.node(0).await;
    let (net, _, _) = host(third.m(), HostConfig::default()).await;
    (third, net)
}

fn publish(s: &Setup, faults: Faults) -> Hash {
    let manifest =
        s.provider_blobs.publish(blob(), CHUNK, atto(10), s.provider.addr, faults).unwrap();
    Hash::try_from(manifest.root.as_slice()).unwrap()
}

/// What the provider holds on the channel: the sum of its lanes' amounts.
async fn held(s: &Setup) -> TokenAmount {
    let status = s.provider.m().status(&s.channel).await.unwrap();
    status.lanes.iter().fold(TokenAmount::default(), |acc, l| acc + &l.amount)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrieval_checks_and_pays_every_chunk_and_the_next_continues_its_lane() {
    let s = setup().await;
    let root = publish(&s, Faults::default());
    let got = tokio::time::timeout(
        DEADLINE,
        retrieval::retrieve(&s.payer, s.channel, root, PriceLimit::per_chunk(atto(10))),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(got.bytes, 4500);
    assert_eq!(got.manifest.chunks(), 5);
    assert_eq!(got.paid, atto(50));
    assert_eq!(got.payment_latencies.len(), 5);
    assert_eq!(held(&s).await, atto(50));

    // The lane went back to the pool: the next retrieval continues its cumulative amount.
    let again = retrieval::retrieve(&s.payer, s.channel, root, PriceLimit::per_chunk(atto(10)))
        .await
        .unwrap();
    assert_eq!(again.lane, got.lane);
    let status = s.provider.m().status(&s.channel).await.unwrap();
    assert_eq!(status.lanes.len(), 1);
    assert_eq!(status.lanes[0].amount, atto(100));

    // A client that accepts less than the price retrieves nothing and pays nothing.
    let err = retrieval::retrieve(&s.payer, s.channel, root, PriceLimit::per_chunk(atto(9)))
        .await
        .unwrap_err();
    assert!(matches!(err, RetrieveError::TooExpensive { .. }), "{err}");
    // A root the provider does not hold.
    let err = retrieval::retrieve(&s.payer, s.channel, [7; 32], PriceLimit::per_chunk(atto(10)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NotFound"), "{err}");
    assert_eq!(held(&s).await, atto(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_chunk_is_caught_and_not_paid() {
    let s = setup().await;
    let root = publish(&s, Faults { corrupt_chunk: Some(2) });
    let err = retrieval::retrieve(&s.payer, s.channel, root, PriceLimit::per_chunk(atto(10)))
        .await
        .unwrap_err();
    assert!(matches!(err, RetrieveError::BadChunk { index: 2, paid_chunks: 2 }), "{err}");
    // Chunks 0 and 1 were paid for; chunk 2 and after were not.
    assert_eq!(held(&s).await, atto(20));
    let spent = s.client.m().status(&s.channel).await.unwrap();
    let issued = spent.lanes.iter().fold(TokenAmount::default(), |acc, l| acc + &l.amount);
    assert_eq!(issued, atto(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_paying_stops_receiving() {
    let s = setup().await;
    let root = publish(&s, Faults::default());
    let net = s.payer.network();
    let flow = b"unpaid".to_vec();
    // The first chunk is free to look at; the second needs the first paid.
    assert_eq!(ask_chunk(&s, net, root, 0, &flow).await.status(), Some(RetrievalStatus::Ok));
    let refused = ask_chunk(&s, net, root, 1, &flow).await;
    assert_unpaid(&refused);
    assert!(refused.data.is_none());

    // Paying for chunk 0 on this flow opens chunk 1, and only chunk 1.
    let paid = s.payer.pay(&s.channel, atto(10), Some(flow.clone())).await.unwrap();
    assert_eq!(paid.response.status(), Some(paych_protocol::VoucherStatus::Accepted));
    let chunk = ask_chunk(&s, net, root, 1, &flow).await;
    assert_eq!(chunk.data.map(|d| d.len()), Some(1000));
    assert_unpaid(&ask_chunk(&s, net, root, 2, &flow).await);
    // A payment on another flow does not open this one.
    s.payer.pay(&s.channel, atto(10), Some(b"other".to_vec())).await.unwrap();
    assert_unpaid(&ask_chunk(&s, net, root, 2, &flow).await);
    assert_eq!(ask_chunk(&s, net, root, 9, &flow).await.status(), Some(RetrievalStatus::BadIndex));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_retrievals_on_a_new_channel_are_all_paid() {
    for _ in 0..5 {
        let s = setup().await;
        let root = publish(&s, Faults::default());
        let (a, b, c) = tokio::join!(
            retrieval::retrieve(&s.payer, s.channel, root, PriceLimit::per_chunk(atto(10))),
            retrieval::retrieve(&s.payer, s.channel, root, PriceLimit::per_chunk(atto(10))),
            retrieval::retrieve(&s.payer, s.channel, root, PriceLimit::per_chunk(atto(10))),
        );
        for got in [a, b, c] {
            let got = got.unwrap();
            assert_eq!(got.paid, atto(50));
        }
        assert_eq!(held(&s).await, atto(150));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_voucher_earns_no_chunk_credit() {
    let s = setup().await;
    let (a, b) = (publish(&s, Faults::default()), publish_cheap(&s));
    let net = s.payer.network();
    // The payer looks at chunk 0 on flow f1 and pays for it: chunk 1, and only chunk 1, opens.
    let paid = open_and_pay(&s, a, b"f1").await;
    assert_eq!(paid.response.status(), Some(VoucherStatus::Accepted));
    assert_eq!(ask_chunk(&s, net, a, 1, b"f1").await.status(), Some(RetrievalStatus::Ok));

    // The same voucher again, on the same flow: held already, nothing more credited.
    let again = send_voucher(&s, net, &paid.voucher, b"f1").await;
    assert_eq!(again.status(), Some(VoucherStatus::AlreadyHeld));
    assert!(again.delta.is_zero());
    assert_unpaid(&ask_chunk(&s, net, a, 2, b"f1").await);
    // … on another flow of the same blob, or on a flow of another blob.
    for (root, flow) in [(a, &b"f2"[..]), (b, &b"f3"[..])] {
        assert_eq!(ask_chunk(&s, net, root, 0, flow).await.status(), Some(RetrievalStatus::Ok));
        let replay = send_voucher(&s, net, &paid.voucher, flow).await;
        assert_eq!(replay.status(), Some(VoucherStatus::AlreadyHeld));
        assert_unpaid(&ask_chunk(&s, net, root, 1, flow).await);
    }
    // … or by a third peer, on a flow of the same name.
    let (_third, third_net) = third_peer(&s).await;
    assert_eq!(ask_chunk(&s, &third_net, a, 0, b"f1").await.status(), Some(RetrievalStatus::Ok));
    let replay = send_voucher(&s, &third_net, &paid.voucher, b"f1").await;
    assert_eq!(replay.status(), Some(VoucherStatus::AlreadyHeld));
    assert_unpaid(&ask_chunk(&s, &third_net, a, 1, b"f1").await);
    // One payment of 10, credited once.
    assert_eq!(s.provider_blobs.paid(s.client_peer(), s.channel, b"f1"), atto(10));
    assert_eq!(held(&s).await, atto(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_channels_payer_is_credited_for_its_vouchers() {
    let s = setup().await;
    let root = publish(&s, Faults::default());
    // The payer announces itself with its first payment.
    open_and_pay(&s, root, b"mine").await;

    // A third peer gets hold of a voucher the payer signed but has not sent yet and is the
    // first to present it: the provider takes the payment, but the third peer is not the
    // channel's payer, so no chunk is unlocked for it.
    let (_third, third_net) = third_peer(&s).await;
    assert_eq!(
        ask_chunk(&s, &third_net, root, 0, b"theirs").await.status(),
        Some(RetrievalStatus::Ok)
    );
    let lane = s.client.m().lease_lane(&s.channel).await.unwrap();
    let created = s.client.m().voucher_pay(&s.channel, lane, atto(10)).await.unwrap();
    let voucher = created.voucher.unwrap();
    let taken = send_voucher(&s, &third_net, &voucher, b"theirs").await;
    assert_eq!(taken.status(), Some(VoucherStatus::Accepted), "{taken:?}");
    assert_unpaid(&ask_chunk(&s, &third_net, root, 1, b"theirs").await);
    assert!(s.provider_blobs.paid(third_net.local_peer_id(), s.channel, b"theirs").is_zero());
    // The payer's own flow got what it paid, and nothing from the relayed voucher.
    assert_eq!(s.provider_blobs.paid(s.client_peer(), s.channel, b"mine"), atto(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_paid_for_one_blob_does_not_unlock_another() {
    let s = setup().await;
    let (dear, cheap) = (publish(&s, Faults::default()), publish_cheap(&s));
    let net = s.payer.network();
    // The flow is opened on the dear blob and paid 10: one chunk of it, or ten of the cheap
    // blob's price.
    open_and_pay(&s, dear, b"flow").await;
    for index in [1, 2, 4] {
        let refused = ask_chunk(&s, net, cheap, index, b"flow").await;
        assert_unpaid(&refused);
        assert!(refused.data.is_none());
    }
    // The credit still serves the blob it was paid for.
    assert_eq!(ask_chunk(&s, net, dear, 1, b"flow").await.data.map(|d| d.len()), Some(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_above_the_clients_maximum_is_refused_before_anything_is_paid() {
    let s = setup().await;
    let root = publish(&s, Faults::default());
    // 10 a chunk, 50 in all.
    let per_chunk = PriceLimit::per_chunk(atto(9));
    let err = retrieval::retrieve(&s.payer, s.channel, root, per_chunk).await.unwrap_err();
    assert!(matches!(err, RetrieveError::TooExpensive { .. }), "{err}");
    let in_all = PriceLimit { per_chunk: atto(10), total: Some(atto(49)) };
    let err = retrieval::retrieve(&s.payer, s.channel, root, in_all).await.unwrap_err();
    assert!(matches!(err, RetrieveError::TooExpensiveInAll { .. }), "{err}");
    // The client signed no voucher.
    let status = s.client.m().status(&s.channel).await.unwrap();
    assert!(status.lanes.iter().all(|l| l.amount.is_zero()), "{:?}", status.lanes);
    let enough = PriceLimit { per_chunk: atto(10), total: Some(atto(50)) };
    let got = retrieval::retrieve(&s.payer, s.channel, root, enough).await.unwrap();
    assert_eq!(got.paid, atto(50));
}

/// A peer whose requests go out but whose responses are never read: what the provider
/// hands it stays in flight.
mod never_reads {
    use std::io;
    use std::time::Duration;

    use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, StreamExt};
    use libp2p::request_response::{self, ProtocolSupport};
    use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol};
    use paych_protocol::{RetrievalRequest, RETRIEVAL_PROTOCOL};

    #[derive(Clone, Default)]
    pub struct Codec;

    impl request_response::Codec for Codec {
        type Protocol = StreamProtocol;
        type Request = RetrievalRequest;
        type Response = ();

        async fn read_request<T: AsyncRead + Unpin + Send>(
            &mut self,
            _: &StreamProtocol,
            _: &mut T,
        ) -> io::Result<RetrievalRequest> {
            Err(io::Error::other("this peer serves nothing"))
        }

        async fn read_response<T: AsyncRead + Unpin + Send>(
            &mut self,
            _: &StreamProtocol,
            _: &mut T,
        ) -> io::Result<()> {
            futures::future::pending().await
        }

        async fn write_request<T: AsyncWrite + Unpin + Send>(
            &mut self,
            _: &StreamProtocol,
            io: &mut T,
            request: RetrievalRequest,
        ) -> io::Result<()> {
            io.write_all(&request.to_cbor().map_err(io::Error::other)?).await
        }

        async fn write_response<T: AsyncWrite + Unpin + Send>(
            &mut self,
            _: &StreamProtocol,
            _: &mut T,
            _: (),
        ) -> io::Result<()> {
            Ok(())
        }
    }

    /// Sends every request to `provider` at `addr` at once, then keeps the connection open
    /// without reading, until the returned task is aborted.
    pub fn flood(
        provider: PeerId,
        addr: Multiaddr,
        requests: Vec<RetrievalRequest>,
    ) -> (PeerId, tokio::task::JoinHandle<()>) {
        let long = Duration::from_secs(600);
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|_| {
                request_response::Behaviour::with_codec(
                    Codec,
                    [(StreamProtocol::new(RETRIEVAL_PROTOCOL), ProtocolSupport::Outbound)],
                    request_response::Config::default()
                        .with_request_timeout(long)
                        .with_max_concurrent_streams(1024),
                )
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(long))
            .build();
        let peer = *swarm.local_peer_id();
        swarm.add_peer_address(provider, addr);
        for request in requests {
            swarm.behaviour_mut().send_request(&provider, request);
        }
        let task = tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        (peer, task)
    }
}

/// A provider bounded by `limits`, serving a blob of 8 chunks of 1 MiB at 10 attoFIL a
/// chunk; its network client (held: the loop stops once no client is left), the blobs it
/// serves, its peer, address and the blob's root.
async fn flooded_provider(
    net: &Net,
    limits: RetrievalLimits,
    metrics: Arc<Metrics>,
) -> (Node, NetworkClient, Arc<RetrievalProvider>, PeerId, Multiaddr, Hash) {
    let provider = net.node(0).await;
    let blobs = Arc::new(RetrievalProvider::default().with_limits(limits));
    let (net, peer, addrs) = host(provider.m(), serving(blobs.clone(), metrics)).await;
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    let manifest =
        blobs.publish(data, MAX_CHUNK_BYTES, atto(10), provider.addr, Faults::default()).unwrap();
    let root = Hash::try_from(manifest.root.as_slice()).unwrap();
    (provider, net, blobs, peer, addrs[0].clone(), root)
}

/// The unpaid requests of one flooding peer: chunk 0 on fresh flows and channels (free to
/// look at), manifests, and chunks not paid for. `n` of them, fewer than the streams a
/// connection may carry, so that every one reaches the provider.
fn unpaid_requests(root: Hash, n: u64) -> Vec<RetrievalRequest> {
    (0..n)
        .map(|i| match i % 4 {
            0 | 1 => RetrievalRequest::chunk(
                root,
                0,
                Address::new_id(1000 + i),
                i.to_be_bytes().to_vec(),
            ),
            2 => RetrievalRequest::manifest(root),
            _ => RetrievalRequest::chunk(root, 5, Address::new_id(1000 + i), vec![]),
        })
        .collect()
}

/// Waits until the provider has answered `n` requests.
async fn answered(blobs: &RetrievalProvider, n: u64) -> RetrievalUsage {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let usage = blobs.usage();
            if usage.answered >= n {
                return usage;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap()
}

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unpaid_requests_from_one_peer_stays_within_its_budget() {
    let net = Net::new();
    let limits = RetrievalLimits { max_bytes_per_peer: 4 * MIB, ..RetrievalLimits::default() };
    let metrics = Arc::new(Metrics::new());
    let (_provider, _net, blobs, peer, addr, root) =
        flooded_provider(&net, limits.clone(), metrics.clone()).await;
    let requests = 12;
    let (attacker, task) = never_reads::flood(peer, addr, unpaid_requests(root, requests));
    let usage = answered(&blobs, requests).await;

    // The chunks handed out stay in flight, unread; they never exceed the peer's budget,
    // and what would have gone beyond it was answered RateLimited.
    let load = blobs.load_of(attacker);
    assert!(load.bytes <= limits.max_bytes_per_peer, "{load:?}");
    assert!(usage.peak_peer_bytes <= limits.max_bytes_per_peer, "{usage:?}");
    assert!(load.bytes >= 3 * MIB, "the budget was used: {load:?}");
    assert!(usage.rate_limited >= 3, "{usage:?}");
    assert!(usage.open_flows <= limits.max_flows_per_peer, "{usage:?}");
    // /metrics shows the bytes in flight, within the budget too.
    let scrape = metrics.encode();
    let gauge = scrape
        .lines()
        .find_map(|l| l.strip_prefix("paych_retrieval_bytes_in_flight "))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap();
    assert!(gauge >= 3 * MIB && gauge <= limits.max_bytes_per_peer, "{scrape}");
    let limited = r#"paych_inbound_rate_limited_total{protocol="retrieval"}"#;
    assert!(scrape.contains(limited), "{scrape}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unpaid_requests_from_several_peers_stays_within_the_total_budget() {
    let net = Net::new();
    let limits = RetrievalLimits {
        max_bytes_per_peer: 4 * MIB,
        max_bytes: 8 * MIB,
        ..RetrievalLimits::default()
    };
    let (_provider, _net, blobs, peer, addr, root) =
        flooded_provider(&net, limits.clone(), Arc::default()).await;
    let (peers, requests) = (3, 12);
    let floods: Vec<_> = (0..peers)
        .map(|_| never_reads::flood(peer, addr.clone(), unpaid_requests(root, requests)))
        .collect();
    let usage = answered(&blobs, peers * requests).await;

    assert!(usage.in_flight.bytes <= limits.max_bytes, "{usage:?}");
    assert!(usage.peak_bytes <= limits.max_bytes, "{usage:?}");
    assert!(usage.peak_peer_bytes <= limits.max_bytes_per_peer, "{usage:?}");
    for (attacker, _) in &floods {
        let load = blobs.load_of(*attacker);
        assert!(load.bytes <= limits.max_bytes_per_peer, "{load:?}");
    }
    // 3 peers × 6 chunk-0 requests of 1 MiB were asked for, each peer's budget holds 3 of
    // them, and 7 at most fit in the total of 8 MiB.
    assert!(usage.in_flight.bytes >= 7 * MIB, "the budget was used: {usage:?}");
    assert!(usage.rate_limited >= peers * 6 - 7, "{usage:?}");
    for (_, task) in floods {
        task.abort();
    }
}

/// Publishes `chunks` chunks of `CHUNK` bytes at `price` attoFIL a chunk, with `faults`.
fn publish_many(s: &Setup, chunks: u32, price: u64, faults: Faults) -> Hash {
    let data: Vec<u8> =
        (0..chunks * CHUNK as u32).map(|i| (i.wrapping_mul(2654435761) >> 9) as u8).collect();
    let manifest =
        s.provider_blobs.publish(data, CHUNK, atto(price), s.provider.addr, faults).unwrap();
    Hash::try_from(manifest.root.as_slice()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_retrieval_pays_for_every_chunk_with_fewer_vouchers_than_chunks() {
    // The provider starts every flow at four chunks ahead and lets it grow to 64.
    let limits = RetrievalLimits {
        window_initial: 4 * CHUNK,
        window_max: 64 * CHUNK,
        ..RetrievalLimits::default()
    };
    let s = setup_with(limits, atto(10_000)).await;
    let root = publish_many(&s, 400, 3, Faults::default());
    let got = tokio::time::timeout(
        DEADLINE,
        retrieval::retrieve(&s.payer, s.channel, root, PriceLimit::per_chunk(atto(3))),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(got.bytes, 400 * CHUNK);
    assert_eq!(got.paid, atto(1200));
    assert_eq!(held(&s).await, atto(1200));
    // Payments ran beside the transfer, each covering every chunk checked since the last.
    let vouchers = got.payment_latencies.len();
    assert!((1..400).contains(&vouchers), "{vouchers} vouchers for 400 chunks");
    assert!(got.first_byte.is_some_and(|t| t <= got.elapsed));
    // The flow was paid in full and closed.
    assert_eq!(s.provider_blobs.usage().open_flows, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_retrieval_never_pays_for_a_bad_chunk_or_anything_after_it() {
    let limits = RetrievalLimits {
        window_initial: 8 * CHUNK,
        window_max: 32 * CHUNK,
        ..RetrievalLimits::default()
    };
    let s = setup_with(limits, atto(10_000)).await;
    let root = publish_many(&s, 200, 2, Faults { corrupt_chunk: Some(57) });
    let err = retrieval::retrieve(&s.payer, s.channel, root, PriceLimit::per_chunk(atto(2)))
        .await
        .unwrap_err();
    // Chunks 0..57 were checked and paid for; chunk 57 failed and nothing from it on was
    // paid, though later chunks may have arrived.
    assert!(matches!(err, RetrieveError::BadChunk { index: 57, paid_chunks: 57 }), "{err}");
    assert_eq!(held(&s).await, atto(114));
    let spent = s.client.m().status(&s.channel).await.unwrap();
    let issued = spent.lanes.iter().fold(TokenAmount::default(), |acc, l| acc + &l.amount);
    assert_eq!(issued, atto(114));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_grows_as_the_client_pays_and_a_request_beyond_it_is_refused() {
    let limits = RetrievalLimits {
        window_initial: 2 * CHUNK,
        window_max: 6 * CHUNK,
        ..RetrievalLimits::default()
    };
    let s = setup_with(limits, atto(1000)).await;
    let root = publish_many(&s, 20, 10, Faults::default());
    let net = s.payer.network();
    let flow = b"grow".to_vec();
    // Two chunks ahead of payment, no more; the answer tells the window.
    let first = ask_chunk(&s, net, root, 0, &flow).await;
    assert_eq!(first.window, Some(2 * CHUNK));
    assert_eq!(ask_chunk(&s, net, root, 1, &flow).await.status(), Some(RetrievalStatus::Ok));
    let beyond = ask_chunk(&s, net, root, 2, &flow).await;
    assert_unpaid(&beyond);
    assert!(beyond.data.is_none());
    // Paying for both chunks grows the window by what they paid for: chunks 2..6 open.
    s.payer.pay(&s.channel, atto(20), Some(flow.clone())).await.unwrap();
    let grown = ask_chunk(&s, net, root, 5, &flow).await;
    assert_eq!(grown.status(), Some(RetrievalStatus::Ok));
    assert_eq!(grown.window, Some(4 * CHUNK));
    assert_unpaid(&ask_chunk(&s, net, root, 6, &flow).await);
    // What the provider has out unpaid never passes the window's worth.
    let (owed, bound) = s.provider_blobs.exposure(s.client_peer(), s.channel, &flow).unwrap();
    assert_eq!(owed, atto(40));
    assert!(owed <= bound, "{owed:?} > {bound:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_connections_streams_are_refused_locally_and_a_retrieval_waits_for_them(
) {
    let s = setup().await;
    let root = publish(&s, Faults::default());
    // A client whose connections carry one retrieval stream at a time, reaching the provider
    // through a link of 20 ms each way: each answer takes a round trip of at least 40 ms, so
    // that requests sent together overlap whatever the machine's speed.
    let protocol =
        paych_protocol::Config { retrieval_max_concurrent_streams: 1, ..Default::default() };
    let network = paych_node::network::NetworkConfig { protocol, ..Default::default() };
    let (net, _, _) = host(s.client.m(), HostConfig { network, ..HostConfig::default() }).await;
    let upstream = paych_protocol::dial_from::tcp_socket_addr(&s.provider_addrs[0]).unwrap();
    let shape = LinkShape::delay(Duration::from_millis(20));
    let relay = Relay::start("127.0.0.1:0".parse().unwrap(), upstream, shape).await.unwrap();
    let through: Multiaddr =
        format!("/ip4/127.0.0.1/tcp/{}", relay.local_addr().port()).parse().unwrap();
    let ask = || net.ask(s.provider_peer, vec![through.clone()], RetrievalRequest::manifest(root));
    ask().await.unwrap();
    let answers = futures::future::join_all((0..8).map(|_| ask())).await;
    let exhausted = answers
        .iter()
        .filter(|a| matches!(a, Err(paych_node::network::NetworkError::StreamsExhausted { .. })))
        .count();
    assert!(exhausted >= 1, "{answers:?}");
    assert!(answers.iter().all(|a| a.is_ok()
        || matches!(a, Err(paych_node::network::NetworkError::StreamsExhausted { .. }))));
    // A retrieval through that client waits and asks again instead of failing.
    let payer = payer_to(&s.client, &net, &s.provider, s.provider_peer, &s.provider_addrs);
    let got = retrieval::retrieve(&payer, s.channel, root, PriceLimit::per_chunk(atto(10)))
        .await
        .unwrap();
    assert_eq!(got.bytes, 4500);
}
