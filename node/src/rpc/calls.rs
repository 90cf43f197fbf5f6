//! What the node's API answers to a request body, whatever carried it (an HTTP POST or a
//! WebSocket message), as go-jsonrpc — the JSON-RPC library of Lotus — answers it: one call
//! or a batch, the error codes and texts of go-jsonrpc's `handler.go`, and the HTTP status
//! go-jsonrpc's `server.go` gives each.
//!
//! | what | code | message | HTTP |
//! |---|---|---|---|
//! | empty body, empty batch | `-32600` | `Invalid request` | 400 |
//! | not JSON, not a request object | `-32700` | `Parse error` | 500 |
//! | an id that is not a string, a number or null | `-32700` | `failed to parse ID: invalid id type: bool` | 500 |
//! | unknown method | `-32601` | `method 'Filecoin.X' not found` | 500 |
//! | params not an array | `-32700` | `unmarshaling param array: …` | 500 |
//! | wrong parameter count | `-32602` | `wrong param count (method 'Filecoin.X'): 1 != 2` | 500 |
//! | a parameter that does not decode | `-32700` | `Filecoin.X parameter 0: …` (ours: go-jsonrpc names the Go type) | 500 |
//! | the method failed, or the caller lacks its permission | `1` | the method's error; `missing permission to invoke 'X' (need 'sign')` | 200 |
//!
//! A batch is answered with HTTP 200 whatever its calls answer. A notification (a request
//! without an id, or with a `null` one) is run and not answered, unless it fails before it
//! runs (as go-jsonrpc, which answers those errors with a `null` id).
//!
//! It checks the caller's permission against each method's declaration and runs the method;
//! it holds no state and never decides anything about channels or vouchers.

use std::sync::Arc;

use axum::http::StatusCode;
use paych_core::jsonrpc::{error_code, RpcError, RpcResponse};
use serde_json::Value;
use tokio::sync::{watch, Semaphore};
use tracing::Instrument;

use super::auth::Permission;
use super::context::{method_error, Api};
use super::envelope::{excerpt, Params};
use super::methods::{self, method_spec, ApiVersion, MethodSpec};

/// The most calls one batch may hold.
pub const MAX_BATCH_CALLS: usize = 64;

/// The method by which a go-jsonrpc client cancels one of its calls in flight on a
/// WebSocket (`websocket.go`'s `xrpc.cancel`, its one parameter the call's id).
pub const CANCEL_METHOD: &str = "xrpc.cancel";

/// What the API's calls are served with, by either transport.
pub(crate) struct Service {
    /// What the methods run against.
    pub(crate) api: Api,
    /// One a request served at once (HTTP requests, and calls on WebSocket connections).
    pub(crate) permits: Arc<Semaphore>,
    /// One an open WebSocket connection.
    pub(crate) websockets: Arc<Semaphore>,
    /// Turns `true` (or its sender is dropped) when the server stops.
    pub(crate) closed: watch::Receiver<bool>,
}

/// One request, as go-jsonrpc reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    /// `None` for a notification (no id, or `null`).
    pub(crate) id: Option<Value>,
    /// The method; empty when the request names none.
    pub(crate) method: String,
    /// The parameters as sent (`null` when absent).
    pub(crate) params: Value,
}

/// What a request body holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Body {
    /// One request.
    One(Request),
    /// A batch: a JSON array of requests.
    Batch(Vec<Request>),
}

/// An answer with the HTTP status go-jsonrpc sends it with.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The HTTP status.
    pub(crate) status: StatusCode,
    /// The answer's JSON; empty for a notification that ran.
    pub(crate) body: Vec<u8>,
}

/// An error answer that names no request (`"id": null`).
fn unnamed(code: i64, message: impl Into<String>) -> RpcResponse {
    RpcResponse { id: Value::Null, outcome: Err(RpcError::new(code, message)) }
}

/// Reads a request body: one request, or a batch of at most [`MAX_BATCH_CALLS`]; otherwise the
/// error to answer.
pub(crate) fn parse_body(bytes: &[u8]) -> Result<Body, RpcResponse> {
    let bytes = bytes.trim_ascii();
    if bytes.is_empty() {
        return Err(unnamed(error_code::INVALID_REQUEST, "Invalid request"));
    }
    let parse_error = || unnamed(error_code::PARSE_ERROR, "Parse error");
    if bytes.starts_with(b"[") && bytes.ends_with(b"]") {
        let values: Vec<Value> = serde_json::from_slice(bytes).map_err(|_| parse_error())?;
        if values.is_empty() {
            return Err(unnamed(error_code::INVALID_REQUEST, "Invalid request"));
        }
        if values.len() > MAX_BATCH_CALLS {
            return Err(unnamed(
                error_code::INVALID_REQUEST,
                format!("a batch of {} calls; at most {MAX_BATCH_CALLS} are served", values.len()),
            ));
        }
        let requests = values.into_iter().map(request_of).collect::<Option<_>>();
        return requests.map(Body::Batch).ok_or_else(parse_error);
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|_| parse_error())?;
    request_of(value).map(Body::One).ok_or_else(parse_error)
}

