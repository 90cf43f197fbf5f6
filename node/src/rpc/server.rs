//! The node's JSON-RPC API server: a [`PaymentChannelManager`] and a [`KeyStore`] served over
//! HTTP JSON-RPC 2.0 in Lotus's shapes, as `Filecoin.Paych*`, `Filecoin.Wallet*` and
//! `Filecoin.Net*`.
//!
//! `POST /rpc/v1` (and `/rpc/v0`) takes one call per request. Every method is declared
//! once, in [`super::methods`], with its name, its parameters and the [`Permission`] it
//! needs. A caller's permissions come from an `Authorization: Bearer <JWT>` header checked
//! by [`super::auth`]; without the header a caller may read only. An invalid token gets
//! HTTP 401; a method above the caller's permissions gets a JSON-RPC error with code
//! [`super::METHOD_ERROR`] and Lotus's message `missing permission to invoke 'X' (need 'sign')`.
//! Errors of the manager or the wallet get code [`super::METHOD_ERROR`] with the error's message;
//! envelope and parameter errors get the standard JSON-RPC codes. Request bodies are
//! bounded ([`MAX_REQUEST_BYTES`]) and so are the requests served at once
//! ([`MAX_CONCURRENT_REQUESTS`]).
//!
//! `Filecoin.NetConnect`, `Filecoin.NetPeers` and `Filecoin.NetAddrsListen` ask the node's
//! network when there is one ([`serve_node_api`]), in Lotus's `AddrInfo` shape;
//! `Filecoin.PaychPay(ch, amount, flow)` (ours) pays through [`Payer`];
//! `Filecoin.PaychReconcile(ch)` (ours) asks the payer of an inbound channel for one
//! combined voucher. `GET /metrics` serves the node's [`Metrics`] without a token, as Lotus
//! serves its metrics.
//!
//! This module checks credentials and permissions and hands each call to its method; it
//! holds no state of its own and never decides anything about channels or vouchers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use paych_core::jsonrpc::RpcError;
use paych_core::manager::PaymentChannelManager;
use paych_core::types::Network;
use paych_core::wallet::KeyStore;
use serde_json::Value;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::auth::{self, Permission};
use super::context::{method_error, Api};
use super::envelope::{self, excerpt, Params, Running};
pub use super::envelope::{ServeError, MAX_CONCURRENT_REQUESTS, MAX_REQUEST_BYTES};
use super::methods::{self, method_spec, ApiVersion};
use crate::metrics::{self, Metrics};
use crate::pay::Payer;
use crate::retrieval::RetrievalProvider;

/// A running API server. Dropping it stops the server too.
#[derive(Debug)]
pub struct ApiServer {
    running: Running,
}

impl ApiServer {
    /// The address the server listens on (with the actual port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.running.local_addr()
    }

    /// Stops accepting requests, lets requests in flight finish for a few seconds, then
    /// stops.
    pub async fn shutdown(self) {
        self.running.shutdown("API server").await;
    }
}

/// Serves `manager` and `wallet` on `listen` (e.g. `127.0.0.1:0`), with tokens checked
/// against `secret` and addresses written for `network`, until the returned server is shut
/// down or dropped. The `Filecoin.Net*` methods fail: there is no libp2p node to ask (see
/// [`serve_node_api`]); `/metrics` counts the API's calls only.
pub async fn serve_api(
    manager: PaymentChannelManager,
    wallet: Arc<KeyStore>,
    secret: Vec<u8>,
    network: Network,
    listen: SocketAddr,
) -> Result<ApiServer, ServeError> {
    serve_node_api(manager, wallet, None, None, Arc::default(), secret, network, listen).await
}

