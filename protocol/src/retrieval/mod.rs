//! `/paych/retrieval/2.0.0`: a paid transfer of a blob in chunks, with a credit window.
//!
//! A provider publishes a blob as a [`Manifest`]: the blob's size, its chunk size, the
//! BLAKE2b-256 hash of every chunk, the price of one chunk and the address payments go to.
//! The blob is named by its **root**, the BLAKE2b-256 hash of the concatenated chunk
//! hashes ([`root_of`]), so a client that knows the root can check the manifest, and with it
//! every chunk, before paying for anything.
//!
//! The client first asks for the manifest (a request without an index), then for chunks,
//! naming its payment channel and the flow reference its vouchers carry on
//! `/paych/voucher/1.0.0`, with several requests in flight. The provider serves chunk `i`
//! only while `i < paid_chunks + window_chunks`, where `paid_chunks` is what the vouchers it
//! accepted from that peer on that channel and flow add up to, in whole chunks, and
//! `window_chunks` is the flow's **credit window** in whole chunks ([`window_chunks`]):
//! what it sends ahead of payment. Every answer tells the client the window in bytes
//! ([`RetrievalResponse::window`]); the window starts small and grows as the client pays,
//! so the provider never has more than the window's worth delivered and unpaid. A client
//! that stops paying stops receiving ([`RetrievalStatus::PaymentRequired`]); a chunk whose
//! hash does not match the manifest is never paid for.
//!
//! CBOR layouts (tuple encoding, like the other paych messages):
//!
//! - request: `[root: bytes(32), index: uint | null, channel: address | null, flow: bytes]`
//!   (`index` null asks for the manifest);
//! - response: `[status: uint, manifest: Manifest | null, data: bytes | null,
//!   message: text | null, window: uint | null]`;
//! - manifest: `[root: bytes(32), size: uint, chunk_size: uint, hashes: [bytes(32)],
//!   price_per_chunk: amount, payee: address]`.
//!
//! Every bound ([`MAX_CHUNK_BYTES`], [`MAX_CHUNKS`], [`MAX_FLOW_BYTES`],
//! [`MAX_STATUS_MESSAGE_BYTES`], [`MAX_WINDOW_BYTES`]) and every consistency rule (a
//! manifest's root is the root of its hashes; its chunk count is the size divided by the
//! chunk size, rounded up; a response's body matches its status) is checked when encoding
//! and when decoding.

use fvm_ipld_encoding::tuple::*;
use ipld_core::ipld::Ipld;
use paych_core::types::{Address, TokenAmount};
use serde::Serializer;

pub(crate) mod rules;

pub use rules::{RetrievalViolation, HASH_BYTES, MAX_CHUNKS, MAX_CHUNK_BYTES, MAX_WINDOW_BYTES};

use crate::messages::{
    check_message, field, opt_bytes, truncate_message, wire_message, wire_tuple, DecodeError,
    EncodeError, FromWire, RuleViolation, MAX_FLOW_BYTES,
};

/// The most bytes a retrieval request may take on the wire.
pub const RETRIEVAL_REQUEST_MAX_BYTES: usize = 512;
/// The most bytes a retrieval response may take on the wire: the largest chunk or the
/// largest manifest, with room for the envelope.
pub const RETRIEVAL_RESPONSE_MAX_BYTES: usize = (MAX_CHUNK_BYTES as usize) + 4096;
/// The most CBOR data items a retrieval request may hold.
pub const RETRIEVAL_REQUEST_MAX_ITEMS: usize = 16;
/// The most CBOR data items a retrieval response may hold (a manifest's hashes dominate).
pub const RETRIEVAL_RESPONSE_MAX_ITEMS: usize = MAX_CHUNKS + 32;

/// A BLAKE2b-256 hash.
pub type Hash = [u8; HASH_BYTES];

/// The BLAKE2b-256 hash of `bytes`.
pub fn hash(bytes: &[u8]) -> Hash {
    paych_core::crypto::hash::blake2b(bytes)
}

/// A credit window of `window` bytes, in whole chunks of `chunk_size` bytes: never less
/// than one, so a window always lets the chunk after the paid ones through.
pub fn window_chunks(window: u64, chunk_size: u64) -> u64 {
    window.checked_div(chunk_size).unwrap_or(0).max(1)
}