/// A request from its JSON, with go's leniency: members of the wrong type make it
/// unreadable; `jsonrpc` is not checked; a missing method is the empty one. The id is kept
/// as sent and checked when the request is answered.
fn request_of(value: Value) -> Option<Request> {
    let Value::Object(mut object) = value else { return None };
    if !matches!(object.get("jsonrpc"), None | Some(Value::Null | Value::String(_))) {
        return None;
    }
    let method = match object.remove("method") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(method)) => method,
        Some(_) => return None,
    };
    match object.get("meta") {
        None | Some(Value::Null) => {}
        Some(Value::Object(meta)) if meta.values().all(Value::is_string) => {}
        Some(_) => return None,
    }
    let id = object.remove("id").filter(|id| !id.is_null());
    let params = object.remove("params").unwrap_or(Value::Null);
    Some(Request { id, method, params })
}

/// The error of an id go-jsonrpc does not take (`normalizeID`: a string, a number or null).
fn id_error(id: &Value) -> Option<RpcError> {
    let go_type = match id {
        Value::String(_) | Value::Number(_) | Value::Null => return None,
        Value::Bool(_) => "bool",
        Value::Object(_) => "map[string]interface {}",
        Value::Array(_) => "[]interface {}",
    };
    Some(RpcError::new(
        error_code::PARSE_ERROR,
        format!("failed to parse ID: invalid id type: {go_type}"),
    ))
}

