//! [`SledStore`]: the [`Store`] on sled, with group commit.
//!
//! Every record lives in one sled tree under a one-byte prefix per kind, so a [`Batch`] is
//! one `sled::Batch`: atomic in memory and across a crash. The layout, byte by byte, is in
//! `docs/storage.md`. Writes become durable by group commit, leader–follower style: the first
//! caller of [`Store::durable`] to find no flush running flushes itself, for everyone; callers
//! that arrive while a flush is running are all covered by the next one, led by one of them.
//! The leader flushes on its own thread (a tokio worker, usually): that thread runs nothing
//! else for the length of one sled flush, and at most one thread is ever in a flush. Batches
//! of one key are written as a single sled insert; larger ones are written key by key behind
//! the store's journal (one record holding the whole batch, replayed at open if a stop cut the
//! batch short), which costs no disk sync of its own where sled's `apply_batch` costs two.
//!
//! This module owns the bytes on disk. It never decides what a record should say (that is the
//! manager's job); it only refuses a batch that would leave the store inconsistent — a voucher,
//! message or reconciliation for an unknown channel, an address claimed by two channels, a
//! message filed under the wrong CID — and then writes nothing.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use cid::Cid;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

use super::{
    Batch, ChannelId, ChannelRecord, InvoiceSecretRecord, MessageRecord, PeerRecord,
    ReconcileRecord, RouteRecord, SecretRecord, Store, StoreError, VoucherRecord,
    WatchCheckpointRecord, Write,
};
use crate::types::Address;

/// The tree that holds every record.
const TREE: &[u8] = b"paych-store";

/// The format of the records and keys below; a store in another format is refused.
const FORMAT_VERSION: u64 = 2;
/// The format before the journal (`0x0b`): opened and stamped [`FORMAT_VERSION`], as such a
/// store never holds a journal. A build of that format refuses this one, which it could not
/// recover.
const FORMAT_VERSION_BEFORE_JOURNAL: u64 = 1;

/// Key prefixes, one per kind of record.
mod prefix {
    /// Store metadata: `0x00 ‖ ascii name`.
    pub const META: u8 = 0x00;
    /// Channels: `0x01 ‖ id`.
    pub const CHANNEL: u8 = 0x01;
    /// The address index: `0x02 ‖ address bytes` → channel ID.
    pub const ADDRESS: u8 = 0x02;
    /// Vouchers: `0x03 ‖ channel ‖ lane ‖ nonce`.
    pub const VOUCHER: u8 = 0x03;
    /// Chain messages: `0x04 ‖ CID bytes`.
    pub const MESSAGE: u8 = 0x04;
    /// Reconciliation answers: `0x05 ‖ request hash`.
    pub const RECONCILE: u8 = 0x05;
    /// Peer records: `0x06 ‖ address bytes`.
    pub const PEER: u8 = 0x06;
    /// Invoice secrets: `0x07 ‖ payment hash`.
    pub const INVOICE_SECRET: u8 = 0x07;
    /// Learned payment secrets: `0x08 ‖ payment hash`.
    pub const SECRET: u8 = 0x08;
    /// Routes: `0x09 ‖ payment hash`.
    pub const ROUTE: u8 = 0x09;
    /// The watchtower's checkpoint: `0x0a` alone.
    pub const WATCH_CHECKPOINT: u8 = 0x0a;
    /// The batch being written, while it is: `0x0b` alone (see [`super::Journal`]).
    pub const JOURNAL: u8 = 0x0b;
}

/// Metadata: the format version, a big-endian u64.
const VERSION_NAME: &str = "version";
/// Metadata: the first channel ID not yet reserved, a big-endian u64.
const CHANNEL_IDS_NAME: &str = "channel-ids";

/// The first channel ID a new store hands out.
const FIRST_CHANNEL_ID: ChannelId = 1;
/// Channel IDs reserved (and flushed) at a time, so that an ID is never handed out twice,
/// crash or not, without a flush per ID.
const CHANNEL_ID_BLOCK: u64 = 256;

/// A record's key, typed; [`Key::to_bytes`] is its layout on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Meta(&'static str),
    Channel(ChannelId),
    Address(Address),
    Voucher { channel: ChannelId, lane: u64, nonce: u64 },
    Message(Cid),
    Reconcile(Vec<u8>),
    Peer(Address),
    InvoiceSecret(Vec<u8>),
    Secret(Vec<u8>),
    Route(Vec<u8>),
    WatchCheckpoint,
    Journal,
}

