//! Every method of the node's API, declared once: its JSON-RPC name, the [`Permission`] it
//! needs, its positional parameters (a tuple of [`params`](super::params) types) and its
//! result (a Lotus JSON shape). From this one list come the server's dispatch, the
//! permission table [`METHODS`], the per-method labels of the API's metrics, the method
//! table of `docs/api.md` ([`method_table`]) and the typed calls of
//! [`ApiClient::call`](super::client::ApiClient::call).
//!
//! Adding a method: add a line to the list below, and its handler (the server's `Handler`)
//! to the `handlers!` list of its namespace's module (`rpc/paych.rs`, `rpc/wallet.rs`,
//! `rpc/net.rs`, `rpc/retrieval.rs`, `rpc/chain.rs`); a declared method without a handler
//! does not compile. Where Lotus's v0 and v1 APIs differ (`StateWaitMsg`, `StateSearchMsg`,
//! `Version`), a name has one declaration per version, marked `only V0` or `only V1`.

use async_trait::async_trait;
use cid::Cid;
use paych_core::jsonrpc::{error_code, RpcError};
use paych_core::lotus_json::api::{
    AddrInfoJson, ChannelAvailableFunds, ChannelInfo, ChannelStatusJson, InvoiceJson, ManifestJson,
    PaidJson, PaymentInfo, ReconciledJson, RetrievedJson, RouteReceiptJson, VoucherCreateResult,
};
use paych_core::lotus_json::{CidJson, MsgLookupJson, SignedVoucherJson, TipSetJson, TipSetKey};
use paych_core::types::{Address, SignedVoucher, TokenAmount};
use paych_core::wallet::KeyInfo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::auth::Permission;
use super::envelope::{not_found, Params};
use super::params::{
    AddrInfo, Bytes, GetOptions, InvoiceHubs, InvoiceText, KeyType, ParamList, PublishSpec,
    ReadParams, Root, VoucherSpecs,
};

/// One method of the API, as a type: `client.call::<PaychStatus>((channel,))`.
pub trait Method {
    /// The JSON-RPC method name, `Filecoin.<Name>`.
    const NAME: &'static str;
    /// The permission a caller needs.
    const PERMISSION: Permission;
    /// How many trailing parameters a caller may leave out (read as `null`).
    const OPTIONAL: usize = 0;
    /// The one API version that serves this declaration (`None`: both `/rpc/v0` and
    /// `/rpc/v1`). Lotus's v0 and v1 differ in a few methods' parameters (`StateWaitMsg`,
    /// `StateSearchMsg`) and answers (`Version`): each version has its own declaration.
    const ONLY: Option<ApiVersion> = None;
    /// The positional parameters.
    type Params: ParamList;
    /// The result's Lotus JSON shape.
    type Result: Serialize + DeserializeOwned + Send;
}

/// The server's side of a method: what it does with its parameters, given the server's
/// context `C` (the parts the API calls).
#[async_trait]
pub(crate) trait Handler<C: Sync>: Method
where
    Self::Params: ReadParams,
{
    /// Runs the method against `context`.
    async fn handle(context: &C, params: Self::Params) -> Result<Self::Result, RpcError>;
}

/// A version of Lotus's full-node API, served on `/rpc/v0` and `/rpc/v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiVersion {
    /// `/rpc/v0` (Lotus's `v0api`).
    V0,
    /// `/rpc/v1` (Lotus's `api`).
    V1,
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApiVersion::V0 => "v0",
            ApiVersion::V1 => "v1",
        })
    }
}

/// One method as a row of the permission table: its name, how many positional parameters it
/// takes (the last `optional` of them may be left out), and the permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodSpec {
    /// The declaration's type name (unique; a name may be declared once per API version).
    pub key: &'static str,
    /// The JSON-RPC method name.
    pub name: &'static str,
    /// The number of parameters.
    pub arity: usize,
    /// How many trailing parameters may be left out.
    pub optional: usize,
    /// The permission a caller needs.
    pub permission: Permission,
    /// The one API version serving it; `None` for both.
    pub only: Option<ApiVersion>,
}

impl MethodSpec {
    /// The row of method `M`, declared as the type named `key`.
    pub const fn of<M: Method>(key: &'static str) -> MethodSpec {
        MethodSpec {
            key,
            name: M::NAME,
            arity: <M::Params as ParamList>::ARITY,
            optional: M::OPTIONAL,
            permission: M::PERMISSION,
            only: M::ONLY,
        }
    }

    /// Whether API `version` serves this declaration.
    pub fn served_on(&self, version: ApiVersion) -> bool {
        self.only.is_none_or(|only| only == version)
    }
}

