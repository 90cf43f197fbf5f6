//! Typed decoding of tuple DAG-CBOR into the wire types.
//!
//! Every wire type is decoded in two steps: the bytes are parsed as DAG-CBOR into a generic
//! [`Ipld`] tree (which rejects malformed CBOR and trailing bytes), then the tree is checked
//! field by field against the tuple layout of the type. Each failure is a [`DecodeError`]
//! variant that names what was wrong, so that callers (the network, the API, the CLI) can
//! report it precisely. Decoding never panics, whatever the input.

use std::convert::Infallible;

use cid::Cid;
use fvm_shared::address::Address;
use fvm_shared::bigint::{BigInt, Sign};
use fvm_shared::crypto::signature::{Signature, SignatureType};
use fvm_shared::econ::TokenAmount;
use ipld_core::ipld::Ipld;

/// The largest encoded big integer (sign byte included) that Filecoin accepts.
pub const MAX_BIGINT_BYTES: usize = 128;

/// Why bytes could not be decoded as a Filecoin wire type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not well-formed DAG-CBOR.
    #[error("not valid DAG-CBOR: {0}")]
    Cbor(String),
    /// A complete value was decoded but more bytes followed it.
    #[error("trailing bytes after the encoded value")]
    TrailingBytes,
    /// A tuple had the wrong number of items.
    #[error("{what}: expected an array of {expected} items, found {found}")]
    WrongArity {
        /// The type or field being decoded.
        what: &'static str,
        /// Items the tuple layout requires.
        expected: usize,
        /// Items found.
        found: usize,
    },
    /// A field had the wrong CBOR kind.
    #[error("{what}: expected {expected}, found {found}")]
    WrongKind {
        /// The field being decoded.
        what: &'static str,
        /// The kind the layout requires.
        expected: &'static str,
        /// The kind found.
        found: &'static str,
    },
    /// An integer does not fit the field's range.
    #[error("{what}: integer {value} out of range")]
    IntegerOutOfRange {
        /// The field being decoded.
        what: &'static str,
        /// The integer found.
        value: i128,
    },
    /// A token amount is longer than Filecoin allows.
    #[error("{what}: amount of {len} bytes exceeds the {MAX_BIGINT_BYTES}-byte limit")]
    AmountTooLarge {
        /// The field being decoded.
        what: &'static str,
        /// Encoded length, sign byte included.
        len: usize,
    },
    /// A token amount's first byte is neither 0 (positive) nor 1 (negative).
    #[error("{what}: invalid sign byte {byte:#04x} in amount")]
    InvalidAmountSign {
        /// The field being decoded.
        what: &'static str,
        /// The byte found.
        byte: u8,
    },
    /// A signature's type byte is not one Filecoin defines for vouchers and messages.
    #[error("unknown signature type {0} (1 = secp256k1, 2 = BLS)")]
    UnknownSignatureType(u8),
    /// A signature byte string was empty (no type byte).
    #[error("empty signature bytes")]
    EmptySignature,
    /// An address failed to parse from its binary form.
    #[error("{what}: invalid address: {reason}")]
    InvalidAddress {
        /// The field being decoded.
        what: &'static str,
        /// Why the address is invalid.
        reason: String,
    },
    /// A text form was not valid unpadded base64url.
    #[error("not valid unpadded base64url: {0}")]
    Base64(String),
    /// A fixed-length byte field had another length.
    #[error("{what}: expected {expected} bytes, found {found}")]
    WrongLength {
        /// The field being decoded.
        what: &'static str,
        /// The length the layout requires.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// A bounded field (a list's items, a string's bytes) is longer than its bound.
    #[error("{what}: {found} exceeds the bound of {max}")]
    TooLong {
        /// The field being decoded.
        what: &'static str,
        /// The bound.
        max: usize,
        /// The length found.
        found: usize,
    },
}

/// A wire type that can be rebuilt from a decoded DAG-CBOR tree.
pub trait FromIpld: Sized {
    /// Checks `ipld` against the type's tuple layout and builds the value.
    fn from_ipld(ipld: &Ipld) -> Result<Self, DecodeError>;
}

