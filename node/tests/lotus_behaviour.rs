//! The `Filecoin.Paych*` answers that follow Lotus's payment-channel manager (`paychmgr`):
//! proof bytes refused, a re-added voucher answered `0` and an older one refused with
//! Lotus's words, check-valid refusing what add refuses, and `PaychNewPayment`'s wait
//! sentinel — each over the node's JSON-RPC API, on the in-process devnet with real sled
//! stores and keys.
//!
//! The differences that stay deliberate are listed in docs/api.md ("Differences from Lotus").
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paych_core::manager::VoucherSpec;
use paych_core::types::{
    parse_address, Address, Merge, ModVerifyParams, Network, SignedVoucher, TokenAmount,
};
use paych_node::rpc::auth::{self, Permission};
use paych_node::rpc::client::{ApiClient, ClientError};
use paych_node::rpc::methods::*;
use paych_node::rpc::params::{Bytes, VoucherSpecs};
use paych_node::rpc::server::{serve_api, ApiServer};
use paych_testkit::amounts::atto;
use paych_testkit::devnet::{Net, Node};

const SECRET: [u8; 32] = [7; 32];

/// Lotus's refusal of proof bytes (`paychmgr/manager.go`).
const PROOF_NOT_SUPPORTED: &str = "payment channel proof parameter is not supported";
/// Lotus's refusal of an older voucher (`paychmgr/paych.go`).
const NONCE_TOO_LOW: &str = "nonce too low";
/// Lotus's refusal of a newer voucher lowering its lane (`paychmgr/paych.go`).
const AMOUNT_TOO_LOW: &str = "voucher amount is lower than amount for voucher with lower nonce";

/// A node's API server and an admin client of it.
struct Api {
    _server: ApiServer,
    client: ApiClient,
}

async fn api_of(node: &Node) -> Api {
    let (manager, wallet, listen) = (node.m().clone(), node.wallet.clone(), ([127, 0, 0, 1], 0));
    let server = serve_api(manager, wallet, SECRET.into(), Network::Testnet, listen.into());
    let server = server.await.unwrap();
    let token = auth::issue(&SECRET, &Permission::Admin.up_to());
    let client = ApiClient::new(format!("http://{}/rpc/v1", server.local_addr()), Some(token));
    Api { _server: server, client }
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
