//! The provider's side of paid retrievals over `/paych/retrieval/2.0.0`
//! ([`RetrievalProvider`]): published blobs, the open flows and what each has been paid, and
//! the bounds of the work it does unpaid. It never touches the network or the manager: the
//! node's inbound handling ([`crate::inbound::retrieval`]) hands it requests and credits.
//!
//! **Flows.** A flow is a (peer, channel, flow reference) triple, opened by the first chunk
//! request that names it and bound from then on to that request's blob. The provider learns
//! of payments from the voucher exchange: when the node's manager answers a voucher carrying
//! a flow reference `Accepted { delta }`, the node's inbound handling
//! ([`crate::inbound::retrieval::Crediting`]) adds exactly `delta` to the open flow
//! ([`RetrievalProvider::credit`]) — and only if the peer that sent the voucher is the
//! channel's payer, as bound by the payer's signed peer record (announced with its first
//! payment). A voucher the manager already holds (`AlreadyHeld`) or that adds nothing
//! (`Covered`) credits nothing, so a replayed voucher earns nothing, whoever sends it and
//! under whatever flow; credit paid on one flow unlocks chunks of that flow's blob only.
//!
//! **Credit windows.** A flow serves ahead of payment up to its **window** (bytes, counted
//! in whole chunks, at least one: [`window_chunks`]): chunk `i` is served while
//! `i < paid_chunks + window_chunks`, `paid_chunks` being the flow's credit in whole chunks.
//! A window starts at [`RetrievalLimits::window_initial`] (at most an eighth of the blob,
//! [`INITIAL_WINDOW_BLOB_SHARE`]: a client that never pays gets no more of any blob) and grows, as a TCP window in
//! slow start, by the bytes each credit pays for, up to [`RetrievalLimits::window_max`]: a
//! client that pays on time doubles it every round trip. A request beyond the window (the
//! client's payments are behind) is answered `PaymentRequired` and halves the window, never
//! below the initial one nor below what the flow already owes. So the value delivered and
//! not yet paid for, `(served_through − paid_chunks) × price`, never exceeds the window's
//! worth, at every moment ([`RetrievalProvider::exposure`]). Every answer on a flow tells the
//! client its window, so a client keeps its requests inside it.
//!
//! **Credits are not durable: flows are closed and evicted.** Because a client pays for a
//! chunk only after receiving it, a flow's credit never exceeds what the provider already
//! delivered; losing it costs the client the rest of that retrieval (it starts again), never
//! money for chunks it did not get. So flows live in memory, bounded per peer
//! ([`RetrievalLimits::max_flows_per_peer`]) and in total ([`RetrievalLimits::max_flows`]):
//! a flow is closed once paid for every chunk of its blob, evicted after
//! [`RetrievalLimits::flow_idle_timeout`] without a request, and, when a table is full, the
//! least recently used flow holding no credit makes room; if every flow holds credit the
//! request is answered `RateLimited`.
//!
//! **Unpaid work is bounded.** Every response that carries a manifest or a chunk is counted
//! from the moment it is handed to the network until it is sent or fails ([`InFlight`]):
//! per peer and in total, the responses in flight and their bytes are bounded by
//! [`RetrievalLimits`]; a request that would exceed a bound is answered `RateLimited`
//! (a few bytes) instead. [`RetrievalProvider::usage`] reads the counters, which the node
//! exports on `/metrics`.
//!
//! Published blobs are bounded by [`MAX_PUBLISHED_BYTES`]. A provider opened on a directory
//! ([`RetrievalProvider::open`], the daemon's `blobs/`) keeps each blob there as
//! `<root>.data` beside `<root>.meta` (the payee's address written for the provider's
//! [`Network`], [`RetrievalProvider::with_network`]) and serves them again after a restart.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use paych_core::types::{format_address, Address, Network, TokenAmount};
use paych_protocol::retrieval::{
    window_chunks, Hash, Manifest, RetrievalViolation, HASH_BYTES, MAX_WINDOW_BYTES,
};
use paych_protocol::{RetrievalRequest, RetrievalResponse, RetrievalStatus};

/// The most bytes all published blobs may take together.
pub const MAX_PUBLISHED_BYTES: usize = 256 << 20;
/// Responses (manifests and chunks) handed to the network for one peer and not yet sent,
/// at most; more are answered `RateLimited`. Room for two retrievals' pipelines of small
/// chunks ([`crate::retrieval::client::PIPELINE_REQUESTS`]).
pub const MAX_RESPONSES_IN_FLIGHT_PER_PEER: usize = 32;
/// Bytes of those responses, at most, for one peer.
pub const MAX_BYTES_IN_FLIGHT_PER_PEER: usize = 8 << 20;
/// Responses in flight, at most, over all peers.
pub const MAX_RESPONSES_IN_FLIGHT: usize = 256;
/// Bytes of responses in flight, at most, over all peers.
pub const MAX_BYTES_IN_FLIGHT: usize = 64 << 20;
/// Open flows of one peer, at most.
pub const MAX_FLOWS_PER_PEER: usize = 64;
/// Open flows, at most, over all peers.
pub const MAX_FLOWS: usize = 16_384;
/// A flow without a request for this long is evicted.
pub const FLOW_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// The credit window a flow starts with, in bytes (at least one chunk is always served).
pub const WINDOW_INITIAL_BYTES: u64 = 8 << 20;
/// The largest credit window a flow grows to, in bytes.
pub const WINDOW_MAX_BYTES: u64 = 64 << 20;
/// A new flow's window is at most this fraction of its blob: a client that never pays gets
/// at most an eighth of any blob (or its first chunk, if that is more), however small.
pub const INITIAL_WINDOW_BLOB_SHARE: u64 = 8;
/// What a response counts beyond its manifest's hashes or its chunk's bytes (its envelope).
pub const RESPONSE_ENVELOPE_BYTES: usize = 256;

/// The bounds of a provider's flows and of the work it does before being paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrievalLimits {
    /// Responses in flight for one peer.
    pub max_responses_per_peer: usize,
    /// Bytes of responses in flight for one peer.
    pub max_bytes_per_peer: usize,
    /// Responses in flight over all peers.
    pub max_responses: usize,
    /// Bytes of responses in flight over all peers.
    pub max_bytes: usize,
    /// Open flows of one peer.
    pub max_flows_per_peer: usize,
    /// Open flows over all peers.
    pub max_flows: usize,
    /// A flow without a request for this long is evicted.
    pub flow_idle_timeout: Duration,
    /// The credit window a flow starts with, in bytes.
    pub window_initial: u64,
    /// The largest a flow's credit window grows, in bytes (at most [`MAX_WINDOW_BYTES`]).
    pub window_max: u64,
}