/// Decodes `bytes` as exactly one DAG-CBOR value of type `T`.
pub fn decode<T: FromIpld>(bytes: &[u8]) -> Result<T, DecodeError> {
    T::from_ipld(&parse(bytes)?)
}

/// Parses `bytes` as exactly one DAG-CBOR value.
pub fn parse(bytes: &[u8]) -> Result<Ipld, DecodeError> {
    serde_ipld_dagcbor::from_slice::<Ipld>(bytes).map_err(|e| match e {
        serde_ipld_dagcbor::DecodeError::<Infallible>::TrailingData => DecodeError::TrailingBytes,
        other => DecodeError::Cbor(other.to_string()),
    })
}

/// Implements `serde::Deserialize` for a [`FromIpld`] type through the typed decoder, so
/// that the type decodes identically when embedded in other serde structures.
macro_rules! deserialize_via_ipld {
    ($t:ty) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let ipld = <ipld_core::ipld::Ipld as serde::Deserialize>::deserialize(d)?;
                <$t as $crate::types::decode::FromIpld>::from_ipld(&ipld)
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use deserialize_via_ipld;

/// Implements [`FromIpld`] (and `serde::Deserialize` through it) for a struct encoded as
/// the tuple of its fields in declaration order. Each field is decoded by its function,
/// called with the item and the field's name for errors, `"<what>.<field>"`.
macro_rules! tuple_from_ipld {
    ($t:ident as $what:literal { $($field:ident: $decode:expr),+ $(,)? }) => {
        impl $crate::types::decode::FromIpld for $t {
            fn from_ipld(
                ipld: &ipld_core::ipld::Ipld,
            ) -> Result<Self, $crate::types::decode::DecodeError> {
                const ARITY: usize = [$(stringify!($field)),+].len();
                let items = $crate::types::decode::tuple(ipld, $what, ARITY)?;
                let [$($field),+] = items else {
                    return Err($crate::types::decode::DecodeError::WrongArity {
                        what: $what,
                        expected: ARITY,
                        found: items.len(),
                    });
                };
                Ok($t { $($field: ($decode)($field, concat!($what, ".", stringify!($field)))?),+ })
            }
        }
        $crate::types::decode::deserialize_via_ipld!($t);
    };
}
pub(crate) use tuple_from_ipld;

/// The name of a DAG-CBOR value's kind, for error messages.
pub fn kind(ipld: &Ipld) -> &'static str {
    match ipld {
        Ipld::Null => "null",
        Ipld::Bool(_) => "bool",
        Ipld::Integer(_) => "integer",
        Ipld::Float(_) => "float",
        Ipld::String(_) => "string",
        Ipld::Bytes(_) => "bytes",
        Ipld::List(_) => "array",
        Ipld::Map(_) => "map",
        Ipld::Link(_) => "link",
    }
}

fn wrong(what: &'static str, expected: &'static str, found: &Ipld) -> DecodeError {
    DecodeError::WrongKind { what, expected, found: kind(found) }
}

/// The items of a tuple of exactly `n` items.
pub fn tuple<'a>(ipld: &'a Ipld, what: &'static str, n: usize) -> Result<&'a [Ipld], DecodeError> {
    match ipld {
        Ipld::List(items) if items.len() == n => Ok(items),
        Ipld::List(items) => Err(DecodeError::WrongArity { what, expected: n, found: items.len() }),
        other => Err(wrong(what, "array", other)),
    }
}

/// The items of an array of any length.
pub fn list<'a>(ipld: &'a Ipld, what: &'static str) -> Result<&'a [Ipld], DecodeError> {
    match ipld {
        Ipld::List(items) => Ok(items),
        other => Err(wrong(what, "array", other)),
    }
}

/// An integer field in the range of `T`; `kind` names what is expected, for errors.
fn integer_field<T: TryFrom<i128>>(
    ipld: &Ipld,
    what: &'static str,
    kind: &'static str,
) -> Result<T, DecodeError> {
    match ipld {
        Ipld::Integer(i) => {
            T::try_from(*i).map_err(|_| DecodeError::IntegerOutOfRange { what, value: *i })
        }
        other => Err(wrong(what, kind, other)),
    }
}

