//! The Lotus JSON-RPC server of `paych devnet`: an in-process [`Devnet`] served over HTTP
//! JSON-RPC 2.0, so that any Lotus client — [`paych_core::chain::lotus::LotusChain`]
//! included — can use it as it would a Lotus full node.
//!
//! `POST /rpc/v1` (and `/rpc/v0`) answers the chain methods a Lotus backend of the
//! payment-channel manager uses, in Lotus JSON ([`paych_core::lotus_json`], with
//! testnet `t` addresses): `ChainHead`, `ChainGetTipSetByHeight`, `ChainGetBlockMessages`,
//! `ChainReadObj`,
//! `StateGetActor`, `StateReadState`, `StateAccountKey`, `StateLookupID`, `StateWaitMsg`,
//! `StateSearchMsg`, `StateCall`, `StateNetworkName`, `StateNetworkVersion`,
//! `StateActorCodeCIDs`, `MpoolGetNonce`, `MpoolPush`, `GasEstimateMessageGas` and
//! `WalletBalance` (all as `Filecoin.<Name>`), plus
//! two of the devnet's own: `Devnet.Faucet(address, attoFIL)` → message CID and
//! `Devnet.Mine(n)` → new height. `ChainGetTipSetByHeight` answers a mined tipset, and
//! `StateGetActor` and `StateReadState` read the state at the tipset their key names (the
//! head for `[]` or `null`; an unknown key is not found); `ChainGetBlockMessages` answers a
//! mined block's messages (`{"BlsMessages":[],"SecpkMessages":[…],"Cids":[…]}`, as Lotus's
//! `api.BlockMessages`) while the devnet keeps them
//! ([`MESSAGE_HISTORY`](paych_core::chain::devnet::MESSAGE_HISTORY) epochs; an older or
//! unknown block is not found), and `ChainReadObj` a kept message's signed CBOR by its CID;
//! the other methods read at the head, checking a tipset key for shape only.
//!
//! Bad input of any kind — a body that is not JSON or is larger than
//! [`MAX_REQUEST_BYTES`], a request that is not a JSON-RPC 2.0 object, an unknown method,
//! the wrong number of parameters, a parameter that does not parse — gets a JSON-RPC error
//! object with the standard code, and the server goes on serving. Chain errors get
//! [`error_code::CHAIN_REJECTED`] (with `{"ExitCode":n}` as `data` when an actor aborted),
//! [`error_code::NOT_FOUND`], or go-jsonrpc's default code 1 for a wait that timed out
//! (never -32002, which Lotus uses for an expensive fork). The devnet needs no
//! authentication.
//!
//! Served with [`Methods::Gateway`] (`paych devnet --gateway`), it answers only the
//! `Filecoin.*` methods a Lotus gateway serves ([`GATEWAY_METHODS`], from Lotus
//! `api/api_gateway.go`) — every method above but `StateActorCodeCIDs` — and the others
//! with go-jsonrpc's "method not found" (-32601, `method '…' not found`), as a gateway
//! does. The devnet's own `Devnet.*` methods are served either way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cid::Cid;
use paych_core::chain::devnet::{state::BASE_FEE_ATTO, Devnet, Tipset};
use paych_core::chain::{ActorKind, Chain, ChainError, MessageLookup, Receipt};
use paych_core::jsonrpc::{error_code, RpcError};
use paych_core::lotus_json::{self as json, BigInt, LotusJson};
use paych_core::types::{
    cid_of, format_address, Address, Message, Network, SignedMessage, TokenAmount,
};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::envelope::{self, excerpt, not_found, Params, Running};
pub use super::envelope::{ServeError, MAX_CONCURRENT_REQUESTS, MAX_REQUEST_BYTES};
use tracing::Instrument;

/// The longest a `StateWaitMsg` waits before answering with a timeout error.
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// The most epochs one `Devnet.Mine` produces.
pub const MAX_MINE: u64 = 10_000;
/// The network whose address prefix answers use.
pub const NETWORK: Network = Network::Testnet;
/// go-jsonrpc's code for an error that is a plain Go error (`handler.go`, `createError`).
const GO_ERROR: i64 = 1;
/// The ID of the miner named in the devnet's block headers.
const MINER_ID: u64 = 1000;

