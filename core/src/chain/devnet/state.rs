//! The devnet's state tree and message execution.
//!
//! Pure with respect to time and I/O: [`State`] holds actors, addresses, the block store and
//! the message pool; [`State::execute`] runs one message, charging gas and invoking
//! [`crate::actor`] for payment channels. Failed messages roll the state tree back (gas and
//! nonce stay charged), exactly as the chain does.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use cid::Cid;
use fvm_ipld_amt::Amt;
use fvm_ipld_blockstore::Blockstore;
use serde::{Deserialize, Serialize};

use crate::actor::{
    self, AccountLookup, ActorEnv, ActorError, ChannelState, ExtraCallFailure, Invocation,
};
use crate::chain::{ActorInfo, ActorKind, ChainError, ChannelOnChain, Receipt};
use crate::crypto;
use crate::types::{
    cid_of, decode, paych_method, ActorID, Address, ChainEpoch, ConstructorParams, ExecParams,
    ExecReturn, ExitCode, LaneState, Message, ModVerifyParams, PaychState, Protocol, SignedMessage,
    TokenAmount, UpdateChannelStateParams, INIT_ACTOR_ID, INIT_EXEC_METHOD, METHOD_SEND,
};

/// The network version the devnet reports; it names the actor code CIDs.
pub const NETWORK_VERSION: u32 = 25;
/// The base fee, in attoFIL per unit of gas. Constant on the devnet.
pub const BASE_FEE_ATTO: u64 = 100;
/// The gas premium the devnet's estimator suggests, in attoFIL per unit of gas.
pub const DEFAULT_PREMIUM_ATTO: u64 = 100;
/// The most gas one message may use (the block gas limit).
pub const BLOCK_GAS_LIMIT: u64 = 10_000_000_000;
/// The system actor.
pub const SYSTEM_ACTOR_ID: ActorID = 0;
/// The reward actor.
pub const REWARD_ACTOR_ID: ActorID = 2;
/// The burnt-funds actor: every unit of gas charged ends here.
pub const BURNT_FUNDS_ACTOR_ID: ActorID = 99;
/// The first ID given to accounts and channels.
pub const FIRST_USER_ID: ActorID = 100;
/// How deep `extra` calls may nest (a channel's voucher calling a channel whose voucher calls
/// another…). The FVM allows 1024 nested calls; the devnet, which recurses on its own stack,
/// stops sooner, failing the deepest call as the FVM's `LimitExceeded` fails it (24).
pub const MAX_EXTRA_CALL_DEPTH: u32 = 32;
/// The bit width of the lane-state AMT.
pub const LANE_STATES_AMT_BITWIDTH: u32 = 3;

/// The gas table: what each kind of message costs on the devnet.
///
/// A message pays the FVM's on-chain message charges — 38 863 compute gas plus 1 300 gas per
/// byte of storage for 36 bytes of overhead and each byte of the signed message — plus a
/// fixed execution charge per method (approximations of mainnet receipts; see
/// docs/devnet.md).
pub mod gas {
    /// Compute charge of including any message.
    pub const MESSAGE_COMPUTE_BASE: u64 = 38_863;
    /// Storage charge multiplier per byte.
    pub const STORAGE_PER_BYTE: u64 = 1_300;
    /// Fixed storage bytes charged for any message.
    pub const MESSAGE_STORAGE_BASE_BYTES: u64 = 36;
    /// Execution of a plain value transfer.
    pub const SEND: u64 = 150_000;
    /// Execution of the Init actor's `Exec` creating a payment channel.
    pub const CREATE_CHANNEL: u64 = 8_000_000;
    /// Execution of `UpdateChannelState`, before merges.
    pub const UPDATE_CHANNEL_STATE: u64 = 3_500_000;
    /// Additional execution per merged lane.
    pub const PER_MERGE: u64 = 1_000_000;
    /// Execution of `Settle`.
    pub const SETTLE: u64 = 2_000_000;
    /// Execution of `Collect`.
    pub const COLLECT: u64 = 3_000_000;
    /// Execution of any other method (including failed dispatch).
    pub const OTHER: u64 = 500_000;
}

