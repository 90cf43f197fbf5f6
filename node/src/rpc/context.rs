//! What the API's methods run against: the manager, the wallet, the node's payer and
//! network (when it has them), its metrics, its chain backend's head tipsets
//! ([`HeadTipsets`]), and the network preset addresses are written for and chain constants
//! come from; and the one mapping of the manager's and other parts' errors to JSON-RPC
//! errors, their addresses written with the API's prefix ([`with_network_prefix`]).
//!
//! It holds no state of its own and decides nothing about channels or vouchers.

use std::sync::Arc;

use paych_core::chain::devnet::Devnet;
use paych_core::chain::lotus::LotusChain;
use paych_core::jsonrpc::{error_code, RpcError};
use paych_core::lotus_json::{self as json, LotusJson};
use paych_core::manager::PaymentChannelManager;
use paych_core::network::NetworkPreset;
use paych_core::types::{format_address, parse_address, Address, Network};
use paych_core::wallet::KeyStore;

use crate::metrics::Metrics;
use crate::network::NetworkClient;
use crate::pay::Payer;
use crate::retrieval::RetrievalProvider;
use crate::route::Routes;

/// The JSON-RPC error code of a method that ran and failed (Lotus's code for errors a
/// method returns), and of a call refused for lack of permission.
pub const METHOD_ERROR: i64 = 1;

/// Why a method that needs the node's libp2p networking fails in an API without it.
const NO_NODE: &str = "this API serves no libp2p node";
/// Why paying an invoice fails in an API without the node's routing.
const NO_ROUTES: &str = "this API serves no node that routes payments";

/// The parts the API's methods call.
pub(crate) struct Api {
    pub(crate) manager: PaymentChannelManager,
    pub(crate) wallet: Arc<KeyStore>,
    pub(crate) payer: Option<Arc<Payer>>,
    pub(crate) retrieval: Option<Arc<RetrievalProvider>>,
    /// The node's routed payments, when it has a libp2p node.
    pub(crate) routes: Option<Arc<Routes>>,
    pub(crate) metrics: Arc<Metrics>,
    /// The prefix addresses are written with: the preset's.
    pub(crate) network: Network,
    /// The daemon's network: its chain constants.
    pub(crate) preset: &'static NetworkPreset,
    /// The chain backend's head tipsets, when the server was given them.
    pub(crate) tipsets: Option<Arc<dyn HeadTipsets>>,
}

/// A chain backend that knows its head tipset in full (its key and its blocks), as Lotus's
/// `ChainHead` answers it; the manager's [`Chain`](paych_core::chain::Chain) knows only the
/// head's epoch.
#[async_trait::async_trait]
pub trait HeadTipsets: Send + Sync {
    /// The head tipset in Lotus JSON, addresses written for `network`.
    async fn head_tipset(&self, network: Network) -> Result<json::TipSetJson, RpcError>;
}

/// A Lotus node's own `ChainHead`, every field of its blocks as it answered them (so that a
/// Lotus client computes the same tipset key).
#[async_trait::async_trait]
impl HeadTipsets for LotusChain {
    async fn head_tipset(&self, _network: Network) -> Result<json::TipSetJson, RpcError> {
        let head = self.request("ChainHead", Vec::new()).await.map_err(method_error)?;
        serde_json::from_value(head)
            .map_err(|e| method_error(format!("ChainHead: unexpected answer: {e}")))
    }
}

/// The devnet's head, as its own `ChainHead` answers it.
#[async_trait::async_trait]
impl HeadTipsets for Devnet {
    async fn head_tipset(&self, network: Network) -> Result<json::TipSetJson, RpcError> {
        super::devnet::tipset_json(&Devnet::head_tipset(self))
            .to_shape(network)
            .map_err(internal_error)
    }
}

impl Api {
    /// `value` in Lotus JSON, addresses written for the API's network.
    pub(crate) fn shape<T: LotusJson>(&self, value: &T) -> Result<T::Shape, RpcError> {
        value.to_shape(self.network).map_err(internal_error)
    }

    /// An address as the API writes it.
    pub(crate) fn address_text(&self, addr: &Address) -> String {
        format_address(addr, self.network)
    }

