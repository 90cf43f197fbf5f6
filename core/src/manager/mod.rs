//! The payment-channel manager: every channel operation of the node, over the [`Chain`],
//! [`Wallet`] and [`Store`] traits.
//!
//! It owns funds accounting (confirmed, pending, queued, reserved, spent), lanes and lane
//! pooling, voucher creation and validation (through [`crate::actor`]), chain messages
//! (recorded and made durable before they are pushed, tracked until they land, pushed
//! again unchanged after a restart) and the settler, a watchtower that redeems inbound
//! vouchers before a channel settles and collects afterwards.
//!
//! Money rules it keeps: a voucher is signed only if the channel's confirmed funds cover
//! every lane's total; a (lane, nonce) is never issued twice; a voucher is durable before
//! it is returned; an added voucher is durable before the add returns, and only if the actor
//! would accept it now. Operations on one channel are serialized by a per-channel lock.

mod chain_messages;
mod combined_vouchers;
mod conditional;
mod errors;
pub mod funds;
pub mod settler;
mod vouchers;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use cid::Cid;
use tokio::sync::{watch, Mutex, OwnedMutexGuard};

use crate::chain::{Chain, ChainError};
use crate::redemption;
use crate::store::{
    ChannelId, ChannelRecord, Direction, Lifecycle, MessagePurpose, MessageState, Store,
    StoreError, VoucherRecord, Write,
};
use crate::types::{format_address, Address, ChainEpoch, Network, SignedVoucher, TokenAmount};
use crate::wallet::Wallet;

pub use chain_messages::MessageOutcome;
pub use combined_vouchers::ReconcileDraft;
use conditional::{
    check_lane_use, mark_lane, pending_lane_rule, replacement_rule, replaces_held, Creation,
};
pub use conditional::{
    ConditionalError, ConditionalTerms, ConditionalVoucher, ExpireOutcome, PendingConditional,
};
pub use errors::{
    AddVoucherError, ChainMessageError, CheckVoucherError, CombineError, CreateVoucherError,
    FundsError, LaneError, LookupError, NewPaymentError, PartiesError, SettleError, SettlerError,
    SubmitError, WaitError,
};
use errors::{DirectionMismatch, NotOpen};
pub use vouchers::{AddOutcome, NewPayment, VoucherCreateResult, VoucherSpec};
use vouchers::{Added, ChainView, Flush};

/// Keeps a channel's funds between two levels: when available funds fall below
/// `low_water`, one add-funds message brings them back to `high_water`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopUpPolicy {
    /// Top up when available funds fall below this.
    pub low_water: TokenAmount,
    /// Top up to this.
    pub high_water: TokenAmount,
}

/// How the manager behaves.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// The network whose address prefix errors and statuses print.
    pub network: Network,
    /// Epochs a message must be buried under before it counts as landed.
    pub confidence: u64,
    /// How long one wait for a message lasts before it is asked again.
    pub wait_timeout: Duration,
    /// The top-up policy of every outbound channel without its own.
    pub top_up: Option<TopUpPolicy>,
    /// Top-up policies of particular channels (by robust address).
    pub top_up_per_channel: BTreeMap<Address, TopUpPolicy>,
    /// How often the settler looks at the chain.
    pub settler_interval: Duration,
    /// Whether the settler collects inbound channels after they settle.
    pub collect_inbound: bool,
    /// Epochs past `settling_at` the settler waits before collecting an inbound channel,
    /// leaving the payer (whose refund it is) the first chance: a collect only one side
    /// sends costs one message instead of two, the second of which would fail.
    pub collect_inbound_delay: u64,
    /// What a payee takes on the payment path and how it counts it (design §3b).
    pub intake: crate::redemption::IntakePolicy,
    /// The timing parameters of routed payments (design §9): the confirmation depth after
    /// which a conditional voucher's lane is free again, and the margin `S + conf` before a
    /// lock by which the settler lands a conditional voucher with its secret.
    pub route: crate::route::RouteParams,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            network: Network::Testnet,
            confidence: 0,
            wait_timeout: Duration::from_secs(60),
            top_up: None,
            top_up_per_channel: BTreeMap::new(),
            settler_interval: Duration::from_secs(1),
            collect_inbound: true,
            collect_inbound_delay: 20,
            intake: crate::redemption::IntakePolicy::default(),
            route: crate::route::RouteParams::default(),
        }
    }
}