/// An unsigned integer field.
pub fn u64_field(ipld: &Ipld, what: &'static str) -> Result<u64, DecodeError> {
    integer_field(ipld, what, "unsigned integer")
}

/// A signed integer field.
pub fn i64_field(ipld: &Ipld, what: &'static str) -> Result<i64, DecodeError> {
    integer_field(ipld, what, "integer")
}

/// A byte-string field.
pub fn bytes_field<'a>(ipld: &'a Ipld, what: &'static str) -> Result<&'a [u8], DecodeError> {
    match ipld {
        Ipld::Bytes(b) => Ok(b),
        other => Err(wrong(what, "bytes", other)),
    }
}

/// A byte-string field, owned.
pub fn byte_vec_field(ipld: &Ipld, what: &'static str) -> Result<Vec<u8>, DecodeError> {
    bytes_field(ipld, what).map(<[u8]>::to_vec)
}

/// A byte-string field of exactly `N` bytes.
pub fn array_field<const N: usize>(
    ipld: &Ipld,
    what: &'static str,
) -> Result<[u8; N], DecodeError> {
    let bytes = bytes_field(ipld, what)?;
    bytes.try_into().map_err(|_| DecodeError::WrongLength { what, expected: N, found: bytes.len() })
}

/// A text-string field of at most `max` bytes.
pub fn string_field(ipld: &Ipld, what: &'static str, max: usize) -> Result<String, DecodeError> {
    match ipld {
        Ipld::String(s) if s.len() > max => Err(DecodeError::TooLong { what, max, found: s.len() }),
        Ipld::String(s) => Ok(s.clone()),
        other => Err(wrong(what, "string", other)),
    }
}

/// The items of an array of at most `max` items.
pub fn bounded_list<'a>(
    ipld: &'a Ipld,
    what: &'static str,
    max: usize,
) -> Result<&'a [Ipld], DecodeError> {
    let items = list(ipld, what)?;
    if items.len() > max {
        return Err(DecodeError::TooLong { what, max, found: items.len() });
    }
    Ok(items)
}

/// A CID link field.
pub fn cid_field(ipld: &Ipld, what: &'static str) -> Result<Cid, DecodeError> {
    match ipld {
        Ipld::Link(c) => Ok(*c),
        other => Err(wrong(what, "CID link", other)),
    }
}

/// An address field (its binary form in a byte string).
pub fn address_field(ipld: &Ipld, what: &'static str) -> Result<Address, DecodeError> {
    let bytes = bytes_field(ipld, what)?;
    Address::from_bytes(bytes)
        .map_err(|e| DecodeError::InvalidAddress { what, reason: e.to_string() })
}

/// A token amount field (sign byte and big-endian magnitude, at most 128 bytes).
pub fn amount_field(ipld: &Ipld, what: &'static str) -> Result<TokenAmount, DecodeError> {
    let bytes = bytes_field(ipld, what)?;
    if bytes.len() > MAX_BIGINT_BYTES {
        return Err(DecodeError::AmountTooLarge { what, len: bytes.len() });
    }
    let Some((&sign, magnitude)) = bytes.split_first() else {
        return Ok(TokenAmount::default());
    };
    let sign = match sign {
        0 => Sign::Plus,
        1 => Sign::Minus,
        byte => return Err(DecodeError::InvalidAmountSign { what, byte }),
    };
    Ok(TokenAmount::from_atto(BigInt::from_bytes_be(sign, magnitude)))
}

/// A signature field (type byte then data; secp256k1 or BLS).
pub fn signature_field(ipld: &Ipld) -> Result<Signature, DecodeError> {
    let bytes = bytes_field(ipld, "signature")?;
    let Some((&ty, data)) = bytes.split_first() else {
        return Err(DecodeError::EmptySignature);
    };
    let sig_type = match ty {
        1 => SignatureType::Secp256k1,
        2 => SignatureType::BLS,
        other => return Err(DecodeError::UnknownSignatureType(other)),
    };
    Ok(Signature { sig_type, bytes: data.to_vec() })
}

/// `None` for null, the value otherwise.
pub fn optional(ipld: &Ipld) -> Option<&Ipld> {
    match ipld {
        Ipld::Null => None,
        other => Some(other),
    }
}
