//! Nodes on a devnet: each with its own keystore, sled store and manager.
//!
//! A [`Net`] mines on its own every few milliseconds ([`Net::new`]) or only when a test
//! says so ([`Net::manual`]), for scenarios that need messages to stay unlanded.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::chain::Chain;
use paych_core::crypto;
use paych_core::manager::{ManagerConfig, MessageOutcome, PaymentChannelManager};
use paych_core::store::sled::SledStore;
use paych_core::store::{ChannelRecord, MessageRecord, MessageState, Store, VoucherRecord};
use paych_core::types::{Address, Network, Signature, SignedVoucher, TokenAmount};
use paych_core::wallet::{KeyStore, Wallet};

/// How long a test waits for something that should happen before it gives up. Generous:
/// the machine may be busy; reaching it is a failure, not a measurement.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A devnet, mining on a timer or on demand.
pub struct Net {
    pub devnet: Devnet,
    /// Whether epochs are mined only on demand.
    pub manual: bool,
}

impl Net {
    /// A devnet mining on its own every few milliseconds.
    pub fn new() -> Self {
        let config =
            DevnetConfig { block_time: Some(Duration::from_millis(5)), ..DevnetConfig::default() };
        let devnet = Devnet::new(config).unwrap();
        devnet.start_mining();
        Net { devnet, manual: false }
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

/// Sends `amount` from the faucet to `to` and waits until it has landed.
pub async fn fund(devnet: &Devnet, manual: bool, to: &Address, amount: TokenAmount) {
    let cid = devnet.faucet(to, amount).unwrap();
    if manual {
        devnet.mine(1);
    }
    devnet.wait(&cid, 0, DEADLINE).await.unwrap();
}

pub struct Node {
    pub net: Devnet,
    /// Whether the devnet mines only on demand.
    pub manual: bool,
    pub wallet: Arc<KeyStore>,
    pub addr: Address,
    pub dir: tempfile::TempDir,
    pub manager: Option<PaymentChannelManager>,
    pub config: ManagerConfig,
}

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
        let store = Arc::new(open_store_when_free(&self.dir.path().join("datastore")).await);
        let manager = PaymentChannelManager::new(
            Arc::new(self.net.clone()),
            self.wallet.clone(),
            store,
            self.config.clone(),
        );
        manager.start().await.unwrap();
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

    pub fn m(&self) -> &PaymentChannelManager {
        self.manager.as_ref().unwrap()
    }

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
pub async fn open_store_when_free(dir: &std::path::Path) -> SledStore {
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

/// Signs `voucher` with a key that is party to nothing.
pub fn sign_as_stranger(mut voucher: SignedVoucher) -> SignedVoucher {
    let key = crypto::generate_secret_key().unwrap();
    let signature: Signature = crypto::sign(&key, &voucher.signing_bytes().unwrap());
    voucher.signature = Some(signature);
    voucher
}

/// A fresh key address, party to nothing.
pub fn stranger_address() -> Address {
    let key = crypto::generate_secret_key().unwrap();
    crypto::secp_address(&crypto::public_key(&key))
}

/// Awaits `f`, failing the test if it has not finished within [`DEADLINE`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, f).await {
        Ok(out) => out,
        Err(_) => panic!("gave up waiting for {what}"),
    }
}

/// Polls `check` until it answers true, failing the test after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Everything a store holds that the manager writes: channels, their vouchers, messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSnapshot {
    pub channels: Vec<ChannelRecord>,
    pub vouchers: Vec<VoucherRecord>,
    pub messages: Vec<MessageRecord>,
}

impl StoreSnapshot {
    pub fn of(store: &dyn Store) -> Self {
        let channels = store.channels().unwrap();
        let vouchers =
            channels.iter().flat_map(|c| store.vouchers(c.id).unwrap()).collect::<Vec<_>>();
        let mut messages = store.messages().unwrap();
        messages.sort_by_key(|m| m.cid.to_bytes());
        StoreSnapshot { channels, vouchers, messages }
    }
}

pub fn atto(n: u64) -> TokenAmount {
    TokenAmount::from_atto(n)
}

/// One reconciliation as honest parties run it: the payee drafts a request on `channel`
/// (asking `fee_per_message` of the saving), the payer answers it as the request
/// `request_hash` from the payee, and the payee accepts the combined voucher. Answers the
/// draft and the combined voucher, or the draft's refusal (nothing worth folding).
pub async fn fold_lanes(
    payer: &PaymentChannelManager,
    payee: &PaymentChannelManager,
    channel: &Address,
    fee_per_message: &TokenAmount,
    request_hash: &[u8],
) -> Result<(paych_core::manager::ReconcileDraft, SignedVoucher), paych_core::manager::CombineError>
{
    let draft = payee.reconcile_draft(channel, fee_per_message).await?;
    let answer = payer
        .reconcile_as_payer(
            Some(&draft.payee),
            request_hash,
            &draft.vouchers,
            &draft.req_val,
            &paych_core::combine::ReconcilePolicy::default(),
            |v| v.to_cbor(),
        )
        .await
        .unwrap();
    let combined = SignedVoucher::from_cbor(&answer).unwrap();
    payee.reconcile_accept(channel, &draft.vouchers, &draft.req_val, &combined).await.unwrap();
    Ok((draft, combined))
}
