//! Nodes on an in-process devnet: each with its own keystore, sled store (in a temporary
//! directory) and manager, funded from the devnet's faucet.
//!
//! A [`Net`] mines on its own every few milliseconds ([`Net::new`]) or only when a test
//! says so ([`Net::manual`]), for scenarios that need messages to stay unlanded.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::chain::Chain;
use paych_core::manager::{ManagerConfig, MessageOutcome, PaymentChannelManager};
use paych_core::store::sled::SledStore;
use paych_core::store::MessageState;
use paych_core::types::{Address, Network, SignedVoucher, TokenAmount};
use paych_core::wallet::{KeyStore, Wallet};

use crate::deadline::{within, DEADLINE};

/// A devnet, mining on a timer or on demand.
pub struct Net {
    /// The devnet itself.
    pub devnet: Devnet,
    /// Whether epochs are mined only on demand.
    pub manual: bool,
}

impl Net {
    /// A devnet mining on its own every few milliseconds.
    pub fn new() -> Self {
        Net { devnet: mining(Duration::from_millis(5)), manual: false }
    }

    /// A devnet that mines only when the test calls [`Net::mine`]: messages stay in the
    /// pool until then.
    pub fn manual() -> Self {
        let devnet = Devnet::new(DevnetConfig::default()).unwrap();
        Net { devnet, manual: true }
    }

    /// Mines `n` epochs now.
    pub fn mine(&self, n: u64) {
        self.devnet.mine(n);
    }

    /// Mines an epoch at a time until `manager` has recorded the message `cid` as landed
    /// (a message sent in the background may reach the pool after the first epoch).
    pub async fn mine_until_landed(
        &self,
        manager: &PaymentChannelManager,
        cid: &Cid,
    ) -> MessageOutcome {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let record = manager.store().message(cid).unwrap();
            if matches!(record.map(|r| r.state), Some(MessageState::Landed { .. })) {
                return manager.wait_message(cid).await.unwrap();
            }
            assert!(tokio::time::Instant::now() < deadline, "message {cid} never landed");
            self.devnet.mine(1);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A node whose key holds `fil` FIL.
    pub async fn node(&self, fil: u64) -> Node {
        self.node_with(fil, test_config()).await
    }

    /// `N` nodes whose keys hold `fil` FIL each, started one after another.
    pub async fn nodes<const N: usize>(&self, fil: u64) -> [Node; N] {
        let mut nodes = Vec::with_capacity(N);
        for _ in 0..N {
            nodes.push(self.node(fil).await);
        }
        match nodes.try_into() {
            Ok(nodes) => nodes,
            Err(_) => unreachable!("N nodes were started"),
        }
    }

    /// A node whose key holds `fil` FIL, its manager run with `config`.
    pub async fn node_with(&self, fil: u64, config: ManagerConfig) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let wallet =
            Arc::new(KeyStore::open(dir.path().join("keystore"), Network::Testnet).unwrap());
        let addr = wallet.new_key().unwrap();
        if fil > 0 {
            fund(&self.devnet, self.manual, &addr, TokenAmount::from_whole(fil)).await;
        }
        let node = Node {
            net: self.devnet.clone(),
            manual: self.manual,
            wallet,
            addr,
            dir,
            manager: None,
            config,
        };
        node.started().await
    }
}

impl Default for Net {
    fn default() -> Self {
        Self::new()
    }
}

/// A multi-threaded runtime (two workers, I/O and time enabled) for a test, bench or fuzz
/// target that drives nodes from synchronous code.
pub fn runtime() -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all().build().unwrap()
}

/// A devnet that mines an epoch every `block_time` on its own (call within a runtime).
pub fn mining(block_time: Duration) -> Devnet {
    let config = DevnetConfig { block_time: Some(block_time), ..DevnetConfig::default() };
    let devnet = Devnet::new(config).unwrap();
    devnet.start_mining();
    devnet
}

