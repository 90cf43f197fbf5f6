//! Reconciliation as pure functions, checked against the actor rules: the combined voucher
//! the payer plans redeems exactly `req_val`, and no original voucher can be redeemed after.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{atto, params, signed_by, Setup, CHANNEL_ID};
use paych_core::actor::{self, ActorError, ChannelState};
use paych_core::reconcile::*;
use paych_core::types::{Address, LaneState, SignedVoucher, TokenAmount};

/// A payer that issued two vouchers on each of lanes 0..4, of which the first of each lane
/// was redeemed on chain.
struct World {
    s: Setup,
    state: ChannelState,
    issued: BTreeMap<(u64, u64), SignedVoucher>,
    closed: BTreeSet<u64>,
    addresses: Vec<Address>,
}

impl World {
    fn new() -> Self {
        let s = Setup::new(1_000_000);
        let mut state = s.channel();
        let mut issued = BTreeMap::new();
        for lane in 0..4u64 {
            for nonce in 1..=2u64 {
                let v = signed_by(s.voucher(lane, nonce, 1000 * nonce * (lane + 1)), &s.payer.key);
                issued.insert((lane, nonce), v);
            }
            let first = issued[&(lane, 1)].clone();
            actor::update_channel_state(&mut state, &s.env, &params(first)).unwrap();
        }
        let addresses = vec![Address::new_id(CHANNEL_ID), s.channel_robust];
        World { s, state, issued, closed: BTreeSet::new(), addresses }
    }

    fn view(&self) -> PayerView<'_> {
        PayerView {
            addresses: &self.addresses,
            settling: false,
            issued: &self.issued,
            closed: &self.closed,
            chain_lanes: &self.state.lanes,
        }
    }

    fn latest(&self) -> Vec<SignedVoucher> {
        (0..4u64).map(|lane| self.issued[&(lane, 2)].clone()).collect()
    }
}

fn status(r: Result<CombinedPlan, Refusal>) -> ReconcileStatus {
    r.err().map(|e| e.status).unwrap_or(ReconcileStatus::Success)
}

#[test]
fn combined_voucher_redeems_exactly_req_val_and_closes_every_lane() {
    let mut w = World::new();
    let vouchers = w.latest();
    let sum: TokenAmount = vouchers.iter().map(|v| v.amount.clone()).sum();
    let fee = atto(100);
    let req_val = price_request(&vouchers, &fee);
    assert_eq!(req_val, &sum - atto(150), "half of three saved fees");
    let plan = plan_combined(&w.view(), &vouchers, &req_val, &ReconcilePolicy::default()).unwrap();
    assert_eq!(plan.voucher.lane, 0);
    assert_eq!(plan.voucher.nonce, 3);
    assert_eq!(plan.closes, vec![0, 1, 2, 3]);
    assert!(plan.voucher.merges.iter().all(|m| m.nonce == 3));
    check_combined(&vouchers, &req_val, &plan.voucher).unwrap();

    let combined = signed_by(plan.voucher.clone(), &w.s.payer.key);
    let redeemed_before: TokenAmount = w.state.to_send.clone();
    actor::update_channel_state(&mut w.state, &w.s.env, &params(combined)).unwrap();
    // The four lanes now pay req_val in all (to_send held only these lanes' first vouchers).
    assert_eq!(w.state.to_send, req_val);
    assert!(redeemed_before < req_val);
    // No original voucher can be redeemed afterwards.
    for v in w.issued.values() {
        let err = actor::update_channel_state(&mut w.state.clone(), &w.s.env, &params(v.clone()))
            .unwrap_err();
        assert!(matches!(err, ActorError::StaleNonce { .. }), "{err:?}");
    }
}

