//! An in-process, Filecoin-shaped chain for development and tests.
//!
//! Accounts with balances and nonces; ID addresses assigned on first use; a faucet; a
//! message pool that checks signature, nonce and balance; an epoch every `block_time` or on
//! demand; messages executed in order with receipts; gas charged from a fixed table and
//! burnt; the Init actor's `Exec` creating payment channels (ID and robust addresses); the
//! payment-channel actor running [`crate::actor`], its state kept as the chain keeps it
//! (the State tuple in a block store, lanes in an AMT of bit width 3); each tipset's state
//! root sealed into the block store, so that the state after any earlier tipset can be read
//! back ([`Chain::balance_at`], [`Devnet::actor_state_at`]); each included message kept in
//! the block store under its CID for the last [`MESSAGE_HISTORY`] epochs, so that a tipset's
//! messages can be read back ([`Chain::tipset_messages`], [`Devnet::block_messages`]);
//! optional persistence in sled so that a devnet restarts where it stopped.

pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use cid::Cid;
use fvm_ipld_encoding::strict_bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use self::state::{State, BASE_FEE_ATTO, BLOCK_GAS_LIMIT, DEFAULT_PREMIUM_ATTO, NETWORK_VERSION};
use super::{
    depth_epoch, ActorInfo, ActorKind, Chain, ChainError, ChainMessage, ChannelAtDepth,
    ChannelOnChain, MessageLookup, Receipt,
};
use crate::crypto::{self, SecretKey};
use crate::types::{
    ActorID, Address, ChainEpoch, ExitCode, Message, PaychState, Protocol, SignedMessage,
    TokenAmount,
};

/// How many epochs of included messages the devnet keeps: those of the epochs above
/// `head − MESSAGE_HISTORY` (a day of 30-second epochs, as far back as a Lotus gateway
/// looks). Older messages are removed from the block store; their tipsets stay.
pub const MESSAGE_HISTORY: u64 = 2880;

/// How a devnet starts.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// Time between epochs when mining on a timer; `None` mines only on demand.
    pub block_time: Option<Duration>,
    /// Accounts funded at genesis (key addresses) with their balances.
    pub genesis: Vec<(Address, TokenAmount)>,
    /// The faucet's balance at genesis.
    pub faucet_balance: TokenAmount,
    /// Where to persist the chain; `None` keeps it in memory only.
    pub repo: Option<PathBuf>,
    /// The network name `StateNetworkName` answers.
    pub network_name: String,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        DevnetConfig {
            block_time: None,
            genesis: Vec::new(),
            faucet_balance: TokenAmount::from_whole(1_000_000_000),
            repo: None,
            network_name: crate::network::DEVNET_CHAIN_NAME.to_owned(),
        }
    }
}

/// A tipset as `ChainHead` shows it: one block per epoch on the devnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tipset {
    /// The epoch.
    pub height: ChainEpoch,
    /// The CID of the single block.
    pub block: Cid,
    /// The block's parent block (none at genesis).
    pub parent: Option<Cid>,
    /// The state root after this tipset's messages.
    pub state_root: Cid,
    /// Messages included in this block, in execution order.
    pub messages: Vec<Cid>,
    /// Unix time of the block, in seconds.
    pub timestamp: u64,
}

/// An actor's state as `StateReadState` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorState {
    /// Kind, code, balance, nonce.
    pub info: ActorInfo,
    /// The actor's state root (the `Head` of `StateGetActor`).
    pub head: Cid,
    /// The decoded state of a payment channel; `None` for other actors.
    pub paych: Option<PaychState>,
}

/// What one sender's messages executed since this devnet process started: how many, of
/// which methods, and the gas fees they paid (all burnt).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Messages executed.
    pub messages: u64,
    /// Messages executed, by (recipient kind, method number); the kind is `missing` when
    /// the recipient did not exist (a collect racing another, say).
    pub by_method: BTreeMap<(String, u64), u64>,
    /// Gas fees paid.
    pub fees: TokenAmount,
}

/// A running devnet. Cheap to clone; every clone is the same chain.
#[derive(Clone)]
pub struct Devnet {
    inner: Arc<Inner>,
}

struct Inner {
    config: DevnetConfig,
    data: Mutex<ChainData>,
    head: watch::Sender<ChainEpoch>,
    db: Option<sled::Db>,
}