    /// The node's payer; an API without a libp2p node has none.
    pub(crate) fn payer(&self) -> Result<&Payer, RpcError> {
        self.payer.as_deref().ok_or_else(|| method_error(NO_NODE))
    }

    /// The node's retrieval provider; an API without a libp2p node has none.
    pub(crate) fn retrieval(&self) -> Result<&RetrievalProvider, RpcError> {
        self.retrieval.as_deref().ok_or_else(|| method_error(NO_NODE))
    }

    /// The node's routed payments; an API without a libp2p node has none.
    pub(crate) fn routes(&self) -> Result<&Routes, RpcError> {
        self.routes.as_deref().ok_or_else(|| method_error(NO_ROUTES))
    }

    /// The node's network.
    pub(crate) fn net(&self) -> Result<&NetworkClient, RpcError> {
        Ok(self.payer()?.network())
    }
}

/// `error` with every address in its text written with the API's prefix. Errors of the
/// libraries print an [`Address`] with fvm_shared's process-wide network, which a server
/// embedded in another process (or a test) does not set: the API's own network decides.
pub(crate) fn with_network_prefix(error: RpcError, network: Network) -> RpcError {
    RpcError { message: addresses_for(&error.message, network), ..error }
}

/// `text` with each word that is a Filecoin address (`f…` or `t…`, checksum and all)
/// written for `network`; everything else as it was.
fn addresses_for(text: &str, network: Network) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let word_len = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
        let (word, after) = rest.split_at(word_len);
        match parse_address(word) {
            Ok((addr, _)) if word.len() > 2 => out.push_str(&format_address(&addr, network)),
            _ => out.push_str(word),
        }
        let gap_len = after.find(|c: char| c.is_ascii_alphanumeric()).unwrap_or(after.len());
        let (gap, next) = after.split_at(gap_len);
        out.push_str(gap);
        rest = next;
    }
    out
}

/// A JSON-RPC error for a failed method.
pub(crate) fn method_error(e: impl std::fmt::Display) -> RpcError {
    RpcError::new(METHOD_ERROR, e.to_string())
}

/// A JSON-RPC error for a failure of the server itself.
pub(crate) fn internal_error(e: impl std::fmt::Display) -> RpcError {
    RpcError::new(error_code::INTERNAL_ERROR, e.to_string())
}

/// The JSON-RPC error of a manager's error: every manager error maps here.
pub(crate) fn manager_error(e: impl std::fmt::Display) -> RpcError {
    method_error(e)
}

/// Implements the server's [`Handler`](super::methods::Handler) over [`Api`] for each method
/// named: `Name(api, (param, …)) => body;`, the body an expression in an `async` context.
macro_rules! handlers {
    ($($ty:ident($api:ident, $params:pat) => $body:expr;)*) => {$(
        #[async_trait::async_trait]
        impl $crate::rpc::methods::Handler<$crate::rpc::context::Api> for $ty {
            async fn handle(
                $api: &$crate::rpc::context::Api,
                $params: <Self as $crate::rpc::methods::Method>::Params,
            ) -> Result<<Self as $crate::rpc::methods::Method>::Result, ::paych_core::jsonrpc::RpcError> {
                $body
            }
        }
    )*};
}
pub(crate) use handlers;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_a_text_are_written_with_the_networks_prefix_and_nothing_else_changes() {
        let text = "signature was made by f1lcdva4ibxmumgrlimxlsnhszhjrxavjid6ikxyy, not \
                    f0999 (f1 key); unknown channel t01234: fee 10";
        assert_eq!(
            addresses_for(text, Network::Testnet),
            "signature was made by t1lcdva4ibxmumgrlimxlsnhszhjrxavjid6ikxyy, not \
             t0999 (f1 key); unknown channel t01234: fee 10"
        );
        assert_eq!(addresses_for("t01234", Network::Mainnet), "f01234");
        // A word that looks like an address but fails its checksum stays as written.
        let bad = "f1lcdva4ibxmumgrlimxlsnhszhjrxavjid6ikxyz é";
        assert_eq!(addresses_for(bad, Network::Testnet), bad);
        assert_eq!(addresses_for("", Network::Testnet), "");
    }
}
