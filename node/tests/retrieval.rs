//! Paid retrievals between two nodes' network loops over real TCP on one in-process
//! devnet: the provider serves a published blob chunk by chunk once the earlier chunks are
//! paid; the client checks each chunk against the manifest before paying for it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{atto, node, party, Party, DEADLINE};

use std::time::Duration;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::types::{Address, TokenAmount};
use paych_node::network::{NetworkClient, NetworkConfig};
use paych_node::pay::Payer;
use paych_node::retrieval::{self, Faults, RetrieveError};
use paych_protocol::retrieval::Hash;
use paych_protocol::{RetrievalRequest, RetrievalStatus};

const CHUNK: u64 = 1000;

/// A provider serving a 4.5-chunk blob at 10 attoFIL a chunk, and a client with a channel
/// of 1000 to it.
struct Setup {
    _devnet: Devnet,
    client: Party,
    provider: Party,
    provider_net: NetworkClient,
    provider_peer: PeerId,
    provider_addrs: Vec<Multiaddr>,
    payer: Payer,
    channel: Address,
}

async fn setup() -> Setup {
    let devnet = Devnet::new(DevnetConfig {
        block_time: Some(Duration::from_millis(5)),
        ..DevnetConfig::default()
    })
    .unwrap();
    devnet.start_mining();
    let client = party(&devnet, 10).await;
    let provider = party(&devnet, 0).await;
    let handle =
        client.manager.create(client.addr, provider.addr, atto(1000), atto(0)).await.unwrap();
    let channel = tokio::time::timeout(
        DEADLINE,
        client.manager.get_wait_ready(&handle.wait_sentinel.unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let (provider_net, provider_peer, provider_addrs) =
        node(&provider.manager, NetworkConfig::default()).await;
    let (client_net, _, _) = node(&client.manager, NetworkConfig::default()).await;
    let target = provider_addrs[0].clone().with(Protocol::P2p(provider_peer));
    let payer = Payer::new(client.manager.clone(), client_net, [(provider.addr, target)].into());
    Setup {
        _devnet: devnet,
        client,
        provider,
        provider_net,
        provider_peer,
        provider_addrs,
        payer,
        channel,
    }
}

fn blob() -> Vec<u8> {
    (0..4500u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()
}

fn publish(s: &Setup, faults: Faults) -> Hash {
    let manifest = s
        .provider_net
        .retrieval()
        .publish(blob(), CHUNK, atto(10), s.provider.addr, faults)
        .unwrap();
    Hash::try_from(manifest.root.as_slice()).unwrap()
}

/// What the provider holds on the channel: the sum of its lanes' amounts.
async fn held(s: &Setup) -> TokenAmount {
    let status = s.provider.manager.status(&s.channel).await.unwrap();
    status.lanes.iter().fold(TokenAmount::default(), |acc, l| acc + &l.amount)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrieval_checks_and_pays_every_chunk_and_the_next_continues_its_lane() {
    let s = setup().await;
    let root = publish(&s, Faults::default());
    let got = tokio::time::timeout(DEADLINE, retrieval::retrieve(&s.payer, s.channel, root, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.bytes, 4500);
    assert_eq!(got.manifest.chunks(), 5);
    assert_eq!(got.paid, atto(50));
    assert_eq!(got.payment_latencies.len(), 5);
    assert_eq!(held(&s).await, atto(50));

    // The lane went back to the pool: the next retrieval continues its cumulative amount.
    let again = retrieval::retrieve(&s.payer, s.channel, root, Some(atto(10))).await.unwrap();
    assert_eq!(again.lane, got.lane);
    let status = s.provider.manager.status(&s.channel).await.unwrap();
    assert_eq!(status.lanes.len(), 1);
    assert_eq!(status.lanes[0].amount, atto(100));

    // A client that accepts less than the price retrieves nothing and pays nothing.
    let err = retrieval::retrieve(&s.payer, s.channel, root, Some(atto(9))).await.unwrap_err();
    assert!(matches!(err, RetrieveError::TooExpensive { .. }), "{err}");
    // A root the provider does not hold.
    let err = retrieval::retrieve(&s.payer, s.channel, [7; 32], None).await.unwrap_err();
    assert!(err.to_string().contains("NotFound"), "{err}");
    assert_eq!(held(&s).await, atto(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_chunk_is_caught_and_not_paid() {
    let s = setup().await;
    let root = publish(&s, Faults { corrupt_chunk: Some(2) });
    let err = retrieval::retrieve(&s.payer, s.channel, root, None).await.unwrap_err();
    assert!(matches!(err, RetrieveError::BadChunk { index: 2, paid_chunks: 2 }), "{err}");
    // Chunks 0 and 1 were paid for; chunk 2 and after were not.
    assert_eq!(held(&s).await, atto(20));
    let spent = s.client.manager.status(&s.channel).await.unwrap();
    let issued = spent.lanes.iter().fold(TokenAmount::default(), |acc, l| acc + &l.amount);
    assert_eq!(issued, atto(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_paying_stops_receiving() {
    let s = setup().await;
    let root = publish(&s, Faults::default());
    let net = s.payer.network();
    let flow = b"unpaid".to_vec();
    let ask = |index: u64| {
        net.send_retrieval(
            s.provider_peer,
            s.provider_addrs.clone(),
            RetrievalRequest::chunk(root, index, s.channel, flow.clone()),
        )
    };
    // The first chunk is free to look at; the second needs the first paid.
    assert_eq!(ask(0).await.unwrap().status(), Some(RetrievalStatus::Ok));
    let refused = ask(1).await.unwrap();
    assert_eq!(refused.status(), Some(RetrievalStatus::PaymentRequired), "{refused:?}");
    assert!(refused.data.is_none());

    // Paying for chunk 0 on this flow opens chunk 1, and only chunk 1.
    let paid = s.payer.pay(&s.channel, atto(10), Some(flow.clone())).await.unwrap();
    assert_eq!(paid.response.status(), Some(paych_protocol::VoucherStatus::Accepted));
    assert_eq!(ask(1).await.unwrap().data.map(|d| d.len()), Some(1000));
    assert_eq!(ask(2).await.unwrap().status(), Some(RetrievalStatus::PaymentRequired));
    // A payment on another flow does not open this one.
    s.payer.pay(&s.channel, atto(10), Some(b"other".to_vec())).await.unwrap();
    assert_eq!(ask(2).await.unwrap().status(), Some(RetrievalStatus::PaymentRequired));
    assert_eq!(ask(9).await.unwrap().status(), Some(RetrievalStatus::BadIndex));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_retrievals_on_a_new_channel_are_all_paid() {
    for _ in 0..5 {
        let s = setup().await;
        let root = publish(&s, Faults::default());
        let (a, b, c) = tokio::join!(
            retrieval::retrieve(&s.payer, s.channel, root, None),
            retrieval::retrieve(&s.payer, s.channel, root, None),
            retrieval::retrieve(&s.payer, s.channel, root, None),
        );
        for got in [a, b, c] {
            let got = got.unwrap();
            assert_eq!(got.paid, atto(50));
        }
        assert_eq!(held(&s).await, atto(150));
    }
}
