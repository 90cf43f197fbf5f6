//! Durable off-chain state: channels, vouchers, reservations, chain messages,
//! reconciliation records, peer records, invoice secrets, learned payment secrets, routes and
//! the watchtower's checkpoint.
//!
//! [`Store`] is the trait the manager writes through; [`sled::SledStore`] implements it on
//! sled. Writes are grouped in a [`Batch`] and applied atomically. A write is in memory (and
//! visible) when [`Store::apply`] returns; it is on disk only after [`Store::durable`]
//! resolves. The rule the manager keeps: nothing leaves the process — a voucher sent, an
//! acknowledgement returned, a message pushed — before the writes it depends on are
//! durable. Concurrent callers of `durable` share one flush (group commit), so many vouchers
//! in flight cost one flush, not one each.
//!
//! Every record is DAG-CBOR; every backend passes the one conformance suite in
//! `core/tests/store.rs`.

mod lifecycle;
pub mod sled;

use std::collections::BTreeMap;

use cid::Cid;
use fvm_ipld_encoding::strict_bytes;
use serde::{Deserialize, Serialize};

use crate::types::{Address, ChainEpoch, SignedMessage, SignedVoucher, TokenAmount};

pub use self::lifecycle::LifecycleError;

/// The store's own key for a channel, assigned before the channel has an address.
pub type ChannelId = u64;

/// Which way money flows in a channel, from this node's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// We are the payee (`to`).
    Inbound,
    /// We are the payer (`from`).
    Outbound,
}

/// Where a channel is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Lifecycle {
    /// The create message is recorded or pushed but has not landed.
    Creating,
    /// The create message failed (see [`ChannelRecord::create_error`]).
    CreateFailed,
    /// The channel exists on chain and takes vouchers.
    Open,
    /// `Settle` has landed; vouchers are redeemable until `settling_at`.
    Settling,
    /// `settling_at` has passed; only `Collect` remains.
    Settled,
    /// `Collect` has landed and the actor is gone.
    Collected,
}

/// A payment channel as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    /// The store's key.
    pub id: ChannelId,
    /// Inbound or outbound.
    pub direction: Direction,
    /// The channel's robust address, once the create message has landed.
    pub channel: Option<Address>,
    /// The channel's ID address, once known.
    pub id_address: Option<Address>,
    /// The payer.
    pub from: Address,
    /// The payee.
    pub to: Address,
    /// Our key on the channel: `from` when outbound, `to` when inbound.
    pub control: Address,
    /// Where the channel is in its life.
    pub lifecycle: Lifecycle,
    /// Funds confirmed on chain (create value plus confirmed add-funds).
    pub confirmed: TokenAmount,
    /// Funds in a create or add-funds message that has not landed.
    pub pending: TokenAmount,
    /// That message.
    pub pending_message: Option<Cid>,
    /// Funds queued for the next add-funds message.
    pub queued: TokenAmount,
    /// The part of `queued` that reservations are waiting for: reserved when it lands.
    pub queued_reserve: TokenAmount,
    /// Funds reserved for payments not yet made.
    pub reserved: TokenAmount,
    /// The next lane `allocate_lane` hands out.
    pub next_lane: u64,
    /// Lanes returned by finished flows, ready to be leased again (lowest first).
    pub free_lanes: Vec<u64>,
    /// Lanes closed by a merge: no new voucher may go on them.
    pub closed_lanes: Vec<u64>,
    /// The epoch at which the channel settles, once settling.
    pub settling_at: ChainEpoch,
    /// Why the create message failed.
    pub create_error: Option<String>,
    /// Why the last add-funds message carrying queued reservations was refused or failed:
    /// the reservations that waited for it are told, not left believing they hold funds.
    /// Cleared when a new queue starts.
    #[serde(default)]
    pub queue_failure: Option<String>,
    /// Inbound: the `to_send` the payee has credited its payer up to — the redemption
    /// model's value of the vouchers held after the last voucher it credited. Where time
    /// locks are taken, a voucher is credited only what it adds above this, so value a lock
    /// took away is never credited twice. `None` for a channel stored before this was kept.
    #[serde(default)]
    pub credited: Option<TokenAmount>,
}

