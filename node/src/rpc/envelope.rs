//! The JSON-RPC 2.0 server envelope shared by the node's HTTP servers (the devnet's chain API and
//! the node's payment-channel API): reading a bounded request body, checking the envelope,
//! reading positional parameters, and writing the answer. It knows no method and never
//! touches the chain or the store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt;
use paych_core::jsonrpc::{error_code, RpcError, RpcResponse, JSONRPC_VERSION};
use paych_core::lotus_json::{self as json, JsonError, LotusJson};
use paych_core::types::{Address, TokenAmount};
use serde_json::Value;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// The largest request body accepted, in bytes.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// How much of an oversized body is read (and dropped) before answering, so that the
/// client gets the error instead of a reset connection.
const MAX_DRAINED_BYTES: usize = 16 << 20;
/// How long a client may take to send its request body.
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The most requests served at once; more get HTTP 503.
pub const MAX_CONCURRENT_REQUESTS: usize = 256;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
}

/// How long [`Running::shutdown`] waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// An HTTP server running in a task. Dropping it stops the server too.
#[derive(Debug)]
pub(crate) struct Running {
    local_addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// The address the server listens on.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting requests, lets requests in flight finish for a few seconds, then
    /// stops; `what` names the server in logs.
    pub(crate) async fn shutdown(self, what: &str) {
        let Running { stop, mut task, .. } = self;
        let _ = stop.send(());
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "{what} failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "{what} task failed"),
            Err(_) => task.abort(),
        }
    }
}

/// A router answering JSON-RPC with `handler` on `/rpc/v1` and, as Lotus does, `/rpc/v0`.
pub(crate) fn rpc_routes<H, T, S>(handler: H) -> Router<S>
where
    H: axum::handler::Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    Router::new().route("/rpc/v1", post(handler.clone())).route("/rpc/v0", post(handler))
}

/// Binds `listen` and serves `router` on it in a task; `what` names the server in logs.
pub(crate) async fn spawn(
    listen: SocketAddr,
    router: Router,
    what: &str,
) -> Result<Running, ServeError> {
    let bind = |source| ServeError::Bind { addr: listen, source };
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(bind)?;
    let local_addr = listener.local_addr().map_err(bind)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                // A dropped sender stops the server as well.
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(%local_addr, "{what} listening");
    Ok(Running { local_addr, stop, task })
}

/// Takes one of `permits` and reads one JSON-RPC call from `body`; when that fails, the
/// answer to send back instead (HTTP 503 when every permit is taken, a JSON-RPC error
/// object otherwise). The permit is held while the call is served.
pub(crate) async fn read_call(
    permits: &Arc<Semaphore>,
    body: Body,
) -> Result<(OwnedSemaphorePermit, Call), Response> {
    let Ok(permit) = permits.clone().try_acquire_owned() else {
        return Err(
            (StatusCode::SERVICE_UNAVAILABLE, "too many requests in flight").into_response()
        );
    };
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, read_body(body)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(BodyError::TooLarge)) => {
            let error = RpcError::new(
                error_code::INVALID_REQUEST,
                format!("request body larger than {MAX_REQUEST_BYTES} bytes"),
            );
            return Err(reply(StatusCode::PAYLOAD_TOO_LARGE, Value::Null, Err(error)));
        }
        Ok(Err(BodyError::Read(reason))) => {
            let error = RpcError::new(
                error_code::PARSE_ERROR,
                format!("cannot read the request body: {reason}"),
            );
            return Err(reply(StatusCode::BAD_REQUEST, Value::Null, Err(error)));
        }
        Err(_) => {
            let error = RpcError::new(error_code::PARSE_ERROR, "request body too slow");
            return Err(reply(StatusCode::REQUEST_TIMEOUT, Value::Null, Err(error)));
        }
    };
    let request: Value = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(e) => {
            let error = RpcError::new(error_code::PARSE_ERROR, format!("parse error: {e}"));
            return Err(reply(StatusCode::OK, Value::Null, Err(error)));
        }
    };
    match Call::parse(request) {
        Ok(call) => Ok((permit, call)),
        Err((id, error)) => Err(reply(StatusCode::OK, id, Err(error))),
    }
}