/// Which methods a devnet server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Methods {
    /// Every method above, as a Lotus full node serves them.
    #[default]
    FullNode,
    /// Only those a Lotus gateway serves ([`GATEWAY_METHODS`]).
    Gateway,
}

/// The devnet's `Filecoin.*` methods that a Lotus gateway serves too (Lotus
/// `api/api_gateway.go`, the `Gateway` interface). A gateway lacks `StateActorCodeCIDs`.
pub const GATEWAY_METHODS: &[&str] = &[
    "Filecoin.ChainHead",
    "Filecoin.ChainGetTipSetByHeight",
    "Filecoin.ChainGetBlockMessages",
    "Filecoin.ChainReadObj",
    "Filecoin.StateGetActor",
    "Filecoin.StateReadState",
    "Filecoin.StateAccountKey",
    "Filecoin.StateLookupID",
    "Filecoin.StateWaitMsg",
    "Filecoin.StateSearchMsg",
    "Filecoin.StateCall",
    "Filecoin.StateNetworkName",
    "Filecoin.StateNetworkVersion",
    "Filecoin.MpoolGetNonce",
    "Filecoin.MpoolPush",
    "Filecoin.GasEstimateMessageGas",
    "Filecoin.WalletBalance",
];

impl Methods {
    /// Whether a server with this method set answers `method`.
    pub fn serves(self, method: &str) -> bool {
        match self {
            Methods::FullNode => true,
            Methods::Gateway => {
                !method.starts_with("Filecoin.") || GATEWAY_METHODS.contains(&method)
            }
        }
    }
}

/// A running devnet JSON-RPC server. Dropping it stops the server too.
#[derive(Debug)]
pub struct RpcServer {
    running: Running,
}

impl RpcServer {
    /// The address the server listens on (with the actual port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.running.local_addr()
    }

    /// The API info a Lotus client is configured with: `:/ip4/127.0.0.1/tcp/PORT/http`
    /// (no token).
    pub fn api_info(&self) -> String {
        api_info(self.running.local_addr())
    }

    /// Stops accepting requests, lets requests in flight finish for a few seconds, then
    /// stops.
    pub async fn shutdown(self) {
        self.running.shutdown("devnet RPC server").await;
    }
}

/// The API info of a server listening on `addr`, as `FULLNODE_API_INFO` takes it, with an
/// empty token: `:/ip4/127.0.0.1/tcp/1234/http`.
pub fn api_info(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!(":/ip4/{}/tcp/{}/http", a.ip(), a.port()),
        SocketAddr::V6(a) => format!(":/ip6/{}/tcp/{}/http", a.ip(), a.port()),
    }
}

/// Serves `devnet` on `listen` (e.g. `127.0.0.1:0`) until the returned server is shut down
/// or dropped.
pub async fn serve(devnet: Devnet, listen: SocketAddr) -> Result<RpcServer, ServeError> {
    serve_methods(devnet, listen, Methods::FullNode).await
}

/// Serves `devnet` on `listen` answering only `methods` (the others: "method not found").
pub async fn serve_methods(
    devnet: Devnet,
    listen: SocketAddr,
    methods: Methods,
) -> Result<RpcServer, ServeError> {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS));
    let server = Server { devnet, permits, methods };
    let router = envelope::rpc_routes(handle).with_state(server);
    let running = envelope::spawn(listen, router, "devnet JSON-RPC server").await?;
    Ok(RpcServer { running })
}

#[derive(Clone)]
struct Server {
    devnet: Devnet,
    permits: Arc<Semaphore>,
    methods: Methods,
}

async fn handle(State(server): State<Server>, body: Body) -> Response {
    let (_permit, call) = match envelope::read_call(&server.permits, body).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let span = tracing::debug_span!("devnet_rpc", method = %excerpt(&call.method));
    let outcome = if server.methods.serves(&call.method) {
        dispatch(&server.devnet, &call.method, call.params).instrument(span).await
    } else {
        Err(not_found(&call.method))
    };
    envelope::answer(call.id, outcome)
}