/// Where a stored voucher came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VoucherOrigin {
    /// Created and signed by this node (outbound).
    Created,
    /// Received from the payer (inbound).
    Received,
    /// A combined voucher from a reconciliation.
    Combined,
}

/// A voucher held for a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherRecord {
    /// The channel.
    pub channel: ChannelId,
    /// The voucher (its lane and nonce are the record's key).
    pub voucher: SignedVoucher,
    /// Where it came from.
    pub origin: VoucherOrigin,
    /// Submitted on chain, or superseded by one that was.
    pub submitted: bool,
    /// Folded into a combined voucher: no longer redeemable on its own.
    pub superseded: bool,
}

/// Why a chain message was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessagePurpose {
    /// Create the channel with this much.
    Create {
        /// The channel.
        channel: ChannelId,
        /// The value.
        amount: TokenAmount,
        /// The part of the value reserved for payments once it lands.
        reserve: TokenAmount,
    },
    /// Add funds to the channel.
    AddFunds {
        /// The channel.
        channel: ChannelId,
        /// The value.
        amount: TokenAmount,
        /// The part of the value reserved for payments once it lands.
        reserve: TokenAmount,
    },
    /// Redeem a voucher.
    Submit {
        /// The channel.
        channel: ChannelId,
        /// The voucher's lane.
        lane: u64,
        /// The voucher's nonce.
        nonce: u64,
        /// The nonces on `lane` this message marked submitted (the voucher's and the lower
        /// ones not yet marked): exactly what a failed or refused submit restores.
        #[serde(default)]
        marked: Vec<u64>,
    },
    /// Settle the channel.
    Settle {
        /// The channel.
        channel: ChannelId,
    },
    /// Collect the channel.
    Collect {
        /// The channel.
        channel: ChannelId,
    },
}

impl MessagePurpose {
    /// The channel the message is about.
    pub fn channel(&self) -> ChannelId {
        match self {
            MessagePurpose::Create { channel, .. }
            | MessagePurpose::AddFunds { channel, .. }
            | MessagePurpose::Submit { channel, .. }
            | MessagePurpose::Settle { channel }
            | MessagePurpose::Collect { channel } => *channel,
        }
    }
}

/// How far a recorded message has got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageState {
    /// Recorded, not yet known to be in the message pool.
    Recorded,
    /// Accepted by the message pool.
    Pushed,
    /// Executed.
    Landed {
        /// The receipt's exit code.
        exit_code: u32,
        /// The epoch it executed at.
        epoch: ChainEpoch,
        /// The method's return value.
        #[serde(with = "strict_bytes")]
        return_data: Vec<u8>,
    },
    /// Refused by the message pool; it will never land.
    Refused {
        /// What the pool said.
        reason: String,
    },
}

/// A chain message, recorded before it is pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The signed message's CID.
    pub cid: Cid,
    /// The signed message itself, so that it can be pushed again unchanged.
    pub signed: SignedMessage,
    /// Why it was sent.
    pub purpose: MessagePurpose,
    /// How far it has got.
    pub state: MessageState,
}

/// The answer given to a reconciliation request, kept so that a repeated request gets the
/// identical answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileRecord {
    /// blake2b-256 of what the request asks: the canonical CBOR `[vouchers, req_val]`.
    #[serde(with = "strict_bytes")]
    pub request_hash: Vec<u8>,
    /// The channel.
    pub channel: ChannelId,
    /// The encoded response.
    #[serde(with = "strict_bytes")]
    pub response: Vec<u8>,
}

/// A signed record binding a Filecoin key address to a libp2p peer, as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// The key address.
    pub address: Address,
    /// The record's sequence number (a higher one replaces a lower).
    pub sequence: u64,
    /// The encoded signed record.
    #[serde(with = "strict_bytes")]
    pub envelope: Vec<u8>,
}

/// A payee's invoice secret, kept under its payment hash so that the payee can reveal it
/// when paid. A store holds at most one record per payment hash: a second, different one is
/// refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceSecretRecord {
    /// blake2b-256 of the secret.
    #[serde(with = "strict_bytes")]
    pub payment_hash: Vec<u8>,
    /// The 32-byte secret.
    #[serde(with = "strict_bytes")]
    pub secret: Vec<u8>,
    /// The signed invoice's CBOR.
    #[serde(with = "strict_bytes")]
    pub invoice: Vec<u8>,
}