/// A code CID of a built-in actor: CIDv1, raw codec, identity multihash of
/// `fil/<network version>/<name>` — the form built-in actor code CIDs took before they
/// became WASM modules, and unambiguous on a devnet.
pub fn code_cid(name: &str) -> Cid {
    let text = format!("fil/{NETWORK_VERSION}/{name}");
    match multihash::Multihash::<64>::wrap(0x00, text.as_bytes()) {
        Ok(mh) => Cid::new_v1(0x55, mh),
        Err(_) => unreachable!("actor names are short"),
    }
}

/// The Lotus name of each actor kind's code.
pub fn kind_name(kind: ActorKind) -> &'static str {
    match kind {
        ActorKind::Account => "account",
        ActorKind::Init => "init",
        ActorKind::PaymentChannel => "paymentchannel",
        ActorKind::Other => "system",
    }
}

/// One actor in the state tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorEntry {
    /// Its kind.
    pub kind: ActorKind,
    /// Its Lotus code name (`account`, `paymentchannel`, `reward`…).
    pub code_name: String,
    /// Its balance.
    pub balance: TokenAmount,
    /// Messages sent (accounts).
    pub nonce: u64,
    /// The key address behind an account.
    pub key: Option<Address>,
    /// The robust (f2) address of a payment channel.
    pub robust: Option<Address>,
    /// The state root of a payment channel (its `PaychState` block).
    pub head: Option<Cid>,
}

impl ActorEntry {
    fn new(kind: ActorKind, code_name: &str) -> Self {
        ActorEntry {
            kind,
            code_name: code_name.to_owned(),
            balance: TokenAmount::default(),
            nonce: 0,
            key: None,
            robust: None,
            head: None,
        }
    }

    /// The actor as the `Chain` trait shows it.
    pub fn info(&self) -> ActorInfo {
        ActorInfo {
            kind: self.kind,
            code: code_cid(&self.code_name),
            balance: self.balance.clone(),
            nonce: self.nonce,
        }
    }
}

/// The actors and the addresses that resolve to them: everything a failed message rolls
/// back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Actors by ID.
    pub actors: BTreeMap<ActorID, ActorEntry>,
    /// Key and robust addresses and their IDs.
    pub ids: BTreeMap<Address, ActorID>,
    /// The next ID to assign.
    pub next_id: ActorID,
    /// Actors created by `Exec` so far (part of each robust address's preimage).
    pub actors_created: u64,
}

impl Tree {
    /// The ID an address resolves to.
    pub fn resolve(&self, addr: &Address) -> Option<ActorID> {
        match addr.protocol() {
            Protocol::ID => addr.id().ok().filter(|id| self.actors.contains_key(id)),
            _ => self.ids.get(addr).copied(),
        }
    }

    /// The actor `addr` names, if it exists.
    pub fn entry(&self, addr: &Address) -> Option<&ActorEntry> {
        self.resolve(addr).and_then(|id| self.actors.get(&id))
    }

    /// The ID of `addr`, creating an empty account for an unknown key address.
    fn resolve_or_create(&mut self, addr: &Address) -> Option<ActorID> {
        if let Some(id) = self.resolve(addr) {
            return Some(id);
        }
        if addr.protocol() != Protocol::Secp256k1 && addr.protocol() != Protocol::BLS {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut entry = ActorEntry::new(ActorKind::Account, "account");
        entry.key = Some(*addr);
        self.actors.insert(id, entry);
        self.ids.insert(*addr, id);
        Some(id)
    }

    fn balance_mut(&mut self, id: ActorID) -> Option<&mut TokenAmount> {
        self.actors.get_mut(&id).map(|a| &mut a.balance)
    }

    fn transfer(
        &mut self,
        from: ActorID,
        to: ActorID,
        amount: &TokenAmount,
    ) -> Result<(), ExitCode> {
        if amount.is_zero() {
            return Ok(());
        }
        let Some(balance) = self.balance_mut(from) else {
            return Err(ExitCode::SYS_SENDER_INVALID);
        };
        if *balance < *amount {
            return Err(ExitCode::SYS_INSUFFICIENT_FUNDS);
        }
        *balance -= amount;
        let Some(to) = self.balance_mut(to) else { return Err(ExitCode::SYS_INVALID_RECEIVER) };
        *to += amount;
        Ok(())
    }
}

/// The devnet's block store: content-addressed blocks in memory, with the CIDs written since
/// the last persistence noted so that only they are written out.
#[derive(Debug, Default)]
pub struct Blocks {
    map: RefCell<HashMap<Cid, Vec<u8>>>,
    dirty: RefCell<Vec<Cid>>,
    removed: RefCell<Vec<Cid>>,
}

impl Blocks {
    /// Inserts a block read back from persistence.
    pub fn load(&self, cid: Cid, bytes: Vec<u8>) {
        self.map.borrow_mut().insert(cid, bytes);
    }

