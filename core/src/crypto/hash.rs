//! blake2b at the digest lengths Filecoin uses: 32 bytes for signing digests and CIDs,
//! 20 bytes for the payload of f1 and f2 addresses, 4 bytes for address checksums.
//!
//! A leaf: it uses nothing else in the crate, so both the types and the signatures can.

/// blake2b with an `N`-byte digest (`N` from 1 to 64).
pub fn blake2b<const N: usize>(data: &[u8]) -> [u8; N] {
    let hash = blake2b_simd::Params::new().hash_length(N).hash(data);
    let mut out = [0u8; N];
    out.copy_from_slice(hash.as_bytes());
    out
}

/// blake2b with a 32-byte digest.
pub fn blake2b_256(data: &[u8]) -> [u8; 32] {
    blake2b(data)
}

/// blake2b with a 20-byte digest (the payload of f1 and f2 addresses).
pub fn blake2b_160(data: &[u8]) -> [u8; 20] {
    blake2b(data)
}
