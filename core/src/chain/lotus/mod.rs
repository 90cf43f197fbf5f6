//! A JSON-RPC client of a Lotus full node (or of `paych devnet`, which serves the same
//! methods): [`LotusChain`] implements [`Chain`] over HTTP JSON-RPC 2.0.
//!
//! Requests go to the API info's endpoint (`<host>/rpc/v1`, or a URL's own path) as
//! `Filecoin.<Name>` with positional parameters and Lotus JSON ([`crate::lotus_json`]); the
//! node is configured as the Lotus tools are, from
//! `FULLNODE_API_INFO=TOKEN:/ip4/127.0.0.1/tcp/1234/http` ([`ApiInfo`]). `https` endpoints
//! are reached with rustls (ring), trusting the system's roots and, for a private node, the
//! CA certificates of [`LotusConfig::ca_file`]. Every request has a timeout and runs in a
//! `lotus_rpc` tracing span. Transport failures (connection refused, timeouts, 5xx
//! answers) are retried with exponential backoff; a TLS failure ([`ChainError::Tls`]) and a
//! JSON-RPC error answer never are — a rejected message must not be pushed again, and a
//! certificate does not become trusted by asking again. JSON-RPC error codes are read as
//! go-jsonrpc and Lotus define them ([`errors::CODES`]). Answers are bounded in size.
//!
//! Actor kinds come from the code CIDs of [`crate::chain::actor_codes`]; a code not there is
//! looked up with `StateActorCodeCIDs`. A Lotus gateway does not serve that method: the
//! client switches to **gateway mode** the first time it answers "method not found"
//! (-32601), or from the start with [`LotusConfig::gateway`], and then uses only the table
//! (the payment-channel code to create channels with is the one of the Init actor's
//! release). Every other method the client calls is one a gateway serves (Lotus
//! `api/api_gateway.go`).
//!
//! A channel's lanes are read as the chain stores them: the blocks of its lane-state AMT are
//! fetched with `ChainReadObj` (each checked against its CID) into a memory block store,
//! then read with `fvm_ipld_amt`. The lanes read are kept by the AMT's root CID (bounded):
//! a root names its content, so they are never stale, and a channel whose lanes have not
//! changed costs one `StateReadState` to read. [`Chain::channel_at_head`] reads a channel at
//! the head tipset's key and keeps it for as long as that tipset is the head;
//! [`Chain::channel_at_depth`] also finds the tipset `depth` epochs below on that head's chain
//! (`ChainGetTipSetByHeight` with the head's key) and reads the channel's balance there
//! (`StateGetActor` at that key), kept likewise.
//!
//! A tipset's messages ([`Chain::tipset_messages`]) are read as a Lotus gateway serves them:
//! `ChainGetTipSetByHeight` with the head's key (empty), then `ChainGetBlockMessages` for
//! each of its blocks, deduplicated by CID — both methods are in Lotus's `Gateway` interface
//! (`api/api_gateway.go`). Every message any block carries is listed, including one another
//! block's message with the same sender and nonce displaced from execution: its parameters are
//! public all the same.
//!
//! This module never holds keys or signs; it carries what the caller signed.

pub mod api_info;
pub mod errors;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use cid::Cid;
use fvm_ipld_amt::Amt;
use fvm_ipld_blockstore::{Blockstore, MemoryBlockstore};
use ipld_core::ipld::Ipld;
use serde_json::{json as json_value, Value};
use tokio::time::Instant;
use tracing::Instrument;

pub use api_info::{ApiInfo, ApiInfoError, FULLNODE_API_INFO, MAX_API_INFO_LEN};
use errors::{answer, refused};

use super::actor_codes;
use super::{
    depth_epoch, ActorInfo, ActorKind, Chain, ChainError, ChainMessage, ChannelAtDepth,
    ChannelOnChain, Lanes, MessageLookup, Receipt,
};
use crate::actor::ChannelState;
use crate::jsonrpc::{RpcRequest, RpcResponse};
use crate::lotus_json::{self as json, JsonError, LotusJson};
use crate::types::{
    format_address, Address, ChainEpoch, LaneState, Message, Network, PaychState, Protocol,
    SignedMessage, TokenAmount, BLAKE2B_256, INIT_ACTOR_ID,
};

/// The most blocks read for one channel's lane-state AMT.
pub const MAX_AMT_BLOCKS: usize = 4096;
/// The most bytes read for one channel's lane-state AMT.
pub const MAX_AMT_BYTES: usize = 16 << 20;

/// How a [`LotusChain`] talks to its node.
#[derive(Debug, Clone)]
pub struct LotusConfig {
    /// The node's API.
    pub api: ApiInfo,
    /// The timeout of one request (`StateWaitMsg` uses the caller's timeout instead).
    pub request_timeout: Duration,
    /// How many times a request that failed in transport is tried again.
    pub retries: u32,
    /// The wait before the first retry; it doubles on each retry.
    pub backoff: Duration,
    /// The longest wait between retries.
    pub max_backoff: Duration,
    /// The largest answer read, in bytes.
    pub max_response_bytes: usize,
    /// The network whose prefix addresses are written with (Lotus reads both).
    pub network: Network,
    /// A PEM file of CA certificates trusted for `https` endpoints besides the system's
    /// roots: for a private node with its own CA.
    pub ca_file: Option<PathBuf>,
    /// Gateway mode from the start: never ask for methods a Lotus gateway does not serve
    /// (otherwise the client switches on the first "method not found").
    pub gateway: bool,
}