    /// Takes the CIDs written since the last call, with their blocks.
    pub fn take_dirty(&self) -> Vec<(Cid, Vec<u8>)> {
        let dirty = std::mem::take(&mut *self.dirty.borrow_mut());
        let map = self.map.borrow();
        dirty.into_iter().filter_map(|c| map.get(&c).map(|b| (c, b.clone()))).collect()
    }

    /// Removes a block (a message older than the devnet's message history), noting its CID so
    /// that persistence deletes it too.
    pub fn remove(&self, cid: &Cid) {
        if self.map.borrow_mut().remove(cid).is_some() {
            self.removed.borrow_mut().push(*cid);
        }
    }

    /// Takes the CIDs removed since the last call.
    pub fn take_removed(&self) -> Vec<Cid> {
        std::mem::take(&mut *self.removed.borrow_mut())
    }

    /// A block by CID.
    pub fn read(&self, cid: &Cid) -> Option<Vec<u8>> {
        self.map.borrow().get(cid).cloned()
    }

    /// Stores a CBOR block, returning its CID.
    pub fn put_cbor(&self, cbor: Vec<u8>) -> Cid {
        let cid = cid_of(&cbor);
        self.insert(cid, || cbor);
        cid
    }

    fn insert(&self, cid: Cid, bytes: impl FnOnce() -> Vec<u8>) {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.map.borrow_mut().entry(cid) {
            slot.insert(bytes());
            self.dirty.borrow_mut().push(cid);
        }
    }
}

impl Blockstore for Blocks {
    fn get(&self, k: &Cid) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.read(k))
    }

    fn put_keyed(&self, k: &Cid, block: &[u8]) -> anyhow::Result<()> {
        self.insert(*k, || block.to_vec());
        Ok(())
    }
}

/// The devnet's state: the tree, the block store and the current epoch.
#[derive(Debug, Default)]
pub struct State {
    /// The current epoch.
    pub epoch: ChainEpoch,
    /// Actors and addresses.
    pub tree: Tree,
    /// Blocks of actor state.
    pub blocks: Blocks,
}

fn internal(e: impl std::fmt::Display) -> ChainError {
    ChainError::Transport(format!("devnet state: {e}"))
}

impl State {
    /// A state with the singleton actors: system (f00), init (f01), reward (f02) and burnt
    /// funds (f099, an account without a key, as on mainnet).
    pub fn genesis() -> Self {
        let mut tree = Tree { next_id: FIRST_USER_ID, ..Tree::default() };
        tree.actors.insert(SYSTEM_ACTOR_ID, ActorEntry::new(ActorKind::Other, "system"));
        tree.actors.insert(INIT_ACTOR_ID, ActorEntry::new(ActorKind::Init, "init"));
        tree.actors.insert(REWARD_ACTOR_ID, ActorEntry::new(ActorKind::Other, "reward"));
        tree.actors.insert(BURNT_FUNDS_ACTOR_ID, ActorEntry::new(ActorKind::Account, "account"));
        State { epoch: 0, tree, blocks: Blocks::default() }
    }

    /// Credits a key address at genesis (creating its account).
    pub fn credit(&mut self, addr: &Address, amount: &TokenAmount) -> Result<ActorID, ChainError> {
        let id = self.tree.resolve_or_create(addr).ok_or_else(|| ChainError::Rejected {
            exit_code: None,
            message: format!("cannot fund {addr}: not a key address"),
        })?;
        if let Some(balance) = self.tree.balance_mut(id) {
            *balance += amount;
        }
        Ok(id)
    }

