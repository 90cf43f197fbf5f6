//! The node's JSON-RPC API server: a [`PaymentChannelManager`] and a [`KeyStore`] served in
//! Lotus's shapes and Lotus's transports, so that `lotus paych …` and go-jsonrpc clients work
//! against it: `Filecoin.Paych*`, `Filecoin.Wallet*`, `Filecoin.Net*` and the chain methods
//! Lotus's `paych` commands call.
//!
//! `/rpc/v1` and `/rpc/v0` serve Lotus's v1 and v0 APIs, each over HTTP (`POST`, one call or
//! a batch per request) and over WebSocket (`GET` with an upgrade: many calls on one
//! connection, answered as they finish, by id — [`super::websocket`]). Every method is declared
//! once, in [`super::methods`], with its name, its parameters and the [`Permission`] it
//! needs; [`super::calls`] reads the requests and answers them with go-jsonrpc's codes and
//! statuses.
//!
//! A caller's permissions come from an `Authorization: Bearer <JWT>` header or, without one,
//! a `?token=<JWT>` query parameter (as go-jsonrpc's `auth.Handler` reads them), checked by
//! [`super::auth`]; without either a caller may read only. A header that is not
//! `Bearer <token>`, or a token that does not verify, gets HTTP 401 with an empty body, as
//! Lotus answers; the WebSocket upgrade is refused the same way. Request bodies and
//! WebSocket messages are bounded ([`MAX_REQUEST_BYTES`]), and so are the requests served at
//! once ([`MAX_CONCURRENT_REQUESTS`], more get HTTP 503), the WebSocket connections and the
//! calls in flight on each.
//!
//! `Filecoin.NetConnect`, `Filecoin.NetPeers` and `Filecoin.NetAddrsListen` ask the node's
//! network when there is one ([`serve_node_api`]), in Lotus's `AddrInfo` shape;
//! `Filecoin.PaychPay(ch, amount, flow)` (ours) pays through [`Payer`];
//! `Filecoin.PaychReconcile(ch)` (ours) asks the payer of an inbound channel for one
//! combined voucher. `GET /metrics` serves the node's [`Metrics`] without a token, as Lotus
//! serves its metrics.
//!
//! This module checks credentials and hands each request to [`super::calls`]; it holds no
//! state of its own and never decides anything about channels or vouchers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use paych_core::jsonrpc::{error_code, RpcError, RpcResponse};
use paych_core::manager::PaymentChannelManager;
use paych_core::network::FilNetwork;
use paych_core::wallet::KeyStore;
use serde_json::Value;
use tokio::sync::{watch, Semaphore};

use super::auth::{self, Permission};
use super::calls::{self, Reply, Service};
use super::context::Api;
pub use super::context::HeadTipsets;
use super::envelope::{self, BodyError, Running, BODY_TIMEOUT};
pub use super::envelope::{ServeError, MAX_CONCURRENT_REQUESTS, MAX_REQUEST_BYTES};
use super::methods::ApiVersion;
use super::websocket::{self, MAX_WEBSOCKETS};
use crate::metrics::{self, Metrics};
use crate::pay::Payer;
use crate::retrieval::RetrievalProvider;
use crate::route::Routes;

/// A running API server. Dropping it stops the server too.
#[derive(Debug)]
pub struct ApiServer {
    running: Running,
    /// Dropped or set on shutdown: the open WebSocket connections end.
    closing: watch::Sender<bool>,
}

impl ApiServer {
    /// The address the server listens on (with the actual port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.running.local_addr()
    }

    /// Stops accepting requests, lets requests in flight finish for a few seconds, then
    /// stops.
    pub async fn shutdown(self) {
        let _ = self.closing.send(true);
        self.running.shutdown("API server").await;
    }
}

/// Serves `manager` and `wallet` on `listen` (e.g. `127.0.0.1:0`), with tokens checked
/// against `secret`, addresses and chain constants (`Version`'s `BlockDelay`) those of
/// `network`'s preset, until the returned server is shut
/// down or dropped. The `Filecoin.Net*` methods fail: there is no libp2p node to ask (see
/// [`serve_node_api`]); `/metrics` counts the API's calls only.
pub async fn serve_api(
    manager: PaymentChannelManager,
    wallet: Arc<KeyStore>,
    secret: Vec<u8>,
    network: FilNetwork,
    listen: SocketAddr,
) -> Result<ApiServer, ServeError> {
    let node = NodeParts::default();
    serve_node_api(manager, wallet, node, Arc::default(), None, secret, network, listen).await
}

