//! Reconciliation as pure functions, checked against the actor rules: the combined voucher
//! the payer plans redeems exactly `req_val`, and no original voucher can be redeemed after.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use paych_core::actor::{self, ActorError, ChannelState};
use paych_core::combine::*;
use paych_core::types::{Address, LaneState, SignedVoucher, TokenAmount};
use paych_testkit::actor_env::{params, Setup, CHANNEL_ID};
use paych_testkit::amounts::atto;
use paych_testkit::keys::signed_by;

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
            payee: Some(self.s.payee.key_addr),
            settling: false,
            issued: &self.issued,
            closed: &self.closed,
            chain_lanes: &self.state.lanes,
        }
    }

    /// The highest nonce the payee holds or the chain has on each lane (the payee holds
    /// every voucher issued).
    fn held(&self) -> BTreeMap<u64, u64> {
        let mut held: BTreeMap<u64, u64> = BTreeMap::new();
        for (lane, nonce) in self.issued.keys() {
            let h = held.entry(*lane).or_default();
            *h = (*h).max(*nonce);
        }
        for (lane, state) in &self.state.lanes {
            let h = held.entry(*lane).or_default();
            *h = (*h).max(state.nonce);
        }
        held
    }

    /// The key the payee proves it holds.
    fn payee(&self) -> Option<&Address> {
        Some(&self.s.payee.key_addr)
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
    let plan =
        plan_combined(&w.view(), w.payee(), &vouchers, &req_val, &ReconcilePolicy::default())
            .unwrap();
    assert_eq!(plan.voucher.lane, 0);
    assert_eq!(plan.voucher.nonce, 3);
    assert_eq!(plan.closes, vec![0, 1, 2, 3]);
    assert!(plan.voucher.merges.iter().all(|m| m.nonce == 3));
    check_combined(&vouchers, &req_val, &w.held(), &plan.voucher).unwrap();

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
    let a = plan_combined(&w.view(), w.payee(), &vouchers, &req_val, &ReconcilePolicy::default())
        .unwrap();
    let b = plan_combined(&w.view(), w.payee(), &vouchers, &req_val, &ReconcilePolicy::default())
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn every_refusal_status_is_reached() {
    let w = World::new();
    let vouchers = w.latest();
    let sum: TokenAmount = vouchers.iter().map(|v| v.amount.clone()).sum();
    let policy = ReconcilePolicy::default();
    let plan =
        |view: &PayerView<'_>, vs: &[SignedVoucher], req: &TokenAmount, p: &ReconcilePolicy| {
            status(plan_combined(view, w.payee(), vs, req, p))
        };

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
    for code in 0..=15u8 {
        assert_eq!(ReconcileStatus::from_code(code).map(|s| s as u8), Some(code));
    }
    assert_eq!(ReconcileStatus::from_code(16), None);
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
    let plan = plan_combined(&w.view(), w.payee(), &chosen, &req_val, &ReconcilePolicy::default())
        .unwrap();
    let held = w.held();
    assert!(check_combined(&chosen, &req_val, &held, &plan.voucher).is_ok());
    let mut short = plan.voucher.clone();
    short.amount = &req_val - atto(1);
    assert!(check_combined(&chosen, &req_val, &held, &short).is_err());
    let mut partial = plan.voucher.clone();
    partial.merges.pop();
    assert!(check_combined(&chosen, &req_val, &held, &partial).is_err());
}