impl ManagerConfig {
    /// The defaults on `network`: its address prefix, its confidence, a settler that looks
    /// at the chain once an epoch, and an intake that takes `min_settle_height` up to the
    /// actor's settle delay ahead (see [`crate::network::PRESETS`]).
    pub fn for_network(network: crate::network::FilNetwork) -> Self {
        let preset = network.preset();
        let defaults = ManagerConfig::default();
        ManagerConfig {
            network: preset.address_network,
            confidence: preset.confidence,
            settler_interval: preset.block_time,
            intake: crate::redemption::IntakePolicy {
                max_settle_delay: preset.settle_delay,
                ..defaults.intake.clone()
            },
            route: crate::route::RouteParams::for_confidence(preset.confidence),
            ..defaults
        }
    }
}

/// What `create` and `get` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelHandle {
    /// The store's ID of the channel.
    pub id: ChannelId,
    /// The channel's robust address, if it exists on chain yet.
    pub channel: Option<Address>,
    /// The message to wait for before the channel (or its new funds) can be used; `None`
    /// when nothing needs waiting for.
    pub wait_sentinel: Option<Cid>,
}

/// A channel's funds, in Lotus's `ChannelAvailableFunds` shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailableFunds {
    /// The channel's address, if created.
    pub channel: Option<Address>,
    /// The payer.
    pub from: Address,
    /// The payee.
    pub to: Address,
    /// Funds confirmed on chain.
    pub confirmed: TokenAmount,
    /// Funds in a message that has not landed.
    pub pending: TokenAmount,
    /// Confirmed funds neither reserved nor spent by vouchers.
    pub non_reserved: TokenAmount,
    /// What will be available once pending and queued funds land.
    pub pending_available: TokenAmount,
    /// The message carrying pending funds.
    pub pending_wait_sentinel: Option<Cid>,
    /// Funds queued for the next message.
    pub queued: TokenAmount,
    /// Funds spent by vouchers.
    pub voucher_redeemed: TokenAmount,
}

/// One lane of a channel, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneStatus {
    /// The lane.
    pub lane: u64,
    /// The highest nonce this node holds on it.
    pub nonce: u64,
    /// Its cumulative amount.
    pub amount: TokenAmount,
    /// Redeemed on chain.
    pub redeemed_on_chain: TokenAmount,
    /// Closed by a merge.
    pub closed: bool,
}

/// Everything about a channel in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStatus {
    /// The store's ID.
    pub id: ChannelId,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Our key on the channel.
    pub control: Address,
    /// The channel's robust address.
    pub channel: Option<Address>,
    /// The payer.
    pub from: Address,
    /// The payee.
    pub to: Address,
    /// Where it is in its life.
    pub lifecycle: Lifecycle,
    /// Funds confirmed on chain.
    pub confirmed: TokenAmount,
    /// Funds in flight.
    pub pending: TokenAmount,
    /// The message carrying them.
    pub pending_message: Option<Cid>,
    /// Funds queued for the next message.
    pub queued: TokenAmount,
    /// The sum of the lanes' cumulative amounts.
    pub voucher_redeemed: TokenAmount,
    /// Reserved funds.
    pub reserved: TokenAmount,
    /// Confirmed funds neither reserved nor spent.
    pub available: TokenAmount,
    /// The next lane `allocate_lane` hands out.
    pub next_lane: u64,
    /// Whether the channel is settling (or settled).
    pub settling: bool,
    /// The epoch at which it settles (0 when not settling).
    pub settling_at: ChainEpoch,
    /// Its lanes.
    pub lanes: Vec<LaneStatus>,
    /// Why its creation failed.
    pub create_error: Option<String>,
}

/// A lane's highest voucher, as cached under the channel's lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct LaneTip {
    nonce: u64,
    amount: TokenAmount,
}

/// What the manager keeps in memory for a channel, under its lock: the tips of its lanes,
/// derived from the store on first use, and the vouchers being signed.
#[derive(Debug, Default)]
struct ChannelCache {
    loaded: bool,
    lanes: BTreeMap<u64, LaneTip>,
    /// Vouchers given a nonce and amount under the lock (their lane tips advanced) and
    /// being signed and stored outside it.
    in_flight: Arc<InFlight>,
    /// The stored vouchers voucher intake plans with.
    held: Held,
    /// Outbound: the lanes whose latest voucher is a conditional one this node signed that
    /// has neither been replaced nor expired — no other voucher goes on them (design §9).
    pending: BTreeMap<u64, conditional::Pending>,
    /// Outbound: every payment hash a conditional voucher of this channel was signed with
    /// (one conditional voucher per hash on a channel), so that an offer is checked without
    /// reading the channel's history.
    hashes: BTreeSet<Vec<u8>>,
}