/// [`serve_api`] with the node's libp2p networking behind `Filecoin.NetConnect`,
/// `Filecoin.NetPeers`, `Filecoin.NetAddrsListen` and `Filecoin.PaychPay`, the node's
/// `retrieval` provider behind publishing, the node's `metrics` served on
/// `GET /metrics` (no token needed), and its chain backend's head tipsets behind
/// `Filecoin.ChainHead` (without them, the head's epoch with an empty key).
#[allow(clippy::too_many_arguments)]
pub async fn serve_node_api(
    manager: PaymentChannelManager,
    wallet: Arc<KeyStore>,
    node: NodeParts,
    metrics: Arc<Metrics>,
    tipsets: Option<Arc<dyn HeadTipsets>>,
    secret: Vec<u8>,
    network: FilNetwork,
    listen: SocketAddr,
) -> Result<ApiServer, ServeError> {
    let (closing, closed) = watch::channel(false);
    let preset = network.preset();
    let network = preset.address_network;
    let service = Arc::new(Service {
        api: Api {
            manager,
            wallet,
            payer: node.payer,
            retrieval: node.retrieval,
            routes: node.routes,
            metrics,
            network,
            preset,
            tipsets,
        },
        permits: Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS)),
        websockets: Arc::new(Semaphore::new(MAX_WEBSOCKETS)),
        closed,
    });
    let server = Arc::new(Server { service, secret });
    let router = Router::new()
        .route("/rpc/v1", get(upgrade_v1).post(handle_v1))
        .route("/rpc/v0", get(upgrade_v0).post(handle_v0))
        .route("/metrics", get(serve_metrics));
    let running = envelope::spawn(listen, router.with_state(server), "API server").await?;
    Ok(ApiServer { running, closing })
}

/// The parts of a libp2p node the API's network methods go through; an API without a node
/// has none (its `Net*`, `PaychPay`, retrieval and `PaychPayInvoice` calls fail).
#[derive(Default)]
pub struct NodeParts {
    /// The node's payer (`PaychPay`, `PaychReconcile`, `Net*`).
    pub payer: Option<Arc<Payer>>,
    /// The node's retrieval provider.
    pub retrieval: Option<Arc<RetrievalProvider>>,
    /// The node's routed payments (`PaychPayInvoice`).
    pub routes: Option<Arc<Routes>>,
}

/// What the API's requests are served with: the calls' service, and the secret tokens are
/// checked against.
struct Server {
    service: Arc<Service>,
    secret: Vec<u8>,
}

/// `GET /metrics`: the node's metrics in the Prometheus (OpenMetrics) text format.
async fn serve_metrics(State(server): State<Arc<Server>>) -> Response {
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], server.service.api.metrics.encode())
        .into_response()
}

/// `POST /rpc/v1`: Lotus's v1 API.
async fn handle_v1(server: State<Arc<Server>>, caller: Caller, body: Body) -> Response {
    handle(server, ApiVersion::V1, caller, body).await
}

/// `POST /rpc/v0`: Lotus's v0 API.
async fn handle_v0(server: State<Arc<Server>>, caller: Caller, body: Body) -> Response {
    handle(server, ApiVersion::V0, caller, body).await
}

/// `GET /rpc/v1` with a WebSocket upgrade: Lotus's v1 API on a WebSocket.
async fn upgrade_v1(server: State<Arc<Server>>, caller: Caller, ws: Upgrade) -> Response {
    upgrade(server, ApiVersion::V1, caller, ws).await
}

/// `GET /rpc/v0` with a WebSocket upgrade: Lotus's v0 API on a WebSocket.
async fn upgrade_v0(server: State<Arc<Server>>, caller: Caller, ws: Upgrade) -> Response {
    upgrade(server, ApiVersion::V0, caller, ws).await
}

/// A WebSocket upgrade, or why the request is none.
type Upgrade = Result<WebSocketUpgrade, WebSocketUpgradeRejection>;

/// Upgrades to a WebSocket; a `GET` without an upgrade is read as go-jsonrpc reads it, as an
/// empty request.
async fn upgrade(
    State(server): State<Arc<Server>>,
    version: ApiVersion,
    Caller(granted): Caller,
    ws: Upgrade,
) -> Response {
    match ws {
        Ok(ws) => websocket::upgrade(server.service.clone(), version, granted, ws),
        Err(_) => handle(State(server), version, Caller(granted), Body::empty()).await,
    }
}

/// One HTTP request: its body read, its calls answered.
async fn handle(
    State(server): State<Arc<Server>>,
    version: ApiVersion,
    Caller(granted): Caller,
    body: Body,
) -> Response {
    let service = &server.service;
    let Ok(_permit) = service.permits.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many requests in flight").into_response();
    };
    let reply = match read_request_body(body).await {
        Ok(bytes) => calls::answer_body(&service.api, version, &granted, &bytes).await,
        Err(error) => {
            let answer = RpcResponse { id: Value::Null, outcome: Err(error) };
            Reply { status: calls::status_of(&answer), body: calls::encode(&answer) }
        }
    };
    (reply.status, [(header::CONTENT_TYPE, "application/json")], reply.body).into_response()
}