#[test]
fn payer_answers_only_the_channels_payee() {
    let w = World::new();
    let vouchers = w.latest();
    let req_val = price_request(&vouchers, &atto(100));
    let policy = ReconcilePolicy::default();
    let asked_by = |requester: Option<&Address>, vs: &[SignedVoucher]| {
        status(plan_combined(&w.view(), requester, vs, &req_val, &policy))
    };
    // Nobody proven, a stranger's key, the payer's own key: refused.
    assert_eq!(asked_by(None, &vouchers), ReconcileStatus::NotPayee);
    assert_eq!(asked_by(Some(&w.s.stranger.key_addr), &vouchers), ReconcileStatus::NotPayee);
    assert_eq!(asked_by(Some(&w.s.payer.key_addr), &vouchers), ReconcileStatus::NotPayee);
    // A stranger learns nothing of the channel's vouchers: a forged voucher is not even
    // looked at before the requester is.
    let mut forged = vouchers.clone();
    forged[2] = signed_by(w.s.voucher(2, 2, 999_999), &w.s.stranger.key);
    assert_eq!(asked_by(Some(&w.s.stranger.key_addr), &forged), ReconcileStatus::NotPayee);
    // A view that knows no payee answers no one.
    let unknown = PayerView { payee: None, ..w.view() };
    let refused = plan_combined(&unknown, w.payee(), &vouchers, &req_val, &policy);
    assert_eq!(status(refused), ReconcileStatus::NotPayee);
    // The payee is answered.
    assert_eq!(asked_by(w.payee(), &vouchers), ReconcileStatus::Success);
    assert_eq!(
        check_requester(&w.addresses, w.view().payee.as_ref(), w.payee(), &vouchers, &policy),
        Ok(Address::new_id(CHANNEL_ID))
    );
}

#[test]
fn payer_prices_on_its_latest_vouchers_not_on_the_amounts_shown() {
    let w = World::new();
    let policy = ReconcilePolicy::default();
    // The payee shows the older voucher of every lane: 1000 + 2000 + 3000 + 4000.
    let older: Vec<SignedVoucher> = (0..4u64).map(|l| w.issued[&(l, 1)].clone()).collect();
    let shown: TokenAmount = older.iter().map(|v| v.amount.clone()).sum();
    assert_eq!(shown, atto(10_000));
    // The latest vouchers issued on those lanes total 20 000: that is what is priced.
    let latest: TokenAmount = w.latest().iter().map(|v| v.amount.clone()).sum();
    assert_eq!(latest, atto(20_000));
    let plan = plan_combined(&w.view(), w.payee(), &older, &atto(15_000), &policy).unwrap();
    assert_eq!(plan.voucher.amount, atto(15_000));
    // Closing every lane above every nonce issued there, the older ones shown included.
    assert_eq!(plan.voucher.nonce, 3);
    assert!(plan.voucher.merges.iter().all(|m| m.nonce == 3));
    let refused = plan_combined(&w.view(), w.payee(), &older, &(&latest + atto(1)), &policy);
    assert_eq!(status(refused), ReconcileStatus::ReqValAboveSum);
    // A discount is measured against the latest vouchers too.
    let greedy = ReconcilePolicy { min_discount: atto(500), ..policy.clone() };
    let refused = plan_combined(&w.view(), w.payee(), &older, &(&latest - atto(499)), &greedy);
    assert_eq!(status(refused), ReconcileStatus::DiscountBelowPolicy);
    // An altered voucher is not one the payer issued, whatever it claims.
    let mut altered = older.clone();
    altered[0].amount = atto(1);
    let refused = plan_combined(&w.view(), w.payee(), &altered, &atto(1), &policy);
    assert_eq!(status(refused), ReconcileStatus::NotIssuedByUs);
}

