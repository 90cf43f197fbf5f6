//! The actor's view of a chain for the actor rule tests: an [`ActorEnv`] with accounts keyed
//! by real secp256k1 keys, a payer, a payee and a stranger, a non-account miner, the channel
//! (with a robust address), another channel, and a configurable `extra` call.

use std::cell::RefCell;
use std::collections::BTreeMap;

use paych_core::actor::{
    self, AccountLookup, ActorEnv, ChannelState, ExtraCallFailure, Invocation,
};
use paych_core::crypto::SecretKey;
use paych_core::types::{
    ActorID, Address, ModVerifyParams, Protocol, SignedVoucher, TokenAmount,
    UpdateChannelStateParams, INIT_ACTOR_ID,
};

use crate::amounts::atto;
use crate::keys;

/// The payer's ID.
pub const PAYER_ID: ActorID = 100;
/// The payee's ID.
pub const PAYEE_ID: ActorID = 101;
/// A third account, party to nothing.
pub const STRANGER_ID: ActorID = 102;
/// An actor that is not an account (say, a miner).
pub const MINER_ID: ActorID = 150;
/// The channel's ID.
pub const CHANNEL_ID: ActorID = 200;
/// Another payment channel.
pub const OTHER_CHANNEL_ID: ActorID = 201;

/// An actor in the environment's state tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// An account actor, with the key address that signs for it.
    Account(Address),
    /// Any other actor.
    Other,
}

/// What the actor sees of the chain.
#[derive(Debug, Clone)]
pub struct TestEnv {
    /// The call: epoch, the receiving actor's balance, who calls the actor and the actor
    /// called (the channel).
    pub call: Invocation,
    /// Non-ID addresses (key or robust) and the IDs they resolve to.
    pub ids: BTreeMap<Address, ActorID>,
    /// The actors by ID.
    pub actors: BTreeMap<ActorID, Actor>,
    /// What the voucher's `extra` call returns.
    pub extra_result: Result<(), ExtraCallFailure>,
    /// The `extra` calls made so far.
    pub extra_calls: RefCell<Vec<ModVerifyParams>>,
}

impl TestEnv {
    /// An empty chain at epoch 1 whose receiver is the channel, called by the Init actor.
    pub fn new() -> Self {
        TestEnv {
            call: Invocation {
                epoch: 1,
                balance: TokenAmount::default(),
                caller: Address::new_id(INIT_ACTOR_ID),
                receiver: Address::new_id(CHANNEL_ID),
            },
            ids: BTreeMap::new(),
            actors: BTreeMap::new(),
            extra_result: Ok(()),
            extra_calls: RefCell::new(Vec::new()),
        }
    }

    /// Registers an account actor for `key` under `id`.
    pub fn add_account(&mut self, id: ActorID, key: Address) {
        self.ids.insert(key, id);
        self.actors.insert(id, Actor::Account(key));
    }

    /// Registers a non-account actor under `id`, optionally with a robust address.
    pub fn add_other(&mut self, id: ActorID, robust: Option<Address>) {
        if let Some(robust) = robust {
            self.ids.insert(robust, id);
        }
        self.actors.insert(id, Actor::Other);
    }

    /// The ID a new actor would get.
    fn next_id(&self) -> ActorID {
        self.actors.keys().next_back().map_or(1000, |id| id + 1)
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl ActorEnv for TestEnv {
    fn invocation(&self) -> &Invocation {
        &self.call
    }

    fn resolve_address(&self, addr: &Address) -> Option<ActorID> {
        actor::id_or_lookup(addr, |a| self.ids.get(a).copied())
    }

    fn resolve_account(&self, addr: &Address) -> AccountLookup {
        let id = match addr.id() {
            Ok(id) => id,
            Err(_) => match self.ids.get(addr) {
                Some(id) => *id,
                // Sending to an unknown key address creates its account.
                None if matches!(addr.protocol(), Protocol::Secp256k1 | Protocol::BLS) => {
                    return AccountLookup::Account(self.next_id())
                }
                None => return AccountLookup::NotFound,
            },
        };
        match self.actors.get(&id) {
            Some(Actor::Account(_)) => AccountLookup::Account(id),
            Some(Actor::Other) => AccountLookup::NotAccount(id),
            None => AccountLookup::NotFound,
        }
    }

    fn verify_signature(
        &self,
        signature: &[u8],
        signer: &Address,
        data: &[u8],
    ) -> Result<(), String> {
        let key = match signer.id() {
            Ok(id) => match self.actors.get(&id) {
                Some(Actor::Account(key)) => *key,
                _ => return Err(format!("{signer} is not an account")),
            },
            Err(_) => *signer,
        };
        paych_core::crypto::verify_as_account(signature, &key, data).map_err(|e| e.to_string())
    }

    fn call_extra(&self, extra: &ModVerifyParams) -> Result<(), ExtraCallFailure> {
        self.extra_calls.borrow_mut().push(extra.clone());
        self.extra_result
    }
}

/// A party: its private key, f1 address and ID address.
#[derive(Debug, Clone)]
pub struct Party {
    /// The party's private key.
    pub key: SecretKey,
    /// Its f1 address.
    pub key_addr: Address,
    /// Its ID address.
    pub id: Address,
}

impl Party {
    /// A party with a fixed key made of `seed` bytes.
    pub fn new(seed: u8, id: ActorID) -> Self {
        let key = keys::key(seed);
        let key_addr = keys::address(&key);
        Party { key, key_addr, id: Address::new_id(id) }
    }
}

/// A payer, a payee and a stranger with accounts, a non-account miner, the channel (with a
/// robust address) and another channel, on a chain at epoch 1.
pub struct Setup {
    /// The chain as the actor sees it.
    pub env: TestEnv,
    /// The channel's payer.
    pub payer: Party,
    /// The channel's payee.
    pub payee: Party,
    /// An account party to nothing.
    pub stranger: Party,
    /// The channel's robust (f2) address.
    pub channel_robust: Address,
}

impl Setup {
    /// The world above, with `balance` in the channel and the payee calling.
    pub fn new(balance: u64) -> Self {
        let payer = Party::new(1, PAYER_ID);
        let payee = Party::new(2, PAYEE_ID);
        let stranger = Party::new(3, STRANGER_ID);
        let channel_robust = Address::new_actor(b"the channel");
        let mut env = TestEnv::new();
        for p in [&payer, &payee, &stranger] {
            env.add_account(p.id.id().unwrap(), p.key_addr);
        }
        env.add_other(MINER_ID, None);
        env.add_other(CHANNEL_ID, Some(channel_robust));
        env.add_other(OTHER_CHANNEL_ID, Some(Address::new_actor(b"another channel")));
        env.call.balance = atto(balance);
        env.call.caller = payee.id;
        Setup { env, payer, payee, stranger, channel_robust }
    }

    /// A fresh channel from the payer to the payee.
    pub fn channel(&self) -> ChannelState {
        ChannelState::new(self.payer.id, self.payee.id)
    }

    /// An unsigned voucher on this channel.
    pub fn voucher(&self, lane: u64, nonce: u64, amount: u64) -> SignedVoucher {
        SignedVoucher::new(Address::new_id(CHANNEL_ID), lane, nonce, atto(amount))
    }
}

/// `UpdateChannelState` parameters without a secret.
pub fn params(sv: SignedVoucher) -> UpdateChannelStateParams {
    UpdateChannelStateParams { sv, secret: Vec::new() }
}
