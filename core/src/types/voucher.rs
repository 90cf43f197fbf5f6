//! The signed voucher and its parts, as the payment-channel actor encodes them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fvm_ipld_encoding::strict_bytes;
use fvm_ipld_encoding::tuple::*;
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::crypto::signature::Signature;
use fvm_shared::econ::TokenAmount;
use fvm_shared::MethodNum;
use serde::Serialize;

use super::decode::{self, tuple_from_ipld, DecodeError};
use super::EncodeError;

/// The largest lane number the actor accepts (2^63 − 1).
pub const MAX_LANE: u64 = i64::MAX as u64;

/// A request, made by a voucher, to merge another lane into the voucher's lane.
///
/// CBOR: `[lane, nonce]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize_tuple)]
pub struct Merge {
    /// The lane to merge.
    pub lane: u64,
    /// The nonce the merged lane is raised to; it must exceed the lane's nonce on chain.
    pub nonce: u64,
}

/// A call the actor makes before redeeming a voucher (the voucher's `extra`); a non-zero
/// exit code of that call aborts the redemption.
///
/// CBOR: `[actor, method, data]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize_tuple)]
pub struct ModVerifyParams {
    /// The actor to call.
    pub actor: Address,
    /// The method to call.
    pub method: MethodNum,
    /// The call's parameters.
    #[serde(with = "strict_bytes")]
    pub data: Vec<u8>,
}

/// A payment-channel voucher: a cumulative amount on one lane, signed by the payer.
///
/// CBOR: an array of exactly 11 items — `[channel_addr, time_lock_min, time_lock_max,
/// secret_hash, extra, lane, nonce, amount, min_settle_height, merges, signature]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignedVoucher {
    /// The channel the voucher pays from (ID or robust address).
    pub channel_addr: Address,
    /// The first epoch at which the voucher may be redeemed.
    pub time_lock_min: ChainEpoch,
    /// The last epoch at which the voucher may be redeemed; 0 means no limit.
    pub time_lock_max: ChainEpoch,
    /// blake2b-256 of a secret that must accompany the redemption; empty means none.
    /// (The Rust actor names this field `secret_pre_image`; it holds the hash.)
    pub secret_hash: Vec<u8>,
    /// A call the actor makes before redeeming.
    pub extra: Option<ModVerifyParams>,
    /// The lane the voucher pays on.
    pub lane: u64,
    /// The voucher's nonce on its lane; each redemption must raise it.
    pub nonce: u64,
    /// The cumulative amount paid on the lane (merged lanes included).
    pub amount: TokenAmount,
    /// The channel cannot settle before this epoch; 0 means no constraint.
    pub min_settle_height: ChainEpoch,
    /// Lanes this voucher closes.
    pub merges: Vec<Merge>,
    /// The payer's signature over [`SignedVoucher::signing_bytes`].
    pub signature: Option<Signature>,
}

/// The voucher's tuple layout, borrowed: the one place the field order is written down.
#[derive(Serialize_tuple)]
struct VoucherLayout<'a> {
    channel_addr: &'a Address,
    time_lock_min: ChainEpoch,
    time_lock_max: ChainEpoch,
    #[serde(with = "strict_bytes")]
    secret_hash: &'a [u8],
    extra: &'a Option<ModVerifyParams>,
    lane: u64,
    nonce: u64,
    amount: &'a TokenAmount,
    min_settle_height: ChainEpoch,
    merges: &'a [Merge],
    signature: Option<&'a Signature>,
}

impl SignedVoucher {
    fn layout<'a>(&'a self, signature: Option<&'a Signature>) -> VoucherLayout<'a> {
        VoucherLayout {
            channel_addr: &self.channel_addr,
            time_lock_min: self.time_lock_min,
            time_lock_max: self.time_lock_max,
            secret_hash: &self.secret_hash,
            extra: &self.extra,
            lane: self.lane,
            nonce: self.nonce,
            amount: &self.amount,
            min_settle_height: self.min_settle_height,
            merges: &self.merges,
            signature,
        }
    }

    /// A voucher with no time locks, secret, extra, merges or signature.
    pub fn new(channel_addr: Address, lane: u64, nonce: u64, amount: TokenAmount) -> Self {
        SignedVoucher {
            channel_addr,
            time_lock_min: 0,
            time_lock_max: 0,
            secret_hash: Vec::new(),
            extra: None,
            lane,
            nonce,
            amount,
            min_settle_height: 0,
            merges: Vec::new(),
            signature: None,
        }
    }

    /// The bytes the payer signs: the voucher's CBOR with the signature item set to null.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(fvm_ipld_encoding::to_vec(&self.layout(None))?)
    }

    /// The voucher's CBOR, signature included.
    pub fn to_cbor(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(fvm_ipld_encoding::to_vec(self)?)
    }

    /// Decodes a voucher from its CBOR.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode::decode(bytes)
    }

    /// The voucher's text form, as the Lotus CLI prints it: unpadded base64url of its CBOR.
    pub fn to_base64url(&self) -> Result<String, EncodeError> {
        Ok(URL_SAFE_NO_PAD.encode(self.to_cbor()?))
    }

    /// Decodes a voucher from its text form (unpadded base64url of its CBOR).
    pub fn from_base64url(text: &str) -> Result<Self, DecodeError> {
        let bytes =
            URL_SAFE_NO_PAD.decode(text.trim()).map_err(|e| DecodeError::Base64(e.to_string()))?;
        Self::from_cbor(&bytes)
    }
}

impl Serialize for SignedVoucher {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.layout(self.signature.as_ref()).serialize(s)
    }
}

tuple_from_ipld!(Merge as "merge" {
    lane: decode::u64_field,
    nonce: decode::u64_field,
});

tuple_from_ipld!(ModVerifyParams as "extra" {
    actor: decode::address_field,
    method: decode::u64_field,
    data: decode::byte_vec_field,
});

tuple_from_ipld!(SignedVoucher as "voucher" {
    channel_addr: decode::address_field,
    time_lock_min: decode::i64_field,
    time_lock_max: decode::i64_field,
    secret_hash: decode::byte_vec_field,
    extra: |item, _| decode::optional(item).map(ModVerifyParams::from_ipld).transpose(),
    lane: decode::u64_field,
    nonce: decode::u64_field,
    amount: decode::amount_field,
    min_settle_height: decode::i64_field,
    merges: |item, what| decode::list(item, what)?.iter().map(Merge::from_ipld).collect::<Result<_, _>>(),
    signature: |item, _| decode::optional(item).map(decode::signature_field).transpose(),
});
