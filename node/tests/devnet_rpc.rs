//! The devnet's Lotus JSON-RPC server, spoken to over raw HTTP as a Lotus client would; the
//! Lotus client's retry policy against servers that fail; and `paych devnet` as a user runs
//! it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::chain::lotus::{ApiInfo, LotusChain, LotusConfig};
use paych_core::chain::Receipt;
use paych_core::chain::{ActorKind, Chain, ChainError};
use paych_core::crypto;
use paych_core::jsonrpc::error_code;
use paych_core::lotus_json as json;
use paych_core::types::{
    decode, format_address, paych_method, Address, ConstructorParams, ExecParams, ExecReturn,
    Message, Network, SignedVoucher, TokenAmount, UpdateChannelStateParams, INIT_ACTOR_ID,
    INIT_EXEC_METHOD,
};
use paych_node::rpc::devnet::{self as devnet_rpc, RpcServer, MAX_REQUEST_BYTES};
use serde_json::{json, Value};

struct Node {
    server: RpcServer,
    devnet: Devnet,
    http: reqwest::Client,
    url: String,
}

impl Node {
    async fn start() -> Node {
        let devnet = Devnet::new(DevnetConfig::default()).unwrap();
        let server =
            devnet_rpc::serve(devnet.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let url = format!("http://{}/rpc/v1", server.local_addr());
        Node { server, devnet, http: reqwest::Client::new(), url }
    }

    /// Posts a raw body; returns the HTTP status and the JSON answer.
    async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Calls a method; returns the whole response object.
    async fn call(&self, method: &str, params: Value) -> Value {
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let (status, answer) = self.post(request.to_string()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["jsonrpc"], json!("2.0"));
        answer
    }

    /// Calls a method that must succeed; returns its result.
    async fn result(&self, method: &str, params: Value) -> Value {
        let answer = self.call(method, params).await;
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// Calls a method that must fail; returns the error code and message.
    async fn error(&self, method: &str, params: Value) -> (i64, String) {
        let answer = self.call(method, params).await;
        error_of(&answer)
    }

    async fn assert_still_serving(&self) {
        let head = self.result("Filecoin.ChainHead", json!([])).await;
        assert!(head["Height"].is_i64(), "{head}");
    }
}

fn error_of(answer: &Value) -> (i64, String) {
    assert!(answer.get("result").is_none(), "{answer}");
    let error = &answer["error"];
    (error["code"].as_i64().unwrap(), error["message"].as_str().unwrap().to_owned())
}

fn is_cid(value: &Value) -> bool {
    value["/"].as_str().is_some_and(|c| c.starts_with('b')) && value.as_object().unwrap().len() == 1
}

fn new_key_address() -> Address {
    crypto::secp_address(&crypto::public_key(&crypto::generate_secret_key().unwrap()))
}

#[tokio::test]
async fn chain_head_has_the_lotus_tipset_shape() {
    let node = Node::start().await;
    node.devnet.mine(2);
    let head = node.result("Filecoin.ChainHead", json!([])).await;
    assert_eq!(head["Height"], json!(2));
    let cids = head["Cids"].as_array().unwrap();
    assert_eq!(cids.len(), 1);
    assert!(is_cid(&cids[0]), "{head}");
    let block = &head["Blocks"][0];
    assert_eq!(block["Miner"], json!("t01000"));
    assert_eq!(block["Height"], json!(2));
    assert!(is_cid(&block["ParentStateRoot"]) && is_cid(&block["Messages"]), "{block}");
    assert!(is_cid(&block["Parents"][0]), "{block}");
    assert!(block["Timestamp"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(block["ParentBaseFee"], json!("100"));
    // The parent is the previous head.
    node.devnet.mine(1);
    let next = node.result("Filecoin.ChainHead", json!([])).await;
    assert_eq!(next["Blocks"][0]["Parents"][0], cids[0]);
    // /rpc/v0 answers too.
    let v0 = reqwest::Client::new()
        .post(format!("http://{}/rpc/v0", node.server.local_addr()))
        .body(r#"{"jsonrpc":"2.0","id":"a","method":"Filecoin.ChainHead","params":[]}"#)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!((v0["id"].clone(), v0["result"]["Height"].clone()), (json!("a"), json!(3)));
    node.server.shutdown().await;
}

#[tokio::test]
async fn actor_code_cids_are_named_for_the_network_version() {
    let node = Node::start().await;
    let nv = node.result("Filecoin.StateNetworkVersion", json!([[]])).await;
    assert_eq!(nv, json!(node.devnet.network_version()));
    let codes = node.result("Filecoin.StateActorCodeCIDs", json!([nv])).await;
    for name in ["account", "init", "paymentchannel", "system", "reward"] {
        assert!(is_cid(&codes[name]), "{name}: {codes}");
    }
    assert_eq!(
        codes["paymentchannel"]["/"],
        json!(node.devnet.actor_code_cids()["paymentchannel"].to_string())
    );
    let (code, message) = node.error("Filecoin.StateActorCodeCIDs", json!([1])).await;
    assert_eq!(code, error_code::INVALID_PARAMS, "{message}");
    let name = node.result("Filecoin.StateNetworkName", json!([])).await;
    assert_eq!(name, json!("paych-devnet"));
}

#[tokio::test]
async fn faucet_mine_and_the_state_methods() {
    let node = Node::start().await;
    let key = new_key_address();
    let key_text = format_address(&key, Network::Testnet);
    let cid = node.result("Devnet.Faucet", json!([key_text, "5000000000000000000"])).await;
    assert!(is_cid(&cid), "{cid}");
    let height = node.result("Devnet.Mine", json!([1])).await;
    assert_eq!(height, json!(1));

    let lookup = node.result("Filecoin.StateWaitMsg", json!([cid, 0, -1, true])).await;
    assert_eq!(lookup["Message"], cid);
    assert_eq!(lookup["Receipt"]["ExitCode"], json!(0));
    assert!(lookup["Receipt"]["GasUsed"].as_u64().unwrap() > 0);
    assert_eq!(lookup["Height"], json!(1));
    assert!(is_cid(&lookup["TipSet"][0]), "{lookup}");
    assert_eq!(lookup["ReturnDec"], Value::Null);
    let found = node.result("Filecoin.StateSearchMsg", json!([[], cid, -1, true])).await;
    assert_eq!(found, lookup);
    let unknown = json!({"/": paych_core::types::cid_of(&[0x80]).to_string()});
    let missing = node.result("Filecoin.StateSearchMsg", json!([null, unknown, -1, true])).await;
    assert_eq!(missing, Value::Null);

    let actor = node.result("Filecoin.StateGetActor", json!([key_text, []])).await;
    assert_eq!(actor["Balance"], json!("5000000000000000000"));
    assert_eq!(actor["Nonce"], json!(0));
    assert_eq!(actor["Code"]["/"], json!(node.devnet.actor_code_cids()["account"].to_string()));
    let balance = node.result("Filecoin.WalletBalance", json!([key_text])).await;
    assert_eq!(balance, json!("5000000000000000000"));
    let nobody = format_address(&new_key_address(), Network::Testnet);
    assert_eq!(node.result("Filecoin.WalletBalance", json!([nobody])).await, json!("0"));
    let (code, message) = node.error("Filecoin.StateGetActor", json!([nobody, []])).await;
    assert_eq!(code, error_code::NOT_FOUND, "{message}");
    assert!(message.contains("not found"), "{message}");

    let id = node.result("Filecoin.StateLookupID", json!([key_text, []])).await;
    assert!(id.as_str().unwrap().starts_with("t0"), "{id}");
    let back = node.result("Filecoin.StateAccountKey", json!([id, []])).await;
    assert_eq!(back, json!(key_text));
    let state = node.result("Filecoin.StateReadState", json!([id, []])).await;
    assert_eq!(state["State"], json!({"Address": key_text}));
    assert_eq!(state["Balance"], json!("5000000000000000000"));
    assert_eq!(node.result("Filecoin.MpoolGetNonce", json!([key_text])).await, json!(0));

    let nowhere = json!({"/": paych_core::types::cid_of(b"no such block").to_string()});
    let (code, message) = node.error("Filecoin.ChainReadObj", json!([nowhere])).await;
    assert_eq!(code, error_code::NOT_FOUND, "{message}");
    let head = node.result("Filecoin.ChainHead", json!([])).await;
    let state_root = head["Blocks"][0]["ParentStateRoot"].clone();
    let block = node.result("Filecoin.ChainReadObj", json!([state_root])).await;
    assert!(block.as_str().is_some_and(|b| !b.is_empty()), "{block}");
}

/// `StateGetActor` and `StateReadState` answer the state at the tipset their key names, not
/// the head's: a balance read at an older tipset is the balance then.
#[tokio::test]
async fn state_get_actor_reads_the_state_at_the_tipset_key_given() {
    let node = Node::start().await;
    let genesis = node.result("Filecoin.ChainHead", json!([])).await["Cids"].clone();
    let key = format_address(&new_key_address(), Network::Testnet);
    node.result("Devnet.Faucet", json!([key, "5"])).await;
    node.result("Devnet.Mine", json!([1])).await;
    let funded = node.result("Filecoin.ChainHead", json!([])).await["Cids"].clone();
    node.result("Devnet.Faucet", json!([key, "3"])).await;
    node.result("Devnet.Mine", json!([1])).await;

    let balance = |actor: Value| actor["Balance"].clone();
    let at_head = node.result("Filecoin.StateGetActor", json!([key, null])).await;
    assert_eq!(balance(at_head), json!("8"));
    let then = node.result("Filecoin.StateGetActor", json!([key, funded])).await;
    assert_eq!(balance(then), json!("5"));
    let state = node.result("Filecoin.StateReadState", json!([key, funded])).await;
    assert_eq!(balance(state), json!("5"));
    let (code, message) = node.error("Filecoin.StateGetActor", json!([key, genesis])).await;
    assert_eq!(code, error_code::NOT_FOUND, "no actor at genesis: {message}");
    let unknown = json!([{"/": paych_core::types::cid_of(b"no such block").to_string()}]);
    let (code, message) = node.error("Filecoin.StateGetActor", json!([key, unknown])).await;
    assert_eq!(code, error_code::NOT_FOUND, "{message}");
    assert!(message.contains("tipset"), "{message}");
}

#[tokio::test]
async fn chain_get_tipset_by_height_answers_the_tipset_mined_at_that_height() {
    let node = Node::start().await;
    node.devnet.mine(3);
    let tipset = |height: i64| node.devnet.tipset(height).unwrap();
    let key = |height: i64| json!([{"/": tipset(height).block.to_string()}]);

    let one = node.result("Filecoin.ChainGetTipSetByHeight", json!([1, []])).await;
    assert_eq!(one["Height"], json!(1));
    assert_eq!(one["Cids"], key(1));
    assert_eq!(one["Blocks"][0]["Parents"], key(0));
    let genesis = node.result("Filecoin.ChainGetTipSetByHeight", json!([0, key(2)])).await;
    assert_eq!(genesis["Cids"], key(0));
    let head = node.result("Filecoin.ChainHead", json!([])).await;
    assert_eq!(node.result("Filecoin.ChainGetTipSetByHeight", json!([3, null])).await, head);

    let (code, message) = node.error("Filecoin.ChainGetTipSetByHeight", json!([3, key(2)])).await;
    assert_eq!(code, error_code::INVALID_PARAMS, "{message}");
    assert!(message.contains("greater than start point"), "{message}");
    let (code, _) = node.error("Filecoin.ChainGetTipSetByHeight", json!([4, []])).await;
    assert_eq!(code, error_code::INVALID_PARAMS, "above the head");
    let (code, _) = node.error("Filecoin.ChainGetTipSetByHeight", json!([-1, []])).await;
    assert_eq!(code, error_code::INVALID_PARAMS, "negative height");
    let unknown = json!([{"/": paych_core::types::cid_of(b"no such block").to_string()}]);
    let (code, _) = node.error("Filecoin.ChainGetTipSetByHeight", json!([1, unknown])).await;
    assert_eq!(code, error_code::NOT_FOUND);
    let too_long: Vec<Value> = (0..=json::MAX_TIPSET_KEY_CIDS).map(|_| key(1)[0].clone()).collect();
    for bad in [json!("head"), json!([{"/": "not a cid"}]), Value::Array(too_long)] {
        let (code, message) = node.error("Filecoin.ChainGetTipSetByHeight", json!([1, bad])).await;
        assert_eq!(code, error_code::INVALID_PARAMS, "{message}");
    }
    let (code, _) = node.error("Filecoin.ChainGetTipSetByHeight", json!(["1", []])).await;
    assert_eq!(code, error_code::INVALID_PARAMS);
    node.assert_still_serving().await;
}

/// `ChainGetBlockMessages` answers Lotus's `api.BlockMessages` for a mined block: no BLS
/// messages, each secp256k1 message as a signed message with its CID, and `Cids` listing
/// them in order; an empty block has empty lists; an unknown block is not found.
#[tokio::test]
async fn chain_get_block_messages_answers_a_blocks_messages_in_lotus_shape() {
    let node = Node::start().await;
    let key = new_key_address();
    let key_text = format_address(&key, Network::Testnet);
    let cid = node.result("Devnet.Faucet", json!([key_text, "1000"])).await;
    node.result("Devnet.Mine", json!([2])).await;
    let block = |height: i64| json!({"/": node.devnet.tipset(height).unwrap().block.to_string()});

    let answer = node.result("Filecoin.ChainGetBlockMessages", json!([block(1)])).await;
    assert_eq!(answer["BlsMessages"], json!([]));
    assert_eq!(answer["Cids"], json!([cid]));
    let [signed] = answer["SecpkMessages"].as_array().unwrap().as_slice() else {
        panic!("one message expected: {answer}")
    };
    assert_eq!(signed["CID"], cid);
    assert_eq!(signed["Message"]["To"], json!(key_text));
    assert_eq!(signed["Message"]["Value"], json!("1000"));
    assert_eq!(signed["Signature"]["Type"], json!(1));
    let read: paych_core::types::SignedMessage = json::from_value(signed.clone()).unwrap();
    assert_eq!(json::to_value(&read, Network::Testnet).unwrap(), *signed);

    let empty = node.result("Filecoin.ChainGetBlockMessages", json!([block(2)])).await;
    assert_eq!(empty, json!({"BlsMessages": [], "SecpkMessages": [], "Cids": []}));
    let unknown = json!({"/": paych_core::types::cid_of(b"no such block").to_string()});
    let (code, message) = node.error("Filecoin.ChainGetBlockMessages", json!([unknown])).await;
    assert_eq!(code, error_code::NOT_FOUND, "{message}");
    for bad in [json!([]), json!(["bafy"]), json!([block(1), block(2)])] {
        let (code, message) = node.error("Filecoin.ChainGetBlockMessages", bad).await;
        assert_eq!(code, error_code::INVALID_PARAMS, "{message}");
    }
    node.assert_still_serving().await;
}

#[tokio::test]
async fn gas_estimate_and_state_call_answer_in_lotus_shapes() {
    let node = Node::start().await;
    let key = new_key_address();
    let key_text = format_address(&key, Network::Testnet);
    node.result("Devnet.Faucet", json!([key_text, "1000000000000000000"])).await;
    node.result("Devnet.Mine", json!([1])).await;
    let message = json!({
        "Version": 0, "To": "t099", "From": key_text, "Nonce": 0, "Value": "1",
        "GasLimit": 0, "GasFeeCap": "0", "GasPremium": "0", "Method": 0, "Params": null,
    });
    let estimated =
        node.result("Filecoin.GasEstimateMessageGas", json!([message, {"MaxFee": "0"}, []])).await;
    assert!(estimated["GasLimit"].as_u64().unwrap() > 0, "{estimated}");
    assert_ne!(estimated["GasFeeCap"], json!("0"));
    assert!(is_cid(&estimated["CID"]), "{estimated}");

    let call = node.result("Filecoin.StateCall", json!([message, []])).await;
    assert_eq!(call["MsgRct"]["ExitCode"], json!(0), "{call}");
    assert_eq!(call["Error"], json!(""));
    assert!(is_cid(&call["MsgCid"]));
    assert!(call["Duration"].is_i64());
    // A method the actor does not have: an exit code in the receipt, not a JSON-RPC error.
    let mut bad = message.clone();
    bad["Method"] = json!(77);
    bad["To"] = json!(key_text);
    let call = node.result("Filecoin.StateCall", json!([bad, []])).await;
    assert_ne!(call["MsgRct"]["ExitCode"], json!(0), "{call}");
    assert!(call["Error"].as_str().unwrap().contains("exit"), "{call}");
}

#[tokio::test]
async fn bad_input_gets_json_rpc_errors_and_the_server_keeps_serving() {
    let node = Node::start().await;

    let (status, answer) = node.post("{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": ").await;
    assert_eq!(status, 200);
    assert_eq!(answer["id"], Value::Null);
    assert_eq!(error_of(&answer).0, error_code::PARSE_ERROR);
    node.assert_still_serving().await;

    for not_a_request in [
        json!([1, 2, 3]),
        json!("Filecoin.ChainHead"),
        json!({"jsonrpc": "2.0", "id": 1}),
        json!({"jsonrpc": "1.0", "id": 1, "method": "Filecoin.ChainHead"}),
        json!({"jsonrpc": "2.0", "id": {"x": 1}, "method": "Filecoin.ChainHead"}),
    ] {
        let (status, answer) = node.post(not_a_request.to_string()).await;
        assert_eq!(status, 200);
        assert_eq!(error_of(&answer).0, error_code::INVALID_REQUEST, "{not_a_request}");
    }
    node.assert_still_serving().await;

    let (code, message) = node.error("Filecoin.NoSuchMethod", json!([])).await;
    assert_eq!(code, error_code::METHOD_NOT_FOUND);
    assert!(message.contains("Filecoin.NoSuchMethod"), "{message}");
    node.assert_still_serving().await;

    let (code, message) = node.error("Filecoin.ChainHead", json!([1])).await;
    assert_eq!(code, error_code::INVALID_PARAMS);
    assert!(message.contains("takes 0 parameters"), "{message}");
    let (code, _) = node.error("Filecoin.StateGetActor", json!(["t01000"])).await;
    assert_eq!(code, error_code::INVALID_PARAMS);
    let (code, _) = node.error("Filecoin.ChainHead", json!({"named": true})).await;
    assert_eq!(code, error_code::INVALID_PARAMS);
    node.assert_still_serving().await;

    for bad_address in [json!("x0100"), json!("t1notanaddress"), json!(100), json!(null)] {
        let (code, message) = node.error("Filecoin.StateGetActor", json!([bad_address, []])).await;
        assert_eq!(code, error_code::INVALID_PARAMS, "{bad_address}: {message}");
    }
    let (code, message) = node.error("Devnet.Faucet", json!(["t0100", "lots"])).await;
    assert_eq!(code, error_code::INVALID_PARAMS, "{message}");
    let (code, message) = node.error("Filecoin.ChainReadObj", json!([{"/": "garbage"}])).await;
    assert_eq!(code, error_code::INVALID_PARAMS, "{message}");
    let (code, message) = node.error("Devnet.Mine", json!([1_000_000])).await;
    assert_eq!(code, error_code::INVALID_PARAMS, "{message}");
    let (code, message) = node.error("Filecoin.MpoolPush", json!([{"Message": {}}])).await;
    assert_eq!(code, error_code::INVALID_PARAMS, "{message}");
    node.assert_still_serving().await;

    let padding = "x".repeat(MAX_REQUEST_BYTES + 1024);
    let oversized = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"Filecoin.ChainHead","params":[],"pad":"{padding}"}}"#
    );
    let (status, answer) = node.post(oversized).await;
    assert_eq!(status, 413);
    assert_eq!(error_of(&answer).0, error_code::INVALID_REQUEST);
    node.assert_still_serving().await;

    // A notification is executed and not answered.
    let response = node
        .http
        .post(&node.url)
        .body(r#"{"jsonrpc":"2.0","method":"Devnet.Mine","params":[1]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(node.result("Filecoin.ChainHead", json!([])).await["Height"], json!(1));
}

#[tokio::test]
async fn chain_errors_get_chain_error_codes() {
    let node = Node::start().await;
    let nobody = format_address(&new_key_address(), Network::Testnet);
    let (code, _) = node.error("Filecoin.StateLookupID", json!([nobody, []])).await;
    assert_eq!(code, error_code::NOT_FOUND);
    // A key address is its own account key, as on Lotus; an unknown ID has none.
    assert_eq!(node.result("Filecoin.StateAccountKey", json!([nobody, []])).await, json!(nobody));
    let (code, _) = node.error("Filecoin.StateAccountKey", json!(["t0999999", []])).await;
    assert_eq!(code, error_code::NOT_FOUND);
    // A push from an account with no funds is refused.
    let secret = crypto::generate_secret_key().unwrap();
    let from = crypto::secp_address(&crypto::public_key(&secret));
    let message = Message {
        version: 0,
        to: Address::new_id(99),
        from,
        nonce: 0,
        value: Default::default(),
        gas_limit: 1_000_000,
        gas_fee_cap: TokenAmount::from_atto(1000),
        gas_premium: TokenAmount::from_atto(100),
        method: 0,
        params: vec![],
    };
    let signed = crypto::sign_message(&secret, message).unwrap();
    let signed = json::to_value(&signed, Network::Testnet).unwrap();
    let (code, message) = node.error("Filecoin.MpoolPush", json!([signed])).await;
    assert_eq!(code, error_code::CHAIN_REJECTED, "{message}");
}

// --- the Lotus client against this server and against failing servers -----------------

#[tokio::test]
async fn lotus_client_reads_the_devnet_through_its_server() {
    let node = Node::start().await;
    let chain = LotusChain::from_api_info(&node.server.api_info()).unwrap();
    let key = new_key_address();
    let cid = node.devnet.faucet(&key, TokenAmount::from_whole(2)).unwrap();
    node.devnet.mine(1);
    assert_eq!(chain.head().await.unwrap(), 1);
    let lookup = chain.wait(&cid, 0, Duration::from_secs(5)).await.unwrap();
    assert!(lookup.receipt.is_ok());
    assert_eq!(chain.search(&cid).await.unwrap(), Some(lookup));
    let actor = chain.actor(&key).await.unwrap().unwrap();
    assert_eq!(actor.kind, ActorKind::Account);
    assert_eq!(actor.balance, TokenAmount::from_whole(2));
    assert_eq!(chain.actor(&new_key_address()).await.unwrap(), None);
    let id = chain.lookup_id(&key).await.unwrap().unwrap();
    assert_eq!(chain.account_key(&id).await.unwrap(), key);
    assert_eq!(chain.network_name().await.unwrap(), "paych-devnet");
    assert_eq!(
        chain.actor_code(ActorKind::PaymentChannel).await.unwrap(),
        node.devnet.actor_code_cids()["paymentchannel"]
    );
    // Waiting for a message nobody sent fails at once; waiting past the timeout times out.
    let unknown = paych_core::types::cid_of(&[0x80]);
    assert!(matches!(
        chain.wait(&unknown, 0, Duration::from_secs(5)).await,
        Err(ChainError::NotFound(_))
    ));
    let pending = node.devnet.faucet(&key, TokenAmount::from_whole(1)).unwrap();
    let waited = chain.wait(&pending, 0, Duration::from_millis(300)).await;
    assert!(
        matches!(waited, Err(ChainError::Timeout(d)) if d == Duration::from_millis(300)),
        "{waited:?}"
    );
}

/// Signs and sends a message through `chain`, mines it and returns its receipt.
async fn send(
    node: &Node,
    chain: &LotusChain,
    secret: &crypto::SecretKey,
    to: Address,
    value: TokenAmount,
    method: u64,
    params: Vec<u8>,
) -> Receipt {
    let from = crypto::secp_address(&crypto::public_key(secret));
    let nonce = chain.next_nonce(&from).await.unwrap();
    let message = Message::new(from, to, nonce, value, method, params);
    let message = chain.estimate_gas(message).await.unwrap();
    let signed = crypto::sign_message(secret, message).unwrap();
    let cid = chain.push(&signed).await.unwrap();
    node.devnet.mine(1);
    chain.wait(&cid, 0, Duration::from_secs(10)).await.unwrap().receipt
}

#[tokio::test]
async fn lotus_client_reads_every_lane_of_a_deep_lane_state_amt() {
    let node = Node::start().await;
    let chain = LotusChain::from_api_info(&node.server.api_info()).unwrap();
    let payer_secret = crypto::generate_secret_key().unwrap();
    let payee_secret = crypto::generate_secret_key().unwrap();
    let payer = crypto::secp_address(&crypto::public_key(&payer_secret));
    let payee = crypto::secp_address(&crypto::public_key(&payee_secret));
    node.devnet.faucet(&payer, TokenAmount::from_whole(100)).unwrap();
    node.devnet.faucet(&payee, TokenAmount::from_whole(100)).unwrap();
    node.devnet.mine(1);

    let code = chain.actor_code(ActorKind::PaymentChannel).await.unwrap();
    let constructor =
        fvm_ipld_encoding::to_vec(&ConstructorParams { from: payer, to: payee }).unwrap();
    let exec = ExecParams { code_cid: code, constructor_params: constructor };
    let receipt = send(
        &node,
        &chain,
        &payer_secret,
        Address::new_id(INIT_ACTOR_ID),
        TokenAmount::from_whole(10),
        INIT_EXEC_METHOD,
        fvm_ipld_encoding::to_vec(&exec).unwrap(),
    )
    .await;
    assert!(receipt.is_ok(), "{receipt:?}");
    let created: ExecReturn = decode::decode(&receipt.return_data).unwrap();
    let channel = created.robust_address;
    assert_eq!(chain.actor(&channel).await.unwrap().unwrap().kind, ActorKind::PaymentChannel);

    // Lanes far apart make an AMT of several levels (bit width 3: 8 entries a node).
    let lanes = [0u64, 9, 100, 4000];
    for lane in lanes {
        let mut voucher = SignedVoucher::new(channel, lane, 1, TokenAmount::from_atto(lane + 1));
        voucher.signature = Some(crypto::sign(&payer_secret, &voucher.signing_bytes().unwrap()));
        let params = UpdateChannelStateParams { sv: voucher, secret: Vec::new() };
        let receipt = send(
            &node,
            &chain,
            &payee_secret,
            channel,
            TokenAmount::default(),
            paych_method::UPDATE_CHANNEL_STATE,
            fvm_ipld_encoding::to_vec(&params).unwrap(),
        )
        .await;
        assert!(receipt.is_ok(), "lane {lane}: {receipt:?}");
    }
    let over_rpc = chain.channel(&channel).await.unwrap();
    let in_process = Chain::channel(&node.devnet, &channel).await.unwrap();
    assert_eq!(over_rpc, in_process);
    assert_eq!(over_rpc.state.lanes.keys().copied().collect::<Vec<_>>(), lanes);
    assert_eq!(over_rpc.lane(4000).unwrap().redeemed, TokenAmount::from_atto(4001));
    assert_eq!(over_rpc.balance, TokenAmount::from_whole(10));
    // An account is not a channel.
    assert!(matches!(chain.channel(&payer).await, Err(ChainError::NotFound(_))));
}

/// A server that answers every request with `status` and `body`, counting requests.
async fn canned_server(status: u16, body: &'static str) -> (String, Arc<AtomicUsize>) {
    slow_canned_server(status, body, Duration::ZERO).await
}

/// [`canned_server`], answering each request only after `delay`.
async fn slow_canned_server(
    status: u16,
    body: &'static str,
    delay: Duration,
) -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let app = axum::Router::new().route(
        "/rpc/v1",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                (axum::http::StatusCode::from_u16(status).unwrap(), body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!(":/ip4/127.0.0.1/tcp/{}/http", addr.port()), count)
}

fn quick_client(api_info: &str) -> LotusChain {
    let mut config = LotusConfig::new(ApiInfo::parse(api_info).unwrap());
    config.backoff = Duration::from_millis(10);
    config.retries = 2;
    config.request_timeout = Duration::from_secs(2);
    LotusChain::new(config).unwrap()
}

#[tokio::test]
async fn lotus_client_never_retries_a_json_rpc_error() {
    let (api, count) = canned_server(
        200,
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"message execution failed (exit=[ErrIllegalArgument(16)])"}}"#,
    )
    .await;
    let chain = quick_client(&api);
    let err = chain.network_name().await.unwrap_err();
    assert!(
        matches!(err, ChainError::Rejected { exit_code: Some(c), .. } if c.value() == 16),
        "{err}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

/// A node that answers `ChainGetTipSetByHeight` with a tipset above the epoch asked for (as
/// one resolving null rounds upwards would) is refused: a balance read there could hold
/// funds added after that epoch.
#[tokio::test]
async fn lotus_client_refuses_a_tipset_above_the_height_asked_for() {
    let (api, _) = canned_server(
        200,
        r#"{"jsonrpc":"2.0","id":1,"result":{"Cids":[{"/":"bafy2bzacebsdk4dacce56gl5dvwhrdfcjzjgx3lkl2dprw2gb4h6my5ddabcg"}],"Blocks":[],"Height":9}}"#,
    )
    .await;
    let chain = quick_client(&api);
    let err = chain.tipset_by_height(5, &json::TipSetKey::head()).await.unwrap_err();
    assert!(matches!(&err, ChainError::Transport(m) if m.contains("at 9")), "{err}");
}

/// A Lotus node's tipset of two blocks that share a message: the client lists each message
/// once, in block order; an epoch without a block (the node answers the tipset below) has no
/// messages; and the node's "greater than start point" is the trait's `NotFound`.
#[tokio::test]
async fn lotus_client_reads_a_tipsets_messages_once_each_across_its_blocks() {
    let key = crypto::generate_secret_key().unwrap();
    let from = crypto::secp_address(&crypto::public_key(&key));
    let signed: Vec<_> = (0..3)
        .map(|nonce| {
            let m =
                Message::new(from, Address::new_id(1234), nonce, TokenAmount::default(), 2, vec![]);
            crypto::sign_message(&key, m).unwrap()
        })
        .collect();
    let blocks = [paych_core::types::cid_of(b"block one"), paych_core::types::cid_of(b"block two")];
    let answers: Vec<Value> = [&signed[0..2], &signed[1..3]]
        .iter()
        .map(|held| {
            serde_json::to_value(json::BlockMessagesJson::new(&[], held, Network::Testnet).unwrap())
                .unwrap()
        })
        .collect();
    let tipset = json!({
        "Cids": [{"/": blocks[0].to_string()}, {"/": blocks[1].to_string()}],
        "Blocks": [],
        "Height": 7,
    });
    let router = axum::Router::new().route(
        "/rpc/v1",
        axum::routing::post(move |axum::Json(request): axum::Json<Value>| {
            let (tipset, answers) = (tipset.clone(), answers.clone());
            async move {
                let params = &request["params"];
                let answer = match request["method"].as_str().unwrap() {
                    "Filecoin.ChainGetTipSetByHeight" if params[0] == json!(9) => json!({"error": {
                        "code": 1,
                        "message": "looking for tipset with height greater than start point, req: 9, head: 8",
                    }}),
                    "Filecoin.ChainGetTipSetByHeight" => json!({"result": tipset}),
                    "Filecoin.ChainGetBlockMessages" => {
                        let first = params[0]["/"] == json!(blocks[0].to_string());
                        json!({"result": answers[usize::from(!first)]})
                    }
                    other => panic!("unexpected {other}"),
                };
                let mut answer = answer;
                answer["jsonrpc"] = json!("2.0");
                answer["id"] = request["id"].clone();
                axum::Json(answer)
            }
        }),
    );
    let chain = quick_client(&serve_router(router).await);

    let messages = chain.tipset_messages(7).await.unwrap();
    let cids: Vec<_> = messages.iter().map(|m| m.cid).collect();
    let expected: Vec<_> = signed.iter().map(|s| s.cid().unwrap()).collect();
    assert_eq!(cids, expected, "each once, in block order");
    assert_eq!(messages[2].message, signed[2].message);
    assert!(chain.tipset_messages(8).await.unwrap().is_empty(), "a null round");
    let above = chain.tipset_messages(9).await.unwrap_err();
    assert!(matches!(&above, ChainError::NotFound(m) if m.contains("above the head")), "{above}");
}

#[tokio::test]
async fn lotus_client_retries_server_errors_then_gives_up() {
    let (api, count) = canned_server(503, "overloaded").await;
    let chain = quick_client(&api);
    let err = chain.head().await.unwrap_err();
    assert!(matches!(err, ChainError::Transport(_)), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn lotus_client_reports_unreachable_nodes_and_bad_answers_as_transport_errors() {
    // A port held by a socket that is bound but not listening: connections to it are
    // refused, and no other socket can take it while the test runs.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = held.local_addr().unwrap().port();
    let chain = quick_client(&format!("/ip4/127.0.0.1/tcp/{port}/http"));
    assert!(matches!(chain.head().await, Err(ChainError::Transport(_))));

    let (api, count) = canned_server(200, "this is not JSON").await;
    assert!(matches!(quick_client(&api).head().await, Err(ChainError::Transport(_))));
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

/// Serves `router` on a free loopback port; returns its API info.
async fn serve_router(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!(":/ip4/127.0.0.1/tcp/{}/http", addr.port())
}

#[tokio::test]
async fn lotus_client_sends_the_bearer_token() {
    let router = axum::Router::new().route(
        "/rpc/v1",
        axum::routing::post(|headers: axum::http::HeaderMap| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            axum::Json(json!({"jsonrpc": "2.0", "id": 1, "result": auth}))
        }),
    );
    let api = serve_router(router).await;
    let with_token = LotusChain::from_api_info(&format!("eyJ.eyJ.sig{api}")).unwrap();
    assert_eq!(with_token.network_name().await.unwrap(), "Bearer eyJ.eyJ.sig");
    let without = LotusChain::from_api_info(&api).unwrap();
    assert_eq!(without.network_name().await.unwrap(), "");
}

#[tokio::test]
async fn lotus_client_times_out_slow_requests_and_retries_them() {
    let (api, count) = slow_canned_server(200, "too late", Duration::from_secs(5)).await;
    let mut config = LotusConfig::new(ApiInfo::parse(&api).unwrap());
    config.request_timeout = Duration::from_millis(200);
    config.retries = 1;
    config.backoff = Duration::from_millis(10);
    let chain = LotusChain::new(config).unwrap();
    let err = chain.head().await.unwrap_err();
    assert!(matches!(err, ChainError::Timeout(d) if d == Duration::from_millis(200)), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn lotus_client_refuses_oversized_answers() {
    let big = format!(r#"{{"jsonrpc":"2.0","id":1,"result":"{}"}}"#, "x".repeat(4096));
    let router = axum::Router::new().route(
        "/rpc/v1",
        axum::routing::post(move || {
            let big = big.clone();
            async move { big }
        }),
    );
    let mut config = LotusConfig::new(ApiInfo::parse(&serve_router(router).await).unwrap());
    config.max_response_bytes = 1024;
    let chain = LotusChain::new(config).unwrap();
    let err = chain.network_name().await.unwrap_err();
    assert!(matches!(&err, ChainError::Transport(m) if m.contains("larger than 1024")), "{err}");
}

// --- the binary --------------------------------------------------------------------------

/// Kills the child if the test fails before stopping it.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn paych_devnet_prints_its_api_info_and_serves_until_terminated() {
    let funded = new_key_address();
    let mut child = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_paych"))
            .args(["devnet", "--listen", "127.0.0.1:0", "--block-time", "200ms"])
            .args(["--fund", &format!("{}=5", format_address(&funded, Network::Testnet))])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let first_line = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
            line
        }),
    )
    .await
    .expect("paych devnet printed nothing within a minute")
    .unwrap();
    let api = first_line
        .trim()
        .strip_prefix("FULLNODE_API_INFO=")
        .unwrap_or_else(|| panic!("{first_line:?}"));
    let port = api
        .strip_prefix(":/ip4/127.0.0.1/tcp/")
        .and_then(|rest| rest.strip_suffix("/http"))
        .unwrap_or_else(|| panic!("{api:?}"));
    let port: u16 = port.parse().unwrap();
    assert_ne!(port, 0);

    let head: Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/rpc/v1"))
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"Filecoin.ChainHead","params":[]}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(head["result"]["Height"].is_i64(), "{head}");

    // The Lotus client configured from the printed line reaches it, and blocks arrive.
    let chain = LotusChain::from_api_info(api).unwrap();
    let start = chain.head().await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(chain.head().await.unwrap() > start);
    let genesis_funds = chain.actor(&funded).await.unwrap().unwrap().balance;
    assert_eq!(genesis_funds, TokenAmount::from_whole(5));

    let pid = child.0.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let exited = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("paych devnet did not stop on SIGTERM");
    assert!(exited.success(), "{exited:?}");
}