    /// The sum of all balances.
    pub fn total_balance(&self) -> TokenAmount {
        self.tree.actors.values().map(|a| a.balance.clone()).sum()
    }

    /// A payment channel's state with its lanes.
    pub fn channel(&self, addr: &Address) -> Result<ChannelOnChain, ChainError> {
        let entry = self
            .tree
            .entry(addr)
            .filter(|e| e.kind == ActorKind::PaymentChannel)
            .ok_or_else(|| ChainError::NotFound(format!("payment channel {addr}")))?;
        let head = entry.head.ok_or_else(|| internal("channel without state"))?;
        let state = self.load_channel(&head)?;
        Ok(ChannelOnChain { balance: entry.balance.clone(), state })
    }

    /// The decoded `PaychState` block at `head`.
    pub fn paych_state(&self, head: &Cid) -> Result<PaychState, ChainError> {
        let bytes = self.blocks.read(head).ok_or_else(|| internal("missing state block"))?;
        decode::decode(&bytes).map_err(internal)
    }

    fn load_channel(&self, head: &Cid) -> Result<ChannelState, ChainError> {
        let st = self.paych_state(head)?;
        let mut lanes = BTreeMap::new();
        let amt = Amt::<LaneState, _>::load(&st.lane_states, &self.blocks).map_err(internal)?;
        amt.for_each(|lane, ls| {
            lanes.insert(lane, ls.clone());
            Ok(())
        })
        .map_err(internal)?;
        Ok(ChannelState {
            from: st.from,
            to: st.to,
            to_send: st.to_send,
            settling_at: st.settling_at,
            min_settle_height: st.min_settle_height,
            lanes,
        })
    }

    fn store_channel(&self, st: &ChannelState) -> Result<Cid, ChainError> {
        let mut amt = Amt::new_with_bit_width(&self.blocks, LANE_STATES_AMT_BITWIDTH);
        for (lane, ls) in &st.lanes {
            amt.set(*lane, ls.clone()).map_err(internal)?;
        }
        let lane_states = amt.flush().map_err(internal)?;
        let state = PaychState {
            from: st.from,
            to: st.to,
            to_send: st.to_send.clone(),
            settling_at: st.settling_at,
            min_settle_height: st.min_settle_height,
            lane_states,
        };
        Ok(self.blocks.put_cbor(fvm_ipld_encoding::to_vec(&state).map_err(internal)?))
    }

    /// The gas a message uses on the devnet (its storage size included), by what it calls.
    pub fn gas_for(&self, msg: &Message, signed_len: usize) -> u64 {
        let storage = (gas::MESSAGE_STORAGE_BASE_BYTES + signed_len as u64) * gas::STORAGE_PER_BYTE;
        let execution = match (self.tree.entry(&msg.to).map(|e| e.kind), msg.method) {
            (_, METHOD_SEND) => gas::SEND,
            (Some(ActorKind::Init), INIT_EXEC_METHOD) => gas::CREATE_CHANNEL,
            (Some(ActorKind::PaymentChannel), paych_method::UPDATE_CHANNEL_STATE) => {
                let merges = decode::decode::<UpdateChannelStateParams>(&msg.params)
                    .map(|p| p.sv.merges.len() as u64)
                    .unwrap_or(0);
                gas::UPDATE_CHANNEL_STATE + merges * gas::PER_MERGE
            }
            (Some(ActorKind::PaymentChannel), paych_method::SETTLE) => gas::SETTLE,
            (Some(ActorKind::PaymentChannel), paych_method::COLLECT) => gas::COLLECT,
            _ => gas::OTHER,
        };
        gas::MESSAGE_COMPUTE_BASE + storage + execution
    }

    /// The price per unit of gas a message pays: its fee cap, or base fee plus premium if
    /// lower.
    pub fn gas_price(msg: &Message) -> TokenAmount {
        let wanted = TokenAmount::from_atto(BASE_FEE_ATTO) + &msg.gas_premium;
        if msg.gas_fee_cap < wanted {
            msg.gas_fee_cap.clone()
        } else {
            wanted
        }
    }

