//! Property tests of the payment-channel actor's rules over random sequences of vouchers
//! (with merges), settlements, epoch advances and deposits on a two-party channel, signed
//! with real secp256k1 keys.
//!
//! After every operation the channel must keep its invariants: `to_send` stays within
//! `0..=balance` and equals the sum of the redemptions' deltas, lane nonces never go down,
//! amounts are cumulative per lane, merged lanes refuse vouchers at or below the merge
//! nonce, and a refused operation changes nothing. Each outcome is also compared with a
//! small model of the actor's checks written from the specification.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use paych_core::actor::{collect, settle, update_channel_state, ActorError, ChannelState};
use paych_core::types::{ChainEpoch, Merge, SignedVoucher, TokenAmount, SETTLE_DELAY};
use paych_testkit::actor_env::{params, Setup};
use paych_testkit::amounts::atto;
use paych_testkit::keys::signed_by;
use proptest::collection::vec;
use proptest::prelude::*;

/// A voucher on the channel, before it is signed.
#[derive(Debug, Clone)]
struct Spec {
    lane: u64,
    nonce: u64,
    amount: u64,
    merges: Vec<(u64, u64)>,
    min_settle_height: ChainEpoch,
}

#[derive(Debug, Clone)]
enum Op {
    /// The payer signs, the payee redeems.
    PayeeRedeems(Spec),
    /// The payee signs, the payer redeems.
    PayerRedeems(Spec),
    /// The payee redeems a voucher it signed itself.
    PayeeForges(Spec),
    /// One of the parties settles.
    Settle { by_payer: bool },
    /// Time passes.
    Advance(ChainEpoch),
    /// The payer adds funds.
    Deposit(u64),
}

