//! The chain as the manager sees it: the [`Chain`] trait, and its two backends —
//! [`devnet::Devnet`], an in-process Filecoin-shaped chain, and [`lotus::LotusChain`], a
//! JSON-RPC client of a Lotus full node (or of `paych devnet`).
//!
//! The manager talks to a chain only through [`Chain`]. Both backends pass one conformance
//! suite, so the devnet behaves like the chain and the Lotus client is the code we test.

pub mod actor_codes;
pub mod devnet;
pub mod lotus;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use cid::Cid;

use crate::actor::ChannelState;
use crate::types::{
    Address, ChainEpoch, EncodeError, ExitCode, LaneState, Message, SignedMessage, TokenAmount,
};
use crate::wallet::{Wallet, WalletError};

/// The kind of an actor, as far as payment channels care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ActorKind {
    /// An account actor (a key address that can sign).
    Account,
    /// The Init actor, which creates payment channels.
    Init,
    /// A payment-channel actor.
    PaymentChannel,
    /// Any other actor (system, reward, burnt funds, miners, multisigs…).
    Other,
}

/// An actor's entry in the state tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorInfo {
    /// What kind of actor it is.
    pub kind: ActorKind,
    /// Its code CID.
    pub code: Cid,
    /// Its balance.
    pub balance: TokenAmount,
    /// Its nonce (messages sent, for accounts).
    pub nonce: u64,
}

/// A payment channel's on-chain state, with its lanes and balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOnChain {
    /// The channel's balance.
    pub balance: TokenAmount,
    /// The actor state: parties (ID addresses), `to_send`, settlement epochs and lanes.
    pub state: ChannelState,
}

impl ChannelOnChain {
    /// A lane's state on chain, if the lane exists there.
    pub fn lane(&self, lane: u64) -> Option<&LaneState> {
        self.state.lanes.get(&lane)
    }
}

/// A payment channel as a payee may count it: its state at the head, and the balance no short
/// reorganisation can take away. What [`Chain::channel_at_depth`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelAtDepth {
    /// The head epoch the channel was read at.
    pub head: ChainEpoch,
    /// The channel's state, lanes and balance at that head.
    pub channel: ChannelOnChain,
    /// The epoch the confirmed balance was read at: `head − depth`, or genesis (0) on a chain
    /// younger than the depth.
    pub confirmed_at: ChainEpoch,
    /// The lower of the channel's balance at the head and at `confirmed_at` — zero when the
    /// channel did not exist yet at `confirmed_at`. Funds added within the last `depth`
    /// epochs are not in it.
    pub confirmed_balance: TokenAmount,
}

/// The outcome of an executed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The exit code (0 is success).
    pub exit_code: ExitCode,
    /// The method's return value (CBOR).
    pub return_data: Vec<u8>,
    /// Gas used.
    pub gas_used: u64,
}

impl Receipt {
    /// Whether the message succeeded.
    pub fn is_ok(&self) -> bool {
        self.exit_code.is_success()
    }
}

/// Where and how a message landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageLookup {
    /// The message's CID.
    pub message: Cid,
    /// Its receipt.
    pub receipt: Receipt,
    /// The epoch of the tipset whose state includes its execution.
    pub epoch: ChainEpoch,
}

/// A message included in a tipset, as [`Chain::tipset_messages`] answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainMessage {
    /// The CID the chain knows the message by: the signed message's for a secp256k1
    /// sender, the unsigned message's for BLS (what `wait` and `search` take).
    pub cid: Cid,
    /// The message (its signature is not kept: what it says is what matters here).
    pub message: Message,
}

/// Why a chain operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The actor, message or object does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The chain refused the message (at push, or an actor aborted with an exit code).
    #[error("rejected{}: {message}", exit_code.map(|c| format!(" with exit code {}", c.value())).unwrap_or_default())]
    Rejected {
        /// The exit code, when an actor (rather than the message pool) refused.
        exit_code: Option<ExitCode>,
        /// What the chain said.
        message: String,
    },
    /// The chain could not be reached or answered with something unintelligible.
    #[error("transport: {0}")]
    Transport(String),
    /// The operation did not finish in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The node does not serve the method asked for (JSON-RPC -32601, "method not found" —
    /// a Lotus gateway, say). Asking again will not change that.
    #[error("not served by the node: {0}")]
    Unsupported(String),
    /// A TLS connection to the node could not be made: trying again will not change that
    /// until the node's certificate or the trusted roots do.
    #[error("TLS: {0}")]
    Tls(TlsError),
}

