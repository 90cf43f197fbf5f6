//! The JSON-RPC 2.0 envelope: the request, the response and the error object, and the
//! standard error codes. Shared by the Lotus client ([`crate::chain::lotus`]), the devnet's
//! Lotus server and the node's API. It knows no method and does no I/O.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `jsonrpc` member of every request and response.
pub const JSONRPC_VERSION: &str = "2.0";

/// JSON-RPC 2.0 error codes.
pub mod error_code {
    /// The body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Wrong number or shape of parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The server failed (a bug, not the request).
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The chain refused the request (a message rejected, an actor aborting).
    pub const CHAIN_REJECTED: i64 = -32000;
    /// The actor, message or object asked for does not exist.
    pub const NOT_FOUND: i64 = -32001;
    /// Lotus's `EExpensiveFork` (`api/api_errors.go`): the state a call needs is not
    /// available. Not a timeout: go-jsonrpc answers a timed-out Go call with code 1.
    pub const EXPENSIVE_FORK: i64 = -32002;
}

/// A JSON-RPC request with positional parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcRequest {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The request id, echoed in the response.
    pub id: Value,
    /// The method, `Filecoin.<Name>`.
    pub method: String,
    /// The positional parameters.
    #[serde(default)]
    pub params: Vec<Value>,
}

impl RpcRequest {
    /// A request for `method` with `params`.
    pub fn new(id: u64, method: impl Into<String>, params: Vec<Value>) -> Self {
        RpcRequest {
            jsonrpc: JSONRPC_VERSION.to_owned(),
            id: Value::from(id),
            method: method.into(),
            params,
        }
    }
}

/// A JSON-RPC error object: `{"code","message","data"?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("JSON-RPC error {code}: {message}")]
pub struct RpcError {
    /// The error code (see [`error_code`]).
    pub code: i64,
    /// What went wrong.
    pub message: String,
    /// Structured details; paych servers put `{"ExitCode":n}` here when an actor aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// An error without details.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError { code, message: message.into(), data: None }
    }
}

/// A JSON-RPC response: `{"jsonrpc","id","result"}` or `{"jsonrpc","id","error"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcResponse {
    /// The id of the request answered (`null` when it could not be read).
    pub id: Value,
    /// The result, or the error.
    pub outcome: Result<Value, RpcError>,
}

impl Serialize for RpcResponse {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("jsonrpc", JSONRPC_VERSION)?;
        map.serialize_entry("id", &self.id)?;
        match &self.outcome {
            Ok(result) => map.serialize_entry("result", result)?,
            Err(error) => map.serialize_entry("error", error)?,
        }
        map.end()
    }
}

#[derive(Deserialize)]
struct RawResponse {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcError>,
}

impl<'de> Deserialize<'de> for RpcResponse {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawResponse::deserialize(d)?;
        let outcome = match raw.error {
            Some(error) => Err(error),
            None => Ok(raw.result.unwrap_or(Value::Null)),
        };
        Ok(RpcResponse { id: raw.id, outcome })
    }
}
