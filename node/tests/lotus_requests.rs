//! The requests Lotus's `lotus paych …` commands send, byte for byte as go-jsonrpc writes
//! them, over WebSocket (what `lotus` dials for a multiaddr API info) and over HTTP, to real
//! `paych daemon`s on a real `paych devnet`: each answered as Lotus answers it.
//!
//! The sequences are read from Lotus's `cli/paych.go`: `add-funds` connects to `/rpc/v1`
//! (`GetFullNodeAPIV1`, which first calls `Version` and compares its major and minor with
//! `FullAPIVersion1`, `cli/util/api.go`), then calls `PaychFund` and `PaychGetWaitReady`;
//! every other command connects to `/rpc/v0` (`GetFullNodeAPI`) without a `Version` call;
//! `settle`, `collect` and `voucher submit` wait with `StateWaitMsg(cid,
//! MessageConfidence = 5)`; `best-spendable` is `paychmgr.BestSpendableByLane`:
//! `PaychVoucherList`, then `PaychVoucherCheckSpendable(ch, v, nil, nil)` per voucher.
//!
//! go-jsonrpc's client (`client.go`) numbers its calls from 1 per connection and writes
//! `{"jsonrpc":"2.0","id":N,"method":"Filecoin.X","params":[…],"meta":{"SpanContext":…}}`
//! (the span context of the caller's OpenCensus span, always set since every Lotus method
//! takes a context); over HTTP it accepts statuses 200, 400 and 500 only, with a JSON body.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use futures::{SinkExt, StreamExt};
use paych_core::jsonrpc::error_code;
use paych_core::network::FilNetwork;
use paych_testkit::daemon::{http_base, rpc_url, start_daemon, start_devnet, wait_for, Running};
use paych_testkit::deadline::{eventually, within};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const PAYCH: &str = env!("CARGO_BIN_EXE_paych");
/// Lotus's `FullAPIVersion1`, 2.3.0, as `api.Version` encodes it.
const FULL_API_VERSION_1: u64 = 0x0002_0300;
/// Lotus's `buildconstants.MessageConfidence`.
const MESSAGE_CONFIDENCE: u64 = 5;
/// An OpenCensus span context as go-jsonrpc sends it: `propagation.Binary` (version 0, the
/// 16-byte trace id, the 8-byte span id, the options byte), standard base64.
const SPAN_CONTEXT: &str = "AAAKd2NfkNbYxGbSDTU3x48BF0tmbkGqxIECAQ==";

/// How a Lotus command reaches the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    WebSocket,
    Http,
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A go-jsonrpc client of one API path, as one `lotus` command opens it.
struct GoClient {
    url: String,
    token: Option<String>,
    socket: Option<Socket>,
    http: reqwest::Client,
    next_id: u64,
}

impl GoClient {
    /// Connects to `/rpc/{version}` of the API at `base` (`http://HOST:PORT`) with `token`
    /// in an `Authorization: Bearer` header (none without a token, as `lotus` sends none).
    async fn connect(base: &str, version: &str, token: &str, transport: Transport) -> GoClient {
        let url = format!("{base}/rpc/{version}");
        let token = Some(token.to_owned()).filter(|t| !t.is_empty());
        let socket = match transport {
            Transport::Http => None,
            Transport::WebSocket => Some(open_socket(&url, token.as_deref()).await.unwrap()),
        };
        GoClient { url, token, socket, http: reqwest::Client::new(), next_id: 1 }
    }

    /// What `GetFullNodeAPIV1` does: connect to `/rpc/v1` and check `Version`.
    async fn v1(base: &str, token: &str, transport: Transport) -> GoClient {
        let mut client = GoClient::connect(base, "v1", token, transport).await;
        let version = client.ok("Filecoin.Version", json!([])).await;
        let api_version = version["APIVersion"].as_u64().unwrap();
        // `EqMajorMinor`: the major and minor bytes must match.
        assert_eq!(api_version & 0xff_ff00, FULL_API_VERSION_1, "{version}");
        assert!(version["Version"].is_string() && version["BlockDelay"].is_u64(), "{version}");
        client
    }