/// A payment secret this node learned (from a payee, a hub or the chain), kept under its
/// payment hash: from then on the redemption model counts the conditional vouchers locked by
/// that hash (design §3b, §9). Checked before it is written: exactly 32 bytes hashing to
/// `payment_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// blake2b-256 of the secret.
    #[serde(with = "strict_bytes")]
    pub payment_hash: Vec<u8>,
    /// The 32-byte secret.
    #[serde(with = "strict_bytes")]
    pub secret: Vec<u8>,
}

/// This node's part in a routed payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RouteRole {
    /// It pays: P.
    Payer,
    /// It forwards: H.
    Hub,
    /// It is paid: R.
    Payee,
}

/// Where a routed payment stands, from this node's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RouteState {
    /// A conditional voucher was offered (payer) or accepted (hub, payee).
    Offered,
    /// The hub sent its conditional voucher on to the payee.
    Forwarded,
    /// The secret is known.
    Fulfilled,
    /// The conditional vouchers were replaced by unconditional ones.
    Replaced,
    /// The locks passed (by the confirmation depth) unredeemed; the lanes are free again.
    Expired,
    /// A conditional voucher was redeemed on chain with the secret.
    Redeemed,
}

/// One leg of a route: a conditional voucher on a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    /// The channel's robust address.
    pub channel: Address,
    /// The conditional voucher's lane.
    pub lane: u64,
    /// Its nonce.
    pub nonce: u64,
    /// Its cumulative amount on the lane.
    pub amount: TokenAmount,
    /// Its `time_lock_max`.
    pub lock: ChainEpoch,
    /// The peer at the other end, if known (a libp2p peer ID as text).
    pub peer: Option<String>,
}

/// A routed payment as this node keeps it, under its payment hash (one route per hash).
/// The node drives its state; the manager keeps the vouchers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRecord {
    /// blake2b-256 of the payee's secret.
    #[serde(with = "strict_bytes")]
    pub payment_hash: Vec<u8>,
    /// This node's part.
    pub role: RouteRole,
    /// Where it stands.
    pub state: RouteState,
    /// The signed invoice's CBOR.
    #[serde(with = "strict_bytes")]
    pub invoice: Vec<u8>,
    /// The conditional voucher this node holds (hub, payee).
    pub inbound: Option<Leg>,
    /// The conditional voucher this node signed (payer, hub).
    pub outbound: Option<Leg>,
    /// The hub's fee.
    pub fee: TokenAmount,
    /// The secret, once known.
    pub secret: Option<Vec<u8>>,
    /// The hub's deadline `D_H` (hub), if any.
    pub hub_deadline: Option<ChainEpoch>,
    /// The epoch the route began at.
    pub created: ChainEpoch,
}

/// How far the watchtower ([`crate::watch::Watchtower`]) has scanned the chain: one record
/// per store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchCheckpointRecord {
    /// The last epoch scanned.
    pub scanned_through: ChainEpoch,
    /// The last epoch scanned once it was at least the confirmation depth below the head it
    /// was scanned at: a scan resumes above it, and epochs above it are scanned again.
    pub final_through: ChainEpoch,
}

/// One write of a [`Batch`].
// Batches are short-lived and a handful of writes long; boxing the channel record would
// cost an allocation on every write for no saving that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Insert or replace a channel.
    Channel(ChannelRecord),
    /// Insert or replace a voucher (keyed by channel, lane and nonce).
    Voucher(VoucherRecord),
    /// Insert or replace a message (keyed by CID).
    Message(MessageRecord),
    /// Insert or replace a reconciliation record (keyed by request hash).
    Reconcile(ReconcileRecord),
    /// Insert or replace a peer record (keyed by address).
    Peer(PeerRecord),
    /// Insert an invoice secret (keyed by payment hash); refused when another record holds
    /// that hash.
    InvoiceSecret(InvoiceSecretRecord),
    /// Insert a learned payment secret (keyed by payment hash).
    Secret(SecretRecord),
    /// Insert or replace a route (keyed by payment hash).
    Route(RouteRecord),
    /// Insert or replace the watchtower's checkpoint.
    WatchCheckpoint(WatchCheckpointRecord),
}