impl RetrievalLimits {
    /// The same limits with a fixed credit window of `bytes`: it starts there and never
    /// grows.
    pub fn with_fixed_window(self, bytes: u64) -> Self {
        RetrievalLimits { window_initial: bytes, window_max: bytes, ..self }
    }

    /// The largest window, within the protocol's bound.
    fn max_window(&self) -> u64 {
        self.window_max.min(MAX_WINDOW_BYTES)
    }

    /// The window a flow on a blob of `size` bytes starts with: the initial window, within
    /// the largest, and at most [`INITIAL_WINDOW_BLOB_SHARE`]th of the blob (a window always
    /// lets one chunk through, whatever its bytes).
    fn initial_window(&self, size: u64) -> u64 {
        self.window_initial.min(self.max_window()).min(size / INITIAL_WINDOW_BLOB_SHARE)
    }
}

impl Default for RetrievalLimits {
    fn default() -> Self {
        RetrievalLimits {
            max_responses_per_peer: MAX_RESPONSES_IN_FLIGHT_PER_PEER,
            max_bytes_per_peer: MAX_BYTES_IN_FLIGHT_PER_PEER,
            max_responses: MAX_RESPONSES_IN_FLIGHT,
            max_bytes: MAX_BYTES_IN_FLIGHT,
            max_flows_per_peer: MAX_FLOWS_PER_PEER,
            max_flows: MAX_FLOWS,
            flow_idle_timeout: FLOW_IDLE_TIMEOUT,
            window_initial: WINDOW_INITIAL_BYTES,
            window_max: WINDOW_MAX_BYTES,
        }
    }
}

/// Faults a provider can be told to commit, to rehearse how clients catch them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Serve this chunk with one byte flipped.
    pub corrupt_chunk: Option<u64>,
}

/// Why a blob could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The blob is empty.
    #[error("the blob is empty")]
    Empty,
    /// The blob does not fit the manifest's bounds.
    #[error(transparent)]
    Manifest(#[from] RetrievalViolation),
    /// Publishing it would exceed [`MAX_PUBLISHED_BYTES`].
    #[error("published blobs would take more than {MAX_PUBLISHED_BYTES} bytes")]
    Full,
    /// The blob could not be written to, or read from, the provider's directory.
    #[error("blob store {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> PublishError {
    PublishError::Io { path: path.to_owned(), reason: e.to_string() }
}

struct Blob {
    manifest: Manifest,
    data: Vec<u8>,
    faults: Faults,
}

impl Blob {
    /// Chunk `index`, at `range`, with the faults the provider was told to commit.
    fn chunk(&self, index: u64, range: std::ops::Range<usize>) -> Vec<u8> {
        let mut data = self.data.get(range).map(<[u8]>::to_vec).unwrap_or_default();
        if self.faults.corrupt_chunk == Some(index) {
            if let Some(first) = data.first_mut() {
                *first ^= 0xff;
            }
        }
        data
    }
}

/// What an admitted chunk request does to its flow.
enum Opening {
    /// A free blob: no flow.
    Free,
    /// The flow is open; its window, in bytes.
    Existing(u64),
    /// The request opens this flow.
    Open(Flow),
}

/// The refusal of chunk `index`, beyond `flow`'s window.
fn beyond_window(flow: &Flow, index: u64) -> RetrievalResponse {
    RetrievalResponse::refused(
        RetrievalStatus::PaymentRequired,
        format!(
            "chunk {index} is beyond this flow's credit window of {} chunks: {} attoFIL paid on \
             this channel and flow covers {} chunks",
            flow.window_chunks(),
            flow.paid.atto(),
            flow.paid_chunks()
        ),
    )
}

/// What a request was admitted to receive.
enum Admitted {
    /// The manifest, with the window a new flow starts with (none for a free blob).
    Manifest(Arc<Blob>, Option<u64>),
    /// A chunk, with its flow's window (none for a free blob).
    Chunk(Arc<Blob>, u64, std::ops::Range<usize>, Option<u64>),
}

/// A flow's key: the peer that opened it, the channel it is paid on, its reference.
type FlowKey = (PeerId, Address, Vec<u8>);

/// An open flow: the blob it is bound to, what it has been paid and its credit window.
struct Flow {
    root: Hash,
    paid: TokenAmount,
    /// The price of every chunk of the blob: once paid, the flow is closed.
    complete_at: TokenAmount,
    /// The price of one chunk (positive: a free blob opens no flow).
    price: TokenAmount,
    /// The blob's chunk size.
    chunk_size: u64,
    /// The credit window, in bytes.
    window: u64,
    /// The window it started with: a request beyond the window never shrinks it below.
    floor: u64,
    /// One past the highest chunk index served on the flow.
    served_through: u64,
    last_active: Instant,
}

impl Flow {
    /// The credit in whole chunks.
    fn paid_chunks(&self) -> u64 {
        whole_chunks(&self.paid, &self.price)
    }

    /// The window in whole chunks.
    fn window_chunks(&self) -> u64 {
        window_chunks(self.window, self.chunk_size)
    }

    /// Chunks served and not yet paid for.
    fn owed_chunks(&self) -> u64 {
        self.served_through.saturating_sub(self.paid_chunks())
    }

    /// Whether chunk `index` lies inside the window.
    fn admits(&self, index: u64) -> bool {
        index < self.paid_chunks().saturating_add(self.window_chunks())
    }

    /// Halves the window after a request beyond it, keeping it at least where it started
    /// and at least what the flow owes.
    fn shrink(&mut self) {
        let owed = self.owed_chunks().saturating_mul(self.chunk_size);
        self.window = (self.window / 2).max(self.floor).max(owed).min(self.window);
    }
}

/// `paid` in whole chunks of `price` (saturating at `u64::MAX`).
fn whole_chunks(paid: &TokenAmount, price: &TokenAmount) -> u64 {
    if !price.is_positive() {
        return u64::MAX;
    }
    let chunks = paid.atto() / price.atto();
    u64::try_from(chunks).unwrap_or(if paid.is_negative() { 0 } else { u64::MAX })
}

/// Responses in flight and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Responses handed to the network and not yet sent.
    pub responses: usize,
    /// Their bytes.
    pub bytes: usize,
}