/// [`serve_api`] with the node's libp2p networking behind `Filecoin.NetConnect`,
/// `Filecoin.NetPeers`, `Filecoin.NetAddrsListen` and `Filecoin.PaychPay`, the node's
/// `retrieval` provider behind publishing, and the node's `metrics` served on
/// `GET /metrics` (no token needed).
#[allow(clippy::too_many_arguments)]
pub async fn serve_node_api(
    manager: PaymentChannelManager,
    wallet: Arc<KeyStore>,
    payer: Option<Arc<Payer>>,
    retrieval: Option<Arc<RetrievalProvider>>,
    metrics: Arc<Metrics>,
    secret: Vec<u8>,
    network: Network,
    listen: SocketAddr,
) -> Result<ApiServer, ServeError> {
    let server = Arc::new(Server {
        api: Api { manager, wallet, payer, retrieval, metrics, network },
        secret,
        permits: Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS)),
    });
    let router = Router::new()
        .route("/rpc/v1", post(handle_v1))
        .route("/rpc/v0", post(handle_v0))
        .route("/metrics", get(serve_metrics));
    let running = envelope::spawn(listen, router.with_state(server), "API server").await?;
    Ok(ApiServer { running })
}

struct Server {
    api: Api,
    secret: Vec<u8>,
    permits: Arc<Semaphore>,
}

/// `GET /metrics`: the node's metrics in the Prometheus (OpenMetrics) text format.
async fn serve_metrics(State(server): State<Arc<Server>>) -> Response {
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], server.api.metrics.encode()).into_response()
}

/// `POST /rpc/v1`: Lotus's v1 API.
async fn handle_v1(server: State<Arc<Server>>, headers: HeaderMap, body: Body) -> Response {
    handle(server, ApiVersion::V1, headers, body).await
}

/// `POST /rpc/v0`: Lotus's v0 API.
async fn handle_v0(server: State<Arc<Server>>, headers: HeaderMap, body: Body) -> Response {
    handle(server, ApiVersion::V0, headers, body).await
}

async fn handle(
    State(server): State<Arc<Server>>,
    version: ApiVersion,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let granted = match caller_permissions(&server.secret, &headers) {
        Ok(granted) => granted,
        Err(e) => return (StatusCode::UNAUTHORIZED, e.to_string()).into_response(),
    };
    let (_permit, call) = match envelope::read_call(&server.permits, body).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let declared = method_spec(version, &call.method);
    server.api.metrics.api_call(declared.map_or("unknown", |m| m.name));
    let span = tracing::debug_span!("api", method = %excerpt(&call.method));
    let outcome = match declared {
        Some(spec) => run(&server.api, &granted, spec, call.params).instrument(span).await,
        None => Err(envelope::not_found(&call.method)),
    };
    envelope::answer(call.id, outcome)
}

/// Why a request's credentials were refused.
#[derive(Debug, thiserror::Error)]
enum CredentialsError {
    #[error("the Authorization header must be 'Bearer <token>'")]
    NotBearer,
    #[error(transparent)]
    Token(#[from] auth::AuthError),
}

/// The permissions of the caller: read only without an `Authorization` header, the
/// token's otherwise.
fn caller_permissions(
    secret: &[u8],
    headers: &HeaderMap,
) -> Result<Vec<Permission>, CredentialsError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(vec![Permission::Read]);
    };
    let value = value.to_str().map_err(|_| CredentialsError::NotBearer)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(CredentialsError::NotBearer)?;
    Ok(auth::verify(secret, token.trim())?)
}

/// Checks the caller's permission and the parameter count, then runs the method.
async fn run(
    api: &Api,
    granted: &[Permission],
    spec: &'static methods::MethodSpec,
    mut params: Vec<Value>,
) -> Result<Value, RpcError> {
    if !granted.iter().any(|p| *p >= spec.permission) {
        return Err(method_error(format!(
            "missing permission to invoke '{}' (need '{}')",
            spec.name, spec.permission
        )));
    }
    if params.len() < spec.arity && params.len() + spec.optional >= spec.arity {
        params.resize(spec.arity, Value::Null);
    }
    let p = Params::new(spec.name, params, spec.arity)?;
    methods::dispatch(api, spec, p).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use Permission::{Read, Sign};

    #[test]
    fn missing_header_grants_read_only_and_bad_headers_are_refused() {
        let secret = [1u8; 32];
        assert_eq!(caller_permissions(&secret, &HeaderMap::new()).unwrap(), vec![Read]);
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(caller_permissions(&secret, &headers).is_err());
        let token = auth::issue(&secret, &[Sign]);
        headers.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        assert_eq!(caller_permissions(&secret, &headers).unwrap(), vec![Sign]);
    }
}
