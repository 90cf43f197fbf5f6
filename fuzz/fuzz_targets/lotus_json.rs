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
use paych_core::chain::Receipt;
use paych_core::jsonrpc::RpcResponse;
use paych_core::lotus_json::{
    self as json, Actor, ActorState, InvocResult, LotusJson, MsgLookup, TipSet,
};
use paych_core::types::{
    Address, Message, ModVerifyParams, Network, PaychState, Signature, SignedMessage,
    SignedVoucher, TokenAmount,
};

fn check<T: LotusJson + PartialEq + std::fmt::Debug>(what: &str, text: &str) {
    let Some((value, written, again)) = read_write_read::<T>(what, text) else { return };
    assert_eq!(again, value, "{what} changed in a round trip");
    assert_eq!(
        json::to_string(&again, Network::Testnet).ok(),
        Some(written),
        "{what}: not canonical"
    );
}

/// Reads `text`; when it reads, writes the value and reads it back.
fn read_write_read<T: LotusJson + std::fmt::Debug>(
    what: &str,
    text: &str,
) -> Option<(T, String, T)> {
    let value = json::from_str::<T>(text).ok()?;
    let written = match json::to_string(&value, Network::Testnet) {
        Ok(written) => written,
        Err(e) => panic!("a {what} read from Lotus JSON does not write: {e}\n{value:?}"),
    };
    let again = match json::from_str::<T>(&written) {
        Ok(again) => again,
        Err(e) => panic!("a {what} written as Lotus JSON does not read: {e}\n{written}"),
    };
    Some((value, written, again))
}

/// The actor's own state is carried as raw JSON, and serde_json reads floats only to within
/// a unit in the last place: the round trip compares what paych reads (balance and code).
fn check_actor_state(text: &str) {
    let Some((value, _, again)) = read_write_read::<ActorState>("actor state", text) else {
        return;
    };
    assert_eq!((&again.balance, &again.code), (&value.balance, &value.code), "actor state changed");
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
        5 => check_actor_state(text),
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