fn chain_error(e: ChainError) -> RpcError {
    let message = e.to_string();
    match e {
        ChainError::NotFound(_) => RpcError::new(error_code::NOT_FOUND, message),
        ChainError::Rejected { exit_code, .. } => RpcError {
            code: error_code::CHAIN_REJECTED,
            message,
            data: exit_code.map(|c| json!({ "ExitCode": c.value() })),
        },
        // go-jsonrpc's code for a plain Go error; Lotus's -32002 means an expensive fork.
        ChainError::Timeout(_) => RpcError::new(GO_ERROR, message),
        ChainError::Unsupported(_) => RpcError::new(error_code::METHOD_NOT_FOUND, message),
        ChainError::Transport(_) | ChainError::Tls(_) => {
            RpcError::new(error_code::INTERNAL_ERROR, message)
        }
    }
}

fn encode<T: LotusJson>(value: &T) -> Result<Value, RpcError> {
    json::to_value(value, NETWORK)
        .map_err(|e| RpcError::new(error_code::INTERNAL_ERROR, e.to_string()))
}

/// Answers one call: the chain's and the state's reading methods here, the others in
/// [`dispatch_state_and_messages`].
async fn dispatch(devnet: &Devnet, method: &str, params: Vec<Value>) -> Result<Value, RpcError> {
    match method {
        "Filecoin.ChainHead" => {
            Params::new(method, params, 0)?;
            encode(&tipset_json(&devnet.head_tipset()))
        }
        "Filecoin.ChainReadObj" => {
            let cid: Cid = Params::new(method, params, 1)?.lotus(0)?;
            devnet.read_obj(&cid).map(|block| Value::String(STANDARD.encode(block))).ok_or_else(
                || RpcError::new(error_code::NOT_FOUND, format!("block {cid} not found")),
            )
        }
        "Filecoin.ChainGetTipSetByHeight" => {
            let mut p = Params::new(method, params, 2)?;
            let epoch = p.i64(0)?;
            if epoch < 0 {
                return Err(p.invalid(0, "the height must not be negative"));
            }
            let from = at_key(devnet, &p.tipset_key(1)?)?;
            if epoch > from.height {
                return Err(p.invalid(
                    0,
                    format!(
                        "looking for tipset with height {epoch} greater than start point {}",
                        from.height
                    ),
                ));
            }
            // The devnet mines a block every epoch: there are no null rounds to look past.
            let tipset = devnet.tipset(epoch).ok_or_else(|| {
                RpcError::new(error_code::NOT_FOUND, format!("tipset at height {epoch} not found"))
            })?;
            encode(&tipset_json(&tipset))
        }
        "Filecoin.ChainGetBlockMessages" => {
            let block: Cid = Params::new(method, params, 1)?.lotus(0)?;
            block_messages(devnet, &block)
        }
        "Filecoin.StateGetActor" => {
            let mut p = Params::new(method, params, 2)?;
            let addr = p.address(0)?;
            let at = at_key(devnet, &p.tipset_key(1)?)?;
            let state = devnet.actor_state_at(&addr, at.height).map_err(chain_error)?;
            encode(&json::Actor {
                code: state.info.code,
                head: state.head,
                nonce: state.info.nonce,
                balance: state.info.balance,
            })
        }
        "Filecoin.StateReadState" => {
            let mut p = Params::new(method, params, 2)?;
            let addr = p.address(0)?;
            let at = at_key(devnet, &p.tipset_key(1)?)?;
            read_state(devnet, &addr, at.height).await
        }
        "Filecoin.StateAccountKey" => {
            let mut p = Params::new(method, params, 2)?;
            let addr = p.address(0)?;
            p.tipset_key(1)?;
            encode(&Chain::account_key(devnet, &addr).await.map_err(chain_error)?)
        }
        "Filecoin.StateLookupID" => {
            let mut p = Params::new(method, params, 2)?;
            let addr = p.address(0)?;
            p.tipset_key(1)?;
            match Chain::lookup_id(devnet, &addr).await.map_err(chain_error)? {
                Some(id) => encode(&id),
                None => Err(RpcError::new(
                    error_code::NOT_FOUND,
                    format!("actor {} not found", format_address(&addr, NETWORK)),
                )),
            }
        }
        "Filecoin.StateWaitMsg" => {
            let mut p = Params::new(method, params, 4)?;
            let cid: Cid = p.lotus(0)?;
            let confidence = p.u64(1)?;
            p.i64(2)?;
            p.bool(3)?;
            let lookup =
                Chain::wait(devnet, &cid, confidence, MAX_WAIT).await.map_err(chain_error)?;
            encode(&msg_lookup(devnet, lookup))
        }
        "Filecoin.StateSearchMsg" => {
            let mut p = Params::new(method, params, 4)?;
            p.tipset_key(0)?;
            let cid: Cid = p.lotus(1)?;
            p.i64(2)?;
            p.bool(3)?;
            match Chain::search(devnet, &cid).await.map_err(chain_error)? {
                Some(lookup) => encode(&msg_lookup(devnet, lookup)),
                None => Ok(Value::Null),
            }
        }
        _ => dispatch_state_and_messages(devnet, method, params).await,
    }
}