impl Key {
    fn to_bytes(&self) -> Vec<u8> {
        match self {
            Key::Meta(name) => prefixed(prefix::META, name.as_bytes()),
            Key::Channel(id) => prefixed(prefix::CHANNEL, &id.to_be_bytes()),
            Key::Address(addr) => prefixed(prefix::ADDRESS, &addr.to_bytes()),
            Key::Voucher { channel, lane, nonce } => {
                let mut key = voucher_prefix(*channel);
                key.extend_from_slice(&lane.to_be_bytes());
                key.extend_from_slice(&nonce.to_be_bytes());
                key
            }
            Key::Message(cid) => prefixed(prefix::MESSAGE, &cid.to_bytes()),
            Key::Reconcile(hash) => prefixed(prefix::RECONCILE, hash),
            Key::Peer(addr) => prefixed(prefix::PEER, &addr.to_bytes()),
            Key::InvoiceSecret(hash) => prefixed(prefix::INVOICE_SECRET, hash),
            Key::Secret(hash) => prefixed(prefix::SECRET, hash),
            Key::Route(hash) => prefixed(prefix::ROUTE, hash),
            Key::WatchCheckpoint => vec![prefix::WATCH_CHECKPOINT],
            Key::Journal => vec![prefix::JOURNAL],
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Meta(name) => write!(f, "meta/{name}"),
            Key::Channel(id) => write!(f, "channel/{id}"),
            Key::Address(addr) => write!(f, "address/{addr}"),
            Key::Voucher { channel, lane, nonce } => {
                write!(f, "voucher/{channel}/{lane}/{nonce}")
            }
            Key::Message(cid) => write!(f, "message/{cid}"),
            Key::Reconcile(hash) => write!(f, "reconcile/{}", hex::encode(hash)),
            Key::Peer(addr) => write!(f, "peer/{addr}"),
            Key::InvoiceSecret(hash) => write!(f, "invoice-secret/{}", hex::encode(hash)),
            Key::Secret(hash) => write!(f, "secret/{}", hex::encode(hash)),
            Key::Route(hash) => write!(f, "route/{}", hex::encode(hash)),
            Key::WatchCheckpoint => write!(f, "watch-checkpoint"),
            Key::Journal => write!(f, "journal"),
        }
    }
}

fn prefixed(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + rest.len());
    key.push(prefix);
    key.extend_from_slice(rest);
    key
}

/// `0x03 ‖ channel`: every voucher of the channel, in (lane, nonce) order.
fn voucher_prefix(channel: ChannelId) -> Vec<u8> {
    prefixed(prefix::VOUCHER, &channel.to_be_bytes())
}

/// The first key after every voucher of a channel's lane (the next lane's first, or the
/// next prefix's after the last lane).
fn lane_end(channel: ChannelId, lane: u64) -> Vec<u8> {
    match lane.checked_add(1) {
        Some(next) => Key::Voucher { channel, lane: next, nonce: 0 }.to_bytes(),
        None => match channel.checked_add(1) {
            Some(next) => voucher_prefix(next),
            None => vec![prefix::VOUCHER.saturating_add(1)],
        },
    }
}

/// A raw key, printable: hex, since a key that fails to decode may not parse either.
fn raw_key(raw: &[u8]) -> String {
    format!("0x{}", hex::encode(raw))
}

/// A record stored under a key derived from its own fields.
trait Keyed: Serialize + DeserializeOwned {
    fn key(&self) -> Key;
}

impl Keyed for ChannelRecord {
    fn key(&self) -> Key {
        Key::Channel(self.id)
    }
}

impl Keyed for VoucherRecord {
    fn key(&self) -> Key {
        Key::Voucher { channel: self.channel, lane: self.voucher.lane, nonce: self.voucher.nonce }
    }
}

impl Keyed for MessageRecord {
    fn key(&self) -> Key {
        Key::Message(self.cid)
    }
}

impl Keyed for ReconcileRecord {
    fn key(&self) -> Key {
        Key::Reconcile(self.request_hash.clone())
    }
}

impl Keyed for InvoiceSecretRecord {
    fn key(&self) -> Key {
        Key::InvoiceSecret(self.payment_hash.clone())
    }
}

impl Keyed for SecretRecord {
    fn key(&self) -> Key {
        Key::Secret(self.payment_hash.clone())
    }
}

impl Keyed for RouteRecord {
    fn key(&self) -> Key {
        Key::Route(self.payment_hash.clone())
    }
}

impl Keyed for WatchCheckpointRecord {
    fn key(&self) -> Key {
        Key::WatchCheckpoint
    }
}

impl Keyed for PeerRecord {
    fn key(&self) -> Key {
        Key::Peer(self.address)
    }
}

fn backend(e: impl fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn codec(key: impl fmt::Display, reason: impl fmt::Display) -> StoreError {
    StoreError::Codec { key: key.to_string(), reason: reason.to_string() }
}

fn encode<T: Keyed>(record: &T) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    let key = record.key();
    let value = fvm_ipld_encoding::to_vec(record).map_err(|e| codec(&key, e))?;
    Ok((key.to_bytes(), value))
}

/// Decodes the record stored under `raw`, and checks that it belongs there.
fn decode<T: Keyed>(raw: &[u8], value: &[u8]) -> Result<T, StoreError> {
    let record: T = fvm_ipld_encoding::from_slice(value).map_err(|e| codec(raw_key(raw), e))?;
    if record.key().to_bytes() != raw {
        return Err(codec(raw_key(raw), format_args!("holds the record of {}", record.key())));
    }
    Ok(record)
}