/// A message waiting in the pool, with the length of its signed CBOR (gas is charged on it).
#[derive(Clone)]
struct Pending {
    cid: Cid,
    signed: SignedMessage,
    len: usize,
    sender: crate::types::ActorID,
}

struct ChainData {
    state: State,
    pool: Vec<Pending>,
    receipts: HashMap<Cid, MessageLookup>,
    tipsets: Vec<Tipset>,
    faucet: SecretKey,
    faucet_address: Address,
    /// By sender address as the messages name it; not persisted.
    senders: HashMap<Address, SenderStats>,
    /// The actors of the earlier state read last, by its state root: a payee validating
    /// voucher after voucher reads the same depth within one epoch.
    earlier: Option<(Cid, Arc<SealedActors>)>,
}

/// What the devnet writes to its repo after each epoch (blocks are written separately).
#[derive(Serialize, Deserialize)]
struct Snapshot {
    epoch: ChainEpoch,
    actors: Vec<(crate::types::ActorID, state::ActorEntry)>,
    ids: Vec<(Address, crate::types::ActorID)>,
    next_id: crate::types::ActorID,
    actors_created: u64,
    pool: Vec<SignedMessage>,
    receipts: Vec<StoredReceipt>,
    tipsets: Vec<Tipset>,
    #[serde(with = "strict_bytes")]
    faucet_key: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct StoredReceipt {
    message: Cid,
    exit_code: u32,
    #[serde(with = "strict_bytes")]
    return_data: Vec<u8>,
    gas_used: u64,
    epoch: ChainEpoch,
}

const SNAPSHOT_KEY: &[u8] = b"snapshot";
const BLOCKS_TREE: &[u8] = b"blocks";

fn store_error(e: impl std::fmt::Display) -> ChainError {
    ChainError::Transport(format!("devnet repo: {e}"))
}

fn rejected(message: impl Into<String>) -> ChainError {
    ChainError::Rejected { exit_code: None, message: message.into() }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

impl Devnet {
    /// Starts a devnet from genesis, or from its repo when it has one.
    pub fn new(config: DevnetConfig) -> Result<Self, ChainError> {
        let db = match &config.repo {
            Some(dir) => Some(sled::open(dir).map_err(store_error)?),
            None => None,
        };
        let data = match &db {
            Some(db) => match db.get(SNAPSHOT_KEY).map_err(store_error)? {
                Some(bytes) => Self::restore(db, &bytes)?,
                None => Self::genesis(&config)?,
            },
            None => Self::genesis(&config)?,
        };
        let (head, _) = watch::channel(data.state.epoch);
        let devnet = Devnet { inner: Arc::new(Inner { config, data: Mutex::new(data), head, db }) };
        devnet.persist(&mut devnet.lock())?;
        Ok(devnet)
    }

    fn genesis(config: &DevnetConfig) -> Result<ChainData, ChainError> {
        let mut state = State::genesis();
        let faucet = crypto::generate_secret_key().map_err(store_error)?;
        let faucet_address = crypto::secp_address(&crypto::public_key(&faucet));
        state.credit(&faucet_address, &config.faucet_balance)?;
        for (addr, amount) in &config.genesis {
            state.credit(addr, amount)?;
        }
        let mut data = ChainData {
            state,
            pool: Vec::new(),
            receipts: HashMap::new(),
            tipsets: Vec::new(),
            faucet,
            faucet_address,
            senders: HashMap::new(),
            earlier: None,
        };
        let tipset = data.seal(Vec::new());
        data.tipsets.push(tipset);
        Ok(data)
    }

    fn restore(db: &sled::Db, bytes: &[u8]) -> Result<ChainData, ChainError> {
        let snap: Snapshot = fvm_ipld_encoding::from_slice(bytes).map_err(store_error)?;
        let mut state = State::genesis();
        state.epoch = snap.epoch;
        state.tree.actors = snap.actors.into_iter().collect();
        state.tree.ids = snap.ids.into_iter().collect();
        state.tree.next_id = snap.next_id;
        state.tree.actors_created = snap.actors_created;
        for entry in db.open_tree(BLOCKS_TREE).map_err(store_error)?.iter() {
            let (k, v) = entry.map_err(store_error)?;
            let cid = Cid::try_from(k.as_ref()).map_err(store_error)?;
            state.blocks.load(cid, v.to_vec());
        }
        let faucet = crypto::secret_key(&snap.faucet_key).map_err(store_error)?;
        let mut pool = Vec::new();
        for signed in snap.pool {
            let cid = signed.cid().map_err(store_error)?;
            let len = signed.to_cbor().map_err(store_error)?.len();
            let sender = state
                .tree
                .resolve(&signed.message.from)
                .ok_or_else(|| store_error("pool sender vanished"))?;
            pool.push(Pending { cid, signed, len, sender });
        }
        let receipts = snap
            .receipts
            .into_iter()
            .map(|r| {
                let receipt = Receipt {
                    exit_code: ExitCode::new(r.exit_code),
                    return_data: r.return_data,
                    gas_used: r.gas_used,
                };
                (r.message, MessageLookup { message: r.message, receipt, epoch: r.epoch })
            })
            .collect();
        let tipsets = snap.tipsets;
        Ok(ChainData {
            state,
            pool,
            receipts,
            tipsets,
            faucet_address: crypto::secp_address(&crypto::public_key(&faucet)),
            faucet,
            senders: HashMap::new(),
            earlier: None,
        })
    }

    fn lock(&self) -> MutexGuard<'_, ChainData> {
        self.inner.data.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn persist(&self, data: &mut ChainData) -> Result<(), ChainError> {
        let Some(db) = &self.inner.db else {
            data.state.blocks.take_dirty();
            data.state.blocks.take_removed();
            return Ok(());
        };
        let blocks = db.open_tree(BLOCKS_TREE).map_err(store_error)?;
        for (cid, bytes) in data.state.blocks.take_dirty() {
            blocks.insert(cid.to_bytes(), bytes).map_err(store_error)?;
        }
        for cid in data.state.blocks.take_removed() {
            blocks.remove(cid.to_bytes()).map_err(store_error)?;
        }
        let snap = Snapshot {
            epoch: data.state.epoch,
            actors: data.state.tree.actors.iter().map(|(k, v)| (*k, v.clone())).collect(),
            ids: data.state.tree.ids.iter().map(|(k, v)| (*k, *v)).collect(),
            next_id: data.state.tree.next_id,
            actors_created: data.state.tree.actors_created,
            pool: data.pool.iter().map(|p| p.signed.clone()).collect(),
            receipts: data
                .receipts
                .values()
                .map(|l| StoredReceipt {
                    message: l.message,
                    exit_code: l.receipt.exit_code.value(),
                    return_data: l.receipt.return_data.clone(),
                    gas_used: l.receipt.gas_used,
                    epoch: l.epoch,
                })
                .collect(),
            tipsets: data.tipsets.clone(),
            faucet_key: data.faucet.secret_bytes().to_vec(),
        };
        let bytes = fvm_ipld_encoding::to_vec(&snap).map_err(store_error)?;
        db.insert(SNAPSHOT_KEY, bytes).map_err(store_error)?;
        db.flush().map_err(store_error)?;
        Ok(())
    }

    /// Starts producing an epoch every `block_time` on the current tokio runtime (no-op,
    /// answering `None`, when the devnet mines only on demand). Mining stops when every clone
    /// is dropped, or when the returned task is aborted.
    pub fn start_mining(&self) -> Option<tokio::task::JoinHandle<()>> {
        let block_time = self.inner.config.block_time?;
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        Some(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(block_time);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let devnet = Devnet { inner };
                if let Err(e) = devnet.try_mine(1) {
                    tracing::error!(error = %e, "devnet failed to mine");
                }
            }
        }))
    }

    /// Mines `n` epochs now, executing pending messages in the first; returns the new head.
    pub fn mine(&self, n: u64) -> ChainEpoch {
        match self.try_mine(n) {
            Ok(head) => head,
            Err(e) => {
                tracing::error!(error = %e, "devnet failed to persist a mined epoch");
                self.lock().state.epoch
            }
        }
    }

    fn try_mine(&self, n: u64) -> Result<ChainEpoch, ChainError> {
        let mut data = self.lock();
        for _ in 0..n {
            data.state.epoch += 1;
            let epoch = data.state.epoch;
            let pool = std::mem::take(&mut data.pool);
            let mut included = Vec::with_capacity(pool.len());
            for pending in pool {
                let _span =
                    tracing::debug_span!("devnet_execute", cid = %pending.cid, epoch).entered();
                let msg = &pending.signed.message;
                let kind = data
                    .state
                    .tree
                    .entry(&msg.to)
                    .map_or_else(|| "missing".to_owned(), |e| state::kind_name(e.kind).to_owned());
                let receipt = data.state.execute(&pending.signed, pending.len);
                let fee = State::gas_price(msg) * receipt.gas_used;
                let stats = data.senders.entry(msg.from).or_default();
                stats.messages += 1;
                *stats.by_method.entry((kind, msg.method)).or_default() += 1;
                stats.fees += fee;
                tracing::debug!(
                    exit_code = receipt.exit_code.value(),
                    gas_used = receipt.gas_used,
                    "executed"
                );
                included.push(pending.cid);
                data.keep_message(&pending);
                data.receipts
                    .insert(pending.cid, MessageLookup { message: pending.cid, receipt, epoch });
            }
            let tipset = data.seal(included);
            data.tipsets.push(tipset);
            data.prune_messages();
        }
        self.persist(&mut data)?;
        let head = data.state.epoch;
        drop(data);
        self.inner.head.send_replace(head);
        Ok(head)
    }

    /// Sends `amount` from the faucet to `to` (a signed message in the pool), returning the
    /// message CID.
    pub fn faucet(&self, to: &Address, amount: TokenAmount) -> Result<Cid, ChainError> {
        let (faucet, from) = {
            let data = self.lock();
            (data.faucet, data.faucet_address)
        };
        let message = Message::new(
            from,
            *to,
            self.pending_nonce(&from),
            amount,
            crate::types::METHOD_SEND,
            Vec::new(),
        );
        let message = self.estimate(message)?;
        let signed = crypto::sign_message(&faucet, message).map_err(|e| rejected(e.to_string()))?;
        self.push_signed(&signed)
    }

    /// A block of the block store (`ChainReadObj`).
    pub fn read_obj(&self, cid: &Cid) -> Option<Vec<u8>> {
        self.lock().state.blocks.read(cid)
    }

    /// An actor with its state (`StateGetActor`, `StateReadState`).
    pub fn actor_state(&self, addr: &Address) -> Result<ActorState, ChainError> {
        let mut data = self.lock();
        let head = data.state.epoch;
        data.actor_state_at(addr, head)
    }

    /// An actor with its state as it was after the tipset at `epoch` (the head's at or above
    /// the head, genesis's below 0): `StateGetActor` and `StateReadState` at a tipset key.
    /// `NotFound` when no actor had the address then.
    pub fn actor_state_at(
        &self,
        addr: &Address,
        epoch: ChainEpoch,
    ) -> Result<ActorState, ChainError> {
        self.lock().actor_state_at(addr, epoch)
    }

    /// The tipset whose key is `key` (the devnet's keys are one block CID each), if it has
    /// been mined.
    pub fn tipset_by_key(&self, key: &[Cid]) -> Option<Tipset> {
        let [block] = key else { return None };
        let data = self.lock();
        let bytes = data.state.blocks.read(block)?;
        let header: BlockHeader = fvm_ipld_encoding::from_slice(&bytes).ok()?;
        let tipset = usize::try_from(header.1).ok().and_then(|h| data.tipsets.get(h))?;
        (tipset.block == *block).then(|| tipset.clone())
    }

    /// The head tipset (`ChainHead`).
    pub fn head_tipset(&self) -> Tipset {
        let data = self.lock();
        data.tipsets.last().cloned().unwrap_or_else(|| unreachable!("genesis is always sealed"))
    }

    /// The tipset at `height`, if it has been mined.
    pub fn tipset(&self, height: ChainEpoch) -> Option<Tipset> {
        let data = self.lock();
        usize::try_from(height).ok().and_then(|h| data.tipsets.get(h)).cloned()
    }

    /// The messages of the block `block` (`ChainGetBlockMessages`), each with the CID the
    /// chain knows it by, in execution order. `NotFound` for a block the devnet has not mined,
    /// or whose messages are older than [`MESSAGE_HISTORY`] epochs.
    pub fn block_messages(&self, block: &Cid) -> Result<Vec<(Cid, SignedMessage)>, ChainError> {
        let tipset = self
            .tipset_by_key(&[*block])
            .ok_or_else(|| ChainError::NotFound(format!("block {block}")))?;
        self.lock().messages_at(tipset.height)
    }

    /// The network version the devnet reports (`StateNetworkVersion`).
    pub fn network_version(&self) -> u32 {
        NETWORK_VERSION
    }

    /// The code CID of each actor kind by its Lotus name (`StateActorCodeCIDs`):
    /// `system`, `init`, `account`, `paymentchannel`, `reward`.
    pub fn actor_code_cids(&self) -> BTreeMap<String, Cid> {
        ["system", "init", "account", "paymentchannel", "reward"]
            .into_iter()
            .map(|name| (name.to_owned(), state::code_cid(name)))
            .collect()
    }

    /// The sum of every actor's balance, the burnt-funds actor included (constant).
    pub fn total_balance(&self) -> TokenAmount {
        self.lock().state.total_balance()
    }

    /// The balance of the burnt-funds actor (f099): all gas ever charged.
    pub fn burnt(&self) -> TokenAmount {
        let data = self.lock();
        data.state
            .tree
            .actors
            .get(&state::BURNT_FUNDS_ACTOR_ID)
            .map(|a| a.balance.clone())
            .unwrap_or_default()
    }

    /// What the messages sent from `addr` (as they name their sender) executed since this
    /// process started.
    pub fn sender_stats(&self, addr: &Address) -> SenderStats {
        self.lock().senders.get(addr).cloned().unwrap_or_default()
    }

    /// Messages waiting in the pool.
    pub fn pending_messages(&self) -> usize {
        self.lock().pool.len()
    }

    /// The faucet's key address.
    pub fn faucet_address(&self) -> Address {
        self.lock().faucet_address
    }

    fn pending_nonce(&self, addr: &Address) -> u64 {
        let data = self.lock();
        let Some(id) = data.state.tree.resolve(addr) else { return 0 };
        let base = data.state.tree.actors.get(&id).map(|a| a.nonce).unwrap_or_default();
        base + data.pool.iter().filter(|p| p.sender == id).count() as u64
    }

    fn estimate(&self, mut message: Message) -> Result<Message, ChainError> {
        let data = self.lock();
        // Gas is charged on the signed message's length; a secp256k1 signature adds 68 bytes
        // and the two-item array 1; estimate with a margin of 25 %.
        let len = message.to_cbor().map_err(|e| rejected(e.to_string()))?.len() + 69;
        let gas = data.state.gas_for(&message, len);
        if message.gas_limit == 0 {
            message.gas_limit = gas + gas / 4;
        }
        if message.gas_premium.is_zero() {
            message.gas_premium = TokenAmount::from_atto(DEFAULT_PREMIUM_ATTO);
        }
        if message.gas_fee_cap.is_zero() {
            message.gas_fee_cap = TokenAmount::from_atto(2 * BASE_FEE_ATTO) + &message.gas_premium;
        }
        Ok(message)
    }

    fn push_signed(&self, signed: &SignedMessage) -> Result<Cid, ChainError> {
        let cid = signed.cid().map_err(|e| rejected(e.to_string()))?;
        let len = signed.to_cbor().map_err(|e| rejected(e.to_string()))?.len();
        let mut data = self.lock();
        if data.receipts.contains_key(&cid) || data.pool.iter().any(|p| p.cid == cid) {
            return Ok(cid);
        }
        let msg = &signed.message;
        let span = tracing::debug_span!("devnet_push", %cid, nonce = msg.nonce);
        let _entered = span.enter();
        if msg.version != 0 {
            return Err(rejected(format!("unsupported message version {}", msg.version)));
        }
        if msg.gas_limit == 0 || msg.gas_limit > BLOCK_GAS_LIMIT {
            return Err(rejected(format!(
                "gas limit {} outside 1..={BLOCK_GAS_LIMIT}",
                msg.gas_limit
            )));
        }
        if msg.gas_fee_cap < TokenAmount::from_atto(BASE_FEE_ATTO) {
            return Err(rejected(format!(
                "gas fee cap {} below the base fee {BASE_FEE_ATTO} attoFIL",
                msg.gas_fee_cap.atto()
            )));
        }
        if msg.value.is_negative() || msg.gas_premium.is_negative() {
            return Err(rejected("negative value or gas premium"));
        }
        data.state.verify_signature(signed)?;
        let sender =
            data.state.tree.resolve(&msg.from).ok_or_else(|| {
                rejected(format!("sender {} has no actor (fund it first)", msg.from))
            })?;
        let actor =
            data.state.tree.actors.get(&sender).ok_or_else(|| rejected("sender vanished"))?;
        let pending: Vec<&Pending> = data.pool.iter().filter(|p| p.sender == sender).collect();
        let expected = actor.nonce + pending.len() as u64;
        if msg.nonce < expected {
            return Err(rejected(format!(
                "nonce {} already used: the next nonce is {expected}",
                msg.nonce
            )));
        }
        if msg.nonce > expected {
            return Err(rejected(format!(
                "nonce gap: got {}, the next nonce is {expected}",
                msg.nonce
            )));
        }
        let cost = |m: &Message| &m.value + &m.gas_fee_cap * m.gas_limit;
        let committed: TokenAmount = pending.iter().map(|p| cost(&p.signed.message)).sum();
        let needed = cost(msg);
        if actor.balance.clone() - committed.clone() < needed {
            return Err(rejected(format!(
                "insufficient balance: {} needs {} attoFIL (value plus gas limit × fee cap) but has {} attoFIL not committed to pending messages",
                msg.from,
                needed.atto(),
                (actor.balance.clone() - committed).atto()
            )));
        }
        data.pool.push(Pending { cid, signed: signed.clone(), len, sender });
        tracing::debug!("accepted into the pool");
        self.persist(&mut data)?;
        Ok(cid)
    }
}

