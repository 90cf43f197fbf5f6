//! What the API's methods run against: the manager, the wallet, the node's payer and
//! network (when it has them), its metrics, and the network addresses are written for; and
//! the one mapping of the manager's and other parts' errors to JSON-RPC errors.
//!
//! It holds no state of its own and decides nothing about channels or vouchers.

use std::sync::Arc;

use paych_core::jsonrpc::{error_code, RpcError};
use paych_core::lotus_json::LotusJson;
use paych_core::manager::PaymentChannelManager;
use paych_core::types::{format_address, Address, Network};
use paych_core::wallet::KeyStore;

use crate::metrics::Metrics;
use crate::network::NetworkClient;
use crate::pay::Payer;
use crate::retrieval::RetrievalProvider;

/// The JSON-RPC error code of a method that ran and failed (Lotus's code for errors a
/// method returns), and of a call refused for lack of permission.
pub const METHOD_ERROR: i64 = 1;

/// Why a method that needs the node's libp2p networking fails in an API without it.
const NO_NODE: &str = "this API serves no libp2p node";

/// The parts the API's methods call.
pub(crate) struct Api {
    pub(crate) manager: PaymentChannelManager,
    pub(crate) wallet: Arc<KeyStore>,
    pub(crate) payer: Option<Arc<Payer>>,
    pub(crate) retrieval: Option<Arc<RetrievalProvider>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) network: Network,
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

    /// The node's network.
    pub(crate) fn net(&self) -> Result<&NetworkClient, RpcError> {
        Ok(self.payer()?.network())
    }
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