fn decode_u64(key: &Key, value: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] =
        value.try_into().map_err(|_| codec(key, format_args!("{} bytes, not 8", value.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

/// The addresses a channel is indexed under.
fn addresses(record: &ChannelRecord) -> Vec<Address> {
    let mut addrs: Vec<Address> = Vec::with_capacity(2);
    for addr in [record.channel, record.id_address].into_iter().flatten() {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    addrs
}

/// What the flushes so far have done, published to every waiter.
#[derive(Debug, Clone, Default)]
struct FlushState {
    /// Every write of a generation up to this one is on disk.
    flushed: u64,
    /// Flushes attempted.
    rounds: u64,
    /// A caller is flushing now (the leader); the others wait for its round.
    leading: bool,
    /// The latest failed flush.
    failure: Option<FlushFailure>,
}

#[derive(Debug, Clone)]
struct FlushFailure {
    /// The round that failed.
    round: u64,
    /// The generation it was to make durable.
    covering: u64,
    /// What sled said.
    reason: String,
}

/// What the store shares with the callers flushing it.
struct Shared {
    db: sled::Db,
    tree: sled::Tree,
    /// Held for writing while a batch is applied, and for reading by every read that spans
    /// more than one key, so that such a read sees a batch whole or not at all (a single
    /// sled get is already atomic; a sled scan is not).
    gate: RwLock<()>,
    /// Channel records decoded, by ID: every channel read once since the store opened, kept
    /// up to date by [`Store::apply`] (under the gate, after sled has the batch). Read and
    /// filled only with the gate held, so a fill can never overwrite a newer write, and a
    /// reader never sees a batch's other records without its channel records.
    channels: Mutex<HashMap<ChannelId, ChannelRecord>>,
    /// Payment hashes' secrets as far as they were read: see [`SecretCache`].
    secrets: Mutex<SecretCache>,
    /// Bumped by every applied batch, after sled has it.
    generation: AtomicU64,
    /// Physical flushes made so far.
    flush_count: AtomicU64,
    flushed: watch::Sender<FlushState>,
}

impl Shared {
    fn read_gate(&self) -> RwLockReadGuard<'_, ()> {
        // The gate guards no data, so a panic elsewhere cannot leave it inconsistent.
        self.gate.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, key: &Key) -> Result<Option<sled::IVec>, StoreError> {
        self.tree.get(key.to_bytes()).map_err(backend)
    }

    fn record<T: Keyed>(&self, key: &Key) -> Result<Option<T>, StoreError> {
        let raw = key.to_bytes();
        match self.tree.get(&raw).map_err(backend)? {
            Some(value) => decode(&raw, &value).map(Some),
            None => Ok(None),
        }
    }

    /// One record, read under the gate: a batch of several keys is written key by key (see
    /// [`Planned::write`]), so a read outside it could see one key of a batch and not another.
    fn point<T: Keyed>(&self, key: &Key) -> Result<Option<T>, StoreError> {
        let _gate = self.read_gate();
        self.record(key)
    }

    fn scan<T: Keyed>(&self, prefix: &[u8]) -> Result<Vec<T>, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .map(|entry| {
                let (raw, value) = entry.map_err(backend)?;
                decode(&raw, &value)
            })
            .collect()
    }

    fn cached_channels(&self) -> MutexGuard<'_, HashMap<ChannelId, ChannelRecord>> {
        // Every change to the map is a single insert: a panic cannot leave it half-done.
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A channel record, from the cache or else read, decoded and cached. The caller holds
    /// the gate (for reading or writing), so no batch lands between the read and the fill.
    fn channel_gated(&self, id: ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        if let Some(record) = self.cached_channels().get(&id) {
            return Ok(Some(record.clone()));
        }
        let record = self.record::<ChannelRecord>(&Key::Channel(id))?;
        if let Some(record) = &record {
            self.cached_channels().insert(id, record.clone());
        }
        Ok(record)
    }

    fn cached_secrets(&self) -> MutexGuard<'_, SecretCache> {
        // Every change to the cache is a single insert or a clear: a panic cannot leave it
        // half-done.
        self.secrets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A secret record of `kind` under `payment_hash`, from the cache or else read and
    /// cached — found or not. The read and the fill happen under the read gate, so no batch
    /// writing the secret lands between them: an absence cached is one no write has undone.
    fn secret_record<T: Keyed + Clone>(
        &self,
        kind: fn(&mut SecretCache) -> &mut HashMap<Vec<u8>, Option<T>>,
        key: Key,
        payment_hash: &[u8],
    ) -> Result<Option<T>, StoreError> {
        let _gate = self.read_gate();
        if let Some(cached) = kind(&mut self.cached_secrets()).get(payment_hash) {
            return Ok(cached.clone());
        }
        let record = self.record::<T>(&key)?;
        let mut cache = self.cached_secrets();
        let entries = kind(&mut cache);
        if entries.len() >= MAX_CACHED_SECRETS {
            entries.clear();
        }
        entries.insert(payment_hash.to_vec(), record.clone());
        Ok(record)
    }

    fn channel_exists(&self, id: ChannelId) -> Result<bool, StoreError> {
        if self.cached_channels().contains_key(&id) {
            return Ok(true);
        }
        self.tree.contains_key(Key::Channel(id).to_bytes()).map_err(backend)
    }

    fn address_owner(&self, addr: &Address) -> Result<Option<ChannelId>, StoreError> {
        let key = Key::Address(*addr);
        self.get(&key)?.map(|value| decode_u64(&key, &value)).transpose()
    }

    /// One round of group commit, run by its leader: a physical flush covering every batch
    /// applied before it starts, published to the callers waiting for it. Answers the
    /// generation it covered, or why it failed.
    fn lead_flush(&self) -> Result<u64, String> {
        let covering = self.generation.load(Ordering::SeqCst);
        let result = self.db.flush();
        self.flush_count.fetch_add(1, Ordering::SeqCst);
        let mut answer = Ok(covering);
        self.flushed.send_modify(|state| {
            state.rounds += 1;
            state.leading = false;
            match &result {
                Ok(_) => state.flushed = state.flushed.max(covering),
                Err(e) => {
                    tracing::warn!(error = %e, "store flush failed");
                    state.failure =
                        Some(FlushFailure { round: state.rounds, covering, reason: e.to_string() });
                    answer = Err(e.to_string());
                }
            }
        });
        answer
    }
}

/// Clears the leader's mark if its round ends without publishing (a panic in sled), so that
/// the callers waiting for it elect another leader instead of hanging. Disarmed once the
/// round has published (by then another caller may lead, and its mark is not ours).
struct LeaderGuard<'a> {
    flushed: &'a watch::Sender<FlushState>,
    armed: bool,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.flushed.send_modify(|state| state.leading = false);
        }
    }
}

