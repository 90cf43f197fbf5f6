//! The client's side of paid retrievals over `/paych/retrieval/2.0.0` ([`retrieve`]): fetch
//! the manifest, then the chunks with several requests in flight ([`pipeline_depth`]),
//! checking each against its hash and paying for the checked chunks in order on the
//! retrieval's flow (through the node's [`Payer`]) while more arrive — never above the
//! client's [`PriceLimit`], and never for a chunk that failed its hash, which stops the
//! retrieval. Requests stay inside the provider's credit window, counted from acknowledged
//! payments. It never serves anything: that is [`super::provider`].

use std::time::{Duration, Instant};

use libp2p::PeerId;
use paych_core::types::{format_address, Address, TokenAmount};
use paych_protocol::retrieval::{self, Hash, Manifest};
use paych_protocol::{RetrievalRequest, RetrievalResponse, RetrievalStatus};

use crate::network::{NetworkClient, NetworkError};
use crate::pay::{PayError, Payer};

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
    /// From the call to the first chunk checked against its hash (the manifest's round trip
    /// included); `None` for a blob without chunks.
    pub first_byte: Option<Duration>,
    /// From the call to the last chunk checked and paid for.
    pub elapsed: Duration,
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
#[tracing::instrument(
    name = "retrieve",
    level = "debug",
    skip_all,
    fields(channel = %format_address(&channel, payer.manager().network()))
)]
pub async fn retrieve(
    payer: &Payer,
    channel: Address,
    root: Hash,
    limit: PriceLimit,
) -> Result<Retrieved, RetrieveError> {
    let started = Instant::now();
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
            format_address(&manifest.payee, payer.manager().network()),
            format_address(&status.to, payer.manager().network())
        )));
    }
    limit.check(&manifest)?;
    let mut flow = [0u8; 16];
    getrandom::getrandom(&mut flow).map_err(|e| RetrieveError::BadManifest(e.to_string()))?;
    let flow = flow.to_vec();
    let window = response.window;
    let result = fetch(payer, channel, root, manifest, window, &flow, peer, addrs, started).await;
    // The lane goes back to the pool whatever happened: its cumulative amount is what the
    // payee holds, and the next retrieval continues from it.
    if let Err(e) = payer.end_flow(&channel, &flow).await {
        tracing::warn!(error = %e, "cannot return the retrieval's lane to the pool");
    }
    result
}

/// Chunk requests a client keeps in flight at most.
pub const PIPELINE_REQUESTS: usize = 16;
/// Bytes of chunks a client keeps requested and not yet received, at most (at least one
/// chunk is always in flight).
pub const PIPELINE_BYTES: u64 = 4 << 20;
/// Times one chunk is asked again after a `PaymentRequired` answer (once the payment in
/// flight is answered) before the retrieval fails.
pub const PAYMENT_REQUIRED_ATTEMPTS: u32 = 3;

/// A voucher pays for at least this fraction of the credit window (`window / PAY_PER_WINDOW`
/// bytes of checked chunks), unless the window holds a request back or the retrieval is
/// done first: fewer vouchers, each still well inside the window.
pub const PAY_PER_WINDOW: u64 = 4;

/// Chunk requests a retrieval of `chunk_size`-byte chunks keeps in flight.
pub fn pipeline_depth(chunk_size: u64) -> usize {
    let by_bytes = PIPELINE_BYTES.checked_div(chunk_size).unwrap_or(1).max(1);
    usize::try_from(by_bytes).unwrap_or(usize::MAX).min(PIPELINE_REQUESTS)
}

type Pending<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A payment in flight: the chunks it pays for, when it started, and its outcome.
type Payment = (u64, Instant, Result<crate::pay::Paid, PayError>);

/// Fetches every chunk of `manifest` with up to [`pipeline_depth`] requests in flight, checks
/// each against its hash, and pays for the checked chunks in order on the flow's lane — one
/// voucher in flight at a time, each covering every chunk checked since the last and sent
/// once those are worth [`PAY_PER_WINDOW`]th of the window (or the window holds a request
/// back) — without waiting for a payment's answer before asking for more. Requests stay inside the
/// provider's credit window, counted from the payments it acknowledged (a provider credits
/// a payment before it answers it).
#[allow(clippy::too_many_arguments)]
async fn fetch(
    payer: &Payer,
    channel: Address,
    root: Hash,
    manifest: Manifest,
    window: Option<u64>,
    flow: &[u8],
    peer: PeerId,
    addrs: Vec<libp2p::Multiaddr>,
    started: Instant,
) -> Result<Retrieved, RetrieveError> {
    use futures::stream::{FuturesUnordered, StreamExt as _};

    let net = payer.network();
    let depth = pipeline_depth(manifest.chunk_size);
    let mut progress = Progress::new(manifest, window, started);
    let addrs = &addrs;
    let mut requests: FuturesUnordered<
        Pending<'_, (u64, Result<RetrievalResponse, NetworkError>)>,
    > = FuturesUnordered::new();
    let mut paying: Option<Pending<'_, Payment>> = None;
    loop {
        // Ask for more, inside the pipeline and the credit window.
        let mut stalled = false;
        while requests.len() < depth {
            let index = match progress.next_request(paying.is_some()) {
                Next::Ask(index) => index,
                Next::Stalled => {
                    stalled = true;
                    break;
                }
                Next::Nothing => break,
            };
            let request = RetrievalRequest::chunk(root, index, channel, flow.to_vec());
            requests.push(Box::pin(async move { (index, ask(net, peer, addrs, request).await) }));
        }
        if paying.is_none() {
            if let Some(n) = progress.payment_due(stalled, requests.is_empty()) {
                let amount = &progress.price * n;
                let flow = flow.to_vec();
                paying = Some(Box::pin(async move {
                    let at = Instant::now();
                    (n, at, payer.pay(&channel, amount, Some(flow)).await)
                }));
            }
        }
        if requests.is_empty() && paying.is_none() {
            break;
        }
        tokio::select! {
            Some((index, answer)) = requests.next(), if !requests.is_empty() => {
                progress.on_answer(index, answer);
            }
            (n, at, outcome) = poll_some(&mut paying), if paying.is_some() => {
                paying = None;
                progress.on_payment(n, at, outcome);
            }
        }
    }
    progress.finish()
}