    /// What `GetFullNodeAPI` does: connect to `/rpc/v0`.
    async fn v0(base: &str, token: &str, transport: Transport) -> GoClient {
        GoClient::connect(base, "v0", token, transport).await
    }

    /// The request go-jsonrpc writes for call number `id`, its members in the order of its
    /// `request` struct.
    fn request(id: u64, method: &str, params: &Value) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params},"meta":{{"SpanContext":"{SPAN_CONTEXT}"}}}}"#
        )
    }

    /// Calls `method`, answering its result or its error object; checks the envelope as
    /// go-jsonrpc's client does (the status over HTTP, the id).
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.next_id;
        self.next_id += 1;
        let text = GoClient::request(id, method, &params);
        let answer = match &mut self.socket {
            Some(socket) => {
                socket.send(Message::text(text)).await.unwrap();
                read_answer(socket).await
            }
            None => {
                let mut request =
                    self.http.post(&self.url).header("Content-Type", "application/json");
                if let Some(token) = &self.token {
                    request = request.header("Authorization", format!("Bearer {token}"));
                }
                let response = request.body(text).send().await.unwrap();
                let status = response.status().as_u16();
                assert!([200, 400, 500].contains(&status), "{method}: HTTP {status}");
                response.json::<Value>().await.unwrap()
            }
        };
        assert_eq!(answer["jsonrpc"], json!("2.0"), "{answer}");
        assert_eq!(answer["id"], json!(id), "{method}: {answer}");
        match answer.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(answer["result"].clone()),
        }
    }

    async fn ok(&mut self, method: &str, params: Value) -> Value {
        self.call(method, params).await.unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// `StateWaitMsg(cid, MessageConfidence)` on v0, and the receipt's exit code checked as
    /// the commands check it.
    async fn wait_ok(&mut self, command: &str, cid: &Value) -> Value {
        let lookup = self.ok("Filecoin.StateWaitMsg", json!([cid, MESSAGE_CONFIDENCE])).await;
        assert_eq!(lookup["Message"], *cid, "{command}: {lookup}");
        assert_eq!(lookup["Receipt"]["ExitCode"], json!(0), "{command}: {lookup}");
        assert!(lookup["Height"].as_i64().unwrap() > 0, "{lookup}");
        lookup
    }
}

/// A WebSocket to `url` (`http://…` dialled as `ws://…`) with `token` as a bearer header.
async fn open_socket(
    url: &str,
    token: Option<&str>,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = url.replacen("http://", "ws://", 1).into_client_request().unwrap();
    if let Some(token) = token {
        request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    }
    Ok(tokio_tungstenite::connect_async(request).await?.0)
}

/// The next answer on `socket`.
async fn read_answer(socket: &mut Socket) -> Value {
    within("an answer on the WebSocket", async {
        loop {
            match socket.next().await.unwrap().unwrap() {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Binary(bytes) => return serde_json::from_slice(&bytes).unwrap(),
                _ => continue,
            }
        }
    })
    .await
}

/// A payer's and a payee's daemon on one devnet.
struct Daemons {
    _dir: tempfile::TempDir,
    devnet_url: String,
    payer: (String, String),
    payee: (String, String),
    _running: Vec<Running>,
}

/// The base URL and admin token of the daemon on `repo`.
fn endpoint(repo: &Path) -> (String, String) {
    let base = http_base(&wait_for(&repo.join("api")));
    (base, wait_for(&repo.join("token")).trim().to_owned())
}

