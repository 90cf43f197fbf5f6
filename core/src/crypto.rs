//! Hashes and secp256k1 signatures in the Filecoin conventions.
//!
//! A secp256k1 signature is 65 bytes `r ‖ s ‖ recovery_id`, deterministic (RFC 6979) and
//! low-s, over the blake2b-256 digest of the signed bytes. It is verified by recovering the
//! public key and comparing its f1 address with the signer's. Verification here is strict:
//! it refuses high-s signatures and recovery ids other than 0 and 1, which this code never
//! produces, so nothing it accepts could be refused by the chain for its form.

use fvm_shared::address::{Address, Protocol};
use fvm_shared::crypto::signature::{Signature, SignatureType, SECP_SIG_LEN};
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use secp256k1::{Message as Digest, SECP256K1};

pub use secp256k1::{PublicKey, SecretKey};

use crate::types::{EncodeError, Message, SignedMessage};

/// Why a signature could not be made or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The signature is not of the secp256k1 type.
    #[error("unsupported signature type {0:?}: only secp256k1 is supported")]
    UnsupportedSignatureType(SignatureType),
    /// The signer's address is not a secp256k1 (f1) address.
    #[error("signer {0} is not a secp256k1 (f1) address")]
    NotSecpAddress(Address),
    /// The signature is not 65 bytes.
    #[error("secp256k1 signature must be {SECP_SIG_LEN} bytes, got {0}")]
    BadLength(usize),
    /// The signature's recovery id is not 0 or 1.
    #[error("invalid recovery id {0}")]
    BadRecoveryId(u8),
    /// The signature's `s` is in the upper half of the curve order.
    #[error("signature is not in low-s form")]
    HighS,
    /// No public key could be recovered from the signature.
    #[error("cannot recover a public key: {0}")]
    Unrecoverable(String),
    /// The key recovered from the signature belongs to another address.
    #[error("signature was made by {recovered}, not {expected}")]
    WrongSigner {
        /// The address the signature should be from.
        expected: Address,
        /// The address of the key that made it.
        recovered: Address,
    },
    /// A private key's bytes are not a valid secp256k1 scalar.
    #[error("invalid secp256k1 private key")]
    InvalidPrivateKey,
    /// The thing to sign could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// blake2b with a 32-byte digest.
pub fn blake2b_256(data: &[u8]) -> [u8; 32] {
    let hash = blake2b_simd::Params::new().hash_length(32).hash(data);
    let mut out = [0u8; 32];
    out.copy_from_slice(hash.as_bytes());
    out
}

/// blake2b with a 20-byte digest (the payload of f1 and f2 addresses).
pub fn blake2b_160(data: &[u8]) -> [u8; 20] {
    let hash = blake2b_simd::Params::new().hash_length(20).hash(data);
    let mut out = [0u8; 20];
    out.copy_from_slice(hash.as_bytes());
    out
}

/// Parses a 32-byte secp256k1 private key.
pub fn secret_key(bytes: &[u8]) -> Result<SecretKey, CryptoError> {
    SecretKey::from_slice(bytes).map_err(|_| CryptoError::InvalidPrivateKey)
}

/// A new random private key from the operating system's generator.
pub fn generate_secret_key() -> Result<SecretKey, CryptoError> {
    loop {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|_| CryptoError::InvalidPrivateKey)?;
        // Out-of-range scalars occur with probability ~2^-128; draw again.
        if let Ok(key) = SecretKey::from_slice(&bytes) {
            return Ok(key);
        }
    }
}

/// The public key of a private key.
pub fn public_key(secret: &SecretKey) -> PublicKey {
    PublicKey::from_secret_key(SECP256K1, secret)
}

/// The f1 address of a public key: blake2b-160 of its 65-byte uncompressed form.
pub fn secp_address(public: &PublicKey) -> Address {
    Address::new_secp256k1(&public.serialize_uncompressed())
        .unwrap_or_else(|_| unreachable!("an uncompressed secp256k1 key is 65 bytes"))
}

/// Signs the blake2b-256 digest `digest`, returning the 65-byte `r ‖ s ‖ v` form.
pub fn sign_digest(secret: &SecretKey, digest: &[u8; 32]) -> [u8; SECP_SIG_LEN] {
    let sig = SECP256K1.sign_ecdsa_recoverable(&Digest::from_digest(*digest), secret);
    let (recovery_id, compact) = sig.serialize_compact();
    let mut out = [0u8; SECP_SIG_LEN];
    out[..64].copy_from_slice(&compact);
    // RecoveryId is 0..=3, so the cast cannot truncate.
    out[64] = i32::from(recovery_id) as u8;
    out
}

/// Signs `data` the Filecoin way: secp256k1 over blake2b-256 of the bytes.
pub fn sign(secret: &SecretKey, data: &[u8]) -> Signature {
    Signature::new_secp256k1(sign_digest(secret, &blake2b_256(data)).to_vec())
}

/// Recovers the public key that made `signature` over `data`.
pub fn recover(signature: &Signature, data: &[u8]) -> Result<PublicKey, CryptoError> {
    recover_digest(signature, &blake2b_256(data))
}

/// Recovers the public key that made `signature` over the digest `digest`.
pub fn recover_digest(signature: &Signature, digest: &[u8; 32]) -> Result<PublicKey, CryptoError> {
    if signature.sig_type != SignatureType::Secp256k1 {
        return Err(CryptoError::UnsupportedSignatureType(signature.sig_type));
    }
    let bytes: &[u8; SECP_SIG_LEN] = signature
        .bytes
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::BadLength(signature.bytes.len()))?;
    let v = bytes[64];
    if v > 1 {
        return Err(CryptoError::BadRecoveryId(v));
    }
    let recovery_id = RecoveryId::try_from(i32::from(v))
        .map_err(|e| CryptoError::Unrecoverable(e.to_string()))?;
    let sig = RecoverableSignature::from_compact(&bytes[..64], recovery_id)
        .map_err(|e| CryptoError::Unrecoverable(e.to_string()))?;
    let mut standard = sig.to_standard();
    let original = standard;
    standard.normalize_s();
    if standard != original {
        return Err(CryptoError::HighS);
    }
    SECP256K1
        .recover_ecdsa(&Digest::from_digest(*digest), &sig)
        .map_err(|e| CryptoError::Unrecoverable(e.to_string()))
}

/// Checks that `signature` over `data` was made by the key behind the f1 address `signer`.
pub fn verify(signature: &Signature, signer: &Address, data: &[u8]) -> Result<(), CryptoError> {
    if signer.protocol() != Protocol::Secp256k1 {
        return Err(CryptoError::NotSecpAddress(*signer));
    }
    let recovered = secp_address(&recover(signature, data)?);
    if &recovered != signer {
        return Err(CryptoError::WrongSigner { expected: *signer, recovered });
    }
    Ok(())
}

/// Signs a message: the signature is over the bytes of the message's CID.
pub fn sign_message(secret: &SecretKey, message: Message) -> Result<SignedMessage, CryptoError> {
    let cid = message.cid()?;
    let signature = sign(secret, &cid.to_bytes());
    Ok(SignedMessage { message, signature })
}

/// Checks a signed message's signature against its `from` address (which must be f1).
pub fn verify_message(signed: &SignedMessage) -> Result<(), CryptoError> {
    let cid = signed.message.cid()?;
    verify(&signed.signature, &signed.message.from, &cid.to_bytes())
}