/// What a provider holds now and has refused, as [`RetrievalProvider::usage`] reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetrievalUsage {
    /// Responses in flight over all peers, and their bytes.
    pub in_flight: Load,
    /// The most bytes ever in flight at once over all peers.
    pub peak_bytes: usize,
    /// The most bytes ever in flight at once for any one peer.
    pub peak_peer_bytes: usize,
    /// Open flows.
    pub open_flows: usize,
    /// Retrieval requests answered (served or refused).
    pub answered: u64,
    /// Requests answered `RateLimited`.
    pub rate_limited: u64,
}

/// Which bound a request would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exceeded {
    PeerResponses,
    PeerBytes,
    Responses,
    Bytes,
    PeerFlows,
    Flows,
}

impl Exceeded {
    fn message(self) -> &'static str {
        match self {
            Exceeded::PeerResponses => "too many of your responses in flight; retry later",
            Exceeded::PeerBytes => "too many of your bytes in flight; retry later",
            Exceeded::Responses => "too many responses in flight; retry later",
            Exceeded::Bytes => "too many bytes in flight; retry later",
            Exceeded::PeerFlows => "too many of your flows are open and paid; retry later",
            Exceeded::Flows => "too many flows are open and paid; retry later",
        }
    }
}

/// The provider's mutable state: flows and the responses in flight.
#[derive(Default)]
struct State {
    flows: HashMap<FlowKey, Flow>,
    flows_per_peer: HashMap<PeerId, usize>,
    per_peer: HashMap<PeerId, Load>,
    total: Load,
    peak_bytes: usize,
    peak_peer_bytes: usize,
    answered: u64,
    rate_limited: u64,
    last_sweep: Option<Instant>,
}

impl State {
    /// Counts a response of `bytes` for `peer`, if every bound allows it.
    fn reserve(
        &mut self,
        peer: PeerId,
        bytes: usize,
        limits: &RetrievalLimits,
    ) -> Result<(), Exceeded> {
        let mine = self.per_peer.get(&peer).copied().unwrap_or_default();
        if mine.responses >= limits.max_responses_per_peer {
            return Err(Exceeded::PeerResponses);
        }
        if mine.bytes.saturating_add(bytes) > limits.max_bytes_per_peer {
            return Err(Exceeded::PeerBytes);
        }
        if self.total.responses >= limits.max_responses {
            return Err(Exceeded::Responses);
        }
        if self.total.bytes.saturating_add(bytes) > limits.max_bytes {
            return Err(Exceeded::Bytes);
        }
        let mine = self.per_peer.entry(peer).or_default();
        mine.responses += 1;
        mine.bytes += bytes;
        self.peak_peer_bytes = self.peak_peer_bytes.max(mine.bytes);
        self.total.responses += 1;
        self.total.bytes += bytes;
        self.peak_bytes = self.peak_bytes.max(self.total.bytes);
        Ok(())
    }

    /// Forgets a response counted by [`State::reserve`].
    fn release(&mut self, peer: PeerId, bytes: usize) {
        if let Some(mine) = self.per_peer.get_mut(&peer) {
            mine.responses = mine.responses.saturating_sub(1);
            mine.bytes = mine.bytes.saturating_sub(bytes);
            if mine.responses == 0 {
                self.per_peer.remove(&peer);
            }
        }
        self.total.responses = self.total.responses.saturating_sub(1);
        self.total.bytes = self.total.bytes.saturating_sub(bytes);
    }

    fn remove_flow(&mut self, key: &FlowKey) {
        if self.flows.remove(key).is_some() {
            if let Some(count) = self.flows_per_peer.get_mut(&key.0) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.flows_per_peer.remove(&key.0);
                }
            }
        }
    }

    /// Evicts every flow idle for longer than `timeout`.
    fn evict_idle(&mut self, now: Instant, timeout: Duration) {
        let idle: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| now.saturating_duration_since(f.last_active) > timeout)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &idle {
            self.remove_flow(key);
        }
        self.last_sweep = Some(now);
    }

    /// Evicts the least recently used flow holding no credit (of `peer` only, if given);
    /// answers whether there was one.
    fn evict_unpaid(&mut self, peer: Option<PeerId>) -> bool {
        let victim = self
            .flows
            .iter()
            .filter(|(k, f)| f.paid.is_zero() && peer.is_none_or(|p| k.0 == p))
            .min_by_key(|(_, f)| f.last_active)
            .map(|(k, _)| k.clone());
        match victim {
            Some(key) => {
                self.remove_flow(&key);
                true
            }
            None => false,
        }
    }

    /// Checks that chunk `index` of `root` lies inside the credit window of the flow `key`,
    /// and answers what to do once the chunk is admitted: record it on the open flow, or
    /// open the flow (a request on a flow not open yet). A free blob needs no flow. A
    /// request beyond the window shrinks it and is refused.
    fn check_paid(
        &mut self,
        key: &FlowKey,
        root: Hash,
        manifest: &Manifest,
        index: u64,
        now: Instant,
        limits: &RetrievalLimits,
    ) -> Result<Opening, RetrievalResponse> {
        let price = &manifest.price_per_chunk;
        if !price.is_positive() {
            return Ok(Opening::Free);
        }
        let Some(flow) = self.flows.get_mut(key) else {
            let flow = Flow {
                root,
                paid: TokenAmount::default(),
                complete_at: price * manifest.chunks(),
                price: price.clone(),
                chunk_size: manifest.chunk_size,
                window: limits.initial_window(manifest.size),
                floor: limits.initial_window(manifest.size),
                served_through: 0,
                last_active: now,
            };
            if !flow.admits(index) {
                return Err(beyond_window(&flow, index).with_window(flow.window));
            }
            return Ok(Opening::Open(flow));
        };
        flow.last_active = now;
        if flow.root != root {
            return Err(RetrievalResponse::refused(
                RetrievalStatus::PaymentRequired,
                "this flow pays for another blob; open a new flow for this one",
            )
            .with_window(flow.window));
        }
        if !flow.admits(index) {
            let refusal = beyond_window(flow, index);
            flow.shrink();
            return Err(refusal.with_window(flow.window));
        }
        Ok(Opening::Existing(flow.window))
    }

    /// Records that chunk `index` was served on the open flow `key`.
    fn served(&mut self, key: &FlowKey, index: u64) {
        if let Some(flow) = self.flows.get_mut(key) {
            flow.served_through = flow.served_through.max(index.saturating_add(1));
        }
    }

    /// Opens `flow` under `key`, making room as the module explains.
    fn open_flow(
        &mut self,
        key: FlowKey,
        flow: Flow,
        limits: &RetrievalLimits,
    ) -> Result<(), Exceeded> {
        let peer = key.0;
        let of_peer = |s: &State| s.flows_per_peer.get(&peer).copied().unwrap_or(0);
        if of_peer(self) >= limits.max_flows_per_peer || self.flows.len() >= limits.max_flows {
            self.evict_idle(flow.last_active, limits.flow_idle_timeout);
        }
        if of_peer(self) >= limits.max_flows_per_peer && !self.evict_unpaid(Some(peer)) {
            return Err(Exceeded::PeerFlows);
        }
        if self.flows.len() >= limits.max_flows && !self.evict_unpaid(None) {
            return Err(Exceeded::Flows);
        }
        self.flows.insert(key, flow);
        *self.flows_per_peer.entry(peer).or_default() += 1;
        Ok(())
    }
}