/// The actors of a state root as sealed into the block store, by ID.
type SealedActors = Vec<(ActorID, state::ActorEntry)>;

/// A devnet block header as sealed into the block store: parent block, height, state root,
/// messages, timestamp.
type BlockHeader = (Option<Cid>, ChainEpoch, Cid, Vec<Cid>, u64);

/// Whether `addr` names the actor `id` whose entry is `entry`: by its ID, its key (an
/// account) or its robust address (a payment channel).
fn names(addr: &Address, id: ActorID, entry: &state::ActorEntry) -> bool {
    match addr.protocol() {
        Protocol::ID => addr.id().is_ok_and(|a| a == id),
        Protocol::Actor => entry.robust.as_ref() == Some(addr),
        _ => entry.key.as_ref() == Some(addr),
    }
}

impl ChainData {
    /// The actor `addr` named in the state after the tipset at `epoch` (the current state at
    /// or above the head; genesis's below 0), read back from the state root sealed into that
    /// tipset.
    fn entry_at(
        &mut self,
        addr: &Address,
        epoch: ChainEpoch,
    ) -> Result<Option<state::ActorEntry>, ChainError> {
        if epoch >= self.state.epoch {
            return Ok(self.state.tree.entry(addr).cloned());
        }
        let root = usize::try_from(epoch.max(0))
            .ok()
            .and_then(|h| self.tipsets.get(h))
            .map(|t| t.state_root)
            .ok_or_else(|| store_error(format!("no tipset at epoch {epoch}")))?;
        let actors = match &self.earlier {
            Some((kept, actors)) if *kept == root => actors.clone(),
            _ => {
                let bytes =
                    self.state.blocks.read(&root).ok_or_else(|| {
                        store_error(format!("missing state root of epoch {epoch}"))
                    })?;
                let actors: Arc<SealedActors> =
                    Arc::new(fvm_ipld_encoding::from_slice(&bytes).map_err(store_error)?);
                self.earlier = Some((root, actors.clone()));
                actors
            }
        };
        Ok(actors.iter().find(|(id, entry)| names(addr, *id, entry)).map(|(_, e)| e.clone()))
    }

