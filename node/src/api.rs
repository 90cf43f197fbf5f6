//! The node's JSON-RPC API: a [`PaymentChannelManager`] and a [`KeyStore`] served over
//! HTTP JSON-RPC 2.0 in Lotus's shapes, as `Filecoin.Paych*` and `Filecoin.Wallet*`.
//!
//! `POST /rpc/v1` (and `/rpc/v0`) takes one call per request. Every method is declared
//! once, in [`METHODS`], with its name, its number of parameters and the [`Permission`] it
//! needs. A caller's permissions come from an `Authorization: Bearer <JWT>` header checked
//! by [`crate::auth`]; without the header a caller may read only. An invalid token gets
//! HTTP 401; a method above the caller's permissions gets a JSON-RPC error with code
//! [`METHOD_ERROR`] and Lotus's message `missing permission to invoke 'X' (need 'sign')`.
//! Errors of the manager or the wallet get code [`METHOD_ERROR`] with the error's message;
//! envelope and parameter errors get the standard JSON-RPC codes. Request bodies are
//! bounded ([`MAX_REQUEST_BYTES`]) and so are the requests served at once
//! ([`MAX_CONCURRENT_REQUESTS`]).
//!
//! `Filecoin.NetConnect`, `Filecoin.NetPeers` and `Filecoin.NetAddrsListen` ask the node's
//! [`NetworkClient`] when there is one ([`serve_node_api`]), in Lotus's `AddrInfo` shape;
//! `Filecoin.PaychPay(ch, amount, flow)` (ours) pays through [`Payer`];
//! `Filecoin.PaychReconcile(ch)` (ours) asks the payer of an inbound channel for one
//! combined voucher through [`Payer::reconcile`]. `GET /metrics` serves the node's
//! [`Metrics`] without a token, as Lotus serves its metrics.
//!
//! This module translates between JSON and the manager's calls; it holds no state of its
//! own and never decides anything about channels or vouchers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use cid::Cid;
use paych_core::chain::lotus::json::{self, error_code, LotusJson, RpcError};
use paych_core::manager::{
    AddOutcome, AvailableFunds, ChannelHandle, ChannelStatus, PaymentChannelManager, VoucherSpec,
};
use paych_core::store::Direction;
use paych_core::types::{
    format_address, Address, ModVerifyParams, Network, SignedVoucher, TokenAmount,
};
use paych_core::wallet::{KeyInfo, KeyStore, Wallet};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::auth::{self, Permission};
use crate::jsonrpc::{self, excerpt, Params, Running};
pub use crate::jsonrpc::{ServeError, MAX_CONCURRENT_REQUESTS, MAX_REQUEST_BYTES};
use crate::metrics::{self, Metrics};
use crate::network::NetworkClient;
use crate::pay::Payer;
use crate::retrieval;
use base64::Engine as _;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use paych_protocol::Manifest;
use Permission::{Admin, Read, Sign, Write};

/// The JSON-RPC error code of a method that ran and failed (Lotus's code for errors a
/// method returns), and of a call refused for lack of permission.
pub const METHOD_ERROR: i64 = 1;
/// The most vouchers one `PaychNewPayment` creates.
pub const MAX_PAYMENT_VOUCHERS: usize = 1024;
/// The key type `WalletNew` accepts.
const SECP256K1: &str = "secp256k1";

/// One method of the API: its name, how many positional parameters it takes (the last
/// `optional` of them may be left out), and the permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodSpec {
    /// The JSON-RPC method name.
    pub name: &'static str,
    /// The number of parameters.
    pub arity: usize,
    /// How many trailing parameters may be left out.
    pub optional: usize,
    /// The permission a caller needs.
    pub permission: Permission,
}

const fn method(name: &'static str, arity: usize, permission: Permission) -> MethodSpec {
    MethodSpec { name, arity, optional: 0, permission }
}

