//! The typed JSON-RPC client of a running `paych daemon`, for the CLI, the testnet and the
//! tests: `client.call::<PaychStatus>((channel,))` writes the method's declared
//! parameters and reads its declared result ([`super::methods`]). It finds the daemon
//! through its repo directory (the `api` file holds the API's multiaddr
//! `/ip4/127.0.0.1/tcp/PORT/http`, the `token` file an admin JWT) or is given the API's URL
//! and token, and makes one call per request. It never reads the keystore or the datastore.

use std::path::{Path, PathBuf};
use std::time::Duration;

use paych_core::jsonrpc::RpcRequest;
use paych_core::types::Network;
use serde_json::Value;

use super::methods::Method;
use super::params::ParamList;

/// How long one call may take (a payment waits for the payee; add-funds for the chain).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// The largest answer read, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The repo has no `api` file: no daemon runs on it.
    #[error(
        "no paych daemon is running on the repo {} (it has no api file): start one with \
         `paych daemon`, or point --repo / $PAYCH_PATH at the repo of a running one",
        .0.display()
    )]
    NotRunning(PathBuf),
    /// The `api` file does not hold an address the client understands.
    #[error("{path}: expected /ip4/<address>/tcp/<port>/http, found {text:?}", path = .0.display(), text = .1)]
    BadApiFile(PathBuf, String),
    /// A repo file could not be read.
    #[error("cannot read {path}: {error}", path = .0.display(), error = .1)]
    Read(PathBuf, std::io::Error),
    /// The daemon could not be reached.
    #[error(
        "cannot reach the paych daemon at {0}: {1}; is it running? start one with `paych daemon`"
    )]
    Unreachable(String, String),
    /// The daemon took longer to answer than the client waits: it is up, and may still be
    /// working on the call (a call waiting for a message that does not land, say).
    #[error(
        "the paych daemon at {url} did not answer {method} within {after:?}; it may still be \
         working on it"
    )]
    TimedOut {
        /// The API's URL.
        url: String,
        /// The method called.
        method: String,
        /// How long the client waited.
        after: Duration,
    },
    /// The daemon refused the token or answered something other than JSON-RPC.
    #[error("the paych daemon at {0} answered HTTP {1}: {2}")]
    Http(String, u16, String),
    /// The method failed.
    #[error("{message}")]
    Rpc {
        /// The JSON-RPC error code.
        code: i64,
        /// The daemon's message.
        message: String,
    },
    /// The answer is not a JSON-RPC answer.
    #[error("the paych daemon's answer is not JSON-RPC: {0}")]
    BadAnswer(String),
    /// The parameters could not be written, or the result is not the method's shape.
    #[error("{method}: {reason}")]
    Shape {
        /// The method called.
        method: &'static str,
        /// What did not fit.
        reason: String,
    },
}

/// A client of one daemon's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    url: String,
    token: Option<String>,
    network: Network,
    http: reqwest::Client,
    timeout: Duration,
}

impl ApiClient {
    /// A client of the daemon running on `repo`, with the repo's admin token when it can be
    /// read (without it the daemon grants read only).
    pub fn from_repo(repo: &Path) -> Result<Self, ClientError> {
        let api_path = repo.join("api");
        let api = match std::fs::read_to_string(&api_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ClientError::NotRunning(repo.to_path_buf()))
            }
            Err(e) => return Err(ClientError::Read(api_path, e)),
        };
        let url = rpc_url(&api).ok_or_else(|| ClientError::BadApiFile(api_path, api.clone()))?;
        let token = std::fs::read_to_string(repo.join("token"))
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        Ok(ApiClient::new(url, token))
    }

    /// A client of the API at `url` (`http://HOST:PORT/rpc/v1`) sending `token`.
    pub fn new(url: String, token: Option<String>) -> Self {
        ApiClient {
            url,
            token,
            network: Network::Testnet,
            http: http_client(CALL_TIMEOUT),
            timeout: CALL_TIMEOUT,
        }
    }

    /// The same client, letting one call take up to `timeout` instead of [`CALL_TIMEOUT`]
    /// (a paid retrieval answers only once it has paid for every chunk). A call that times
    /// out fails; it is never sent again.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.http = http_client(timeout);
        self.timeout = timeout;
        self
    }

    /// The same client, writing addresses for `network` (the daemon reads either prefix;
    /// the default is testnet's `t`).
    pub fn with_network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// The API's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls the method `M` with its positional `params` and reads its result.
    pub async fn call<M: Method>(&self, params: M::Params) -> Result<M::Result, ClientError> {
        let shape = |reason: String| ClientError::Shape { method: M::NAME, reason };
        let params = params.write_all(self.network).map_err(|e| shape(e.to_string()))?;
        let result = self.call_raw(M::NAME, params).await?;
        serde_json::from_value(result).map_err(|e| shape(e.to_string()))
    }

    /// Calls `method` with positional `params` as they are, and returns its result: for
    /// tests of the wire and of bad input.
    pub async fn call_raw(&self, method: &str, params: Vec<Value>) -> Result<Value, ClientError> {
        let body = RpcRequest::new(1, method, params);
        let mut request = self.http.post(&self.url).json(&body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| self.transport_error(method, &e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.transport_error(method, &e))?;
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(ClientError::BadAnswer(format!("larger than {MAX_RESPONSE_BYTES} bytes")));
        }
        let answer: Value = match serde_json::from_slice(&bytes) {
            Ok(answer) => answer,
            Err(_) if !status.is_success() => {
                let mut text: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
                if text.is_empty() && status == reqwest::StatusCode::UNAUTHORIZED {
                    // As Lotus, the API answers a refused token with an empty 401.
                    text = "the token was refused".to_owned();
                }
                return Err(ClientError::Http(self.url.clone(), status.as_u16(), text));
            }
            Err(e) => return Err(ClientError::BadAnswer(e.to_string())),
        };
        if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
            return Err(ClientError::Rpc {
                code: error["code"].as_i64().unwrap_or_default(),
                message: error["message"].as_str().unwrap_or("(no message)").to_owned(),
            });
        }
        match answer.get("result") {
            Some(result) => Ok(result.clone()),
            None => Err(ClientError::BadAnswer("neither result nor error".to_owned())),
        }
    }
}