/// The HTTP status go-jsonrpc answers a single call's answer with: 400 for an invalid
/// request, 500 for the other errors its envelope raises, 200 for a result or a method's
/// error.
pub(crate) fn status_of(answer: &RpcResponse) -> StatusCode {
    match &answer.outcome {
        Err(e) if e.code == error_code::INVALID_REQUEST => StatusCode::BAD_REQUEST,
        Err(e)
            if [
                error_code::PARSE_ERROR,
                error_code::METHOD_NOT_FOUND,
                error_code::INVALID_PARAMS,
            ]
            .contains(&e.code) =>
        {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::OK,
    }
}

/// An answer's JSON, as go-jsonrpc writes it (one line).
pub(crate) fn encode(answer: &impl serde::Serialize) -> Vec<u8> {
    let mut body = serde_json::to_vec(answer).unwrap_or_default();
    body.push(b'\n');
    body
}

/// The answer to a whole request body from a caller holding `granted`.
pub(crate) async fn answer_body(
    api: &Api,
    version: ApiVersion,
    granted: &[Permission],
    bytes: &[u8],
) -> Reply {
    match parse_body(bytes) {
        Err(answer) => Reply { status: status_of(&answer), body: encode(&answer) },
        Ok(Body::One(request)) => match answer_one(api, version, granted, request).await {
            Some(answer) => Reply { status: status_of(&answer), body: encode(&answer) },
            None => Reply { status: StatusCode::OK, body: Vec::new() },
        },
        Ok(Body::Batch(requests)) => {
            let answers = answer_batch(api, version, granted, requests).await;
            Reply { status: StatusCode::OK, body: encode(&answers) }
        }
    }
}

/// The answers to a batch's calls, run one after the other as go-jsonrpc runs them, with
/// nothing for the notifications.
pub(crate) async fn answer_batch(
    api: &Api,
    version: ApiVersion,
    granted: &[Permission],
    requests: Vec<Request>,
) -> Vec<RpcResponse> {
    api.metrics.api_batch(requests.len());
    let mut answers = Vec::with_capacity(requests.len());
    for request in requests {
        answers.extend(answer_one(api, version, granted, request).await);
    }
    answers
}

/// The answer to one call; `None` for a notification that ran.
pub(crate) async fn answer_one(
    api: &Api,
    version: ApiVersion,
    granted: &[Permission],
    request: Request,
) -> Option<RpcResponse> {
    let Request { id, method, params } = request;
    if let Some(error) = id.as_ref().and_then(id_error) {
        return Some(RpcResponse { id: Value::Null, outcome: Err(error) });
    }
    let declared = method_spec(version, &method);
    api.metrics.api_call(declared.map_or("unknown", |m| m.name));
    let span = tracing::debug_span!("api", method = %excerpt(&method));
    let outcome = match declared {
        Some(spec) => run(api, granted, spec, params).instrument(span).await,
        None => Err(RpcError::new(
            error_code::METHOD_NOT_FOUND,
            format!("method '{}' not found", excerpt(&method)),
        )),
    };
    match (id, outcome) {
        (Some(id), outcome) => Some(RpcResponse { id, outcome }),
        // A notification's envelope errors are answered, as go-jsonrpc answers them.
        (None, Err(e)) if status_of_error(&e) != StatusCode::OK => {
            Some(RpcResponse { id: Value::Null, outcome: Err(e) })
        }
        (None, _) => None,
    }
}

fn status_of_error(e: &RpcError) -> StatusCode {
    status_of(&RpcResponse { id: Value::Null, outcome: Err(e.clone()) })
}

/// Checks the parameters' count, then the caller's permission, then runs the method.
async fn run(
    api: &Api,
    granted: &[Permission],
    spec: &'static MethodSpec,
    params: Value,
) -> Result<Value, RpcError> {
    let mut params = match params {
        Value::Null => Vec::new(),
        Value::Array(params) => params,
        other => {
            return Err(RpcError::new(
                error_code::PARSE_ERROR,
                format!(
                    "unmarshaling param array: json: cannot unmarshal {} into Go value of type \
                     []jsonrpc.param",
                    go_kind(&other)
                ),
            ))
        }
    };
    if params.len() < spec.arity && params.len() + spec.optional >= spec.arity {
        params.resize(spec.arity, Value::Null);
    }
    if params.len() != spec.arity {
        return Err(RpcError::new(
            error_code::INVALID_PARAMS,
            format!(
                "wrong param count (method '{}'): {} != {}",
                spec.name,
                params.len(),
                spec.arity
            ),
        ));
    }
    if !granted.iter().any(|p| *p >= spec.permission) {
        return Err(permission_error(spec));
    }
    let p = Params::new(spec.name, params, spec.arity)?;
    methods::dispatch(api, spec, p).await
}

/// Lotus's error for a call above the caller's permissions (go-jsonrpc's
/// `auth.PermissionedProxy`), naming the method without its `Filecoin.` namespace.
pub(crate) fn permission_error(spec: &MethodSpec) -> RpcError {
    let name = spec.name.strip_prefix("Filecoin.").unwrap_or(spec.name);
    method_error(format!("missing permission to invoke '{name}' (need '{}')", spec.permission))
}

/// The JSON kind as Go's `encoding/json` names it in an unmarshaling error.
fn go_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn error_of(bytes: &[u8]) -> (Value, i64, String) {
        let answer = parse_body(bytes).err().unwrap();
        let e = answer.outcome.unwrap_err();
        (answer.id, e.code, e.message)
    }

    #[test]
    fn bodies_that_are_no_request_get_go_jsonrpcs_errors() {
        let invalid = (Value::Null, error_code::INVALID_REQUEST, "Invalid request".to_owned());
        let parse = (Value::Null, error_code::PARSE_ERROR, "Parse error".to_owned());
        assert_eq!(error_of(b"  \n"), invalid);
        assert_eq!(error_of(b"[]"), invalid);
        assert_eq!(error_of(b"{"), parse);
        assert_eq!(error_of(b"[1]"), parse);
        assert_eq!(error_of(br#"{"method": 5}"#), parse);
        assert_eq!(error_of(br#"{"method": "x", "meta": {"a": 1}}"#), parse);
        let big = format!("[{}]", vec!["{}"; MAX_BATCH_CALLS + 1].join(","));
        assert_eq!(error_of(big.as_bytes()).1, error_code::INVALID_REQUEST);
    }

    #[test]
    fn requests_are_read_with_go_jsonrpcs_leniency() {
        let body = br#"{"jsonrpc":"2.0","id":3,"method":"Filecoin.ChainHead","params":[],
            "meta":{"SpanContext":"AAA"}}"#;
        let expected =
            Request { id: Some(json!(3)), method: "Filecoin.ChainHead".into(), params: json!([]) };
        assert_eq!(parse_body(body).unwrap(), Body::One(expected));
        // No jsonrpc member, a null id (a notification), no params.
        let Body::One(r) = parse_body(br#"{"id":null,"method":"m"}"#).unwrap() else { panic!() };
        assert_eq!((r.id, r.params), (None, Value::Null));
        let Body::Batch(b) = parse_body(br#" [{"id":1},{"id":"a"}] "#).unwrap() else { panic!() };
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn ids_go_jsonrpc_cannot_read_are_named_by_their_go_type() {
        assert!(id_error(&json!(1.5)).is_none());
        assert!(id_error(&json!("x")).is_none());
        assert_eq!(
            id_error(&json!(true)).unwrap().message,
            "failed to parse ID: invalid id type: bool"
        );
        assert_eq!(id_error(&json!({})).unwrap().code, error_code::PARSE_ERROR);
    }

    #[test]
    fn statuses_follow_go_jsonrpc() {
        let with = |code| {
            status_of(&RpcResponse { id: Value::Null, outcome: Err(RpcError::new(code, "")) })
        };
        assert_eq!(with(error_code::INVALID_REQUEST), StatusCode::BAD_REQUEST);
        assert_eq!(with(error_code::PARSE_ERROR), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(with(error_code::METHOD_NOT_FOUND), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(with(error_code::INVALID_PARAMS), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(with(1), StatusCode::OK);
    }
}