    /// An actor with its state after the tipset at `epoch` (see [`ChainData::entry_at`]).
    fn actor_state_at(
        &mut self,
        addr: &Address,
        epoch: ChainEpoch,
    ) -> Result<ActorState, ChainError> {
        let entry = self
            .entry_at(addr, epoch)?
            .ok_or_else(|| ChainError::NotFound(format!("actor {addr}")))?;
        let (head, paych) = match entry.head {
            Some(head) => (head, Some(self.state.paych_state(&head)?)),
            // Actors without state of their own show the empty-array CID as their head.
            None => (crate::types::cid_of(&[0x80]), None),
        };
        Ok(ActorState { info: entry.info(), head, paych })
    }

    /// Keeps an included message in the block store under its CID (a secp256k1 message's
    /// CID is that of its signed CBOR, so the block is the message as Lotus stores it).
    fn keep_message(&mut self, pending: &Pending) {
        match pending.signed.to_cbor() {
            Ok(cbor) => {
                self.state.blocks.put_cbor(cbor);
            }
            Err(e) => tracing::error!(cid = %pending.cid, error = %e, "cannot keep a message"),
        }
    }

    /// Removes the messages of the epoch that has just left the history: the messages of
    /// the epochs above `head − MESSAGE_HISTORY` are kept.
    fn prune_messages(&mut self) {
        let history = ChainEpoch::try_from(MESSAGE_HISTORY).unwrap_or(ChainEpoch::MAX);
        let Some(tipset) = usize::try_from(self.state.epoch.saturating_sub(history))
            .ok()
            .filter(|_| self.state.epoch >= history)
            .and_then(|h| self.tipsets.get(h))
        else {
            return;
        };
        for cid in &tipset.messages {
            self.state.blocks.remove(cid);
        }
    }

