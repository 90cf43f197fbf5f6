//! Paid retrievals over `/paych/retrieval/1.0.0`: the provider's side
//! ([`RetrievalProvider`]: published blobs and what each client has paid) and the client's
//! ([`retrieve`]: fetch the manifest, then each chunk, checking it against its hash and
//! paying for it on the retrieval's flow before asking for the next).
//!
//! The provider learns of payments from the voucher exchange: when the node accepts a
//! voucher that carries a flow reference, [`RetrievalProvider::credit`] adds the accepted
//! delta to what that peer has paid on that channel and flow. Chunk `i` is served once the
//! credit reaches `i × price`. Credits live in memory and are bounded by [`MAX_CREDITS`];
//! published blobs by [`MAX_PUBLISHED_BYTES`]. A provider opened on a directory
//! ([`RetrievalProvider::open`], the daemon's `blobs/`) keeps each blob there as
//! `<root>.data` beside `<root>.meta` and serves them again after a restart.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use paych_core::types::{format_address, Address, Network, TokenAmount};
use paych_protocol::retrieval::{self, Hash, Manifest, RetrievalViolation, HASH_BYTES};
use paych_protocol::{RetrievalRequest, RetrievalResponse, RetrievalStatus};

use crate::network::NetworkError;
use crate::pay::{PayError, Payer};

/// The most bytes all published blobs may take together.
pub const MAX_PUBLISHED_BYTES: usize = 256 << 20;
/// The most (peer, channel, flow) credits kept; payments on new flows beyond it are not
/// credited (their chunks are then refused `PaymentRequired`).
pub const MAX_CREDITS: usize = 65_536;

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

type CreditKey = (PeerId, Address, Vec<u8>);

/// The blobs a node serves and the payments it has received for them.
#[derive(Default)]
pub struct RetrievalProvider {
    dir: Option<PathBuf>,
    blobs: RwLock<HashMap<Hash, Arc<Blob>>>,
    credits: Mutex<HashMap<CreditKey, TokenAmount>>,
}

impl std::fmt::Debug for RetrievalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let blobs = self.blobs.read().map(|b| b.len()).unwrap_or_default();
        f.debug_struct("RetrievalProvider").field("blobs", &blobs).finish_non_exhaustive()
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

    /// Records that `peer` paid `delta` more on `channel` under `flow`.
    pub fn credit(&self, peer: PeerId, channel: Address, flow: &[u8], delta: &TokenAmount) {
        if !delta.is_positive() {
            return;
        }
        let mut credits = self.credits.lock().unwrap_or_else(|e| e.into_inner());
        let key = (peer, channel, flow.to_vec());
        if let Some(paid) = credits.get_mut(&key) {
            *paid += delta;
        } else if credits.len() < MAX_CREDITS {
            credits.insert(key, delta.clone());
        } else {
            tracing::warn!(%peer, "retrieval credits full; payment not credited");
        }
    }

    /// What `peer` has paid on `channel` under `flow`.
    pub fn paid(&self, peer: PeerId, channel: Address, flow: &[u8]) -> TokenAmount {
        let credits = self.credits.lock().unwrap_or_else(|e| e.into_inner());
        credits.get(&(peer, channel, flow.to_vec())).cloned().unwrap_or_default()
    }

    /// The answer to `request` from `peer`.
    pub fn answer(&self, peer: PeerId, request: &RetrievalRequest) -> RetrievalResponse {
        let Ok(root) = Hash::try_from(request.root.as_slice()) else {
            return RetrievalResponse::refused(
                RetrievalStatus::Malformed,
                "the root is not 32 bytes",
            );
        };
        let blob = {
            let blobs = self.blobs.read().unwrap_or_else(|e| e.into_inner());
            blobs.get(&root).cloned()
        };
        let Some(blob) = blob else {
            return RetrievalResponse::refused(RetrievalStatus::NotFound, "no blob with this root");
        };
        let Some(index) = request.index else {
            return RetrievalResponse::manifest(blob.manifest.clone());
        };
        let Some(channel) = request.channel else {
            return RetrievalResponse::refused(
                RetrievalStatus::Malformed,
                "a chunk request must name the channel it is paid on",
            );
        };
        let Some(range) = blob.manifest.chunk_range(index) else {
            return RetrievalResponse::refused(
                RetrievalStatus::BadIndex,
                format!("the blob has {} chunks", blob.manifest.chunks()),
            );
        };
        let due = &blob.manifest.price_per_chunk * index;
        let paid = self.paid(peer, channel, &request.flow);
        if paid < due {
            return RetrievalResponse::refused(
                RetrievalStatus::PaymentRequired,
                format!(
                    "chunk {index} needs {} attoFIL paid on this channel and flow; {} received",
                    due.atto(),
                    paid.atto()
                ),
            );
        }
        let mut data = blob.data.get(range).map(<[u8]>::to_vec).unwrap_or_default();
        if blob.faults.corrupt_chunk == Some(index) {
            if let Some(first) = data.first_mut() {
                *first ^= 0xff;
            }
        }
        RetrievalResponse::chunk(data)
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
    #[error("the provider asks {asked} attoFIL per chunk; at most {max} was accepted")]
    TooExpensive {
        /// Its price.
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

/// Retrieves the blob `root` from the payee of `channel`, paying through `payer` at most
/// `max_price` per chunk (any price when `None`).
#[tracing::instrument(name = "retrieve", level = "debug", skip_all, fields(%channel))]
pub async fn retrieve(
    payer: &Payer,
    channel: Address,
    root: Hash,
    max_price: Option<TokenAmount>,
) -> Result<Retrieved, RetrieveError> {
    let (peer, addrs) = payer
        .payee_peer(&channel)
        .await
        .map_err(|source| RetrieveError::Pay { index: 0, source })?;
    let net = payer.network();
    let response =
        net.send_retrieval(peer, addrs.clone(), RetrievalRequest::manifest(root)).await?;
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
        .map_err(|e| RetrieveError::Pay { index: 0, source: PayError::Manager(e) })?;
    if manifest.payee != status.to {
        return Err(RetrieveError::BadManifest(format!(
            "it pays {} but the channel pays {}",
            format_address(&manifest.payee, Network::Testnet),
            format_address(&status.to, Network::Testnet)
        )));
    }
    if let Some(max) = max_price {
        if manifest.price_per_chunk > max {
            return Err(RetrieveError::TooExpensive { asked: manifest.price_per_chunk, max });
        }
    }
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
        let response = net.send_retrieval(peer, addrs.clone(), request).await?;
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

    #[test]
    fn roots_parse_from_hex() {
        assert_eq!(parse_root(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        assert!(parse_root("abc").is_err());
        assert!(parse_root(&"zz".repeat(32)).is_err());
    }
}
