//! The `Filecoin.Paych*` answers that follow Lotus's payment-channel manager (`paychmgr`):
//! proof bytes refused, a re-added voucher answered `0` and an older one refused with
//! Lotus's words, check-valid refusing what add refuses, and `PaychNewPayment`'s wait
//! sentinel, a `PaychGet` whose caller went away holding nothing (over HTTP and WebSocket),
//! and error texts naming addresses with the API's network's prefix — each over the node's
//! JSON-RPC API, on the in-process devnet with real sled stores and keys.
//!
//! The differences that stay deliberate are listed in docs/api.md ("Differences from Lotus").
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::{SinkExt, StreamExt};
use paych_core::manager::VoucherSpec;
use paych_core::network::FilNetwork;
use paych_core::store::MessagePurpose;
use paych_core::types::format_address;
use paych_core::types::{
    parse_address, Address, Merge, ModVerifyParams, SignedVoucher, TokenAmount,
};
use paych_node::rpc::auth::{self, Permission};
use paych_node::rpc::client::{ApiClient, ClientError};
use paych_node::rpc::methods::*;
use paych_node::rpc::params::{Bytes, VoucherSpecs};
use paych_node::rpc::server::{serve_api, ApiServer};
use paych_testkit::amounts::atto;
use paych_testkit::deadline::{eventually, within};
use paych_testkit::devnet::{Net, Node};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const SECRET: [u8; 32] = [7; 32];

/// Lotus's refusal of proof bytes (`paychmgr/manager.go`).
const PROOF_NOT_SUPPORTED: &str = "payment channel proof parameter is not supported";
/// Lotus's refusal of an older voucher (`paychmgr/paych.go`).
const NONCE_TOO_LOW: &str = "nonce too low";
/// Lotus's refusal of a newer voucher lowering its lane (`paychmgr/paych.go`).
const AMOUNT_TOO_LOW: &str = "voucher amount is lower than amount for voucher with lower nonce";

/// A node's API server and an admin client of it.
struct Api {
    server: ApiServer,
    client: ApiClient,
}

async fn api_of(node: &Node) -> Api {
    let (manager, wallet, listen) = (node.m().clone(), node.wallet.clone(), ([127, 0, 0, 1], 0));
    let server = serve_api(manager, wallet, SECRET.into(), FilNetwork::Devnet, listen.into());
    let server = server.await.unwrap();
    let token = auth::issue(&SECRET, &Permission::Admin.up_to());
    let client = ApiClient::new(format!("http://{}/rpc/v1", server.local_addr()), Some(token));
    Api { server, client }
}

/// The message of a failed call.
fn refusal<T: std::fmt::Debug>(answer: Result<T, ClientError>) -> String {
    match answer {
        Err(ClientError::Rpc { message, .. }) => message,
        other => panic!("expected a method error, got {other:?}"),
    }
}

/// A payer with a channel of `balance` to a payee, and the payee's API.
async fn channel_and_payee_api(balance: u64) -> (Net, Node, Node, Address, Api) {
    let net = Net::new();
    let (payer, payee, ch) = net.channel(10, 0, atto(balance)).await;
    let api = api_of(&payee).await;
    (net, payer, payee, ch, api)
}

/// Puts one lock (or a merge) on a voucher.
type Lock = fn(&mut SignedVoucher);