    /// The messages included in the tipset at `epoch`, with their CIDs, in execution order.
    fn messages_at(&self, epoch: ChainEpoch) -> Result<Vec<(Cid, SignedMessage)>, ChainError> {
        let head = self.state.epoch;
        if epoch > head {
            return Err(ChainError::NotFound(format!(
                "tipset at epoch {epoch}: above the head, epoch {head}"
            )));
        }
        if epoch < 0 {
            return Err(ChainError::NotFound(format!("tipset at negative epoch {epoch}")));
        }
        let history = ChainEpoch::try_from(MESSAGE_HISTORY).unwrap_or(ChainEpoch::MAX);
        let oldest = head.saturating_sub(history).saturating_add(1).max(0);
        if epoch < oldest {
            return Err(ChainError::NotFound(format!(
                "messages of epoch {epoch}: pruned, the devnet keeps those of epochs {oldest} \
                 to {head} (the last {MESSAGE_HISTORY})"
            )));
        }
        let tipset = usize::try_from(epoch)
            .ok()
            .and_then(|h| self.tipsets.get(h))
            .ok_or_else(|| ChainError::NotFound(format!("tipset at epoch {epoch}")))?;
        let mut messages = Vec::with_capacity(tipset.messages.len());
        for cid in &tipset.messages {
            let bytes = self.state.blocks.read(cid).ok_or_else(|| {
                ChainError::NotFound(format!(
                    "message {cid} of epoch {epoch}: not kept (mined before this devnet kept \
                     messages)"
                ))
            })?;
            messages.push((*cid, SignedMessage::from_cbor(&bytes).map_err(store_error)?));
        }
        Ok(messages)
    }