/// The root of a blob: the BLAKE2b-256 hash of its chunk hashes, concatenated in order.
pub fn root_of(hashes: &[Hash]) -> Hash {
    let mut state = blake2b_simd::Params::new().hash_length(HASH_BYTES).to_state();
    for h in hashes {
        state.update(h);
    }
    let mut out = [0u8; HASH_BYTES];
    out.copy_from_slice(state.finalize().as_bytes());
    out
}

impl From<RetrievalViolation> for DecodeError {
    fn from(v: RetrievalViolation) -> Self {
        DecodeError::Rule(RuleViolation::Retrieval(v))
    }
}

impl From<RetrievalViolation> for EncodeError {
    fn from(v: RetrievalViolation) -> Self {
        EncodeError::Rule(RuleViolation::Retrieval(v))
    }
}

/// What a provider answers to a retrieval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RetrievalStatus {
    /// The manifest or the chunk asked for.
    Ok = 0,
    /// The provider holds no blob with this root.
    NotFound = 1,
    /// The chunks before this one are not paid for yet on this channel and flow.
    PaymentRequired = 2,
    /// The index is past the blob's last chunk.
    BadIndex = 3,
    /// The request breaks a rule (no channel with a chunk request, say).
    Malformed = 4,
    /// The peer has too many requests in flight.
    RateLimited = 5,
    /// The provider failed; trying again may work.
    Internal = 6,
}

impl RetrievalStatus {
    /// Every status, in code order.
    pub const ALL: [RetrievalStatus; 7] = [
        RetrievalStatus::Ok,
        RetrievalStatus::NotFound,
        RetrievalStatus::PaymentRequired,
        RetrievalStatus::BadIndex,
        RetrievalStatus::Malformed,
        RetrievalStatus::RateLimited,
        RetrievalStatus::Internal,
    ];

    /// The status with wire code `code`, if this version knows it.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// Its name, as the API and logs print it.
    pub fn name(self) -> &'static str {
        match self {
            RetrievalStatus::Ok => "Ok",
            RetrievalStatus::NotFound => "NotFound",
            RetrievalStatus::PaymentRequired => "PaymentRequired",
            RetrievalStatus::BadIndex => "BadIndex",
            RetrievalStatus::Malformed => "Malformed",
            RetrievalStatus::RateLimited => "RateLimited",
            RetrievalStatus::Internal => "Internal",
        }
    }
}

/// A blob as its provider describes it.
///
/// CBOR: `[root, size, chunk_size, hashes, price_per_chunk, payee]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct Manifest {
    /// [`root_of`] the hashes.
    #[serde(with = "fvm_ipld_encoding::strict_bytes")]
    pub root: Vec<u8>,
    /// The blob's size in bytes.
    pub size: u64,
    /// Every chunk but the last has this many bytes.
    pub chunk_size: u64,
    /// The BLAKE2b-256 hash of each chunk, in order.
    #[serde(serialize_with = "serialize_hashes")]
    pub hashes: Vec<Hash>,
    /// What one chunk costs.
    pub price_per_chunk: TokenAmount,
    /// Who is paid: the `to` of the client's channel.
    pub payee: Address,
}

impl Manifest {
    /// The manifest of `blob` cut into chunks of `chunk_size` bytes.
    pub fn of(
        blob: &[u8],
        chunk_size: u64,
        price_per_chunk: TokenAmount,
        payee: Address,
    ) -> Result<Self, RetrievalViolation> {
        if chunk_size == 0 || chunk_size > MAX_CHUNK_BYTES {
            return Err(RetrievalViolation::ChunkSize(chunk_size));
        }
        let hashes: Vec<Hash> = blob.chunks(chunk_size as usize).map(hash).collect();
        let manifest = Manifest {
            root: root_of(&hashes).to_vec(),
            size: blob.len() as u64,
            chunk_size,
            hashes,
            price_per_chunk,
            payee,
        };
        manifest.check()?;
        Ok(manifest)
    }

    /// The number of chunks.
    pub fn chunks(&self) -> u64 {
        self.hashes.len() as u64
    }

