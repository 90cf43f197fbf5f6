//! Where paych must behave as the real Filecoin chain does: signatures the FVM accepts,
//! the runtime's mapping of an `extra` callee's exit code, and `Collect`. Each scenario runs
//! the in-process devnet and, where a payee is involved, a real manager on it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paych_core::chain::{ActorKind, Chain, Receipt};
use paych_core::crypto;
use paych_core::manager::{AddOutcome, AddVoucherError, VoucherSpec};
use paych_core::redemption::PolicyRefusal;
use paych_core::types::{
    paych_method, Address, ConstructorParams, ExecParams, ExecReturn, Message, ModVerifyParams,
    Signature, SignatureType, SignedMessage, SignedVoucher, TokenAmount, UpdateChannelStateParams,
    INIT_ACTOR_ID, INIT_EXEC_METHOD, METHOD_SEND,
};
use paych_core::wallet::Wallet;
use paych_testkit::amounts::atto;
use paych_testkit::deadline::{within, DEADLINE};
use paych_testkit::devnet::{Net, Node};
use paych_testkit::keys::{address, high_s_twin, key, with_high_s};

/// A payer and a payee on a devnet that mines by itself, with a channel of 1000 attoFIL
/// between them and a lane for the payer's vouchers.
async fn payer_and_payee() -> (Net, Node, Node, Address, u64) {
    let net = Net::new();
    let (payer, payee, ch) = net.channel(10, 10, atto(1000)).await;
    let lane = payer.m().allocate_lane(&ch).await.unwrap();
    (net, payer, payee, ch, lane)
}

/// The payer's voucher for `amount` on `lane` with an `extra` call.
async fn voucher_with_extra(
    payer: &Node,
    ch: &Address,
    lane: u64,
    amount: u64,
    extra: ModVerifyParams,
) -> SignedVoucher {
    let spec = VoucherSpec { amount: atto(amount), extra: Some(extra), ..VoucherSpec::default() };
    payer.m().voucher_create_with(ch, lane, spec).await.unwrap().voucher.unwrap()
}

/// Submits `voucher` to the channel in a message of the payee's own making (past the
/// payee's validation), and answers its receipt.
async fn submit_raw(payee: &Node, ch: &Address, voucher: SignedVoucher) -> Receipt {
    let params = UpdateChannelStateParams { sv: voucher, secret: Vec::new() };
    let params = fvm_ipld_encoding::to_vec(&params).unwrap();
    send_raw(payee, *ch, TokenAmount::default(), paych_method::UPDATE_CHANNEL_STATE, params).await
}

/// Sends a message of `node`'s making and answers its receipt once it has landed.
async fn send_raw(
    node: &Node,
    to: Address,
    value: TokenAmount,
    method: u64,
    params: Vec<u8>,
) -> Receipt {
    let nonce = node.net.next_nonce(&node.addr).await.unwrap();
    let message = Message::new(node.addr, to, nonce, value, method, params);
    let message = node.net.estimate_gas(message).await.unwrap();
    let signature = node.wallet.sign(&node.addr, &message.cid().unwrap().to_bytes()).unwrap();
    let cid = node.net.push(&SignedMessage { message, signature }).await.unwrap();
    within("the message to land", node.net.wait(&cid, 0, DEADLINE)).await.unwrap().receipt
}