/// A response counted against the provider's bounds until dropped: the node keeps it while
/// the response is being sent and drops it once sent or failed.
pub struct InFlight {
    state: Arc<Mutex<State>>,
    peer: PeerId,
    bytes: usize,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight").field("peer", &self.peer).field("bytes", &self.bytes).finish()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).release(self.peer, self.bytes);
    }
}

/// A provider's answer to one request, with the count it holds while the answer is sent.
#[derive(Debug)]
pub struct Served {
    /// The response.
    pub response: RetrievalResponse,
    /// Held while a manifest or a chunk is in flight; `None` for a refusal.
    pub in_flight: Option<InFlight>,
}

/// The blobs a node serves, the flows open on them and what each has been paid.
pub struct RetrievalProvider {
    dir: Option<PathBuf>,
    blobs: RwLock<HashMap<Hash, Arc<Blob>>>,
    limits: RetrievalLimits,
    state: Arc<Mutex<State>>,
    /// The network the payees' addresses are written for in the blob store.
    network: Network,
}

impl std::fmt::Debug for RetrievalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let blobs = self.blobs.read().map(|b| b.len()).unwrap_or_default();
        f.debug_struct("RetrievalProvider")
            .field("blobs", &blobs)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Default for RetrievalProvider {
    fn default() -> Self {
        RetrievalProvider {
            dir: None,
            blobs: RwLock::default(),
            limits: RetrievalLimits::default(),
            state: Arc::default(),
            network: Network::Testnet,
        }
    }
}

