//! The bounds of `/paych/retrieval/2.0.0` messages and the rules they break.
//!
//! A leaf: it uses nothing else in the crate, so the wire format's shared
//! [`RuleViolation`](crate::messages::RuleViolation) can name these rules while the
//! retrieval messages use the shared wire layer.

/// The largest chunk a manifest may declare, in bytes.
pub const MAX_CHUNK_BYTES: u64 = 1024 * 1024;
/// The most chunks one blob may have.
pub const MAX_CHUNKS: usize = 16_384;
/// The largest credit window a response may announce, in bytes.
pub const MAX_WINDOW_BYTES: u64 = 1 << 30;
/// The length of a BLAKE2b-256 hash.
pub const HASH_BYTES: usize = 32;

/// A rule of `/paych/retrieval/2.0.0` that a message breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetrievalViolation {
    /// A hash or root is not 32 bytes long.
    #[error("{what} is {len} bytes; a BLAKE2b-256 hash is {HASH_BYTES}")]
    HashLength {
        /// The field.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// The chunk size is zero or above [`MAX_CHUNK_BYTES`].
    #[error("chunk size {0} outside 1..={MAX_CHUNK_BYTES}")]
    ChunkSize(u64),
    /// The manifest lists more than [`MAX_CHUNKS`] chunks.
    #[error("{0} chunks exceed the limit of {MAX_CHUNKS}")]
    TooManyChunks(usize),
    /// The manifest's chunk count does not match its size and chunk size.
    #[error("a blob of {size} bytes in chunks of {chunk_size} has {expected} chunks, not {found}")]
    ChunkCount {
        /// The blob's size.
        size: u64,
        /// The chunk size.
        chunk_size: u64,
        /// Chunks the size implies.
        expected: u64,
        /// Hashes listed.
        found: usize,
    },
    /// The manifest's root is not the root of its hashes.
    #[error("the manifest's root is not the hash of its chunk hashes")]
    RootMismatch,
    /// A chunk is larger than [`MAX_CHUNK_BYTES`].
    #[error("chunk of {0} bytes exceeds the {MAX_CHUNK_BYTES}-byte limit")]
    ChunkTooLarge(usize),
    /// The response's body does not match its status: status 0 carries exactly one of a
    /// manifest or a chunk, any other status neither.
    #[error("retrieval response with status {0} carries the wrong body")]
    BodyMismatch(u8),
    /// The price per chunk is negative.
    #[error("the price per chunk is negative")]
    NegativePrice,
    /// The response announces a credit window above [`MAX_WINDOW_BYTES`].
    #[error("a credit window of {0} bytes exceeds the {MAX_WINDOW_BYTES}-byte limit")]
    WindowTooLarge(u64),
}