/// Writes applied together or not at all.
pub type Batch = Vec<Write>;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, corruption).
    #[error("store backend: {0}")]
    Backend(String),
    /// A record could not be encoded or decoded.
    #[error("store record {key}: {reason}")]
    Codec {
        /// The record's key, printable.
        key: String,
        /// What went wrong.
        reason: String,
    },
    /// A write named something that does not exist (e.g. a voucher for an unknown channel).
    #[error("store: {0}")]
    Invalid(String),
}

/// Durable storage for the manager.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// A fresh channel ID, never handed out before.
    fn next_channel_id(&self) -> Result<ChannelId, StoreError>;
    /// Applies every write of `batch` atomically; visible at once, durable after
    /// [`Store::durable`].
    fn apply(&self, batch: Batch) -> Result<(), StoreError>;
    /// Resolves once every write applied before the call is on disk. Concurrent callers
    /// share flushes.
    async fn durable(&self) -> Result<(), StoreError>;

    /// A channel by ID.
    fn channel(&self, id: ChannelId) -> Result<Option<ChannelRecord>, StoreError>;
    /// A channel by its robust or ID address.
    fn channel_by_address(&self, addr: &Address) -> Result<Option<ChannelRecord>, StoreError>;
    /// Every channel, by ID.
    fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError>;

    /// A voucher by channel, lane and nonce.
    fn voucher(
        &self,
        channel: ChannelId,
        lane: u64,
        nonce: u64,
    ) -> Result<Option<VoucherRecord>, StoreError>;
    /// Every voucher of a channel, by lane then nonce.
    fn vouchers(&self, channel: ChannelId) -> Result<Vec<VoucherRecord>, StoreError>;
    /// The vouchers of one lane of a channel whose nonce is at least `from`, by nonce: what
    /// a lane's later vouchers are looked up with, without reading the rest of the channel.
    fn lane_vouchers(
        &self,
        channel: ChannelId,
        lane: u64,
        from: u64,
    ) -> Result<Vec<VoucherRecord>, StoreError> {
        let mut found = self.vouchers(channel)?;
        found.retain(|r| r.voucher.lane == lane && r.voucher.nonce >= from);
        Ok(found)
    }
    /// For each lane of a channel, the voucher of highest nonce that `keep` accepts (lanes
    /// where it accepts none are left out), by lane. A store that orders its keys walks each
    /// lane back from its top instead of reading every voucher.
    fn lane_tops(
        &self,
        channel: ChannelId,
        keep: &(dyn Fn(&VoucherRecord) -> bool + Sync),
    ) -> Result<Vec<VoucherRecord>, StoreError> {
        let mut tops: BTreeMap<u64, VoucherRecord> = BTreeMap::new();
        for r in self.vouchers(channel)? {
            if keep(&r) {
                tops.insert(r.voucher.lane, r);
            }
        }
        Ok(tops.into_values().collect())
    }

    /// A message by CID.
    fn message(&self, cid: &Cid) -> Result<Option<MessageRecord>, StoreError>;
    /// Every recorded message.
    fn messages(&self) -> Result<Vec<MessageRecord>, StoreError>;

    /// A reconciliation record by request hash.
    fn reconcile(&self, request_hash: &[u8]) -> Result<Option<ReconcileRecord>, StoreError>;
    /// A peer record by key address.
    fn peer(&self, address: &Address) -> Result<Option<PeerRecord>, StoreError>;
    /// An invoice secret by payment hash.
    fn invoice_secret(
        &self,
        payment_hash: &[u8],
    ) -> Result<Option<InvoiceSecretRecord>, StoreError>;
    /// A learned payment secret by payment hash.
    fn secret(&self, payment_hash: &[u8]) -> Result<Option<SecretRecord>, StoreError>;
    /// A route by payment hash.
    fn route(&self, payment_hash: &[u8]) -> Result<Option<RouteRecord>, StoreError>;
    /// Every route, by payment hash.
    fn routes(&self) -> Result<Vec<RouteRecord>, StoreError>;
    /// The watchtower's checkpoint, if it has scanned anything yet.
    fn watch_checkpoint(&self) -> Result<Option<WatchCheckpointRecord>, StoreError>;
}
