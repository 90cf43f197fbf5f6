//! Paid retrievals over `/paych/retrieval/1.0.0`: the provider's side
//! ([`RetrievalProvider`]: published blobs, the open flows and what each has been paid, and
//! the bounds of the work it does unpaid) and the client's ([`retrieve`]: fetch the
//! manifest, then each chunk, checking it against its hash and paying for it on the
//! retrieval's flow before asking for the next, never above the client's [`PriceLimit`]).
//!
//! **Flows.** A flow is a (peer, channel, flow reference) triple, opened by the first chunk
//! request that names it and bound from then on to that request's blob. The provider learns
//! of payments from the voucher exchange: when the node's manager answers a voucher carrying
//! a flow reference `Accepted { delta }`, [`credit_payment`] adds exactly `delta` to the open
//! flow — and only if the peer that sent the voucher is the channel's payer, as bound by the
//! payer's signed peer record (announced with its first payment). A voucher the manager
//! already holds (`AlreadyHeld`) or that adds nothing (`Covered`) credits nothing, so a
//! replayed voucher earns nothing, whoever sends it and under whatever flow; credit paid on
//! one flow unlocks chunks of that flow's blob only. Chunk `i` is served once the flow's
//! credit reaches `i × price`.
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
//! `<root>.data` beside `<root>.meta` and serves them again after a restart.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use paych_core::manager::PaymentChannelManager;
use paych_core::types::{format_address, Address, Network, TokenAmount};
use paych_protocol::retrieval::{self, Hash, Manifest, RetrievalViolation, HASH_BYTES};
use paych_protocol::{
    RetrievalRequest, RetrievalResponse, RetrievalStatus, VoucherResponse, VoucherStatus,
};

use crate::network::NetworkError;
use crate::pay::{PayError, Payer};

/// The most bytes all published blobs may take together.
pub const MAX_PUBLISHED_BYTES: usize = 256 << 20;
/// Responses (manifests and chunks) handed to the network for one peer and not yet sent,
/// at most; more are answered `RateLimited`.
pub const MAX_RESPONSES_IN_FLIGHT_PER_PEER: usize = 8;
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
/// What a response counts beyond its manifest's hashes or its chunk's bytes (its envelope).
pub const RESPONSE_ENVELOPE_BYTES: usize = 256;
/// Payers' verified peer records kept, at most (beyond, the cache starts again).
const MAX_PAYER_PEERS: usize = 4096;

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

/// What a request was admitted to receive.
enum Admitted {
    Manifest(Arc<Blob>),
    Chunk(Arc<Blob>, u64, std::ops::Range<usize>),
}

/// A flow's key: the peer that opened it, the channel it is paid on, its reference.
type FlowKey = (PeerId, Address, Vec<u8>);

/// An open flow: the blob it is bound to and what it has been paid.
struct Flow {
    root: Hash,
    paid: TokenAmount,
    /// The price of every chunk of the blob: once paid, the flow is closed.
    complete_at: TokenAmount,
    last_active: Instant,
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

