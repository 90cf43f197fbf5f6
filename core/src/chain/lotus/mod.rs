//! A JSON-RPC client of a Lotus full node (or of `paych devnet`, which serves the same
//! methods): [`LotusChain`] implements [`Chain`] over HTTP JSON-RPC 2.0.
//!
//! Requests go to `<base>/rpc/v1` as `Filecoin.<Name>` with positional parameters and
//! Lotus JSON ([`crate::lotus_json`]); the node is configured as the Lotus tools are, from
//! `FULLNODE_API_INFO=TOKEN:/ip4/127.0.0.1/tcp/1234/http` ([`ApiInfo`]). Every request has
//! a timeout and runs in a `lotus_rpc` tracing span. Transport failures (connection
//! refused, timeouts, 5xx answers) are retried with exponential backoff; a JSON-RPC error
//! answer never is — a rejected message must not be pushed again. Answers are bounded in
//! size.
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
//! This module never holds keys or signs; it carries what the caller signed.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
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

use super::{
    depth_epoch, ActorInfo, ActorKind, Chain, ChainError, ChannelAtDepth, ChannelOnChain, Lanes,
    MessageLookup, Receipt,
};
use crate::actor::ChannelState;
use crate::jsonrpc::{error_code, RpcError, RpcRequest, RpcResponse};
use crate::lotus_json::{self as json, JsonError, LotusJson};
use crate::types::{
    format_address, Address, ChainEpoch, ExitCode, LaneState, Message, Network, PaychState,
    Protocol, SignedMessage, TokenAmount, BLAKE2B_256,
};

/// The environment variable the Lotus tools read the full node's API from.
pub const FULLNODE_API_INFO: &str = "FULLNODE_API_INFO";
/// The longest API info string accepted.
pub const MAX_API_INFO_LEN: usize = 8192;
/// The most blocks read for one channel's lane-state AMT.
pub const MAX_AMT_BLOCKS: usize = 4096;
/// The most bytes read for one channel's lane-state AMT.
pub const MAX_AMT_BYTES: usize = 16 << 20;

/// Why an API info string could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiInfoError {
    /// The environment variable is not set.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// The string is longer than [`MAX_API_INFO_LEN`].
    #[error("API info longer than {MAX_API_INFO_LEN} bytes")]
    TooLong,
    /// The address part is neither a multiaddr nor an http(s)/ws(s) URL this client reads.
    #[error("invalid API address {text:?}: {reason}")]
    InvalidAddress {
        /// The address given.
        text: String,
        /// Why it is invalid.
        reason: String,
    },
}

/// Where a Lotus node's API is and how to authenticate: `TOKEN:MULTIADDR`, as in
/// `FULLNODE_API_INFO`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiInfo {
    /// The bearer token (a Lotus JWT); `None` for a node that needs none.
    pub token: Option<String>,
    /// The HTTP base URL, e.g. `http://127.0.0.1:1234`.
    pub base_url: String,
}

impl std::fmt::Debug for ApiInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiInfo")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ApiInfo {
    /// Parses `TOKEN:/ip4/127.0.0.1/tcp/1234/http`, `:/ip4/…` or `/ip4/…` (no token), or a
    /// URL (`TOKEN:http://host:port`). Multiaddrs may use `ip4`, `ip6`, `dns`, `dns4`,
    /// `dns6`; the `ws`/`wss` schemes map to `http`/`https`, and a multiaddr without a
    /// scheme means `http`.
    pub fn parse(text: &str) -> Result<Self, ApiInfoError> {
        let text = text.trim();
        if text.len() > MAX_API_INFO_LEN {
            return Err(ApiInfoError::TooLong);
        }
        let (token, addr) = if text.starts_with('/') || is_url(text) {
            (None, text)
        } else {
            match text.split_once(':') {
                Some((token, addr)) => {
                    (if token.is_empty() { None } else { Some(token.to_owned()) }, addr)
                }
                None => (None, text),
            }
        };
        let base_url = if is_url(addr) { url_base(addr)? } else { multiaddr_base(addr)? };
        Ok(ApiInfo { token, base_url })
    }

    /// Reads [`FULLNODE_API_INFO`] from the environment.
    pub fn from_env() -> Result<Self, ApiInfoError> {
        let text = std::env::var(FULLNODE_API_INFO)
            .map_err(|_| ApiInfoError::Missing(FULLNODE_API_INFO))?;
        Self::parse(&text)
    }

    /// The JSON-RPC endpoint, `<base>/rpc/v1`.
    pub fn rpc_url(&self) -> String {
        format!("{}/rpc/v1", self.base_url)
    }
}

