//! Real secp256k1 keys for tests: deterministic ones from a seed byte, a stranger's (party to
//! nothing), vouchers signed by them, and the high-s twin of a signature.

use paych_core::crypto::{self, SecretKey};
use paych_core::types::{Address, Signature, SignedVoucher};

use crate::amounts::atto;

/// A deterministic secp256k1 key made of 32 `seed` bytes.
pub fn key(seed: u8) -> SecretKey {
    crypto::secret_key(&[seed; 32]).unwrap()
}

/// The f1 address of a key.
pub fn address(secret: &SecretKey) -> Address {
    crypto::secp_address(&crypto::public_key(secret))
}

/// Signs `sv` with `key` over its signing bytes.
pub fn signed_by(mut sv: SignedVoucher, key: &SecretKey) -> SignedVoucher {
    sv.signature = Some(crypto::sign(key, &sv.signing_bytes().unwrap()));
    sv
}

/// A voucher on `channel` paying `amount` attoFIL on `lane` at `nonce`, signed by `secret`.
pub fn signed_voucher(
    secret: &SecretKey,
    channel: Address,
    lane: u64,
    nonce: u64,
    amount: u64,
) -> SignedVoucher {
    signed_by(SignedVoucher::new(channel, lane, nonce, atto(amount)), secret)
}

/// A fresh key, party to nothing, and its address.
pub fn stranger() -> (SecretKey, Address) {
    let key = crypto::generate_secret_key().unwrap();
    let addr = address(&key);
    (key, addr)
}

/// Signs `voucher` with a fresh key that is party to nothing.
pub fn sign_as_stranger(voucher: SignedVoucher) -> SignedVoucher {
    signed_by(voucher, &stranger().0)
}

/// A fresh key address, party to nothing.
pub fn stranger_address() -> Address {
    stranger().1
}

/// The other form of a valid secp256k1 signature: `s` replaced by `n − s` and the recovery
/// id's low bit flipped, as a signer that does not normalise s could produce. The FVM
/// normalises it back and recovers the same key.
pub fn high_s_twin(signature: &Signature) -> Signature {
    let mut bytes = signature.bytes.clone();
    let s = SecretKey::from_slice(&bytes[32..64]).unwrap();
    bytes[32..64].copy_from_slice(&s.negate().secret_bytes());
    bytes[64] ^= 1;
    Signature::new_secp256k1(bytes)
}

/// `sv` with its signature replaced by the signature's high-s twin.
pub fn with_high_s(mut sv: SignedVoucher) -> SignedVoucher {
    sv.signature = sv.signature.as_ref().map(high_s_twin);
    sv
}