/// What a retrieval asks for next.
enum Next {
    /// This chunk.
    Ask(u64),
    /// Nothing until a payment is answered: the credit window, or a chunk asked again.
    Stalled,
    /// Nothing more (every chunk asked for, or the retrieval failed).
    Nothing,
}

/// A pipelined retrieval's state, apart from its requests and payment in flight.
struct Progress {
    retrieved: Retrieved,
    price: TokenAmount,
    started: Instant,
    /// The provider's credit window, as it last said.
    window: u64,
    /// The next chunk never asked for; chunks to ask again; attempts per chunk asked again.
    next: u64,
    again: std::collections::VecDeque<u64>,
    attempts: std::collections::HashMap<u64, u32>,
    /// Chunks checked beyond the checked prefix `[0, prefix)`.
    checked: std::collections::BTreeSet<u64>,
    prefix: u64,
    /// Chunks paid for and acknowledged.
    paid_chunks: u64,
    failure: Option<RetrieveError>,
}

impl Progress {
    fn new(manifest: Manifest, window: Option<u64>, started: Instant) -> Self {
        Progress {
            price: manifest.price_per_chunk.clone(),
            window: window.unwrap_or(manifest.chunk_size),
            retrieved: Retrieved {
                first_byte: None,
                elapsed: Duration::ZERO,
                bytes: 0,
                paid: TokenAmount::default(),
                lane: None,
                payment_latencies: Vec::new(),
                manifest,
            },
            started,
            next: 0,
            again: Default::default(),
            attempts: Default::default(),
            checked: Default::default(),
            prefix: 0,
            paid_chunks: 0,
            failure: None,
        }
    }

    fn chunks(&self) -> u64 {
        self.retrieved.manifest.chunks()
    }

    fn chunk_size(&self) -> u64 {
        self.retrieved.manifest.chunk_size
    }

    /// The next chunk to ask for, while `paying` is whether a payment is in flight.
    fn next_request(&mut self, paying: bool) -> Next {
        if self.failure.is_some() {
            return Next::Nothing;
        }
        let index = match self.again.front() {
            // A chunk asked again waits until the payment in flight is answered.
            Some(_) if paying => return Next::Stalled,
            Some(&index) => index,
            None if self.next < self.chunks() => self.next,
            None => return Next::Nothing,
        };
        let window = retrieval::window_chunks(self.window, self.chunk_size());
        if self.price.is_positive() && index >= self.paid_chunks.saturating_add(window) {
            return Next::Stalled;
        }
        if self.again.front() == Some(&index) {
            self.again.pop_front();
        } else {
            self.next += 1;
        }
        Next::Ask(index)
    }

    /// The chunks to pay for now, if any: every chunk checked and not yet paid for, once
    /// they are worth a share of the window, or the window holds a request back, or
    /// nothing else is left to wait for.
    fn payment_due(&self, stalled: bool, nothing_in_flight: bool) -> Option<u64> {
        let payable = self.failure.as_ref().is_none_or(|f| !f.is_payment_failure());
        let owed = self.prefix.saturating_sub(self.paid_chunks);
        let due = stalled
            || self.prefix == self.chunks()
            || self.failure.is_some()
            || nothing_in_flight
            || owed.saturating_mul(self.chunk_size()) >= self.window / PAY_PER_WINDOW;
        (self.price.is_positive() && payable && due && owed > 0).then_some(owed)
    }