/// The answer to a call: its outcome under its id, or nothing for a notification.
pub(crate) fn answer(id: Option<Value>, outcome: Result<Value, RpcError>) -> Response {
    match id {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(id) => reply(StatusCode::OK, id, outcome),
    }
}

pub(crate) fn reply(status: StatusCode, id: Value, outcome: Result<Value, RpcError>) -> Response {
    let response = RpcResponse { id, outcome };
    match serde_json::to_vec(&response) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Why a request body could not be read.
pub(crate) enum BodyError {
    /// Larger than [`MAX_REQUEST_BYTES`].
    TooLarge,
    /// The connection failed while the body was read.
    Read(String),
}

/// Reads a body of at most [`MAX_REQUEST_BYTES`]; an oversized body is read on (and
/// dropped) up to [`MAX_DRAINED_BYTES`] so that the error reaches the client.
pub(crate) async fn read_body(mut body: Body) -> Result<Vec<u8>, BodyError> {
    let mut bytes = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        total = total.saturating_add(data.len());
        if total > MAX_DRAINED_BYTES {
            return Err(BodyError::TooLarge);
        }
        if total <= MAX_REQUEST_BYTES {
            bytes.extend_from_slice(&data);
        }
    }
    if total > MAX_REQUEST_BYTES {
        Err(BodyError::TooLarge)
    } else {
        Ok(bytes)
    }
}

/// Text cut to a length fit for a log line or an error message.
pub(crate) fn excerpt(text: &str) -> String {
    text.chars().take(64).collect()
}

/// The error of a call to a method the server does not have.
pub(crate) fn not_found(method: &str) -> RpcError {
    RpcError::new(error_code::METHOD_NOT_FOUND, format!("method '{}' not found", excerpt(method)))
}

/// A request read from its JSON.
pub(crate) struct Call {
    /// `None` for a notification (no `id` member).
    pub(crate) id: Option<Value>,
    pub(crate) method: String,
    pub(crate) params: Vec<Value>,
}

impl Call {
    /// Checks the JSON-RPC 2.0 envelope; the error comes with the id to answer it with.
    pub(crate) fn parse(request: Value) -> Result<Call, (Value, RpcError)> {
        let invalid = |message: &str| RpcError::new(error_code::INVALID_REQUEST, message);
        let Value::Object(mut object) = request else {
            return Err((
                Value::Null,
                invalid("a request must be a JSON object (batches are not supported)"),
            ));
        };
        let id = object.remove("id");
        if !matches!(id, None | Some(Value::Null | Value::String(_) | Value::Number(_))) {
            return Err((Value::Null, invalid("id must be a string, a number or null")));
        }
        let answer_id = id.clone().unwrap_or(Value::Null);
        if object.get("jsonrpc").and_then(Value::as_str) != Some(JSONRPC_VERSION) {
            return Err((answer_id, invalid("jsonrpc must be \"2.0\"")));
        }
        let method = match object.remove("method") {
            Some(Value::String(method)) => method,
            _ => return Err((answer_id, invalid("method must be a string"))),
        };
        let params = match object.remove("params") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(params)) => params,
            Some(_) => {
                let error = RpcError::new(
                    error_code::INVALID_PARAMS,
                    "params must be an array (positional parameters)",
                );
                return Err((answer_id, error));
            }
        };
        Ok(Call { id, method, params })
    }
}

/// The error of `method`'s parameter `i`, refused for `reason`.
pub(crate) fn invalid_param(method: &str, i: usize, reason: impl std::fmt::Display) -> RpcError {
    RpcError::new(error_code::INVALID_PARAMS, format!("{method} parameter {i}: {reason}"))
}