    /// Executes a message included in a block: charges gas to the sender (burnt), bumps
    /// its nonce, then applies the method; a failed method is rolled back.
    pub fn execute(&mut self, signed: &SignedMessage, signed_len: usize) -> Receipt {
        let msg = &signed.message;
        let Some(sender) = self.tree.resolve(&msg.from) else {
            return Receipt {
                exit_code: ExitCode::SYS_SENDER_INVALID,
                return_data: Vec::new(),
                gas_used: 0,
            };
        };
        let needed = self.gas_for(msg, signed_len);
        let (gas_used, out_of_gas) =
            if needed > msg.gas_limit { (msg.gas_limit, true) } else { (needed, false) };
        let fee = Self::gas_price(msg) * gas_used;
        if let Some(actor) = self.tree.actors.get_mut(&sender) {
            actor.nonce += 1;
        }
        // The pool checked the sender can afford gas_limit × fee_cap ≥ this fee.
        if self.tree.transfer(sender, BURNT_FUNDS_ACTOR_ID, &fee).is_err() {
            return Receipt {
                exit_code: ExitCode::SYS_INSUFFICIENT_FUNDS,
                return_data: Vec::new(),
                gas_used,
            };
        }
        if out_of_gas {
            return Receipt {
                exit_code: ExitCode::SYS_OUT_OF_GAS,
                return_data: Vec::new(),
                gas_used,
            };
        }
        let (exit_code, return_data) = self.apply(sender, msg);
        Receipt { exit_code, return_data, gas_used }
    }

    /// Applies a message's value transfer and method, rolling back on failure. Nothing is
    /// charged: this is also the dry run of `StateCall`.
    pub fn apply(&mut self, sender: ActorID, msg: &Message) -> (ExitCode, Vec<u8>) {
        let saved = self.tree.clone();
        match self.invoke(sender, msg, 0) {
            Ok(ret) => (ExitCode::OK, ret),
            Err(code) => {
                self.tree = saved;
                (code, Vec::new())
            }
        }
    }

    /// Runs a message's value transfer and method; `depth` counts the `extra` calls it is
    /// nested in. A failure leaves partial changes: the caller rolls back.
    fn invoke(&mut self, sender: ActorID, msg: &Message, depth: u32) -> Result<Vec<u8>, ExitCode> {
        let receiver =
            self.tree.resolve_or_create(&msg.to).ok_or(ExitCode::SYS_INVALID_RECEIVER)?;
        self.tree.transfer(sender, receiver, &msg.value)?;
        let kind = self
            .tree
            .actors
            .get(&receiver)
            .map(|a| a.kind)
            .ok_or(ExitCode::SYS_INVALID_RECEIVER)?;
        match (kind, msg.method) {
            (_, METHOD_SEND) => Ok(Vec::new()),
            (ActorKind::Init, INIT_EXEC_METHOD) => self.exec(msg),
            (ActorKind::PaymentChannel, method) => {
                self.invoke_channel(sender, receiver, method, &msg.params, depth)
            }
            _ => Err(ExitCode::USR_UNHANDLED_MESSAGE),
        }
    }