/// Why a TLS connection to a chain node failed, as the TLS library found it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The node's certificate does not chain to a trusted root (neither the system's nor a
    /// configured CA file's), or its signature is bad.
    #[error("certificate not trusted: {0}")]
    NotTrusted(String),
    /// The node's certificate has expired or is not valid yet.
    #[error("certificate expired or not yet valid: {0}")]
    Expired(String),
    /// The node's certificate is not valid for the host name dialled.
    #[error("certificate not valid for the host name: {0}")]
    WrongHost(String),
    /// Any other failure of the TLS handshake.
    #[error("handshake failed: {0}")]
    Handshake(String),
}

/// A Filecoin chain, as the payment-channel manager uses it.
#[async_trait]
pub trait Chain: Send + Sync {
    /// The current head epoch.
    async fn head(&self) -> Result<ChainEpoch, ChainError>;

    /// An actor's kind, balance and nonce; `None` if no actor has the address.
    async fn actor(&self, addr: &Address) -> Result<Option<ActorInfo>, ChainError>;

    /// A payment channel's state and lanes.
    async fn channel(&self, channel: &Address) -> Result<ChannelOnChain, ChainError>;

    /// The head's epoch and a payment channel's state and lanes at that head, read as one:
    /// what validating a voucher needs. This default reads the head and then the channel, so
    /// a block may land between the two; backends that can read both at one head override it.
    async fn channel_at_head(
        &self,
        channel: &Address,
    ) -> Result<(ChainEpoch, ChannelOnChain), ChainError> {
        let epoch = self.head().await?;
        Ok((epoch, self.channel(channel).await?))
    }

    /// An actor's balance in the chain's state at `epoch`: the state after the messages of the
    /// tipset at `epoch` on the current head's chain (on Lotus, the state read at that tipset,
    /// which holds every message whose [`MessageLookup::epoch`] is at or below `epoch`). An
    /// epoch at or above the head reads the head; a negative epoch reads genesis; an epoch
    /// without a block (a null round) reads the nearest tipset below it.
    ///
    /// `None` when no actor had the address then. For an address that has an actor at the
    /// head, that means the actor was created after `epoch`: for a payment channel, count its
    /// balance at `epoch` as zero.
    async fn balance_at(
        &self,
        addr: &Address,
        epoch: ChainEpoch,
    ) -> Result<Option<TokenAmount>, ChainError>;

    /// A payment channel at the head, with the balance confirmed `depth` epochs below it
    /// ([`ChannelAtDepth`]): what a payee crediting vouchers may count on, since a
    /// reorganisation shorter than `depth` cannot take away funds that were already there at
    /// `head − depth`. `NotFound` when the channel does not exist at the head. With `depth`
    /// 0 the confirmed balance is the head's.
    ///
    /// This default reads [`Chain::channel_at_head`], then [`Chain::balance_at`] at
    /// `head − depth` of the chain as it is then; backends that can read both on one chain
    /// override it.
    async fn channel_at_depth(
        &self,
        channel: &Address,
        depth: u64,
    ) -> Result<ChannelAtDepth, ChainError> {
        let (head, on_chain) = self.channel_at_head(channel).await?;
        let confirmed_at = depth_epoch(head, depth);
        let at_depth = if confirmed_at >= head {
            Some(on_chain.balance.clone())
        } else {
            self.balance_at(channel, confirmed_at).await?
        };
        Ok(ChannelAtDepth::new(head, on_chain, confirmed_at, at_depth))
    }

    /// The ID address an address resolves to, if any actor has it.
    async fn lookup_id(&self, addr: &Address) -> Result<Option<Address>, ChainError>;