/// A method's positional parameters, checked for count and read one by one.
pub(crate) struct Params<'a> {
    method: &'a str,
    values: Vec<Value>,
}

impl<'a> Params<'a> {
    pub(crate) fn new(method: &'a str, values: Vec<Value>, arity: usize) -> Result<Self, RpcError> {
        if values.len() != arity {
            return Err(RpcError::new(
                error_code::INVALID_PARAMS,
                format!("{method} takes {arity} parameters, got {}", values.len()),
            ));
        }
        Ok(Params { method, values })
    }

    pub(crate) fn take(&mut self, i: usize) -> Value {
        self.values.get_mut(i).map(std::mem::take).unwrap_or_default()
    }

    pub(crate) fn invalid(&self, i: usize, reason: impl std::fmt::Display) -> RpcError {
        invalid_param(self.method, i, reason)
    }

    pub(crate) fn lotus<T: LotusJson>(&mut self, i: usize) -> Result<T, RpcError> {
        let value = self.take(i);
        json::from_value(value).map_err(|e: JsonError| self.invalid(i, e))
    }

    pub(crate) fn address(&mut self, i: usize) -> Result<Address, RpcError> {
        match self.take(i) {
            Value::String(text) => {
                json::parse_address_field("address", &text).map_err(|e| self.invalid(i, e))
            }
            _ => Err(self.invalid(i, "expected an address string")),
        }
    }

    pub(crate) fn amount(&mut self, i: usize) -> Result<TokenAmount, RpcError> {
        match self.take(i) {
            Value::String(text) => {
                json::parse_amount_field("amount", &text).map_err(|e| self.invalid(i, e))
            }
            _ => Err(self.invalid(i, "expected a decimal attoFIL string")),
        }
    }

    /// A tipset key: `null` or an array of at most [`json::MAX_TIPSET_KEY_CIDS`] CIDs (empty
    /// for the head).
    pub(crate) fn tipset_key(&mut self, i: usize) -> Result<json::TipSetKey, RpcError> {
        match self.take(i) {
            value @ (Value::Null | Value::Array(_)) => {
                json::from_value(value).map_err(|e: JsonError| self.invalid(i, e))
            }
            _ => Err(self.invalid(i, "expected a tipset key (an array of CIDs, or null)")),
        }
    }

    pub(crate) fn u64(&mut self, i: usize) -> Result<u64, RpcError> {
        self.take(i).as_u64().ok_or_else(|| self.invalid(i, "expected an unsigned integer"))
    }

    pub(crate) fn i64(&mut self, i: usize) -> Result<i64, RpcError> {
        self.take(i).as_i64().ok_or_else(|| self.invalid(i, "expected an integer"))
    }

    pub(crate) fn bool(&mut self, i: usize) -> Result<bool, RpcError> {
        self.take(i).as_bool().ok_or_else(|| self.invalid(i, "expected true or false"))
    }

    pub(crate) fn object_or_null(&mut self, i: usize) -> Result<(), RpcError> {
        match self.take(i) {
            Value::Null | Value::Object(_) => Ok(()),
            _ => Err(self.invalid(i, "expected an object or null")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn envelope_errors_carry_the_request_id_when_it_is_known() {
        let (id, e) = Call::parse(json!({"jsonrpc": "1.0", "id": 7, "method": "x"})).err().unwrap();
        assert_eq!((id, e.code), (json!(7), error_code::INVALID_REQUEST));
        let (id, e) = Call::parse(json!([1, 2])).err().unwrap();
        assert_eq!((id, e.code), (Value::Null, error_code::INVALID_REQUEST));
        let (_, e) = Call::parse(json!({"jsonrpc": "2.0", "id": 1, "method": "x", "params": {}}))
            .err()
            .unwrap();
        assert_eq!(e.code, error_code::INVALID_PARAMS);
        let call = Call::parse(json!({"jsonrpc": "2.0", "method": "x"})).ok().unwrap();
        assert!(call.id.is_none());
    }
}
