//! The payment-channel actor's state and method parameters, and the Init actor's `Exec`.

use cid::Cid;
use fvm_ipld_encoding::strict_bytes;
use fvm_ipld_encoding::tuple::*;
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;

use super::decode::{self, tuple_from_ipld};
use super::voucher::SignedVoucher;

/// The state of one lane of a channel on chain.
///
/// CBOR: `[redeemed, nonce]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize_tuple)]
pub struct LaneState {
    /// The cumulative amount redeemed on the lane.
    pub redeemed: TokenAmount,
    /// The nonce of the last voucher redeemed (or merge applied) on the lane.
    pub nonce: u64,
}

/// The payment-channel actor's state object as stored on chain.
///
/// CBOR: `[from, to, to_send, settling_at, min_settle_height, lane_states]`, where
/// `lane_states` is the root of an AMT (bit width 3) of [`LaneState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct PaychState {
    /// The payer (an ID address).
    pub from: Address,
    /// The payee (an ID address).
    pub to: Address,
    /// The amount redeemed so far, paid to `to` on collect.
    pub to_send: TokenAmount,
    /// The epoch at which the channel settles; 0 while not settling.
    pub settling_at: ChainEpoch,
    /// The lowest epoch at which the channel may settle.
    pub min_settle_height: ChainEpoch,
    /// The root of the lane-state AMT.
    pub lane_states: Cid,
}

/// Parameters of `UpdateChannelState` (method 2).
///
/// CBOR: `[voucher, secret]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct UpdateChannelStateParams {
    /// The voucher to redeem.
    pub sv: SignedVoucher,
    /// The secret whose blake2b-256 hash the voucher names; empty when it names none.
    #[serde(with = "strict_bytes")]
    pub secret: Vec<u8>,
}

/// Parameters of the payment-channel actor's constructor.
///
/// CBOR: `[from, to]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct ConstructorParams {
    /// The payer.
    pub from: Address,
    /// The payee.
    pub to: Address,
}

/// Parameters of the Init actor's `Exec` (method 2), which creates an actor.
///
/// CBOR: `[code_cid, constructor_params]`, the latter a byte string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct ExecParams {
    /// The code of the actor to create.
    pub code_cid: Cid,
    /// The CBOR of the new actor's constructor parameters.
    #[serde(with = "strict_bytes")]
    pub constructor_params: Vec<u8>,
}

/// What the Init actor's `Exec` returns.
///
/// CBOR: `[id_address, robust_address]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct ExecReturn {
    /// The new actor's ID address.
    pub id_address: Address,
    /// The new actor's robust (f2) address, stable across reorgs.
    pub robust_address: Address,
}

tuple_from_ipld!(LaneState as "lane_state" {
    redeemed: decode::amount_field,
    nonce: decode::u64_field,
});

tuple_from_ipld!(PaychState as "paych_state" {
    from: decode::address_field,
    to: decode::address_field,
    to_send: decode::amount_field,
    settling_at: decode::i64_field,
    min_settle_height: decode::i64_field,
    lane_states: decode::cid_field,
});

tuple_from_ipld!(UpdateChannelStateParams as "update_channel_state_params" {
    sv: |item, _| SignedVoucher::from_ipld(item),
    secret: decode::byte_vec_field,
});

tuple_from_ipld!(ConstructorParams as "constructor_params" {
    from: decode::address_field,
    to: decode::address_field,
});

tuple_from_ipld!(ExecParams as "exec_params" {
    code_cid: decode::cid_field,
    constructor_params: decode::byte_vec_field,
});

tuple_from_ipld!(ExecReturn as "exec_return" {
    id_address: decode::address_field,
    robust_address: decode::address_field,
});