    /// Seals the current state into a tipset of one block holding `messages`.
    fn seal(&mut self, messages: Vec<Cid>) -> Tipset {
        let actors: Vec<_> = self.state.tree.actors.iter().collect();
        let state_root =
            self.state.blocks.put_cbor(fvm_ipld_encoding::to_vec(&actors).unwrap_or_default());
        let parent = self.tipsets.last().map(|t| t.block);
        let timestamp = now_secs();
        let header = (parent, self.state.epoch, state_root, &messages, timestamp);
        let block =
            self.state.blocks.put_cbor(fvm_ipld_encoding::to_vec(&header).unwrap_or_default());
        Tipset { height: self.state.epoch, block, parent, state_root, messages, timestamp }
    }
}

#[async_trait]
impl Chain for Devnet {
    async fn head(&self) -> Result<ChainEpoch, ChainError> {
        Ok(self.lock().state.epoch)
    }

    async fn actor(&self, addr: &Address) -> Result<Option<ActorInfo>, ChainError> {
        let data = self.lock();
        let tree = &data.state.tree;
        Ok(tree.resolve(addr).and_then(|id| tree.actors.get(&id)).map(|a| a.info()))
    }

    async fn channel(&self, channel: &Address) -> Result<ChannelOnChain, ChainError> {
        self.lock().state.channel(channel)
    }