/// How many of a lane's highest-nonce vouchers intake keeps in memory to plan with (lower
/// ones matter only when every higher one fails; the settler plans over all of them).
const HELD_PER_LANE: usize = 8;

/// A channel's stored vouchers as the redemption model needs them: per lane the
/// highest-nonce ones (at most [`HELD_PER_LANE`], highest first), and every voucher that
/// merges lanes.
#[derive(Debug, Default)]
pub(super) struct Held {
    lanes: BTreeMap<u64, Vec<SignedVoucher>>,
    merging: Vec<SignedVoucher>,
    /// The channel addresses the vouchers name, each once (one or two, however many
    /// vouchers there are): all resolve to the channel, since each voucher was validated.
    addrs: Vec<Address>,
}

impl Held {
    fn insert(&mut self, voucher: SignedVoucher) {
        if !self.addrs.contains(&voucher.channel_addr) {
            self.addrs.push(voucher.channel_addr);
        }
        if !voucher.merges.is_empty() {
            self.merging.push(voucher);
            return;
        }
        let lane = self.lanes.entry(voucher.lane).or_default();
        let at = lane.partition_point(|v| v.nonce > voucher.nonce);
        if lane.get(at).is_some_and(|v| v.nonce == voucher.nonce) {
            return;
        }
        lane.insert(at, voucher);
        lane.truncate(HELD_PER_LANE);
    }

    /// Every voucher held, without collecting them.
    fn iter(&self) -> impl Iterator<Item = &SignedVoucher> {
        self.lanes.values().flatten().chain(&self.merging)
    }

    /// The redemption model's best state over every voucher held, with `extra` held after
    /// them: [`redemption::best_state`] over [`Held::iter`] (then `extra`), read lane by lane
    /// where no voucher merges lanes ([`redemption::best_state_by_lane`]).
    fn best_state(
        &self,
        situation: &redemption::Situation,
        extra: Option<&SignedVoucher>,
    ) -> crate::actor::ChannelState {
        if !self.merging.is_empty() {
            let all: Vec<&SignedVoucher> = self.iter().chain(extra).collect();
            return redemption::best_state(situation, &all);
        }
        let lanes: Vec<&[SignedVoucher]> = self.lanes.values().map(Vec::as_slice).collect();
        redemption::best_state_by_lane(situation, &lanes, extra)
    }

    /// The conditional vouchers whose secrets intake looks up: on each lane those above its
    /// highest unconditional voucher, and the merging ones. A conditional voucher below an
    /// unconditional one was replaced (or the payer moved past it); leaving its secret out
    /// can only make the model value the channel less, never more, and keeps an intake's
    /// lookups to the routes still pending instead of every route the channel carried.
    fn live_conditionals(&self) -> impl Iterator<Item = &SignedVoucher> {
        let tops = self
            .lanes
            .values()
            .flat_map(|lane| lane.iter().take_while(|v| !v.secret_hash.is_empty()));
        tops.chain(self.merging.iter().filter(|v| !v.secret_hash.is_empty()))
    }

    /// The channel addresses the vouchers held name (and vouchers once held: each resolves
    /// to the channel all the same), each once.
    fn channel_addrs(&self) -> &[Address] {
        &self.addrs
    }

    /// The highest-nonce plain voucher held on a lane.
    fn top(&self, lane: u64) -> Option<&SignedVoucher> {
        self.lanes.get(&lane).and_then(|v| v.first())
    }

    /// The plain vouchers held on a lane, highest nonce first.
    fn lane(&self, lane: u64) -> &[SignedVoucher] {
        self.lanes.get(&lane).map_or(&[], Vec::as_slice)
    }

    /// The lanes with plain vouchers held.
    fn lanes(&self) -> impl Iterator<Item = u64> + '_ {
        self.lanes.keys().copied()
    }
}

/// A count of vouchers being created on a channel outside its lock. A holder of the lock
/// that must see every issued voucher in the store waits for it to reach zero; no new one
/// can start meanwhile, since starting needs the lock.
#[derive(Debug, Default)]
struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    settled: tokio::sync::Notify,
}

impl InFlight {
    /// Counts one more voucher in flight until the guard is dropped.
    fn enter(this: &Arc<Self>) -> InFlightGuard {
        this.count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        InFlightGuard(this.clone())
    }

    /// Waits until no voucher is in flight. Call with the channel's lock held.
    async fn settle(&self) {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(std::sync::atomic::Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One voucher in flight; dropping it (stored, or failed) ends it.
struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            self.0.settled.notify_waiters();
        }
    }
}

