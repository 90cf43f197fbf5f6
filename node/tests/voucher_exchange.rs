//! Two nodes' network loops over real TCP on one in-process devnet: the payer sends
//! vouchers through its `NetworkClient`, the payee's event loop adds them through its
//! manager and answers with the status the manager's outcome maps to.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use libp2p::{Multiaddr, PeerId};
use paych_core::types::TokenAmount;
use paych_node::host::HostConfig;
use paych_node::inbound::InboundConfig;
use paych_node::network::NetworkConfig;
use paych_node::pay::{PayError, Payer};
use paych_protocol::VoucherStatus;
use paych_testkit::amounts::atto;
use paych_testkit::deadline::DEADLINE;
use paych_testkit::devnet::Net;
use paych_testkit::keys::{sign_as_stranger, stranger_address};
use paych_testkit::node::{host, limits, payer_to, send_voucher};
use paych_testkit::raw_peer::{raw_swarm, send_raw};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_answers_vouchers_by_what_its_manager_decides() {
    let net = Net::new();
    let (payer, _payee, channel, (payer_net, _, _), (payee_net, payee_peer, payee_addrs)) =
        net.online_channel(10, 0, atto(1000), HostConfig::default()).await;
    let create = |amount: u64| {
        let payer = &payer;
        async move { payer.create_voucher(&channel, atto(amount), 0).await }
    };

    // A first voucher: accepted, the payee learns the channel.
    let v10 = create(10).await;
    let response = send_voucher(&payer_net, payee_peer, &payee_addrs, v10.clone()).await;
    assert_eq!(response.status(), Some(VoucherStatus::Accepted), "{response:?}");
    assert_eq!((response.delta.clone(), response.lane_amount.clone()), (atto(10), atto(10)));

    // The same voucher again: still held (accepted idempotently), nothing added twice.
    let response = send_voucher(&payer_net, payee_peer, &payee_addrs, v10.clone()).await;
    assert!(response.is_held(), "{response:?}");
    let v20 = create(20).await;
    let response = send_voucher(&payer_net, payee_peer, &payee_addrs, v20).await;
    assert_eq!(response.status(), Some(VoucherStatus::Accepted), "{response:?}");
    assert_eq!(response.delta, atto(10));

    // Signed by a key that is not the channel's `from`: refused as such.
    let v30 = create(30).await;
    let forged = sign_as_stranger(v30.clone());
    let response = send_voucher(&payer_net, payee_peer, &payee_addrs, forged).await;
    assert_eq!(response.status(), Some(VoucherStatus::InvalidSignature), "{response:?}");
    assert!(response.delta.is_zero());

    // Unsigned: the same status.
    let mut unsigned = v30.clone();
    unsigned.signature = None;
    let response = send_voucher(&payer_net, payee_peer, &payee_addrs, unsigned).await;
    assert_eq!(response.status(), Some(VoucherStatus::InvalidSignature), "{response:?}");

    // The node keeps serving: the genuine voucher goes through.
    let response = send_voucher(&payer_net, payee_peer, &payee_addrs, v30).await;
    assert_eq!(response.status(), Some(VoucherStatus::Accepted), "{response:?}");
    assert_eq!(response.delta, atto(10));
    assert_eq!(response.lane_amount, atto(30));

    // A channel that does not exist on chain: unknown (the payee looks the channel up
    // before it checks the signature, so the stale signature does not matter).
    let mut ghost = create(40).await;
    ghost.channel_addr = stranger_address();
    let response = send_voucher(&payer_net, payee_peer, &payee_addrs, ghost).await;
    assert_eq!(response.status(), Some(VoucherStatus::UnknownChannel), "{response:?}");

    let peers = payer_net.peers().await.unwrap();
    assert!(peers.contains(&payee_peer), "{peers:?}");
    drop(payee_net);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payee_over_its_limits_answers_rate_limited_and_one_below_minimum_is_refused() {
    let net = Net::new();
    let (payer, payee, channel) = net.channel(10, 0, atto(1000)).await;
    let (payer_net, _, _) = host(payer.m(), HostConfig::default()).await;

    let closed = limits(NetworkConfig { max_inbound_per_peer: 0, ..NetworkConfig::default() });
    let (_closed_net, closed_peer, closed_addrs) = host(payee.m(), closed).await;
    let v = payer.create_voucher(&channel, atto(10), 0).await;
    let response = send_voucher(&payer_net, closed_peer, &closed_addrs, v.clone()).await;
    assert_eq!(response.status(), Some(VoucherStatus::RateLimited), "{response:?}");

    let strict = HostConfig {
        inbound: InboundConfig { min_delta: atto(100), ..InboundConfig::default() },
        ..HostConfig::default()
    };
    let (_strict_net, strict_peer, strict_addrs) = host(payee.m(), strict).await;
    let response = send_voucher(&payer_net, strict_peer, &strict_addrs, v).await;
    assert_eq!(response.status(), Some(VoucherStatus::BelowMinimum), "{response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payer_pays_each_flow_on_its_own_lane_and_the_payee_accepts() {
    let net = Net::new();
    let (payer, payee, channel, (payer_net, _, _), (_payee_net, payee_peer, payee_addrs)) =
        net.online_channel(10, 0, atto(1000), HostConfig::default()).await;

    // Without the payee in the peer book, nothing is created or sent.
    let lost = Payer::new(payer.m().clone(), payer_net.clone(), BTreeMap::new());
    let err = lost.pay(&channel, atto(5), None).await.unwrap_err();
    assert!(matches!(err, PayError::UnknownPeer(_)), "{err}");

    let payer_api = payer_to(&payer, &payer_net, &payee, payee_peer, &payee_addrs);
    let a1 = payer_api.pay(&channel, atto(10), Some(b"flow-a".to_vec())).await.unwrap();
    assert_eq!(a1.response.status(), Some(VoucherStatus::Accepted), "{:?}", a1.response);
    assert_eq!((a1.response.delta.clone(), a1.response.lane_amount.clone()), (atto(10), atto(10)));
    let a2 = payer_api.pay(&channel, atto(5), Some(b"flow-a".to_vec())).await.unwrap();
    assert_eq!(a2.lane, a1.lane);
    assert_eq!((a2.response.delta.clone(), a2.response.lane_amount.clone()), (atto(5), atto(15)));
    let b1 = payer_api.pay(&channel, atto(7), Some(b"flow-b".to_vec())).await.unwrap();
    assert_ne!(b1.lane, a1.lane);
    assert_eq!((b1.response.delta.clone(), b1.response.lane_amount.clone()), (atto(7), atto(7)));

    // The payee holds both lanes.
    let status = payee.m().status(&channel).await.unwrap();
    let mut lanes: Vec<_> = status.lanes.iter().map(|l| (l.lane, l.amount.clone())).collect();
    lanes.sort();
    assert_eq!(lanes, [(a1.lane, atto(15)), (b1.lane, atto(7))]);

    // Payments on one flow at once (as many as the payee takes in flight from one peer):
    // each adds its own amount to the lane; the payee accepts each (or finds it covered,
    // when a later voucher got there first), and holds their sum.
    let payer_api = std::sync::Arc::new(payer_api);
    let concurrent = (1..=8u64).map(|k| {
        let payer_api = payer_api.clone();
        tokio::spawn(
            async move { payer_api.pay(&channel, atto(k), Some(b"flow-a".to_vec())).await },
        )
    });
    for paid in futures::future::join_all(concurrent).await {
        let paid = paid.unwrap().unwrap();
        assert_eq!(paid.lane, a1.lane);
        assert!(
            matches!(
                paid.response.status(),
                Some(VoucherStatus::Accepted | VoucherStatus::Covered)
            ),
            "{:?}",
            paid.response
        );
    }
    let status = payee.m().status(&channel).await.unwrap();
    let lane = status.lanes.iter().find(|l| l.lane == a1.lane).unwrap();
    assert_eq!(lane.amount, atto(15 + 8 * 9 / 2));

    // Too long a flow reference, a zero amount: refused before anything is created.
    let err = payer_api.pay(&channel, atto(1), Some(vec![0; 65])).await.unwrap_err();
    assert!(matches!(err, PayError::FlowTooLong(65)), "{err}");
    let err = payer_api.pay(&channel, atto(0), None).await.unwrap_err();
    assert!(matches!(err, PayError::NotPositive), "{err}");
}

// --- many vouchers in flight, and a misbehaving peer alongside ----------------------------

/// Sends malformed and oversized voucher requests to `peer` until `stop` is set; returns
/// how many it sent.
async fn misbehave(
    peer: PeerId,
    addr: Multiaddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> usize {
    let mut swarm = raw_swarm(false);
    let garbage = [
        vec![0xff; 32],
        vec![0x8b, 0x00, 0x01],
        vec![0x40; 4 * paych_protocol::codec::VOUCHER_REQUEST_MAX_BYTES],
    ];
    let mut sent = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        send_raw(&mut swarm, peer, &addr, garbage[sent % garbage.len()].clone()).await;
        sent += 1;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_pipelined_vouchers_add_up_while_a_misbehaving_peer_is_refused() {
    const VOUCHERS: u64 = 1000;
    const IN_FLIGHT: usize = 32;
    const STEP: u64 = 10;
    let config = limits(NetworkConfig {
        protocol: paych_protocol::Config {
            voucher_max_concurrent_streams: 128,
            ..paych_protocol::Config::default()
        },
        max_inbound_per_peer: 64,
        ..NetworkConfig::default()
    });
    let net = Net::new();
    let (payer, payee, channel, (payer_net, _, _), (_payee_net, payee_peer, payee_addrs)) =
        net.online_channel(10, 0, atto(1_000_000), config).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacker = tokio::spawn(misbehave(payee_peer, payee_addrs[0].clone(), stop.clone()));

    // The payer pays 1 000 vouchers on one lane, up to IN_FLIGHT awaiting their answer.
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut vouchers = Vec::new();
    for i in 1..=VOUCHERS {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let voucher = payer.create_voucher(&channel, atto(i * STEP), 0).await;
        vouchers.push(voucher.clone());
        let (net, addrs) = (payer_net.clone(), payee_addrs.clone());
        tasks.spawn(async move {
            let response = send_voucher(&net, payee_peer, &addrs, voucher.clone()).await;
            drop(permit);
            (voucher, response)
        });
    }
    let mut accepted_total = TokenAmount::default();
    let mut covered_on_arrival = Vec::new();
    let mut accepted = 0;
    while let Some(response) = tasks.join_next().await {
        let (voucher, response) = response.unwrap();
        match response.status() {
            Some(VoucherStatus::Accepted) => {
                accepted += 1;
                accepted_total += response.delta.clone();
            }
            Some(VoucherStatus::Covered) => {
                assert!(response.delta.is_zero(), "{response:?}");
                covered_on_arrival.push(voucher);
            }
            _ => panic!("an honest voucher was refused: {response:?}"),
        }
    }
    assert_eq!(accepted + covered_on_arrival.len(), VOUCHERS as usize);

    // Three more, the newest sent first: the two older ones arrive after it and are covered.
    let mut late = Vec::new();
    for i in VOUCHERS + 1..=VOUCHERS + 3 {
        late.push(payer.create_voucher(&channel, atto(i * STEP), 0).await);
    }
    let sent_total = atto((VOUCHERS + 3) * STEP);
    let newest = send_voucher(&payer_net, payee_peer, &payee_addrs, late[2].clone()).await;
    assert_eq!(newest.status(), Some(VoucherStatus::Accepted), "{newest:?}");
    assert_eq!(newest.lane_amount, sent_total);
    accepted_total += newest.delta.clone();
    for older in late[..2].iter().chain(&covered_on_arrival) {
        let response = send_voucher(&payer_net, payee_peer, &payee_addrs, older.clone()).await;
        assert_eq!(response.status(), Some(VoucherStatus::Covered), "{response:?}");
        assert!(response.delta.is_zero());
        assert_eq!(response.lane_amount, sent_total);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let attacks = tokio::time::timeout(DEADLINE, attacker).await.unwrap().unwrap();
    assert!(attacks > 0);

    // What the payer sent is what the payee accepted, on both sides' books.
    assert_eq!(accepted_total, sent_total);
    let lane_amount = |status: paych_core::manager::ChannelStatus| {
        status.lanes.iter().find(|l| l.lane == 0).map(|l| l.amount.clone()).unwrap()
    };
    assert_eq!(lane_amount(payer.m().status(&channel).await.unwrap()), sent_total);
    assert_eq!(lane_amount(payee.m().status(&channel).await.unwrap()), sent_total);

    // A voucher the payee stored, sent again (a retry), is still held: the answer is the
    // one it got the first time, and the lane does not move.
    let retried = send_voucher(&payer_net, payee_peer, &payee_addrs, vouchers[499].clone()).await;
    assert!(retried.is_held(), "{retried:?}");
    assert_eq!(lane_amount(payee.m().status(&channel).await.unwrap()), sent_total);
}