impl RetrievalProvider {
    /// A provider keeping its blobs in `dir` (created if missing), serving those already
    /// there. A file that does not read back as the blob its name promises is skipped with a
    /// warning.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, PublishError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        let provider = RetrievalProvider { dir: Some(dir.clone()), ..Default::default() };
        let mut blobs = HashMap::new();
        let mut used = 0usize;
        for entry in fs::read_dir(&dir).map_err(|e| io_error(&dir, e))? {
            let path = entry.map_err(|e| io_error(&dir, e))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("meta") {
                continue;
            }
            match load_blob(&path) {
                Ok((root, blob)) if used + blob.data.len() <= MAX_PUBLISHED_BYTES => {
                    used += blob.data.len();
                    blobs.insert(root, Arc::new(blob));
                }
                Ok(_) => tracing::warn!(path = %path.display(), "blob skipped: the store is full"),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "blob skipped"),
            }
        }
        *provider.blobs.write().unwrap_or_else(|e| e.into_inner()) = blobs;
        Ok(provider)
    }

    /// The same provider, bounded by `limits` instead of the defaults.
    pub fn with_limits(mut self, limits: RetrievalLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The same provider, writing payees' addresses for `network` in its blob store
    /// (instead of the default, [`Network::Testnet`]).
    pub fn with_network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// The bounds this provider keeps.
    pub fn limits(&self) -> &RetrievalLimits {
        &self.limits
    }

    /// Publishes `data` in chunks of `chunk_size` at `price_per_chunk`, paid to `payee`;
    /// returns its manifest (publishing the same blob again replaces its price and faults).
    pub fn publish(
        &self,
        data: Vec<u8>,
        chunk_size: u64,
        price_per_chunk: TokenAmount,
        payee: Address,
        faults: Faults,
    ) -> Result<Manifest, PublishError> {
        if data.is_empty() {
            return Err(PublishError::Empty);
        }
        let manifest = Manifest::of(&data, chunk_size, price_per_chunk, payee)?;
        let mut root = [0u8; HASH_BYTES];
        root.copy_from_slice(&manifest.root);
        let mut blobs = self.blobs.write().unwrap_or_else(|e| e.into_inner());
        let used: usize =
            blobs.iter().filter(|(r, _)| **r != root).map(|(_, b)| b.data.len()).sum();
        if used + data.len() > MAX_PUBLISHED_BYTES {
            return Err(PublishError::Full);
        }
        let blob = Blob { manifest: manifest.clone(), data, faults };
        if let Some(dir) = &self.dir {
            save_blob(dir, &root, &blob, self.network)?;
        }
        blobs.insert(root, Arc::new(blob));
        Ok(manifest)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `delta` to what `peer` has paid on the open flow (`channel`, `flow`); answers
    /// whether it was credited (it is not when no such flow is open). The caller has checked
    /// that `delta` is what the manager accepted from `peer` as the channel's payer (see
    /// [`crate::inbound::retrieval::Crediting`]). A flow paid for every chunk of its blob is closed.
    pub fn credit(&self, peer: PeerId, channel: Address, flow: &[u8], delta: &TokenAmount) -> bool {
        if !delta.is_positive() {
            return false;
        }
        let mut state = self.state();
        let key = (peer, channel, flow.to_vec());
        let Some(open) = state.flows.get_mut(&key) else { return false };
        let before = open.paid_chunks();
        open.paid += delta;
        let newly_paid = open.paid_chunks().saturating_sub(before);
        let grown = open.window.saturating_add(newly_paid.saturating_mul(open.chunk_size));
        open.window = open.window.max(grown.min(self.limits.max_window()));
        if open.paid >= open.complete_at {
            state.remove_flow(&key);
        }
        true
    }

    /// The open flow's exposure: the value of the chunks it served and has not been paid
    /// for, and its window's worth in whole chunks — the first never exceeds the second.
    /// `None` when no such flow is open.
    pub fn exposure(
        &self,
        peer: PeerId,
        channel: Address,
        flow: &[u8],
    ) -> Option<(TokenAmount, TokenAmount)> {
        let state = self.state();
        let open = state.flows.get(&(peer, channel, flow.to_vec()))?;
        let served = &open.price * open.served_through;
        let owed = if served > open.paid { served - &open.paid } else { TokenAmount::default() };
        Some((owed, &open.price * open.window_chunks()))
    }

    /// The credit window of the open flow, in bytes; `None` when no such flow is open.
    pub fn window(&self, peer: PeerId, channel: Address, flow: &[u8]) -> Option<u64> {
        self.state().flows.get(&(peer, channel, flow.to_vec())).map(|f| f.window)
    }

    /// What `peer` has paid on its open flow (`channel`, `flow`); zero when none is open.
    pub fn paid(&self, peer: PeerId, channel: Address, flow: &[u8]) -> TokenAmount {
        let state = self.state();
        state.flows.get(&(peer, channel, flow.to_vec())).map(|f| f.paid.clone()).unwrap_or_default()
    }

    /// The counters of flows and responses in flight.
    pub fn usage(&self) -> RetrievalUsage {
        let state = self.state();
        RetrievalUsage {
            in_flight: state.total,
            peak_bytes: state.peak_bytes,
            peak_peer_bytes: state.peak_peer_bytes,
            open_flows: state.flows.len(),
            answered: state.answered,
            rate_limited: state.rate_limited,
        }
    }

    /// The responses in flight for `peer`, and their bytes.
    pub fn load_of(&self, peer: PeerId) -> Load {
        self.state().per_peer.get(&peer).copied().unwrap_or_default()
    }

    /// The answer to `request` from `peer`, without holding its count (for callers that
    /// answer in place).
    pub fn answer(&self, peer: PeerId, request: &RetrievalRequest) -> RetrievalResponse {
        self.serve(peer, request).response
    }

    /// The answer to `request` from `peer`, counted against the bounds until the returned
    /// [`Served::in_flight`] is dropped.
    pub fn serve(&self, peer: PeerId, request: &RetrievalRequest) -> Served {
        self.serve_at(peer, request, Instant::now())
    }

    /// [`RetrievalProvider::serve`] at time `now`.
    pub fn serve_at(&self, peer: PeerId, request: &RetrievalRequest, now: Instant) -> Served {
        let found = self.find(request);
        let admitted = {
            let mut state = self.state();
            state.answered += 1;
            let sweep_every = self.limits.flow_idle_timeout / 4;
            if state.last_sweep.is_none_or(|at| now.saturating_duration_since(at) > sweep_every) {
                state.evict_idle(now, self.limits.flow_idle_timeout);
            }
            let admitted = found
                .and_then(|(root, blob)| self.admit(&mut state, peer, request, root, blob, now));
            if let Err(refusal) = &admitted {
                if refusal.status() == Some(RetrievalStatus::RateLimited) {
                    state.rate_limited += 1;
                }
            }
            admitted
        };
        // The answer is built outside the lock: copying a chunk may take a while.
        match admitted {
            Err(response) => Served { response, in_flight: None },
            Ok((admitted, bytes)) => {
                let in_flight = Some(InFlight { state: self.state.clone(), peer, bytes });
                let response = match admitted {
                    Admitted::Manifest(blob, window) => {
                        let response = RetrievalResponse::manifest(blob.manifest.clone());
                        RetrievalResponse { window, ..response }
                    }
                    Admitted::Chunk(blob, index, range, window) => {
                        let response = RetrievalResponse::chunk(blob.chunk(index, range));
                        RetrievalResponse { window, ..response }
                    }
                };
                Served { response, in_flight }
            }
        }
    }

    /// The blob `request` names, or the refusal.
    fn find(&self, request: &RetrievalRequest) -> Result<(Hash, Arc<Blob>), RetrievalResponse> {
        let refuse = RetrievalResponse::refused;
        let root = Hash::try_from(request.root.as_slice())
            .map_err(|_| refuse(RetrievalStatus::Malformed, "the root is not 32 bytes"))?;
        let blob = self.blobs.read().unwrap_or_else(|e| e.into_inner()).get(&root).cloned();
        let blob =
            blob.ok_or_else(|| refuse(RetrievalStatus::NotFound, "no blob with this root"))?;
        Ok((root, blob))
    }

    /// What `request` for `blob` may receive, counted in `state` with its bytes; or the
    /// refusal.
    fn admit(
        &self,
        state: &mut State,
        peer: PeerId,
        request: &RetrievalRequest,
        root: Hash,
        blob: Arc<Blob>,
        now: Instant,
    ) -> Result<(Admitted, usize), RetrievalResponse> {
        let refuse = RetrievalResponse::refused;
        let rate_limited = |e: Exceeded| refuse(RetrievalStatus::RateLimited, e.message());
        let Some(index) = request.index else {
            let bytes = blob.manifest.hashes.len() * (HASH_BYTES + 2) + RESPONSE_ENVELOPE_BYTES;
            state.reserve(peer, bytes, &self.limits).map_err(rate_limited)?;
            let window = blob
                .manifest
                .price_per_chunk
                .is_positive()
                .then(|| self.limits.initial_window(blob.manifest.size));
            return Ok((Admitted::Manifest(blob, window), bytes));
        };
        let channel = request.channel.ok_or_else(|| {
            refuse(
                RetrievalStatus::Malformed,
                "a chunk request must name the channel it is paid on",
            )
        })?;
        let range = blob.manifest.chunk_range(index).ok_or_else(|| {
            let chunks = blob.manifest.chunks();
            RetrievalResponse::refused(
                RetrievalStatus::BadIndex,
                format!("the blob has {chunks} chunks"),
            )
        })?;
        let key = (peer, channel, request.flow.clone());
        let opening = state.check_paid(&key, root, &blob.manifest, index, now, &self.limits)?;
        let bytes = range.len() + RESPONSE_ENVELOPE_BYTES;
        state.reserve(peer, bytes, &self.limits).map_err(rate_limited)?;
        let window = match opening {
            Opening::Free => None,
            Opening::Existing(window) => Some(window),
            Opening::Open(flow) => {
                let window = flow.window;
                if let Err(exceeded) = state.open_flow(key.clone(), flow, &self.limits) {
                    state.release(peer, bytes);
                    return Err(rate_limited(exceeded));
                }
                Some(window)
            }
        };
        state.served(&key, index);
        Ok((Admitted::Chunk(blob, index, range, window), bytes))
    }
}

/// Writes `<root>.data` then `<root>.meta` (each through a temporary file and a rename), so
/// that a `.meta` file only ever names complete data.
fn save_blob(dir: &Path, root: &Hash, blob: &Blob, network: Network) -> Result<(), PublishError> {
    let name = hex::encode(root);
    let meta = format!(
        "chunk_size = {}\nprice_per_chunk = {}\npayee = {}\ncorrupt_chunk = {}\n",
        blob.manifest.chunk_size,
        blob.manifest.price_per_chunk.atto(),
        format_address(&blob.manifest.payee, network),
        blob.faults.corrupt_chunk.map_or_else(|| "none".to_owned(), |c| c.to_string()),
    );
    for (ext, bytes) in [("data", blob.data.as_slice()), ("meta", meta.as_bytes())] {
        let path = dir.join(format!("{name}.{ext}"));
        let tmp = dir.join(format!("{name}.{ext}.tmp"));
        fs::write(&tmp, bytes).map_err(|e| io_error(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
    }
    Ok(())
}

/// Reads a blob back from its `.meta` file and the `.data` file beside it, checking that it
/// is the blob the file name promises.
fn load_blob(meta_path: &Path) -> Result<(Hash, Blob), PublishError> {
    let bad = |what: &str| io_error(meta_path, what);
    let stem = meta_path.file_stem().and_then(|s| s.to_str()).ok_or_else(|| bad("bad name"))?;
    let root = hex::decode(stem)
        .ok()
        .and_then(|bytes| Hash::try_from(bytes.as_slice()).ok())
        .ok_or_else(|| bad("the name is not a root"))?;
    let text = fs::read_to_string(meta_path).map_err(|e| io_error(meta_path, e))?;
    let mut fields = HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            fields.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    let field = |k: &str| fields.get(k).ok_or_else(|| bad(&format!("no {k}")));
    let chunk_size: u64 = field("chunk_size")?.parse().map_err(|_| bad("bad chunk_size"))?;
    let price: u128 = field("price_per_chunk")?.parse().map_err(|_| bad("bad price_per_chunk"))?;
    let (payee, _) =
        paych_core::types::parse_address(field("payee")?).map_err(|_| bad("bad payee"))?;
    let corrupt_chunk = match field("corrupt_chunk")?.as_str() {
        "none" => None,
        n => Some(n.parse().map_err(|_| bad("bad corrupt_chunk"))?),
    };
    let data_path = meta_path.with_extension("data");
    let data = fs::read(&data_path).map_err(|e| io_error(&data_path, e))?;
    let manifest = Manifest::of(&data, chunk_size, TokenAmount::from_atto(price), payee)?;
    if manifest.root[..] != root[..] {
        return Err(bad("the data does not hash to the root its name gives"));
    }
    Ok((root, Blob { manifest, data, faults: Faults { corrupt_chunk } }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use paych_protocol::retrieval;

    fn blob(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 256) as u8).collect()
    }

    #[test]
    fn chunks_are_served_only_once_the_earlier_ones_are_paid() {
        // A window of one chunk: chunk i once chunks 0..i are paid.
        let one_chunk = RetrievalLimits::default().with_fixed_window(1000);
        let provider = RetrievalProvider::default().with_limits(one_chunk);
        let payee = Address::new_id(1001);
        let manifest = provider
            .publish(blob(2500), 1000, TokenAmount::from_atto(10), payee, Faults::default())
            .unwrap();
        let root = Hash::try_from(manifest.root.as_slice()).unwrap();
        let peer = PeerId::random();
        let channel = Address::new_id(2002);
        let answer = provider.answer(peer, &RetrievalRequest::manifest(root));
        assert_eq!(answer.manifest, Some(manifest));

        let chunk =
            |i| provider.answer(peer, &RetrievalRequest::chunk(root, i, channel, b"f".to_vec()));
        assert_eq!(chunk(0).data.map(|d| d.len()), Some(1000));
        assert_eq!(chunk(1).status(), Some(RetrievalStatus::PaymentRequired));
        provider.credit(peer, channel, b"f", &TokenAmount::from_atto(10));
        assert_eq!(chunk(1).data.map(|d| d.len()), Some(1000));
        assert_eq!(chunk(2).status(), Some(RetrievalStatus::PaymentRequired));
        // Another peer, channel or flow has paid nothing.
        let other = provider
            .answer(PeerId::random(), &RetrievalRequest::chunk(root, 1, channel, b"f".to_vec()));
        assert_eq!(other.status(), Some(RetrievalStatus::PaymentRequired));
        provider.credit(peer, channel, b"f", &TokenAmount::from_atto(10));
        assert_eq!(chunk(2).data.map(|d| d.len()), Some(500));
        assert_eq!(chunk(3).status(), Some(RetrievalStatus::BadIndex));
        let unknown = provider.answer(peer, &RetrievalRequest::manifest([0; 32]));
        assert_eq!(unknown.status(), Some(RetrievalStatus::NotFound));
        let unpaid =
            RetrievalRequest { channel: None, ..RetrievalRequest::chunk(root, 0, channel, vec![]) };
        assert_eq!(provider.answer(peer, &unpaid).status(), Some(RetrievalStatus::Malformed));
    }

    #[test]
    fn a_faulty_provider_corrupts_the_chunk_it_is_told_to() {
        let provider = RetrievalProvider::default();
        let data = blob(3000);
        let manifest = provider
            .publish(
                data.clone(),
                1000,
                TokenAmount::default(),
                Address::new_id(1),
                Faults { corrupt_chunk: Some(1) },
            )
            .unwrap();
        let root = Hash::try_from(manifest.root.as_slice()).unwrap();
        let peer = PeerId::random();
        let get = |i| {
            provider
                .answer(peer, &RetrievalRequest::chunk(root, i, Address::new_id(2), vec![]))
                .data
                .unwrap()
        };
        assert_eq!(retrieval::hash(&get(0)), manifest.hashes[0]);
        assert_ne!(retrieval::hash(&get(1)), manifest.hashes[1]);
        assert!(matches!(
            provider.publish(
                vec![],
                10,
                TokenAmount::default(),
                Address::new_id(1),
                Faults::default()
            ),
            Err(PublishError::Empty)
        ));
        assert!(matches!(
            provider.publish(
                data,
                0,
                TokenAmount::default(),
                Address::new_id(1),
                Faults::default()
            ),
            Err(PublishError::Manifest(_))
        ));
    }

    #[test]
    fn published_blobs_survive_a_restart_and_damaged_files_are_skipped() {
        let dir = std::env::temp_dir().join(format!("paych-blobs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let provider = RetrievalProvider::open(&dir).unwrap();
        let payee = Address::new_id(1001);
        let kept = provider
            .publish(blob(2500), 1000, TokenAmount::from_atto(3), payee, Faults::default())
            .unwrap();
        let damaged = provider
            .publish(blob(900), 100, TokenAmount::from_atto(3), payee, Faults::default())
            .unwrap();
        fs::write(dir.join(format!("{}.data", hex::encode(&damaged.root))), b"other bytes")
            .unwrap();
        let reopened = RetrievalProvider::open(&dir).unwrap();
        let peer = PeerId::random();
        let root = Hash::try_from(kept.root.as_slice()).unwrap();
        assert_eq!(reopened.answer(peer, &RetrievalRequest::manifest(root)).manifest, Some(kept));
        let gone = Hash::try_from(damaged.root.as_slice()).unwrap();
        assert_eq!(
            reopened.answer(peer, &RetrievalRequest::manifest(gone)).status(),
            Some(RetrievalStatus::NotFound)
        );
        let _ = fs::remove_dir_all(&dir);
    }

    /// A provider with `limits`, serving a blob of five 1000-byte chunks at 10 a chunk.
    fn provider_with(limits: RetrievalLimits) -> (RetrievalProvider, Hash) {
        let provider = RetrievalProvider::default().with_limits(limits);
        let root = publish_blob(&provider, 5000, 10);
        (provider, root)
    }

    /// Publishes a blob of `size` bytes in 1000-byte chunks at `price` attoFIL a chunk, paid
    /// to f01; its root.
    fn publish_blob(provider: &RetrievalProvider, size: usize, price: u64) -> Hash {
        let price = TokenAmount::from_atto(price);
        let manifest = provider
            .publish(blob(size), 1000, price, Address::new_id(1), Faults::default())
            .unwrap();
        Hash::try_from(manifest.root.as_slice()).unwrap()
    }

    fn chunk0(root: Hash, flow: u64) -> RetrievalRequest {
        RetrievalRequest::chunk(root, 0, Address::new_id(2), flow.to_be_bytes().to_vec())
    }

    #[test]
    fn responses_in_flight_are_bounded_per_peer_and_in_total_until_sent() {
        let limits = RetrievalLimits {
            max_responses_per_peer: 3,
            max_bytes_per_peer: 2 * (1000 + RESPONSE_ENVELOPE_BYTES),
            max_responses: 4,
            max_bytes: 1 << 20,
            ..RetrievalLimits::default()
        };
        let (provider, root) = provider_with(limits);
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let first = provider.serve(a, &chunk0(root, 1));
        let second = provider.serve(a, &chunk0(root, 2));
        assert_eq!(first.response.status(), Some(RetrievalStatus::Ok));
        assert_eq!(second.response.status(), Some(RetrievalStatus::Ok));
        // A third chunk would pass a's byte budget: refused, and nothing held for it.
        let third = provider.serve(a, &chunk0(root, 3));
        assert_eq!(third.response.status(), Some(RetrievalStatus::RateLimited));
        assert!(third.in_flight.is_none() && third.response.data.is_none());
        assert_eq!(provider.load_of(a).responses, 2);
        // Other peers have their own budget, within the total of four responses.
        let others: Vec<Served> =
            [b, b].iter().map(|p| provider.serve(*p, &chunk0(root, 4))).collect();
        assert!(others.iter().all(|s| s.response.status() == Some(RetrievalStatus::Ok)));
        let over = provider.serve(c, &RetrievalRequest::manifest(root));
        assert_eq!(over.response.status(), Some(RetrievalStatus::RateLimited));
        let usage = provider.usage();
        assert_eq!(usage.in_flight.responses, 4);
        assert_eq!(usage.rate_limited, 2);
        // Once a response is sent it no longer counts.
        drop(first);
        assert_eq!(provider.load_of(a).responses, 1);
        let manifest = provider.serve(c, &RetrievalRequest::manifest(root));
        assert!(manifest.response.manifest.is_some());
        drop((second, others, manifest));
        assert_eq!(provider.usage().in_flight, Load::default());
        assert_eq!(provider.usage().peak_peer_bytes, 2 * (1000 + RESPONSE_ENVELOPE_BYTES));
    }

    #[test]
    fn a_flow_is_bound_to_the_blob_it_was_opened_for_and_closed_once_paid() {
        let (provider, dear) = provider_with(RetrievalLimits::default());
        let cheap = publish_blob(&provider, 3000, 1);
        let (peer, channel) = (PeerId::random(), Address::new_id(2));
        let ask = |root, index| {
            provider.answer(peer, &RetrievalRequest::chunk(root, index, channel, b"f".to_vec()))
        };
        // A payment for a flow no chunk request opened is not credited.
        assert!(!provider.credit(peer, channel, b"f", &TokenAmount::from_atto(10)));
        assert_eq!(ask(dear, 0).status(), Some(RetrievalStatus::Ok));
        assert!(provider.credit(peer, channel, b"f", &TokenAmount::from_atto(10)));
        assert_eq!(ask(cheap, 1).status(), Some(RetrievalStatus::PaymentRequired));
        assert_eq!(ask(dear, 1).status(), Some(RetrievalStatus::Ok));
        // Paid for all five chunks: the flow is closed and forgotten.
        assert!(provider.credit(peer, channel, b"f", &TokenAmount::from_atto(40)));
        assert_eq!(provider.usage().open_flows, 0);
        assert!(provider.paid(peer, channel, b"f").is_zero());
    }

    #[test]
    fn flows_are_bounded_and_idle_or_unpaid_ones_make_room() {
        let limits = RetrievalLimits {
            max_flows_per_peer: 2,
            max_flows: 3,
            flow_idle_timeout: Duration::from_secs(60),
            ..RetrievalLimits::default()
        };
        let (provider, root) = provider_with(limits);
        let (a, b) = (PeerId::random(), PeerId::random());
        let channel = Address::new_id(2);
        let t0 = Instant::now();
        let open = |peer, flow: u64, at| {
            provider.serve_at(peer, &chunk0(root, flow), at).response.status()
        };
        let pay = |peer, flow: u64| {
            provider.credit(peer, channel, &flow.to_be_bytes(), &TokenAmount::from_atto(10))
        };
        // a's two flows are paid; a third one finds no unpaid flow of a's to make room.
        assert_eq!(open(a, 1, t0), Some(RetrievalStatus::Ok));
        assert_eq!(open(a, 2, t0), Some(RetrievalStatus::Ok));
        assert!(pay(a, 1) && pay(a, 2));
        assert_eq!(open(a, 3, t0), Some(RetrievalStatus::RateLimited));
        // b's unpaid flow gives way to b's next one; the table holds three at most.
        assert_eq!(open(b, 1, t0), Some(RetrievalStatus::Ok));
        assert_eq!(open(b, 2, t0), Some(RetrievalStatus::Ok));
        assert_eq!(provider.usage().open_flows, 3);
        assert!(!pay(b, 1), "b's first flow was evicted");
        assert!(pay(b, 2));
        assert_eq!(open(b, 3, t0), Some(RetrievalStatus::RateLimited));
        // After the idle timeout every flow is evicted, paid or not.
        let later = t0 + Duration::from_secs(61);
        assert_eq!(open(b, 3, later), Some(RetrievalStatus::Ok));
        assert_eq!(provider.usage().open_flows, 1);
        assert!(provider.paid(a, channel, &1u64.to_be_bytes()).is_zero());
    }

    /// One step of a client against a provider: ask for a chunk, or pay.
    #[derive(Debug, Clone)]
    enum Step {
        Ask(u64),
        Pay(u64),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (0u64..24).prop_map(Step::Ask),
            1 => (0u64..45).prop_map(Step::Pay),
        ]
    }

    proptest::proptest! {
        /// Over any interleaving of requests (in order or not, inside the window or beyond)
        /// and payments (whole chunks or not), with a client that may stop paying at any
        /// step: what the provider delivered and was not paid for never exceeds its window's
        /// worth — neither the window in force (as the provider counts it) nor the largest
        /// (as an independent tally of distinct chunks delivered and credits counts it).
        #[test]
        fn a_provider_never_has_more_than_its_window_delivered_unpaid(
            steps in proptest::collection::vec(step(), 1..120),
            stops_paying_at in 0usize..120,
        ) {
            const PRICE: u64 = 10;
            let limits = RetrievalLimits {
                window_initial: 2000,
                window_max: 8000,
                ..RetrievalLimits::default()
            };
            let provider = RetrievalProvider::default().with_limits(limits);
            let root = publish_blob(&provider, 20_000, PRICE);
            let (peer, channel) = (PeerId::random(), Address::new_id(2));
            let mut delivered = std::collections::BTreeSet::new();
            let mut credited = 0u64;
            for (i, step) in steps.into_iter().enumerate() {
                match step {
                    Step::Ask(index) => {
                        let request = RetrievalRequest::chunk(root, index, channel, b"f".to_vec());
                        let answer = provider.answer(peer, &request);
                        if answer.data.is_some() {
                            delivered.insert(index);
                        }
                    }
                    Step::Pay(amount) if i < stops_paying_at => {
                        if provider.credit(peer, channel, b"f", &TokenAmount::from_atto(amount)) {
                            credited += amount;
                        }
                    }
                    Step::Pay(_) => {}
                }
                let owed = (delivered.len() as u64 * PRICE).saturating_sub(credited);
                proptest::prop_assert!(owed <= 8 * PRICE, "owed {owed} with {delivered:?}, {credited} credited");
                if let Some((owed, bound)) = provider.exposure(peer, channel, b"f") {
                    proptest::prop_assert!(owed <= bound, "{owed:?} > {bound:?}");
                    proptest::prop_assert!(bound <= TokenAmount::from_atto(8 * PRICE));
                }
            }
        }
    }

    #[test]
    fn a_request_beyond_the_window_halves_it_but_never_below_what_is_owed() {
        let limits = RetrievalLimits {
            window_initial: 1000,
            window_max: 16_000,
            ..RetrievalLimits::default()
        };
        let provider = RetrievalProvider::default().with_limits(limits);
        let root = publish_blob(&provider, 80_000, 1);
        let (peer, channel) = (PeerId::random(), Address::new_id(2));
        let ask =
            |i| provider.answer(peer, &RetrievalRequest::chunk(root, i, channel, b"f".to_vec()));
        let pay = |n| provider.credit(peer, channel, b"f", &TokenAmount::from_atto(n));
        assert_eq!(ask(0).window, Some(1000));
        // Paying on time doubles the window each round: 1 → 2 → 4 → 8 → 16 chunks.
        let mut next = 1;
        for window in [2000, 4000, 8000, 16_000] {
            assert!(pay(next
                - provider.paid(peer, channel, b"f").atto().to_string().parse::<u64>().unwrap()));
            let paid = next;
            next = paid + window / 1000;
            for i in paid..next {
                assert_eq!(ask(i).window, Some(window));
            }
        }
        assert_eq!(provider.window(peer, channel, b"f"), Some(16_000));
        // The client owes 16 chunks and asks beyond: refused, and the window stays at what
        // is owed.
        let refused = ask(next);
        assert_eq!(refused.status(), Some(RetrievalStatus::PaymentRequired));
        assert_eq!(refused.window, Some(16_000));
        // Paid up, a request beyond halves it: 16 → 8 → 4 chunks, never below the initial.
        assert!(pay(16));
        let limit = provider.paid(peer, channel, b"f").atto().to_string().parse::<u64>().unwrap();
        assert_eq!(provider.window(peer, channel, b"f"), Some(16_000));
        let beyond = limit + 16;
        assert_eq!(ask(beyond).window, Some(8000));
        assert_eq!(ask(beyond).window, Some(4000));
        assert_eq!(ask(beyond).window, Some(2000));
        assert_eq!(ask(beyond).window, Some(1000));
        assert_eq!(ask(beyond).window, Some(1000));
    }

    #[test]
    fn a_client_that_never_pays_gets_at_most_an_eighth_of_a_small_blob() {
        // The default window (8 MiB) is larger than this whole 32 000-byte blob.
        let provider = RetrievalProvider::default();
        let root = publish_blob(&provider, 32_000, 1);
        let manifest_answer = provider.answer(PeerId::random(), &RetrievalRequest::manifest(root));
        assert_eq!(manifest_answer.window, Some(4000));
        // However many flows it opens, it gets chunks 0..4 and nothing after.
        let peer = PeerId::random();
        for flow in 0u64..5 {
            for index in 0..32 {
                let request = RetrievalRequest::chunk(
                    root,
                    index,
                    Address::new_id(2),
                    flow.to_be_bytes().to_vec(),
                );
                let served = provider.answer(peer, &request).data.is_some();
                assert_eq!(served, index < 4, "flow {flow}, chunk {index}");
            }
        }
        // A blob smaller than eight chunks still lets its first chunk through.
        let root = publish_blob(&provider, 3000, 1);
        let ask = |i| {
            provider.answer(peer, &RetrievalRequest::chunk(root, i, Address::new_id(2), vec![9]))
        };
        assert!(ask(0).data.is_some());
        assert_eq!(ask(1).status(), Some(RetrievalStatus::PaymentRequired));
    }
}
