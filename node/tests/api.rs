//! The node's JSON-RPC API over HTTP: permissions, Lotus JSON shapes, a full payment flow
//! between two nodes' APIs, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use paych_core::invoice::{payment_hash, unix_now, Hub, Invoice};
use paych_core::jsonrpc::error_code;
use paych_core::lotus_json::LotusJson;
use paych_core::manager::VoucherSpec;
use paych_core::types::{format_address, Address, Network};
use paych_core::types::{parse_address, SignedVoucher};
use paych_node::rpc::auth::{self, Permission};
use paych_node::rpc::client::{ApiClient, ClientError};
use paych_node::rpc::methods::*;
use paych_node::rpc::params::{Bytes, InvoiceHubs, KeyType, VoucherSpecs};
use paych_node::rpc::server::{serve_api, ApiServer};
use paych_node::rpc::METHOD_ERROR;
use paych_testkit::amounts::atto;
use paych_testkit::devnet::{Net, Node};
use serde_json::{json, Value};

const SECRET: [u8; 32] = [42; 32];

/// A node's API: the server and a client with an optional token.
struct Api {
    server: ApiServer,
    client: reqwest::Client,
}

impl Api {
    async fn of(node: &Node) -> Api {
        let server = serve_api(
            node.m().clone(),
            node.wallet.clone(),
            SECRET.to_vec(),
            paych_core::network::FilNetwork::Devnet,
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        Api { server, client: reqwest::Client::new() }
    }

    fn url(&self) -> String {
        format!("http://{}/rpc/v1", self.server.local_addr())
    }

    /// Posts `body` with `token` (if any), answering the HTTP status and the JSON body.
    async fn post(&self, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self.client.post(self.url()).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Calls `method`, answering its result or its error object.
    async fn call(&self, token: Option<&str>, method: &str, params: Value) -> Result<Value, Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let (status, answer) = self.post(token, body).await;
        assert_eq!(status, go_jsonrpc_status(&answer), "{method}: {answer}");
        assert_eq!(answer["id"], json!(1));
        match answer.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(answer["result"].clone()),
        }
    }

    /// The typed client of this API, sending `token` (if any).
    fn client(&self, token: Option<&str>) -> ApiClient {
        ApiClient::new(self.url(), token.map(str::to_owned))
    }

    async fn ok(&self, token: Option<&str>, method: &str, params: Value) -> Value {
        match self.call(token, method, params).await {
            Ok(result) => result,
            Err(e) => panic!("{method} failed: {e}"),
        }
    }
}

/// A payer with 100 FIL and a payee with 1 FIL on one devnet, each with its API.
async fn payer_and_payee() -> (Net, Node, Node, Api, Api) {
    let net = Net::new();
    let payer = net.node(100).await;
    let payee = net.node(1).await;
    let (payer_api, payee_api) = (Api::of(&payer).await, Api::of(&payee).await);
    (net, payer, payee, payer_api, payee_api)
}

fn token(level: Permission) -> String {
    auth::issue(&SECRET, &level.up_to())
}

/// The HTTP status go-jsonrpc sends `answer` with: 400 for an invalid request, 500 for the
/// errors of its envelope, 200 for a result or a method's error.
fn go_jsonrpc_status(answer: &Value) -> u16 {
    let code = answer["error"]["code"].as_i64();
    match code {
        Some(error_code::INVALID_REQUEST) => 400,
        Some(
            error_code::PARSE_ERROR | error_code::METHOD_NOT_FOUND | error_code::INVALID_PARAMS,
        ) => 500,
        _ => 200,
    }
}

fn t(addr: &Address) -> String {
    format_address(addr, Network::Testnet)
}

fn is_permission_error(e: &Value) -> bool {
    e["code"] == json!(METHOD_ERROR)
        && e["message"].as_str().unwrap_or_default().starts_with("missing permission to invoke")
}

