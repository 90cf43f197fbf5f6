//! The chain methods Lotus's `paych` commands call on the same API as the `Paych*` ones —
//! `StateWaitMsg` (`lotus paych settle`, `collect`, `voucher submit` wait with it),
//! `StateSearchMsg`, `ChainHead` — and `Version`, which `lotus` calls when it connects to
//! `/rpc/v1`. Each is forwarded to the node's chain backend ([`Chain`]: `wait`, `search`,
//! `head`) and answered in Lotus's JSON shape.
//!
//! It reads the chain and never sends a message.
//!
//! [`Chain`]: paych_core::chain::Chain

use std::time::Duration;

use cid::Cid;
use paych_core::chain::MessageLookup;
use paych_core::jsonrpc::RpcError;
use paych_core::lotus_json::{self as json, MsgLookupJson};

use super::context::{handlers, method_error, Api};
use super::methods::*;

/// The longest `StateWaitMsg` waits for a message before answering an error. Lotus waits
/// until the caller goes away; a bound keeps a forgotten call from holding a request slot
/// forever.
pub const MAX_STATE_WAIT: Duration = Duration::from_secs(60 * 60);

/// Lotus's `FullAPIVersion1` (`api/version.go`: `newVer(2, 3, 0)`), what `/rpc/v1`'s
/// `Version` answers and what `lotus` compares major and minor of when it connects
/// (`cli/util/api.go`).
pub const FULL_API_VERSION_1: u32 = version(2, 3, 0);
/// Lotus's `FullAPIVersion0` (`newVer(1, 5, 0)`), what `/rpc/v0`'s `Version` answers
/// (`api/v0api/v1_wrapper.go`).
pub const FULL_API_VERSION_0: u32 = version(1, 5, 0);
/// Filecoin's block delay, in seconds (Lotus's `buildconstants.BlockDelaySecs` on mainnet
/// and calibnet), as `Version`'s `BlockDelay`.
pub const BLOCK_DELAY_SECS: u64 = 30;

/// A semver version encoded as Lotus encodes `api.Version`: `major << 16 | minor << 8 | patch`.
const fn version(major: u8, minor: u8, patch: u8) -> u32 {
    (major as u32) << 16 | (minor as u32) << 8 | patch as u32
}

/// What `Version` answers for API version `api_version`.
fn version_of(api_version: u32) -> ApiVersionJson {
    ApiVersionJson {
        version: format!("paych {}", env!("CARGO_PKG_VERSION")),
        api_version,
        block_delay: BLOCK_DELAY_SECS,
    }
}

handlers! {
    StateWaitMsg(api, (cid, confidence, _limit, _allow_replaced)) => {
        wait(api, &cid, confidence).await
    };
    StateWaitMsgV0(api, (cid, confidence)) => wait(api, &cid, confidence).await;
    StateSearchMsg(api, (_tipset, cid, _limit, _allow_replaced)) => search(api, &cid).await;
    StateSearchMsgV0(api, (cid,)) => search(api, &cid).await;
    ChainHead(api, ()) => {
        let height = api.manager.chain().head().await.map_err(method_error)?;
        api.shape(&json::TipSet { cids: Vec::new(), blocks: Vec::new(), height })
    };
    Version(_api, ()) => Ok(version_of(FULL_API_VERSION_1));
    VersionV0(_api, ()) => Ok(version_of(FULL_API_VERSION_0));
}

/// `StateWaitMsg`: the message's lookup once it has executed and `confidence` more epochs
/// have passed.
async fn wait(api: &Api, cid: &Cid, confidence: u64) -> Result<MsgLookupJson, RpcError> {
    let lookup =
        api.manager.chain().wait(cid, confidence, MAX_STATE_WAIT).await.map_err(method_error)?;
    shape_lookup(api, lookup)
}

/// `StateSearchMsg`: the message's lookup if it has executed, else `null`.
async fn search(api: &Api, cid: &Cid) -> Result<Option<MsgLookupJson>, RpcError> {
    let lookup = api.manager.chain().search(cid).await.map_err(method_error)?;
    lookup.map(|lookup| shape_lookup(api, lookup)).transpose()
}

/// A lookup in Lotus's `MsgLookup` shape. The node's chain interface names the epoch a
/// message executed at, not the tipset: `TipSet` is written as the empty key.
fn shape_lookup(api: &Api, lookup: MessageLookup) -> Result<MsgLookupJson, RpcError> {
    api.shape(&json::MsgLookup {
        message: lookup.message,
        receipt: lookup.receipt,
        tipset: Vec::new(),
        height: lookup.epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_are_encoded_as_lotus_encodes_them() {
        assert_eq!(FULL_API_VERSION_1, 0x0002_0300);
        assert_eq!(FULL_API_VERSION_0, 0x0001_0500);
    }
}