/// Starts a manager on `chain` with the keys of `wallet` and a sled store in
/// `dir/datastore` (waiting while a manager being stopped still holds it).
pub async fn start_manager(
    chain: Arc<dyn Chain>,
    wallet: Arc<KeyStore>,
    dir: &Path,
    config: ManagerConfig,
) -> PaymentChannelManager {
    let store = Arc::new(open_store_when_free(&dir.join("datastore")).await);
    let manager = PaymentChannelManager::new(chain, wallet, store, config);
    manager.start().await.unwrap();
    manager
}

/// Sends `amount` from the faucet to `to` and waits until it has landed.
pub async fn fund(devnet: &Devnet, manual: bool, to: &Address, amount: TokenAmount) {
    let cid = devnet.faucet(to, amount).unwrap();
    if manual {
        devnet.mine(1);
    }
    devnet.wait(&cid, 0, DEADLINE).await.unwrap();
}

/// A node on a [`Net`]: a keystore with one funded key, a sled store and a running manager,
/// all in one temporary directory.
pub struct Node {
    /// The devnet it runs on.
    pub net: Devnet,
    /// Whether the devnet mines only on demand.
    pub manual: bool,
    /// Its keystore.
    pub wallet: Arc<KeyStore>,
    /// Its funded key.
    pub addr: Address,
    /// The directory of its keystore and store.
    pub dir: tempfile::TempDir,
    /// Its manager, while started.
    pub manager: Option<PaymentChannelManager>,
    /// The configuration its manager starts with.
    pub config: ManagerConfig,
}

/// A manager configuration for tests: a settler that looks every 20 ms and a short wait for
/// messages.
pub fn test_config() -> ManagerConfig {
    ManagerConfig {
        settler_interval: Duration::from_millis(20),
        wait_timeout: Duration::from_secs(5),
        ..ManagerConfig::default()
    }
}

impl Node {
    /// Opens the node's store and starts its manager (again, after `stop`).
    pub async fn started(mut self) -> Self {
        let chain = Arc::new(self.net.clone());
        let manager =
            start_manager(chain, self.wallet.clone(), self.dir.path(), self.config.clone()).await;
        self.manager = Some(manager);
        self
    }

    /// Stops the manager and closes its store.
    pub async fn stop(mut self) -> Self {
        if let Some(m) = self.manager.take() {
            m.shutdown().await.unwrap();
        }
        // Background tasks notice the shutdown and drop their handles on the store; the
        // next `started` waits until the store's lock is free.
        tokio::task::yield_now().await;
        self
    }

    /// Its manager; the node must be started.
    pub fn m(&self) -> &PaymentChannelManager {
        self.manager.as_ref().unwrap()
    }

    /// The balance of its key on chain.
    pub async fn balance(&self) -> TokenAmount {
        self.net.actor(&self.addr).await.unwrap().map(|a| a.balance).unwrap_or_default()
    }

    /// Mines one epoch if the devnet mines only on demand.
    pub fn mine_if_manual(&self) {
        if self.manual {
            self.net.mine(1);
        }
    }

    /// Creates an outbound channel to `to` holding `amount` (nothing reserved) and waits
    /// until it is open; answers its robust address.
    pub async fn open_channel(&self, to: Address, amount: TokenAmount) -> Address {
        let handle = self.m().create(self.addr, to, amount, TokenAmount::default()).await.unwrap();
        self.mine_if_manual();
        within(
            "the create message to land",
            self.m().get_wait_ready(&handle.wait_sentinel.unwrap()),
        )
        .await
        .unwrap()
    }

    /// Signs `voucher` with this node's key, as its payer would.
    pub fn sign(&self, mut voucher: SignedVoucher) -> SignedVoucher {
        voucher.signature =
            Some(self.wallet.sign(&self.addr, &voucher.signing_bytes().unwrap()).unwrap());
        voucher
    }
}

/// Opens the sled store in `dir`, waiting (up to [`DEADLINE`]) while a store being closed
/// still holds its lock.
pub async fn open_store_when_free(dir: &Path) -> SledStore {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match SledStore::open(dir) {
            Ok(store) => return store,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "store still held; retrying");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("cannot open the store in {}: {e}", dir.display()),
        }
    }
}