/// Answers the calls [`dispatch`] leaves: `StateCall`, the network's names and versions,
/// the message pool, gas, balances and the devnet's own methods.
async fn dispatch_state_and_messages(
    devnet: &Devnet,
    method: &str,
    params: Vec<Value>,
) -> Result<Value, RpcError> {
    match method {
        "Filecoin.StateCall" => {
            let mut p = Params::new(method, params, 2)?;
            let message: Message = p.lotus(0)?;
            p.tipset_key(1)?;
            state_call(devnet, message).await
        }
        "Filecoin.MpoolGetNonce" => {
            let addr = Params::new(method, params, 1)?.address(0)?;
            Ok(Value::from(Chain::next_nonce(devnet, &addr).await.map_err(chain_error)?))
        }
        "Filecoin.MpoolPush" => {
            let signed: SignedMessage = Params::new(method, params, 1)?.lotus(0)?;
            encode(&Chain::push(devnet, &signed).await.map_err(chain_error)?)
        }
        "Filecoin.GasEstimateMessageGas" => {
            let mut p = Params::new(method, params, 3)?;
            let message: Message = p.lotus(0)?;
            p.object_or_null(1)?;
            p.tipset_key(2)?;
            encode(&Chain::estimate_gas(devnet, message).await.map_err(chain_error)?)
        }
        "Filecoin.WalletBalance" => {
            let addr = Params::new(method, params, 1)?.address(0)?;
            let actor = Chain::actor(devnet, &addr).await.map_err(chain_error)?;
            encode(&actor.map(|a| a.balance).unwrap_or_default())
        }
        "Filecoin.StateNetworkVersion" => {
            Params::new(method, params, 1)?.tipset_key(0)?;
            Ok(Value::from(devnet.network_version()))
        }
        "Filecoin.StateActorCodeCIDs" => {
            let mut p = Params::new(method, params, 1)?;
            let nv = p.u64(0)?;
            if nv != u64::from(devnet.network_version()) {
                return Err(p.invalid(
                    0,
                    format!("the devnet runs network version {}", devnet.network_version()),
                ));
            }
            encode(&devnet.actor_code_cids())
        }
        "Filecoin.StateNetworkName" => {
            Params::new(method, params, 0)?;
            Ok(Value::String(Chain::network_name(devnet).await.map_err(chain_error)?))
        }
        "Devnet.Faucet" => {
            let mut p = Params::new(method, params, 2)?;
            let addr = p.address(0)?;
            let amount = p.amount(1)?;
            if amount.is_negative() {
                return Err(p.invalid(1, "the amount must not be negative"));
            }
            encode(&devnet.faucet(&addr, amount).map_err(chain_error)?)
        }
        "Devnet.Mine" => {
            let mut p = Params::new(method, params, 1)?;
            let n = p.u64(0)?;
            if n > MAX_MINE {
                return Err(p.invalid(0, format!("at most {MAX_MINE} epochs at once")));
            }
            let devnet = devnet.clone();
            let head = tokio::task::spawn_blocking(move || devnet.mine(n))
                .await
                .map_err(|e| RpcError::new(error_code::INTERNAL_ERROR, e.to_string()))?;
            Ok(Value::from(head))
        }
        _ => Err(not_found(method)),
    }
}

/// The tipset a tipset key names: the head for the empty key, else a tipset the devnet has
/// mined (`NOT_FOUND` otherwise).
fn at_key(devnet: &Devnet, key: &json::TipSetKey) -> Result<Tipset, RpcError> {
    if key.is_head() {
        return Ok(devnet.head_tipset());
    }
    devnet.tipset_by_key(&key.0).ok_or_else(|| {
        let cids: Vec<String> = key.0.iter().map(Cid::to_string).collect();
        RpcError::new(error_code::NOT_FOUND, format!("tipset {{{}}} not found", cids.join(",")))
    })
}