impl FromStr for ApiInfo {
    type Err = ApiInfoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn is_url(text: &str) -> bool {
    ["http://", "https://", "ws://", "wss://"].iter().any(|p| text.starts_with(p))
}

fn url_base(url: &str) -> Result<String, ApiInfoError> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let scheme = match scheme {
        "ws" | "http" => "http",
        _ => "https",
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains(char::is_whitespace) {
        return Err(ApiInfoError::InvalidAddress {
            text: url.to_owned(),
            reason: "no host".to_owned(),
        });
    }
    Ok(format!("{scheme}://{authority}"))
}

fn multiaddr_base(addr: &str) -> Result<String, ApiInfoError> {
    let invalid = |reason: &str| ApiInfoError::InvalidAddress {
        text: addr.to_owned(),
        reason: reason.to_owned(),
    };
    let parts: Vec<&str> = addr.split('/').collect();
    let ["", proto, host, "tcp", port, rest @ ..] = parts.as_slice() else {
        return Err(invalid(
            "expected /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>[/http|https|ws|wss]",
        ));
    };
    let host = match *proto {
        "ip4" => host
            .parse::<std::net::Ipv4Addr>()
            .map_err(|_| invalid("not an IPv4 address"))?
            .to_string(),
        "ip6" => format!(
            "[{}]",
            host.parse::<std::net::Ipv6Addr>().map_err(|_| invalid("not an IPv6 address"))?
        ),
        "dns" | "dns4" | "dns6" => {
            if host.is_empty()
                || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                return Err(invalid("not a host name"));
            }
            (*host).to_owned()
        }
        _ => return Err(invalid("expected ip4, ip6, dns, dns4 or dns6")),
    };
    let port: u16 = port.parse().map_err(|_| invalid("not a TCP port"))?;
    let scheme = match rest {
        [] | ["http"] | ["ws"] => "http",
        ["https"] | ["wss"] => "https",
        _ => return Err(invalid("expected http, https, ws or wss after the port")),
    };
    Ok(format!("{scheme}://{host}:{port}"))
}

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
}

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
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .map_err(|e| LotusConfigError::Client(e.to_string()))?;
        Ok(LotusChain {
            http,
            url: config.api.rpc_url(),
            config,
            next_id: AtomicU64::new(1),
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
            if e.is_builder() {
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

    /// The kind of actor a code CID belongs to, from `StateActorCodeCIDs` of the current
    /// network version (fetched again only when an unknown code shows up under a network
    /// version not fetched yet).
    async fn kind_of(&self, code: &Cid) -> Result<ActorKind, ChainError> {
        if let Some(kind) = self.lock_codes().kinds.get(code) {
            return Ok(*kind);
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

    /// Fetches the code CIDs of network version `nv` into the cache.
    async fn refresh_codes(&self, nv: u32) -> Result<(), ChainError> {
        let names = self.actor_code_cids(nv).await?;
        let mut cache = self.lock_codes();
        if cache.kinds.len() > 4096 {
            cache.kinds.clear();
        }
        for (name, cid) in &names {
            cache.kinds.insert(*cid, kind_from_name(name));
        }
        cache.refreshed_for = Some(nv);
        cache.names = names;
        Ok(())
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

fn kind_from_name(name: &str) -> ActorKind {
    match name {
        "account" => ActorKind::Account,
        "init" => ActorKind::Init,
        "paymentchannel" => ActorKind::PaymentChannel,
        _ => ActorKind::Other,
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

/// The result of a response to request `id`, or its error as a [`ChainError`].
fn answer(
    method: &str,
    id: u64,
    response: RpcResponse,
    timeout: Duration,
) -> Result<Value, ChainError> {
    match response.outcome {
        Ok(_) if response.id != id => Err(ChainError::Transport(format!(
            "{method}: answer to request {} instead of {id}",
            response.id
        ))),
        Ok(value) => Ok(value),
        Err(error) => Err(rpc_error(error, timeout)),
    }
}

/// Maps a JSON-RPC error answer: not found (by code, or by Lotus's wording) or rejected,
/// with the exit code when the answer carries one.
fn rpc_error(error: RpcError, timeout: Duration) -> ChainError {
    // The node did not understand the request: a client/server mismatch, not a chain answer.
    if matches!(
        error.code,
        error_code::PARSE_ERROR
            | error_code::INVALID_REQUEST
            | error_code::METHOD_NOT_FOUND
            | error_code::INVALID_PARAMS
    ) {
        return ChainError::Transport(error.to_string());
    }
    if error.code == error_code::TIMEOUT {
        return ChainError::Timeout(timeout);
    }
    if error.code == error_code::NOT_FOUND
        || error.message.to_ascii_lowercase().contains("not found")
    {
        return ChainError::NotFound(error.message);
    }
    let exit_code = error
        .data
        .as_ref()
        .and_then(|d| d.get("ExitCode"))
        .and_then(Value::as_u64)
        .and_then(|c| u32::try_from(c).ok())
        .or_else(|| exit_code_in(&error.message))
        .map(ExitCode::new);
    ChainError::Rejected { exit_code, message: error.message }
}

/// The exit code a Lotus error message names: `exit=[ErrIllegalArgument(16)]`,
/// `exit=[16]`, `RetCode=16`, `exit code 16`.
pub fn exit_code_in(message: &str) -> Option<u32> {
    let leading_number = |text: &str| -> Option<u32> {
        let end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        text[..end].parse().ok()
    };
    for marker in ["exit=[", "RetCode=", "exit code ", "ExitCode "] {
        let Some(at) = message.find(marker) else { continue };
        let rest = &message[at + marker.len()..];
        // `16…`, or a name with the number in parentheses: `ErrIllegalArgument(16)`.
        let named = rest
            .split([']', ' ', ','])
            .next()
            .and_then(|field| field.split_once('('))
            .and_then(|(_, number)| leading_number(number));
        if let Some(code) = leading_number(rest).or(named) {
            return Some(code);
        }
    }
    None
}

/// A lookup-style error turned into a refusal, for methods where "not found" means the
/// chain refused (pushing, estimating, calling).
fn refused(e: ChainError) -> ChainError {
    match e {
        ChainError::NotFound(message) => ChainError::Rejected { exit_code: None, message },
        other => other,
    }
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
        let nv = self.network_version().await?;
        if self.lock_codes().refreshed_for != Some(nv) {
            self.refresh_codes(nv).await?;
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
    fn reads_api_info_with_and_without_token() {
        let info = ApiInfo::parse("eyJh.eyJB.sig:/ip4/127.0.0.1/tcp/1234/http").unwrap();
        assert_eq!(info.token.as_deref(), Some("eyJh.eyJB.sig"));
        assert_eq!(info.rpc_url(), "http://127.0.0.1:1234/rpc/v1");
        let info = ApiInfo::parse(":/ip4/127.0.0.1/tcp/5678/http").unwrap();
        assert_eq!(info.token, None);
        assert_eq!(info.base_url, "http://127.0.0.1:5678");
        let info = ApiInfo::parse("/ip4/10.0.0.1/tcp/1234/ws").unwrap();
        assert_eq!((info.token, info.base_url.as_str()), (None, "http://10.0.0.1:1234"));
        let info = ApiInfo::parse("tok:/dns/lotus.local/tcp/443/wss").unwrap();
        assert_eq!(info.base_url, "https://lotus.local:443");
        let info = ApiInfo::parse("/ip6/::1/tcp/1234").unwrap();
        assert_eq!(info.base_url, "http://[::1]:1234");
        let info = ApiInfo::parse("tok:http://127.0.0.1:1234/rpc/v0").unwrap();
        assert_eq!(info.base_url, "http://127.0.0.1:1234");
        assert_eq!(info.token.as_deref(), Some("tok"));
    }

    #[test]
    fn refuses_bad_api_info() {
        for bad in [
            "",
            "tok:",
            "/ip4/127.0.0.1/udp/1234/http",
            "/ip4/300.0.0.1/tcp/1234/http",
            "/ip4/127.0.0.1/tcp/99999/http",
            "/ip4/127.0.0.1/tcp/1234/quic",
            "/unix/tmp/sock",
        ] {
            assert!(ApiInfo::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ApiInfo::parse(&"a".repeat(MAX_API_INFO_LEN + 1)), Err(ApiInfoError::TooLong));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let info = ApiInfo::parse("secret-token:/ip4/127.0.0.1/tcp/1234/http").unwrap();
        assert!(!format!("{info:?}").contains("secret-token"));
    }

    #[test]
    fn finds_exit_codes_in_lotus_errors() {
        assert_eq!(
            exit_code_in(
                "message execution failed (exit=[ErrIllegalArgument(16)], revert reason=[none])"
            ),
            Some(16)
        );
        assert_eq!(exit_code_in("call failed: exit=[18]"), Some(18));
        assert_eq!(exit_code_in("actor aborted: RetCode=32"), Some(32));
        assert_eq!(exit_code_in("rejected with exit code 20: illegal state"), Some(20));
        assert_eq!(exit_code_in("mpool push: nonce too low"), None);
    }

    #[test]
    fn maps_json_rpc_errors_to_chain_errors() {
        let not_found = rpc_error(
            RpcError::new(1, "resolution lookup failed: actor not found"),
            Duration::ZERO,
        );
        assert!(matches!(not_found, ChainError::NotFound(_)));
        let by_code =
            rpc_error(RpcError::new(error_code::NOT_FOUND, "no such block"), Duration::ZERO);
        assert!(matches!(by_code, ChainError::NotFound(_)));
        let mut with_data = RpcError::new(error_code::CHAIN_REJECTED, "refused");
        with_data.data = Some(json_value!({"ExitCode": 16}));
        assert!(matches!(
            rpc_error(with_data, Duration::ZERO),
            ChainError::Rejected { exit_code: Some(c), .. } if c.value() == 16
        ));
        assert!(matches!(
            rpc_error(RpcError::new(1, "gas premium too low"), Duration::ZERO),
            ChainError::Rejected { exit_code: None, .. }
        ));
        let late =
            rpc_error(RpcError::new(error_code::TIMEOUT, "timed out"), Duration::from_secs(3));
        assert!(matches!(late, ChainError::Timeout(d) if d == Duration::from_secs(3)));
        let unknown = rpc_error(
            RpcError::new(error_code::METHOD_NOT_FOUND, "method not found"),
            Duration::ZERO,
        );
        assert!(matches!(unknown, ChainError::Transport(_)));
    }

    #[test]
    fn checks_blocks_against_their_cid() {
        let bytes = vec![0x82, 0x01, 0x02];
        let cid = crate::types::cid_of(&bytes);
        assert!(check_block(&cid, &bytes).is_ok());
        assert!(check_block(&cid, &[0x82, 0x01, 0x03]).is_err());
    }
}