/// How many times a leader lets queued tasks run before it flushes, as long as each time
/// some of them wrote: enough for a burst of concurrent writers to join one round, bounded
/// so that a steady stream of writes cannot hold a round back.
const LEADER_YIELDS: usize = 8;

/// Hashes kept per kind of secret in [`SecretCache`]; beyond, the kind's entries are all
/// dropped and read again as asked.
const MAX_CACHED_SECRETS: usize = 16_384;

/// The store's answers for payment hashes' secrets — the invoice secrets this node issued and
/// the secrets it learned — as far as they were asked, found or not, so that the redemption
/// model's lookups (one per conditional voucher a channel holds pending, at every intake on
/// it) do not each read sled. A secret, once written, is never replaced or removed, so a
/// found one stays true; an absent one is replaced by [`Store::apply`] when a batch writes
/// it, under the write gate, and readers fill the cache under the read gate, so an absence
/// can never be cached over a write.
#[derive(Default)]
struct SecretCache {
    issued: HashMap<Vec<u8>, Option<InvoiceSecretRecord>>,
    learned: HashMap<Vec<u8>, Option<SecretRecord>>,
}

impl SecretCache {
    fn issued(&mut self) -> &mut HashMap<Vec<u8>, Option<InvoiceSecretRecord>> {
        &mut self.issued
    }

    fn learned(&mut self) -> &mut HashMap<Vec<u8>, Option<SecretRecord>> {
        &mut self.learned
    }

    /// A batch under the write gate wrote `write`: its secret is known from now on.
    fn written(&mut self, write: &Write) {
        match write {
            Write::InvoiceSecret(r) => {
                self.issued.insert(r.payment_hash.clone(), Some(r.clone()));
            }
            Write::Secret(r) => {
                self.learned.insert(r.payment_hash.clone(), Some(r.clone()));
            }
            _ => {}
        }
    }
}

/// Channel IDs: those below `next` have been handed out; those below `reserved` are
/// recorded on disk as taken.
struct ChannelIds {
    next: ChannelId,
    reserved: ChannelId,
}

/// The [`Store`] on sled.
///
/// Dropping it flushes once more; it blocks for that flush.
pub struct SledStore {
    shared: Arc<Shared>,
    ids: Mutex<ChannelIds>,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("generation", &self.shared.generation.load(Ordering::SeqCst))
            .field("flush_count", &self.flush_count())
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (or creates) the store in the directory `path`.
    ///
    /// If the directory's lock is held, waits up to two seconds for it (sled releases the
    /// lock of a store just dropped in this process a moment later), then fails.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::with_config(sled::Config::new().path(path.as_ref()))
    }

    /// A store in a temporary directory, deleted when the store is dropped: for tests and
    /// benchmarks.
    pub fn temporary() -> Result<Self, StoreError> {
        Self::with_config(sled::Config::new().temporary(true))
    }

    fn with_config(config: sled::Config) -> Result<Self, StoreError> {
        let db = open_waiting_for_lock(&config)?;
        let tree = db.open_tree(TREE).map_err(backend)?;
        check_format(&tree)?;
        replay_journal(&db, &tree)?;
        let next = match tree.get(Key::Meta(CHANNEL_IDS_NAME).to_bytes()).map_err(backend)? {
            Some(value) => decode_u64(&Key::Meta(CHANNEL_IDS_NAME), &value)?,
            None => FIRST_CHANNEL_ID,
        };
        db.flush().map_err(backend)?;

        let (flushed, _) = watch::channel(FlushState::default());
        let shared = Arc::new(Shared {
            db,
            tree,
            gate: RwLock::new(()),
            channels: Mutex::new(HashMap::new()),
            secrets: Mutex::new(SecretCache::default()),
            generation: AtomicU64::new(0),
            flush_count: AtomicU64::new(0),
            flushed,
        });
        Ok(SledStore { shared, ids: Mutex::new(ChannelIds { next, reserved: next }) })
    }

    /// Physical flushes made so far: one per round of [`Store::durable`]
    /// that had something to flush. Concurrent callers share rounds, so this grows slower
    /// than the number of calls.
    pub fn flush_count(&self) -> u64 {
        self.shared.flush_count.load(Ordering::SeqCst)
    }

    fn ids(&self) -> MutexGuard<'_, ChannelIds> {
        // `ChannelIds` changes only after the write it depends on succeeded.
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A batch being validated against the store and turned into its key writes. Built with
/// the gate held for writing, so what it reads cannot change before the batch lands.
struct Plan<'a> {
    shared: &'a Shared,
    /// The key writes, in order: a value to insert, or `None` to remove.
    out: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Addresses of the channels written so far in this batch.
    channels: HashMap<ChannelId, Vec<Address>>,
    /// The address index as the batch leaves it (`None`: removed).
    index: HashMap<Address, Option<ChannelId>>,
    /// Channels the batch's other records name.
    referenced: HashSet<ChannelId>,
}