/// `ChainGetBlockMessages`: the block's messages as Lotus's `api.BlockMessages` — every
/// devnet message is secp256k1-signed, so `BlsMessages` is empty.
fn block_messages(devnet: &Devnet, block: &Cid) -> Result<Value, RpcError> {
    let messages = devnet.block_messages(block).map_err(chain_error)?;
    let signed: Vec<SignedMessage> = messages.into_iter().map(|(_, signed)| signed).collect();
    let shape = json::BlockMessagesJson::new(&[], &signed, NETWORK)
        .map_err(|e| RpcError::new(error_code::INTERNAL_ERROR, e.to_string()))?;
    serde_json::to_value(shape)
        .map_err(|e| RpcError::new(error_code::INTERNAL_ERROR, e.to_string()))
}

/// `StateReadState` at `epoch`: a payment channel's state as the actor stores it, an
/// account's key address, `{}` for other actors.
async fn read_state(
    devnet: &Devnet,
    addr: &Address,
    epoch: paych_core::types::ChainEpoch,
) -> Result<Value, RpcError> {
    let actor = devnet.actor_state_at(addr, epoch).map_err(chain_error)?;
    let state = match (&actor.paych, actor.info.kind) {
        (Some(paych), _) => encode(paych)?,
        (None, ActorKind::Account) => {
            let key = Chain::account_key(devnet, addr).await.map_err(chain_error)?;
            json!({ "Address": format_address(&key, NETWORK) })
        }
        (None, _) => json!({}),
    };
    encode(&json::ActorState { balance: actor.info.balance, code: actor.info.code, state })
}

/// `StateCall`: the receipt, and the failure in `Error` when the message aborted, as Lotus
/// answers (an aborting actor is a result, not a JSON-RPC error).
async fn state_call(devnet: &Devnet, message: Message) -> Result<Value, RpcError> {
    let started = Instant::now();
    let (receipt, error) = match Chain::call(devnet, &message).await {
        Ok(receipt) => {
            let error = if receipt.is_ok() {
                String::new()
            } else {
                format!("message execution failed (exit=[{}])", receipt.exit_code.value())
            };
            (receipt, error)
        }
        Err(ChainError::Rejected { exit_code: Some(exit_code), message }) => {
            (Receipt { exit_code, return_data: Vec::new(), gas_used: 0 }, message)
        }
        Err(e) => return Err(chain_error(e)),
    };
    encode(&json::InvocResult {
        msg: Some(message),
        receipt: Some(receipt),
        error,
        duration: started.elapsed(),
    })
}

fn msg_lookup(devnet: &Devnet, lookup: MessageLookup) -> json::MsgLookup {
    json::MsgLookup {
        message: lookup.message,
        tipset: devnet.tipset(lookup.epoch).map(|t| vec![t.block]).unwrap_or_default(),
        height: lookup.epoch,
        receipt: lookup.receipt,
    }
}

/// The devnet's one-block tipset as Lotus shows a tipset. The block's `Messages` is the CID
/// of the CBOR list of its message CIDs; it has no ticket, proofs or signatures.
pub(crate) fn tipset_json(tipset: &Tipset) -> json::TipSet {
    let list_cid = |cids: &[Cid]| cid_of(&fvm_ipld_encoding::to_vec(&cids).unwrap_or_default());
    let block = json::BlockHeader {
        miner: Address::new_id(MINER_ID),
        parents: tipset.parent.into_iter().collect(),
        parent_weight: BigInt::from(tipset.height),
        height: tipset.height,
        parent_state_root: tipset.state_root,
        parent_message_receipts: list_cid(&[]),
        messages: list_cid(&tipset.messages),
        timestamp: tipset.timestamp,
        parent_base_fee: TokenAmount::from_atto(BASE_FEE_ATTO),
    };
    json::TipSet { cids: vec![tipset.block], blocks: vec![block], height: tipset.height }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn api_info_names_the_listen_address_without_a_token() {
        assert_eq!(api_info("127.0.0.1:1234".parse().unwrap()), ":/ip4/127.0.0.1/tcp/1234/http");
        assert_eq!(api_info("[::1]:5".parse().unwrap()), ":/ip6/::1/tcp/5/http");
    }
}