/// Calls every method of `/rpc/v1` with its parameters all null as a caller holding
/// `granted` (or no token), and checks that exactly the methods above it are refused for
/// lack of permission, as Lotus names them (without `Filecoin.`).
async fn check_permissions(api: &Api, token: Option<&str>, granted: Permission) {
    for method in METHODS.iter().filter(|m| m.served_on(ApiVersion::V1)) {
        let params = Value::from(vec![Value::Null; method.arity]);
        let outcome = api.call(token, method.name, params).await;
        let refused = matches!(&outcome, Err(e) if is_permission_error(e));
        assert_eq!(refused, method.permission > granted, "{} with {granted}", method.name);
        if let Err(e) = &outcome {
            assert_ne!(e["code"], json!(error_code::METHOD_NOT_FOUND), "{}", method.name);
        }
        if refused {
            let message = outcome.unwrap_err()["message"].as_str().unwrap().to_owned();
            assert_eq!(
                message,
                format!(
                    "missing permission to invoke '{}' (need '{}')",
                    method.name.strip_prefix("Filecoin.").unwrap(),
                    method.permission
                )
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_follow_the_callers_token() {
    let net = Net::new();
    let node = net.node(0).await;
    let api = Api::of(&node).await;

    check_permissions(&api, None, Permission::Read).await;
    for level in Permission::ALL {
        check_permissions(&api, Some(&token(level)), level).await;
    }
    // Every declared method is served: with its parameters all null, each one gets past the
    // table to its own parameter checks.
    let admin = token(Permission::Admin);
    for method in METHODS {
        let params = Value::from(vec![Value::Null; method.arity]);
        let outcome = api.call(Some(&admin), method.name, params).await;
        if let Err(e) = outcome {
            assert_ne!(e["code"], json!(error_code::METHOD_NOT_FOUND), "{}", method.name);
        }
    }
    // Read methods work without a token.
    assert_eq!(api.ok(None, "Filecoin.PaychList", json!([])).await, json!([]));
    let balance = api.ok(None, "Filecoin.WalletBalance", json!([t(&node.addr)])).await;
    assert_eq!(balance, json!("0"));
    // A write token may list keys; an admin token may export them.
    let keys = api.ok(Some(&token(Permission::Write)), "Filecoin.WalletList", json!([])).await;
    assert_eq!(keys, json!([t(&node.addr)]));
    let info = api.ok(Some(&admin), "Filecoin.WalletExport", json!([t(&node.addr)])).await;
    assert_eq!(info["Type"], json!("secp256k1"));
    assert!(info["PrivateKey"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_get_http_401() {
    let net = Net::new();
    let node = net.node(0).await;
    let api = Api::of(&node).await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "Filecoin.PaychList", "params": []});

    let forged = auth::issue(&[1; 32], &Permission::Admin.up_to());
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(r#"{"Allow":["read"],"exp":1000}"#);
    let expired = {
        // Signed with the right secret, but expired.
        use hmac::{Hmac, KeyInit, Mac};
        let input = format!("{header}.{claims}");
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&SECRET).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    };
    let none_alg = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(r#"{"Allow":["admin"]}"#)
    );
    let huge = "a".repeat(10_000);
    for bad in [forged.as_str(), expired.as_str(), none_alg.as_str(), "garbage", "a.b.c", &huge] {
        // As Lotus: HTTP 401 and an empty body, in the header or in `?token=`.
        let (status, answer) = api.post(Some(bad), body.clone()).await;
        assert_eq!((status, answer), (401, json!("")), "{}", &bad[..bad.len().min(40)]);
        let url = format!("{}?token={bad}", api.url());
        let response = api.client.post(url).json(&body).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{}", &bad[..bad.len().min(40)]);
    }
    // The typed client says why.
    let refused = api.client(Some("a.b.c")).call::<PaychList>(()).await.unwrap_err();
    assert!(matches!(&refused, ClientError::Http(_, 401, text) if text == "the token was refused"));
    // A good token in the query grants its permissions; the header wins over it.
    let write = token(Permission::Write);
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "Filecoin.WalletList", "params": []});
    let url = format!("{}?token={write}", api.url());
    let answer: Value =
        api.client.post(&url).json(&list).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["result"], json!([t(&node.addr)]));
    let read = format!("Bearer {}", token(Permission::Read));
    let request = api.client.post(&url).header("Authorization", read).json(&list);
    let answer: Value = request.send().await.unwrap().json().await.unwrap();
    assert_eq!(
        answer["error"]["message"],
        json!("missing permission to invoke 'WalletList' (need 'write')")
    );
    let response = api
        .client
        .post(api.url())
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    // The v0 path answers too.
    let response = api
        .client
        .post(format!("http://{}/rpc/v0", api.server.local_addr()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["result"], json!([]));
    // A good token still works after all that.
    let (status, answer) = api.post(Some(&token(Permission::Read)), body).await;
    assert_eq!((status, &answer["result"]), (200, &json!([])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_flows_from_one_api_to_the_other_in_lotus_json() {
    let (_net, payer, payee, payer_api, payee_api) = payer_and_payee().await;
    let sign = token(Permission::Sign);
    let write = token(Permission::Write);
    let amount = "1000000";

    // PaychGet: a new channel, nothing on chain yet, a sentinel to wait for.
    let got = payer_api
        .ok(
            Some(&sign),
            "Filecoin.PaychGet",
            json!([t(&payer.addr), t(&payee.addr), amount, {"OffChain": false}]),
        )
        .await;
    assert_eq!(got["Channel"], Value::Null);
    let sentinel = got["WaitSentinel"].clone();
    assert!(sentinel["/"].as_str().unwrap().starts_with("bafy2bza"), "{got}");
    let ch = payer_api.ok(Some(&sign), "Filecoin.PaychGetWaitReady", json!([sentinel])).await;
    let ch_text = ch.as_str().unwrap().to_owned();
    assert!(ch_text.starts_with("t2"), "{ch_text}");

    // PaychAvailableFunds: Lotus's field names, its typo included.
    let funds = payer_api.ok(Some(&sign), "Filecoin.PaychAvailableFunds", json!([ch])).await;
    let mut keys: Vec<&str> = funds.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "Channel",
            "ConfirmedAmt",
            "From",
            "NonReservedAmt",
            "PendingAmt",
            "PendingAvailableAmt",
            "PendingWaitSentinel",
            "QueuedAmt",
            "To",
            "VoucherReedeemedAmt"
        ]
    );
    assert_eq!(funds["Channel"], ch);
    assert_eq!(funds["From"], json!(t(&payer.addr)));
    assert_eq!(funds["To"], json!(t(&payee.addr)));
    assert_eq!(funds["ConfirmedAmt"], json!(amount));
    assert_eq!(funds["VoucherReedeemedAmt"], json!("0"));
    let by_pair = payer_api
        .ok(
            Some(&sign),
            "Filecoin.PaychAvailableFundsByFromTo",
            json!([t(&payer.addr), t(&payee.addr)]),
        )
        .await;
    assert_eq!(by_pair, funds);

    // PaychVoucherCreate: {"Voucher","Shortfall"}; the voucher in Lotus JSON.
    let lane = payer_api.ok(Some(&sign), "Filecoin.PaychAllocateLane", json!([ch])).await;
    let created =
        payer_api.ok(Some(&sign), "Filecoin.PaychVoucherCreate", json!([ch, "400", lane])).await;
    assert_eq!(created["Shortfall"], json!("0"));
    let voucher = created["Voucher"].clone();
    assert_eq!(voucher["ChannelAddr"], ch);
    assert_eq!(voucher["Amount"], json!("400"));
    assert_eq!(voucher["Lane"], lane);
    assert_eq!(voucher["Signature"]["Type"], json!(1));
    assert!(voucher["Signature"]["Data"].is_string());
    for field in ["TimeLockMin", "TimeLockMax", "SecretHash", "Extra", "Nonce", "MinSettleHeight"] {
        assert!(voucher.get(field).is_some(), "{field} missing in {voucher}");
    }
    let too_much = payer_api
        .ok(Some(&sign), "Filecoin.PaychVoucherCreate", json!([ch, "5000000", lane]))
        .await;
    assert_eq!(too_much["Voucher"], Value::Null);
    assert_eq!(too_much["Shortfall"], json!("4000000"));

    // The payee adds vouchers as JSON from the payer's API: the delta as a string. A later
    // voucher on the lane first, then the older one: refused as Lotus refuses it.
    let later =
        payer_api.ok(Some(&sign), "Filecoin.PaychVoucherCreate", json!([ch, "600", lane])).await;
    let later = later["Voucher"].clone();
    let delta = payee_api
        .ok(Some(&write), "Filecoin.PaychVoucherAdd", json!([ch, later, null, "100"]))
        .await;
    assert_eq!(delta, json!("600"));
    let older = payee_api
        .call(Some(&write), "Filecoin.PaychVoucherAdd", json!([ch, voucher, null, "0"]))
        .await
        .unwrap_err();
    assert_eq!(older["message"], json!("nonce too low"));
    // A voucher the payee has not seen yet checks valid; one it already holds does not.
    let next =
        payer_api.ok(Some(&sign), "Filecoin.PaychVoucherCreate", json!([ch, "700", lane])).await;
    let valid =
        payee_api.ok(None, "Filecoin.PaychVoucherCheckValid", json!([ch, next["Voucher"]])).await;
    assert_eq!(valid, Value::Null);
    let e = payee_api
        .call(None, "Filecoin.PaychVoucherCheckValid", json!([ch, later]))
        .await
        .unwrap_err();
    assert_eq!(e["code"], json!(METHOD_ERROR));
    let spendable = payee_api
        .ok(None, "Filecoin.PaychVoucherCheckSpendable", json!([ch, later, null, null]))
        .await;
    assert_eq!(spendable, json!(true));
    let listed = payee_api.ok(Some(&write), "Filecoin.PaychVoucherList", json!([ch])).await;
    assert_eq!(listed.as_array().unwrap().last(), Some(&later));
    let best = payee_api.ok(Some(&write), "Filecoin.PaychVoucherBestSpendable", json!([ch])).await;
    assert_eq!(best, json!([later]));

    // PaychStatus: Lotus's two fields and ours.
    let status = payer_api.ok(None, "Filecoin.PaychStatus", json!([ch])).await;
    assert_eq!(status["ControlAddr"], json!(t(&payer.addr)));
    assert_eq!(status["Direction"], json!(2));
    assert_eq!(status["Channel"], ch);
    assert_eq!(status["ConfirmedAmt"], json!(amount));
    assert_eq!(status["VoucherRedeemedAmt"], json!("700"));
    assert_eq!(status["Lifecycle"], json!("Open"));
    assert_eq!(status["Settling"], json!(false));
    assert_eq!(status["Lanes"][0]["Amount"], json!("700"));
    assert_eq!(status["Lanes"][0]["Closed"], json!(false));
    for field in [
        "From",
        "To",
        "PendingAmt",
        "PendingChainMessage",
        "QueuedAmt",
        "ReservedAmt",
        "AvailableAmt",
        "NextLane",
        "SettlingAt",
    ] {
        assert!(status.get(field).is_some(), "{field} missing in {status}");
    }
    let inbound = payee_api.ok(None, "Filecoin.PaychStatus", json!([ch])).await;
    assert_eq!(inbound["Direction"], json!(1));
    assert_eq!(inbound["ControlAddr"], json!(t(&payee.addr)));
    assert_eq!(payee_api.ok(None, "Filecoin.PaychList", json!([])).await, json!([ch]));

    // The payee settles: a message CID.
    let settle = payee_api.ok(Some(&sign), "Filecoin.PaychSettle", json!([ch])).await;
    assert!(settle["/"].as_str().unwrap().starts_with("bafy2bza"), "{settle}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_json_rpc_errors_and_the_server_keeps_serving() {
    let net = Net::new();
    let payer = net.node(100).await;
    let payee = net.node(0).await;
    let api = Api::of(&payer).await;
    let sign = token(Permission::Sign);
    let ch = t(&payer.open_channel(payee.addr, atto(1_000_000)).await);

    // Unknown channel: the manager's error, code 1.
    let unknown = t(&Address::new_id(999_999));
    let e = api.call(None, "Filecoin.PaychStatus", json!([unknown])).await.unwrap_err();
    assert_eq!(e["code"], json!(METHOD_ERROR));
    assert!(e["message"].as_str().unwrap().contains("unknown channel"), "{e}");

    // Malformed voucher JSON: a parse error, as go-jsonrpc answers a parameter it cannot
    // decode.
    for voucher in [json!({"Lane": "x"}), json!("not a voucher"), json!(null)] {
        let e = api
            .call(Some(&sign), "Filecoin.PaychVoucherAdd", json!([ch, voucher, null, "0"]))
            .await
            .unwrap_err();
        assert_eq!(e["code"], json!(error_code::PARSE_ERROR), "{e}");
    }

    // Negative and non-numeric amounts.
    for amount in ["-5", "five", ""] {
        let e = api
            .call(Some(&sign), "Filecoin.PaychVoucherCreate", json!([ch, amount, 0]))
            .await
            .unwrap_err();
        assert_eq!(e["code"], json!(error_code::PARSE_ERROR), "{amount}: {e}");
    }
    let e = api
        .call(Some(&sign), "Filecoin.PaychGet", json!([t(&payer.addr), t(&payee.addr), "-1"]))
        .await
        .unwrap_err();
    assert_eq!(e["code"], json!(error_code::PARSE_ERROR));

    // Wrong arity, bad address, unknown method, bad envelope, not JSON.
    let e = api.call(None, "Filecoin.PaychStatus", json!([])).await.unwrap_err();
    assert_eq!(e["code"], json!(error_code::INVALID_PARAMS));
    let e = api.call(None, "Filecoin.PaychStatus", json!(["nonsense"])).await.unwrap_err();
    assert_eq!(e["code"], json!(error_code::PARSE_ERROR));
    let e = api.call(None, "Filecoin.Nope", json!([])).await.unwrap_err();
    assert_eq!(e["code"], json!(error_code::METHOD_NOT_FOUND));
    // go-jsonrpc does not read `jsonrpc`: a request without a method names the method ''.
    let (status, answer) = api.post(None, json!({"jsonrpc": "1.0", "id": 1})).await;
    assert_eq!((status, &answer["error"]["code"]), (500, &json!(error_code::METHOD_NOT_FOUND)));
    let response = api.client.post(api.url()).body("{not json").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 500);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["code"], json!(error_code::PARSE_ERROR));
    let response = api.client.post(api.url()).body(vec![b' '; (1 << 20) + 1]).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 500);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["message"], json!("request bigger than maximum 1048576 allowed"));

    // Still serving, and nothing changed.
    let status = api.ok(None, "Filecoin.PaychStatus", json!([ch])).await;
    assert_eq!(status["VoucherRedeemedAmt"], json!("0"));
    assert_eq!(status["Lanes"], json!([]));
    assert_eq!(api.ok(None, "Filecoin.PaychList", json!([])).await, json!([ch]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_methods_and_the_wallet_work_over_the_api() {
    let (_net, payer, payee, payer_api, payee_api) = payer_and_payee().await;
    let (sign, write, admin) =
        (token(Permission::Sign), token(Permission::Write), token(Permission::Admin));

    // PaychCreate: no channel yet, the create message to wait for.
    let (payer_reader, payer_signer) = (payer_api.client(None), payer_api.client(Some(&sign)));
    let (payee_writer, payee_signer) =
        (payee_api.client(Some(&write)), payee_api.client(Some(&sign)));
    let (from, to) = (payer.addr, payee.addr);
    assert_eq!(payer_reader.call::<PaychLookup>((from, to)).await.unwrap(), None);
    let created = payer_signer.call::<PaychCreate>((from, to, atto(5000))).await.unwrap();
    assert_eq!(created.channel, None);
    let sentinel = created.wait_sentinel.unwrap().parse("WaitSentinel").unwrap();
    let ch_text = payer_signer.call::<PaychGetWaitReady>((sentinel,)).await.unwrap();
    let ch = parse_address(&ch_text).unwrap().0;
    let looked_up = payer_reader.call::<PaychLookup>((from, to)).await.unwrap().unwrap();
    assert_eq!(looked_up.channel.as_deref(), Some(ch_text.as_str()));

    // Reserve from available funds: no message. Release it again.
    let reserved = payer_signer.call::<PaychReserveFunds>((ch, atto(1000))).await.unwrap();
    assert_eq!(reserved, None);
    let status = payer_reader.call::<PaychStatus>((ch,)).await.unwrap();
    assert_eq!(status.reserved_amt, "1000");
    let payer_writer = payer_api.client(Some(&write));
    payer_writer.call::<PaychReleaseFunds>((ch, atto(1000))).await.unwrap();
    let status = payer_reader.call::<PaychStatus>((ch,)).await.unwrap();
    assert_eq!(status.reserved_amt, "0");

    // Add funds: a message CID.
    let added = payer_signer.call::<PaychAddFunds>((ch, atto(2000))).await.unwrap();
    let added = added.parse("cid").unwrap();
    payer_signer.call::<PaychGetWaitReady>((added,)).await.unwrap();

    // PaychNewPayment: vouchers on a fresh lane of the same channel; Lotus's VoucherSpec
    // with its optional fields left out (raw), and as the typed client writes it.
    let specs = json!([{"Amount": "100"}, {"Amount": "300", "TimeLockMin": 0, "Extra": null}]);
    let params = json!([t(&from), t(&to), specs]);
    let payment = payer_api.ok(Some(&sign), "Filecoin.PaychNewPayment", params).await;
    assert_eq!(payment["Channel"], json!(ch_text));
    let spec = |amount| VoucherSpec { amount: atto(amount), ..VoucherSpec::default() };
    let specs = VoucherSpecs(vec![spec(100), spec(300)]);
    let typed = payer_signer.call::<PaychNewPayment>((from, to, specs)).await.unwrap();
    assert_eq!(typed.channel, ch_text);
    assert_eq!(typed.vouchers.len(), 2);
    let vouchers: Vec<SignedVoucher> =
        serde_json::from_value::<Vec<_>>(payment["Vouchers"].clone())
            .unwrap()
            .into_iter()
            .map(|v| SignedVoucher::from_shape(v).unwrap())
            .collect();
    assert_eq!(vouchers.len(), 2);
    assert_eq!(vouchers[1].amount, atto(300));
    assert_eq!(vouchers[0].lane, vouchers[1].lane);

    // The payee takes the best one and submits it.
    let best = vouchers[1].clone();
    let params = (ch, best.clone(), Bytes::default(), atto(0));
    assert_eq!(payee_writer.call::<PaychVoucherAdd>(params).await.unwrap(), "300");
    let params = (ch, best, Bytes::default(), Bytes::default());
    let submitted = payee_signer.call::<PaychVoucherSubmit>(params).await.unwrap();
    assert!(submitted.parse("cid").is_ok());

    // Wallet: a new key, exported from one node and imported into the other.
    let (payer_admin, payee_admin) =
        (payer_api.client(Some(&admin)), payee_api.client(Some(&admin)));
    let key = payer_writer.call::<WalletNew>((KeyType::Secp256k1,)).await.unwrap();
    assert!(key.starts_with("t1"));
    // A key type other than secp256k1 cannot be written with the typed client: raw.
    let e = payer_api.call(Some(&write), "Filecoin.WalletNew", json!(["bls"])).await.unwrap_err();
    assert_eq!(e["code"], json!(error_code::PARSE_ERROR));
    let key = parse_address(&key).unwrap().0;
    let info = payer_admin.call::<WalletExport>((key,)).await.unwrap();
    assert!(!payee_writer.call::<WalletHas>((key,)).await.unwrap());
    let imported = payee_admin.call::<WalletImport>((info,)).await.unwrap();
    assert_eq!(imported, t(&key));
    assert!(payee_writer.call::<WalletHas>((key,)).await.unwrap());
    payer_writer.call::<WalletDefaultAddress>(()).await.unwrap();
    let balance = payer_reader.call::<WalletBalance>((from,)).await.unwrap();
    assert!(balance.parse::<u128>().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paych_retrieve_refuses_a_call_that_does_not_bound_the_price() {
    let net = Net::new();
    let payer = net.node(100).await;
    let api = Api::of(&payer).await;
    let sign = token(Permission::Sign);
    let (ch, root) = (t(&Address::new_id(1001)), "ab".repeat(32));
    let e = api.call(Some(&sign), "Filecoin.PaychRetrieve", json!([ch, root])).await.unwrap_err();
    assert_eq!(e["code"], json!(error_code::INVALID_PARAMS), "{e}");
    for params in [
        json!([ch, root, null]),
        json!([ch, root, "-1"]),
        json!([ch, root, "ten"]),
        json!([ch, root, "10", "-1"]),
        json!([ch, root, "10", 500]),
    ] {
        let e = api.call(Some(&sign), "Filecoin.PaychRetrieve", params.clone()).await.unwrap_err();
        assert_eq!(e["code"], json!(error_code::PARSE_ERROR), "{params}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_counted_by_declared_name_and_undeclared_ones_as_unknown() {
    let net = Net::new();
    let node = net.node(0).await;
    let api = Api::of(&node).await;
    let client = api.client(None);
    client.call::<PaychList>(()).await.unwrap();
    for name in ["Filecoin.Nope", "Filecoin.PaychListX"] {
        let e = client.call_raw(name, vec![]).await.unwrap_err();
        assert!(matches!(e, ClientError::Rpc { code: error_code::METHOD_NOT_FOUND, .. }), "{e}");
    }
    let url = format!("http://{}/metrics", api.server.local_addr());
    let text = api.client.get(url).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("paych_api_calls_total{method=\"Filecoin.PaychList\"} 1\n"), "{text}");
    assert!(text.contains("paych_api_calls_total{method=\"unknown\"} 2\n"), "{text}");
    assert!(!text.contains("Nope"), "{text}");
}

/// Posts one call to `/rpc/{version}` without a token, answering the result or the error.
async fn call_on(api: &Api, version: &str, method: &str, params: Value) -> Result<Value, Value> {
    let url = format!("http://{}/rpc/{version}", api.server.local_addr());
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let answer: Value =
        api.client.post(url).json(&body).send().await.unwrap().json().await.unwrap();
    match answer.get("error") {
        Some(error) => Err(error.clone()),
        None => Ok(answer["result"].clone()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_message_is_waited_for_and_found_with_lotus_v0_and_v1_parameters() {
    let net = Net::new();
    let payer = net.node(100).await;
    let payee = net.node(1).await;
    let api = Api::of(&payer).await;
    let ch = t(&payer.open_channel(payee.addr, atto(1_000_000)).await);
    let settle = api.ok(Some(&token(Permission::Sign)), "Filecoin.PaychSettle", json!([ch])).await;

    // v0: StateWaitMsg(cid, confidence), as `lotus paych settle` calls it.
    let waited = call_on(&api, "v0", "Filecoin.StateWaitMsg", json!([settle, 1])).await.unwrap();
    assert_eq!(waited["Message"], settle);
    assert_eq!(waited["Receipt"]["ExitCode"], json!(0));
    let height = waited["Height"].as_i64().unwrap();
    assert!(height > 0, "{waited}");
    // v1: StateWaitMsg(cid, confidence, limit, allowReplaced).
    let v1 = call_on(&api, "v1", "Filecoin.StateWaitMsg", json!([settle, 0, -1, true])).await;
    assert_eq!(v1.unwrap(), waited);
    // Each version refuses the other's parameters.
    let e = call_on(&api, "v1", "Filecoin.StateWaitMsg", json!([settle, 1])).await.unwrap_err();
    assert_eq!(e["code"], json!(error_code::INVALID_PARAMS));

    // StateSearchMsg: v0 (cid), v1 (tsk, cid, limit, allowReplaced); null for a message
    // that never executed.
    let found = call_on(&api, "v0", "Filecoin.StateSearchMsg", json!([settle])).await.unwrap();
    assert_eq!(found, waited);
    let found = call_on(&api, "v1", "Filecoin.StateSearchMsg", json!([[], settle, -1, true])).await;
    assert_eq!(found.unwrap(), waited);
    let unknown = json!({"/": "bafy2bzacea3wsdh6y3a36tb3skempjoxqpuyompjbmfeyf34fi3uy6uue42v4"});
    let none = call_on(&api, "v1", "Filecoin.StateSearchMsg", json!([null, unknown, -1, true]));
    assert_eq!(none.await.unwrap(), Value::Null);

    // ChainHead: the head's height; Version: Lotus's API version of each path.
    let head = call_on(&api, "v1", "Filecoin.ChainHead", json!([])).await.unwrap();
    assert!(head["Height"].as_i64().unwrap() >= height, "{head}");
    let v1 = call_on(&api, "v1", "Filecoin.Version", json!([])).await.unwrap();
    let block_delay = paych_core::network::FilNetwork::Devnet.preset().block_time.as_secs();
    assert_eq!((&v1["APIVersion"], &v1["BlockDelay"]), (&json!(0x0002_0300), &json!(block_delay)));
    let v0 = call_on(&api, "v0", "Filecoin.Version", json!([])).await.unwrap();
    assert_eq!(v0["APIVersion"], json!(0x0001_0500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_issues_invoices_whose_secrets_it_keeps_under_their_hashes() {
    let net = Net::new();
    let payee = net.node(1).await;
    let api = Api::of(&payee).await;
    let sign = token(Permission::Sign);
    let signer = api.client(Some(&sign));
    let peer = libp2p::PeerId::random();
    let hub = Hub {
        address: Address::new_id(1234),
        multiaddr: format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}"),
    };

    let params = (payee.addr, atto(500), 3600, InvoiceHubs(vec![hub.clone()]));
    let answer = signer.call::<PaychInvoice>(params).await.unwrap();
    let invoice = Invoice::from_text(&answer.text).unwrap();
    invoice.verify(unix_now()).unwrap();
    assert_eq!(invoice.payee, payee.addr);
    assert_eq!(invoice.amount, atto(500));
    assert_eq!(invoice.hubs, vec![hub]);
    assert!(invoice.expiry >= unix_now() + 3500 && invoice.expiry <= unix_now() + 3600);
    assert_eq!(answer.payment_hash, hex::encode(invoice.payment_hash));
    assert_eq!(answer.payee, t(&payee.addr));
    assert_eq!(answer.amount, "500");

    // The secret is in the payee's store under the hash, with the invoice it was made for.
    let kept = payee.m().store().invoice_secret(&invoice.payment_hash).unwrap().unwrap();
    assert_eq!(payment_hash(&kept.secret), invoice.payment_hash);
    assert_eq!(kept.invoice, invoice.to_cbor().unwrap());

    // A second invoice for the same terms: another secret, another hash, another id.
    let params = (payee.addr, atto(500), 3600, InvoiceHubs::default());
    let again =
        Invoice::from_text(&signer.call::<PaychInvoice>(params).await.unwrap().text).unwrap();
    let kept_again = payee.m().store().invoice_secret(&again.payment_hash).unwrap().unwrap();
    assert_ne!(again.payment_hash, invoice.payment_hash);
    assert_ne!(kept_again.secret, kept.secret);
    assert_ne!(again.id, invoice.id);
    // Hubs left out: none.
    let answer =
        api.ok(Some(&sign), "Filecoin.PaychInvoice", json!([t(&payee.addr), "7", 60])).await;
    assert_eq!(answer["Hubs"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_requests_out_of_bounds_are_refused() {
    let net = Net::new();
    let payee = net.node(1).await;
    let api = Api::of(&payee).await;
    let sign = token(Permission::Sign);
    let (addr, stranger) = (t(&payee.addr), t(&net.node(1).await.addr));
    let hub = |multiaddr: String| json!({"Address": "t01234", "Multiaddr": multiaddr});
    let good_hub = hub(format!("/ip4/127.0.0.1/tcp/1/p2p/{}", libp2p::PeerId::random()));
    let method_errors = [
        json!([addr, "0", 60]),
        json!([addr, "5", 0]),
        json!([addr, "5", 30 * 24 * 3600 + 1]),
        json!([stranger, "5", 60]),
    ];
    for params in method_errors {
        let e = api.call(Some(&sign), "Filecoin.PaychInvoice", params.clone()).await.unwrap_err();
        assert_eq!(e["code"], json!(METHOD_ERROR), "{params}: {e}");
    }
    let invalid = [
        json!([addr, "5", 60, vec![good_hub.clone(); 5]]),
        json!([addr, "5", 60, [hub("/ip4/127.0.0.1/tcp/1".to_owned())]]),
        json!([
            addr,
            "5",
            60,
            [hub(format!(
                "/ip4/127.0.0.1/tcp/1/p2p/{}{}",
                libp2p::PeerId::random(),
                "/a".repeat(200)
            ))]
        ]),
        json!([addr, "5", 60, {"Address": "t01234"}]),
    ];
    for params in invalid {
        let e = api.call(Some(&sign), "Filecoin.PaychInvoice", params.clone()).await.unwrap_err();
        assert_eq!(e["code"], json!(error_code::PARSE_ERROR), "{params}: {e}");
    }
    let e = api
        .call(Some(&token(Permission::Write)), "Filecoin.PaychInvoice", json!([addr, "5", 60]))
        .await
        .unwrap_err();
    assert!(is_permission_error(&e), "{e}");
}