/// Every method the API serves.
pub const METHODS: &[MethodSpec] = &[
    MethodSpec { name: "Filecoin.PaychGet", arity: 4, optional: 1, permission: Sign },
    method("Filecoin.PaychFund", 3, Sign),
    method("Filecoin.PaychCreate", 3, Sign),
    method("Filecoin.PaychAddFunds", 2, Sign),
    method("Filecoin.PaychReserveFunds", 2, Sign),
    method("Filecoin.PaychReleaseFunds", 2, Write),
    method("Filecoin.PaychGetWaitReady", 1, Sign),
    method("Filecoin.PaychAvailableFunds", 1, Sign),
    method("Filecoin.PaychAvailableFundsByFromTo", 2, Sign),
    method("Filecoin.PaychStatus", 1, Read),
    method("Filecoin.PaychList", 0, Read),
    method("Filecoin.PaychLookup", 2, Read),
    method("Filecoin.PaychAllocateLane", 1, Sign),
    method("Filecoin.PaychSettle", 1, Sign),
    method("Filecoin.PaychCollect", 1, Sign),
    method("Filecoin.PaychNewPayment", 3, Sign),
    method("Filecoin.PaychVoucherCreate", 3, Sign),
    method("Filecoin.PaychVoucherCheckValid", 2, Read),
    method("Filecoin.PaychVoucherCheckSpendable", 4, Read),
    method("Filecoin.PaychVoucherAdd", 4, Write),
    method("Filecoin.PaychVoucherList", 1, Write),
    method("Filecoin.PaychVoucherBestSpendable", 1, Write),
    method("Filecoin.PaychVoucherSubmit", 4, Sign),
    method("Filecoin.WalletNew", 1, Write),
    method("Filecoin.WalletList", 0, Write),
    method("Filecoin.WalletHas", 1, Write),
    method("Filecoin.WalletDefaultAddress", 0, Write),
    method("Filecoin.WalletBalance", 1, Read),
    method("Filecoin.WalletExport", 1, Admin),
    method("Filecoin.WalletImport", 1, Admin),
    MethodSpec { name: "Filecoin.PaychPay", arity: 3, optional: 1, permission: Sign },
    method("Filecoin.PaychReconcile", 1, Write),
    method("Filecoin.NetConnect", 1, Write),
    method("Filecoin.NetPeers", 0, Read),
    method("Filecoin.NetAddrsListen", 0, Read),
    method("Filecoin.PaychRetrievalPublish", 1, Write),
    MethodSpec { name: "Filecoin.PaychRetrieve", arity: 4, optional: 1, permission: Sign },
];

/// The declaration of the method named `name`.
pub fn method_spec(name: &str) -> Option<&'static MethodSpec> {
    METHODS.iter().find(|m| m.name == name)
}

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
    serve_node_api(manager, wallet, None, Arc::default(), secret, network, listen).await
}

/// [`serve_api`] with the node's libp2p networking behind `Filecoin.NetConnect`,
/// `Filecoin.NetPeers`, `Filecoin.NetAddrsListen` and `Filecoin.PaychPay`, and the node's
/// `metrics` served on `GET /metrics` (no token needed).
pub async fn serve_node_api(
    manager: PaymentChannelManager,
    wallet: Arc<KeyStore>,
    payer: Option<Arc<Payer>>,
    metrics: Arc<Metrics>,
    secret: Vec<u8>,
    network: Network,
    listen: SocketAddr,
) -> Result<ApiServer, ServeError> {
    let api = Arc::new(Api {
        manager,
        wallet,
        payer,
        metrics,
        secret,
        network,
        permits: Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS)),
    });
    let router = Router::new()
        .route("/rpc/v1", post(handle))
        .route("/rpc/v0", post(handle))
        .route("/metrics", get(serve_metrics))
        .with_state(api);
    let running = jsonrpc::spawn(listen, router).await?;
    tracing::info!(local_addr = %running.local_addr(), "API server listening");
    Ok(ApiServer { running })
}

struct Api {
    manager: PaymentChannelManager,
    wallet: Arc<KeyStore>,
    payer: Option<Arc<Payer>>,
    metrics: Arc<Metrics>,
    secret: Vec<u8>,
    network: Network,
    permits: Arc<Semaphore>,
}

/// `GET /metrics`: the node's metrics in the Prometheus (OpenMetrics) text format.
async fn serve_metrics(State(api): State<Arc<Api>>) -> Response {
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], api.metrics.encode()).into_response()
}