    /// Checks that the flow `key` has paid for the chunks of `root` before `index`, and
    /// answers the flow to open when the request opens one (a chunk 0 request on a flow not
    /// open yet). A free blob needs no flow.
    fn check_paid(
        &mut self,
        key: &FlowKey,
        root: Hash,
        manifest: &Manifest,
        index: u64,
        now: Instant,
    ) -> Result<Option<Flow>, RetrievalResponse> {
        let price = &manifest.price_per_chunk;
        if !price.is_positive() {
            return Ok(None);
        }
        let (paid, opening) = match self.flows.get_mut(key) {
            Some(flow) => {
                flow.last_active = now;
                if flow.root != root {
                    return Err(RetrievalResponse::refused(
                        RetrievalStatus::PaymentRequired,
                        "this flow pays for another blob; open a new flow for this one",
                    ));
                }
                (flow.paid.clone(), None)
            }
            None => {
                let flow = Flow {
                    root,
                    paid: TokenAmount::default(),
                    complete_at: price * manifest.chunks(),
                    last_active: now,
                };
                (TokenAmount::default(), Some(flow))
            }
        };
        let due = price * index;
        if paid < due {
            return Err(RetrievalResponse::refused(
                RetrievalStatus::PaymentRequired,
                format!(
                    "chunk {index} needs {} attoFIL paid on this channel and flow; {} received",
                    due.atto(),
                    paid.atto()
                ),
            ));
        }
        Ok(opening)
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

/// A response counted against the provider's bounds until dropped: the network loop keeps
/// it while the response is being sent and drops it once sent or failed.
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
#[derive(Default)]
pub struct RetrievalProvider {
    dir: Option<PathBuf>,
    blobs: RwLock<HashMap<Hash, Arc<Blob>>>,
    limits: RetrievalLimits,
    state: Arc<Mutex<State>>,
    /// Payer key address → (the sequence of its peer record, its verified PeerId).
    payers: Mutex<HashMap<Address, (u64, PeerId)>>,
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
            save_blob(dir, &root, &blob)?;
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
    /// [`credit_payment`]). A flow paid for every chunk of its blob is closed.
    pub fn credit(&self, peer: PeerId, channel: Address, flow: &[u8], delta: &TokenAmount) -> bool {
        if !delta.is_positive() {
            return false;
        }
        let mut state = self.state();
        let key = (peer, channel, flow.to_vec());
        let Some(open) = state.flows.get_mut(&key) else { return false };
        open.paid += delta;
        if open.paid >= open.complete_at {
            state.remove_flow(&key);
        }
        true
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
                    Admitted::Manifest(blob) => RetrievalResponse::manifest(blob.manifest.clone()),
                    Admitted::Chunk(blob, index, range) => {
                        RetrievalResponse::chunk(blob.chunk(index, range))
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
            return Ok((Admitted::Manifest(blob), bytes));
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
        let opening = state.check_paid(&key, root, &blob.manifest, index, now)?;
        let bytes = range.len() + RESPONSE_ENVELOPE_BYTES;
        state.reserve(peer, bytes, &self.limits).map_err(rate_limited)?;
        if let Some(flow) = opening {
            if let Err(exceeded) = state.open_flow(key, flow, &self.limits) {
                state.release(peer, bytes);
                return Err(rate_limited(exceeded));
            }
        }
        Ok((Admitted::Chunk(blob, index, range), bytes))
    }

    /// The PeerId the payer `from` bound its key to in the signed peer record the node holds
    /// (verified once per record sequence), if it holds one.
    fn payer_peer(&self, manager: &PaymentChannelManager, from: &Address) -> Option<PeerId> {
        let held = manager.peer_record(from).ok()??;
        let cached = self.payers.lock().unwrap_or_else(|e| e.into_inner()).get(from).copied();
        if let Some((sequence, peer)) = cached {
            if sequence == held.sequence {
                return Some(peer);
            }
        }
        let (peer, _) = crate::reconcile::find_peer(manager, from).ok()?;
        let mut payers = self.payers.lock().unwrap_or_else(|e| e.into_inner());
        if payers.len() >= MAX_PAYER_PEERS {
            payers.clear();
        }
        payers.insert(*from, (held.sequence, peer));
        Some(peer)
    }
}

/// What a voucher answer did to the retrieval flow it named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credit {
    /// The accepted delta was added to the flow.
    Credited(TokenAmount),
    /// The manager did not answer `Accepted` with a positive delta (a replayed voucher, an
    /// older one, a refusal): nothing to credit.
    NothingAccepted,
    /// The sender is not the peer the channel's payer bound its key to.
    NotThePayer,
    /// The sender has no open flow by that reference on that channel.
    NoOpenFlow,
}

/// Credits the flow `flow` of `peer` on `channel` with what the manager accepted from that
/// voucher (`response`), if `peer` is the channel's payer: only an `Accepted` answer
/// credits, and only its delta.
pub async fn credit_payment(
    provider: &RetrievalProvider,
    manager: &PaymentChannelManager,
    peer: PeerId,
    channel: Address,
    flow: &[u8],
    response: &VoucherResponse,
) -> Credit {
    if response.status() != Some(VoucherStatus::Accepted) || !response.delta.is_positive() {
        return Credit::NothingAccepted;
    }
    let from = match manager.channel_parties(&channel).await {
        Ok((from, _)) => from,
        Err(_) => return Credit::NotThePayer,
    };
    if provider.payer_peer(manager, &from) != Some(peer) {
        tracing::debug!(%peer, "voucher not credited: the sender is not the channel's payer");
        return Credit::NotThePayer;
    }
    if provider.credit(peer, channel, flow, &response.delta) {
        Credit::Credited(response.delta.clone())
    } else {
        tracing::debug!(%peer, "voucher not credited: no open flow by that reference");
        Credit::NoOpenFlow
    }
}

/// Writes `<root>.data` then `<root>.meta` (each through a temporary file and a rename), so
/// that a `.meta` file only ever names complete data.
fn save_blob(dir: &Path, root: &Hash, blob: &Blob) -> Result<(), PublishError> {
    let name = hex::encode(root);
    let meta = format!(
        "chunk_size = {}\nprice_per_chunk = {}\npayee = {}\ncorrupt_chunk = {}\n",
        blob.manifest.chunk_size,
        blob.manifest.price_per_chunk.atto(),
        format_address(&blob.manifest.payee, Network::Testnet),
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
    let root = parse_root(stem).map_err(|_| bad("the name is not a root"))?;
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

/// Why a retrieval failed. Chunks received before the failure were paid for; the chunk
/// that failed its check was not.
#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    /// The root is not a 32-byte hex string.
    #[error("the root must be 64 hex digits")]
    BadRoot,
    /// The provider could not be reached or did not answer.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The provider refused a request.
    #[error("the provider refused {what}: {status}: {message}")]
    Refused {
        /// The manifest or the chunk.
        what: String,
        /// The status's name.
        status: String,
        /// The provider's explanation.
        message: String,
    },
    /// The manifest does not describe the blob asked for.
    #[error("the provider's manifest is not the blob asked for: {0}")]
    BadManifest(String),
    /// The provider asks more per chunk than the client accepts.
    #[error("the provider asks {} attoFIL per chunk; at most {} was accepted", asked.atto(), max.atto())]
    TooExpensive {
        /// Its price.
        asked: TokenAmount,
        /// The client's limit.
        max: TokenAmount,
    },
    /// The whole blob would cost more than the client accepts.
    #[error("the blob costs {} attoFIL in all; at most {} was accepted", asked.atto(), max.atto())]
    TooExpensiveInAll {
        /// Its price: the price per chunk times the chunks.
        asked: TokenAmount,
        /// The client's limit.
        max: TokenAmount,
    },
    /// A chunk did not match its hash: the retrieval stopped and the chunk is unpaid.
    #[error("chunk {index} does not match its hash in the manifest: retrieval stopped after paying for {paid_chunks} chunks; chunk {index} was not paid for")]
    BadChunk {
        /// The chunk.
        index: u64,
        /// Chunks paid for before it.
        paid_chunks: u64,
    },
    /// Paying for a chunk failed.
    #[error("paying for chunk {index} failed: {source}")]
    Pay {
        /// The chunk.
        index: u64,
        /// Why.
        source: PayError,
    },
    /// The provider refused the voucher for a chunk.
    #[error("the provider refused the voucher for chunk {index}: {status}")]
    PaymentRefused {
        /// The chunk.
        index: u64,
        /// The provider's answer.
        status: String,
    },
}

/// What a completed retrieval fetched and paid.
#[derive(Debug, Clone)]
pub struct Retrieved {
    /// The manifest.
    pub manifest: Manifest,
    /// Bytes received and checked.
    pub bytes: u64,
    /// What was paid in all.
    pub paid: TokenAmount,
    /// The lane the payments went on.
    pub lane: Option<u64>,
    /// How long each payment took (voucher made, stored, sent, acknowledged).
    pub payment_latencies: Vec<Duration>,
}

/// The most a client pays for one retrieval: per chunk, and (if set) for the whole blob.
/// Without a total, the whole blob costs at most the chunks times `per_chunk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceLimit {
    /// The most one chunk may cost.
    pub per_chunk: TokenAmount,
    /// The most the whole blob may cost.
    pub total: Option<TokenAmount>,
}

impl PriceLimit {
    /// At most `per_chunk` a chunk, whatever the blob's size.
    pub fn per_chunk(per_chunk: TokenAmount) -> Self {
        PriceLimit { per_chunk, total: None }
    }

    /// Refuses `manifest` when it asks more than this limit allows.
    pub fn check(&self, manifest: &Manifest) -> Result<(), RetrieveError> {
        let asked = &manifest.price_per_chunk;
        if asked > &self.per_chunk {
            return Err(RetrieveError::TooExpensive {
                asked: asked.clone(),
                max: self.per_chunk.clone(),
            });
        }
        if let Some(max) = &self.total {
            let all = asked * manifest.chunks();
            if &all > max {
                return Err(RetrieveError::TooExpensiveInAll { asked: all, max: max.clone() });
            }
        }
        Ok(())
    }
}

/// Attempts at one request the provider answers `RateLimited`, at most.
pub const RATE_LIMITED_ATTEMPTS: u32 = 5;
/// The wait before asking again after a `RateLimited` answer, doubled at each attempt.
pub const RATE_LIMITED_BACKOFF: Duration = Duration::from_millis(50);

/// Retrieves the blob `root` from the payee of `channel`, paying through `payer` no more
/// than `limit` allows; a provider asking more is refused before anything is paid.
#[tracing::instrument(name = "retrieve", level = "debug", skip_all, fields(%channel))]
pub async fn retrieve(
    payer: &Payer,
    channel: Address,
    root: Hash,
    limit: PriceLimit,
) -> Result<Retrieved, RetrieveError> {
    let (peer, addrs) = payer
        .payee_peer(&channel)
        .await
        .map_err(|source| RetrieveError::Pay { index: 0, source })?;
    let net = payer.network();
    let response = ask(net, peer, &addrs, RetrievalRequest::manifest(root)).await?;
    let manifest = match response.manifest {
        Some(manifest) if response.status == RetrievalStatus::Ok as u8 => manifest,
        _ => return Err(refused("the manifest", &response)),
    };
    if manifest.root[..] != root[..] {
        return Err(RetrieveError::BadManifest("its root differs".into()));
    }
    let status = payer
        .manager()
        .status(&channel)
        .await
        .map_err(|e| RetrieveError::Pay { index: 0, source: PayError::Manager(e.into()) })?;
    if manifest.payee != status.to {
        return Err(RetrieveError::BadManifest(format!(
            "it pays {} but the channel pays {}",
            format_address(&manifest.payee, Network::Testnet),
            format_address(&status.to, Network::Testnet)
        )));
    }
    limit.check(&manifest)?;
    let mut flow = [0u8; 16];
    getrandom::getrandom(&mut flow).map_err(|e| RetrieveError::BadManifest(e.to_string()))?;
    let flow = flow.to_vec();
    let result = fetch(payer, channel, root, manifest, &flow, peer, addrs).await;
    // The lane goes back to the pool whatever happened: its cumulative amount is what the
    // payee holds, and the next retrieval continues from it.
    if let Err(e) = payer.end_flow(&channel, &flow).await {
        tracing::warn!(error = %e, "cannot return the retrieval's lane to the pool");
    }
    result
}

async fn fetch(
    payer: &Payer,
    channel: Address,
    root: Hash,
    manifest: Manifest,
    flow: &[u8],
    peer: PeerId,
    addrs: Vec<libp2p::Multiaddr>,
) -> Result<Retrieved, RetrieveError> {
    let net = payer.network();
    let mut retrieved = Retrieved {
        bytes: 0,
        paid: TokenAmount::default(),
        lane: None,
        payment_latencies: Vec::with_capacity(manifest.hashes.len()),
        manifest,
    };
    for (index, expected) in retrieved.manifest.hashes.clone().iter().enumerate() {
        let index = index as u64;
        let request = RetrievalRequest::chunk(root, index, channel, flow.to_vec());
        let response = ask(net, peer, &addrs, request).await?;
        let data = match response.data {
            Some(data) if response.status == RetrievalStatus::Ok as u8 => data,
            _ => return Err(refused(&format!("chunk {index}"), &response)),
        };
        let expected_len = retrieved.manifest.chunk_range(index).map(|r| r.len()).unwrap_or(0);
        if data.len() != expected_len || retrieval::hash(&data) != *expected {
            tracing::warn!(index, "chunk does not match its hash; retrieval stopped unpaid");
            return Err(RetrieveError::BadChunk { index, paid_chunks: index });
        }
        retrieved.bytes += data.len() as u64;
        let price = retrieved.manifest.price_per_chunk.clone();
        if price.is_positive() {
            let started = Instant::now();
            let paid = payer
                .pay(&channel, price.clone(), Some(flow.to_vec()))
                .await
                .map_err(|source| RetrieveError::Pay { index, source })?;
            retrieved.payment_latencies.push(started.elapsed());
            if !paid.response.is_held() {
                let status = paid.response.status().map_or_else(
                    || format!("Unknown({})", paid.response.status),
                    |s| format!("{s:?}"),
                );
                return Err(RetrieveError::PaymentRefused { index, status });
            }
            retrieved.lane = Some(paid.lane);
            retrieved.paid += price;
        }
    }
    Ok(retrieved)
}

/// Sends `request`, asking again (after a growing wait) while the provider answers
/// `RateLimited`, at most [`RATE_LIMITED_ATTEMPTS`] times.
async fn ask(
    net: &crate::network::NetworkClient,
    peer: PeerId,
    addrs: &[libp2p::Multiaddr],
    request: RetrievalRequest,
) -> Result<RetrievalResponse, NetworkError> {
    let mut wait = RATE_LIMITED_BACKOFF;
    let mut attempt = 1;
    loop {
        let response = net.send_retrieval(peer, addrs.to_vec(), request.clone()).await?;
        if response.status() != Some(RetrievalStatus::RateLimited)
            || attempt >= RATE_LIMITED_ATTEMPTS
        {
            return Ok(response);
        }
        tracing::debug!(attempt, "the provider is busy; asking again");
        tokio::time::sleep(wait).await;
        wait *= 2;
        attempt += 1;
    }
}

fn refused(what: &str, response: &RetrievalResponse) -> RetrieveError {
    RetrieveError::Refused {
        what: what.to_owned(),
        status: response
            .status()
            .map_or_else(|| format!("Unknown({})", response.status), |s| s.name().to_owned()),
        message: response.message.clone().unwrap_or_default(),
    }
}

/// Parses a root written as 64 hex digits.
pub fn parse_root(text: &str) -> Result<Hash, RetrieveError> {
    let bytes = hex::decode(text.trim()).map_err(|_| RetrieveError::BadRoot)?;
    Hash::try_from(bytes.as_slice()).map_err(|_| RetrieveError::BadRoot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 256) as u8).collect()
    }

    #[test]
    fn chunks_are_served_only_once_the_earlier_ones_are_paid() {
        let provider = RetrievalProvider::default();
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
        let manifest = provider
            .publish(
                blob(5000),
                1000,
                TokenAmount::from_atto(10),
                Address::new_id(1),
                Faults::default(),
            )
            .unwrap();
        (provider, Hash::try_from(manifest.root.as_slice()).unwrap())
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
        let cheap = provider
            .publish(
                blob(3000),
                1000,
                TokenAmount::from_atto(1),
                Address::new_id(1),
                Faults::default(),
            )
            .unwrap();
        let cheap = Hash::try_from(cheap.root.as_slice()).unwrap();
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

    #[test]
    fn roots_parse_from_hex() {
        assert_eq!(parse_root(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        assert!(parse_root("abc").is_err());
        assert!(parse_root(&"zz".repeat(32)).is_err());
    }
}