    async fn channel_at_head(
        &self,
        channel: &Address,
    ) -> Result<(ChainEpoch, ChannelOnChain), ChainError> {
        let data = self.lock();
        Ok((data.state.epoch, data.state.channel(channel)?))
    }

    async fn balance_at(
        &self,
        addr: &Address,
        epoch: ChainEpoch,
    ) -> Result<Option<TokenAmount>, ChainError> {
        Ok(self.lock().entry_at(addr, epoch)?.map(|e| e.balance))
    }

    /// Reads the channel at the head and its balance at `head − depth` under one lock.
    async fn channel_at_depth(
        &self,
        channel: &Address,
        depth: u64,
    ) -> Result<ChannelAtDepth, ChainError> {
        let mut data = self.lock();
        let head = data.state.epoch;
        let on_chain = data.state.channel(channel)?;
        let confirmed_at = depth_epoch(head, depth);
        let at_depth = data.entry_at(channel, confirmed_at)?.map(|e| e.balance);
        Ok(ChannelAtDepth::new(head, on_chain, confirmed_at, at_depth))
    }

    async fn lookup_id(&self, addr: &Address) -> Result<Option<Address>, ChainError> {
        Ok(self.lock().state.tree.resolve(addr).map(Address::new_id))
    }

    async fn account_key(&self, addr: &Address) -> Result<Address, ChainError> {
        self.lock().state.account_key(addr)
    }