impl<'a> Plan<'a> {
    fn new(shared: &'a Shared) -> Self {
        Plan {
            shared,
            out: Vec::with_capacity(2),
            channels: HashMap::new(),
            index: HashMap::new(),
            referenced: HashSet::new(),
        }
    }

    fn add(&mut self, write: &Write) -> Result<(), StoreError> {
        let (key, value) = match write {
            Write::Channel(record) => {
                self.index_channel(record)?;
                encode(record)?
            }
            Write::Voucher(record) => {
                self.referenced.insert(record.channel);
                encode(record)?
            }
            Write::Message(record) => {
                check_cid(record)?;
                self.referenced.insert(record.purpose.channel());
                encode(record)?
            }
            Write::Reconcile(record) => {
                self.referenced.insert(record.channel);
                encode(record)?
            }
            Write::Peer(record) => encode(record)?,
            Write::InvoiceSecret(record) => {
                self.check_unique_secret(record)?;
                encode(record)?
            }
            Write::Secret(record) => encode(record)?,
            Write::Route(record) => encode(record)?,
            Write::WatchCheckpoint(record) => encode(record)?,
        };
        self.out.push((key, Some(value)));
        Ok(())
    }

    /// Refuses a second, different record under a payment hash: at most one invoice per hash.
    fn check_unique_secret(&self, record: &InvoiceSecretRecord) -> Result<(), StoreError> {
        let held: Option<InvoiceSecretRecord> = self.shared.record(&record.key())?;
        let planned = self.out.iter().any(|(key, _)| *key == record.key().to_bytes());
        if planned || held.is_some_and(|held| held != *record) {
            return Err(StoreError::Invalid(format!(
                "payment hash {} already has an invoice",
                hex::encode(&record.payment_hash)
            )));
        }
        Ok(())
    }

    /// Points the channel's current addresses at it, and removes those it no longer has.
    fn index_channel(&mut self, record: &ChannelRecord) -> Result<(), StoreError> {
        let old = match self.channels.get(&record.id) {
            Some(addrs) => addrs.clone(),
            None => {
                self.shared.channel_gated(record.id)?.map(|old| addresses(&old)).unwrap_or_default()
            }
        };
        let new = addresses(record);
        for addr in &new {
            let owner = match self.index.get(addr) {
                Some(owner) => *owner,
                None => self.shared.address_owner(addr)?,
            };
            if let Some(owner) = owner.filter(|owner| *owner != record.id) {
                return Err(StoreError::Invalid(format!(
                    "address {addr} of channel {} already belongs to channel {owner}",
                    record.id
                )));
            }
        }
        for addr in old.iter().filter(|addr| !new.contains(addr)) {
            self.index.insert(*addr, None);
        }
        // Addresses the channel already had are indexed already: rewrite only new ones.
        for addr in &new {
            if !old.contains(addr) || self.index.contains_key(addr) {
                self.index.insert(*addr, Some(record.id));
            }
        }
        self.channels.insert(record.id, new);
        Ok(())
    }

    /// Checks that every channel named exists, and adds the index changes.
    fn finish(mut self) -> Result<Planned, StoreError> {
        for id in &self.referenced {
            if !self.channels.contains_key(id) && !self.shared.channel_exists(*id)? {
                return Err(StoreError::Invalid(format!("unknown channel {id}")));
            }
        }
        for (addr, owner) in self.index {
            let key = Key::Address(addr).to_bytes();
            match owner {
                Some(id) => self.out.push((key, Some(id.to_be_bytes().to_vec()))),
                None => self.out.push((key, None)),
            }
        }
        Ok(Planned(self.out))
    }
}