/// The actor exit code the payee's validation refused `voucher` with.
async fn refused_with(payee: &Node, ch: &Address, voucher: &SignedVoucher) -> u32 {
    match payee.m().voucher_add(ch, voucher, atto(0)).await {
        Err(AddVoucherError::InvalidVoucher(e)) => e.exit_code().value(),
        other => panic!("the payee must refuse the voucher, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// High-s signatures

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_accepts_and_the_devnet_redeems_a_high_s_voucher() {
    let net = Net::new();
    let (payer, payee, ch) = net.channel(10, 10, atto(1000)).await;
    let lane = payer.m().allocate_lane(&ch).await.unwrap();
    let voucher = payer.create_voucher(&ch, atto(400), lane).await;
    let twin = with_high_s(voucher.clone());
    assert_ne!(twin, voucher);

    let outcome = payee.m().voucher_add(&ch, &twin, atto(400)).await.unwrap();
    assert_eq!(outcome, AddOutcome::Accepted { delta: atto(400) });

    let next = payer.create_voucher(&ch, atto(600), lane).await;
    let next = with_high_s(next);
    payee.m().voucher_check_valid(&ch, &next).await.unwrap();
    let outcome = payee.m().voucher_add(&ch, &next, atto(200)).await.unwrap();
    assert_eq!(outcome, AddOutcome::Accepted { delta: atto(200) });

    let cid = payee.m().voucher_submit(&ch, &next, &[]).await.unwrap();
    let landed = within("the submit to land", net.devnet.wait(&cid, 0, DEADLINE)).await.unwrap();
    assert!(landed.receipt.is_ok(), "exit {}", landed.receipt.exit_code);
    assert_eq!(net.devnet.channel(&ch).await.unwrap().state.to_send, atto(600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_accepts_and_the_devnet_redeems_a_voucher_whose_secp_signature_is_labelled_bls() {
    let (net, payer, payee, ch, lane) = payer_and_payee().await;
    let mut voucher = payer.create_voucher(&ch, atto(300), lane).await;
    let bytes = voucher.signature.take().unwrap().bytes;
    voucher.signature = Some(Signature { sig_type: SignatureType::BLS, bytes });
    // It travels as its CBOR does.
    let voucher = SignedVoucher::from_base64url(&voucher.to_base64url().unwrap()).unwrap();

    let outcome = payee.m().voucher_add(&ch, &voucher, atto(300)).await.unwrap();
    assert_eq!(outcome, AddOutcome::Accepted { delta: atto(300) });
    let receipt = submit_raw(&payee, &ch, voucher).await;
    assert!(receipt.is_ok(), "exit {}", receipt.exit_code);
    assert_eq!(net.devnet.channel(&ch).await.unwrap().state.to_send, atto(300));
}

#[tokio::test]
async fn devnet_accepts_a_message_with_a_high_s_signature() {
    let net = Net::manual();
    let key = key(7);
    let from = address(&key);
    paych_testkit::devnet::fund(&net.devnet, true, &from, TokenAmount::from_whole(1)).await;
    let to = paych_testkit::keys::stranger_address();
    let message = Message::new(from, to, 0, atto(5), METHOD_SEND, Vec::new());
    let message = net.devnet.estimate_gas(message).await.unwrap();
    let signed = crypto::sign_message(&key, message).unwrap();
    let twin = SignedMessage { signature: high_s_twin(&signed.signature), ..signed };

    let cid = net.devnet.push(&twin).await.unwrap();
    net.mine(1);
    let landed = net.devnet.wait(&cid, 0, DEADLINE).await.unwrap();
    assert!(landed.receipt.is_ok());
    assert_eq!(net.devnet.actor(&to).await.unwrap().unwrap().balance, atto(5));
}

// ---------------------------------------------------------------------------------------
// The `extra` call's exit code

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_extra_callee_fails_the_voucher_with_exit_23_at_the_payee_and_on_chain() {
    let (_net, payer, payee, ch, lane) = payer_and_payee().await;
    let missing = [Address::new_id(4242), Address::new_actor(b"no such actor")];
    for (i, actor) in missing.into_iter().enumerate() {
        let extra = ModVerifyParams { actor, method: METHOD_SEND, data: Vec::new() };
        let voucher = voucher_with_extra(&payer, &ch, lane, 100 * (i as u64 + 1), extra).await;
        assert_eq!(refused_with(&payee, &ch, &voucher).await, 23, "callee {actor}");
        assert_eq!(submit_raw(&payee, &ch, voucher).await.exit_code.value(), 23, "callee {actor}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_callee_user_exit_code_is_passed_through_at_the_payee_and_on_chain() {
    let (_net, payer, payee, ch, lane) = payer_and_payee().await;
    // An account actor does not handle method 5.
    let extra = ModVerifyParams { actor: payer.addr, method: 5, data: Vec::new() };
    let voucher = voucher_with_extra(&payer, &ch, lane, 100, extra).await;
    assert_eq!(refused_with(&payee, &ch, &voucher).await, 22);
    assert_eq!(submit_raw(&payee, &ch, voucher).await.exit_code.value(), 22);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_send_to_a_key_address_without_an_actor_creates_its_account_and_redeems() {
    let (net, payer, payee, ch, lane) = payer_and_payee().await;
    let newcomer = paych_testkit::keys::stranger_address();
    let extra = ModVerifyParams { actor: newcomer, method: METHOD_SEND, data: Vec::new() };
    let voucher = voucher_with_extra(&payer, &ch, lane, 100, extra).await;
    assert_passes_the_actor_but_not_the_policy(&payee, &ch, &voucher).await;

    let receipt = submit_raw(&payee, &ch, voucher).await;
    assert!(receipt.is_ok(), "exit {}", receipt.exit_code);
    assert_eq!(net.devnet.channel(&ch).await.unwrap().state.to_send, atto(100));
    assert!(net.devnet.actor(&newcomer).await.unwrap().is_some(), "its account exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_dry_runs_the_extra_call_as_the_channel_makes_it_not_as_itself() {
    let (net, payer, payee, ch, lane) = payer_and_payee().await;
    // Settle succeeds when the payee calls it, but the actor makes the extra call from the
    // channel, which is no party to itself: on chain the voucher cannot be redeemed.
    let extra = ModVerifyParams { actor: ch, method: paych_method::SETTLE, data: Vec::new() };
    let voucher = voucher_with_extra(&payer, &ch, lane, 100, extra).await;
    assert_eq!(refused_with(&payee, &ch, &voucher).await, 18);
    assert!(!submit_raw(&payee, &ch, voucher).await.is_ok());
    let channel = net.devnet.channel(&ch).await.unwrap().state;
    assert_eq!((channel.to_send, channel.settling_at), (atto(0), 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_makes_the_extra_call_as_the_payee_dry_ran_it() {
    let (net, payer, payee, ch, lane) = payer_and_payee().await;
    // The Init actor lets any caller create a payment channel: the channel may.
    let code = net.devnet.actor_code(ActorKind::PaymentChannel).await.unwrap();
    let ctor = ConstructorParams { from: payer.addr, to: payee.addr };
    let exec = ExecParams {
        code_cid: code,
        constructor_params: fvm_ipld_encoding::to_vec(&ctor).unwrap(),
    };
    let extra = ModVerifyParams {
        actor: Address::new_id(INIT_ACTOR_ID),
        method: INIT_EXEC_METHOD,
        data: fvm_ipld_encoding::to_vec(&exec).unwrap(),
    };
    let voucher = voucher_with_extra(&payer, &ch, lane, 100, extra).await;
    assert_passes_the_actor_but_not_the_policy(&payee, &ch, &voucher).await;

    let receipt = submit_raw(&payee, &ch, voucher).await;
    assert!(receipt.is_ok(), "exit {}", receipt.exit_code);
    assert_eq!(net.devnet.channel(&ch).await.unwrap().state.to_send, atto(100));
}

// ---------------------------------------------------------------------------------------
// The constructor's parties

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_constructs_a_channel_to_any_existing_actor_as_the_chain_does() {
    let (net, payer, _payee, ch, _) = payer_and_payee().await;
    let code = net.devnet.actor_code(ActorKind::PaymentChannel).await.unwrap();
    let exec = |to: Address| {
        let ctor = fvm_ipld_encoding::to_vec(&ConstructorParams { from: payer.addr, to }).unwrap();
        fvm_ipld_encoding::to_vec(&ExecParams { code_cid: code, constructor_params: ctor }).unwrap()
    };
    let init = Address::new_id(INIT_ACTOR_ID);
    // A payment channel is no account, yet it may be a party.
    let receipt = send_raw(&payer, init, atto(10), INIT_EXEC_METHOD, exec(ch)).await;
    assert!(receipt.is_ok(), "exit {}", receipt.exit_code);
    let created: ExecReturn = paych_core::types::decode::decode(&receipt.return_data).unwrap();
    let state = net.devnet.channel(&created.robust_address).await.unwrap().state;
    assert_eq!(state.to, net.devnet.lookup_id(&ch).await.unwrap().unwrap());

    let receipt =
        send_raw(&payer, init, atto(10), INIT_EXEC_METHOD, exec(Address::new_id(4242))).await;
    assert_eq!(receipt.exit_code.value(), 17, "an ID address without an actor");
    let nobody = Address::new_actor(b"nobody");
    let receipt = send_raw(&payer, init, atto(10), INIT_EXEC_METHOD, exec(nobody)).await;
    assert_eq!(receipt.exit_code.value(), 23, "an actor address without an actor");
}

/// The payee's validation runs every actor rule — the `extra` call's dry run from the channel
/// included — before its intake policy; a voucher refused as message locked passed them all.
/// (On the payment path the policy refuses every `extra` voucher, as Lotus does: what the
/// call does when the channel makes it cannot be known beforehand.)
async fn assert_passes_the_actor_but_not_the_policy(
    payee: &Node,
    ch: &Address,
    voucher: &SignedVoucher,
) {
    let outcome = payee.m().voucher_add(ch, voucher, atto(100)).await;
    assert!(
        matches!(outcome, Err(AddVoucherError::VoucherRefused(PolicyRefusal::MessageLocked(_)))),
        "{outcome:?}"
    );
}