/// Declares each method's type, and from the list the permission table and the dispatch.
macro_rules! methods {
    ($(
        $(#[doc = $doc:literal])+
        $ty:ident = $name:literal, $perm:ident $(, optional $opt:literal)? $(, only $only:ident)?:
            ($($param:ty),* $(,)?) -> $result:ty;
    )*) => {
        $(
            $(#[doc = $doc])+
            #[derive(Debug, Clone, Copy)]
            pub struct $ty;

            impl Method for $ty {
                const NAME: &'static str = $name;
                const PERMISSION: Permission = Permission::$perm;
                $(const OPTIONAL: usize = $opt;)?
                $(const ONLY: Option<ApiVersion> = Some(ApiVersion::$only);)?
                type Params = ($($param,)*);
                type Result = $result;
            }
        )*

        /// Every method the API serves.
        pub const METHODS: &[MethodSpec] = &[$(MethodSpec::of::<$ty>(stringify!($ty))),*];

        /// Runs the method declared as `spec` against `context`, its parameters counted.
        pub(crate) async fn dispatch<C: Sync>(
            context: &C,
            spec: &MethodSpec,
            p: Params<'_>,
        ) -> Result<Value, RpcError>
        where
            $($ty: Handler<C>,)*
        {
            match spec.key {
                $(stringify!($ty) => respond::<$ty, C>(context, p).await,)*
                _ => Err(not_found(spec.name)),
            }
        }
    };
}

methods! {
    /// Lotus's `PaychGet(from, to, amount, {OffChain})`: a channel from `from` to `to`
    /// holding `amount` more, created or topped up as needed.
    PaychGet = "Filecoin.PaychGet", Sign, optional 1:
        (Address, Address, TokenAmount, Option<GetOptions>) -> ChannelInfo;
    /// Lotus's `PaychFund(from, to, amount)`: the channel holds `amount` in all.
    PaychFund = "Filecoin.PaychFund", Sign: (Address, Address, TokenAmount) -> ChannelInfo;
    /// `PaychCreate(from, to, amount)`: a new channel.
    PaychCreate = "Filecoin.PaychCreate", Sign: (Address, Address, TokenAmount) -> ChannelInfo;
    /// `PaychAddFunds(ch, amount)`: the add-funds message.
    PaychAddFunds = "Filecoin.PaychAddFunds", Sign: (Address, TokenAmount) -> CidJson;
    /// `PaychReserveFunds(ch, amount)`: the add-funds message if one was needed.
    PaychReserveFunds = "Filecoin.PaychReserveFunds", Sign:
        (Address, TokenAmount) -> Option<CidJson>;
    /// `PaychReleaseFunds(ch, amount)`: reserved funds become available again.
    PaychReleaseFunds = "Filecoin.PaychReleaseFunds", Write: (Address, TokenAmount) -> ();
    /// Lotus's `PaychGetWaitReady(sentinel)`: the channel, once the message has landed.
    PaychGetWaitReady = "Filecoin.PaychGetWaitReady", Sign: (Cid,) -> String;
    /// Lotus's `PaychAvailableFunds(ch)`.
    PaychAvailableFunds = "Filecoin.PaychAvailableFunds", Sign:
        (Address,) -> ChannelAvailableFunds;
    /// Lotus's `PaychAvailableFundsByFromTo(from, to)`.
    PaychAvailableFundsByFromTo = "Filecoin.PaychAvailableFundsByFromTo", Sign:
        (Address, Address) -> ChannelAvailableFunds;
    /// `PaychStatus(ch)`: everything about a channel.
    PaychStatus = "Filecoin.PaychStatus", Read: (Address,) -> ChannelStatusJson;
    /// `PaychList()`: every channel's address.
    PaychList = "Filecoin.PaychList", Read: () -> Vec<String>;
    /// `PaychLookup(from, to)`: the channel from `from` to `to`, if any.
    PaychLookup = "Filecoin.PaychLookup", Read: (Address, Address) -> Option<ChannelInfo>;
    /// `PaychAllocateLane(ch)`: a fresh lane.
    PaychAllocateLane = "Filecoin.PaychAllocateLane", Sign: (Address,) -> u64;
    /// `PaychSettle(ch)`: the settle message.
    PaychSettle = "Filecoin.PaychSettle", Sign: (Address,) -> CidJson;
    /// `PaychCollect(ch)`: the collect message.
    PaychCollect = "Filecoin.PaychCollect", Sign: (Address,) -> CidJson;
    /// Lotus's `PaychNewPayment(from, to, [VoucherSpec])`.
    PaychNewPayment = "Filecoin.PaychNewPayment", Sign:
        (Address, Address, VoucherSpecs) -> PaymentInfo;
    /// `PaychVoucherCreate(ch, amount, lane)`.
    PaychVoucherCreate = "Filecoin.PaychVoucherCreate", Sign:
        (Address, TokenAmount, u64) -> VoucherCreateResult;
    /// `PaychVoucherCheckValid(ch, voucher)`.
    PaychVoucherCheckValid = "Filecoin.PaychVoucherCheckValid", Read:
        (Address, SignedVoucher) -> ();
    /// `PaychVoucherCheckSpendable(ch, voucher, secret, proof)`.
    PaychVoucherCheckSpendable = "Filecoin.PaychVoucherCheckSpendable", Read:
        (Address, SignedVoucher, Bytes, Bytes) -> bool;
    /// `PaychVoucherAdd(ch, voucher, proof, minDelta)`: the delta credited, attoFIL.
    PaychVoucherAdd = "Filecoin.PaychVoucherAdd", Write:
        (Address, SignedVoucher, Bytes, TokenAmount) -> String;
    /// `PaychVoucherList(ch)`.
    PaychVoucherList = "Filecoin.PaychVoucherList", Write:
        (Address,) -> Vec<SignedVoucherJson>;
    /// `PaychVoucherBestSpendable(ch)` (ours): the best voucher per lane.
    PaychVoucherBestSpendable = "Filecoin.PaychVoucherBestSpendable", Write:
        (Address,) -> Vec<SignedVoucherJson>;
    /// `PaychVoucherSubmit(ch, voucher, secret, proof)`: the message.
    PaychVoucherSubmit = "Filecoin.PaychVoucherSubmit", Sign:
        (Address, SignedVoucher, Bytes, Bytes) -> CidJson;
    /// `WalletNew("secp256k1")`: a new key's address.
    WalletNew = "Filecoin.WalletNew", Write: (KeyType,) -> String;
    /// `WalletList()`.
    WalletList = "Filecoin.WalletList", Write: () -> Vec<String>;
    /// `WalletHas(addr)`.
    WalletHas = "Filecoin.WalletHas", Write: (Address,) -> bool;
    /// `WalletDefaultAddress()`.
    WalletDefaultAddress = "Filecoin.WalletDefaultAddress", Write: () -> Option<String>;
    /// `WalletBalance(addr)`, attoFIL.
    WalletBalance = "Filecoin.WalletBalance", Read: (Address,) -> String;
    /// `WalletExport(addr)`: the key.
    WalletExport = "Filecoin.WalletExport", Admin: (Address,) -> KeyInfo;
    /// `WalletImport(key)`: its address.
    WalletImport = "Filecoin.WalletImport", Admin: (KeyInfo,) -> String;
    /// `PaychPay(ch, amount, flow)` (ours): a voucher made and sent to the channel's payee.
    PaychPay = "Filecoin.PaychPay", Sign, optional 1:
        (Address, TokenAmount, Option<String>) -> PaidJson;
    /// `PaychInvoice(payee, amount, expirySeconds, hubs)` (ours): a signed invoice from a key
    /// of the wallet, its secret kept under its payment hash.
    PaychInvoice = "Filecoin.PaychInvoice", Sign, optional 1:
        (Address, TokenAmount, u64, InvoiceHubs) -> InvoiceJson;
    /// `PaychPayInvoice(invoice, maxFee)` (ours): the invoice paid through one of its hubs
    /// with a conditional voucher on the node's channel to that hub; the receipt once the
    /// payee's secret came back (`maxFee` omitted or `null`: no bound).
    PaychPayInvoice = "Filecoin.PaychPayInvoice", Sign, optional 1:
        (InvoiceText, Option<TokenAmount>) -> RouteReceiptJson;
    /// `PaychReconcile(ch)` (ours): the payer of an inbound channel asked for one combined
    /// voucher.
    PaychReconcile = "Filecoin.PaychReconcile", Write: (Address,) -> ReconciledJson;
    /// `NetConnect(AddrInfo)`.
    NetConnect = "Filecoin.NetConnect", Write: (AddrInfo,) -> ();
    /// `NetPeers()`.
    NetPeers = "Filecoin.NetPeers", Read: () -> Vec<AddrInfoJson>;
    /// `NetAddrsListen()`.
    NetAddrsListen = "Filecoin.NetAddrsListen", Read: () -> AddrInfoJson;
    /// `PaychRetrievalPublish(spec)` (ours): a blob published for paid retrieval.
    PaychRetrievalPublish = "Filecoin.PaychRetrievalPublish", Write:
        (PublishSpec,) -> ManifestJson;
    /// `PaychRetrieve(ch, root, maxPricePerChunk, maxTotal)` (ours): a paid retrieval.
    PaychRetrieve = "Filecoin.PaychRetrieve", Sign, optional 1:
        (Address, Root, TokenAmount, Option<TokenAmount>) -> RetrievedJson;
    /// Lotus v1's `StateWaitMsg(cid, confidence, limit, allowReplaced)`: the message's
    /// lookup once it has executed and `confidence` epochs have passed.
    StateWaitMsg = "Filecoin.StateWaitMsg", Read, only V1:
        (Cid, u64, i64, bool) -> MsgLookupJson;
    /// Lotus v0's `StateWaitMsg(cid, confidence)`.
    StateWaitMsgV0 = "Filecoin.StateWaitMsg", Read, only V0: (Cid, u64) -> MsgLookupJson;
    /// Lotus v1's `StateSearchMsg(tsk, cid, limit, allowReplaced)`: the message's lookup,
    /// `null` while it has not executed.
    StateSearchMsg = "Filecoin.StateSearchMsg", Read, only V1:
        (TipSetKey, Cid, i64, bool) -> Option<MsgLookupJson>;
    /// Lotus v0's `StateSearchMsg(cid)`.
    StateSearchMsgV0 = "Filecoin.StateSearchMsg", Read, only V0:
        (Cid,) -> Option<MsgLookupJson>;
    /// `ChainHead()`: the head's height (the node's chain names no blocks).
    ChainHead = "Filecoin.ChainHead", Read: () -> TipSetJson;
    /// Lotus v1's `Version()`: `APIVersion` 2.3.0, what `lotus` checks when it connects.
    Version = "Filecoin.Version", Read, only V1: () -> ApiVersionJson;
    /// Lotus v0's `Version()`: `APIVersion` 1.5.0.
    VersionV0 = "Filecoin.Version", Read, only V0: () -> ApiVersionJson;
}

/// Lotus's `APIVersion`, what `Filecoin.Version` answers: `{"Version","APIVersion","BlockDelay"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApiVersionJson {
    /// The node's version, free text.
    pub version: String,
    /// The API's semver, encoded as Lotus encodes `api.Version`:
    /// `major << 16 | minor << 8 | patch`.
    #[serde(rename = "APIVersion")]
    pub api_version: u32,
    /// The block delay, in seconds.
    pub block_delay: u64,
}

/// The declaration of the method named `name` that API `version` serves.
pub fn method_spec(version: ApiVersion, name: &str) -> Option<&'static MethodSpec> {
    METHODS.iter().find(|m| m.name == name && m.served_on(version))
}