#[test]
fn the_same_request_plans_the_same_voucher() {
    let w = World::new();
    let vouchers = w.latest();
    let req_val = price_request(&vouchers, &atto(100));
    let a = plan_combined(&w.view(), &vouchers, &req_val, &ReconcilePolicy::default()).unwrap();
    let b = plan_combined(&w.view(), &vouchers, &req_val, &ReconcilePolicy::default()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn every_refusal_status_is_reached() {
    let w = World::new();
    let vouchers = w.latest();
    let sum: TokenAmount = vouchers.iter().map(|v| v.amount.clone()).sum();
    let policy = ReconcilePolicy::default();
    let plan = |view: &PayerView<'_>,
                vs: &[SignedVoucher],
                req: &TokenAmount,
                p: &ReconcilePolicy| status(plan_combined(view, vs, req, p));

    assert_eq!(plan(&w.view(), &[], &sum, &policy), ReconcileStatus::InvalidVoucher);
    let tight = ReconcilePolicy { max_vouchers: 2, ..policy.clone() };
    assert_eq!(plan(&w.view(), &vouchers, &sum, &tight), ReconcileStatus::TooManyVouchers);

    let mut foreign = vouchers.clone();
    for v in &mut foreign {
        v.channel_addr = Address::new_id(999);
    }
    assert_eq!(plan(&w.view(), &foreign, &sum, &policy), ReconcileStatus::NotOurChannel);
    let mut mixed = vouchers.clone();
    mixed[1].channel_addr = Address::new_id(999);
    assert_eq!(plan(&w.view(), &mixed, &sum, &policy), ReconcileStatus::MixedChannels);

    let settling = PayerView { settling: true, ..w.view() };
    assert_eq!(plan(&settling, &vouchers, &sum, &policy), ReconcileStatus::ChannelSettling);

    let mut unsigned = vouchers.clone();
    unsigned[0].signature = None;
    assert_eq!(plan(&w.view(), &unsigned, &sum, &policy), ReconcileStatus::InvalidVoucher);
    let mut forged = vouchers.clone();
    forged[2] = signed_by(w.s.voucher(2, 2, 999_999), &w.s.payer.key);
    assert_eq!(plan(&w.view(), &forged, &sum, &policy), ReconcileStatus::NotIssuedByUs);
    let duplicate = vec![vouchers[0].clone(), w.issued[&(0, 1)].clone()];
    assert_eq!(plan(&w.view(), &duplicate, &atto(0), &policy), ReconcileStatus::DuplicateLane);

    let mut closed = w.closed.clone();
    closed.insert(3);
    let view = PayerView { closed: &closed, ..w.view() };
    assert_eq!(plan(&view, &vouchers, &sum, &policy), ReconcileStatus::LaneClosed);

    let mut lanes: BTreeMap<u64, LaneState> = w.state.lanes.clone();
    lanes.remove(&1);
    let view = PayerView { chain_lanes: &lanes, ..w.view() };
    assert_eq!(plan(&view, &vouchers, &sum, &policy), ReconcileStatus::LaneNotOnChain);

    assert_eq!(
        plan(&w.view(), &vouchers, &(&sum + atto(1)), &policy),
        ReconcileStatus::ReqValAboveSum
    );
    let greedy = ReconcilePolicy { min_discount: atto(500), ..policy.clone() };
    assert_eq!(
        plan(&w.view(), &vouchers, &(&sum - atto(499)), &greedy),
        ReconcileStatus::DiscountBelowPolicy
    );
    assert_eq!(plan(&w.view(), &vouchers, &(&sum - atto(500)), &greedy), ReconcileStatus::Success);
    let per_voucher = ReconcilePolicy { min_discount_per_voucher: atto(10), ..policy };
    assert_eq!(
        plan(&w.view(), &vouchers, &(&sum - atto(39)), &per_voucher),
        ReconcileStatus::DiscountBelowPolicy
    );

    // The statuses the payer's node (not these functions) answers round-trip their codes.
    for code in 0..=13u8 {
        assert_eq!(ReconcileStatus::from_code(code).map(|s| s as u8), Some(code));
    }
    assert_eq!(ReconcileStatus::from_code(14), None);
}

#[test]
fn the_payee_folds_only_lanes_the_chain_holds_and_checks_the_answer() {
    let w = World::new();
    let mut best: BTreeMap<u64, SignedVoucher> =
        (0..4u64).map(|l| (l, w.issued[&(l, 2)].clone())).collect();
    best.insert(7, signed_by(w.s.voucher(7, 1, 5), &w.s.payer.key));
    let chosen = choose_vouchers(&best, &w.state.lanes);
    assert_eq!(chosen.iter().map(|v| v.lane).collect::<Vec<_>>(), vec![0, 1, 2, 3]);

    let req_val = price_request(&chosen, &atto(0));
    let plan = plan_combined(&w.view(), &chosen, &req_val, &ReconcilePolicy::default()).unwrap();
    assert!(check_combined(&chosen, &req_val, &plan.voucher).is_ok());
    let mut short = plan.voucher.clone();
    short.amount = &req_val - atto(1);
    assert!(check_combined(&chosen, &req_val, &short).is_err());
    let mut partial = plan.voucher.clone();
    partial.merges.pop();
    assert!(check_combined(&chosen, &req_val, &partial).is_err());
}