/// A planned batch's key writes, in order.
struct Planned(Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl Planned {
    /// Writes the batch to sled. A batch of one key is a single insert or remove, atomic on
    /// its own. A batch of several keys is made atomic by the store's own journal: the whole
    /// batch first as one record under `0x0b` (one insert, atomic), then its keys one by one,
    /// then the journal removed. sled recovers a prefix of its log, so after a crash either
    /// the journal is there (and [`replay_journal`] writes the batch again, whole) or every
    /// key of the batch is. sled's own `apply_batch` would write out its log buffer before
    /// and after the batch, each with a `sync_file_range` (two disk syncs per batch).
    ///
    /// The caller holds the gate for writing, so no reader sees the keys in between, and no
    /// other batch overwrites the journal. A sled error mid-batch is sled's I/O error, which
    /// fails every later write too; the journal then replays the batch at the next open.
    fn write(self, tree: &sled::Tree) -> Result<(), StoreError> {
        let mut writes = self.0;
        if writes.len() == 1 {
            if let Some((key, value)) = writes.pop() {
                write_key(tree, key, value)?;
            }
            return Ok(());
        }
        let journal = Key::Journal.to_bytes();
        tree.insert(journal.clone(), Journal::encode(&writes)).map_err(backend)?;
        for (key, value) in writes {
            write_key(tree, key, value)?;
        }
        tree.remove(journal).map_err(backend)?;
        Ok(())
    }
}

/// One key of a batch: a value to insert, or `None` to remove it.
fn write_key(tree: &sled::Tree, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), StoreError> {
    match value {
        Some(value) => tree.insert(key, value).map_err(backend)?,
        None => tree.remove(key).map_err(backend)?,
    };
    Ok(())
}

/// The journal record (`0x0b`): a batch of several keys, written whole before its keys are,
/// and removed once they all are. Its layout, big-endian:
///
/// ```text
/// count (u32) ‖ count × ( key length (u32) ‖ key ‖ 0x00                         remove
///                       | key length (u32) ‖ key ‖ 0x01 ‖ value length (u32) ‖ value )  insert
/// ```
struct Journal;

impl Journal {
    /// The journal record of `writes`.
    fn encode(writes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<u8> {
        let size: usize = writes
            .iter()
            .map(|(key, value)| 9 + key.len() + value.as_ref().map_or(0, |v| 4 + v.len()))
            .sum();
        let mut out = Vec::with_capacity(4 + size);
        out.extend_from_slice(&length(writes.len()).to_be_bytes());
        for (key, value) in writes {
            out.extend_from_slice(&length(key.len()).to_be_bytes());
            out.extend_from_slice(key);
            match value {
                None => out.push(0),
                Some(value) => {
                    out.push(1);
                    out.extend_from_slice(&length(value.len()).to_be_bytes());
                    out.extend_from_slice(value);
                }
            }
        }
        out
    }

    /// The writes of a journal record, or why it is not one.
    #[allow(clippy::type_complexity)]
    fn decode(raw: &[u8]) -> Result<Vec<(Vec<u8>, Option<Vec<u8>>)>, String> {
        let mut rest = raw;
        let count = take_u32(&mut rest)?;
        // Each write takes at least 5 bytes: a count beyond that is not believed.
        if usize::try_from(count).map_or(true, |c| c > rest.len() / 5) {
            return Err(format!("{count} writes in {} bytes", rest.len()));
        }
        let mut writes = Vec::new();
        for _ in 0..count {
            let key_len = take_u32(&mut rest)?;
            let key = take(&mut rest, key_len)?.to_vec();
            let value = match take(&mut rest, 1)? {
                [0] => None,
                [1] => {
                    let value_len = take_u32(&mut rest)?;
                    Some(take(&mut rest, value_len)?.to_vec())
                }
                other => return Err(format!("unknown write tag {other:?}")),
            };
            writes.push((key, value));
        }
        if !rest.is_empty() {
            return Err(format!("{} bytes after the last write", rest.len()));
        }
        Ok(writes)
    }
}

/// A length as the journal writes it. Batches are made of records far below 4 GiB.
fn length(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// The next `len` bytes of `rest`.
fn take<'a>(rest: &mut &'a [u8], len: u32) -> Result<&'a [u8], String> {
    let len = usize::try_from(len).map_err(|e| e.to_string())?;
    if rest.len() < len {
        return Err(format!("{len} bytes wanted, {} left", rest.len()));
    }
    let (head, tail) = rest.split_at(len);
    *rest = tail;
    Ok(head)
}

/// The next big-endian u32 of `rest`.
fn take_u32(rest: &mut &[u8]) -> Result<u32, String> {
    let bytes: [u8; 4] = take(rest, 4)?.try_into().map_err(|_| "short length".to_owned())?;
    Ok(u32::from_be_bytes(bytes))
}

/// Finishes the batch a crash cut short: the journal's writes applied again (each key gets
/// the batch's value, whether it had it already or not), the journal removed, all flushed.
fn replay_journal(db: &sled::Db, tree: &sled::Tree) -> Result<(), StoreError> {
    let key = Key::Journal;
    let Some(raw) = tree.get(key.to_bytes()).map_err(backend)? else {
        return Ok(());
    };
    let writes = Journal::decode(&raw).map_err(|reason| codec(raw_key(&key.to_bytes()), reason))?;
    tracing::info!(keys = writes.len(), "store: finishing the batch a stop cut short");
    for (key, value) in writes {
        write_key(tree, key, value)?;
    }
    tree.remove(key.to_bytes()).map_err(backend)?;
    db.flush().map_err(backend)?;
    Ok(())
}

/// Refuses a message filed under another CID than its own.
fn check_cid(record: &MessageRecord) -> Result<(), StoreError> {
    let cid = record.signed.cid().map_err(|e| codec(record.key(), e))?;
    if cid != record.cid {
        return Err(StoreError::Invalid(format!("message {cid} is filed under {}", record.cid)));
    }
    Ok(())
}

/// How long [`SledStore::open`] waits for a lock that a just-closed store still holds.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Opens the database, waiting up to [`LOCK_WAIT`] if its lock file is held. sled releases
/// the lock of a dropped database from a background thread, a moment after the drop, so a
/// store closed and reopened at once (a restart in-process) would otherwise find it taken.
/// A lock held by a running process is still refused, after the wait.
fn open_waiting_for_lock(config: &sled::Config) -> Result<sled::Db, StoreError> {
    let deadline = Instant::now() + LOCK_WAIT;
    let mut pause = Duration::from_millis(5);
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(e) if is_lock_held(&e) && Instant::now() + pause < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(backend(e)),
        }
    }
}

/// sled 0.34 reports a held lock only in the message of an `Io` error of kind `Other`.
fn is_lock_held(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().starts_with("could not acquire lock")
        }
        _ => false,
    }
}