async fn daemons() -> Daemons {
    let dir = tempfile::tempdir().unwrap();
    let (devnet, info) = start_devnet(PAYCH);
    let payer_repo = dir.path().join("payer");
    let payee_repo = dir.path().join("payee");
    let payer = start_daemon(PAYCH, &payer_repo, &info, &[]);
    let payee = start_daemon(PAYCH, &payee_repo, &info, &[]);
    Daemons {
        devnet_url: rpc_url(&info),
        payer: endpoint(&payer_repo),
        payee: endpoint(&payee_repo),
        _dir: dir,
        _running: vec![payer, payee, devnet],
    }
}

impl Daemons {
    /// A devnet call, answered.
    async fn devnet(&self, method: &str, params: Value) -> Value {
        let base = self.devnet_url.trim_end_matches("/rpc/v1");
        GoClient::connect(base, "v1", "", Transport::Http).await.ok(method, params).await
    }

    /// A new key in the daemon at `api`, given `fil` FIL from the devnet's faucet.
    async fn funded_key(&self, api: &(String, String), fil: u64) -> String {
        let mut admin = GoClient::v0(&api.0, &api.1, Transport::Http).await;
        let key = admin.ok("Filecoin.WalletNew", json!(["secp256k1"])).await;
        let atto = format!("{fil}000000000000000000");
        self.devnet("Devnet.Faucet", json!([key, atto])).await;
        eventually("the faucet's money", || {
            let (api, key) = (api.clone(), key.clone());
            async move {
                let mut reader = GoClient::v0(&api.0, &api.1, Transport::Http).await;
                reader.ok("Filecoin.WalletBalance", json!([key])).await != json!("0")
            }
        })
        .await;
        key.as_str().unwrap().to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lotus_paych_commands_are_answered_as_lotus_answers_over_websocket_and_http() {
    let net = daemons().await;
    for transport in [Transport::WebSocket, Transport::Http] {
        lotus_paych_commands(&net, transport).await;
    }
}

/// Every `lotus paych` command once, over `transport`, on a fresh channel.
async fn lotus_paych_commands(net: &Daemons, transport: Transport) {
    let (from, to) = (net.funded_key(&net.payer, 10).await, net.funded_key(&net.payee, 1).await);
    let ((payer, payer_token), (payee, payee_token)) = (&net.payer, &net.payee);

    // lotus paych add-funds FROM TO 0.001
    let mut lotus = GoClient::v1(payer, payer_token, transport).await;
    let amount = "1000000000000000";
    let info = lotus.ok("Filecoin.PaychFund", json!([from, to, amount])).await;
    assert_eq!(info["Channel"], Value::Null, "{info}");
    let sentinel = info["WaitSentinel"].clone();
    assert!(sentinel["/"].is_string(), "{info}");
    let ch = lotus.ok("Filecoin.PaychGetWaitReady", json!([sentinel])).await;
    assert!(ch.as_str().unwrap().starts_with("t2"), "{ch}");

    // lotus paych list
    let mut lotus = GoClient::v0(payer, payer_token, transport).await;
    let list = lotus.ok("Filecoin.PaychList", json!([])).await;
    assert!(list.as_array().unwrap().contains(&ch), "{list}");

    // lotus paych status CH; lotus paych status-by-from-to FROM TO
    let mut lotus = GoClient::v0(payer, payer_token, transport).await;
    let funds = lotus.ok("Filecoin.PaychAvailableFunds", json!([ch])).await;
    assert_eq!((&funds["Channel"], &funds["From"], &funds["To"]), (&ch, &json!(from), &json!(to)));
    assert_eq!(funds["ConfirmedAmt"], json!(amount));
    assert_eq!(funds["PendingWaitSentinel"], Value::Null);
    let mut lotus = GoClient::v0(payer, payer_token, transport).await;
    let by_pair = lotus.ok("Filecoin.PaychAvailableFundsByFromTo", json!([from, to])).await;
    assert_eq!(by_pair, funds);

    // lotus paych voucher create CH 0.0001 --lane 0
    let mut lotus = GoClient::v0(payer, payer_token, transport).await;
    let created = lotus.ok("Filecoin.PaychVoucherCreate", json!([ch, "100000000000000", 0])).await;
    assert_eq!(created["Shortfall"], json!("0"), "{created}");
    let voucher = created["Voucher"].clone();
    assert_eq!((&voucher["ChannelAddr"], &voucher["Lane"]), (&ch, &json!(0)), "{voucher}");
    // …and one the channel cannot cover: no voucher, the shortfall.
    let mut lotus = GoClient::v0(payer, payer_token, transport).await;
    let short = lotus.ok("Filecoin.PaychVoucherCreate", json!([ch, "2000000000000000", 0])).await;
    assert_eq!(short["Voucher"], Value::Null, "{short}");
    assert_eq!(short["Shortfall"], json!("1000000000000000"), "{short}");

    // The payee: lotus paych voucher add, then for a second voucher on the lane check / add,
    // then list / best-spendable / submit.
    let mut lotus = GoClient::v0(payee, payee_token, transport).await;
    let added = lotus.ok("Filecoin.PaychVoucherAdd", json!([ch, voucher, null, "0"])).await;
    assert_eq!(added, json!("100000000000000"));
    let mut lotus = GoClient::v0(payer, payer_token, transport).await;
    let created = lotus.ok("Filecoin.PaychVoucherCreate", json!([ch, "300000000000000", 0])).await;
    let best = created["Voucher"].clone();
    assert_eq!(best["Nonce"], json!(2), "{best}");
    let mut lotus = GoClient::v0(payee, payee_token, transport).await;
    assert_eq!(lotus.ok("Filecoin.PaychVoucherCheckValid", json!([ch, best])).await, Value::Null);
    let mut lotus = GoClient::v0(payee, payee_token, transport).await;
    let added = lotus.ok("Filecoin.PaychVoucherAdd", json!([ch, best, null, "0"])).await;
    assert_eq!(added, json!("200000000000000"));
    let mut lotus = GoClient::v0(payee, payee_token, transport).await;
    let listed = lotus.ok("Filecoin.PaychVoucherList", json!([ch])).await;
    assert_eq!(listed, json!([voucher, best]));
    // best-spendable: the list, then each voucher checked spendable.
    let mut lotus = GoClient::v0(payee, payee_token, transport).await;
    assert_eq!(lotus.ok("Filecoin.PaychVoucherList", json!([ch])).await, listed);
    for v in [&voucher, &best] {
        let spendable =
            lotus.ok("Filecoin.PaychVoucherCheckSpendable", json!([ch, v, null, null])).await;
        assert!(spendable.is_boolean(), "{spendable}");
    }
    let spendable =
        lotus.ok("Filecoin.PaychVoucherCheckSpendable", json!([ch, best, null, null])).await;
    assert_eq!(spendable, json!(true));
    let mut lotus = GoClient::v0(payee, payee_token, transport).await;
    let submitted = lotus.ok("Filecoin.PaychVoucherSubmit", json!([ch, best, null, null])).await;
    lotus.wait_ok("voucher submit", &submitted).await;

    // lotus paych settle CH (the payer), then lotus paych collect CH once the settlement
    // period has passed.
    let mut lotus = GoClient::v0(payer, payer_token, transport).await;
    let settle = lotus.ok("Filecoin.PaychSettle", json!([ch])).await;
    lotus.wait_ok("settle", &settle).await;
    net.devnet("Devnet.Mine", json!([1441])).await;
    let mut lotus = GoClient::v0(payer, payer_token, transport).await;
    let collect = lotus.ok("Filecoin.PaychCollect", json!([ch])).await;
    // The payer's settler collects a settled channel by itself too: a collect asked after it
    // sent its message answers that message, so the command's wait succeeds either way, and
    // asking again answers the same message.
    lotus.wait_ok("collect", &collect).await;
    let mut lotus = GoClient::v0(payer, payer_token, transport).await;
    assert_eq!(lotus.ok("Filecoin.PaychCollect", json!([ch])).await, collect);
    eventually("the collect to be recorded", || async {
        let mut lotus = GoClient::v0(payer, payer_token, transport).await;
        let status = lotus.ok("Filecoin.PaychStatus", json!([ch])).await;
        status["Lifecycle"] == json!("Collected")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_go_jsonrpcs_codes_and_lotuss_permission_text_on_both_transports() {
    let net = daemons().await;
    let (payer, token) = &net.payer;
    for transport in [Transport::WebSocket, Transport::Http] {
        let mut lotus = GoClient::v0(payer, token, transport).await;
        // Unknown method; wrong parameter count; a parameter that does not decode; a method
        // that fails.
        let e = lotus.call("Filecoin.PaychNope", json!([])).await.unwrap_err();
        assert_eq!(e, json!({"code": -32601, "message": "method 'Filecoin.PaychNope' not found"}));
        let e = lotus.call("Filecoin.PaychStatus", json!([])).await.unwrap_err();
        assert_eq!(
            e,
            json!({"code": -32602, "message": "wrong param count (method 'Filecoin.PaychStatus'): 0 != 1"})
        );
        let e = lotus.call("Filecoin.PaychStatus", json!(["nonsense"])).await.unwrap_err();
        assert_eq!(e["code"], json!(error_code::PARSE_ERROR), "{e}");
        let e = lotus
            .call("Filecoin.PaychStatus", json!(["t2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]))
            .await;
        assert_eq!(e.unwrap_err()["code"], json!(error_code::PARSE_ERROR));
        let e = lotus.call("Filecoin.PaychStatus", json!(["t0999999"])).await.unwrap_err();
        assert_eq!(e["code"], json!(1), "{e}");
        // v0's StateWaitMsg takes two parameters, v1's four.
        let e = lotus.call("Filecoin.StateWaitMsg", json!([null, 5, -1, true])).await.unwrap_err();
        assert_eq!(e["code"], json!(error_code::INVALID_PARAMS), "{e}");

        // A caller without a token may read only: Lotus's text, without `Filecoin.`.
        let mut reader = GoClient::v0(payer, "", transport).await;
        let e = reader.call("Filecoin.PaychSettle", json!(["t0999999"])).await.unwrap_err();
        assert_eq!(
            e,
            json!({"code": 1, "message": "missing permission to invoke 'PaychSettle' (need 'sign')"})
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_answers_each_call_when_it_finishes_and_stops_a_cancelled_one() {
    let net = daemons().await;
    let (payer, token) = &net.payer;
    let key = net.funded_key(&net.payer, 1).await;
    let message = net.devnet("Devnet.Faucet", json!([key, "1"])).await;
    let mut socket = open_socket(&format!("{payer}/rpc/v1"), Some(token)).await.unwrap();
    // A wait for a million epochs over a message, then a list: the list is answered first.
    let wait =
        GoClient::request(1, "Filecoin.StateWaitMsg", &json!([message, 1_000_000, -1, true]));
    socket.send(Message::text(wait)).await.unwrap();
    let list = GoClient::request(2, "Filecoin.PaychList", &json!([]));
    socket.send(Message::text(list)).await.unwrap();
    let answer = read_answer(&mut socket).await;
    assert_eq!((&answer["id"], &answer["result"]), (&json!(2), &json!([])), "{answer}");
    // go-jsonrpc's client cancels the wait when its caller gives up: a notification, not
    // answered; the connection goes on.
    let cancel = r#"{"jsonrpc":"2.0","method":"xrpc.cancel","params":[1]}"#;
    socket.send(Message::text(cancel)).await.unwrap();
    let version = GoClient::request(3, "Filecoin.Version", &json!([]));
    socket.send(Message::text(version)).await.unwrap();
    let answer = read_answer(&mut socket).await;
    assert_eq!(answer["id"], json!(3), "{answer}");
    assert_eq!(answer["result"]["APIVersion"], json!(FULL_API_VERSION_1));
    // A batch on the WebSocket: one message, the answers in one array.
    let batch = format!(
        "[{},{}]",
        GoClient::request(4, "Filecoin.ChainHead", &json!([])),
        GoClient::request(5, "Filecoin.Nope", &json!([]))
    );
    socket.send(Message::text(batch)).await.unwrap();
    let answers = read_answer(&mut socket).await;
    assert_eq!(answers[0]["id"], json!(4), "{answers}");
    assert!(answers[0]["result"]["Height"].is_i64(), "{answers}");
    assert_eq!(answers[1]["error"]["code"], json!(error_code::METHOD_NOT_FOUND), "{answers}");
    // Not JSON: a parse error, and the connection still serves.
    socket.send(Message::text("{oops")).await.unwrap();
    let answer = read_answer(&mut socket).await;
    assert_eq!(answer["error"], json!({"code": -32700, "message": "Parse error"}));
    socket
        .send(Message::text(GoClient::request(6, "Filecoin.PaychList", &json!([]))))
        .await
        .unwrap();
    assert_eq!(read_answer(&mut socket).await["id"], json!(6));

    // A token that does not verify: the upgrade is refused with HTTP 401, as Lotus does.
    let refused = open_socket(&format!("{payer}/rpc/v1"), Some("a.b.c")).await.unwrap_err();
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status().as_u16(), 401)
        }
        other => panic!("{other}"),
    }
    // …and with `?token=` in the URL (as `lotus` may be given an API URL with one).
    let url = format!("{payer}/rpc/v0?token={token}");
    let mut socket = open_socket(&url, None).await.unwrap();
    let key = GoClient::request(1, "Filecoin.WalletNew", &json!(["secp256k1"]));
    socket.send(Message::text(key)).await.unwrap();
    assert!(read_answer(&mut socket).await["result"].as_str().unwrap().starts_with("t1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_batches_and_bad_bodies_get_go_jsonrpcs_answers_and_statuses() {
    let net = daemons().await;
    let (payer, token) = &net.payer;
    let url = format!("{payer}/rpc/v1");
    let http = reqwest::Client::new();
    let post = |body: String| {
        let request = http.post(&url).bearer_auth(token).body(body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    // A batch: the answers in order, none for the notification, HTTP 200 whatever they say.
    let batch = format!(
        r#"[{},{{"jsonrpc":"2.0","method":"Filecoin.PaychList","params":[]}},{}]"#,
        GoClient::request(1, "Filecoin.Version", &json!([])),
        GoClient::request(2, "Filecoin.PaychStatus", &json!([]))
    );
    let (status, text) = post(batch).await;
    let answers: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(answers.as_array().unwrap().len(), 2, "{text}");
    assert_eq!(answers[0]["result"]["APIVersion"], json!(FULL_API_VERSION_1));
    assert_eq!(answers[1]["error"]["code"], json!(error_code::INVALID_PARAMS));
    // A notification alone: run, not answered, HTTP 200 with an empty body.
    let (status, text) = post(r#"{"jsonrpc":"2.0","method":"Filecoin.PaychList"}"#.into()).await;
    assert_eq!((status, text.as_str()), (200, ""));
    // go-jsonrpc's statuses and texts for bodies that are no call.
    let cases = [
        ("", 400, json!({"code": -32600, "message": "Invalid request"})),
        ("[]", 400, json!({"code": -32600, "message": "Invalid request"})),
        ("{oops", 500, json!({"code": -32700, "message": "Parse error"})),
        (
            r#"{"jsonrpc":"2.0","id":true,"method":"Filecoin.PaychList"}"#,
            500,
            json!({"code": -32700, "message": "failed to parse ID: invalid id type: bool"}),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"Filecoin.PaychList","params":{}}"#,
            500,
            json!({"code": -32700, "message": "unmarshaling param array: json: cannot unmarshal object into Go value of type []jsonrpc.param"}),
        ),
    ];
    for (body, expected_status, error) in cases {
        let (status, text) = post(body.to_owned()).await;
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!((status, &answer["error"]), (expected_status, &error), "{body}");
    }
    // A GET that is no WebSocket upgrade: an empty request, as go-jsonrpc reads it.
    let response = http.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], json!({"code": -32600, "message": "Invalid request"}));
    // A bad token: HTTP 401 and nothing else, as Lotus answers.
    let response = http.post(&url).bearer_auth("a.b.c").body("{}").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.text().await.unwrap(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_answers_the_block_delay_of_the_daemons_network() {
    let net = daemons().await;
    let (payer, token) = &net.payer;
    let devnet_block_time = FilNetwork::Devnet.preset().block_time.as_secs();
    for transport in [Transport::WebSocket, Transport::Http] {
        for version in ["v1", "v0"] {
            let mut lotus = GoClient::connect(payer, version, token, transport).await;
            let answer = lotus.ok("Filecoin.Version", json!([])).await;
            assert_eq!(answer["BlockDelay"], json!(devnet_block_time), "{version}: {answer}");
        }
    }
}

/// Checks `head` is a tipset a Lotus client can read: a key of one CID per block, each block
/// at the tipset's height with its parents and state root.
fn assert_names_its_blocks(head: &Value) {
    let (cids, blocks) = (head["Cids"].as_array().unwrap(), head["Blocks"].as_array().unwrap());
    assert!(!cids.is_empty() && cids.len() == blocks.len(), "{head}");
    for block in blocks {
        assert_eq!(block["Height"], head["Height"], "{head}");
        assert!(block["Parents"].is_array() && block["ParentStateRoot"]["/"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_head_answers_the_head_tipsets_key_and_blocks_as_the_chain_has_them() {
    let net = daemons().await;
    let (payer, token) = &net.payer;
    for transport in [Transport::WebSocket, Transport::Http] {
        let mut lotus = GoClient::v0(payer, token, transport).await;
        let head = lotus.ok("Filecoin.ChainHead", json!([])).await;
        assert_names_its_blocks(&head);
        // The chain knows that key, at that height, with those blocks.
        let params = json!([head["Height"], head["Cids"]]);
        let tipset = net.devnet("Filecoin.ChainGetTipSetByHeight", params).await;
        assert_eq!(tipset, head);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devnet_daemons_error_texts_name_addresses_with_the_t_prefix() {
    let net = daemons().await;
    let (payer, token) = &net.payer;
    let mut lotus = GoClient::v0(payer, token, Transport::Http).await;
    let unfunded = lotus.ok("Filecoin.WalletNew", json!(["secp256k1"])).await;
    let other = lotus.ok("Filecoin.WalletNew", json!(["secp256k1"])).await;
    let calls = [
        ("Filecoin.PaychStatus", json!(["t0999999"])),
        ("Filecoin.PaychAllocateLane", json!(["t0999999"])),
        ("Filecoin.PaychGet", json!([unfunded, other, "1000"])),
        ("Filecoin.PaychSettle", json!(["t0999999"])),
    ];
    for (method, params) in calls {
        let error = lotus.call(method, params).await.unwrap_err();
        let text = error["message"].as_str().unwrap();
        assert!([" t0", " t1", " t2"].iter().any(|t| text.contains(t)), "{method}: {text}");
        let mainnet = [" f0", " f1", " f2", " f3", " f4"];
        assert!(!mainnet.iter().any(|f| text.contains(f)), "{method}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_head_on_a_daemons_embedded_devnet_answers_its_head_tipset() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("node");
    let _daemon = start_daemon(PAYCH, &repo, "", &[]);
    let (base, token) = endpoint(&repo);
    let mut lotus = GoClient::v0(&base, &token, Transport::Http).await;
    let head = lotus.ok("Filecoin.ChainHead", json!([])).await;
    assert_names_its_blocks(&head);
    assert_eq!(head["Blocks"][0]["Miner"], json!("t01000"), "{head}");
}
