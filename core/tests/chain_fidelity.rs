//! Where paych must behave as the real Filecoin chain does: signatures the FVM accepts,
//! the runtime's mapping of an `extra` callee's exit code, and `Collect`. Each scenario runs
//! the in-process devnet and, where a payee is involved, a real manager on it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod harness;

use common::{high_s_twin, with_high_s};
use harness::{atto, within, Net, DEADLINE};
use paych_core::chain::Chain;
use paych_core::crypto;
use paych_core::manager::AddOutcome;
use paych_core::types::{Message, SignedMessage, TokenAmount, METHOD_SEND};

// ---------------------------------------------------------------------------------------
// High-s signatures

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_accepts_and_the_devnet_redeems_a_high_s_voucher() {
    let net = Net::new();
    let payer = net.node(10).await;
    let payee = net.node(10).await;
    let ch = payer.open_channel(payee.addr, atto(1000)).await;
    let lane = payer.m().allocate_lane(&ch).await.unwrap();
    let voucher = payer.m().voucher_create(&ch, atto(400), lane).await.unwrap().voucher.unwrap();
    let twin = with_high_s(voucher.clone());
    assert_ne!(twin, voucher);

    let outcome = payee.m().voucher_add(&ch, &twin, atto(400)).await.unwrap();
    assert_eq!(outcome, AddOutcome::Accepted { delta: atto(400) });

    let next = payer.m().voucher_create(&ch, atto(600), lane).await.unwrap().voucher.unwrap();
    let next = with_high_s(next);
    payee.m().voucher_check_valid(&ch, &next).await.unwrap();
    let outcome = payee.m().voucher_add(&ch, &next, atto(200)).await.unwrap();
    assert_eq!(outcome, AddOutcome::Accepted { delta: atto(200) });

    let cid = payee.m().voucher_submit(&ch, &next, &[]).await.unwrap();
    let landed = within("the submit to land", net.devnet.wait(&cid, 0, DEADLINE)).await.unwrap();
    assert!(landed.receipt.is_ok(), "exit {}", landed.receipt.exit_code);
    assert_eq!(net.devnet.channel(&ch).await.unwrap().state.to_send, atto(600));
}

#[tokio::test]
async fn devnet_accepts_a_message_with_a_high_s_signature() {
    let net = Net::manual();
    let key = crypto::secret_key(&[7; 32]).unwrap();
    let from = crypto::secp_address(&crypto::public_key(&key));
    harness::fund(&net.devnet, true, &from, TokenAmount::from_whole(1)).await;
    let to = harness::stranger_address();
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