#[test]
fn payer_refuses_to_fold_a_lane_whose_latest_voucher_is_conditional() {
    let policy = ReconcilePolicy::default();
    type Condition = fn(&mut SignedVoucher);
    let conditions: [(&str, Condition); 5] = [
        ("secret hash", |v| v.secret_hash = vec![7; 32]),
        ("time_lock_min", |v| v.time_lock_min = 1_000),
        ("time_lock_max", |v| v.time_lock_max = 1_000),
        ("min_settle_height", |v| v.min_settle_height = 1_000),
        ("extra", |v| {
            v.extra = Some(paych_core::types::ModVerifyParams {
                actor: Address::new_id(150),
                method: 2,
                data: Vec::new(),
            })
        }),
    ];
    for (what, condition) in conditions {
        let mut w = World::new();
        // Lane 1's latest voucher promises 9 000 more, under a condition.
        let mut conditional = w.s.voucher(1, 3, 13_000);
        condition(&mut conditional);
        let conditional = signed_by(conditional, &w.s.payer.key);
        w.issued.insert((1, 3), conditional.clone());
        // Shown itself, it is refused: an unconditional combined voucher would pay it.
        let mut shown = w.latest();
        shown[1] = conditional;
        let sum: TokenAmount = shown.iter().map(|v| v.amount.clone()).sum();
        let refused = plan_combined(&w.view(), w.payee(), &shown, &sum, &policy);
        assert_eq!(status(refused), ReconcileStatus::LaneConditional, "{what}");
        // Showing the older plain voucher instead changes nothing: the lane is priced on its
        // latest voucher.
        let refused = plan_combined(&w.view(), w.payee(), &w.latest(), &atto(1), &policy);
        assert_eq!(status(refused), ReconcileStatus::LaneConditional, "{what}");
    }
}

#[test]
fn payee_accepts_only_a_combined_voucher_that_is_exactly_its_plan() {
    let w = World::new();
    let requested = w.latest();
    let req_val = price_request(&requested, &atto(100));
    let held = w.held();
    let plan =
        plan_combined(&w.view(), w.payee(), &requested, &req_val, &ReconcilePolicy::default())
            .unwrap()
            .voucher;
    check_combined(&requested, &req_val, &held, &plan).unwrap();

    let refused = |edit: &dyn Fn(&mut SignedVoucher)| {
        let mut v = plan.clone();
        edit(&mut v);
        check_combined(&requested, &req_val, &held, &v).unwrap_err()
    };
    use CombinedDefect as D;
    assert_eq!(refused(&|v| v.time_lock_min = 5), D::Conditional("time_lock_min"));
    assert_eq!(refused(&|v| v.time_lock_max = 5), D::Conditional("time_lock_max"));
    assert_eq!(refused(&|v| v.secret_hash = vec![1; 32]), D::Conditional("secret hash"));
    assert_eq!(refused(&|v| v.min_settle_height = 5), D::Conditional("min_settle_height"));
    assert_eq!(
        refused(&|v| {
            v.extra = Some(paych_core::types::ModVerifyParams {
                actor: Address::new_id(150),
                method: 2,
                data: Vec::new(),
            })
        }),
        D::Conditional("extra")
    );
    // A nonce the payee already holds on its lane: the voucher held there could still be
    // redeemed after it.
    assert_eq!(refused(&|v| v.nonce = 2), D::NonceNotAbove { lane: 0, nonce: 2, held: 2 });
    // A merge at a nonce the payee already holds.
    assert_eq!(
        refused(&|v| v.merges[1].nonce = 2),
        D::NonceNotAbove { lane: 2, nonce: 2, held: 2 }
    );
    // Another lane than the lowest requested.
    assert_eq!(
        refused(&|v| {
            v.lane = 1;
            v.merges[0].lane = 0;
        }),
        D::WrongLane { expected: 0, found: 1 }
    );
    // A lane merged twice, one left out, one not requested.
    assert_eq!(refused(&|v| v.merges[2] = v.merges[1]), D::WrongMerges);
    assert_eq!(
        refused(&|v| {
            v.merges.pop();
        }),
        D::WrongMerges
    );
    assert_eq!(
        refused(&|v| v.merges.push(paych_core::types::Merge { lane: 9, nonce: 1 })),
        D::WrongMerges
    );
    assert_eq!(
        refused(&|v| v.amount = &req_val + atto(1)),
        D::WrongAmount { expected: req_val.clone(), found: &req_val + atto(1) }
    );
    assert_eq!(refused(&|v| v.channel_addr = Address::new_id(999)), D::WrongChannel);
    assert_eq!(check_combined(&[], &req_val, &held, &plan), Err(D::NothingRequested));
}
