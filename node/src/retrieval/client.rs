//! The client's side of paid retrievals over `/paych/retrieval/1.0.0` ([`retrieve`]): fetch
//! the manifest, then each chunk, checking it against its hash and paying for it on the
//! retrieval's flow (through the node's [`Payer`]) before asking for the next, never above
//! the client's [`PriceLimit`]. A chunk that does not match its hash stops the retrieval
//! unpaid. It never serves anything: that is [`super::provider`].

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
    let result = fetch(payer, channel, root, manifest, &flow, peer, addrs, started).await;
    // The lane goes back to the pool whatever happened: its cumulative amount is what the
    // payee holds, and the next retrieval continues from it.
    if let Err(e) = payer.end_flow(&channel, &flow).await {
        tracing::warn!(error = %e, "cannot return the retrieval's lane to the pool");
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn fetch(
    payer: &Payer,
    channel: Address,
    root: Hash,
    manifest: Manifest,
    flow: &[u8],
    peer: PeerId,
    addrs: Vec<libp2p::Multiaddr>,
    started: Instant,
) -> Result<Retrieved, RetrieveError> {
    let net = payer.network();
    let mut retrieved = Retrieved {
        first_byte: None,
        elapsed: Duration::ZERO,
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
        retrieved.first_byte.get_or_insert_with(|| started.elapsed());
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
    retrieved.elapsed = started.elapsed();
    Ok(retrieved)
}

/// Sends `request`, asking again (after a growing wait) while the provider answers
/// `RateLimited`, at most [`RATE_LIMITED_ATTEMPTS`] times.
async fn ask(
    net: &NetworkClient,
    peer: PeerId,
    addrs: &[libp2p::Multiaddr],
    request: RetrievalRequest,
) -> Result<RetrievalResponse, NetworkError> {
    let mut wait = RATE_LIMITED_BACKOFF;
    let mut attempt = 1;
    loop {
        let response = net.ask(peer, addrs.to_vec(), request.clone()).await?;
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

    #[test]
    fn roots_parse_from_hex() {
        assert_eq!(parse_root(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        assert!(parse_root("abc").is_err());
        assert!(parse_root(&"zz".repeat(32)).is_err());
    }
}