    /// The Init actor's `Exec`: creates a payment channel with the message's value.
    fn exec(&mut self, msg: &Message) -> Result<Vec<u8>, ExitCode> {
        let params: ExecParams =
            decode::decode(&msg.params).map_err(|_| ExitCode::USR_SERIALIZATION)?;
        if params.code_cid != code_cid("paymentchannel") {
            return Err(ExitCode::USR_FORBIDDEN);
        }
        let ctor: ConstructorParams =
            decode::decode(&params.constructor_params).map_err(|_| ExitCode::USR_SERIALIZATION)?;
        // The robust address: blake2b-160 of the origin's address bytes, its nonce and the
        // number of actors created so far, as the FVM derives it.
        let origin =
            self.tree.entry(&msg.from).map(|_| msg.from).ok_or(ExitCode::SYS_SENDER_INVALID)?;
        let mut preimage = origin.to_bytes();
        preimage.extend_from_slice(&msg.nonce.to_be_bytes());
        preimage.extend_from_slice(&self.tree.actors_created.to_be_bytes());
        let robust = Address::new_actor(&preimage);
        self.tree.actors_created += 1;
        let id = self.tree.next_id;
        self.tree.next_id += 1;
        // Parties given by key address get an account, as a send to them would create one.
        for party in [&ctor.from, &ctor.to] {
            if matches!(party.protocol(), Protocol::Secp256k1 | Protocol::BLS) {
                self.tree.resolve_or_create(party);
            }
        }
        let epoch = self.epoch;
        let env = Env {
            state: RefCell::new(&mut *self),
            call: Invocation {
                epoch,
                balance: TokenAmount::default(),
                caller: Address::new_id(INIT_ACTOR_ID),
                receiver: Address::new_id(id),
            },
            // The constructor makes no extra call.
            depth: 0,
        };
        let channel = actor::construct(&env, &ctor).map_err(|e| e.exit_code());
        drop(env);
        let channel = channel?;
        let head = self.store_channel(&channel).map_err(|_| ExitCode::USR_ILLEGAL_STATE)?;
        let mut entry = ActorEntry::new(ActorKind::PaymentChannel, "paymentchannel");
        entry.robust = Some(robust);
        entry.head = Some(head);
        self.tree.actors.insert(id, entry);
        self.tree.ids.insert(robust, id);
        self.tree.transfer(INIT_ACTOR_ID, id, &msg.value)?;
        let ret = ExecReturn { id_address: Address::new_id(id), robust_address: robust };
        fvm_ipld_encoding::to_vec(&ret).map_err(|_| ExitCode::USR_SERIALIZATION)
    }

    fn invoke_channel(
        &mut self,
        sender: ActorID,
        channel: ActorID,
        method: u64,
        params: &[u8],
        depth: u32,
    ) -> Result<Vec<u8>, ExitCode> {
        let entry = self.tree.actors.get(&channel).ok_or(ExitCode::SYS_INVALID_RECEIVER)?;
        let head = entry.head.ok_or(ExitCode::USR_ILLEGAL_STATE)?;
        let mut state = self.load_channel(&head).map_err(|_| ExitCode::USR_ILLEGAL_STATE)?;
        let (epoch, balance) = (self.epoch, entry.balance.clone());
        let env = Env {
            state: RefCell::new(&mut *self),
            call: Invocation {
                epoch,
                balance,
                caller: Address::new_id(sender),
                receiver: Address::new_id(channel),
            },
            depth,
        };
        let code = |e: ActorError| e.exit_code();
        let payout = match method {
            paych_method::UPDATE_CHANNEL_STATE => {
                let params: UpdateChannelStateParams =
                    decode::decode(params).map_err(|_| ExitCode::USR_SERIALIZATION)?;
                actor::update_channel_state(&mut state, &env, &params).map_err(code)?;
                None
            }
            paych_method::SETTLE => {
                actor::settle(&mut state, &env).map_err(code)?;
                None
            }
            paych_method::COLLECT => Some(actor::collect(&state, &env).map_err(code)?),
            _ => return Err(ExitCode::USR_UNHANDLED_MESSAGE),
        };
        drop(env);
        if let Some(payout) = payout {
            let to = state.to.id().map_err(|_| ExitCode::USR_ILLEGAL_STATE)?;
            let from = state.from.id().map_err(|_| ExitCode::USR_ILLEGAL_STATE)?;
            self.tree.transfer(channel, to, &payout.to)?;
            self.tree.transfer(channel, from, &payout.from)?;
            if let Some(removed) = self.tree.actors.remove(&channel) {
                if let Some(robust) = removed.robust {
                    self.tree.ids.remove(&robust);
                }
            }
            return Ok(Vec::new());
        }
        let head = self.store_channel(&state).map_err(|_| ExitCode::USR_ILLEGAL_STATE)?;
        if let Some(entry) = self.tree.actors.get_mut(&channel) {
            entry.head = Some(head);
        }
        Ok(Vec::new())
    }

    /// Checks a signed message's signature: over the bytes of the message's CID, by the key
    /// behind its sender.
    pub fn verify_signature(&self, signed: &SignedMessage) -> Result<(), ChainError> {
        let from = &signed.message.from;
        let key = self
            .account_key(from)
            .map_err(|_| rejected(format!("sender {from} has no key to sign with")))?;
        let cid = signed.message.cid().map_err(|e| rejected(e.to_string()))?;
        crypto::verify(&signed.signature, &key, &cid.to_bytes())
            .map_err(|e| rejected(format!("invalid signature: {e}")))
    }

