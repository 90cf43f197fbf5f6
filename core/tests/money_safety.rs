//! The payee's first promise, one way of breaking it per test: what it credits a payer (the
//! deltas `voucher_add` answers `Accepted` with) never exceeds what it can be paid on chain,
//! and an honest payer's valid voucher is never refused. Each test drives a real payer and
//! payee (managers over sled stores) on the in-process devnet, and measures what is
//! redeemable with the brute-force oracle of `redeemable/mod.rs`, never with the code under
//! test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod redeemable;

use paych_core::crypto;
use paych_core::manager::{AddOutcome, AddVoucherError, MessageOutcome};
use paych_core::redemption::IntakePolicy;
use paych_core::types::{
    paych_method, ChainEpoch, Merge, ModVerifyParams, SignedVoucher, TokenAmount, METHOD_SEND,
    SETTLE_DELAY,
};
use paych_core::wallet::Wallet;
use paych_testkit::amounts::atto;
use paych_testkit::keys::{address, key};
use redeemable::{carry_out, credit, idle_settler, view_of, World};

/// Asserts that `outcome` credits the payer nothing.
fn assert_credits_nothing(outcome: &Result<AddOutcome, AddVoucherError>, what: &str) {
    assert!(credit(outcome).is_zero(), "{what}: credited {outcome:?}");
}

/// Asserts that `outcome` accepts the voucher, crediting `delta` attoFIL.
fn assert_accepted(outcome: &Result<AddOutcome, AddVoucherError>, delta: u64, what: &str) {
    assert!(
        matches!(outcome, Ok(AddOutcome::Accepted { delta: d }) if *d == atto(delta)),
        "{what}: {outcome:?}"
    );
}

