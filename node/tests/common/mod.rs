//! Shared by the node's in-process network tests: parties (a manager on a sled store in a
//! temporary directory, with a funded key on one in-process devnet) and their network loops
//! listening on loopback.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use paych_core::chain::devnet::Devnet;
use paych_core::chain::Chain;
use paych_core::manager::{ManagerConfig, PaymentChannelManager};
use paych_core::store::sled::SledStore;
use paych_core::types::{Address, Network, TokenAmount};
use paych_core::wallet::{KeyStore, Wallet};
use paych_node::network::{self, NetworkClient, NetworkConfig};

/// The longest any step may take.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// `n` attoFIL.
pub fn atto(n: u64) -> TokenAmount {
    TokenAmount::from_atto(n)
}

/// A manager with its own key and store.
pub struct Party {
    pub manager: PaymentChannelManager,
    pub addr: Address,
    _dir: tempfile::TempDir,
}

/// A party whose key the faucet funds with `fil` FIL (its account exists on chain even at 0).
pub async fn party(devnet: &Devnet, fil: u64) -> Party {
    let dir = tempfile::tempdir().unwrap();
    let wallet = Arc::new(KeyStore::open(dir.path().join("keystore"), Network::Testnet).unwrap());
    let addr = wallet.new_key().unwrap();
    let cid = devnet.faucet(&addr, TokenAmount::from_whole(fil)).unwrap();
    devnet.wait(&cid, 0, DEADLINE).await.unwrap();
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

/// The network loop of `manager`, listening on loopback: its client, peer id and addresses.
pub async fn node(
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