impl LotusConfig {
    /// The defaults for `api`: 30 s requests, 3 retries from 250 ms backoff up to 4 s,
    /// 16 MiB answers, testnet addresses.
    pub fn new(api: ApiInfo) -> Self {
        LotusConfig {
            api,
            request_timeout: Duration::from_secs(30),
            retries: 3,
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            max_response_bytes: 16 << 20,
            network: Network::Testnet,
            ca_file: None,
            gateway: false,
        }
    }
}

/// Why a [`LotusChain`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LotusConfigError {
    /// The API info is invalid.
    #[error(transparent)]
    ApiInfo(#[from] ApiInfoError),
    /// The token cannot be sent in an HTTP header.
    #[error("the API token is not a valid HTTP header value")]
    InvalidToken,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// The CA file could not be read, or holds no PEM certificate.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
}

/// The largest CA file read, in bytes.
pub const MAX_CA_FILE_BYTES: u64 = 1 << 20;

/// The actor code CIDs seen so far, by code.
#[derive(Default)]
struct CodeCache {
    kinds: HashMap<Cid, ActorKind>,
    /// The network version whose code CIDs were fetched last.
    refreshed_for: Option<u32>,
    /// The code CIDs of that network version, by actor name.
    names: BTreeMap<String, Cid>,
}

/// Address resolutions that do not change once made: a robust address's ID, an account's
/// key address. Validating one voucher asks for several of them; caching them saves a
/// round trip to the node for each.
#[derive(Default)]
struct AddressCache {
    ids: HashMap<Address, Address>,
    keys: HashMap<Address, Address>,
}

/// The most resolutions [`AddressCache`] keeps of each kind; it starts over when full.
const MAX_CACHED_ADDRESSES: usize = 65_536;

/// The most lane-state AMTs kept by their root CID; the cache starts over when full.
const MAX_CACHED_LANE_ROOTS: usize = 1024;
/// Channels (and lane-state AMTs) with more lanes than this are read again each time rather
/// than kept.
const MAX_CACHED_LANES: usize = 4096;

/// A [`Chain`] backed by a Lotus full node's JSON-RPC API.
pub struct LotusChain {
    http: reqwest::Client,
    url: String,
    config: LotusConfig,
    next_id: AtomicU64,
    /// Whether the node is a gateway (configured, or found by a "method not found").
    gateway: AtomicBool,
    codes: Mutex<CodeCache>,
    addresses: Mutex<AddressCache>,
    /// Lane-state AMTs read so far, by root CID. A root names its content, so a kept AMT is
    /// never stale: a channel whose lanes change gets a new root, read anew.
    lanes: Mutex<HashMap<Cid, Lanes>>,
    /// Channels read at the latest head seen, by address.
    at_head: Mutex<HeadCache>,
}

/// The channels read at one head tipset: a channel's state at a tipset never changes, so a
/// payee validating several vouchers within one epoch reads each channel once.
#[derive(Default)]
struct HeadCache {
    /// The tipset's key (its blocks' CIDs).
    key: Vec<Cid>,
    channels: HashMap<Address, ChannelOnChain>,
    /// Balances read below that head, by channel and epoch (`None`: no actor then).
    confirmed: HashMap<(Address, ChainEpoch), Option<TokenAmount>>,
}

impl HeadCache {
    /// Forgets everything unless it was read at the head `key` and there is room for one more
    /// entry.
    fn keep_for(&mut self, key: &[Cid]) {
        let full = self.channels.len() >= MAX_CHANNELS_AT_HEAD
            || self.confirmed.len() >= MAX_CHANNELS_AT_HEAD;
        if self.key != key || full {
            self.key = key.to_vec();
            self.channels.clear();
            self.confirmed.clear();
        }
    }
}

/// The most code CIDs [`CodeCache`] keeps; it starts over when full.
const MAX_CACHED_CODES: usize = 4096;

/// The most channels (and, apart, confirmed balances) [`HeadCache`] keeps for one head; it
/// starts over when full.
const MAX_CHANNELS_AT_HEAD: usize = 4096;

impl std::fmt::Debug for LotusChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LotusChain").field("url", &self.url).finish_non_exhaustive()
    }
}

/// How one attempt at a request failed.
enum AttemptError {
    /// A transport failure worth trying again.
    Retry(ChainError),
    /// A failure that trying again would not change.
    Fatal(ChainError),
}