/// Adds every voucher in turn and answers the sum credited.
async fn add_all(w: &World, vouchers: &[SignedVoucher]) -> TokenAmount {
    let mut credited = TokenAmount::default();
    for v in vouchers {
        let outcome = w.add(v).await;
        credited += credit(&outcome);
    }
    credited
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_credits_nonce_zero_vouchers_on_several_lanes_no_more_than_the_channel_holds() {
    let w = World::new(100).await;
    let vouchers: Vec<_> = (0..3).map(|lane| w.signed(w.voucher(lane, 0, 100))).collect();
    let credited = add_all(&w, &vouchers).await;
    let redeemable = w.redeemable().await;
    assert_eq!(redeemable.to_send, atto(100), "the channel holds 100");
    assert!(credited <= redeemable.to_send, "credited {credited:?} on a channel holding 100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_credits_nothing_for_a_lane_a_merge_emptied() {
    let w = World::new(1000).await;
    let mut merging = w.voucher(5, 1, 10);
    merging.merges = vec![Merge { lane: 3, nonce: 2 }];
    let vouchers =
        [w.signed(w.voucher(3, 1, 10)), w.signed(merging), w.signed(w.voucher(3, 3, 10))];
    let credited = add_all(&w, &vouchers).await;
    let redeemable = w.redeemable().await;
    assert_eq!(redeemable.to_send, atto(10));
    assert!(credited <= redeemable.to_send, "credited {credited:?}, redeemable 10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_answers_a_resent_voucher_already_held_and_credits_it_once() {
    let w = World::new(1000).await;
    let first = w.signed(w.voucher(0, 1, 50));
    let second = w.signed(w.voucher(0, 2, 60));
    assert_eq!(credit(&w.add(&first).await), atto(50));
    let again = w.add(&first).await;
    assert!(matches!(again, Ok(AddOutcome::AlreadyHeld)), "{again:?}");
    assert_eq!(credit(&w.add(&second).await), atto(10));
    for v in [&first, &second] {
        assert_credits_nothing(&w.add(v).await, "a voucher sent again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_credits_nothing_for_a_voucher_expiring_at_the_head() {
    let w = World::new(1000).await;
    let mut v = w.voucher(0, 1, 100);
    // Valid at the head, but a message sent now runs at head + 1 at the earliest.
    v.time_lock_max = w.head().await;
    let outcome = w.add(&w.signed(v)).await;
    assert_credits_nothing(&outcome, "a voucher expiring at the head");
    assert!(w.redeemable().await.to_send.is_zero());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_credits_nothing_one_epoch_before_the_channel_settles() {
    let w = World::new(1000).await;
    let settling_at = w.payer_settles().await;
    let head = w.head().await;
    w.mine((settling_at - 1 - head) as u64).await;
    assert_eq!(w.head().await, settling_at - 1);
    let outcome = w.add(&w.signed(w.voucher(0, 1, 100))).await;
    assert_credits_nothing(&outcome, "a voucher that can only land at settling_at");
    assert!(w.redeemable().await.to_send.is_zero());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_credits_nothing_for_a_voucher_that_postpones_settlement_without_bound() {
    let w = World::new(1000).await;
    let mut v = w.voucher(0, 1, 100);
    v.min_settle_height = ChainEpoch::MAX / 2;
    let outcome = w.add(&w.signed(v)).await;
    assert_credits_nothing(&outcome, "a voucher whose channel could never be collected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_credits_nothing_for_an_extra_call_that_passes_only_in_its_dry_run() {
    let w = World::new(1000).await;
    // A plain send to a fresh key address: the chain creates its account whoever calls, so
    // this one redeems — but its worth depends on a call, and the payee takes none.
    let fresh = address(&key(77));
    let mut to_nobody = w.voucher(0, 1, 100);
    to_nobody.extra = Some(ModVerifyParams { actor: fresh, method: METHOD_SEND, data: vec![] });
    let to_nobody = w.signed(to_nobody);
    // A dry run of the channel's Settle from the payee passes; the channel calling itself
    // with any method but a plain send fails.
    let mut settle = w.voucher(1, 1, 100);
    settle.extra =
        Some(ModVerifyParams { actor: w.ch, method: paych_method::SETTLE, data: vec![] });
    let settle = w.signed(settle);

    for (v, what) in [(&to_nobody, "extra calling a fresh address"), (&settle, "extra settling")] {
        let outcome = w.add(v).await;
        assert_credits_nothing(&outcome, what);
    }
    // The chain agrees about the Settle call: made by the channel, it fails.
    let held = vec![settle.clone()];
    let view = view_of(&w.net.devnet, &w.ch, &held).await;
    let plan = redeemable::Plan {
        steps: held.iter().map(|v| (v.clone(), view.head + 1)).collect(),
        to_send: TokenAmount::default(),
    };
    let codes = carry_out(&w.net.devnet, w.payee.wallet.as_ref(), w.payee.addr, w.ch, &plan).await;
    assert!(codes.iter().all(|c| !c.is_success()), "{codes:?}");
    assert!(w.to_send().await.is_zero());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_credits_nothing_for_vouchers_the_chain_never_pays_it() {
    let w = World::new(1000).await;
    let other = w.payer.open_channel(w.payee.addr, atto(1000)).await;
    let head = w.head().await;
    let mut for_other = w.voucher(0, 1, 100);
    for_other.channel_addr = other;
    let mut hash_locked = w.voucher(1, 1, 100);
    hash_locked.secret_hash = crypto::blake2b_256(b"a secret the payee never learns").to_vec();
    let mut too_late = w.voucher(2, 1, 100);
    // Past the earliest settlement a settle sent now gives: the payer can cut it off.
    too_late.time_lock_min = head + 1 + SETTLE_DELAY;
    let cases = [
        (w.signed(for_other), "a voucher for another channel"),
        (
            paych_testkit::keys::sign_as_stranger(w.voucher(3, 1, 100)),
            "a voucher signed by a stranger",
        ),
        (w.signed(hash_locked), "a voucher locked by a secret the payee does not hold"),
        (w.signed(too_late), "a voucher that cannot land before a settlement"),
        (w.signed(w.voucher(4, 1, 1001)), "a voucher above the channel's balance"),
    ];
    for (v, what) in &cases {
        assert_credits_nothing(&w.add(v).await, what);
    }
    assert!(w.redeemable().await.to_send.is_zero());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_accepts_a_valid_voucher_for_the_room_left_after_a_reconciliation() {
    let w = World::new(1000).await;
    let (payer, payee) = (w.payer.m(), w.payee.m());
    for lane in 0..2 {
        let v = payer.voucher_create(&w.ch, atto(100), lane).await.unwrap().voucher.unwrap();
        payee.voucher_add(&w.ch, &v, atto(0)).await.unwrap();
        let cid = payee.voucher_submit(&w.ch, &v, &[]).await.unwrap();
        w.mine(1).await;
        let outcome = payee.wait_message(&cid).await.unwrap();
        assert!(matches!(outcome, MessageOutcome::Landed { exit_code: 0, .. }), "{outcome:?}");
    }
    for lane in 0..2 {
        let v = payer.voucher_create(&w.ch, atto(300), lane).await.unwrap().voucher.unwrap();
        payee.voucher_add(&w.ch, &v, atto(0)).await.unwrap();
    }
    let hash = crypto::blake2b_256(b"fold lanes 0 and 1");
    paych_testkit::channel::fold_lanes(payer, payee, &w.ch, &atto(0), &hash).await.unwrap();

    // The channel promised 600 of its 1000: the payer signs 400 more on a new lane.
    let room = payer.voucher_create(&w.ch, atto(400), 2).await.unwrap().voucher.unwrap();
    let what = "a valid voucher for the remaining room";
    assert_accepted(&payee.voucher_add(&w.ch, &room, atto(0)).await, 400, what);
    assert_eq!(w.redeemable().await.to_send, atto(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_credits_a_new_lane_all_it_adds_when_the_lanes_a_reconciliation_folded_overdraw_with_it(
) {
    let w = World::new(1000).await;
    let (payer, payee) = (w.payer.m(), w.payee.m());
    // Lanes 0 to 3 each pay 1, redeemed on chain, then rise to 2, 18, 2 and 2.
    for (lane, top) in [(0, 2), (1, 18), (2, 2), (3, 2)] {
        let v = payer.voucher_create(&w.ch, atto(1), lane).await.unwrap().voucher.unwrap();
        payee.voucher_add(&w.ch, &v, atto(0)).await.unwrap();
        let cid = payee.voucher_submit(&w.ch, &v, &[]).await.unwrap();
        w.mine(1).await;
        let outcome = payee.wait_message(&cid).await.unwrap();
        assert!(matches!(outcome, MessageOutcome::Landed { exit_code: 0, .. }), "{outcome:?}");
        let v = payer.voucher_create(&w.ch, atto(top), lane).await.unwrap().voucher.unwrap();
        payee.voucher_add(&w.ch, &v, atto(0)).await.unwrap();
    }
    assert_eq!(w.redeemable().await.to_send, atto(24));
    // A reconciliation at 8 per message saved folds them into a combined voucher of 12 (not
    // submitted): the payer then has 988 left and pays 978 of it on a new lane.
    let hash = crypto::blake2b_256(b"fold lanes 0 to 3");
    paych_testkit::channel::fold_lanes(payer, payee, &w.ch, &atto(8), &hash).await.unwrap();
    let lane = payer.allocate_lane(&w.ch).await.unwrap();
    let room = payer.voucher_create(&w.ch, atto(978), lane).await.unwrap().voucher.unwrap();
    // The combined voucher and the new lane reach 990; the old lanes 0 and 1 with the new
    // lane reach all 1000 the channel holds, and the payee can redeem that.
    let before = w.redeemable().await.to_send;
    assert_accepted(&payee.voucher_add(&w.ch, &room, atto(0)).await, 976, "the new lane");
    let after = w.redeemable().await;
    assert_eq!(after.to_send, atto(1000));
    assert_eq!(after.to_send - before, atto(976), "the oracle's measure of the new lane");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settler_redeems_a_good_voucher_below_an_unredeemable_top_voucher() {
    let w = World::new(1000).await;
    let good = w.signed(w.voucher(0, 1, 50));
    assert_eq!(credit(&w.add(&good).await), atto(50));
    // A higher voucher on the lane that expires soon (whatever the payee answers for it).
    let mut expiring = w.voucher(0, 2, 60);
    expiring.time_lock_max = w.head().await + 2;
    let _ = w.add(&w.signed(expiring)).await;
    w.lock_runs_out_and_payer_settles(5).await;
    assert_eq!(w.to_send().await, atto(50), "the good voucher below the expired one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settler_pays_the_payee_its_credit_when_the_lanes_tops_overdraw_the_channel() {
    // The payer signs more than the channel holds: each lane's top voucher alone fits, both
    // together do not; lane 0's lower voucher with lane 1's fits exactly.
    let w = World::new(150).await;
    let vouchers = [
        w.signed(w.voucher(0, 1, 50)),
        w.signed(w.voucher(0, 2, 100)),
        w.signed(w.voucher(1, 1, 100)),
    ];
    let credited = add_all(&w, &vouchers).await;
    let redeemable = w.redeemable().await;
    assert!(credited <= redeemable.to_send, "credited {credited:?}, {redeemable:?}");
    w.payer_settles().await;
    w.settler_passes(3).await;
    let paid = w.to_send().await;
    assert!(paid >= credited, "the settler redeemed {paid:?} of a credit of {credited:?}");
    assert_eq!(paid, redeemable.to_send, "the settler redeems the best plan");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_submit_leaves_the_lower_vouchers_of_its_lane_submittable() {
    // A payee without funds: its submit is refused by the message pool.
    let w = World::with_payee_funds(1000, 0).await;
    let (low, high) = (w.signed(w.voucher(0, 1, 50)), w.signed(w.voucher(0, 2, 60)));
    for v in [&low, &high] {
        w.add(v).await.unwrap();
    }
    let refused = w.payee.m().voucher_submit(&w.ch, &high, &[]).await;
    assert!(refused.is_err(), "a payee without funds for gas: {refused:?}");

    paych_testkit::devnet::fund(&w.net.devnet, true, &w.payee.addr, TokenAmount::from_whole(1))
        .await;
    let cid = w.payee.m().voucher_submit(&w.ch, &low, &[]).await;
    assert!(cid.is_ok(), "the lower voucher after the refused submit: {cid:?}");
    w.mine(1).await;
    assert_eq!(w.to_send().await, atto(50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_credits_vouchers_once_under_either_address_of_a_channel_first_named_by_id() {
    let w = World::new(1000).await;
    let first = w.signed(w.voucher(0, 1, 100));
    let second = w.signed(w.voucher(0, 2, 150));
    let m = w.payee.m();
    // Learned under its ID address, then named by its robust address.
    assert_eq!(credit(&m.voucher_add(&w.id, &first, atto(0)).await), atto(100));
    let again = m.voucher_add(&w.ch, &first, atto(0)).await;
    assert!(matches!(again, Ok(AddOutcome::AlreadyHeld)), "the same voucher again: {again:?}");
    let by_robust = m.voucher_add(&w.ch, &second, atto(0)).await;
    assert_accepted(&by_robust, 50, "the next voucher under the robust address");
    assert_eq!(w.redeemable().await.to_send, atto(150));
}

/// The oracle itself, against the chain: a plan it finds lands, message by message, and
/// pays what it said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oracle_plans_land_on_the_devnet_and_pay_what_they_promise() {
    let w = World::new(1000).await;
    let mut merging = w.voucher(5, 1, 300);
    merging.merges = vec![Merge { lane: 3, nonce: 2 }];
    let mut late = w.voucher(6, 1, 40);
    late.time_lock_min = w.head().await + 4;
    let held = vec![
        w.signed(merging),
        w.signed(w.voucher(3, 1, 100)),
        w.signed(w.voucher(3, 3, 150)),
        w.signed(late),
        paych_testkit::keys::sign_as_stranger(w.voucher(7, 1, 500)),
    ];
    let view = view_of(&w.net.devnet, &w.ch, &held).await;
    let plan = redeemable::redeemable(&view, &held);
    // Lane 3 at 100 (n1); lane 5 merging it at nonce 2 (300 in all, lane 3 keeps its 100
    // redeemed); lane 3 n3 adds 50; the late voucher 40; the stranger's nothing.
    assert_eq!(plan.to_send, atto(390), "{plan:#?}");
    let codes = carry_out(&w.net.devnet, w.payee.wallet.as_ref(), w.payee.addr, w.ch, &plan).await;
    assert!(codes.iter().all(|c| c.is_success()), "{codes:?}");
    assert_eq!(w.to_send().await, atto(390));
}

/// A payee that takes time-locked vouchers, with a landing margin of `margin` epochs.
async fn taking_time_locks(balance: u64, margin: ChainEpoch) -> World {
    let mut config = idle_settler();
    config.intake =
        IntakePolicy { accept_time_locks: true, landing_margin: margin, ..IntakePolicy::default() };
    World::with_payee(balance, 10, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settler_falls_back_below_a_held_time_locked_top_voucher_that_ran_out() {
    let w = taking_time_locks(1000, 2).await;
    let good = w.signed(w.voucher(0, 1, 50));
    assert_eq!(credit(&w.add(&good).await), atto(50));
    let mut expiring = w.voucher(0, 2, 60);
    expiring.time_lock_max = w.head().await + 10;
    let expiring = w.signed(expiring);
    assert_eq!(credit(&w.add(&expiring).await), atto(10), "held and credited while it can land");
    // Its lock runs out unredeemed; the payer settles.
    w.lock_runs_out_and_payer_settles(20).await;
    assert_eq!(w.to_send().await, atto(50), "the good voucher below the expired one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settler_redeems_a_credited_time_locked_voucher_before_its_lock() {
    let w = taking_time_locks(1000, 3).await;
    let mut locked = w.voucher(0, 1, 100);
    let lock = w.head().await + 30;
    locked.time_lock_max = lock;
    assert_eq!(credit(&w.add(&w.signed(locked)).await), atto(100));
    // The channel is not settling: only the lock makes it urgent.
    while w.head().await < lock {
        w.payee.m().settler_pass().await.unwrap();
        w.mine(1).await;
    }
    assert_eq!(w.to_send().await, atto(100), "redeemed before epoch {lock}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_the_settler_cannot_serve_does_not_stop_it_serving_the_others() {
    let w = World::new(1000).await;
    // A second inbound channel, to a key of the payee's with no funds for gas, learned first.
    let poor = w.payee.wallet.new_key().unwrap();
    paych_testkit::devnet::fund(&w.net.devnet, true, &poor, TokenAmount::from_atto(1u8)).await;
    let other = w.payer.open_channel(poor, atto(1000)).await;
    let on_other = w.payer.sign(SignedVoucher::new(other, 0, 1, atto(70)));
    w.payee.m().voucher_add(&other, &on_other, atto(0)).await.unwrap();
    assert_eq!(credit(&w.add(&w.signed(w.voucher(0, 1, 40))).await), atto(40));
    for ch in [other, w.ch] {
        w.payer.m().settle(&ch).await.unwrap();
    }
    w.mine(1).await;
    let pass = w.payee.m().settler_pass().await;
    assert!(pass.is_err(), "the poor channel's submit fails: {pass:?}");
    w.mine(1).await;
    assert_eq!(w.to_send().await, atto(40), "the other channel was still served");
}