impl ApiClient {
    /// Why a call of `method` got no answer: the daemon took longer than the client waits
    /// (it is up), or it could not be reached.
    fn transport_error(&self, method: &str, error: &reqwest::Error) -> ClientError {
        if error.is_timeout() {
            ClientError::TimedOut {
                url: self.url.clone(),
                method: method.to_owned(),
                after: self.timeout,
            }
        } else {
            ClientError::Unreachable(self.url.clone(), root_cause(error))
        }
    }
}

/// An HTTP client whose requests each take at most `timeout`.
fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).build().unwrap_or_else(|_| reqwest::Client::new())
}

/// `http://HOST:PORT/rpc/v1` from the `api` file's `/ip4/HOST/tcp/PORT/http` (or `/ip6/…`).
pub fn rpc_url(api: &str) -> Option<String> {
    let parts: Vec<&str> = api.trim().split('/').collect();
    match parts.as_slice() {
        ["", "ip4", host, "tcp", port, "http"] => {
            let port: u16 = port.parse().ok()?;
            let host: std::net::Ipv4Addr = host.parse().ok()?;
            Some(format!("http://{host}:{port}/rpc/v1"))
        }
        ["", "ip6", host, "tcp", port, "http"] => {
            let port: u16 = port.parse().ok()?;
            let host: std::net::Ipv6Addr = host.parse().ok()?;
            Some(format!("http://[{host}]:{port}/rpc/v1"))
        }
        _ => None,
    }
}

/// The innermost message of an error chain ("Connection refused" rather than "error
/// sending request").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn reads_the_api_file() {
        assert_eq!(
            rpc_url("/ip4/127.0.0.1/tcp/3456/http\n").unwrap(),
            "http://127.0.0.1:3456/rpc/v1"
        );
        assert_eq!(rpc_url("/ip6/::1/tcp/1/http").unwrap(), "http://[::1]:1/rpc/v1");
        for bad in ["", "/ip4/127.0.0.1/tcp/x/http", "/ip4/host/tcp/1/http", "/dns/a/tcp/1/http"] {
            assert!(rpc_url(bad).is_none(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_daemon_slower_than_the_timeout_is_not_called_unreachable() {
        // A server that accepts the connection and reads the request but never answers, as
        // a daemon does while a message it waits for does not land.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/rpc/v1", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(socket);
        });
        let client = ApiClient::new(url, None).with_timeout(Duration::from_millis(200));
        let error = client.call_raw("Filecoin.PaychGetWaitReady", vec![]).await.unwrap_err();
        assert!(matches!(error, ClientError::TimedOut { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("did not answer Filecoin.PaychGetWaitReady within"), "{text}");
        assert!(!text.contains("cannot reach"), "{text}");
        server.abort();
    }

    #[test]
    fn a_repo_without_api_file_says_to_start_a_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let error = ApiClient::from_repo(dir.path()).unwrap_err();
        assert!(error.to_string().contains("start one with `paych daemon`"), "{error}");
    }
}