    async fn next_nonce(&self, addr: &Address) -> Result<u64, ChainError> {
        Ok(self.pending_nonce(addr))
    }

    async fn estimate_gas(&self, message: Message) -> Result<Message, ChainError> {
        self.estimate(message)
    }

    async fn push(&self, message: &SignedMessage) -> Result<Cid, ChainError> {
        self.push_signed(message)
    }

    async fn wait(
        &self,
        message: &Cid,
        confidence: u64,
        timeout: Duration,
    ) -> Result<MessageLookup, ChainError> {
        let deadline = Instant::now() + timeout;
        let mut head = self.inner.head.subscribe();
        loop {
            {
                let data = self.lock();
                if let Some(lookup) = data.receipts.get(message) {
                    let confidence = ChainEpoch::try_from(confidence).unwrap_or(ChainEpoch::MAX);
                    if data.state.epoch >= lookup.epoch.saturating_add(confidence) {
                        return Ok(lookup.clone());
                    }
                } else if !data.pool.iter().any(|p| &p.cid == message) {
                    return Err(ChainError::NotFound(format!("message {message}")));
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, head.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ChainError::Transport("devnet stopped".to_owned())),
                Err(_) => return Err(ChainError::Timeout(timeout)),
            }
        }
    }

    async fn search(&self, message: &Cid) -> Result<Option<MessageLookup>, ChainError> {
        Ok(self.lock().receipts.get(message).cloned())
    }

    async fn tipset_messages(&self, epoch: ChainEpoch) -> Result<Vec<ChainMessage>, ChainError> {
        let messages = self.lock().messages_at(epoch)?;
        Ok(messages
            .into_iter()
            .map(|(cid, signed)| ChainMessage { cid, message: signed.message })
            .collect())
    }

    async fn call(&self, message: &Message) -> Result<Receipt, ChainError> {
        let mut data = self.lock();
        let sender = data
            .state
            .tree
            .resolve(&message.from)
            .ok_or_else(|| ChainError::NotFound(format!("sender {}", message.from)))?;
        let saved = data.state.tree.clone();
        let (exit_code, return_data) = data.state.apply(sender, message);
        data.state.tree = saved;
        Ok(Receipt { exit_code, return_data, gas_used: 0 })
    }

    async fn network_name(&self) -> Result<String, ChainError> {
        Ok(self.inner.config.network_name.clone())
    }

    async fn actor_code(&self, kind: ActorKind) -> Result<Cid, ChainError> {
        Ok(state::code_cid(state::kind_name(kind)))
    }
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet").field("network_name", &self.inner.config.network_name).finish()
    }
}
