//! Vouchers assembled from their parts, as property tests generate them: each test keeps
//! its own strategies (ranges and encodings differ by what it checks) and builds the voucher
//! in one place.

use paych_core::types::{Address, Merge, ModVerifyParams, Signature, SignedVoucher, TokenAmount};

/// The parts of a voucher, in generation order: (channel, `time_lock_min`, `time_lock_max`,
/// secret hash), the `extra` call (actor, method, data), (lane, nonce, amount,
/// `min_settle_height`), the merges (lane, nonce) and the signature.
pub type VoucherParts = (
    (Address, i64, i64, Vec<u8>),
    Option<(Address, u64, Vec<u8>)>,
    (u64, u64, TokenAmount, i64),
    Vec<(u64, u64)>,
    Option<Signature>,
);

/// The voucher made of `parts`.
pub fn voucher_from_parts(parts: VoucherParts) -> SignedVoucher {
    let ((channel_addr, time_lock_min, time_lock_max, secret_hash), extra, lane_parts, merges, sig) =
        parts;
    let (lane, nonce, amount, min_settle_height) = lane_parts;
    SignedVoucher {
        channel_addr,
        time_lock_min,
        time_lock_max,
        secret_hash,
        extra: extra.map(|(actor, method, data)| ModVerifyParams { actor, method, data }),
        lane,
        nonce,
        amount,
        min_settle_height,
        merges: merges.into_iter().map(|(lane, nonce)| Merge { lane, nonce }).collect(),
        signature: sig,
    }
}