    /// The byte range of chunk `index` within the blob, if it exists.
    pub fn chunk_range(&self, index: u64) -> Option<std::ops::Range<usize>> {
        if index >= self.chunks() {
            return None;
        }
        let start = index.checked_mul(self.chunk_size)?;
        let end = start.checked_add(self.chunk_size)?.min(self.size);
        Some(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }

    /// Checks the bounds and that the root, size and hashes agree.
    pub fn check(&self) -> Result<(), RetrievalViolation> {
        if self.root.len() != HASH_BYTES {
            return Err(RetrievalViolation::HashLength { what: "root", len: self.root.len() });
        }
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_BYTES {
            return Err(RetrievalViolation::ChunkSize(self.chunk_size));
        }
        if self.hashes.len() > MAX_CHUNKS {
            return Err(RetrievalViolation::TooManyChunks(self.hashes.len()));
        }
        let expected = self.size.div_ceil(self.chunk_size);
        if expected != self.hashes.len() as u64 {
            return Err(RetrievalViolation::ChunkCount {
                size: self.size,
                chunk_size: self.chunk_size,
                expected,
                found: self.hashes.len(),
            });
        }
        if self.price_per_chunk.is_negative() {
            return Err(RetrievalViolation::NegativePrice);
        }
        if root_of(&self.hashes)[..] != self.root[..] {
            return Err(RetrievalViolation::RootMismatch);
        }
        Ok(())
    }
}

/// A client's request: the manifest of a blob, or one of its chunks.
///
/// CBOR: `[root, index, channel, flow]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct RetrievalRequest {
    /// The blob's root.
    #[serde(with = "fvm_ipld_encoding::strict_bytes")]
    pub root: Vec<u8>,
    /// The chunk wanted; `None` asks for the manifest.
    pub index: Option<u64>,
    /// The channel the client pays on (required with an index).
    pub channel: Option<Address>,
    /// The flow reference the client's vouchers carry, at most [`MAX_FLOW_BYTES`].
    #[serde(with = "fvm_ipld_encoding::strict_bytes")]
    pub flow: Vec<u8>,
}

impl RetrievalRequest {
    /// A request for the manifest of `root`.
    pub fn manifest(root: Hash) -> Self {
        RetrievalRequest { root: root.to_vec(), index: None, channel: None, flow: Vec::new() }
    }

    /// A request for chunk `index` of `root`, paid on `channel` under `flow`.
    pub fn chunk(root: Hash, index: u64, channel: Address, flow: Vec<u8>) -> Self {
        RetrievalRequest { root: root.to_vec(), index: Some(index), channel: Some(channel), flow }
    }

    fn check(&self) -> Result<(), RuleViolation> {
        if self.root.len() != HASH_BYTES {
            return Err(RuleViolation::Retrieval(RetrievalViolation::HashLength {
                what: "root",
                len: self.root.len(),
            }));
        }
        if self.flow.len() > MAX_FLOW_BYTES {
            return Err(RuleViolation::FlowTooLong(self.flow.len()));
        }
        Ok(())
    }
}

/// A provider's answer.
///
/// CBOR: `[status, manifest, data, message, window]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct RetrievalResponse {
    /// A [`RetrievalStatus`] code.
    pub status: u8,
    /// The manifest, when asked for and found.
    pub manifest: Option<Manifest>,
    /// The chunk's bytes, when asked for and paid.
    #[serde(with = "opt_bytes")]
    pub data: Option<Vec<u8>>,
    /// A human-readable explanation, at most [`MAX_STATUS_MESSAGE_BYTES`].
    pub message: Option<String>,
    /// The flow's credit window now, in bytes (at most [`MAX_WINDOW_BYTES`]): how far ahead
    /// of the payments credited to the flow the provider serves ([`window_chunks`]). With a
    /// manifest, the window a new flow starts with; `None` for a free blob or a refusal that
    /// names no flow.
    pub window: Option<u64>,
}

impl RetrievalResponse {
    /// The manifest.
    pub fn manifest(manifest: Manifest) -> Self {
        RetrievalResponse {
            status: RetrievalStatus::Ok as u8,
            manifest: Some(manifest),
            data: None,
            message: None,
            window: None,
        }
    }

    /// A chunk.
    pub fn chunk(data: Vec<u8>) -> Self {
        RetrievalResponse {
            status: RetrievalStatus::Ok as u8,
            manifest: None,
            data: Some(data),
            message: None,
            window: None,
        }
    }

    /// A refusal with an explanation, cut to [`MAX_STATUS_MESSAGE_BYTES`].
    pub fn refused(status: RetrievalStatus, message: impl Into<String>) -> Self {
        RetrievalResponse {
            status: status as u8,
            manifest: None,
            data: None,
            message: Some(truncate_message(message.into())),
            window: None,
        }
    }