/// Refuses a tree written in another format; stamps a new one.
fn check_format(tree: &sled::Tree) -> Result<(), StoreError> {
    let key = Key::Meta(VERSION_NAME);
    match tree.get(key.to_bytes()).map_err(backend)? {
        Some(value) => match decode_u64(&key, &value)? {
            FORMAT_VERSION => Ok(()),
            FORMAT_VERSION_BEFORE_JOURNAL => {
                tree.insert(key.to_bytes(), FORMAT_VERSION.to_be_bytes().to_vec())
                    .map_err(backend)?;
                Ok(())
            }
            other => Err(StoreError::Backend(format!(
                "store format version {other}; this build reads version {FORMAT_VERSION}"
            ))),
        },
        None if tree.is_empty() => {
            tree.insert(key.to_bytes(), FORMAT_VERSION.to_be_bytes().to_vec()).map_err(backend)?;
            Ok(())
        }
        None => Err(StoreError::Backend("store holds records but no format version".into())),
    }
}

#[async_trait::async_trait]
impl Store for SledStore {
    fn next_channel_id(&self) -> Result<ChannelId, StoreError> {
        let mut ids = self.ids();
        if ids.next >= ids.reserved {
            let reserved = ids
                .next
                .checked_add(CHANNEL_ID_BLOCK)
                .ok_or_else(|| StoreError::Backend("channel IDs exhausted".into()))?;
            let key = Key::Meta(CHANNEL_IDS_NAME).to_bytes();
            self.shared.tree.insert(key, reserved.to_be_bytes().to_vec()).map_err(backend)?;
            // The reservation is on disk before any ID from it is handed out.
            self.shared.db.flush().map_err(backend)?;
            ids.reserved = reserved;
        }
        let id = ids.next;
        ids.next += 1;
        Ok(id)
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let _gate = self.shared.gate.write().unwrap_or_else(PoisonError::into_inner);
        let mut plan = Plan::new(&self.shared);
        for write in &batch {
            plan.add(write)?;
        }
        let planned = plan.finish()?;
        planned.write(&self.shared.tree)?;
        let mut secrets = self.shared.cached_secrets();
        for write in &batch {
            secrets.written(write);
        }
        drop(secrets);
        let mut cached = self.shared.cached_channels();
        for write in batch {
            if let Write::Channel(record) = write {
                cached.insert(record.id, record);
            }
        }
        drop(cached);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn durable(&self) -> Result<(), StoreError> {
        let target = self.shared.generation.load(Ordering::SeqCst);
        let mut state = self.shared.flushed.subscribe();
        let start = state.borrow().rounds;
        loop {
            {
                let now = state.borrow_and_update();
                if now.flushed >= target {
                    return Ok(());
                }
                if let Some(failure) = &now.failure {
                    if failure.round > start && failure.covering >= target {
                        return Err(StoreError::Backend(failure.reason.clone()));
                    }
                }
            }
            // Leader–follower: the first caller to find no flush running flushes for
            // everyone (its round covers every batch applied before it starts, so `target`
            // too); callers arriving meanwhile wait for its round, and the first of them
            // still uncovered leads the next.
            // Taking the lead wakes no one: the waiters wait for the round's end.
            let mut lead = false;
            self.shared.flushed.send_if_modified(|now| {
                lead = !now.leading && now.flushed < target;
                now.leading |= lead;
                false
            });
            if lead {
                // Let the tasks already queued on this runtime run first: those about to
                // write join this round instead of needing one of their own. A lone caller
                // finds nothing queued and loses next to nothing.
                let mut seen = self.shared.generation.load(Ordering::SeqCst);
                for _ in 0..LEADER_YIELDS {
                    tokio::task::yield_now().await;
                    let now = self.shared.generation.load(Ordering::SeqCst);
                    if now == seen {
                        break;
                    }
                    seen = now;
                }
                let mut guard = LeaderGuard { flushed: &self.shared.flushed, armed: true };
                // The flush runs here, on the leader's thread: handing it to another thread
                // (a flusher, or `block_in_place`) costs more in wake-ups than it saves.
                let result = self.shared.lead_flush();
                guard.armed = false;
                return match result {
                    Ok(_) => Ok(()),
                    Err(reason) => Err(StoreError::Backend(reason)),
                };
            }
            state.changed().await.map_err(|_| StoreError::Backend("store closed".into()))?;
        }
    }

    fn channel(&self, id: ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        // Under the gate even when cached: `apply` writes sled first and the cache after, so
        // a read without it could see another record of a batch (from sled) but not the
        // batch's channel record (from the cache).
        let _gate = self.shared.read_gate();
        self.shared.channel_gated(id)
    }

    fn channel_by_address(&self, addr: &Address) -> Result<Option<ChannelRecord>, StoreError> {
        let _gate = self.shared.read_gate();
        let Some(id) = self.shared.address_owner(addr)? else {
            return Ok(None);
        };
        match self.shared.channel_gated(id)? {
            Some(record) if addresses(&record).contains(addr) => Ok(Some(record)),
            Some(_) => Err(codec(Key::Address(*addr), format_args!("stale: channel {id} moved"))),
            None => Err(codec(Key::Address(*addr), format_args!("missing channel {id}"))),
        }
    }

    fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        let _gate = self.shared.read_gate();
        self.shared.scan(&[prefix::CHANNEL])
    }

    fn voucher(
        &self,
        channel: ChannelId,
        lane: u64,
        nonce: u64,
    ) -> Result<Option<VoucherRecord>, StoreError> {
        self.shared.point(&Key::Voucher { channel, lane, nonce })
    }

