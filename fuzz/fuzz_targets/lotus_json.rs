//! Lotus JSON, as the Lotus client reads a node's answers and the API reads a caller's
//! parameters: vouchers, messages, signed messages, channel and actor state, tipsets,
//! receipts, message lookups, call results, actor code tables, CIDs, addresses, amounts,
//! signatures, and the JSON-RPC response envelope. The first byte picks the type, the rest
//! is the JSON text.
//!
//! Reading never panics and refuses with a typed `JsonError`; an accepted value writes as
//! Lotus JSON that reads back to itself, and writing is a fixed point.
#![no_main]

use std::collections::BTreeMap;

use cid::Cid;
use libfuzzer_sys::fuzz_target;
use paych_core::chain::lotus::json::{
    self, Actor, ActorState, InvocResult, LotusJson, MsgLookup, RpcResponse, TipSet,
};
use paych_core::chain::Receipt;
use paych_core::types::{
    Address, Message, ModVerifyParams, Network, PaychState, Signature, SignedMessage,
    SignedVoucher, TokenAmount,
};

fn check<T: LotusJson + PartialEq + std::fmt::Debug>(what: &str, text: &str) {
    let Ok(value) = json::from_str::<T>(text) else { return };
    let written = match json::to_string(&value, Network::Testnet) {
        Ok(written) => written,
        Err(e) => panic!("a {what} read from Lotus JSON does not write: {e}\n{value:?}"),
    };
    let again = match json::from_str::<T>(&written) {
        Ok(again) => again,
        Err(e) => panic!("a {what} written as Lotus JSON does not read: {e}\n{written}"),
    };
    assert_eq!(again, value, "{what} changed in a round trip");
    assert_eq!(
        json::to_string(&again, Network::Testnet).ok(),
        Some(written),
        "{what}: not canonical"
    );
}

/// The envelope: any JSON the client gets back reads as a response or is refused.
fn check_response(text: &str) {
    let Ok(response) = serde_json::from_str::<RpcResponse>(text) else { return };
    let written = serde_json::to_string(&response).expect("a response writes");
    let again: RpcResponse = serde_json::from_str(&written).expect("a written response reads");
    assert_eq!(again.outcome.is_ok(), response.outcome.is_ok());
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, text)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(text) else { return };
    match kind % 17 {
        0 => check::<SignedVoucher>("voucher", text),
        1 => check::<Message>("message", text),
        2 => check::<SignedMessage>("signed message", text),
        3 => check::<PaychState>("channel state", text),
        4 => check::<Actor>("actor", text),
        5 => check::<ActorState>("actor state", text),
        6 => check::<TipSet>("tipset", text),
        7 => check::<Receipt>("receipt", text),
        8 => check::<MsgLookup>("message lookup", text),
        9 => check::<InvocResult>("call result", text),
        10 => check::<BTreeMap<String, Cid>>("actor code table", text),
        11 => check::<Cid>("CID", text),
        12 => check::<Address>("address", text),
        13 => check::<TokenAmount>("amount", text),
        14 => check::<Signature>("signature", text),
        15 => check::<ModVerifyParams>("voucher extra", text),
        _ => check_response(text),
    }
});
