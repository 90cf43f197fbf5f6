//! The actor's other CBOR types, as a Lotus node serves them (`ChainReadObj`, message
//! parameters and returns): messages, signed messages, channel state, lane states and the
//! parameters and returns of the payment-channel and Init actors. The first byte picks the
//! type, the rest is its CBOR.
//!
//! Decoding never panics; an accepted value re-encodes canonically to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paych_core::types::decode::{self, FromIpld};
use paych_core::types::{
    ConstructorParams, ExecParams, ExecReturn, LaneState, Message, PaychState, SignedMessage,
    UpdateChannelStateParams,
};
use paych_fuzz::{check_cbor, check_round_trip};
use serde::Serialize;

fn check<T: FromIpld + Serialize + PartialEq + std::fmt::Debug>(what: &str, data: &[u8]) {
    check_round_trip(what, data, decode::decode::<T>, |v: &T| fvm_ipld_encoding::to_vec(v));
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, cbor)) = data.split_first() else { return };
    match kind % 8 {
        0 => check::<Message>("message", cbor),
        1 => {
            if let Some(m) = check_cbor!("signed message", cbor, SignedMessage) {
                m.cid().expect("a decoded signed message has a CID");
            }
        }
        2 => check::<PaychState>("channel state", cbor),
        3 => check::<LaneState>("lane state", cbor),
        4 => check::<UpdateChannelStateParams>("update channel state params", cbor),
        5 => check::<ConstructorParams>("constructor params", cbor),
        6 => check::<ExecParams>("exec params", cbor),
        _ => check::<ExecReturn>("exec return", cbor),
    }
});