    /// The key (f1) address of an account actor.
    async fn account_key(&self, addr: &Address) -> Result<Address, ChainError>;

    /// The nonce the next message from `addr` must carry (pending messages included).
    async fn next_nonce(&self, addr: &Address) -> Result<u64, ChainError>;

    /// Fills in a message's gas limit, fee cap and premium.
    async fn estimate_gas(&self, message: Message) -> Result<Message, ChainError>;

    /// Pushes a signed message to the message pool, returning its CID.
    async fn push(&self, message: &SignedMessage) -> Result<Cid, ChainError>;

    /// Waits until the message has executed and `confidence` more epochs have passed.
    async fn wait(
        &self,
        message: &Cid,
        confidence: u64,
        timeout: Duration,
    ) -> Result<MessageLookup, ChainError>;

    /// Finds an executed message, if it has executed.
    async fn search(&self, message: &Cid) -> Result<Option<MessageLookup>, ChainError>;

    /// The messages included in the tipset at `epoch` on the current head's chain, each once
    /// (a message included by several blocks of the tipset counts once), in block order:
    /// empty for an epoch without a block (a null round). A message is listed whether or not
    /// it executed successfully — what matters to a reader of its parameters is that they are
    /// public.
    ///
    /// `NotFound` for an epoch above the head, and for one whose messages the node no longer
    /// keeps (the devnet keeps [`devnet::MESSAGE_HISTORY`] epochs; a Lotus gateway looks back
    /// 24 hours). On the devnet a tipset's messages execute in that same tipset; on Lotus
    /// they execute on top of it, so their [`MessageLookup::epoch`] is a later one.
    async fn tipset_messages(&self, epoch: ChainEpoch) -> Result<Vec<ChainMessage>, ChainError>;

    /// Executes a message against the current state without changing it (no signature,
    /// nonce or gas checks).
    async fn call(&self, message: &Message) -> Result<Receipt, ChainError>;

    /// The network's name.
    async fn network_name(&self) -> Result<String, ChainError>;

    /// The code CID of a kind of built-in actor at the current network version (the
    /// payment-channel code goes into the Init actor's `Exec` to create a channel).
    async fn actor_code(&self, kind: ActorKind) -> Result<Cid, ChainError>;
}

/// The epoch `depth` epochs below `head`, never below genesis (0).
pub fn depth_epoch(head: ChainEpoch, depth: u64) -> ChainEpoch {
    let depth = ChainEpoch::try_from(depth).unwrap_or(ChainEpoch::MAX);
    head.saturating_sub(depth).max(0)
}

impl ChannelAtDepth {
    /// A channel read at `head`, with its balance at `confirmed_at` (`None`: it had no actor
    /// then, so nothing there is confirmed).
    pub fn new(
        head: ChainEpoch,
        channel: ChannelOnChain,
        confirmed_at: ChainEpoch,
        balance_at_depth: Option<TokenAmount>,
    ) -> Self {
        let at_depth = balance_at_depth.unwrap_or_default();
        let confirmed_balance =
            if at_depth < channel.balance { at_depth } else { channel.balance.clone() };
        ChannelAtDepth { head, channel, confirmed_at, confirmed_balance }
    }
}

/// Why a message could not be prepared for pushing.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The chain could not give a nonce or a gas estimate.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The wallet could not sign for the sender.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// The message could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Gives `message` its sender's next nonce and the chain's gas estimate, and signs it with
/// `wallet` over its CID — everything short of pushing it, so that the caller can record
/// the signed message first. Callers preparing messages concurrently for one sender must
/// take turns: the chain's next nonce counts only messages already pushed.
pub async fn prepare_message(
    chain: &dyn Chain,
    wallet: &dyn Wallet,
    mut message: Message,
) -> Result<SignedMessage, PrepareError> {
    message.nonce = chain.next_nonce(&message.from).await?;
    let message = chain.estimate_gas(message).await?;
    let signature = wallet.sign(&message.from, &message.cid()?.to_bytes())?;
    Ok(SignedMessage { message, signature })
}

/// Lane states keyed by lane, as read from a channel's lane-state AMT.
pub type Lanes = BTreeMap<u64, LaneState>;
