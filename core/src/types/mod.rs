//! The payment-channel actor's wire types and the Filecoin primitives they are made of.
//!
//! Every type here is encoded exactly as the chain encodes it (tuple DAG-CBOR, checked
//! against golden vectors) and decoded through [`decode`], which rejects wrong arity,
//! trailing bytes, unknown signature types and oversized amounts with a typed
//! [`DecodeError`]. This module owns the bytes; it never validates business rules (that is
//! [`crate::actor`]'s job).

pub mod actor_params;
pub mod decode;
pub mod fil;
pub mod message;
pub mod voucher;

use cid::Cid;
use multihash::Multihash;

use crate::crypto::hash::{blake2b, blake2b_256};

pub use actor_params::{
    ConstructorParams, ExecParams, ExecReturn, LaneState, PaychState, UpdateChannelStateParams,
};
pub use decode::{DecodeError, FromIpld};
pub use fil::{format_fil, parse_fil, FilParseError};
pub use fvm_shared::address::{Address, Network, Protocol};
pub use fvm_shared::clock::ChainEpoch;
pub use fvm_shared::crypto::signature::{Signature, SignatureType};
pub use fvm_shared::econ::TokenAmount;
pub use fvm_shared::error::ExitCode;
pub use fvm_shared::{ActorID, MethodNum};
pub use message::{Message, SignedMessage};
pub use voucher::{Merge, ModVerifyParams, SignedVoucher, MAX_LANE};

/// Method numbers of the payment-channel actor.
pub mod paych_method {
    use super::MethodNum;
    /// The constructor, called by the Init actor.
    pub const CONSTRUCTOR: MethodNum = 1;
    /// Redeem a voucher.
    pub const UPDATE_CHANNEL_STATE: MethodNum = 2;
    /// Start the settlement period.
    pub const SETTLE: MethodNum = 3;
    /// Pay out and delete the channel after settlement.
    pub const COLLECT: MethodNum = 4;
}

/// A plain value transfer.
pub const METHOD_SEND: MethodNum = 0;
/// The Init actor's `Exec` method, which creates actors.
pub const INIT_EXEC_METHOD: MethodNum = 2;
/// The Init actor's ID.
pub const INIT_ACTOR_ID: ActorID = 1;
/// Epochs between `Settle` and the earliest `Collect` (12 hours of 30-second epochs): the
/// payment-channel actor's `SETTLE_DELAY = EPOCHS_IN_HOUR * 12` (builtin-actors
/// `actors/paych/src/types.rs`), the same on every network ([`crate::network::PRESETS`]).
pub const SETTLE_DELAY: ChainEpoch = 1440;
/// The longest secret `UpdateChannelState` accepts.
pub const MAX_SECRET_SIZE: usize = 256;

/// The multicodec of DAG-CBOR.
pub const DAG_CBOR: u64 = 0x71;
/// The multicodec of blake2b-256.
pub const BLAKE2B_256: u64 = 0xb220;

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode as CBOR: {0}")]
pub struct EncodeError(String);

impl From<fvm_ipld_encoding::Error> for EncodeError {
    fn from(e: fvm_ipld_encoding::Error) -> Self {
        EncodeError(e.to_string())
    }
}

/// The CID of a DAG-CBOR block: CIDv1, dag-cbor codec, blake2b-256 multihash.
pub fn cid_of(cbor: &[u8]) -> Cid {
    let digest = blake2b_256(cbor);
    // A 32-byte digest always fits the 64-byte multihash.
    match Multihash::<64>::wrap(BLAKE2B_256, &digest) {
        Ok(mh) => Cid::new_v1(DAG_CBOR, mh),
        Err(_) => unreachable!("a 32-byte digest fits a 64-byte multihash"),
    }
}

/// Why a text address could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {text:?}: {reason}")]
pub struct AddressError {
    /// The text given.
    pub text: String,
    /// Why it is invalid.
    pub reason: String,
}

/// Parses a text address of either network (`f…` or `t…`), returning it with its network.
pub fn parse_address(text: &str) -> Result<(Address, Network), AddressError> {
    let network = match text.as_bytes().first() {
        Some(b'f') => Network::Mainnet,
        Some(b't') => Network::Testnet,
        _ => {
            return Err(AddressError {
                text: text.to_owned(),
                reason: "must start with f (mainnet) or t (testnets)".to_owned(),
            })
        }
    };
    network
        .parse_address(text)
        .map(|a| (a, network))
        .map_err(|e| AddressError { text: text.to_owned(), reason: e.to_string() })
}

/// Formats an address for `network`, independently of fvm_shared's process-wide setting.
pub fn format_address(addr: &Address, network: Network) -> String {
    let prefix = match network {
        Network::Mainnet => 'f',
        Network::Testnet => 't',
    };
    let bytes = addr.to_bytes();
    let protocol = addr.protocol();
    match protocol {
        Protocol::ID => match addr.id() {
            Ok(id) => format!("{prefix}0{id}"),
            Err(_) => unreachable!("an ID-protocol address has an ID"),
        },
        Protocol::Delegated => {
            // f4<namespace>f<base32(subaddress ‖ checksum)>
            let (namespace, rest) = split_leb128(&bytes[1..]);
            let mut payload = rest.to_vec();
            payload.extend_from_slice(&checksum(&bytes));
            format!("{prefix}4{namespace}f{}", base32_lower(&payload))
        }
        _ => {
            let mut payload = bytes[1..].to_vec();
            payload.extend_from_slice(&checksum(&bytes));
            format!("{prefix}{}{}", bytes[0], base32_lower(&payload))
        }
    }
}

fn checksum(bytes: &[u8]) -> [u8; 4] {
    blake2b(bytes)
}

fn base32_lower(bytes: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(bytes).to_ascii_lowercase()
}

fn split_leb128(bytes: &[u8]) -> (u64, &[u8]) {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i as u32);
        if b & 0x80 == 0 {
            return (value, &bytes[i + 1..]);
        }
    }
    (value, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_every_protocol_for_both_networks_like_fvm() {
        let key = Address::new_secp256k1(&[4u8; 65]).unwrap();
        let actor = Address::new_actor(b"some data");
        let bls = Address::new_bls(&[7u8; 48]).unwrap();
        let delegated = Address::new_delegated(10, &[9u8; 20]).unwrap();
        for addr in [Address::new_id(1001), key, actor, bls, delegated] {
            for net in [Network::Mainnet, Network::Testnet] {
                let text = format_address(&addr, net);
                assert_eq!(parse_address(&text).unwrap(), (addr, net), "{text}");
            }
            // fvm's Display uses the mainnet prefix by default.
            assert_eq!(format_address(&addr, Network::Mainnet), addr.to_string());
        }
    }

    #[test]
    fn rejects_addresses_without_a_network_letter() {
        assert!(parse_address("x01001").is_err());
        assert!(parse_address("").is_err());
        assert!(parse_address("t1aaaa").is_err());
    }
}