impl LotusChain {
    /// A client with `config`.
    pub fn new(config: LotusConfig) -> Result<Self, LotusConfigError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &config.api.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| LotusConfigError::InvalidToken)?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder().default_headers(headers).use_rustls_tls();
        if let Some(path) = &config.ca_file {
            for certificate in read_ca_file(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|e| LotusConfigError::Client(e.to_string()))?;
        Ok(LotusChain {
            http,
            url: config.api.rpc_url().to_owned(),
            next_id: AtomicU64::new(1),
            gateway: AtomicBool::new(config.gateway),
            config,
            codes: Mutex::new(CodeCache::default()),
            addresses: Mutex::new(AddressCache::default()),
            lanes: Mutex::new(HashMap::new()),
            at_head: Mutex::new(HeadCache::default()),
        })
    }

    /// A client with the default configuration for an API info string
    /// (`TOKEN:/ip4/127.0.0.1/tcp/1234/http`).
    pub fn from_api_info(text: &str) -> Result<Self, LotusConfigError> {
        Self::new(LotusConfig::new(ApiInfo::parse(text)?))
    }

    /// The configuration.
    pub fn config(&self) -> &LotusConfig {
        &self.config
    }

    /// Whether the client is in gateway mode (configured so, or switched on a "method not
    /// found").
    pub fn is_gateway(&self) -> bool {
        self.gateway.load(Ordering::Relaxed)
    }

    /// Calls `Filecoin.<method>` with `params` and returns the raw result, retrying
    /// transport failures.
    pub async fn request(&self, method: &str, params: Vec<Value>) -> Result<Value, ChainError> {
        let deadline = None;
        self.request_until(method, params, deadline).await
    }

    /// `ChainHead`: the head tipset.
    pub async fn chain_head(&self) -> Result<json::TipSet, ChainError> {
        self.get("ChainHead", vec![]).await
    }

    /// `ChainReadObj`: a block of the node's block store, checked against its CID.
    pub async fn read_obj(&self, cid: &Cid) -> Result<Vec<u8>, ChainError> {
        let text: String = self.get_plain("ChainReadObj", vec![cid_param(cid)]).await?;
        let bytes = json::parse_bytes_field("ChainReadObj", Some(&text))
            .map_err(|e| unexpected("ChainReadObj", e))?;
        check_block(cid, &bytes)?;
        Ok(bytes)
    }

    /// `StateNetworkVersion` at the head.
    pub async fn network_version(&self) -> Result<u32, ChainError> {
        self.get_plain("StateNetworkVersion", vec![head_key()]).await
    }

    /// `StateActorCodeCIDs`: each built-in actor's code CID by name, for network version
    /// `nv`.
    pub async fn actor_code_cids(&self, nv: u32) -> Result<BTreeMap<String, Cid>, ChainError> {
        self.get("StateActorCodeCIDs", vec![Value::from(nv)]).await
    }

    /// `StateGetActor` at the head; `None` when no actor has the address.
    pub async fn get_actor(&self, addr: &Address) -> Result<Option<json::Actor>, ChainError> {
        match self.get("StateGetActor", vec![self.addr(addr), head_key()]).await {
            Ok(actor) => Ok(Some(actor)),
            Err(ChainError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `StateReadState` at the head.
    pub async fn read_state(&self, addr: &Address) -> Result<json::ActorState, ChainError> {
        self.read_state_at(addr, head_key()).await
    }

    /// `StateReadState` at the tipset `key` (a JSON tipset key; empty for the head).
    async fn read_state_at(
        &self,
        addr: &Address,
        key: Value,
    ) -> Result<json::ActorState, ChainError> {
        self.get("StateReadState", vec![self.addr(addr), key]).await
    }

    /// `ChainGetTipSetByHeight`: the tipset at `epoch` on the chain of the tipset `key` (the
    /// head's chain when `key` names the head), or the nearest tipset below `epoch` when no
    /// block was mined at it. An answer above `epoch` (a node that resolves null rounds
    /// upwards) is refused: a state read there could hold later funds.
    pub async fn tipset_by_height(
        &self,
        epoch: ChainEpoch,
        key: &json::TipSetKey,
    ) -> Result<json::TipSet, ChainError> {
        let tipset: json::TipSet = self
            .get("ChainGetTipSetByHeight", vec![Value::from(epoch), self.to_json(key)?])
            .await?;
        if tipset.height > epoch {
            return Err(ChainError::Transport(format!(
                "ChainGetTipSetByHeight({epoch}) answered a tipset at {}",
                tipset.height
            )));
        }
        Ok(tipset)
    }

    /// `ChainGetBlockMessages`: the messages of the block `block` with their CIDs, BLS ones
    /// first (at most [`json::MAX_BLOCK_MESSAGES`]).
    pub async fn block_messages(&self, block: &Cid) -> Result<Vec<ChainMessage>, ChainError> {
        let method = "ChainGetBlockMessages";
        let shape: json::BlockMessagesJson = self.get_plain(method, vec![cid_param(block)]).await?;
        shape.messages().map_err(|e| unexpected(method, e))
    }

    /// `StateGetActor` at the tipset `key`; `None` when no actor had the address there.
    pub async fn get_actor_at(
        &self,
        addr: &Address,
        key: &json::TipSetKey,
    ) -> Result<Option<json::Actor>, ChainError> {
        match self.get("StateGetActor", vec![self.addr(addr), self.to_json(key)?]).await {
            Ok(actor) => Ok(Some(actor)),
            Err(ChainError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An actor's balance at `epoch` on the chain of `head` (see [`Chain::balance_at`]).
    async fn balance_below(
        &self,
        addr: &Address,
        head: &json::TipSet,
        epoch: ChainEpoch,
    ) -> Result<Option<TokenAmount>, ChainError> {
        let head_key = json::TipSetKey(head.cids.clone());
        let key = if epoch >= head.height {
            head_key
        } else {
            json::TipSetKey(self.tipset_by_height(epoch.max(0), &head_key).await?.cids)
        };
        Ok(self.get_actor_at(addr, &key).await?.map(|a| a.balance))
    }

    /// `WalletBalance`: an address's balance (zero when it has no actor).
    pub async fn wallet_balance(
        &self,
        addr: &Address,
    ) -> Result<crate::types::TokenAmount, ChainError> {
        self.get("WalletBalance", vec![self.addr(addr)]).await
    }

    async fn request_until(
        &self,
        method: &str,
        params: Vec<Value>,
        deadline: Option<Instant>,
    ) -> Result<Value, ChainError> {
        let span = tracing::debug_span!("lotus_rpc", method);
        async move {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let request = RpcRequest::new(id, format!("Filecoin.{method}"), params);
            let body = serde_json::to_vec(&request)
                .map_err(|e| ChainError::Transport(format!("cannot encode the request: {e}")))?;
            let mut backoff = self.config.backoff;
            let mut attempt = 0u32;
            loop {
                let timeout = match deadline {
                    None => self.config.request_timeout,
                    Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                };
                let error = match self.attempt(&body, timeout).await {
                    Ok(response) => return answer(method, id, response, timeout),
                    Err(AttemptError::Fatal(e)) => return Err(e),
                    Err(AttemptError::Retry(e)) => e,
                };
                let out_of_time = deadline.is_some_and(|d| Instant::now() + backoff >= d);
                if attempt >= self.config.retries || out_of_time {
                    tracing::debug!(%error, attempt, "giving up");
                    return Err(error);
                }
                tracing::debug!(%error, attempt, ?backoff, "retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.config.max_backoff);
                attempt += 1;
            }
        }
        .instrument(span)
        .await
    }

    async fn attempt(&self, body: &[u8], timeout: Duration) -> Result<RpcResponse, AttemptError> {
        if timeout.is_zero() {
            return Err(AttemptError::Fatal(ChainError::Timeout(timeout)));
        }
        let transport = |e: reqwest::Error| {
            if let Some(cause) = errors::tls_cause(&e) {
                AttemptError::Fatal(ChainError::Tls(cause))
            } else if e.is_builder() {
                AttemptError::Fatal(ChainError::Transport(e.to_string()))
            } else if e.is_timeout() {
                AttemptError::Retry(ChainError::Timeout(timeout))
            } else {
                AttemptError::Retry(ChainError::Transport(e.to_string()))
            }
        };
        let mut response = self
            .http
            .post(&self.url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let max = self.config.max_response_bytes;
        let too_large = || {
            AttemptError::Fatal(ChainError::Transport(format!("answer larger than {max} bytes")))
        };
        if response.content_length().is_some_and(|len| len > max as u64) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if bytes.len() + chunk.len() > max {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        if status.is_server_error() && serde_json::from_slice::<RpcResponse>(&bytes).is_err() {
            return Err(AttemptError::Retry(ChainError::Transport(format!("HTTP {status}"))));
        }
        match serde_json::from_slice::<RpcResponse>(&bytes) {
            Ok(response) => Ok(response),
            Err(_) if status.as_u16() == 429 => {
                Err(AttemptError::Retry(ChainError::Transport(format!("HTTP {status}"))))
            }
            Err(e) if status.is_success() => Err(AttemptError::Fatal(ChainError::Transport(
                format!("answer is not a JSON-RPC response: {e}"),
            ))),
            Err(_) => Err(AttemptError::Fatal(ChainError::Transport(format!("HTTP {status}")))),
        }
    }

    async fn get<T: LotusJson>(&self, method: &str, params: Vec<Value>) -> Result<T, ChainError> {
        let value = self.request(method, params).await?;
        json::from_value(value).map_err(|e| unexpected(method, e))
    }

    async fn get_plain<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        params: Vec<Value>,
    ) -> Result<T, ChainError> {
        let value = self.request(method, params).await?;
        serde_json::from_value(value)
            .map_err(|e| unexpected(method, JsonError::Shape(e.to_string())))
    }

    fn addr(&self, addr: &Address) -> Value {
        Value::String(format_address(addr, self.config.network))
    }

    fn to_json<T: LotusJson>(&self, value: &T) -> Result<Value, ChainError> {
        json::to_value(value, self.config.network)
            .map_err(|e| ChainError::Transport(format!("cannot encode the request: {e}")))
    }

    /// The kind of actor a code CID belongs to: from [`actor_codes`], else (not in gateway
    /// mode) from `StateActorCodeCIDs` of the current network version, fetched again only when
    /// an unknown code shows up under a network version not fetched yet.
    async fn kind_of(&self, code: &Cid) -> Result<ActorKind, ChainError> {
        if let Some(known) = actor_codes::known(code) {
            return Ok(known.kind);
        }
        if let Some(kind) = self.lock_codes().kinds.get(code) {
            return Ok(*kind);
        }
        if self.is_gateway() {
            return Ok(ActorKind::Other);
        }
        let nv = self.network_version().await?;
        {
            // Another call may have refreshed the cache while this one waited.
            let cache = self.lock_codes();
            if let Some(kind) = cache.kinds.get(code) {
                return Ok(*kind);
            }
            if cache.refreshed_for == Some(nv) {
                return Ok(ActorKind::Other);
            }
        }
        self.refresh_codes(nv).await?;
        Ok(self.lock_codes().kinds.get(code).copied().unwrap_or(ActorKind::Other))
    }

    /// Fetches the code CIDs of network version `nv` into the cache; `false` when the node
    /// does not serve `StateActorCodeCIDs` (the client is in gateway mode from then on).
    async fn refresh_codes(&self, nv: u32) -> Result<bool, ChainError> {
        let names = match self.actor_code_cids(nv).await {
            Ok(names) => names,
            Err(ChainError::Unsupported(reason)) => {
                tracing::info!(%reason, "the node is a gateway: actor kinds from the code table");
                self.gateway.store(true, Ordering::Relaxed);
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let mut cache = self.lock_codes();
        if cache.kinds.len() > MAX_CACHED_CODES {
            cache.kinds.clear();
        }
        for (name, cid) in &names {
            cache.kinds.insert(*cid, actor_codes::kind_from_name(name));
        }
        cache.refreshed_for = Some(nv);
        cache.names = names;
        Ok(true)
    }

    /// The code of `kind` from [`actor_codes`]: the one in the release of the Init actor's
    /// code at the head (what the chain runs now).
    async fn code_from_table(&self, kind: ActorKind) -> Result<Cid, ChainError> {
        let init = Address::new_id(INIT_ACTOR_ID);
        let Some(actor) = self.get_actor(&init).await? else {
            return Err(ChainError::NotFound("the Init actor".to_owned()));
        };
        actor_codes::code_in_release_of(&actor.code, kind).ok_or_else(|| {
            ChainError::NotFound(format!(
                "the Init actor's code {} is not in the actor code table (docs/chains.md)",
                actor.code
            ))
        })
    }

    fn lock_addresses(&self) -> std::sync::MutexGuard<'_, AddressCache> {
        // The cache holds no invariant a panicking holder could break.
        self.addresses.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps a resolution in one of the address caches.
    fn remember(
        &self,
        map: impl FnOnce(&mut AddressCache) -> &mut HashMap<Address, Address>,
        from: Address,
        to: Address,
    ) {
        let mut cache = self.lock_addresses();
        let map = map(&mut cache);
        if map.len() >= MAX_CACHED_ADDRESSES {
            map.clear();
        }
        map.insert(from, to);
    }

    fn lock_codes(&self) -> std::sync::MutexGuard<'_, CodeCache> {
        self.codes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A payment channel's state and lanes at the tipset `key` (a JSON tipset key; empty for
    /// the head).
    async fn channel_at(
        &self,
        channel: &Address,
        key: Value,
    ) -> Result<ChannelOnChain, ChainError> {
        let state = self.read_state_at(channel, key).await?;
        if self.kind_of(&state.code).await? != ActorKind::PaymentChannel {
            return Err(ChainError::NotFound(format!(
                "{} is not a payment channel",
                format_address(channel, self.config.network)
            )));
        }
        let paych: PaychState =
            json::from_value(state.state).map_err(|e| unexpected("StateReadState", e))?;
        let lanes = self.lanes(&paych.lane_states).await?;
        Ok(ChannelOnChain {
            balance: state.balance,
            state: ChannelState {
                from: paych.from,
                to: paych.to,
                to_send: paych.to_send,
                settling_at: paych.settling_at,
                min_settle_height: paych.min_settle_height,
                lanes,
            },
        })
    }

    /// A payment channel at the tipset `head`: kept from an earlier read at the same tipset,
    /// or read now at its key (and kept unless it has very many lanes).
    async fn channel_at_tipset(
        &self,
        channel: &Address,
        head: &json::TipSet,
    ) -> Result<ChannelOnChain, ChainError> {
        let kept = {
            let cache = self.lock_at_head();
            if cache.key == head.cids {
                cache.channels.get(channel).cloned()
            } else {
                None
            }
        };
        if let Some(on_chain) = kept {
            return Ok(on_chain);
        }
        let key = Value::Array(head.cids.iter().map(cid_param).collect());
        let on_chain = self.channel_at(channel, key).await?;
        if on_chain.state.lanes.len() <= MAX_CACHED_LANES {
            let mut cache = self.lock_at_head();
            cache.keep_for(&head.cids);
            cache.channels.insert(*channel, on_chain.clone());
        }
        Ok(on_chain)
    }

    fn lock_at_head(&self) -> std::sync::MutexGuard<'_, HeadCache> {
        self.at_head.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_lanes(&self) -> std::sync::MutexGuard<'_, HashMap<Cid, Lanes>> {
        self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The lanes of the lane-state AMT at `root`: kept from an earlier read of the same root,
    /// or read now (and kept unless very large). Between two redemptions a channel's root does
    /// not change, so a payee validating voucher after voucher reads its lanes once.
    async fn lanes(&self, root: &Cid) -> Result<Lanes, ChainError> {
        if let Some(lanes) = self.lock_lanes().get(root) {
            return Ok(lanes.clone());
        }
        let lanes = self.read_lanes(root).await?;
        if lanes.len() <= MAX_CACHED_LANES {
            let mut cache = self.lock_lanes();
            if cache.len() >= MAX_CACHED_LANE_ROOTS {
                cache.clear();
            }
            cache.insert(*root, lanes.clone());
        }
        Ok(lanes)
    }

    /// Reads a lane-state AMT: fetches its blocks breadth-first through `ChainReadObj`
    /// (bounded by [`MAX_AMT_BLOCKS`] and [`MAX_AMT_BYTES`]), then walks it.
    async fn read_lanes(&self, root: &Cid) -> Result<Lanes, ChainError> {
        let store = MemoryBlockstore::new();
        let mut queue = VecDeque::from([*root]);
        let mut seen = HashSet::from([*root]);
        let mut total = 0usize;
        while let Some(cid) = queue.pop_front() {
            let bytes = self.read_obj(&cid).await?;
            total += bytes.len();
            if total > MAX_AMT_BYTES {
                return Err(ChainError::Transport(format!(
                    "lane-state AMT larger than {MAX_AMT_BYTES} bytes"
                )));
            }
            let ipld = crate::types::decode::parse(&bytes).map_err(|e| {
                ChainError::Transport(format!("lane-state block {cid} is not DAG-CBOR: {e}"))
            })?;
            for link in links(&ipld) {
                if seen.insert(link) {
                    if seen.len() > MAX_AMT_BLOCKS {
                        return Err(ChainError::Transport(format!(
                            "lane-state AMT has more than {MAX_AMT_BLOCKS} blocks"
                        )));
                    }
                    queue.push_back(link);
                }
            }
            store
                .put_keyed(&cid, &bytes)
                .map_err(|e| ChainError::Transport(format!("block store: {e}")))?;
        }
        let bad_amt = |e: fvm_ipld_amt::Error| {
            ChainError::Transport(format!("lane-state AMT {root} is invalid: {e}"))
        };
        let amt = Amt::<LaneState, _>::load(root, &store).map_err(bad_amt)?;
        let mut lanes = Lanes::new();
        for entry in amt.iter() {
            let (lane, state) = entry.map_err(bad_amt)?;
            lanes.insert(lane, state.clone());
        }
        Ok(lanes)
    }
}

/// Every CID an IPLD tree links to.
fn links(ipld: &Ipld) -> Vec<Cid> {
    let mut out = Vec::new();
    let mut stack = vec![ipld];
    while let Some(node) = stack.pop() {
        match node {
            Ipld::Link(cid) => out.push(*cid),
            Ipld::List(items) => stack.extend(items.iter()),
            Ipld::Map(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    out
}

/// Checks that `bytes` hash to `cid` (blake2b-256, the hash of every Filecoin state block).
fn check_block(cid: &Cid, bytes: &[u8]) -> Result<(), ChainError> {
    if cid.hash().code() != BLAKE2B_256 {
        return Err(ChainError::Transport(format!(
            "block {cid} uses hash function {:#x}, not blake2b-256",
            cid.hash().code()
        )));
    }
    if cid.hash().digest() != crate::crypto::blake2b_256(bytes) {
        return Err(ChainError::Transport(format!("block {cid} does not match its CID")));
    }
    Ok(())
}

/// The CA certificates of a PEM file (at most [`MAX_CA_FILE_BYTES`], at least one).
fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, LotusConfigError> {
    let bad = |reason: String| LotusConfigError::CaFile { path: path.to_owned(), reason };
    let len = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?.len();
    if len > MAX_CA_FILE_BYTES {
        return Err(bad(format!("larger than {MAX_CA_FILE_BYTES} bytes")));
    }
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if certificates.is_empty() {
        return Err(bad("holds no PEM certificate".to_owned()));
    }
    Ok(certificates)
}

/// A failure to find the tipset at `epoch` as the trait names it: `NotFound` when the node
/// says the epoch is above its head (Lotus `chain/store/index.go`: "looking for tipset with
/// height greater than start point") or further back than it serves (a gateway's "lookbacks
/// of more than 24h0m0s are disallowed", `gateway/node.go`).
fn history_error(epoch: ChainEpoch, e: ChainError) -> ChainError {
    let text = e.to_string();
    if text.contains("greater than start point") {
        ChainError::NotFound(format!("tipset at epoch {epoch}: above the head ({text})"))
    } else if text.contains("lookbacks of more than") {
        ChainError::NotFound(format!("tipset at epoch {epoch}: further back than served ({text})"))
    } else {
        e
    }
}

/// An empty tipset key: the head.
fn head_key() -> Value {
    Value::Array(Vec::new())
}

fn cid_param(cid: &Cid) -> Value {
    json_value!({ "/": cid.to_string() })
}

fn unexpected(method: &str, e: JsonError) -> ChainError {
    ChainError::Transport(format!("{method}: unexpected answer: {e}"))
}

#[async_trait]
impl Chain for LotusChain {
    async fn head(&self) -> Result<ChainEpoch, ChainError> {
        Ok(self.chain_head().await?.height)
    }

    async fn actor(&self, addr: &Address) -> Result<Option<ActorInfo>, ChainError> {
        let Some(actor) = self.get_actor(addr).await? else {
            return Ok(None);
        };
        let kind = self.kind_of(&actor.code).await?;
        Ok(Some(ActorInfo { kind, code: actor.code, balance: actor.balance, nonce: actor.nonce }))
    }

    async fn channel(&self, channel: &Address) -> Result<ChannelOnChain, ChainError> {
        self.channel_at(channel, head_key()).await
    }

    /// Reads the head, then the channel at that very tipset (so the two agree even if a block
    /// lands in between), keeping what it read for the next call at the same head.
    async fn channel_at_head(
        &self,
        channel: &Address,
    ) -> Result<(ChainEpoch, ChannelOnChain), ChainError> {
        let head = self.chain_head().await?;
        Ok((head.height, self.channel_at_tipset(channel, &head).await?))
    }

    async fn balance_at(
        &self,
        addr: &Address,
        epoch: ChainEpoch,
    ) -> Result<Option<TokenAmount>, ChainError> {
        let head = self.chain_head().await?;
        self.balance_below(addr, &head, epoch).await
    }

    /// Reads the head, the channel at that tipset, and its balance at the tipset `depth`
    /// epochs below on that tipset's chain (`ChainGetTipSetByHeight` with the head's key,
    /// then `StateGetActor` at the key answered), keeping both for the next call at the same
    /// head.
    async fn channel_at_depth(
        &self,
        channel: &Address,
        depth: u64,
    ) -> Result<ChannelAtDepth, ChainError> {
        let head = self.chain_head().await?;
        let on_chain = self.channel_at_tipset(channel, &head).await?;
        let confirmed_at = depth_epoch(head.height, depth);
        if confirmed_at >= head.height {
            let balance = Some(on_chain.balance.clone());
            return Ok(ChannelAtDepth::new(head.height, on_chain, confirmed_at, balance));
        }
        let kept = {
            let cache = self.lock_at_head();
            if cache.key == head.cids {
                cache.confirmed.get(&(*channel, confirmed_at)).cloned()
            } else {
                None
            }
        };
        let at_depth = match kept {
            Some(balance) => balance,
            None => {
                let balance = self.balance_below(channel, &head, confirmed_at).await?;
                let mut cache = self.lock_at_head();
                cache.keep_for(&head.cids);
                cache.confirmed.insert((*channel, confirmed_at), balance.clone());
                balance
            }
        };
        Ok(ChannelAtDepth::new(head.height, on_chain, confirmed_at, at_depth))
    }

    async fn lookup_id(&self, addr: &Address) -> Result<Option<Address>, ChainError> {
        if let Some(id) = self.lock_addresses().ids.get(addr) {
            return Ok(Some(*id));
        }
        match self.get::<Address>("StateLookupID", vec![self.addr(addr), head_key()]).await {
            Ok(id) => {
                self.remember(|cache| &mut cache.ids, *addr, id);
                Ok(Some(id))
            }
            // Not cached: the actor may be created later.
            Err(ChainError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn account_key(&self, addr: &Address) -> Result<Address, ChainError> {
        if matches!(addr.protocol(), Protocol::Secp256k1 | Protocol::BLS) {
            // A key address is its own account key (Lotus answers so without a lookup).
            return Ok(*addr);
        }
        if let Some(key) = self.lock_addresses().keys.get(addr) {
            return Ok(*key);
        }
        let key: Address = self.get("StateAccountKey", vec![self.addr(addr), head_key()]).await?;
        self.remember(|cache| &mut cache.keys, *addr, key);
        Ok(key)
    }

    async fn next_nonce(&self, addr: &Address) -> Result<u64, ChainError> {
        self.get_plain("MpoolGetNonce", vec![self.addr(addr)]).await
    }

    async fn estimate_gas(&self, message: Message) -> Result<Message, ChainError> {
        let params = vec![self.to_json(&message)?, json_value!({"MaxFee": "0"}), head_key()];
        self.get("GasEstimateMessageGas", params).await.map_err(refused)
    }

    async fn push(&self, message: &SignedMessage) -> Result<Cid, ChainError> {
        match self.get("MpoolPush", vec![self.to_json(message)?]).await.map_err(refused) {
            // A retry after a lost answer finds the identical message already pooled.
            Err(ChainError::Rejected { message: text, .. })
                if text.contains("already in mpool") =>
            {
                message.cid().map_err(|e| ChainError::Transport(e.to_string()))
            }
            other => other,
        }
    }

    async fn wait(
        &self,
        message: &Cid,
        confidence: u64,
        timeout: Duration,
    ) -> Result<MessageLookup, ChainError> {
        let params =
            vec![cid_param(message), Value::from(confidence), Value::from(-1), Value::Bool(true)];
        let deadline = Instant::now() + timeout;
        let value = loop {
            match self.request_until("StateWaitMsg", params.clone(), Some(deadline)).await {
                // The node stopped waiting before our deadline: ask again.
                Err(ChainError::Timeout(_)) if Instant::now() + self.config.backoff < deadline => {
                    tokio::time::sleep(self.config.backoff).await;
                }
                Err(ChainError::Timeout(_)) => return Err(ChainError::Timeout(timeout)),
                other => break other?,
            }
        };
        let lookup: json::MsgLookup =
            json::from_value(value).map_err(|e| unexpected("StateWaitMsg", e))?;
        Ok(lookup.into())
    }

    async fn search(&self, message: &Cid) -> Result<Option<MessageLookup>, ChainError> {
        let params = vec![head_key(), cid_param(message), Value::from(-1), Value::Bool(true)];
        match self.request("StateSearchMsg", params).await? {
            Value::Null => Ok(None),
            value => {
                let lookup: json::MsgLookup =
                    json::from_value(value).map_err(|e| unexpected("StateSearchMsg", e))?;
                Ok(Some(lookup.into()))
            }
        }
    }

    /// `ChainGetTipSetByHeight(epoch, head)`; a tipset below `epoch` means a null round
    /// (no messages); then `ChainGetBlockMessages` per block, each message kept once.
    async fn tipset_messages(&self, epoch: ChainEpoch) -> Result<Vec<ChainMessage>, ChainError> {
        if epoch < 0 {
            return Err(ChainError::NotFound(format!("tipset at negative epoch {epoch}")));
        }
        let tipset = self
            .tipset_by_height(epoch, &json::TipSetKey::head())
            .await
            .map_err(|e| history_error(epoch, e))?;
        if tipset.height < epoch {
            return Ok(Vec::new());
        }
        if tipset.cids.len() > json::MAX_TIPSET_KEY_CIDS {
            return Err(ChainError::Transport(format!(
                "the tipset at epoch {epoch} has {} blocks, more than {}",
                tipset.cids.len(),
                json::MAX_TIPSET_KEY_CIDS
            )));
        }
        let mut seen = HashSet::new();
        let mut messages = Vec::new();
        for block in &tipset.cids {
            for message in self.block_messages(block).await? {
                if seen.insert(message.cid) {
                    messages.push(message);
                }
            }
        }
        Ok(messages)
    }

    async fn call(&self, message: &Message) -> Result<Receipt, ChainError> {
        let result: json::InvocResult = self
            .get("StateCall", vec![self.to_json(message)?, head_key()])
            .await
            .map_err(refused)?;
        match result.receipt {
            Some(receipt) => Ok(receipt),
            None => Err(ChainError::Rejected { exit_code: None, message: result.error }),
        }
    }

    async fn network_name(&self) -> Result<String, ChainError> {
        self.get_plain("StateNetworkName", vec![]).await
    }

    async fn actor_code(&self, kind: ActorKind) -> Result<Cid, ChainError> {
        let name = match kind {
            ActorKind::Account => "account",
            ActorKind::Init => "init",
            ActorKind::PaymentChannel => "paymentchannel",
            ActorKind::Other => {
                return Err(ChainError::NotFound("no single code CID for other actors".to_owned()))
            }
        };
        if self.is_gateway() {
            return self.code_from_table(kind).await;
        }
        let nv = self.network_version().await?;
        let fetched = self.lock_codes().refreshed_for == Some(nv) || self.refresh_codes(nv).await?;
        if !fetched {
            return self.code_from_table(kind).await;
        }
        self.lock_codes().names.get(name).copied().ok_or_else(|| {
            ChainError::NotFound(format!("no {name} actor code at network version {nv}"))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn checks_blocks_against_their_cid() {
        let bytes = vec![0x82, 0x01, 0x02];
        let cid = crate::types::cid_of(&bytes);
        assert!(check_block(&cid, &bytes).is_ok());
        assert!(check_block(&cid, &[0x82, 0x01, 0x03]).is_err());
    }
}