    /// The same answer, telling the client the flow's credit window of `bytes`.
    pub fn with_window(mut self, bytes: u64) -> Self {
        self.window = Some(bytes);
        self
    }

    /// The status, if its code is one this version knows.
    pub fn status(&self) -> Option<RetrievalStatus> {
        RetrievalStatus::from_code(self.status)
    }

    fn check(&self) -> Result<(), RuleViolation> {
        check_message(&self.message)?;
        if let Some(window) = self.window {
            if window > MAX_WINDOW_BYTES {
                return Err(RuleViolation::Retrieval(RetrievalViolation::WindowTooLarge(window)));
            }
        }
        if let Some(manifest) = &self.manifest {
            manifest.check().map_err(RuleViolation::Retrieval)?;
        }
        if let Some(data) = &self.data {
            if data.len() as u64 > MAX_CHUNK_BYTES {
                return Err(RuleViolation::Retrieval(RetrievalViolation::ChunkTooLarge(
                    data.len(),
                )));
            }
        }
        let ok = self.status == RetrievalStatus::Ok as u8;
        let bodies = usize::from(self.manifest.is_some()) + usize::from(self.data.is_some());
        if (ok && bodies != 1) || (!ok && bodies != 0) {
            return Err(RuleViolation::Retrieval(RetrievalViolation::BodyMismatch(self.status)));
        }
        Ok(())
    }
}

wire_message!(RetrievalRequest, "retrieval request");
wire_message!(RetrievalResponse, "retrieval response");

wire_tuple!(RetrievalRequest as "retrieval_request" {
    root: |item, what| field::bytes(item, what).map(<[u8]>::to_vec),
    index: |item, what| field::optional(item).map(|i| field::u64(i, what)).transpose(),
    channel: |item, what| field::optional(item).map(|a| field::address(a, what)).transpose(),
    flow: |item, what| field::bytes(item, what).map(<[u8]>::to_vec),
});

wire_tuple!(RetrievalResponse as "retrieval_response" {
    status: field::u8,
    manifest: |item, _| field::optional(item).map(Manifest::from_wire).transpose(),
    data: |item, what| {
        field::optional(item).map(|d| field::bytes(d, what).map(<[u8]>::to_vec)).transpose()
    },
    message: field::optional_text,
    window: |item, what| field::optional(item).map(|w| field::u64(w, what)).transpose(),
});