impl ChannelCache {
    fn spent(&self) -> TokenAmount {
        self.lanes.values().map(|t| t.amount.clone()).sum()
    }
}

/// Locks taken in turn, one per key (a from/to pair, a sender).
type Turns<K> = StdMutex<HashMap<K, Arc<Mutex<()>>>>;

/// The payment-channel manager. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct PaymentChannelManager {
    inner: Arc<Inner>,
}

struct Inner {
    chain: Arc<dyn Chain>,
    wallet: Arc<dyn Wallet>,
    store: Arc<dyn Store>,
    config: ManagerConfig,
    channels: StdMutex<HashMap<ChannelId, Arc<Mutex<ChannelCache>>>>,
    /// Channel IDs by address, learned from the store: an address never changes channel,
    /// so hot paths resolve it once instead of decoding the record twice per call. Only
    /// addresses of stored channels are kept.
    ids: StdMutex<HashMap<Address, ChannelId>>,
    pairs: Turns<(Address, Address)>,
    senders: Turns<Address>,
    /// Per channel, how many queues of funds were sent in an add-funds message since the
    /// start, and the last such message (what a cancelled reservation looks for).
    folds: StdMutex<HashMap<ChannelId, (u64, Option<Cid>)>>,
    /// Held while a channel first seen in a voucher is learned and stored with it, so that
    /// concurrent first vouchers learn it once (one lock: bad input cannot grow a map).
    learning: Mutex<()>,
    /// Bumped whenever a message lands or a channel's record changes; waiters re-check.
    changed: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
}

impl PaymentChannelManager {
    /// A manager over `chain`, `wallet` and `store`. Call [`Self::start`] to resume tracking
    /// recorded messages and run the settler.
    pub fn new(
        chain: Arc<dyn Chain>,
        wallet: Arc<dyn Wallet>,
        store: Arc<dyn Store>,
        config: ManagerConfig,
    ) -> Self {
        PaymentChannelManager {
            inner: Arc::new(Inner {
                chain,
                wallet,
                store,
                config,
                channels: StdMutex::new(HashMap::new()),
                ids: StdMutex::new(HashMap::new()),
                pairs: StdMutex::new(HashMap::new()),
                senders: StdMutex::new(HashMap::new()),
                folds: StdMutex::new(HashMap::new()),
                learning: Mutex::new(()),
                changed: watch::channel(0).0,
                shutdown: watch::channel(false).0,
            }),
        }
    }

    /// Restart recovery and background work: every recorded message is found again — one
    /// recorded but never pushed is pushed again, unchanged, so it can never land twice —
    /// and awaited; then the settler starts. Needs a tokio runtime.
    #[tracing::instrument(name = "paych_start", level = "debug", skip_all)]
    pub async fn start(&self) -> Result<(), ChainMessageError> {
        self.recover().await?;
        settler::spawn(self.clone());
        Ok(())
    }

