//! Chain messages and their content identifiers.

use cid::Cid;
use fvm_ipld_encoding::strict_bytes;
use fvm_ipld_encoding::tuple::*;
use fvm_shared::address::Address;
use fvm_shared::crypto::signature::{Signature, SignatureType};
use fvm_shared::econ::TokenAmount;
use fvm_shared::MethodNum;
use ipld_core::ipld::Ipld;

use super::decode::{self, tuple_from_ipld, DecodeError};
use super::{cid_of, EncodeError};

/// An unsigned chain message.
///
/// CBOR: `[version, to, from, nonce, value, gas_limit, gas_fee_cap, gas_premium, method,
/// params]` — note `to` before `from`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize_tuple)]
pub struct Message {
    /// Message format version; always 0.
    pub version: u64,
    /// The recipient.
    pub to: Address,
    /// The sender.
    pub from: Address,
    /// The sender's nonce (Lotus: sequence).
    pub nonce: u64,
    /// The value transferred.
    pub value: TokenAmount,
    /// The most gas the message may use.
    pub gas_limit: u64,
    /// The most the sender pays per unit of gas.
    pub gas_fee_cap: TokenAmount,
    /// The part of the fee cap paid to the block producer per unit of gas.
    pub gas_premium: TokenAmount,
    /// The method invoked on the recipient (0 is a plain send).
    pub method: MethodNum,
    /// The CBOR parameters of the method.
    #[serde(with = "strict_bytes")]
    pub params: Vec<u8>,
}

impl Message {
    /// A version-0 message with its gas fields left at zero, for
    /// [`crate::chain::Chain::estimate_gas`] to fill in.
    pub fn new(
        from: Address,
        to: Address,
        nonce: u64,
        value: TokenAmount,
        method: MethodNum,
        params: Vec<u8>,
    ) -> Self {
        Message {
            version: 0,
            to,
            from,
            nonce,
            value,
            gas_limit: 0,
            gas_fee_cap: TokenAmount::default(),
            gas_premium: TokenAmount::default(),
            method,
            params,
        }
    }

    /// The message's CBOR.
    pub fn to_cbor(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(fvm_ipld_encoding::to_vec(self)?)
    }

    /// Decodes a message from its CBOR.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode::decode(bytes)
    }

    /// The message's CID: CIDv1, dag-cbor, blake2b-256 of its CBOR. A secp256k1 sender
    /// signs the bytes of this CID.
    pub fn cid(&self) -> Result<Cid, EncodeError> {
        Ok(cid_of(&self.to_cbor()?))
    }
}

/// A message with its sender's signature.
///
/// CBOR: `[message, signature]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize_tuple)]
pub struct SignedMessage {
    /// The message.
    pub message: Message,
    /// The sender's signature.
    pub signature: Signature,
}

impl SignedMessage {
    /// The signed message's CBOR.
    pub fn to_cbor(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(fvm_ipld_encoding::to_vec(self)?)
    }

    /// Decodes a signed message from its CBOR.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode::decode(bytes)
    }

    /// The CID the chain knows the message by: over the signed message's CBOR for a
    /// secp256k1 signature, and the unsigned message's CID for BLS (whose signatures are
    /// aggregated in blocks).
    pub fn cid(&self) -> Result<Cid, EncodeError> {
        match self.signature.sig_type {
            SignatureType::BLS => self.message.cid(),
            SignatureType::Secp256k1 => Ok(cid_of(&self.to_cbor()?)),
        }
    }
}

/// The version of a message, which must be 0.
fn version_field(ipld: &Ipld, what: &'static str) -> Result<u64, DecodeError> {
    match decode::u64_field(ipld, what)? {
        0 => Ok(0),
        version => Err(DecodeError::IntegerOutOfRange { what, value: i128::from(version) }),
    }
}

tuple_from_ipld!(Message as "message" {
    version: version_field,
    to: decode::address_field,
    from: decode::address_field,
    nonce: decode::u64_field,
    value: decode::amount_field,
    gas_limit: decode::u64_field,
    gas_fee_cap: decode::amount_field,
    gas_premium: decode::amount_field,
    method: decode::u64_field,
    params: decode::byte_vec_field,
});

tuple_from_ipld!(SignedMessage as "signed_message" {
    message: |item, _| Message::from_ipld(item),
    signature: |item, _| decode::signature_field(item),
});