    /// The account and key behind an address, for `StateAccountKey`.
    pub fn account_key(&self, addr: &Address) -> Result<Address, ChainError> {
        if matches!(addr.protocol(), Protocol::Secp256k1 | Protocol::BLS) {
            return Ok(*addr);
        }
        self.tree
            .entry(addr)
            .and_then(|e| e.key)
            .ok_or_else(|| ChainError::NotFound(format!("account key of {addr}")))
    }
}

fn rejected(message: String) -> ChainError {
    ChainError::Rejected { exit_code: None, message }
}

/// What the payment-channel actor sees while the devnet runs it: the devnet's state, which
/// the voucher's `extra` call may change (it runs as a message from the channel would).
struct Env<'a> {
    state: RefCell<&'a mut State>,
    call: Invocation,
    /// How many `extra` calls this run is nested in.
    depth: u32,
}

impl ActorEnv for Env<'_> {
    fn invocation(&self) -> &Invocation {
        &self.call
    }

    fn resolve_address(&self, addr: &Address) -> Option<ActorID> {
        self.state.borrow().tree.resolve(addr)
    }

    fn resolve_account(&self, addr: &Address) -> AccountLookup {
        let state = self.state.borrow();
        match state.tree.resolve(addr) {
            None => AccountLookup::NotFound,
            Some(id) => match state.tree.actors.get(&id) {
                Some(a) if a.kind == ActorKind::Account => AccountLookup::Account(id),
                _ => AccountLookup::NotAccount(id),
            },
        }
    }

    fn verify_signature(
        &self,
        signature: &[u8],
        signer: &Address,
        data: &[u8],
    ) -> Result<(), String> {
        let key = self
            .state
            .borrow()
            .tree
            .entry(signer)
            .and_then(|e| e.key)
            .ok_or_else(|| format!("signer {signer} has no key"))?;
        crypto::verify_as_account(signature, &key, data).map_err(|e| e.to_string())
    }

    /// The call runs through the devnet's own dispatch, as a message from the channel with
    /// no value: a callee the devnet cannot find fails as [`ExtraCallFailure::CalleeMissing`],
    /// a key address gets its account; a successful call's changes stay (a failed redemption
    /// rolls back everything). Its exit code is read exactly as a payee reads the `StateCall`
    /// dry run of the same call.
    fn call_extra(&self, extra: &ModVerifyParams) -> Result<(), ExtraCallFailure> {
        if self.depth >= MAX_EXTRA_CALL_DEPTH {
            return Err(ExtraCallFailure::CallDepthExceeded);
        }
        let channel = self.call.receiver.id().map_err(|_| ExtraCallFailure::CalleeMissing)?;
        let call = Message::new(
            self.call.receiver,
            extra.actor,
            0,
            TokenAmount::default(),
            extra.method,
            extra.data.clone(),
        );
        // No rollback of its own: a failed extra call fails every call it is nested in, and
        // the message's own rollback undoes it all.
        match self.state.borrow_mut().invoke(channel, &call, self.depth + 1) {
            Ok(_) => Ok(()),
            Err(exit_code) => ExtraCallFailure::from_dry_run(exit_code).map_or(Ok(()), Err),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::crypto::SecretKey;
    use crate::types::SignedVoucher;

    fn key_address(seed: u8) -> Address {
        let secret = crypto::secret_key(&[seed; 32]).unwrap();
        crypto::secp_address(&crypto::public_key(&secret))
    }

    /// A settled channel owing `to_send` to its payee while holding only `balance` — a
    /// state no message sequence reaches, made by hand to see what `Collect` does with it.
    fn settled_channel(state: &mut State, to_send: u64, balance: u64) -> (ActorID, ActorID) {
        let from = state.credit(&key_address(1), &TokenAmount::from_whole(1)).unwrap();
        let to = state.credit(&key_address(2), &TokenAmount::from_whole(1)).unwrap();
        let mut channel = ChannelState::new(Address::new_id(from), Address::new_id(to));
        channel.to_send = TokenAmount::from_atto(to_send);
        channel.settling_at = 5;
        let head = state.store_channel(&channel).unwrap();
        let id = state.tree.next_id;
        state.tree.next_id += 1;
        let mut entry = ActorEntry::new(ActorKind::PaymentChannel, "paymentchannel");
        entry.head = Some(head);
        entry.balance = TokenAmount::from_atto(balance);
        state.tree.actors.insert(id, entry);
        state.epoch = 10;
        (to, id)
    }

    /// A channel from `from` to `to` holding nothing, as the constructor leaves it.
    fn channel_between(state: &mut State, from: ActorID, to: ActorID) -> ActorID {
        let channel = ChannelState::new(Address::new_id(from), Address::new_id(to));
        let head = state.store_channel(&channel).unwrap();
        let id = state.tree.next_id;
        state.tree.next_id += 1;
        let mut entry = ActorEntry::new(ActorKind::PaymentChannel, "paymentchannel");
        entry.head = Some(head);
        state.tree.actors.insert(id, entry);
        id
    }

    /// `UpdateChannelState` parameters of a zero voucher on `channel` signed with `key`.
    fn zero_voucher(channel: ActorID, key: &SecretKey, extra: Option<ModVerifyParams>) -> Vec<u8> {
        let mut sv = SignedVoucher::new(Address::new_id(channel), 0, 1, TokenAmount::default());
        sv.extra = extra;
        sv.signature = Some(crypto::sign(key, &sv.signing_bytes().unwrap()));
        fvm_ipld_encoding::to_vec(&UpdateChannelStateParams { sv, secret: Vec::new() }).unwrap()
    }

    /// `n` channels, each the payee of the next, and a voucher on the first whose extra call
    /// redeems a voucher on the second, whose extra call redeems one on the third…: the exit
    /// code of redeeming it.
    fn redeem_nested(n: usize) -> ExitCode {
        let mut state = State::genesis();
        let key = crypto::secret_key(&[1; 32]).unwrap();
        let payer = state.credit(&key_address(1), &TokenAmount::from_whole(1)).unwrap();
        let payee = state.credit(&key_address(2), &TokenAmount::from_whole(1)).unwrap();
        let mut channels = vec![channel_between(&mut state, payer, payee)];
        while channels.len() < n {
            let last = channels[channels.len() - 1];
            channels.push(channel_between(&mut state, payer, last));
        }
        let mut params = zero_voucher(channels[n - 1], &key, None);
        for k in (0..n - 1).rev() {
            let extra = ModVerifyParams {
                actor: Address::new_id(channels[k + 1]),
                method: paych_method::UPDATE_CHANNEL_STATE,
                data: params,
            };
            params = zero_voucher(channels[k], &key, Some(extra));
        }
        let redeem = Message::new(
            Address::new_id(payee),
            Address::new_id(channels[0]),
            0,
            TokenAmount::default(),
            paych_method::UPDATE_CHANNEL_STATE,
            params,
        );
        state.apply(payee, &redeem).0
    }

    #[test]
    fn extra_calls_nest_up_to_the_devnet_depth_and_deeper_fail_with_exit_24() {
        let depth = MAX_EXTRA_CALL_DEPTH as usize;
        assert_eq!(redeem_nested(2), ExitCode::OK);
        assert_eq!(redeem_nested(depth + 1), ExitCode::OK);
        assert_eq!(redeem_nested(depth + 2), ExitCode::USR_ASSERTION_FAILED);
    }

    #[test]
    fn collect_of_a_channel_holding_less_than_to_send_fails_with_exit_19_and_pays_nothing() {
        let mut state = State::genesis();
        let (payee, channel) = settled_channel(&mut state, 100, 60);
        let before = state.tree.clone();
        let collect = Message::new(
            Address::new_id(payee),
            Address::new_id(channel),
            0,
            TokenAmount::default(),
            paych_method::COLLECT,
            Vec::new(),
        );
        let (exit_code, _) = state.apply(payee, &collect);
        assert_eq!(exit_code, ExitCode::USR_INSUFFICIENT_FUNDS);
        assert_eq!(state.tree, before, "nothing paid, the channel still there");
    }
}
