//! Two nodes' network loops over real TCP on one in-process devnet: the payer sends
//! vouchers through its `NetworkClient`, the payee's event loop adds them through its
//! manager and answers with the status the manager's outcome maps to.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::chain::Chain;
use paych_core::crypto;
use paych_core::manager::{ManagerConfig, PaymentChannelManager};
use paych_core::store::sled::SledStore;
use paych_core::types::{Address, Network, SignedVoucher, TokenAmount};
use paych_core::wallet::{KeyStore, Wallet};
use paych_node::network::{self, NetworkClient, NetworkConfig};
use paych_node::pay::{PayError, Payer};
use paych_protocol::{VoucherRequest, VoucherResponse, VoucherStatus};

const DEADLINE: Duration = Duration::from_secs(60);

fn atto(n: u64) -> TokenAmount {
    TokenAmount::from_atto(n)
}

struct Party {
    manager: PaymentChannelManager,
    addr: Address,
    _dir: tempfile::TempDir,
}

async fn party(devnet: &Devnet, fil: u64) -> Party {
    let dir = tempfile::tempdir().unwrap();
    let wallet = Arc::new(KeyStore::open(dir.path().join("keystore"), Network::Testnet).unwrap());
    let addr = wallet.new_key().unwrap();
    if fil > 0 {
        let cid = devnet.faucet(&addr, TokenAmount::from_whole(fil)).unwrap();
        devnet.wait(&cid, 0, DEADLINE).await.unwrap();
    }
    let store = Arc::new(SledStore::open(dir.path().join("datastore")).unwrap());
    let config = ManagerConfig {
        settler_interval: Duration::from_millis(20),
        wait_timeout: Duration::from_secs(5),
        ..ManagerConfig::default()
    };
    let manager = PaymentChannelManager::new(Arc::new(devnet.clone()), wallet, store, config);
    manager.start().await.unwrap();
    Party { manager, addr, _dir: dir }
}

async fn node(
    manager: &PaymentChannelManager,
    config: NetworkConfig,
) -> (NetworkClient, PeerId, Vec<Multiaddr>) {
    let (client, _task) =
        network::spawn(Keypair::generate_ed25519(), config, manager.clone()).unwrap();
    client.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap()).await.unwrap();
    let addrs = network::wait_for_listen_addrs(&client).await.unwrap();
    assert!(!addrs.is_empty());
    let peer = client.local_peer_id();
    (client, peer, addrs)
}

async fn send(
    client: &NetworkClient,
    peer: PeerId,
    addrs: &[Multiaddr],
    voucher: SignedVoucher,
) -> VoucherResponse {
    tokio::time::timeout(
        DEADLINE,
        client.send_voucher(peer, addrs.to_vec(), VoucherRequest::new(voucher)),
    )
    .await
    .expect("the voucher exchange timed out")
    .unwrap()
}

