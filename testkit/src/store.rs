//! Stores as tests see them: a snapshot of everything a store holds that the manager
//! writes (to show that a refused operation changed nothing), and a sled store whose
//! durability a test decides (to hold flushes back, or to measure them).

use cid::Cid;
use paych_core::store::sled::SledStore;
use paych_core::store::{
    Batch, ChannelId, ChannelRecord, InvoiceSecretRecord, MessageRecord, PeerRecord,
    ReconcileRecord, RouteRecord, SecretRecord, Store, StoreError, VoucherRecord,
    WatchCheckpointRecord,
};
use paych_core::types::Address;

use crate::devnet::Node;

/// Everything a store holds that the manager writes: channels, their vouchers, messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSnapshot {
    /// Every channel.
    pub channels: Vec<ChannelRecord>,
    /// Every voucher of every channel, channel by channel.
    pub vouchers: Vec<VoucherRecord>,
    /// Every message, in CID order.
    pub messages: Vec<MessageRecord>,
}

impl StoreSnapshot {
    /// What `store` holds now.
    pub fn of(store: &dyn Store) -> Self {
        let channels = store.channels().unwrap();
        let vouchers =
            channels.iter().flat_map(|c| store.vouchers(c.id).unwrap()).collect::<Vec<_>>();
        let mut messages = store.messages().unwrap();
        messages.sort_by_key(|m| m.cid.to_bytes());
        StoreSnapshot { channels, vouchers, messages }
    }
}

impl Node {
    /// What this node's store holds now.
    pub fn snapshot(&self) -> StoreSnapshot {
        StoreSnapshot::of(self.m().store().as_ref())
    }
}

/// What a [`SledWith`] store does when the manager asks for durability, given the sled
/// store underneath: flush it (after holding back, say), or return at once.
#[async_trait::async_trait]
pub trait Durability: Send + Sync + 'static {
    /// Answers `durable()` for the store `sled`.
    async fn durable(&self, sled: &SledStore) -> Result<(), StoreError>;
}

/// A sled store whose `durable()` a test decides ([`Durability`]); every other call is the
/// sled store's.
pub struct SledWith<D> {
    /// The store underneath.
    pub sled: SledStore,
    /// What `durable()` does.
    pub durability: D,
}

#[async_trait::async_trait]
impl<D: Durability> Store for SledWith<D> {
    fn next_channel_id(&self) -> Result<ChannelId, StoreError> {
        self.sled.next_channel_id()
    }
    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        self.sled.apply(batch)
    }
    async fn durable(&self) -> Result<(), StoreError> {
        self.durability.durable(&self.sled).await
    }
    fn channel(&self, id: ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        self.sled.channel(id)
    }
    fn channel_by_address(&self, addr: &Address) -> Result<Option<ChannelRecord>, StoreError> {
        self.sled.channel_by_address(addr)
    }
    fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        self.sled.channels()
    }
    fn voucher(
        &self,
        channel: ChannelId,
        lane: u64,
        nonce: u64,
    ) -> Result<Option<VoucherRecord>, StoreError> {
        self.sled.voucher(channel, lane, nonce)
    }
    fn vouchers(&self, channel: ChannelId) -> Result<Vec<VoucherRecord>, StoreError> {
        self.sled.vouchers(channel)
    }
    fn lane_vouchers(
        &self,
        channel: ChannelId,
        lane: u64,
        from: u64,
    ) -> Result<Vec<VoucherRecord>, StoreError> {
        self.sled.lane_vouchers(channel, lane, from)
    }
    fn lane_tops(
        &self,
        channel: ChannelId,
        keep: &(dyn Fn(&VoucherRecord) -> bool + Sync),
    ) -> Result<Vec<VoucherRecord>, StoreError> {
        self.sled.lane_tops(channel, keep)
    }
    fn message(&self, cid: &Cid) -> Result<Option<MessageRecord>, StoreError> {
        self.sled.message(cid)
    }
    fn messages(&self) -> Result<Vec<MessageRecord>, StoreError> {
        self.sled.messages()
    }
    fn reconcile(&self, request_hash: &[u8]) -> Result<Option<ReconcileRecord>, StoreError> {
        self.sled.reconcile(request_hash)
    }
    fn peer(&self, address: &Address) -> Result<Option<PeerRecord>, StoreError> {
        self.sled.peer(address)
    }
    fn invoice_secret(
        &self,
        payment_hash: &[u8],
    ) -> Result<Option<InvoiceSecretRecord>, StoreError> {
        self.sled.invoice_secret(payment_hash)
    }
    fn secret(&self, payment_hash: &[u8]) -> Result<Option<SecretRecord>, StoreError> {
        self.sled.secret(payment_hash)
    }
    fn route(&self, payment_hash: &[u8]) -> Result<Option<RouteRecord>, StoreError> {
        self.sled.route(payment_hash)
    }
    fn routes(&self) -> Result<Vec<RouteRecord>, StoreError> {
        self.sled.routes()
    }

    fn watch_checkpoint(&self) -> Result<Option<WatchCheckpointRecord>, StoreError> {
        self.sled.watch_checkpoint()
    }
}