/// Reads `M`'s parameters, runs it against `context` and writes its result.
async fn respond<M: Handler<C>, C: Sync>(context: &C, mut p: Params<'_>) -> Result<Value, RpcError>
where
    M::Params: ReadParams,
{
    // A parameter that does not decode is a parse error, as go-jsonrpc answers it
    // (`handler.go`: "unmarshaling params for …").
    let params =
        M::Params::read_all(&mut p).map_err(|e| RpcError { code: error_code::PARSE_ERROR, ..e })?;
    let result = M::handle(context, params).await?;
    serde_json::to_value(result)
        .map_err(|e| RpcError::new(error_code::INTERNAL_ERROR, e.to_string()))
}

/// The method table of `docs/api.md`: one row a method, with its parameter count and
/// permission, in declaration order.
pub fn method_table() -> String {
    let mut table = String::from("| method | parameters | permission |\n|---|---|---|\n");
    for m in METHODS {
        let mut params = match m.optional {
            0 => m.arity.to_string(),
            n => format!("{} ({} optional)", m.arity, n),
        };
        if let Some(only) = m.only {
            params.push_str(&format!(", {only} only"));
        }
        table.push_str(&format!("| `{}` | {} | {} |\n", m.name, params, m.permission));
    }
    table
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn every_method_is_declared_once() {
        for (i, m) in METHODS.iter().enumerate() {
            let clash = |n: &MethodSpec| {
                n.name == m.name
                    && [ApiVersion::V0, ApiVersion::V1]
                        .iter()
                        .any(|v| n.served_on(*v) && m.served_on(*v))
            };
            assert!(!METHODS[i + 1..].iter().any(clash), "{}", m.name);
            assert!(m.optional <= m.arity);
        }
    }

    #[test]
    fn docs_api_md_lists_every_declared_method() {
        let docs = include_str!("../../../docs/api.md");
        let table = method_table();
        assert!(
            docs.contains(&format!("<!-- generated: method table -->\n{table}<!-- end")),
            "docs/api.md must hold the method table as the declarations render it:\n{table}"
        );
    }

    #[test]
    fn docs_api_md_describes_every_method_with_its_permission() {
        let docs = include_str!("../../../docs/api.md");
        for m in METHODS {
            let row = format!("| `{}` | `[", m.name);
            let line = docs.lines().find(|l| l.starts_with(&row));
            let line = line.unwrap_or_else(|| panic!("docs/api.md describes no {}", m.name));
            assert!(line.ends_with(&format!("| {} |", m.permission)), "{}: {line}", m.name);
        }
    }
}
