//! The node's API on a WebSocket, as go-jsonrpc serves it to Lotus clients (which dial
//! `ws://HOST:PORT/rpc/v1` for a multiaddr API info): each text or binary message is one
//! request (or a batch); the calls run at once, each answered in its own message when it
//! finishes, so answers may come out of order and are matched by id. `xrpc.cancel(id)`
//! stops a call in flight (go-jsonrpc's client sends it when its caller gives up).
//!
//! Bounded: at most [`MAX_WEBSOCKETS`] connections (more get HTTP 503 at the upgrade),
//! messages of at most [`MAX_REQUEST_BYTES`] (a larger one closes the connection), at most
//! [`MAX_CALLS_IN_FLIGHT`] calls in flight on a connection (the next message is read when
//! one finishes), and the server's request permits across all connections.
//!
//! It holds the connection's in-flight calls and nothing else; the calls themselves are
//! [`super::calls`]'s.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use paych_core::jsonrpc::RpcResponse;
use serde_json::Value;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, JoinSet};

use super::auth::Permission;
use super::calls::{self, Body, Request, Service, CANCEL_METHOD};
use super::envelope::MAX_REQUEST_BYTES;
use super::methods::ApiVersion;

/// The most WebSocket connections open at once.
pub const MAX_WEBSOCKETS: usize = 64;
/// The most calls in flight on one WebSocket connection.
pub const MAX_CALLS_IN_FLIGHT: usize = 32;

/// Upgrades a request to a WebSocket serving API `version` to a caller holding `granted`.
pub(crate) fn upgrade(
    service: Arc<Service>,
    version: ApiVersion,
    granted: Vec<Permission>,
    ws: WebSocketUpgrade,
) -> Response {
    let Ok(slot) = service.websockets.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many WebSocket connections").into_response();
    };
    ws.max_message_size(MAX_REQUEST_BYTES).max_frame_size(MAX_REQUEST_BYTES).on_upgrade(
        move |socket| async move {
            let _slot = slot;
            service.api.metrics.api_websockets.inc();
            Connection::new(service.clone(), version, granted).serve(socket).await;
            service.api.metrics.api_websockets.dec();
        },
    )
}

/// One WebSocket connection's calls.
struct Connection {
    service: Arc<Service>,
    version: ApiVersion,
    granted: Arc<[Permission]>,
    /// Bounds the calls in flight.
    in_flight: Arc<Semaphore>,
    /// The calls running, by their id's JSON text, for `xrpc.cancel`.
    running: HashMap<String, AbortHandle>,
    tasks: JoinSet<()>,
}

impl Connection {
    fn new(service: Arc<Service>, version: ApiVersion, granted: Vec<Permission>) -> Self {
        Connection {
            service,
            version,
            granted: granted.into(),
            in_flight: Arc::new(Semaphore::new(MAX_CALLS_IN_FLIGHT)),
            running: HashMap::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Reads requests and writes answers until the client closes, the connection fails or
    /// the server stops; the calls still running then are stopped.
    async fn serve(mut self, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let (answers, mut outbox) = mpsc::channel::<Vec<u8>>(MAX_CALLS_IN_FLIGHT);
        let writer = async move {
            while let Some(answer) = outbox.recv().await {
                let text = String::from_utf8_lossy(&answer).into_owned();
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        };
        let mut closed = self.service.closed.clone();
        let reader = async move {
            loop {
                let message = tokio::select! {
                    message = stream.next() => message,
                    _ = closed.wait_for(|closed| *closed) => break,
                };
                let bytes = match message {
                    Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
                    Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                };
                if !self.take(&bytes, &answers).await {
                    break;
                }
            }
            self.tasks.shutdown().await;
        };
        tokio::join!(reader, writer);
    }

    /// Starts the calls of one message; `false` when the connection is done.
    async fn take(&mut self, bytes: &[u8], answers: &mpsc::Sender<Vec<u8>>) -> bool {
        while self.tasks.try_join_next().is_some() {}
        match calls::parse_body(bytes) {
            Err(answer) => answers.send(calls::encode(&answer)).await.is_ok(),
            Ok(Body::One(request)) if request.method == CANCEL_METHOD => {
                self.cancel(&request);
                true
            }
            Ok(body) => {
                let Ok(slot) = self.in_flight.clone().acquire_owned().await else { return false };
                self.start(body, slot, answers.clone()).await;
                true
            }
        }
    }

    /// Runs `body`'s calls in a task that sends their answers to the writer.
    async fn start(
        &mut self,
        body: Body,
        slot: OwnedSemaphorePermit,
        answers: mpsc::Sender<Vec<u8>>,
    ) {
        let (service, version, granted) =
            (self.service.clone(), self.version, self.granted.clone());
        let id = match &body {
            Body::One(Request { id: Some(id), .. }) => Some(id.to_string()),
            _ => None,
        };
        let task = self.tasks.spawn(async move {
            let _slot = slot;
            let Ok(_permit) = service.permits.clone().acquire_owned().await else { return };
            let answer = match body {
                Body::One(request) => calls::answer_one(&service.api, version, &granted, request)
                    .await
                    .map(|a| calls::encode(&a)),
                Body::Batch(requests) => {
                    let answers: Vec<RpcResponse> =
                        calls::answer_batch(&service.api, version, &granted, requests).await;
                    Some(calls::encode(&answers))
                }
            };
            if let Some(answer) = answer {
                let _ = answers.send(answer).await;
            }
        });
        if let Some(id) = id {
            self.running.retain(|_, call| !call.is_finished());
            self.running.insert(id, task);
        }
    }

    /// `xrpc.cancel(id)`: stops the call with that id, if it still runs. Not answered.
    fn cancel(&mut self, request: &Request) {
        let id = match &request.params {
            Value::Array(params) => params.first().map(Value::to_string),
            _ => None,
        };
        if let Some(call) = id.and_then(|id| self.running.remove(&id)) {
            call.abort();
        }
    }
}