async fn handle(State(api): State<Arc<Api>>, headers: HeaderMap, body: Body) -> Response {
    let granted = match caller_permissions(&api.secret, &headers) {
        Ok(granted) => granted,
        Err(e) => return (StatusCode::UNAUTHORIZED, e.to_string()).into_response(),
    };
    let (_permit, call) = match jsonrpc::read_call(&api.permits, body).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    api.metrics.api_call(&call.method);
    let span = tracing::debug_span!("api", method = %excerpt(&call.method));
    let outcome = api.call(&granted, &call.method, call.params).instrument(span).await;
    jsonrpc::answer(call.id, outcome)
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

/// A JSON-RPC error for a failed method.
fn method_error(e: impl std::fmt::Display) -> RpcError {
    RpcError::new(METHOD_ERROR, e.to_string())
}

/// Lotus's `AddrInfo`: `{"ID": "<peer id>", "Addrs": ["<multiaddr>", …]}`.
fn addr_info_json(id: &PeerId, addrs: &[Multiaddr]) -> Value {
    json!({
        "ID": id.to_string(),
        "Addrs": addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// The most addresses a `NetConnect` tries.
const MAX_CONNECT_ADDRS: usize = 16;

fn parse_addr_info(value: &Value) -> Result<(PeerId, Vec<Multiaddr>), String> {
    let id = value["ID"].as_str().ok_or("expected {\"ID\": peer id, \"Addrs\": [multiaddr]}")?;
    let id: PeerId = id.parse().map_err(|e| format!("ID: {e}"))?;
    let addrs = match &value["Addrs"] {
        Value::Array(addrs) if addrs.len() <= MAX_CONNECT_ADDRS => addrs,
        Value::Array(_) => return Err(format!("at most {MAX_CONNECT_ADDRS} addresses")),
        _ => return Err("Addrs: expected an array of multiaddrs".to_owned()),
    };
    let addrs = addrs
        .iter()
        .map(|a| {
            let text = a.as_str().ok_or("Addrs: expected strings")?;
            text.parse::<Multiaddr>().map_err(|e| format!("Addrs: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((id, addrs))
}

/// `addr` ending in `/p2p/<id>`.
fn with_peer_id(addr: Multiaddr, id: PeerId) -> Multiaddr {
    match addr.iter().last() {
        Some(Protocol::P2p(_)) => addr,
        _ => addr.with(Protocol::P2p(id)),
    }
}

fn manager_error(e: impl std::fmt::Display) -> RpcError {
    method_error(e)
}

/// Parameters read in the API's types.
trait ApiParams {
    fn non_negative_amount(&mut self, i: usize) -> Result<TokenAmount, RpcError>;
    fn voucher(&mut self, i: usize) -> Result<SignedVoucher, RpcError>;
    fn cid(&mut self, i: usize) -> Result<Cid, RpcError>;
    fn bytes_or_null(&mut self, i: usize) -> Result<Vec<u8>, RpcError>;
    fn value(&mut self, i: usize) -> Value;
}

impl ApiParams for Params<'_> {
    fn non_negative_amount(&mut self, i: usize) -> Result<TokenAmount, RpcError> {
        let amount = self.amount(i)?;
        if amount.is_negative() {
            return Err(self.invalid(i, "the amount must not be negative"));
        }
        Ok(amount)
    }

    fn voucher(&mut self, i: usize) -> Result<SignedVoucher, RpcError> {
        self.lotus(i)
    }

    fn cid(&mut self, i: usize) -> Result<Cid, RpcError> {
        self.lotus(i)
    }

    fn bytes_or_null(&mut self, i: usize) -> Result<Vec<u8>, RpcError> {
        match self.take(i) {
            Value::Null => Ok(Vec::new()),
            Value::String(text) => {
                json::parse_bytes_field("bytes", Some(&text)).map_err(|e| self.invalid(i, e))
            }
            _ => Err(self.invalid(i, "expected base64 bytes or null")),
        }
    }

    fn value(&mut self, i: usize) -> Value {
        self.take(i)
    }
}

/// One voucher of `PaychNewPayment`, in Lotus's `VoucherSpec` shape.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct VoucherSpecJson {
    amount: String,
    #[serde(default)]
    time_lock_min: i64,
    #[serde(default)]
    time_lock_max: i64,
    #[serde(default)]
    min_settle: i64,
    #[serde(default)]
    extra: Option<Value>,
}

impl VoucherSpecJson {
    fn parse(self) -> Result<VoucherSpec, json::JsonError> {
        let amount = json::parse_amount_field("Amount", &self.amount)?;
        let extra = match self.extra {
            None | Some(Value::Null) => None,
            Some(extra) => Some(json::from_value::<ModVerifyParams>(extra)?),
        };
        Ok(VoucherSpec {
            amount,
            time_lock_min: self.time_lock_min,
            time_lock_max: self.time_lock_max,
            min_settle_height: self.min_settle,
            extra,
            secret_hash: Vec::new(),
        })
    }
}

impl Api {
    /// Checks the caller's permission and the parameter count, then runs the method.
    async fn call(
        &self,
        granted: &[Permission],
        name: &str,
        mut params: Vec<Value>,
    ) -> Result<Value, RpcError> {
        let Some(spec) = method_spec(name) else {
            return Err(RpcError::new(
                error_code::METHOD_NOT_FOUND,
                format!("method '{}' not found", excerpt(name)),
            ));
        };
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
        self.run(spec.name, p).await
    }

    fn encode<T: LotusJson>(&self, value: &T) -> Result<Value, RpcError> {
        json::to_value(value, self.network)
            .map_err(|e| RpcError::new(error_code::INTERNAL_ERROR, e.to_string()))
    }

    fn encode_option<T: LotusJson>(&self, value: &Option<T>) -> Result<Value, RpcError> {
        value.as_ref().map_or(Ok(Value::Null), |v| self.encode(v))
    }

    fn payer(&self) -> Result<&Payer, RpcError> {
        self.payer.as_deref().ok_or_else(|| method_error("this API serves no libp2p node"))
    }

    fn net(&self) -> Result<&NetworkClient, RpcError> {
        Ok(self.payer()?.network())
    }

    fn address_text(&self, addr: &Address) -> String {
        format_address(addr, self.network)
    }

    /// Runs the method `name`, its parameters counted.
    async fn run(&self, name: &str, mut p: Params<'_>) -> Result<Value, RpcError> {
        let m = &self.manager;
        match name {
            "Filecoin.PaychGet" => {
                let (from, to, amount) = (p.address(0)?, p.address(1)?, p.non_negative_amount(2)?);
                let off_chain = match p.value(3) {
                    Value::Null => false,
                    Value::Object(options) => match options.get("OffChain") {
                        None | Some(Value::Null) => false,
                        Some(Value::Bool(b)) => *b,
                        Some(_) => return Err(p.invalid(3, "OffChain must be true or false")),
                    },
                    _ => return Err(p.invalid(3, "expected {\"OffChain\":bool} or null")),
                };
                if off_chain {
                    self.check_off_chain(&from, &to, &amount).await?;
                }
                self.handle_json(&m.get(from, to, amount).await.map_err(manager_error)?)
            }
            "Filecoin.PaychPay" => {
                let (ch, amount) = (p.address(0)?, p.non_negative_amount(1)?);
                let flow = match p.value(2) {
                    Value::Null => None,
                    Value::String(flow) => Some(flow.into_bytes()),
                    _ => return Err(p.invalid(2, "expected a string or null")),
                };
                let paid = self.payer()?.pay(&ch, amount, flow).await.map_err(method_error)?;
                let response = &paid.response;
                let status = response
                    .status()
                    .map_or_else(|| format!("Unknown({})", response.status), |s| format!("{s:?}"));
                if !response.is_held() {
                    return Err(method_error(format!(
                        "the payee refused the voucher on lane {}: {status}: {}",
                        paid.lane,
                        response.message.as_deref().unwrap_or("")
                    )));
                }
                Ok(json!({
                    "Voucher": self.encode(&paid.voucher)?,
                    "Lane": paid.lane,
                    "Status": status,
                    "Delta": json::amount_text(&response.delta),
                    "LaneAmount": json::amount_text(&response.lane_amount),
                }))
            }
            "Filecoin.PaychRetrievalPublish" => {
                let spec = p.value(0);
                let manifest = self.publish(&spec).await.map_err(|e| p.invalid(0, e))?;
                Ok(self.manifest_json(&manifest))
            }
            "Filecoin.PaychRetrieve" => {
                let ch = p.address(0)?;
                let root = match p.value(1) {
                    Value::String(root) => {
                        retrieval::parse_root(&root).map_err(|e| p.invalid(1, e))?
                    }
                    _ => return Err(p.invalid(1, "expected the root as 64 hex digits")),
                };
                // A retrieval never pays a price the caller did not bound.
                let per_chunk = p.non_negative_amount(2)?;
                let total = match p.value(3) {
                    Value::Null => None,
                    Value::String(text) => Some(
                        json::parse_amount_field("maxTotal", &text)
                            .ok()
                            .filter(|a| !a.is_negative())
                            .ok_or_else(|| {
                                p.invalid(3, "expected a non-negative attoFIL amount")
                            })?,
                    ),
                    _ => return Err(p.invalid(3, "expected an attoFIL amount or null")),
                };
                let limit = retrieval::PriceLimit { per_chunk, total };
                let got = retrieval::retrieve(self.payer()?, ch, root, limit)
                    .await
                    .map_err(method_error)?;
                let latencies: Vec<u64> = got
                    .payment_latencies
                    .iter()
                    .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
                    .collect();
                Ok(json!({
                    "Root": hex::encode(&got.manifest.root),
                    "Bytes": got.bytes,
                    "Chunks": got.manifest.chunks(),
                    "Paid": json::amount_text(&got.paid),
                    "Lane": got.lane,
                    "PaymentMicros": latencies,
                }))
            }
            "Filecoin.PaychReconcile" => {
                let ch = p.address(0)?;
                let done = self.payer()?.reconcile(&ch).await.map_err(method_error)?;
                let response = &done.response;
                let outcome = if response.status == 0 { "success" } else { "refused" };
                self.metrics.reconciliation("payee", outcome);
                let status = response
                    .status()
                    .map_or_else(|| format!("Unknown({})", response.status), |s| format!("{s:?}"));
                let text = match &done.combined {
                    Some(v) => Value::String(v.to_base64url().map_err(method_error)?),
                    None => Value::Null,
                };
                Ok(json!({
                    "Status": status,
                    "StatusCode": response.status,
                    "Combined": self.encode_option(&done.combined)?,
                    "CombinedText": text,
                    "ReqVal": json::amount_text(&done.request.req_val),
                    "Vouchers": done.request.vouchers.len(),
                    "Message": response.message,
                }))
            }
            "Filecoin.NetConnect" => {
                let info = p.value(0);
                let (id, addrs) = parse_addr_info(&info).map_err(|e| p.invalid(0, e))?;
                let net = self.net()?;
                let mut last_error = None;
                for addr in addrs {
                    let addr = with_peer_id(addr, id);
                    match net.connect(addr).await {
                        Ok(_) => return Ok(Value::Null),
                        Err(e) => last_error = Some(e),
                    }
                }
                Err(method_error(
                    last_error.map_or_else(
                        || format!("no addresses to connect to {id}"),
                        |e| e.to_string(),
                    ),
                ))
            }
            "Filecoin.NetPeers" => {
                let peers = self.net()?.peer_addrs().await.map_err(method_error)?;
                Ok(Value::from(
                    peers
                        .into_iter()
                        .map(|(id, addr)| addr_info_json(&id, std::slice::from_ref(&addr)))
                        .collect::<Vec<_>>(),
                ))
            }
            "Filecoin.NetAddrsListen" => {
                let net = self.net()?;
                let addrs = net.listen_addrs().await.map_err(method_error)?;
                Ok(addr_info_json(&net.local_peer_id(), &addrs))
            }
            "Filecoin.PaychFund" => {
                let (from, to, amount) = (p.address(0)?, p.address(1)?, p.non_negative_amount(2)?);
                self.handle_json(&m.fund(from, to, amount).await.map_err(manager_error)?)
            }
            "Filecoin.PaychCreate" => {
                let (from, to, amount) = (p.address(0)?, p.address(1)?, p.non_negative_amount(2)?);
                let handle = m
                    .create(from, to, amount, TokenAmount::default())
                    .await
                    .map_err(manager_error)?;
                self.handle_json(&handle)
            }
            "Filecoin.PaychAddFunds" => {
                let (ch, amount) = (p.address(0)?, p.non_negative_amount(1)?);
                self.encode(&m.add_funds(&ch, amount).await.map_err(manager_error)?)
            }
            "Filecoin.PaychReserveFunds" => {
                let (ch, amount) = (p.address(0)?, p.non_negative_amount(1)?);
                self.encode_option(&m.reserve_funds(&ch, amount).await.map_err(manager_error)?)
            }
            "Filecoin.PaychReleaseFunds" => {
                let (ch, amount) = (p.address(0)?, p.non_negative_amount(1)?);
                m.release_funds(&ch, amount).await.map_err(manager_error)?;
                Ok(Value::Null)
            }
            "Filecoin.PaychGetWaitReady" => {
                let cid = p.cid(0)?;
                self.encode(&m.get_wait_ready(&cid).await.map_err(manager_error)?)
            }
            "Filecoin.PaychAvailableFunds" => {
                let ch = p.address(0)?;
                self.funds_json(&m.available_funds(&ch).await.map_err(manager_error)?)
            }
            "Filecoin.PaychAvailableFundsByFromTo" => {
                let (from, to) = (p.address(0)?, p.address(1)?);
                let funds =
                    m.available_funds_by_from_to(&from, &to).await.map_err(manager_error)?;
                self.funds_json(&funds)
            }
            "Filecoin.PaychStatus" => {
                let ch = p.address(0)?;
                self.status_json(&m.status(&ch).await.map_err(manager_error)?)
            }
            "Filecoin.PaychList" => {
                let channels = m.list().map_err(manager_error)?;
                Ok(Value::from(channels.iter().map(|c| self.address_text(c)).collect::<Vec<_>>()))
            }
            "Filecoin.PaychLookup" => {
                let (from, to) = (p.address(0)?, p.address(1)?);
                match m.lookup(&from, &to).map_err(manager_error)? {
                    Some(handle) => self.handle_json(&handle),
                    None => Ok(Value::Null),
                }
            }
            "Filecoin.PaychAllocateLane" => {
                let ch = p.address(0)?;
                Ok(Value::from(m.allocate_lane(&ch).await.map_err(manager_error)?))
            }
            "Filecoin.PaychSettle" => {
                let ch = p.address(0)?;
                self.encode(&m.settle(&ch).await.map_err(manager_error)?)
            }
            "Filecoin.PaychCollect" => {
                let ch = p.address(0)?;
                self.encode(&m.collect(&ch).await.map_err(manager_error)?)
            }
            "Filecoin.PaychNewPayment" => {
                let (from, to) = (p.address(0)?, p.address(1)?);
                let specs = self.voucher_specs(&mut p, 2)?;
                let (channel, vouchers) =
                    m.new_payment(from, to, specs).await.map_err(manager_error)?;
                Ok(json!({
                    "Channel": self.address_text(&channel),
                    "WaitSentinel": Value::Null,
                    "Vouchers": self.vouchers_json(&vouchers)?,
                }))
            }
            "Filecoin.PaychVoucherCreate" => {
                let (ch, amount, lane) = (p.address(0)?, p.non_negative_amount(1)?, p.u64(2)?);
                let created = m.voucher_create(&ch, amount, lane).await.map_err(manager_error)?;
                Ok(json!({
                    "Voucher": self.encode_option(&created.voucher)?,
                    "Shortfall": json::amount_text(&created.shortfall),
                }))
            }
            "Filecoin.PaychVoucherCheckValid" => {
                let (ch, voucher) = (p.address(0)?, p.voucher(1)?);
                m.voucher_check_valid(&ch, &voucher).await.map_err(manager_error)?;
                Ok(Value::Null)
            }
            "Filecoin.PaychVoucherCheckSpendable" => {
                let (ch, voucher, secret) = (p.address(0)?, p.voucher(1)?, p.bytes_or_null(2)?);
                p.bytes_or_null(3)?;
                let spendable = m
                    .voucher_check_spendable(&ch, &voucher, &secret)
                    .await
                    .map_err(manager_error)?;
                Ok(Value::Bool(spendable))
            }
            "Filecoin.PaychVoucherAdd" => {
                let (ch, voucher) = (p.address(0)?, p.voucher(1)?);
                p.bytes_or_null(2)?;
                let min_delta = p.non_negative_amount(3)?;
                let delta = match m.voucher_add(&ch, &voucher, min_delta).await {
                    Ok(AddOutcome::Accepted { delta }) => delta,
                    Ok(AddOutcome::Covered { .. } | AddOutcome::AlreadyHeld) => {
                        TokenAmount::default()
                    }
                    Err(e) => return Err(manager_error(e)),
                };
                Ok(Value::String(json::amount_text(&delta)))
            }
            "Filecoin.PaychVoucherList" => {
                let ch = p.address(0)?;
                self.vouchers_json(&m.voucher_list(&ch).map_err(manager_error)?)
            }
            "Filecoin.PaychVoucherBestSpendable" => {
                let ch = p.address(0)?;
                self.vouchers_json(&m.voucher_best_spendable(&ch).await.map_err(manager_error)?)
            }
            "Filecoin.PaychVoucherSubmit" => {
                let (ch, voucher, secret) = (p.address(0)?, p.voucher(1)?, p.bytes_or_null(2)?);
                p.bytes_or_null(3)?;
                let cid = m.voucher_submit(&ch, &voucher, &secret).await.map_err(manager_error)?;
                self.encode(&cid)
            }
            _ => self.run_wallet(name, p).await,
        }
    }

    /// The `Filecoin.Wallet*` methods.
    async fn run_wallet(&self, name: &str, mut p: Params<'_>) -> Result<Value, RpcError> {
        let wallet = &self.wallet;
        match name {
            "Filecoin.WalletNew" => {
                match p.value(0) {
                    Value::String(kind) if kind == SECP256K1 => {}
                    _ => return Err(p.invalid(0, "only \"secp256k1\" keys are supported")),
                }
                let wallet = wallet.clone();
                let addr = tokio::task::spawn_blocking(move || wallet.new_key())
                    .await
                    .map_err(method_error)?
                    .map_err(method_error)?;
                self.encode(&addr)
            }
            "Filecoin.WalletList" => {
                let keys = wallet.list().map_err(method_error)?;
                Ok(Value::from(keys.iter().map(|a| self.address_text(a)).collect::<Vec<_>>()))
            }
            "Filecoin.WalletHas" => Ok(Value::Bool(wallet.has(&p.address(0)?))),
            "Filecoin.WalletDefaultAddress" => {
                self.encode_option(&wallet.default_address().map_err(method_error)?)
            }
            "Filecoin.WalletBalance" => {
                let addr = p.address(0)?;
                let actor = self.manager.chain().actor(&addr).await.map_err(method_error)?;
                self.encode(&actor.map(|a| a.balance).unwrap_or_default())
            }
            "Filecoin.WalletExport" => {
                let info = wallet.export(&p.address(0)?).map_err(method_error)?;
                serde_json::to_value(info)
                    .map_err(|e| RpcError::new(error_code::INTERNAL_ERROR, e.to_string()))
            }
            "Filecoin.WalletImport" => {
                let info: KeyInfo =
                    serde_json::from_value(p.value(0)).map_err(|e| p.invalid(0, e))?;
                let wallet = wallet.clone();
                let addr = tokio::task::spawn_blocking(move || wallet.import(&info))
                    .await
                    .map_err(method_error)?
                    .map_err(method_error)?;
                self.encode(&addr)
            }
            _ => Err(RpcError::new(
                error_code::METHOD_NOT_FOUND,
                format!("method '{}' not found", excerpt(name)),
            )),
        }
    }

    /// `OffChain`: the channel must exist and cover `amount` without a message.
    async fn check_off_chain(
        &self,
        from: &Address,
        to: &Address,
        amount: &TokenAmount,
    ) -> Result<(), RpcError> {
        let funds =
            self.manager.available_funds_by_from_to(from, to).await.map_err(manager_error)?;
        if funds.channel.is_none() || &funds.non_reserved < amount {
            return Err(method_error(format!(
                "OffChain: the channel from {} to {} cannot cover {} attoFIL without a message",
                self.address_text(from),
                self.address_text(to),
                json::amount_text(amount)
            )));
        }
        Ok(())
    }

    fn voucher_specs(&self, p: &mut Params<'_>, i: usize) -> Result<Vec<VoucherSpec>, RpcError> {
        let Value::Array(items) = p.value(i) else {
            return Err(p.invalid(i, "expected an array of voucher specs"));
        };
        if items.is_empty() || items.len() > MAX_PAYMENT_VOUCHERS {
            return Err(p.invalid(i, format!("between 1 and {MAX_PAYMENT_VOUCHERS} vouchers")));
        }
        items
            .into_iter()
            .map(|item| {
                let spec: VoucherSpecJson =
                    serde_json::from_value(item).map_err(|e| p.invalid(i, e))?;
                let spec = spec.parse().map_err(|e| p.invalid(i, e))?;
                if spec.amount.is_negative() {
                    return Err(p.invalid(i, "the amount must not be negative"));
                }
                Ok(spec)
            })
            .collect()
    }

    fn vouchers_json(&self, vouchers: &[SignedVoucher]) -> Result<Value, RpcError> {
        vouchers.iter().map(|v| self.encode(v)).collect::<Result<Vec<_>, _>>().map(Value::from)
    }

    /// Lotus's `ChannelInfo`: `{"Channel","WaitSentinel"}`.
    /// Publishes a blob for `Filecoin.PaychRetrievalPublish`: `{"Data": base64 | "RandomSize":
    /// n, "ChunkSize": n, "PricePerChunk": attoFIL, "CorruptChunk": n | null}`, paid to the
    /// wallet's default address.
    async fn publish(&self, spec: &Value) -> Result<Manifest, String> {
        let Value::Object(spec) = spec else {
            return Err("expected an object {Data|RandomSize, ChunkSize, PricePerChunk}".into());
        };
        let number = |key: &str| -> Result<Option<u64>, String> {
            match spec.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => {
                    v.as_u64().map(Some).ok_or_else(|| format!("{key} must be a whole number"))
                }
            }
        };
        let data = match (spec.get("Data"), number("RandomSize")?) {
            (Some(Value::String(b64)), None) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("Data is not base64: {e}"))?,
            (None | Some(Value::Null), Some(size)) => {
                let size = usize::try_from(size)
                    .ok()
                    .filter(|s| *s <= retrieval::MAX_PUBLISHED_BYTES)
                    .ok_or_else(|| {
                        format!("RandomSize above {} bytes", retrieval::MAX_PUBLISHED_BYTES)
                    })?;
                let mut data = vec![0u8; size];
                getrandom::getrandom(&mut data).map_err(|e| e.to_string())?;
                data
            }
            _ => return Err("give exactly one of Data (base64) or RandomSize".into()),
        };
        let chunk_size = number("ChunkSize")?.ok_or("ChunkSize is required")?;
        let price = match spec.get("PricePerChunk") {
            Some(Value::String(text)) => json::parse_amount_field("PricePerChunk", text)
                .ok()
                .filter(|a| !a.is_negative())
                .ok_or("PricePerChunk must be a non-negative attoFIL amount")?,
            _ => return Err("PricePerChunk (attoFIL, as a string) is required".into()),
        };
        let faults = retrieval::Faults { corrupt_chunk: number("CorruptChunk")? };
        let payee = self
            .wallet
            .default_address()
            .map_err(|e| e.to_string())?
            .ok_or("the wallet has no default address")?;
        let net = self.net().map_err(|e| e.message.clone())?;
        net.retrieval().publish(data, chunk_size, price, payee, faults).map_err(|e| e.to_string())
    }

    fn manifest_json(&self, manifest: &Manifest) -> Value {
        json!({
            "Root": hex::encode(&manifest.root),
            "Size": manifest.size,
            "ChunkSize": manifest.chunk_size,
            "Chunks": manifest.chunks(),
            "PricePerChunk": json::amount_text(&manifest.price_per_chunk),
            "Payee": self.address_text(&manifest.payee),
        })
    }

    fn handle_json(&self, handle: &ChannelHandle) -> Result<Value, RpcError> {
        Ok(json!({
            "Channel": self.encode_option(&handle.channel)?,
            "WaitSentinel": self.encode_option(&handle.wait_sentinel)?,
        }))
    }

    /// Lotus's `ChannelAvailableFunds` (with its `VoucherReedeemedAmt` spelling).
    fn funds_json(&self, funds: &AvailableFunds) -> Result<Value, RpcError> {
        Ok(json!({
            "Channel": self.encode_option(&funds.channel)?,
            "From": self.address_text(&funds.from),
            "To": self.address_text(&funds.to),
            "ConfirmedAmt": json::amount_text(&funds.confirmed),
            "PendingAmt": json::amount_text(&funds.pending),
            "NonReservedAmt": json::amount_text(&funds.non_reserved),
            "PendingAvailableAmt": json::amount_text(&funds.pending_available),
            "PendingWaitSentinel": self.encode_option(&funds.pending_wait_sentinel)?,
            "QueuedAmt": json::amount_text(&funds.queued),
            "VoucherReedeemedAmt": json::amount_text(&funds.voucher_redeemed),
        }))
    }

    /// Lotus's `PaychStatus` (`ControlAddr`, `Direction`: 1 inbound, 2 outbound) with
    /// everything else the manager knows about the channel.
    fn status_json(&self, status: &ChannelStatus) -> Result<Value, RpcError> {
        let lanes: Vec<Value> = status
            .lanes
            .iter()
            .map(|lane| {
                json!({
                    "Lane": lane.lane,
                    "Nonce": lane.nonce,
                    "Amount": json::amount_text(&lane.amount),
                    "RedeemedOnChain": json::amount_text(&lane.redeemed_on_chain),
                    "Closed": lane.closed,
                })
            })
            .collect();
        Ok(json!({
            "ControlAddr": self.address_text(&status.control),
            "Direction": match status.direction {
                Direction::Inbound => 1,
                Direction::Outbound => 2,
            },
            "Channel": self.encode_option(&status.channel)?,
            "From": self.address_text(&status.from),
            "To": self.address_text(&status.to),
            "ConfirmedAmt": json::amount_text(&status.confirmed),
            "PendingAmt": json::amount_text(&status.pending),
            "PendingChainMessage": self.encode_option(&status.pending_message)?,
            "QueuedAmt": json::amount_text(&status.queued),
            "VoucherRedeemedAmt": json::amount_text(&status.voucher_redeemed),
            "ReservedAmt": json::amount_text(&status.reserved),
            "AvailableAmt": json::amount_text(&status.available),
            "NextLane": status.next_lane,
            "Settling": status.settling,
            "SettlingAt": status.settling_at,
            "Lanes": lanes,
            "Lifecycle": format!("{:?}", status.lifecycle),
            "CreateError": status.create_error,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn every_method_is_declared_once() {
        for (i, m) in METHODS.iter().enumerate() {
            assert!(METHODS[i + 1..].iter().all(|n| n.name != m.name), "{}", m.name);
            assert!(m.optional <= m.arity);
        }
    }

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
