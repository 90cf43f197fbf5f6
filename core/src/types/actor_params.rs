//! The payment-channel actor's state and method parameters, and the Init actor's `Exec`.

use cid::Cid;
use fvm_ipld_encoding::strict_bytes;
use fvm_ipld_encoding::tuple::*;
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use ipld_core::ipld::Ipld;

use super::decode::{self, deserialize_via_ipld, DecodeError, FromIpld};
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

impl FromIpld for LaneState {
    fn from_ipld(ipld: &Ipld) -> Result<Self, DecodeError> {
        let f = decode::tuple(ipld, "lane_state", 2)?;
        Ok(LaneState {
            redeemed: decode::amount_field(&f[0], "lane_state.redeemed")?,
            nonce: decode::u64_field(&f[1], "lane_state.nonce")?,
        })
    }
}

impl FromIpld for PaychState {
    fn from_ipld(ipld: &Ipld) -> Result<Self, DecodeError> {
        let f = decode::tuple(ipld, "paych_state", 6)?;
        Ok(PaychState {
            from: decode::address_field(&f[0], "paych_state.from")?,
            to: decode::address_field(&f[1], "paych_state.to")?,
            to_send: decode::amount_field(&f[2], "paych_state.to_send")?,
            settling_at: decode::i64_field(&f[3], "paych_state.settling_at")?,
            min_settle_height: decode::i64_field(&f[4], "paych_state.min_settle_height")?,
            lane_states: decode::cid_field(&f[5], "paych_state.lane_states")?,
        })
    }
}

impl FromIpld for UpdateChannelStateParams {
    fn from_ipld(ipld: &Ipld) -> Result<Self, DecodeError> {
        let f = decode::tuple(ipld, "update_channel_state_params", 2)?;
        Ok(UpdateChannelStateParams {
            sv: SignedVoucher::from_ipld(&f[0])?,
            secret: decode::bytes_field(&f[1], "update_channel_state_params.secret")?.to_vec(),
        })
    }
}

impl FromIpld for ConstructorParams {
    fn from_ipld(ipld: &Ipld) -> Result<Self, DecodeError> {
        let f = decode::tuple(ipld, "constructor_params", 2)?;
        Ok(ConstructorParams {
            from: decode::address_field(&f[0], "constructor_params.from")?,
            to: decode::address_field(&f[1], "constructor_params.to")?,
        })
    }
}

impl FromIpld for ExecParams {
    fn from_ipld(ipld: &Ipld) -> Result<Self, DecodeError> {
        let f = decode::tuple(ipld, "exec_params", 2)?;
        Ok(ExecParams {
            code_cid: decode::cid_field(&f[0], "exec_params.code_cid")?,
            constructor_params: decode::bytes_field(&f[1], "exec_params.constructor_params")?
                .to_vec(),
        })
    }
}

impl FromIpld for ExecReturn {
    fn from_ipld(ipld: &Ipld) -> Result<Self, DecodeError> {
        let f = decode::tuple(ipld, "exec_return", 2)?;
        Ok(ExecReturn {
            id_address: decode::address_field(&f[0], "exec_return.id_address")?,
            robust_address: decode::address_field(&f[1], "exec_return.robust_address")?,
        })
    }
}

deserialize_via_ipld!(LaneState);
deserialize_via_ipld!(PaychState);
deserialize_via_ipld!(UpdateChannelStateParams);
deserialize_via_ipld!(ConstructorParams);
deserialize_via_ipld!(ExecParams);
deserialize_via_ipld!(ExecReturn);