    fn vouchers(&self, channel: ChannelId) -> Result<Vec<VoucherRecord>, StoreError> {
        let _gate = self.shared.read_gate();
        self.shared.scan(&voucher_prefix(channel))
    }

    fn lane_vouchers(
        &self,
        channel: ChannelId,
        lane: u64,
        from: u64,
    ) -> Result<Vec<VoucherRecord>, StoreError> {
        let _gate = self.shared.read_gate();
        let start = Key::Voucher { channel, lane, nonce: from }.to_bytes();
        let end = lane_end(channel, lane);
        self.shared
            .tree
            .range(start..end)
            .map(|entry| {
                let (raw, value) = entry.map_err(backend)?;
                decode(&raw, &value)
            })
            .collect()
    }

    fn lane_tops(
        &self,
        channel: ChannelId,
        keep: &(dyn Fn(&VoucherRecord) -> bool + Sync),
    ) -> Result<Vec<VoucherRecord>, StoreError> {
        let _gate = self.shared.read_gate();
        let prefix = voucher_prefix(channel);
        let mut from = prefix.clone();
        let mut tops = Vec::new();
        // One seek per lane: its first key names it, then the lane is read in nonce order.
        while let Some(entry) = self.shared.tree.range(from..).next() {
            let (raw, value) = entry.map_err(backend)?;
            if !raw.starts_with(&prefix) {
                break;
            }
            let first: VoucherRecord = decode(&raw, &value)?;
            let lane = first.voucher.lane;
            let start = Key::Voucher { channel, lane, nonce: 0 }.to_bytes();
            let end = lane_end(channel, lane);
            // Forward: sled 0.34's reverse iteration can panic across node boundaries.
            let mut top = None;
            for entry in self.shared.tree.range(start..end.clone()) {
                let (raw, value) = entry.map_err(backend)?;
                let record: VoucherRecord = decode(&raw, &value)?;
                if keep(&record) {
                    top = Some(record);
                }
            }
            tops.extend(top);
            from = end;
        }
        Ok(tops)
    }

    fn message(&self, cid: &Cid) -> Result<Option<MessageRecord>, StoreError> {
        self.shared.point(&Key::Message(*cid))
    }

    fn messages(&self) -> Result<Vec<MessageRecord>, StoreError> {
        let _gate = self.shared.read_gate();
        self.shared.scan(&[prefix::MESSAGE])
    }

    fn reconcile(&self, request_hash: &[u8]) -> Result<Option<ReconcileRecord>, StoreError> {
        self.shared.point(&Key::Reconcile(request_hash.to_vec()))
    }

    fn peer(&self, address: &Address) -> Result<Option<PeerRecord>, StoreError> {
        self.shared.point(&Key::Peer(*address))
    }

    fn invoice_secret(
        &self,
        payment_hash: &[u8],
    ) -> Result<Option<InvoiceSecretRecord>, StoreError> {
        let key = Key::InvoiceSecret(payment_hash.to_vec());
        self.shared.secret_record(SecretCache::issued, key, payment_hash)
    }

    fn secret(&self, payment_hash: &[u8]) -> Result<Option<SecretRecord>, StoreError> {
        let key = Key::Secret(payment_hash.to_vec());
        self.shared.secret_record(SecretCache::learned, key, payment_hash)
    }

    fn route(&self, payment_hash: &[u8]) -> Result<Option<RouteRecord>, StoreError> {
        self.shared.point(&Key::Route(payment_hash.to_vec()))
    }

    fn routes(&self) -> Result<Vec<RouteRecord>, StoreError> {
        let _gate = self.shared.read_gate();
        self.shared.scan(&[prefix::ROUTE])
    }

    fn watch_checkpoint(&self) -> Result<Option<WatchCheckpointRecord>, StoreError> {
        self.shared.point(&Key::WatchCheckpoint)
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Give back the unused reservation, so that a clean restart continues at `next`.
        let next = self.ids().next;
        let key = Key::Meta(CHANNEL_IDS_NAME).to_bytes();
        if let Err(e) = self.shared.tree.insert(key, next.to_be_bytes().to_vec()) {
            tracing::warn!(error = %e, "store: cannot record the next channel ID");
        }
        // The last flush covers that write and every batch.
        if let Err(e) = self.shared.db.flush() {
            tracing::warn!(error = %e, "store: the last flush failed");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::Journal;

    fn writes() -> impl Strategy<Value = Vec<(Vec<u8>, Option<Vec<u8>>)>> {
        let key = proptest::collection::vec(any::<u8>(), 0..40);
        let value = proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200));
        proptest::collection::vec((key, value), 0..12)
    }

    proptest! {
        /// The journal gives back the writes it was made of.
        #[test]
        fn a_journal_round_trips(writes in writes()) {
            prop_assert_eq!(Journal::decode(&Journal::encode(&writes)).unwrap(), writes);
        }

        /// Any bytes decode to writes or to an error, never a panic; a journal cut short or
        /// with bytes after it is an error.
        #[test]
        fn any_bytes_decode_or_fail(raw in proptest::collection::vec(any::<u8>(), 0..300),
                                    writes in writes(), cut in any::<prop::sample::Index>()) {
            let _ = Journal::decode(&raw);
            let whole = Journal::encode(&writes);
            let cut = cut.index(whole.len());
            prop_assert!(Journal::decode(&whole[..cut]).is_err());
            prop_assert!(Journal::decode(&[whole.as_slice(), &[0]].concat()).is_err());
        }
    }
}