fn sign_as_stranger(mut voucher: SignedVoucher) -> SignedVoucher {
    let key = crypto::generate_secret_key().unwrap();
    voucher.signature = Some(crypto::sign(&key, &voucher.signing_bytes().unwrap()));
    voucher
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_answers_vouchers_by_what_its_manager_decides() {
    let devnet = Devnet::new(DevnetConfig {
        block_time: Some(Duration::from_millis(5)),
        ..DevnetConfig::default()
    })
    .unwrap();
    devnet.start_mining();
    let payer = party(&devnet, 10).await;
    let payee = party(&devnet, 0).await;
    let handle = payer.manager.create(payer.addr, payee.addr, atto(1000), atto(0)).await.unwrap();
    let channel = tokio::time::timeout(
        DEADLINE,
        payer.manager.get_wait_ready(&handle.wait_sentinel.unwrap()),
    )
    .await
    .unwrap()
    .unwrap();

    let (payee_net, payee_peer, payee_addrs) = node(&payee.manager, NetworkConfig::default()).await;
    let (payer_net, _, _) = node(&payer.manager, NetworkConfig::default()).await;
    let create = |amount: u64| {
        let manager = payer.manager.clone();
        async move { manager.voucher_create(&channel, atto(amount), 0).await.unwrap().voucher.unwrap() }
    };

    // A first voucher: accepted, the payee learns the channel.
    let v10 = create(10).await;
    let response = send(&payer_net, payee_peer, &payee_addrs, v10.clone()).await;
    assert_eq!(response.status(), Some(VoucherStatus::Accepted), "{response:?}");
    assert_eq!((response.delta.clone(), response.lane_amount.clone()), (atto(10), atto(10)));

    // The same voucher again: still held (accepted idempotently), nothing added twice.
    let response = send(&payer_net, payee_peer, &payee_addrs, v10.clone()).await;
    assert!(response.is_held(), "{response:?}");
    let v20 = create(20).await;
    let response = send(&payer_net, payee_peer, &payee_addrs, v20).await;
    assert_eq!(response.status(), Some(VoucherStatus::Accepted), "{response:?}");
    assert_eq!(response.delta, atto(10));

    // Signed by a key that is not the channel's `from`: refused as such.
    let v30 = create(30).await;
    let forged = sign_as_stranger(v30.clone());
    let response = send(&payer_net, payee_peer, &payee_addrs, forged).await;
    assert_eq!(response.status(), Some(VoucherStatus::InvalidSignature), "{response:?}");
    assert!(response.delta.is_zero());

    // Unsigned: the same status.
    let mut unsigned = v30.clone();
    unsigned.signature = None;
    let response = send(&payer_net, payee_peer, &payee_addrs, unsigned).await;
    assert_eq!(response.status(), Some(VoucherStatus::InvalidSignature), "{response:?}");

    // The node keeps serving: the genuine voucher goes through.
    let response = send(&payer_net, payee_peer, &payee_addrs, v30).await;
    assert_eq!(response.status(), Some(VoucherStatus::Accepted), "{response:?}");
    assert_eq!(response.delta, atto(10));
    assert_eq!(response.lane_amount, atto(30));

    // A channel that does not exist on chain: unknown (the payee looks the channel up
    // before it checks the signature, so the stale signature does not matter).
    let mut ghost = create(40).await;
    ghost.channel_addr = {
        let key = crypto::generate_secret_key().unwrap();
        crypto::secp_address(&crypto::public_key(&key))
    };
    let response = send(&payer_net, payee_peer, &payee_addrs, ghost).await;
    assert_eq!(response.status(), Some(VoucherStatus::UnknownChannel), "{response:?}");

    let peers = payer_net.peers().await.unwrap();
    assert!(peers.contains(&payee_peer), "{peers:?}");
    drop(payee_net);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payee_over_its_limits_answers_rate_limited_and_one_below_minimum_is_refused() {
    let devnet = Devnet::new(DevnetConfig {
        block_time: Some(Duration::from_millis(5)),
        ..DevnetConfig::default()
    })
    .unwrap();
    devnet.start_mining();
    let payer = party(&devnet, 10).await;
    let payee = party(&devnet, 0).await;
    let handle = payer.manager.create(payer.addr, payee.addr, atto(1000), atto(0)).await.unwrap();
    let channel = tokio::time::timeout(
        DEADLINE,
        payer.manager.get_wait_ready(&handle.wait_sentinel.unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let (payer_net, _, _) = node(&payer.manager, NetworkConfig::default()).await;

    let closed = NetworkConfig { max_inbound_per_peer: 0, ..NetworkConfig::default() };
    let (_closed_net, closed_peer, closed_addrs) = node(&payee.manager, closed).await;
    let v = payer.manager.voucher_create(&channel, atto(10), 0).await.unwrap().voucher.unwrap();
    let response = send(&payer_net, closed_peer, &closed_addrs, v.clone()).await;
    assert_eq!(response.status(), Some(VoucherStatus::RateLimited), "{response:?}");

    let strict = NetworkConfig { min_delta: atto(100), ..NetworkConfig::default() };
    let (_strict_net, strict_peer, strict_addrs) = node(&payee.manager, strict).await;
    let response = send(&payer_net, strict_peer, &strict_addrs, v).await;
    assert_eq!(response.status(), Some(VoucherStatus::BelowMinimum), "{response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payer_pays_each_flow_on_its_own_lane_and_the_payee_accepts() {
    let devnet = Devnet::new(DevnetConfig {
        block_time: Some(Duration::from_millis(5)),
        ..DevnetConfig::default()
    })
    .unwrap();
    devnet.start_mining();
    let payer = party(&devnet, 10).await;
    let payee = party(&devnet, 0).await;
    let handle = payer.manager.create(payer.addr, payee.addr, atto(1000), atto(0)).await.unwrap();
    let channel = tokio::time::timeout(
        DEADLINE,
        payer.manager.get_wait_ready(&handle.wait_sentinel.unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let (_payee_net, payee_peer, payee_addrs) =
        node(&payee.manager, NetworkConfig::default()).await;
    let (payer_net, _, _) = node(&payer.manager, NetworkConfig::default()).await;

    // Without the payee in the peer book, nothing is created or sent.
    let lost = Payer::new(payer.manager.clone(), payer_net.clone(), BTreeMap::new());
    let err = lost.pay(&channel, atto(5), None).await.unwrap_err();
    assert!(matches!(err, PayError::UnknownPeer(_)), "{err}");

    let target = payee_addrs[0].clone().with(Protocol::P2p(payee_peer));
    let payer_api = Payer::new(payer.manager.clone(), payer_net, [(payee.addr, target)].into());
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
    let status = payee.manager.status(&channel).await.unwrap();
    let mut lanes: Vec<_> = status.lanes.iter().map(|l| (l.lane, l.amount.clone())).collect();
    lanes.sort();
    assert_eq!(lanes, [(a1.lane, atto(15)), (b1.lane, atto(7))]);

    // Too long a flow reference, a zero amount: refused before anything is created.
    let err = payer_api.pay(&channel, atto(1), Some(vec![0; 65])).await.unwrap_err();
    assert!(matches!(err, PayError::FlowTooLong(65)), "{err}");
    let err = payer_api.pay(&channel, atto(0), None).await.unwrap_err();
    assert!(matches!(err, PayError::NotPositive), "{err}");
}