    /// Takes the provider's answer to the request for chunk `index`.
    fn on_answer(&mut self, index: u64, answer: Result<RetrievalResponse, NetworkError>) {
        let response = match answer {
            Ok(response) => response,
            Err(e) => {
                self.failure.get_or_insert(RetrieveError::Network(e));
                return;
            }
        };
        if let Some(window) = response.window {
            self.window = window;
        }
        let status = response.status();
        let data = match response.data {
            Some(data) if status == Some(RetrievalStatus::Ok) => data,
            _ if status == Some(RetrievalStatus::PaymentRequired) => {
                let tried = self.attempts.entry(index).or_default();
                *tried += 1;
                if *tried > PAYMENT_REQUIRED_ATTEMPTS {
                    self.failure.get_or_insert(refused(&format!("chunk {index}"), &response));
                } else {
                    tracing::debug!(index, "payment required; asking again once paid");
                    self.again.push_back(index);
                }
                return;
            }
            _ => {
                self.failure.get_or_insert(refused(&format!("chunk {index}"), &response));
                return;
            }
        };
        let manifest = &self.retrieved.manifest;
        let expected_len = manifest.chunk_range(index).map(|r| r.len()).unwrap_or(0);
        let expected = manifest.hashes.get(usize::try_from(index).unwrap_or(usize::MAX));
        if data.len() != expected_len || expected != Some(&retrieval::hash(&data)) {
            tracing::warn!(index, "chunk does not match its hash; retrieval stopped");
            let earlier = self.failure.as_ref().and_then(RetrieveError::bad_chunk);
            if earlier.is_none_or(|i| index < i) {
                self.failure = Some(RetrieveError::BadChunk { index, paid_chunks: 0 });
            }
            return;
        }
        self.retrieved.bytes += data.len() as u64;
        let started = self.started;
        self.retrieved.first_byte.get_or_insert_with(|| started.elapsed());
        self.checked.insert(index);
        // Chunks are paid for in order: extend the checked prefix.
        while self.checked.remove(&self.prefix) {
            self.prefix += 1;
        }
    }

    /// Takes the outcome of the payment for `n` chunks begun at `at`.
    fn on_payment(&mut self, n: u64, at: Instant, outcome: Result<crate::pay::Paid, PayError>) {
        let index = self.paid_chunks;
        match outcome {
            Err(source) => self.failure = Some(RetrieveError::Pay { index, source }),
            Ok(paid) if !paid.response.is_held() => {
                let status = paid.response.status().map_or_else(
                    || format!("Unknown({})", paid.response.status),
                    |s| format!("{s:?}"),
                );
                self.failure = Some(RetrieveError::PaymentRefused { index, status });
            }
            Ok(paid) => {
                self.retrieved.payment_latencies.push(at.elapsed());
                self.retrieved.lane = Some(paid.lane);
                self.retrieved.paid += &self.price * n;
                self.paid_chunks += n;
            }
        }
    }

    /// The retrieval, or why it failed.
    fn finish(mut self) -> Result<Retrieved, RetrieveError> {
        self.retrieved.elapsed = self.started.elapsed();
        let paid_blob = self.price.is_positive();
        match self.failure {
            Some(RetrieveError::BadChunk { index, .. }) => Err(RetrieveError::BadChunk {
                index,
                paid_chunks: if paid_blob { self.paid_chunks } else { self.prefix },
            }),
            Some(failure) => Err(failure),
            None if self.prefix < self.chunks() => Err(RetrieveError::Refused {
                what: format!("chunk {}", self.prefix),
                status: RetrievalStatus::PaymentRequired.name().to_owned(),
                message: "the provider's credit window did not open".to_owned(),
            }),
            None => Ok(self.retrieved),
        }
    }
}

/// Awaits the future in `slot` (the caller checks there is one; none never completes).
async fn poll_some<T>(slot: &mut Option<Pending<'_, T>>) -> T {
    match slot {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

impl RetrieveError {
    /// Whether paying failed (so nothing more is paid).
    fn is_payment_failure(&self) -> bool {
        matches!(self, RetrieveError::Pay { .. } | RetrieveError::PaymentRefused { .. })
    }

    /// The chunk that failed its hash, if that is the failure.
    fn bad_chunk(&self) -> Option<u64> {
        match self {
            RetrieveError::BadChunk { index, .. } => Some(*index),
            _ => None,
        }
    }
}

/// Sends `request`, asking again (after a growing wait) while the provider answers
/// `RateLimited` or the connection has no retrieval stream left for it, at most
/// [`RATE_LIMITED_ATTEMPTS`] times.
async fn ask(
    net: &NetworkClient,
    peer: PeerId,
    addrs: &[libp2p::Multiaddr],
    request: RetrievalRequest,
) -> Result<RetrievalResponse, NetworkError> {
    let mut wait = RATE_LIMITED_BACKOFF;
    let mut attempt = 1;
    loop {
        let response = match net.ask(peer, addrs.to_vec(), request.clone()).await {
            // The connection's retrieval streams are all in use (other retrievals from
            // this node to the same provider): nothing was sent; wait as for RateLimited.
            Err(NetworkError::StreamsExhausted { .. }) if attempt < RATE_LIMITED_ATTEMPTS => None,
            other => Some(other?),
        };
        match response {
            Some(response)
                if response.status() != Some(RetrievalStatus::RateLimited)
                    || attempt >= RATE_LIMITED_ATTEMPTS =>
            {
                return Ok(response)
            }
            _ => {}
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

    #[test]
    fn roots_parse_from_hex() {
        assert_eq!(parse_root(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        assert!(parse_root("abc").is_err());
        assert!(parse_root(&"zz".repeat(32)).is_err());
    }
}
