//! Hashes and secp256k1 signatures in the Filecoin conventions.
//!
//! A secp256k1 signature is 65 bytes `r ‖ s ‖ recovery_id`, over the blake2b-256 digest of
//! the signed bytes. It is verified by recovering the public key and comparing its f1 address
//! with the signer's.
//!
//! Signing here is deterministic (RFC 6979) and always low-s. Recovery accepts exactly what
//! the chain accepts: like the FVM (`fvm_shared` `recover_secp_public_key`), a signature whose
//! `s` is in the upper half of the curve order is first normalised to `n − s` with its
//! recovery id's low bit flipped — the same signature in its other form — and recovery ids 0
//! to 3 are recovered. So a payee neither refuses a voucher the chain would redeem nor
//! accepts one it would refuse, whichever of the two forms the payer sent.
//!
//! The hashes live in [`hash`], which depends on nothing else in the crate, so that the
//! types (whose CIDs are blake2b hashes) can use them while signing here uses the types.

pub mod hash;

use fvm_shared::address::{Address, Protocol};
use fvm_shared::crypto::signature::{Signature, SignatureType, SECP_SIG_LEN};
use secp256k1::ecdsa::{self, RecoverableSignature, RecoveryId};
use secp256k1::{Message as Digest, SECP256K1};

pub use hash::{blake2b_160, blake2b_256};
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
    /// The signature's recovery id is above 3.
    #[error("invalid recovery id {0}")]
    BadRecoveryId(u8),
    /// `r` or `s` is zero or not below the curve order.
    #[error("invalid signature scalars: {0}")]
    BadScalars(String),
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

/// The most a recovery id may be: bit 0 is the parity of R's y, bit 1 whether R's x
/// overflowed the curve order.
const MAX_RECOVERY_ID: u8 = 3;

/// Recovers the public key that made `signature` over the digest `digest`, normalising a
/// high-s signature as the FVM does.
pub fn recover_digest(signature: &Signature, digest: &[u8; 32]) -> Result<PublicKey, CryptoError> {
    if signature.sig_type != SignatureType::Secp256k1 {
        return Err(CryptoError::UnsupportedSignatureType(signature.sig_type));
    }
    let bytes: &[u8; SECP_SIG_LEN] = signature
        .bytes
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::BadLength(signature.bytes.len()))?;
    let (compact, v) = normalized_s(bytes)?;
    if v > MAX_RECOVERY_ID {
        return Err(CryptoError::BadRecoveryId(v));
    }
    let recovery_id = RecoveryId::try_from(i32::from(v))
        .map_err(|e| CryptoError::Unrecoverable(e.to_string()))?;
    let sig = RecoverableSignature::from_compact(&compact, recovery_id)
        .map_err(|e| CryptoError::Unrecoverable(e.to_string()))?;
    SECP256K1
        .recover_ecdsa(&Digest::from_digest(*digest), &sig)
        .map_err(|e| CryptoError::Unrecoverable(e.to_string()))
}

/// `r ‖ s` in low-s form and the recovery id to go with it: a high `s` becomes `n − s` and
/// the recovery id's low bit flips (the point R becomes −R), exactly as the FVM does before
/// it recovers. Scalars that are zero or not below the curve order are refused.
fn normalized_s(bytes: &[u8; SECP_SIG_LEN]) -> Result<([u8; 64], u8), CryptoError> {
    let standard = ecdsa::Signature::from_compact(&bytes[..64])
        .map_err(|e| CryptoError::BadScalars(e.to_string()))?;
    if bytes[..32].iter().all(|b| *b == 0) || bytes[32..64].iter().all(|b| *b == 0) {
        return Err(CryptoError::BadScalars("r and s must not be zero".to_owned()));
    }
    let mut low = standard;
    low.normalize_s();
    let v = bytes[64];
    if low == standard {
        Ok((standard.serialize_compact(), v))
    } else {
        Ok((low.serialize_compact(), v ^ 1))
    }
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

/// Checks signature bytes over `data` as the account actor of the f1 address `signer`
/// authenticates them (`AuthenticateMessage`, which a payment channel asks to check a
/// voucher): as a secp256k1 signature, whatever type the signature was labelled with.
pub fn verify_as_account(
    signature: &[u8],
    signer: &Address,
    data: &[u8],
) -> Result<(), CryptoError> {
    verify(&Signature::new_secp256k1(signature.to_vec()), signer, data)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The other form of a signature: `s` replaced by `n − s`, the recovery id's low bit
    /// flipped when `flip` — what a signer that does not normalise could produce.
    fn high_s_twin(signature: &Signature, flip: bool) -> Signature {
        let mut bytes = signature.bytes.clone();
        let s = SecretKey::from_slice(&bytes[32..64]).unwrap();
        bytes[32..64].copy_from_slice(&s.negate().secret_bytes());
        if flip {
            bytes[64] ^= 1;
        }
        Signature::new_secp256k1(bytes)
    }

    fn is_low_s(signature: &Signature) -> bool {
        let standard = ecdsa::Signature::from_compact(&signature.bytes[..64]).unwrap();
        let mut low = standard;
        low.normalize_s();
        low == standard
    }

    fn key(seed: u8) -> (SecretKey, Address) {
        let secret = secret_key(&[seed; 32]).unwrap();
        (secret, secp_address(&public_key(&secret)))
    }

    #[test]
    fn signatures_made_here_are_low_s_and_their_high_s_twins_are_not() {
        let (secret, _) = key(1);
        for i in 0..32u8 {
            let signature = sign(&secret, &[i; 40]);
            assert!(is_low_s(&signature));
            assert!(!is_low_s(&high_s_twin(&signature, true)));
        }
    }

    #[test]
    fn a_high_s_signature_with_its_recovery_id_flipped_verifies_as_the_fvm_accepts_it() {
        let (secret, signer) = key(1);
        for i in 0..32u8 {
            let data = [i; 40];
            let twin = high_s_twin(&sign(&secret, &data), true);
            verify(&twin, &signer, &data).unwrap();
            assert_eq!(recover(&twin, &data).unwrap(), public_key(&secret));
        }
    }

    #[test]
    fn a_high_s_signature_with_its_recovery_id_unchanged_names_another_signer() {
        let (secret, signer) = key(1);
        let data = b"pay me";
        let twin = high_s_twin(&sign(&secret, data), false);
        assert!(
            matches!(verify(&twin, &signer, data), Err(CryptoError::WrongSigner { .. })),
            "the FVM recovers another key from it, so it is refused"
        );
    }

    #[test]
    fn recovery_ids_above_3_and_zero_scalars_are_refused() {
        let (secret, signer) = key(1);
        let data = b"pay me";
        let good = sign(&secret, data);
        for v in [4u8, 5, 27, 28, 255] {
            let mut bytes = good.bytes.clone();
            bytes[64] = v;
            let err = verify(&Signature::new_secp256k1(bytes), &signer, data).unwrap_err();
            assert_eq!(err, CryptoError::BadRecoveryId(v));
        }
        for range in [0..32, 32..64] {
            let mut bytes = good.bytes.clone();
            bytes[range].fill(0);
            let err = verify(&Signature::new_secp256k1(bytes), &signer, data).unwrap_err();
            assert!(matches!(err, CryptoError::BadScalars(_)), "{err}");
        }
        let mut bytes = good.bytes.clone();
        bytes[32..64].copy_from_slice(&secp256k1::constants::CURVE_ORDER);
        let err = verify(&Signature::new_secp256k1(bytes), &signer, data).unwrap_err();
        assert!(matches!(err, CryptoError::BadScalars(_)), "{err}");
    }
}