/// A request body of at most [`MAX_REQUEST_BYTES`], or go-jsonrpc's error (`handler.go`).
async fn read_request_body(body: Body) -> Result<Vec<u8>, RpcError> {
    let parse_error = |message: String| RpcError::new(error_code::PARSE_ERROR, message);
    match tokio::time::timeout(BODY_TIMEOUT, envelope::read_body(body)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(BodyError::TooLarge)) => {
            Err(parse_error(format!("request bigger than maximum {MAX_REQUEST_BYTES} allowed")))
        }
        Ok(Err(BodyError::Read(reason))) => Err(parse_error(format!("reading request: {reason}"))),
        Err(_) => Err(parse_error(format!("reading request: not read within {BODY_TIMEOUT:?}"))),
    }
}

/// The permissions of the caller of a request; HTTP 401 with an empty body when its
/// credentials are refused, as Lotus answers.
struct Caller(Vec<Permission>);

impl FromRequestParts<Arc<Server>> for Caller {
    type Rejection = StatusCode;

    async fn from_request_parts(
        parts: &mut Parts,
        server: &Arc<Server>,
    ) -> Result<Self, Self::Rejection> {
        match caller_permissions(&server.secret, &parts.headers, &parts.uri) {
            Ok(granted) => Ok(Caller(granted)),
            Err(e) => {
                tracing::debug!(error = %e, "API credentials refused");
                Err(StatusCode::UNAUTHORIZED)
            }
        }
    }
}

/// Why a request's credentials were refused.
#[derive(Debug, thiserror::Error)]
enum CredentialsError {
    #[error("the Authorization header must be 'Bearer <token>'")]
    NotBearer,
    #[error(transparent)]
    Token(#[from] auth::AuthError),
}

/// The permissions of the caller, as go-jsonrpc's `auth.Handler` finds them: the
/// `Authorization` header, or without one the `token` query parameter; read only without
/// either.
fn caller_permissions(
    secret: &[u8],
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Vec<Permission>, CredentialsError> {
    let header = headers.get(header::AUTHORIZATION).filter(|v| !v.is_empty());
    let token = match header {
        Some(value) => {
            let value = value.to_str().map_err(|_| CredentialsError::NotBearer)?;
            value.strip_prefix("Bearer ").ok_or(CredentialsError::NotBearer)?.to_owned()
        }
        None => match uri.query().and_then(query_token) {
            Some(token) => token,
            None => return Ok(vec![Permission::Read]),
        },
    };
    Ok(auth::verify(secret, &token)?)
}

/// The `token` parameter of a query string, percent-decoded; `None` when absent or empty.
fn query_token(query: &str) -> Option<String> {
    let raw = query.split('&').find_map(|pair| pair.strip_prefix("token="))?;
    let mut bytes = Vec::with_capacity(raw.len());
    let mut rest = raw.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let hex = |i: usize| tail.get(i).and_then(|c| char::from(*c).to_digit(16));
        match (b, hex(0), hex(1)) {
            (b'%', Some(high), Some(low)) => {
                bytes.push(u8::try_from(high * 16 + low).unwrap_or_default());
                rest = tail.get(2..).unwrap_or_default();
            }
            (b'+', _, _) => {
                bytes.push(b' ');
                rest = tail;
            }
            _ => {
                bytes.push(b);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).ok().filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use Permission::{Read, Sign};

    #[test]
    fn missing_header_grants_read_only_and_bad_headers_are_refused() {
        let secret = [1u8; 32];
        let uri = Uri::from_static("/rpc/v1");
        assert_eq!(caller_permissions(&secret, &HeaderMap::new(), &uri).unwrap(), vec![Read]);
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(caller_permissions(&secret, &headers, &uri).is_err());
        let token = auth::issue(&secret, &[Sign]);
        headers.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        assert_eq!(caller_permissions(&secret, &headers, &uri).unwrap(), vec![Sign]);
        // go-jsonrpc takes the prefix as written.
        headers.insert(header::AUTHORIZATION, format!("bearer {token}").parse().unwrap());
        assert!(caller_permissions(&secret, &headers, &uri).is_err());
    }

    #[test]
    fn a_token_in_the_query_counts_when_no_header_is_sent() {
        let secret = [1u8; 32];
        let token = auth::issue(&secret, &[Sign]);
        let uri: Uri = format!("/rpc/v1?x=1&token={token}").parse().unwrap();
        assert_eq!(caller_permissions(&secret, &HeaderMap::new(), &uri).unwrap(), vec![Sign]);
        let mut headers = HeaderMap::new();
        let read = auth::issue(&secret, &[Read]);
        headers.insert(header::AUTHORIZATION, format!("Bearer {read}").parse().unwrap());
        assert_eq!(caller_permissions(&secret, &headers, &uri).unwrap(), vec![Read]);
        let bad: Uri = "/rpc/v1?token=abc".parse().unwrap();
        assert!(caller_permissions(&secret, &HeaderMap::new(), &bad).is_err());
        assert_eq!(query_token("token=a%2Eb.c"), Some("a.b.c".to_owned()));
        assert_eq!(query_token("token="), None);
        assert_eq!(query_token("token=%zz%4"), Some("%zz%4".to_owned()));
    }
}