fn spec() -> impl Strategy<Value = Spec> {
    // Mostly merges of other lanes; now and then of the voucher's own lane.
    let merge = (prop_oneof![9 => 1..4u64, 1 => Just(0)], 0..16u64);
    let merges = prop_oneof![3 => Just(Vec::new()), 2 => vec(merge, 1..3)];
    (0..4u64, 0..16u64, 0..300u64, merges, prop_oneof![3 => Just(0), 1 => 1..4000 as ChainEpoch])
        .prop_map(|(lane, nonce, amount, merges, min_settle_height)| Spec {
            lane,
            nonce,
            amount,
            merges: merges.into_iter().map(|(offset, n)| ((lane + offset) % 4, n)).collect(),
            min_settle_height,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => spec().prop_map(Op::PayeeRedeems),
        2 => spec().prop_map(Op::PayerRedeems),
        1 => spec().prop_map(Op::PayeeForges),
        1 => any::<bool>().prop_map(|by_payer| Op::Settle { by_payer }),
        2 => (0..600 as ChainEpoch).prop_map(Op::Advance),
        1 => (0..200u64).prop_map(Op::Deposit),
    ]
}

fn voucher(s: &Setup, spec: &Spec) -> SignedVoucher {
    SignedVoucher {
        merges: spec.merges.iter().map(|&(lane, nonce)| Merge { lane, nonce }).collect(),
        min_settle_height: spec.min_settle_height,
        ..s.voucher(spec.lane, spec.nonce, spec.amount)
    }
}

fn redeemed(state: &ChannelState, lane: u64) -> TokenAmount {
    state.lanes.get(&lane).map(|l| l.redeemed.clone()).unwrap_or_default()
}

/// What the actor should answer to a correctly signed voucher without time locks, secret
/// or extra: the delta, or the error. Written from the specification's steps 3 and 11–13.
fn model(
    pre: &ChannelState,
    epoch: ChainEpoch,
    balance: &TokenAmount,
    spec: &Spec,
) -> Result<TokenAmount, ActorError> {
    if pre.settling_at != 0 && epoch >= pre.settling_at {
        return Err(ActorError::UpdateAfterSettled { epoch, settling_at: pre.settling_at });
    }
    if let Some(own) = pre.lanes.get(&spec.lane) {
        if own.nonce >= spec.nonce {
            return Err(ActorError::StaleNonce {
                lane: spec.lane,
                existing: own.nonce,
                voucher: spec.nonce,
            });
        }
    }
    let mut nonces: BTreeMap<u64, u64> = pre.lanes.iter().map(|(l, s)| (*l, s.nonce)).collect();
    let mut already = redeemed(pre, spec.lane);
    for &(lane, nonce) in &spec.merges {
        if lane == spec.lane {
            return Err(ActorError::MergeIntoOwnLane(lane));
        }
        let existing = nonces.get_mut(&lane).ok_or(ActorError::MergeLaneMissing(lane))?;
        if *existing >= nonce {
            return Err(ActorError::MergeStaleNonce { lane, existing: *existing, merge: nonce });
        }
        *existing = nonce;
        already += redeemed(pre, lane);
    }
    let delta = atto(spec.amount) - already;
    let to_send = &pre.to_send + &delta;
    if to_send.is_negative() {
        return Err(ActorError::NegativeToSend);
    }
    if &to_send > balance {
        return Err(ActorError::InsufficientFunds { to_send, balance: balance.clone() });
    }
    Ok(delta)
}

/// The test's memory of the channel's history.
#[derive(Default)]
struct History {
    /// The sum of all successful redemptions' deltas.
    sum_of_deltas: TokenAmount,
    /// For each merged lane, the highest nonce it was merged at.
    merged_at: BTreeMap<u64, u64>,
    /// How many redemptions succeeded.
    redeemed: usize,
}

/// Applies one redemption and checks everything it must and must not have done.
fn redeem(
    s: &Setup,
    state: &mut ChannelState,
    history: &mut History,
    spec: &Spec,
    forged: bool,
) -> Result<(), TestCaseError> {
    let sv = voucher(s, spec);
    let caller_is_payer = s.env.call.caller == s.payer.id;
    let signer = if forged == caller_is_payer { &s.payer.key } else { &s.payee.key };
    let sv = signed_by(sv, signer);

    let pre = state.clone();
    let result = update_channel_state(state, &s.env, &params(sv));

    // After a merge of a lane at nonce n, no voucher at or below n is accepted on it.
    if history.merged_at.get(&spec.lane).is_some_and(|&n| spec.nonce <= n) {
        prop_assert!(result.is_err(), "lane {} was merged at a nonce >= {}", spec.lane, spec.nonce);
    }

    let expected = model(&pre, s.env.call.epoch, &s.env.call.balance, spec);
    let redemption = match result {
        Err(err) => {
            prop_assert_eq!(&*state, &pre, "a refused voucher ({}) changed the state", err);
            let code = err.exit_code().value();
            prop_assert!(code == 16 || code == 32, "unexpected exit code {}", code);
            match expected {
                Err(ActorError::UpdateAfterSettled { .. }) => prop_assert_eq!(Err(err), expected),
                _ if forged => {
                    prop_assert!(matches!(err, ActorError::InvalidSignature(_)), "{}", err)
                }
                _ => prop_assert_eq!(Err(err), expected),
            }
            return Ok(());
        }
        Ok(r) => r,
    };
    prop_assert!(!forged, "a voucher signed by its submitter was accepted");
    prop_assert_eq!(Ok(redemption.delta.clone()), expected);
    history.redeemed += 1;

    // Amounts are cumulative: the delta is the amount less what the lane and the merged
    // lanes had redeemed before (a lane merged twice counts twice).
    let before: TokenAmount = redeemed(&pre, spec.lane)
        + spec.merges.iter().map(|&(l, _)| redeemed(&pre, l)).sum::<TokenAmount>();
    prop_assert_eq!(&redemption.delta, &(atto(spec.amount) - before));
    prop_assert_eq!(redemption.lane, spec.lane);
    prop_assert_eq!(&redemption.to_send, &state.to_send);
    prop_assert_eq!(&state.to_send, &(&pre.to_send + &redemption.delta));
    let lane = &state.lanes[&spec.lane];
    prop_assert_eq!(&lane.redeemed, &atto(spec.amount));
    prop_assert_eq!(lane.nonce, spec.nonce);

    // Merged lanes keep their redeemed and take the last merge's nonce; others are untouched.
    let mut merge_nonces = BTreeMap::new();
    for &(l, n) in &spec.merges {
        merge_nonces.insert(l, n);
    }
    for (l, after) in &state.lanes {
        if *l == spec.lane {
            continue;
        }
        let prev = pre.lanes.get(l).expect("only the voucher's lane can be created");
        prop_assert_eq!(&after.redeemed, &prev.redeemed);
        prop_assert_eq!(after.nonce, merge_nonces.get(l).copied().unwrap_or(prev.nonce));
    }

    // The voucher's min_settle_height can only raise the channel's heights.
    let msh = spec.min_settle_height;
    prop_assert_eq!(state.min_settle_height, pre.min_settle_height.max(msh));
    let settling_at = if pre.settling_at != 0 { pre.settling_at.max(msh) } else { 0 };
    prop_assert_eq!(state.settling_at, settling_at);

    history.sum_of_deltas += &redemption.delta;
    for (l, n) in merge_nonces {
        let at = history.merged_at.entry(l).or_insert(n);
        *at = (*at).max(n);
    }
    Ok(())
}

/// The invariants that hold between operations.
fn check_invariants(
    s: &Setup,
    pre: &ChannelState,
    state: &ChannelState,
    history: &History,
) -> Result<(), TestCaseError> {
    prop_assert!(!state.to_send.is_negative(), "to_send {} < 0", state.to_send);
    prop_assert!(state.to_send <= s.env.call.balance, "to_send {} > balance", state.to_send);
    prop_assert_eq!(&state.to_send, &history.sum_of_deltas);
    for (l, before) in &pre.lanes {
        let after = state.lanes.get(l);
        prop_assert!(after.is_some(), "lane {} disappeared", l);
        prop_assert!(after.unwrap().nonce >= before.nonce, "lane {}'s nonce went down", l);
    }
    prop_assert!(state.min_settle_height >= pre.min_settle_height);
    if pre.is_settling() {
        prop_assert!(state.settling_at >= pre.settling_at);
    }
    if state.is_settling() {
        prop_assert!(state.settling_at >= state.min_settle_height);
    }
    prop_assert_eq!((state.from, state.to), (s.payer.id, s.payee.id));
    Ok(())
}

fn run(initial_balance: u64, ops: &[Op]) -> Result<History, TestCaseError> {
    let mut s = Setup::new(initial_balance);
    let mut state = s.channel();
    let mut history = History::default();
    for op in ops {
        let pre = state.clone();
        s.env.call.caller = s.payee.id;
        match op {
            Op::PayeeRedeems(spec) => redeem(&s, &mut state, &mut history, spec, false)?,
            Op::PayeeForges(spec) => redeem(&s, &mut state, &mut history, spec, true)?,
            Op::PayerRedeems(spec) => {
                s.env.call.caller = s.payer.id;
                redeem(&s, &mut state, &mut history, spec, false)?;
            }
            Op::Settle { by_payer } => {
                if *by_payer {
                    s.env.call.caller = s.payer.id;
                }
                match settle(&mut state, &s.env) {
                    Ok(at) => {
                        prop_assert!(!pre.is_settling());
                        prop_assert_eq!(
                            at,
                            (s.env.call.epoch + SETTLE_DELAY).max(pre.min_settle_height)
                        );
                        prop_assert_eq!(&state, &ChannelState { settling_at: at, ..pre.clone() });
                    }
                    Err(err) => {
                        prop_assert!(pre.is_settling());
                        prop_assert_eq!(&err, &ActorError::AlreadySettling);
                        prop_assert_eq!(&state, &pre);
                    }
                }
            }
            Op::Advance(epochs) => s.env.call.epoch += epochs,
            Op::Deposit(amount) => s.env.call.balance += atto(*amount),
        }
        check_invariants(&s, &pre, &state, &history)?;
    }

    // However the history went, collecting pays to_send to the payee and the rest back.
    match collect(&state, &s.env) {
        Ok(payout) => {
            prop_assert!(state.is_settling() && s.env.call.epoch >= state.settling_at);
            prop_assert_eq!(&payout.to, &state.to_send);
            prop_assert_eq!(&(payout.to + &payout.from), &s.env.call.balance);
            prop_assert!(!payout.from.is_negative());
        }
        Err(err) => {
            prop_assert!(!state.is_settling() || s.env.call.epoch < state.settling_at);
            prop_assert!(matches!(err, ActorError::NotSettled { .. }), "{}", err);
        }
    }
    Ok(history)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_histories_keep_the_channel_invariants(
        balance in 0..1000u64,
        ops in vec(op(), 1..40),
    ) {
        run(balance, &ops)?;
    }

    /// Vouchers on few lanes with small nonces and merges: most are accepted, so the
    /// cumulative-amount and merge rules are exercised on long chains of redemptions.
    #[test]
    fn merge_heavy_histories_keep_the_channel_invariants(
        ops in vec(
            (0..3u64, 0..3u64, 0..100u64, vec((0..3u64, 1..4u64), 0..3)),
            1..30,
        ),
    ) {
        // Nonces climb so that vouchers and merges are usually fresh.
        let mut s = Setup::new(10_000);
        let mut state = s.channel();
        let mut history = History::default();
        let mut next_nonce = 0;
        for (lane, step, amount, merges) in ops {
            next_nonce += step;
            let merges = merges.into_iter().map(|(l, d)| (l, next_nonce + d)).collect();
            let spec = Spec { lane, nonce: next_nonce, amount, merges, min_settle_height: 0 };
            let pre = state.clone();
            redeem(&s, &mut state, &mut history, &spec, false)?;
            check_invariants(&s, &pre, &state, &history)?;
            s.env.call.epoch += 1;
        }
    }
}

/// The generators above are not vacuous: a fixed history redeems, merges and settles.
#[test]
fn a_fixed_history_passes_the_property_checks() {
    let spec = |lane, nonce, amount, merges: &[(u64, u64)]| Spec {
        lane,
        nonce,
        amount,
        merges: merges.to_vec(),
        min_settle_height: 0,
    };
    let ops = [
        Op::PayeeRedeems(spec(0, 1, 10, &[])),
        Op::PayeeRedeems(spec(1, 1, 20, &[])),
        Op::PayerRedeems(spec(2, 1, 50, &[(0, 2), (1, 2)])),
        Op::PayeeRedeems(spec(0, 2, 99, &[])), // merged at 2: refused
        Op::PayeeForges(spec(3, 1, 5, &[])),
        Op::Settle { by_payer: true },
        Op::PayeeRedeems(spec(2, 2, 60, &[(1, 1)])), // stale merge: refused
        Op::PayeeRedeems(spec(2, 3, 100, &[(1, 3)])), // 100 − (50 + 20)
        Op::Advance(SETTLE_DELAY),
        Op::PayeeRedeems(spec(3, 1, 1, &[])), // after settlement: refused
    ];
    let history = run(100, &ops).unwrap();
    assert_eq!(history.redeemed, 4);
    assert_eq!(history.sum_of_deltas, atto(80));
    assert_eq!(history.merged_at, BTreeMap::from([(0, 2), (1, 3)]));
}
