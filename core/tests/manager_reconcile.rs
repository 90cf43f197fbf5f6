//! Reconciliation through two managers on a devnet with sled stores: the payer records the
//! combined voucher, the closed lanes and its answer durably — a restart answers the same
//! request with the same bytes and keeps the lanes closed — and the payee stores the
//! combined voucher in place of the ones it folds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{atto, within, Net};
use paych_core::chain::Chain;
use paych_core::crypto;
use paych_core::manager::ManagerError;
use paych_core::manager::MessageOutcome;
use paych_core::reconcile::{ReconcilePolicy, ReconcileStatus};
use paych_core::types::SignedVoucher;

fn encode(v: &SignedVoucher) -> Result<Vec<u8>, paych_core::types::EncodeError> {
    v.to_cbor()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payers_answer_and_closed_lanes_survive_a_restart() {
    let net = Net::new();
    let payer = net.node(10).await;
    let payee = net.node(10).await;
    let ch = payer.open_channel(payee.addr, atto(1_000_000)).await;

    // Lanes 0..3 redeemed once, then paid again.
    for lane in 0..3 {
        let v = payer.m().voucher_create(&ch, atto(100), lane).await.unwrap().voucher.unwrap();
        payee.m().voucher_add(&ch, &v, atto(0)).await.unwrap();
        let cid = payee.m().voucher_submit(&ch, &v, &[]).await.unwrap();
        let outcome = within("the submit to land", payee.m().wait_message(&cid)).await.unwrap();
        assert!(matches!(outcome, MessageOutcome::Landed { exit_code: 0, .. }), "{outcome:?}");
    }
    for lane in 0..3 {
        let v = payer.m().voucher_create(&ch, atto(300), lane).await.unwrap().voucher.unwrap();
        payee.m().voucher_add(&ch, &v, atto(0)).await.unwrap();
    }
    let draft = payee.m().reconcile_draft(&ch, &atto(40)).await.unwrap();
    assert_eq!(draft.vouchers.len(), 3);
    assert_eq!(draft.req_val, atto(900 - 40));
    let policy = ReconcilePolicy::default();
    let hash = crypto::blake2b_256(b"a request");

    // The payee's own manager pays from no such channel.
    let refusal = payee
        .m()
        .reconcile_as_payer(&hash, &draft.vouchers, &draft.req_val, &policy, encode)
        .await
        .unwrap_err();
    assert_eq!(refusal.status, ReconcileStatus::NotOurChannel);

    // A failure before the answer is recorded (here: encoding it) is `Internal`, and leaves
    // nothing behind: no lane closed, no answer recorded.
    let refusal = payer
        .m()
        .reconcile_as_payer(&hash, &draft.vouchers, &draft.req_val, &policy, |_| {
            Err::<Vec<u8>, _>("cannot encode")
        })
        .await
        .unwrap_err();
    assert_eq!(refusal.status, ReconcileStatus::Internal);
    let status = payer.m().status(&ch).await.unwrap();
    assert!(status.lanes.iter().all(|l| !l.closed), "{status:?}");
    assert!(payer.m().store().reconcile(&hash).unwrap().is_none());

    let answer = payer
        .m()
        .reconcile_as_payer(&hash, &draft.vouchers, &draft.req_val, &policy, encode)
        .await
        .unwrap();
    let combined = SignedVoucher::from_cbor(&answer).unwrap();
    assert_eq!(combined.amount, draft.req_val);
    // What the channel has spent: the combined amount stands for the lanes it folds.
    let funds = payer.m().available_funds(&ch).await.unwrap();
    assert_eq!(funds.voucher_redeemed, draft.req_val);

    payee.m().reconcile_accept(&ch, &draft.vouchers, &draft.req_val, &combined).await.unwrap();
    // A voucher folding something else is refused, and changes nothing.
    let mut wrong = combined.clone();
    wrong.amount = atto(1);
    let err = payee.m().reconcile_accept(&ch, &draft.vouchers, &draft.req_val, &wrong).await;
    assert!(matches!(err, Err(ManagerError::CombinedRejected(_))), "{err:?}");

    let payer = payer.stop().await.started().await;
    let payee = payee.stop().await.started().await;

    // The same request: the same bytes. Another one on those lanes: closed.
    let again = payer
        .m()
        .reconcile_as_payer(&hash, &draft.vouchers, &draft.req_val, &policy, encode)
        .await
        .unwrap();
    assert_eq!(again, answer);
    let other = crypto::blake2b_256(b"another request");
    let refusal = payer
        .m()
        .reconcile_as_payer(&other, &draft.vouchers, &draft.req_val, &policy, encode)
        .await
        .unwrap_err();
    assert_eq!(refusal.status, ReconcileStatus::LaneClosed);
    for lane in 0..3 {
        let err = payer.m().voucher_create(&ch, atto(1000), lane).await.unwrap_err();
        assert!(matches!(err, ManagerError::LaneClosed(l) if l == lane), "{err}");
        // A closed lane handed back is not leased again.
        payer.m().return_lane(&ch, lane).await.unwrap();
    }
    let leased = payer.m().lease_lane(&ch).await.unwrap();
    assert!(leased >= 3, "{leased}");
    let funds = payer.m().available_funds(&ch).await.unwrap();
    assert_eq!(funds.voucher_redeemed, draft.req_val);

    // The payee's best voucher is the combined one; redeemed, the channel owes req_val.
    assert_eq!(payee.m().voucher_best_spendable(&ch).await.unwrap(), vec![combined.clone()]);
    let cid = payee.m().voucher_submit(&ch, &combined, &[]).await.unwrap();
    let outcome = within("the combined voucher", payee.m().wait_message(&cid)).await.unwrap();
    assert!(matches!(outcome, MessageOutcome::Landed { exit_code: 0, .. }), "{outcome:?}");
    let state = net.devnet.channel(&ch).await.unwrap().state;
    assert_eq!(state.to_send, draft.req_val);
    assert!(payee.m().voucher_best_spendable(&ch).await.unwrap().is_empty());
}