    /// Stops background work and makes every write durable.
    #[tracing::instrument(name = "paych_shutdown", level = "debug", skip_all)]
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.inner.shutdown.send_replace(true);
        self.inner.store.durable().await?;
        Ok(())
    }

    /// The chain the manager uses.
    pub fn chain(&self) -> &Arc<dyn Chain> {
        &self.inner.chain
    }

    /// The store the manager writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The wallet the manager signs with.
    pub fn wallet(&self) -> &Arc<dyn Wallet> {
        &self.inner.wallet
    }

    /// The network whose address prefix the manager's errors and statuses print (its
    /// configuration's [`ManagerConfig::network`]).
    pub fn network(&self) -> Network {
        self.inner.config.network
    }

    fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    fn fmt(&self, addr: &Address) -> String {
        format_address(addr, self.inner.config.network)
    }

    fn notify(&self) {
        self.inner.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn channel_lock(&self, id: ChannelId) -> Arc<Mutex<ChannelCache>> {
        let mut map = self.inner.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id).or_default().clone()
    }

    fn pair_lock(&self, from: Address, to: Address) -> Arc<Mutex<()>> {
        let mut map = self.inner.pairs.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((from, to)).or_default().clone()
    }

    fn sender_lock(&self, from: Address) -> Arc<Mutex<()>> {
        let mut map = self.inner.senders.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(from).or_default().clone()
    }

    /// How many queues of funds the channel sent, and the last message that carried one.
    fn folds(&self, id: ChannelId) -> (u64, Option<Cid>) {
        let map = self.inner.folds.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&id).copied().unwrap_or_default()
    }

    /// Counts a queue of funds sent in the message `cid` (under the channel's lock).
    fn record_fold(&self, id: ChannelId, cid: Cid) {
        let mut map = self.inner.folds.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(id).or_default();
        *entry = (entry.0.wrapping_add(1), Some(cid));
    }

    /// Loads a channel's lane tips into its cache, once.
    fn load_cache(&self, id: ChannelId, cache: &mut ChannelCache) -> Result<(), StoreError> {
        if cache.loaded {
            return Ok(());
        }
        let mut merging = Vec::new();
        for record in self.inner.store.vouchers(id)? {
            cache.held.insert(record.voucher.clone());
            conditional::track(&mut cache.pending, &record);
            if !record.voucher.secret_hash.is_empty() {
                cache.hashes.insert(record.voucher.secret_hash.clone());
            }
            let v = &record.voucher;
            let tip = cache.lanes.entry(v.lane).or_default();
            if v.nonce >= tip.nonce {
                // A conditional voucher of ours that expired unredeemed keeps its nonce
                // (never issued again) but no longer counts in the lane's amount.
                let amount = match conditional::expired_unredeemed(&record) {
                    true => tip.amount.clone(),
                    false => v.amount.clone(),
                };
                *tip = LaneTip { nonce: v.nonce, amount };
            }
            if !v.merges.is_empty() {
                merging.push(record.voucher);
            }
        }
        // A merged lane pays nothing more of its own: its amount is folded into the voucher
        // that merged it.
        for voucher in &merging {
            for merge in &voucher.merges {
                let tip = cache.lanes.entry(merge.lane).or_default();
                if merge.nonce > tip.nonce {
                    *tip = LaneTip { nonce: merge.nonce, amount: TokenAmount::default() };
                }
            }
        }
        cache.loaded = true;
        Ok(())
    }

    /// A channel record by address (robust or ID).
    fn record_by_address(&self, channel: &Address) -> Result<ChannelRecord, LookupError> {
        self.inner
            .store
            .channel_by_address(channel)?
            .ok_or_else(|| LookupError::UnknownChannel(self.fmt(channel)))
    }

    /// The ID of the channel with this address (robust or ID).
    fn channel_id(&self, channel: &Address) -> Result<ChannelId, LookupError> {
        if let Some(id) = self.inner.ids.lock().unwrap_or_else(|p| p.into_inner()).get(channel) {
            return Ok(*id);
        }
        let id = self.record_by_address(channel)?.id;
        self.inner.ids.lock().unwrap_or_else(|p| p.into_inner()).insert(*channel, id);
        Ok(id)
    }

    fn record(&self, id: ChannelId) -> Result<ChannelRecord, LookupError> {
        self.inner.store.channel(id)?.ok_or_else(|| LookupError::UnknownChannel(format!("#{id}")))
    }

    fn expect_direction(
        &self,
        record: &ChannelRecord,
        expected: Direction,
    ) -> Result<(), DirectionMismatch> {
        if record.direction != expected {
            return Err(DirectionMismatch::WrongDirection {
                channel: self.describe(record),
                actual: record.direction,
                expected,
            });
        }
        Ok(())
    }

    fn describe(&self, record: &ChannelRecord) -> String {
        match &record.channel {
            Some(addr) => self.fmt(addr),
            None => format!("#{} (being created)", record.id),
        }
    }

    /// Refuses a channel that is not open.
    fn expect_open(&self, record: &ChannelRecord) -> Result<(), NotOpen> {
        if record.lifecycle != Lifecycle::Open {
            return Err(NotOpen::ChannelNotOpen {
                channel: self.describe(record),
                lifecycle: record.lifecycle,
            });
        }
        Ok(())
    }

    /// A channel's record, checked for `direction` and read again under the channel's lock,
    /// which the answer holds.
    async fn locked(
        &self,
        channel: &Address,
        direction: Direction,
    ) -> Result<(OwnedMutexGuard<ChannelCache>, ChannelRecord), LaneError> {
        let record = self.record_by_address(channel)?;
        self.expect_direction(&record, direction)?;
        let guard = self.channel_lock(record.id).lock_owned().await;
        let record = self.record(record.id)?;
        Ok((guard, record))
    }

    /// Purposes of this channel's messages that have not landed.
    fn in_flight(&self, id: ChannelId) -> Result<Vec<MessagePurpose>, StoreError> {
        Ok(self
            .inner
            .store
            .messages()?
            .into_iter()
            .filter(|m| m.is_open() && m.purpose.channel() == id)
            .map(|m| m.purpose)
            .collect())
    }

    /// This node's message for channel `id` of the kind `kind` picks that is in flight or
    /// landed with success, if any: what a settle or collect asked again answers.
    fn own_message(
        &self,
        id: ChannelId,
        kind: impl Fn(&MessagePurpose) -> bool,
    ) -> Result<Option<Cid>, StoreError> {
        Ok(self
            .inner
            .store
            .messages()?
            .into_iter()
            .filter(|m| m.purpose.channel() == id && kind(&m.purpose))
            .find(|m| m.is_open() || matches!(m.state, MessageState::Landed { exit_code: 0, .. }))
            .map(|m| m.cid))
    }

    /// Applies `batch` and waits until it is durable.
    /// Writes `batch` under a channel's lock (`guard`) and releases it, without waiting for
    /// a flush: the next caller reads what this one wrote (the store's reads see every
    /// applied write), and the next durable write carries it.
    fn apply_unlocked<G>(&self, guard: G, batch: Vec<Write>) -> Result<(), StoreError> {
        self.inner.store.apply(batch)?;
        drop(guard);
        self.notify();
        Ok(())
    }

    async fn commit(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        self.inner.store.apply(batch)?;
        self.inner.store.durable().await?;
        self.notify();
        Ok(())
    }

    /// Everything about a channel, its lanes included.
    #[tracing::instrument(name = "paych_status", level = "debug", skip_all)]
    pub async fn status(&self, channel: &Address) -> Result<ChannelStatus, LookupError> {
        let record = self.record_by_address(channel)?;
        // Read before taking the channel's lock: a chain read can take a round trip to the
        // node, and vouchers being created on the channel need the lock meanwhile.
        let mut gone = false;
        let on_chain = match &record.channel {
            Some(addr) if !matches!(record.lifecycle, Lifecycle::Collected) => {
                match self.inner.chain.channel(addr).await {
                    Ok(on_chain) => Some(on_chain),
                    Err(ChainError::NotFound(_)) => {
                        // Collected by either side: the status says so.
                        gone = true;
                        self.mark_gone(record.id).await?;
                        None
                    }
                    Err(_) => None,
                }
            }
            _ => None,
        };
        let lock = self.channel_lock(record.id);
        let mut cache = lock.lock().await;
        self.load_cache(record.id, &mut cache)?;
        let mut record = self.record(record.id)?;
        if gone {
            // Stored only where the chain could have collected it (see `mark_gone`).
            let _ = record.mark_collected();
        }
        let lanes = cache
            .lanes
            .iter()
            .map(|(lane, tip)| LaneStatus {
                lane: *lane,
                nonce: tip.nonce,
                amount: tip.amount.clone(),
                redeemed_on_chain: on_chain
                    .as_ref()
                    .and_then(|c| c.lane(*lane))
                    .map(|l| l.redeemed.clone())
                    .unwrap_or_default(),
                closed: record.closed_lanes.contains(lane),
            })
            .collect();
        let spent = cache.spent();
        Ok(ChannelStatus {
            id: record.id,
            direction: record.direction,
            control: record.control,
            channel: record.channel,
            from: record.from,
            to: record.to,
            lifecycle: record.lifecycle,
            available: funds::available(&record, &spent),
            confirmed: record.confirmed.clone(),
            pending: record.pending.clone(),
            pending_message: record.pending_message,
            queued: record.queued.clone(),
            voucher_redeemed: spent,
            reserved: record.reserved.clone(),
            next_lane: record.next_lane,
            settling: record.settling_at != 0,
            settling_at: record.settling_at,
            lanes,
            create_error: record.create_error.clone(),
        })
    }

    // ----- lanes --------------------------------------------------------------------

    /// A fresh lane, never handed out before on this channel, in either direction (Lotus's
    /// `AllocateLane` serves any tracked channel; on an inbound channel the lane is one no
    /// voucher received so far uses).
    #[tracing::instrument(name = "paych_allocate_lane", level = "debug", skip_all)]
    pub async fn allocate_lane(&self, channel: &Address) -> Result<u64, LaneError> {
        let record = self.record_by_address(channel)?;
        let lock = self.channel_lock(record.id);
        let _guard = lock.lock().await;
        let mut record = self.record(record.id)?;
        let lane = record.next_lane;
        record.next_lane += 1;
        self.commit(vec![Write::Channel(record)]).await?;
        Ok(lane)
    }

    /// Leases a lane for a payment flow from the channel's pool: the lowest lane a finished
    /// flow returned, or a fresh one. The flow continues the lane's cumulative amount.
    ///
    /// The lease is written, not flushed: it becomes durable with the first voucher signed on
    /// the lane (whose flush comes before the voucher leaves the node). A stop before that
    /// loses a lease nothing was signed on — the lane is in the pool again, as it should be.
    #[tracing::instrument(name = "paych_lease_lane", level = "debug", skip_all)]
    pub async fn lease_lane(&self, channel: &Address) -> Result<u64, LaneError> {
        let (guard, mut record) = self.locked(channel, Direction::Outbound).await?;
        // A lane closed by a merge never goes back to the pool; skip any found there.
        let closed = record.closed_lanes.clone();
        record.free_lanes.retain(|lane| !closed.contains(lane));
        let lane = if record.free_lanes.is_empty() {
            let mut lane = record.next_lane;
            while closed.contains(&lane) {
                lane = lane.saturating_add(1);
            }
            record.next_lane = lane.saturating_add(1);
            lane
        } else {
            record.free_lanes.remove(0)
        };
        self.apply_unlocked(guard, vec![Write::Channel(record)])?;
        Ok(lane)
    }

    /// Returns a leased lane to the pool (a lane closed by a merge is not reused). The
    /// return is written, not flushed: the next durable write carries it, and a stop before
    /// that leaves the lane leased — never handed out twice.
    #[tracing::instrument(name = "paych_return_lane", level = "debug", skip_all)]
    pub async fn return_lane(&self, channel: &Address, lane: u64) -> Result<(), LaneError> {
        let record = self.record_by_address(channel)?;
        let lock = self.channel_lock(record.id);
        let mut guard = lock.lock().await;
        let mut record = self.record(record.id)?;
        if lane >= record.next_lane || record.closed_lanes.contains(&lane) {
            return Ok(());
        }
        self.load_cache(record.id, &mut guard)?;
        if guard.pending.contains_key(&lane) {
            // A conditional voucher is pending on it: a return that comes late (its flow
            // over, the lane leased again since) must not hand it to another flow.
            tracing::debug!(lane, "a lane with a pending conditional voucher stays leased");
            return Ok(());
        }
        if let Err(at) = record.free_lanes.binary_search(&lane) {
            record.free_lanes.insert(at, lane);
        }
        Ok(self.apply_unlocked(guard, vec![Write::Channel(record)])?)
    }

    /// Settles a channel (either direction), returning the message's CID at once. A settle
    /// this node already sent — in flight, or landed — is answered again rather than sent
    /// twice (the second would fail on chain: the actor refuses to settle a settling channel),
    /// so the caller's wait for it succeeds. A channel the chain shows settling or collected
    /// otherwise (by the other side) is refused with its lifecycle, read from the chain.
    #[tracing::instrument(name = "paych_settle", level = "debug", skip_all)]
    pub async fn settle(&self, channel: &Address) -> Result<Cid, SettleError> {
        let id = self.record_by_address(channel)?.id;
        let lock = self.channel_lock(id);
        let _guard = lock.lock().await;
        let record = self.record(id)?;
        if record.lifecycle != Lifecycle::Collected {
            let own = self.own_message(id, |p| matches!(p, MessagePurpose::Settle { .. }))?;
            if let Some(cid) = own {
                return Ok(cid);
            }
        }
        let record = match record.lifecycle {
            Lifecycle::Open => self.lifecycle_on_chain(record).await?,
            _ => record,
        };
        if record.lifecycle != Lifecycle::Open {
            return Err(SettleError::ChannelNotOpen {
                channel: self.describe(&record),
                lifecycle: record.lifecycle,
            });
        }
        Ok(self.send_channel_method(&record, MessagePurpose::Settle { channel: record.id }).await?)
    }

    /// Collects a settled channel, returning the message's CID at once. A collect this node
    /// already sent — the settler's, or an earlier call's; in flight, or landed — is
    /// answered again rather than sent twice (the second would fail on chain: the actor is
    /// gone), so the caller's wait for it succeeds. A channel collected by the other side is
    /// refused as `Collected`.
    #[tracing::instrument(name = "paych_collect", level = "debug", skip_all)]
    pub async fn collect(&self, channel: &Address) -> Result<Cid, SettleError> {
        let id = self.record_by_address(channel)?.id;
        let lock = self.channel_lock(id);
        let _guard = lock.lock().await;
        if let Some(cid) = self.own_message(id, |p| matches!(p, MessagePurpose::Collect { .. }))? {
            return Ok(cid);
        }
        let record = self.record(id)?;
        let record = match record.lifecycle {
            Lifecycle::Settling | Lifecycle::Settled | Lifecycle::Open => {
                self.lifecycle_on_chain(record).await?
            }
            _ => record,
        };
        if !matches!(record.lifecycle, Lifecycle::Settling | Lifecycle::Settled | Lifecycle::Open) {
            return Err(SettleError::ChannelNotOpen {
                channel: self.describe(&record),
                lifecycle: record.lifecycle,
            });
        }
        Ok(self
            .send_channel_method(&record, MessagePurpose::Collect { channel: record.id })
            .await?)
    }

    /// A channel's record with what the chain says of its life: collected once its actor is
    /// gone, settling or settled once the chain shows `settling_at` (recorded, as the settler
    /// records them). A look only: when the chain cannot be read, the record is answered as
    /// it is, and the message about to be sent meets the chain's failure itself.
    async fn lifecycle_on_chain(
        &self,
        record: ChannelRecord,
    ) -> Result<ChannelRecord, SettleError> {
        let Some(addr) = record.channel else { return Ok(record) };
        let settling_at = match self.inner.chain.channel(&addr).await {
            Ok(on_chain) => on_chain.state.settling_at,
            Err(ChainError::NotFound(_)) => {
                self.mark_gone(record.id).await?;
                // Answered gone for this call even where nothing was recorded.
                let mut record = self.record(record.id)?;
                let _ = record.mark_collected();
                return Ok(record);
            }
            Err(e) => {
                tracing::debug!(channel = record.id, error = %e, "channel state unread");
                return Ok(record);
            }
        };
        if settling_at == 0 || record.settling_at == settling_at {
            return Ok(record);
        }
        let Ok(head) = self.inner.chain.head().await else { return Ok(record) };
        let mut updated = record.clone();
        match updated.settling_seen(settling_at, head) {
            Ok(()) => {
                self.commit(vec![Write::Channel(updated.clone())]).await?;
                Ok(updated)
            }
            Err(e) => {
                tracing::warn!(channel = record.id, error = %e, "settling seen");
                Ok(record)
            }
        }
    }

    /// Records that a channel's actor is gone from the chain: it was collected, by either
    /// side. The settler, `status`, settle and collect and the voucher operations all learn
    /// it this way, the first time they read the chain after it happened.
    ///
    /// An actor leaves the chain only by a `Collect` at or after its `settling_at`, so the
    /// record is marked only when it knows `settling_at` and the head has reached it. A
    /// channel read as missing before that (a node lagging behind, a reorganisation past the
    /// channel's creation) is answered gone by the caller for that call only: recording it
    /// would make a payee stop counting and submitting vouchers the chain may still pay.
    async fn mark_gone(&self, id: ChannelId) -> Result<(), StoreError> {
        let Some(mut record) = self.inner.store.channel(id)? else { return Ok(()) };
        if record.lifecycle == Lifecycle::Collected {
            return Ok(());
        }
        let collectable = record.settling_at > 0
            && matches!(self.inner.chain.head().await, Ok(head) if head >= record.settling_at);
        if !collectable {
            tracing::warn!(
                channel = id,
                settling_at = record.settling_at,
                "the channel's actor is missing before it could be collected: not recorded"
            );
            return Ok(());
        }
        if let Err(e) = record.mark_collected() {
            tracing::warn!(channel = id, error = %e, "actor gone");
            return Ok(());
        }
        tracing::info!(channel = id, "the channel's actor is gone: collected");
        self.commit(vec![Write::Channel(record)]).await
    }
}

/// Stored vouchers of a channel whose state matters to a write.
fn mark_submitted(records: Vec<VoucherRecord>, lane: u64, up_to_nonce: u64) -> Vec<Write> {
    records
        .into_iter()
        .filter(|r| r.voucher.lane == lane && r.voucher.nonce <= up_to_nonce)
        .filter_map(|mut r| r.mark_submitted().then_some(Write::Voucher(r)))
        .collect()
}

impl MessageState {
    fn outcome(&self) -> Option<MessageOutcome> {
        match self {
            MessageState::Landed { exit_code, epoch, return_data } => {
                Some(MessageOutcome::Landed {
                    exit_code: *exit_code,
                    epoch: *epoch,
                    return_data: return_data.clone(),
                })
            }
            MessageState::Refused { reason } => {
                Some(MessageOutcome::Refused { reason: reason.clone() })
            }
            MessageState::Recorded | MessageState::Pushed => None,
        }
    }
}