impl FromWire for Manifest {
    fn from_wire(ipld: &Ipld) -> Result<Self, DecodeError> {
        let f = field::tuple(ipld, "manifest", 6)?;
        let items = field::list(&f[3], "manifest.hashes")?;
        if items.len() > MAX_CHUNKS {
            return Err(RetrievalViolation::TooManyChunks(items.len()).into());
        }
        let hashes = items
            .iter()
            .map(|h| {
                let bytes = field::bytes(h, "manifest.hashes")?;
                Hash::try_from(bytes).map_err(|_| {
                    DecodeError::from(RetrievalViolation::HashLength {
                        what: "manifest.hashes",
                        len: bytes.len(),
                    })
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let manifest = Manifest {
            root: field::bytes(&f[0], "manifest.root")?.to_vec(),
            size: field::u64(&f[1], "manifest.size")?,
            chunk_size: field::u64(&f[2], "manifest.chunk_size")?,
            hashes,
            price_per_chunk: field::amount(&f[4], "manifest.price_per_chunk")?,
            payee: field::address(&f[5], "manifest.payee")?,
        };
        manifest.check()?;
        Ok(manifest)
    }
}

/// Serializes the chunk hashes as a CBOR array of byte strings.
fn serialize_hashes<S: Serializer>(hashes: &[Hash], s: S) -> Result<S::Ok, S::Error> {
    struct Bytes<'a>(&'a [u8]);
    impl serde::Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    s.collect_seq(hashes.iter().map(|h| Bytes(h)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payee() -> Address {
        Address::new_id(1001)
    }

    #[test]
    fn manifests_round_trip_and_check_their_root() {
        let blob: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        let manifest = Manifest::of(&blob, 1000, TokenAmount::from_atto(7), payee()).unwrap();
        assert_eq!(manifest.chunks(), 3);
        assert_eq!(manifest.chunk_range(2), Some(2000..2500));
        assert_eq!(manifest.chunk_range(3), None);
        let response = RetrievalResponse::manifest(manifest.clone());
        let bytes = response.to_cbor().unwrap();
        assert_eq!(RetrievalResponse::from_cbor(&bytes).unwrap(), response);

        let mut forged = manifest;
        forged.hashes[1][0] ^= 1;
        assert_eq!(forged.check(), Err(RetrievalViolation::RootMismatch));
        let forged = RetrievalResponse {
            status: 0,
            manifest: Some(forged),
            data: None,
            message: None,
            window: None,
        };
        let bytes = fvm_ipld_encoding::to_vec(&forged).unwrap();
        assert!(matches!(
            RetrievalResponse::from_cbor(&bytes),
            Err(DecodeError::Rule(RuleViolation::Retrieval(RetrievalViolation::RootMismatch)))
        ));
    }

    #[test]
    fn requests_round_trip_and_bound_their_fields() {
        let request = RetrievalRequest::chunk([9; 32], 4, payee(), b"flow".to_vec());
        let bytes = request.to_cbor().unwrap();
        assert!(bytes.len() <= RETRIEVAL_REQUEST_MAX_BYTES);
        assert_eq!(RetrievalRequest::from_cbor(&bytes).unwrap(), request);
        let manifest = RetrievalRequest::manifest([1; 32]);
        assert_eq!(RetrievalRequest::from_cbor(&manifest.to_cbor().unwrap()).unwrap(), manifest);

        let long_flow = RetrievalRequest { flow: vec![0; MAX_FLOW_BYTES + 1], ..request.clone() };
        assert!(long_flow.to_cbor().is_err());
        let short_root = RetrievalRequest { root: vec![0; 31], ..request };
        assert!(short_root.to_cbor().is_err());
        for garbage in [&b""[..], b"\x80", b"\x84\x40\xf6\xf6\x40\x00", b"\xff"] {
            assert!(RetrievalRequest::from_cbor(garbage).is_err());
            assert!(RetrievalResponse::from_cbor(garbage).is_err());
        }
    }

    #[test]
    fn responses_carry_the_body_their_status_says() {
        let chunk = RetrievalResponse::chunk(vec![1, 2, 3]);
        assert_eq!(RetrievalResponse::from_cbor(&chunk.to_cbor().unwrap()).unwrap(), chunk);
        let refused = RetrievalResponse::refused(RetrievalStatus::PaymentRequired, "pay first");
        assert_eq!(RetrievalResponse::from_cbor(&refused.to_cbor().unwrap()).unwrap(), refused);
        assert_eq!(refused.status(), Some(RetrievalStatus::PaymentRequired));
        let both = RetrievalResponse { data: Some(vec![1]), ..refused };
        assert!(both.to_cbor().is_err());
        let empty = RetrievalResponse {
            status: 0,
            manifest: None,
            data: None,
            message: None,
            window: None,
        };
        assert!(empty.to_cbor().is_err());
        for status in RetrievalStatus::ALL {
            assert_eq!(RetrievalStatus::from_code(status as u8), Some(status));
        }
        assert_eq!(RetrievalStatus::from_code(7), None);
    }

    #[test]
    fn a_response_carries_its_window_and_refuses_one_too_large() {
        let chunk = RetrievalResponse::chunk(vec![7; 10]).with_window(1 << 20);
        let decoded = RetrievalResponse::from_cbor(&chunk.to_cbor().unwrap()).unwrap();
        assert_eq!(decoded.window, Some(1 << 20));
        let refused = RetrievalResponse::refused(RetrievalStatus::PaymentRequired, "pay")
            .with_window(MAX_WINDOW_BYTES);
        assert_eq!(RetrievalResponse::from_cbor(&refused.to_cbor().unwrap()).unwrap(), refused);
        let too_large = RetrievalResponse { window: Some(MAX_WINDOW_BYTES + 1), ..refused };
        assert!(too_large.to_cbor().is_err());
        let mut bytes = chunk.to_cbor().unwrap();
        // The window is the last item: a uint32 (0x1a) 2^20; make it 2^31.
        let n = bytes.len();
        bytes[n - 5..].copy_from_slice(&[0x1a, 0x80, 0, 0, 0]);
        assert!(RetrievalResponse::from_cbor(&bytes).is_err());
    }

    #[test]
    fn a_window_holds_at_least_one_chunk() {
        assert_eq!(window_chunks(0, 1000), 1);
        assert_eq!(window_chunks(999, 1000), 1);
        assert_eq!(window_chunks(4500, 1000), 4);
        assert_eq!(window_chunks(10, 0), 1);
    }
}