fn no_bytes() -> Bytes {
    Bytes(Vec::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proof_bytes_in_a_voucher_check_add_or_submit_are_refused_with_lotus_text() {
    let (_net, payer, payee, ch, api) = channel_and_payee_api(100).await;
    let voucher = payer.create_voucher(&ch, atto(40), 0).await;
    let proof = Bytes(vec![1, 2, 3]);

    let spendable = api
        .client
        .call::<PaychVoucherCheckSpendable>((ch, voucher.clone(), no_bytes(), proof.clone()))
        .await;
    assert_eq!(refusal(spendable), PROOF_NOT_SUPPORTED);
    let added = api
        .client
        .call::<PaychVoucherAdd>((ch, voucher.clone(), proof.clone(), TokenAmount::default()))
        .await;
    assert_eq!(refusal(added), PROOF_NOT_SUPPORTED);
    let submitted =
        api.client.call::<PaychVoucherSubmit>((ch, voucher.clone(), no_bytes(), proof)).await;
    assert_eq!(refusal(submitted), PROOF_NOT_SUPPORTED);
    // Refused before anything else: the voucher was neither stored nor sent.
    assert!(payee.m().store().channels().unwrap().is_empty());
    assert!(payee.m().store().messages().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_added_voucher_answers_zero_and_an_older_or_lower_one_is_refused_as_lotus_refuses_it()
{
    let (_net, payer, _payee, ch, api) = channel_and_payee_api(100).await;
    let older = payer.create_voucher(&ch, atto(40), 0).await;
    let newer = payer.create_voucher(&ch, atto(60), 0).await;
    let add = |voucher: &SignedVoucher| {
        api.client.call::<PaychVoucherAdd>((ch, voucher.clone(), no_bytes(), atto(0)))
    };

    assert_eq!(add(&newer).await.unwrap(), "60");
    assert_eq!(add(&newer).await.unwrap(), "0", "voucher re-added");
    assert_eq!(refusal(add(&older).await), NONCE_TOO_LOW);
    let lower = payer.sign(SignedVoucher::new(ch, 0, newer.nonce + 1, atto(50)));
    assert_eq!(refusal(add(&lower).await), AMOUNT_TOO_LOW);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_valid_refuses_the_older_lower_voucher_that_add_refuses() {
    let (_net, payer, _payee, ch, api) = channel_and_payee_api(100).await;
    let older = payer.create_voucher(&ch, atto(40), 0).await;
    let newer = payer.create_voucher(&ch, atto(60), 0).await;
    api.client.call::<PaychVoucherAdd>((ch, newer, no_bytes(), atto(0))).await.unwrap();

    let checked = api.client.call::<PaychVoucherCheckValid>((ch, older.clone())).await;
    let added = api.client.call::<PaychVoucherAdd>((ch, older, no_bytes(), atto(0))).await;
    assert_eq!(refusal(checked), NONCE_TOO_LOW);
    assert_eq!(refusal(added), NONCE_TOO_LOW);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_payment_answers_the_create_message_as_a_wait_sentinel_for_get_wait_ready() {
    let net = Net::new();
    let (payer, payee) = net.pair(10, 0).await;
    let api = api_of(&payer).await;
    let specs = VoucherSpecs(vec![VoucherSpec { amount: atto(70), ..VoucherSpec::default() }]);

    let payment =
        api.client.call::<PaychNewPayment>((payer.addr, payee.addr, specs)).await.unwrap();

    let sentinel = payment.wait_sentinel.expect("the create message").parse("sentinel").unwrap();
    let (_, create) = payer
        .m()
        .store()
        .messages()
        .unwrap()
        .into_iter()
        .map(|m| (m.purpose, m.cid))
        .find(|(purpose, _)| matches!(purpose, paych_core::store::MessagePurpose::Create { .. }))
        .unwrap();
    assert_eq!(sentinel, create);
    let ready = api.client.call::<PaychGetWaitReady>((sentinel,)).await.unwrap();
    assert_eq!(ready, payment.channel);
    assert!(parse_address(&ready).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_and_merging_vouchers_are_refused_with_lotus_texts() {
    let (_net, payer, _payee, ch, api) = channel_and_payee_api(100).await;
    let lotus_texts: [(&str, Lock); 5] = [
        ("voucher is Message Locked", |v| {
            v.extra = Some(ModVerifyParams { actor: v.channel_addr, method: 2, data: vec![] })
        }),
        ("voucher is Max Time Locked", |v| v.time_lock_max = 1_000_000),
        ("voucher is Min Time Locked", |v| v.time_lock_min = 1),
        ("voucher is Hash Locked", |v| v.secret_hash = vec![9; 32]),
        ("don't currently support paych lane merges", |v| {
            v.merges = vec![Merge { lane: 1, nonce: 1 }]
        }),
    ];
    for (text, lock) in lotus_texts {
        let mut voucher = SignedVoucher::new(ch, 0, 1, atto(10));
        lock(&mut voucher);
        let voucher = payer.sign(voucher);
        let checked = api.client.call::<PaychVoucherCheckValid>((ch, voucher.clone())).await;
        assert_eq!(refusal(checked), text);
        let added = api.client.call::<PaychVoucherAdd>((ch, voucher, no_bytes(), atto(0))).await;
        assert_eq!(refusal(added), text);
    }
}

/// A payer whose channel to a payee is being created (its create message for 100 waits in
/// the pool of a devnet that mines only when told), and the payer's API.
async fn channel_being_created() -> (Net, Node, Node, cid::Cid, Api) {
    let net = Net::manual();
    let (payer, payee) = net.pair(10, 0).await;
    let create = payer.m().get(payer.addr, payee.addr, atto(100)).await.unwrap();
    let api = api_of(&payer).await;
    (net, payer, payee, create.wait_sentinel.unwrap(), api)
}

/// go-jsonrpc's request for `PaychGet(payer → payee, amount)` with id `id`.
fn paych_get_request(payer: &Node, payee: &Node, amount: u64, id: u64) -> String {
    let (from, to) = (address(&payer.addr), address(&payee.addr));
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"Filecoin.PaychGet","params":["{from}","{to}","{amount}"]}}"#
    )
}

fn address(addr: &Address) -> String {
    format_address(addr, paych_core::types::Network::Testnet)
}

fn admin_token() -> String {
    auth::issue(&SECRET, &Permission::Admin.up_to())
}

/// What the payer's channel to `payee` has queued for its next add-funds message.
async fn queued(payer: &Node, payee: &Node) -> TokenAmount {
    payer.m().available_funds_by_from_to(&payer.addr, &payee.addr).await.unwrap().queued
}

/// Waits until the get the API is running has queued `amount` behind the create.
async fn until_queued(payer: &Node, payee: &Node, amount: u64) {
    eventually("the API's get to queue behind the create", || async {
        queued(payer, payee).await == atto(amount)
    })
    .await;
}

/// After the caller of a queued get went away: nothing is queued or reserved for it (over
/// the API too), and once the create lands the channel holds the create's 100 alone and no
/// add-funds message was sent.
async fn the_get_holds_nothing(
    net: &Net,
    payer: &Node,
    payee: &Node,
    create: &cid::Cid,
    api: &Api,
) {
    eventually("the abandoned get to be undone", || async { queued(payer, payee).await.is_zero() })
        .await;
    let funds =
        api.client.call::<PaychAvailableFundsByFromTo>((payer.addr, payee.addr)).await.unwrap();
    assert_eq!(funds.funds.queued_amt, "0", "{funds:?}");
    assert_eq!(funds.pending_available_amt, "0", "{funds:?}");
    net.mine_until_landed(payer.m(), create).await;
    let ch = payer.m().get_wait_ready(create).await.unwrap();
    let status = payer.m().status(&ch).await.unwrap();
    assert_eq!((status.confirmed, status.reserved), (atto(100), atto(100)));
    let adds = payer.m().store().messages().unwrap().into_iter();
    let adds: Vec<_> =
        adds.filter(|m| matches!(m.purpose, MessagePurpose::AddFunds { .. })).collect();
    assert!(adds.is_empty(), "no add-funds message: {adds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paych_get_whose_caller_went_away_releases_its_funds_over_http() {
    let (net, payer, payee, create, api) = channel_being_created().await;
    let body = paych_get_request(&payer, &payee, 50, 1);
    let mut connection = TcpStream::connect(api.server.local_addr()).await.unwrap();
    let request = format!(
        "POST /rpc/v1 HTTP/1.1\r\nHost: paych\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        admin_token(),
        body.len()
    );
    connection.write_all(request.as_bytes()).await.unwrap();
    until_queued(&payer, &payee, 50).await;

    // The caller gives up: it closes the connection before the answer.
    drop(connection);

    the_get_holds_nothing(&net, &payer, &payee, &create, &api).await;
}

/// A WebSocket to the API's `/rpc/v1` with an admin token.
async fn socket_of(
    api: &Api,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let url = format!("ws://{}/rpc/v1", api.server.local_addr());
    let mut request = url.into_client_request().unwrap();
    let bearer = format!("Bearer {}", admin_token()).parse().unwrap();
    request.headers_mut().insert("Authorization", bearer);
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paych_get_whose_caller_went_away_releases_its_funds_over_websocket() {
    // go-jsonrpc's client cancels the call (`xrpc.cancel`) and the connection goes on.
    let (net, payer, payee, create, api) = channel_being_created().await;
    let mut socket = socket_of(&api).await;
    socket.send(Message::text(paych_get_request(&payer, &payee, 50, 7))).await.unwrap();
    until_queued(&payer, &payee, 50).await;
    let cancel = r#"{"jsonrpc":"2.0","method":"xrpc.cancel","params":[7]}"#;
    socket.send(Message::text(cancel)).await.unwrap();
    eventually("the cancelled get to be undone", || async {
        queued(&payer, &payee).await.is_zero()
    })
    .await;
    let list = r#"{"jsonrpc":"2.0","id":8,"method":"Filecoin.PaychList","params":[]}"#;
    socket.send(Message::text(list)).await.unwrap();
    let answer = within("the next call's answer", socket.next()).await.unwrap().unwrap();
    let answer: serde_json::Value = serde_json::from_str(answer.to_text().unwrap()).unwrap();
    assert_eq!(answer["id"], serde_json::json!(8), "the cancelled call is not answered: {answer}");
    the_get_holds_nothing(&net, &payer, &payee, &create, &api).await;

    // The caller closes the socket with its get in flight.
    let (net, payer, payee, create, api) = channel_being_created().await;
    let mut socket = socket_of(&api).await;
    socket.send(Message::text(paych_get_request(&payer, &payee, 50, 1))).await.unwrap();
    until_queued(&payer, &payee, 50).await;
    socket.close(None).await.unwrap();
    drop(socket);
    the_get_holds_nothing(&net, &payer, &payee, &create, &api).await;
}

/// Every `f` address (`f0…`, `f1…`, `f2…`, `f3…`, `f4…`) in `text`.
fn mainnet_addresses(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| word.len() > 2 && word.starts_with('f'))
        .filter(|word| parse_address(word).is_ok())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_texts_name_addresses_with_the_test_networks_prefix() {
    let (net, payer, payee, ch, api) = channel_and_payee_api(100).await;
    let stranger = net.node(1).await;
    let mut texts = Vec::new();
    // A voucher signed by a key that is not the channel's payer.
    let forged = stranger.sign(SignedVoucher::new(ch, 0, 1, atto(10)));
    let added = api.client.call::<PaychVoucherAdd>((ch, forged.clone(), no_bytes(), atto(0))).await;
    texts.push(refusal(added));
    texts.push(refusal(api.client.call::<PaychVoucherCheckValid>((ch, forged)).await));
    // A channel the node does not know; a get beyond the payee's balance (the chain's
    // refusal names the sender).
    let unknown = Address::new_id(999_999);
    texts.push(refusal(api.client.call::<PaychStatus>((unknown,)).await));
    let get = api.client.call::<PaychGet>((payee.addr, payer.addr, atto(1_000), None)).await;
    texts.push(refusal(get));
    // The payer's own settle on the payee's node: not its channel to settle.
    texts.push(refusal(api.client.call::<PaychSettle>((ch,)).await.map(|_| ())));
    drop(payee);

    for text in &texts {
        assert!(text.contains(" t0") || text.contains(" t1") || text.contains(" t2"), "{text}");
        assert_eq!(mainnet_addresses(text), Vec::<String>::new(), "{text}");
    }
}
