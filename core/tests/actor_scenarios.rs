//! Scenarios for the payment-channel actor's rules: every check of `Constructor`,
//! `UpdateChannelState`, `Settle` and `Collect`, the order in which they run, their exit
//! codes, and that a refused call changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fvm_shared::bigint::BigInt;
use paych_core::actor::{
    collect, construct, settle, update_channel_state, ActorError, ChannelState, ExtraCallFailure,
    Payout, Redemption,
};
use paych_core::crypto;
use paych_core::types::{
    Address, ConstructorParams, ExitCode, LaneState, Merge, ModVerifyParams, Signature,
    SignedVoucher, TokenAmount, UpdateChannelStateParams, INIT_ACTOR_ID, MAX_LANE, SETTLE_DELAY,
};
use paych_testkit::actor_env::{params, Party, Setup, CHANNEL_ID, MINER_ID, OTHER_CHANNEL_ID};
use paych_testkit::amounts::atto;
use paych_testkit::keys::signed_by;

// ---------------------------------------------------------------------------------------
// Helpers

/// The voucher signed by the payer.
fn by_payer(s: &Setup, sv: SignedVoucher) -> SignedVoucher {
    signed_by(sv, &s.payer.key)
}

/// Redeems `sv` (no secret), which must succeed.
fn redeem(s: &Setup, state: &mut ChannelState, sv: SignedVoucher) -> Redemption {
    update_channel_state(state, &s.env, &params(sv)).expect("the voucher must be accepted")
}

/// Runs an `UpdateChannelState` that must fail, checks it changed nothing, and returns why.
fn refuse(s: &Setup, state: &mut ChannelState, p: &UpdateChannelStateParams) -> ActorError {
    let before = state.clone();
    let err = update_channel_state(state, &s.env, p).expect_err("the voucher must be refused");
    assert_eq!(*state, before, "a refused voucher ({err}) must change nothing");
    err
}

/// `refuse` for a voucher without a secret.
fn refuse_sv(s: &Setup, state: &mut ChannelState, sv: SignedVoucher) -> ActorError {
    refuse(s, state, &params(sv))
}

fn assert_exit(err: &ActorError, code: u32) {
    assert_eq!(err.exit_code().value(), code, "exit code of {err}");
}

/// Checks that `err` is the refusal expected (`expected` is whether it matches) and has
/// exit code `code`.
fn assert_refused(err: &ActorError, expected: bool, code: u32) {
    assert!(expected, "{err}");
    assert_exit(err, code);
}

fn lane(redeemed: u64, nonce: u64) -> LaneState {
    LaneState { redeemed: atto(redeemed), nonce }
}

fn merges(pairs: &[(u64, u64)]) -> Vec<Merge> {
    pairs.iter().map(|&(lane, nonce)| Merge { lane, nonce }).collect()
}

/// A channel holding 100 with lane 1 at nonce 1 (redeemed 10) and lane 2 at nonce 1
/// (redeemed 20): `to_send` is 30.
fn two_lanes(s: &Setup) -> ChannelState {
    let mut state = s.channel();
    redeem(s, &mut state, by_payer(s, s.voucher(1, 1, 10)));
    redeem(s, &mut state, by_payer(s, s.voucher(2, 1, 20)));
    assert_eq!(state.to_send, atto(30));
    state
}

/// A channel that started settling at epoch 1 (it settles at `1 + SETTLE_DELAY`).
fn settling(s: &Setup) -> ChannelState {
    let mut state = two_lanes(s);
    assert_eq!(settle(&mut state, &s.env).unwrap(), 1 + SETTLE_DELAY);
    state
}

fn huge_amount() -> TokenAmount {
    // More than the 128 bytes a BigInt may take in CBOR.
    TokenAmount::from_atto(BigInt::from(1u8) << 1100)
}

fn junk_signature() -> Option<Signature> {
    Some(Signature::new_secp256k1(vec![7; 65]))
}

fn construct_params(from: Address, to: Address) -> ConstructorParams {
    ConstructorParams { from, to }
}

fn init_env(s: &mut Setup) {
    s.env.call.caller = Address::new_id(INIT_ACTOR_ID);
}

// ---------------------------------------------------------------------------------------
// Constructor

#[test]
fn construct_by_init_resolves_key_addresses_to_account_ids() {
    let mut s = Setup::new(0);
    init_env(&mut s);
    let state = construct(&s.env, &construct_params(s.payer.key_addr, s.payee.key_addr)).unwrap();
    assert_eq!(state, ChannelState::new(s.payer.id, s.payee.id));
    assert_eq!(state.to_send, TokenAmount::default());
    assert!(!state.is_settling());
    assert_eq!(state.min_settle_height, 0);
    assert!(state.lanes.is_empty());
}

#[test]
fn construct_accepts_id_addresses_of_accounts() {
    let mut s = Setup::new(0);
    init_env(&mut s);
    let state = construct(&s.env, &construct_params(s.payer.id, s.payee.id)).unwrap();
    assert_eq!((state.from, state.to), (s.payer.id, s.payee.id));
}

#[test]
fn construct_creates_an_account_for_an_unknown_key_address() {
    let mut s = Setup::new(0);
    init_env(&mut s);
    let newcomer = Party::new(9, 0);
    let state = construct(&s.env, &construct_params(s.payer.key_addr, newcomer.key_addr)).unwrap();
    assert_eq!(state.from, s.payer.id);
    let id = state.to.id().expect("the payee is stored as an ID address");
    assert!(!s.env.actors.contains_key(&id), "a new account gets a new ID");
}

#[test]
fn construct_not_called_by_init_is_forbidden_with_exit_18() {
    let s = Setup::new(0); // the payee calls
    let err = construct(&s.env, &construct_params(s.payer.id, s.payee.id)).unwrap_err();
    assert_refused(
        &err,
        matches!(err, ActorError::ConstructorCallerNotInit(c) if c == s.payee.id),
        18,
    );
}

#[test]
fn construct_checks_the_caller_before_the_parties() {
    let s = Setup::new(0);
    let nobody = Address::new_actor(b"nobody");
    let err = construct(&s.env, &construct_params(nobody, Address::new_id(MINER_ID))).unwrap_err();
    assert_refused(&err, matches!(err, ActorError::ConstructorCallerNotInit(_)), 18);
}

#[test]
fn construct_with_a_party_that_has_no_actor_fails_with_17_for_an_id_and_23_otherwise() {
    let mut s = Setup::new(0);
    init_env(&mut s);
    let nobody = Address::new_actor(b"nobody");
    let err = construct(&s.env, &construct_params(nobody, s.payee.id)).unwrap_err();
    assert_refused(&err, matches!(err, ActorError::PartyNotFound(a) if a == nobody), 23);

    let unknown_id = Address::new_id(4242);
    let err = construct(&s.env, &construct_params(s.payer.id, unknown_id)).unwrap_err();
    assert_refused(&err, matches!(err, ActorError::PartyNotFound(a) if a == unknown_id), 17);
}

#[test]
fn construct_accepts_a_party_that_is_not_an_account_as_the_chain_does() {
    let mut s = Setup::new(0);
    init_env(&mut s);
    let miner = Address::new_id(MINER_ID);
    let state = construct(&s.env, &construct_params(s.payer.id, miner)).unwrap();
    assert_eq!((state.from, state.to), (s.payer.id, miner));

    // A robust address resolves to its actor's ID.
    let state = construct(&s.env, &construct_params(s.channel_robust, s.payee.id)).unwrap();
    assert_eq!((state.from, state.to), (Address::new_id(CHANNEL_ID), s.payee.id));
}

#[test]
fn construct_resolves_the_payee_before_the_payer() {
    let mut s = Setup::new(0);
    init_env(&mut s);
    let nobody = Address::new_actor(b"nobody");
    let unknown_id = Address::new_id(4242);

    let err = construct(&s.env, &construct_params(unknown_id, nobody)).unwrap_err();
    assert_refused(&err, matches!(err, ActorError::PartyNotFound(a) if a == nobody), 23);

    let err = construct(&s.env, &construct_params(nobody, unknown_id)).unwrap_err();
    assert_refused(&err, matches!(err, ActorError::PartyNotFound(a) if a == unknown_id), 17);
}

// ---------------------------------------------------------------------------------------
// UpdateChannelState: accepted vouchers

#[test]
fn payee_redeems_a_voucher_signed_by_the_payer() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let r = redeem(&s, &mut state, by_payer(&s, s.voucher(0, 1, 10)));
    assert_eq!(r, Redemption { lane: 0, delta: atto(10), to_send: atto(10) });
    assert_eq!(state.to_send, atto(10));
    assert_eq!(state.lanes.len(), 1);
    assert_eq!(state.lanes[&0], lane(10, 1));
}

#[test]
fn payer_redeems_a_voucher_signed_by_the_payee() {
    let mut s = Setup::new(100);
    s.env.call.caller = s.payer.id;
    let mut state = s.channel();
    let r = redeem(&s, &mut state, signed_by(s.voucher(3, 2, 7), &s.payee.key));
    assert_eq!(r, Redemption { lane: 3, delta: atto(7), to_send: atto(7) });
    assert_eq!(state.lanes[&3], lane(7, 2));
}

#[test]
fn a_new_lane_accepts_nonce_zero() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let r = redeem(&s, &mut state, by_payer(&s, s.voucher(5, 0, 3)));
    assert_eq!(r.delta, atto(3));
    assert_eq!(state.lanes[&5], lane(3, 0));
}

#[test]
fn amounts_are_cumulative_per_lane_so_delta_is_the_increase() {
    let s = Setup::new(100);
    let mut state = s.channel();
    assert_eq!(redeem(&s, &mut state, by_payer(&s, s.voucher(0, 1, 10))).delta, atto(10));
    let r = redeem(&s, &mut state, by_payer(&s, s.voucher(0, 5, 25)));
    assert_eq!(r, Redemption { lane: 0, delta: atto(15), to_send: atto(25) });
    let r = redeem(&s, &mut state, by_payer(&s, s.voucher(1, 1, 5)));
    assert_eq!(r, Redemption { lane: 1, delta: atto(5), to_send: atto(30) });
    assert_eq!(state.lanes[&0], lane(25, 5));
    assert_eq!(state.lanes[&1], lane(5, 1));
}

#[test]
fn a_lower_cumulative_amount_lowers_to_send() {
    let s = Setup::new(100);
    let mut state = s.channel();
    redeem(&s, &mut state, by_payer(&s, s.voucher(0, 1, 10)));
    let r = redeem(&s, &mut state, by_payer(&s, s.voucher(0, 2, 4)));
    assert_eq!(r, Redemption { lane: 0, delta: TokenAmount::from_atto(-6), to_send: atto(4) });
    assert_eq!(state.lanes[&0], lane(4, 2));
}

#[test]
fn a_voucher_may_spend_exactly_the_balance() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let r = redeem(&s, &mut state, by_payer(&s, s.voucher(0, 1, 100)));
    assert_eq!(r.to_send, atto(100));
}

#[test]
fn a_voucher_naming_the_channel_by_its_robust_address_is_accepted() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let sv = SignedVoucher { channel_addr: s.channel_robust, ..s.voucher(0, 1, 10) };
    assert_eq!(redeem(&s, &mut state, by_payer(&s, sv)).to_send, atto(10));
}

#[test]
fn time_locks_are_inclusive_bounds() {
    let mut s = Setup::new(100);
    let mut state = s.channel();
    s.env.call.epoch = 50;
    let at_min = SignedVoucher { time_lock_min: 50, time_lock_max: 60, ..s.voucher(0, 1, 1) };
    redeem(&s, &mut state, by_payer(&s, at_min));
    s.env.call.epoch = 60;
    let at_max = SignedVoucher { time_lock_min: 50, time_lock_max: 60, ..s.voucher(0, 2, 2) };
    assert_eq!(redeem(&s, &mut state, by_payer(&s, at_max)).to_send, atto(2));
}

#[test]
fn time_lock_max_zero_means_no_expiry() {
    let mut s = Setup::new(100);
    s.env.call.epoch = 1_000_000;
    let mut state = s.channel();
    let sv = SignedVoucher { time_lock_min: 999_999, time_lock_max: 0, ..s.voucher(0, 1, 1) };
    redeem(&s, &mut state, by_payer(&s, sv));
}

#[test]
fn a_voucher_with_a_secret_hash_is_redeemed_with_its_secret() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let secret = vec![0xab; 256]; // the longest secret allowed
    let sv =
        SignedVoucher { secret_hash: crypto::blake2b_256(&secret).to_vec(), ..s.voucher(0, 1, 10) };
    let p = UpdateChannelStateParams { sv: by_payer(&s, sv), secret };
    let r = update_channel_state(&mut state, &s.env, &p).unwrap();
    assert_eq!(r.to_send, atto(10));
}

#[test]
fn extra_call_success_lets_the_voucher_through_and_is_made_once() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let extra = ModVerifyParams { actor: Address::new_id(MINER_ID), method: 7, data: vec![1, 2] };
    let sv = SignedVoucher { extra: Some(extra.clone()), ..s.voucher(0, 1, 10) };
    redeem(&s, &mut state, by_payer(&s, sv));
    assert_eq!(*s.env.extra_calls.borrow(), vec![extra]);
}

#[test]
fn merge_adds_the_merged_lanes_redeemed_and_raises_their_nonces() {
    let s = Setup::new(100);
    let mut state = two_lanes(&s);
    let sv = SignedVoucher { merges: merges(&[(1, 5), (2, 7)]), ..s.voucher(3, 1, 45) };
    let r = redeem(&s, &mut state, by_payer(&s, sv));
    // 45 − (10 + 20 + 0)
    assert_eq!(r, Redemption { lane: 3, delta: atto(15), to_send: atto(45) });
    assert_eq!(state.lanes[&1], lane(10, 5), "a merged lane keeps its redeemed");
    assert_eq!(state.lanes[&2], lane(20, 7));
    assert_eq!(state.lanes[&3], lane(45, 1));
}

#[test]
fn a_merged_lane_only_takes_vouchers_above_the_merge_nonce() {
    let s = Setup::new(100);
    let mut state = two_lanes(&s);
    let sv = SignedVoucher { merges: merges(&[(1, 5)]), ..s.voucher(2, 2, 30) };
    redeem(&s, &mut state, by_payer(&s, sv));

    for nonce in [2, 5] {
        let err = refuse_sv(&s, &mut state, by_payer(&s, s.voucher(1, nonce, 50)));
        assert!(
            matches!(err, ActorError::StaleNonce { lane: 1, existing: 5, voucher } if voucher == nonce),
            "{err}"
        );
        assert_exit(&err, 16);
    }
    // Lane 1 still has 10 redeemed, so a voucher of 12 adds 2.
    let r = redeem(&s, &mut state, by_payer(&s, s.voucher(1, 6, 12)));
    assert_eq!(r.delta, atto(2));
}

#[test]
fn second_merge_of_same_lane_counts_its_redeemed_twice_like_the_actor() {
    let s = Setup::new(100);
    let mut state = two_lanes(&s);
    // Lane 2 (redeemed 20) merges lane 1 (redeemed 10) twice: 50 − (10 + 10 + 20) = 10.
    let sv = SignedVoucher { merges: merges(&[(1, 2), (1, 3)]), ..s.voucher(2, 2, 50) };
    let r = redeem(&s, &mut state, by_payer(&s, sv));
    assert_eq!(r, Redemption { lane: 2, delta: atto(10), to_send: atto(40) });
    assert_eq!(state.lanes[&1], lane(10, 3));
    assert_eq!(state.lanes[&2], lane(50, 2));
}

#[test]
fn a_lane_at_max_lane_is_accepted() {
    let s = Setup::new(100);
    let mut state = s.channel();
    redeem(&s, &mut state, by_payer(&s, s.voucher(MAX_LANE, 1, 1)));
    assert_eq!(state.lanes[&MAX_LANE], lane(1, 1));
}

#[test]
fn voucher_min_settle_height_raises_the_channel_min_settle_height_but_never_lowers_it() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let sv = SignedVoucher { min_settle_height: 5000, ..s.voucher(0, 1, 1) };
    redeem(&s, &mut state, by_payer(&s, sv));
    assert_eq!(state.min_settle_height, 5000);
    assert!(!state.is_settling(), "a voucher never starts settlement");

    let sv = SignedVoucher { min_settle_height: 3000, ..s.voucher(0, 2, 2) };
    redeem(&s, &mut state, by_payer(&s, sv));
    assert_eq!(state.min_settle_height, 5000);
}

#[test]
fn voucher_min_settle_height_postpones_settling_at_while_settling() {
    let s = Setup::new(100);
    let mut state = settling(&s);
    let sv = SignedVoucher { min_settle_height: 1000, ..s.voucher(0, 1, 1) };
    redeem(&s, &mut state, by_payer(&s, sv));
    assert_eq!(state.settling_at, 1 + SETTLE_DELAY, "a lower height does not move it");
    assert_eq!(state.min_settle_height, 1000);

    let sv = SignedVoucher { min_settle_height: 9000, ..s.voucher(0, 2, 2) };
    redeem(&s, &mut state, by_payer(&s, sv));
    assert_eq!(state.settling_at, 9000);
    assert_eq!(state.min_settle_height, 9000);
}

#[test]
fn update_while_settling_before_settling_at_is_accepted() {
    let mut s = Setup::new(100);
    let mut state = settling(&s);
    s.env.call.epoch = state.settling_at - 1;
    let r = redeem(&s, &mut state, by_payer(&s, s.voucher(1, 2, 15)));
    assert_eq!(r.to_send, atto(35));
}

// ---------------------------------------------------------------------------------------
// UpdateChannelState: refused vouchers, in the order the actor checks

#[test]
fn update_by_a_stranger_is_forbidden_with_exit_18() {
    let mut s = Setup::new(100);
    s.env.call.caller = s.stranger.id;
    let mut state = s.channel();
    let err = refuse_sv(&s, &mut state, by_payer(&s, s.voucher(0, 1, 10)));
    assert_refused(
        &err,
        matches!(err, ActorError::CallerNotParty { caller } if caller == s.stranger.id),
        18,
    );
}

#[test]
fn update_checks_the_caller_before_anything_else() {
    let mut s = Setup::new(100);
    let mut state = settling(&s);
    s.env.call.epoch = state.settling_at + 10;
    s.env.call.caller = s.stranger.id;
    // Unsigned, after settlement, with an oversized secret.
    let p = UpdateChannelStateParams { sv: s.voucher(1, 1, 10), secret: vec![0; 300] };
    let err = refuse(&s, &mut state, &p);
    assert_refused(&err, matches!(err, ActorError::CallerNotParty { .. }), 18);
}

#[test]
fn update_of_an_unsigned_voucher_is_refused_with_exit_16() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let err = refuse_sv(&s, &mut state, s.voucher(0, 1, 10));
    assert_refused(&err, matches!(err, ActorError::MissingSignature), 16);
}

#[test]
fn unsigned_voucher_after_settlement_fails_with_missing_signature_not_32() {
    let mut s = Setup::new(100);
    let mut state = settling(&s);
    s.env.call.epoch = state.settling_at;
    let err = refuse_sv(&s, &mut state, s.voucher(0, 1, 10));
    assert_refused(&err, matches!(err, ActorError::MissingSignature), 16);
}

#[test]
fn update_after_settling_at_is_refused_with_exit_32() {
    let mut s = Setup::new(100);
    let mut state = settling(&s);
    let settling_at = state.settling_at;
    for epoch in [settling_at, settling_at + 500] {
        s.env.call.epoch = epoch;
        let err = refuse_sv(&s, &mut state, by_payer(&s, s.voucher(0, 1, 10)));
        assert_eq!(err, ActorError::UpdateAfterSettled { epoch, settling_at });
        assert_refused(&err, matches!(err, ActorError::UpdateAfterSettled { .. }), 32);
    }
}

#[test]
fn update_after_settlement_is_refused_before_the_secret_and_signature_are_checked() {
    let mut s = Setup::new(100);
    let mut state = settling(&s);
    s.env.call.epoch = state.settling_at;
    let sv = signed_by(s.voucher(0, 1, 10), &s.payee.key); // the caller's own signature
    let p = UpdateChannelStateParams { sv, secret: vec![0; 257] };
    let err = refuse(&s, &mut state, &p);
    assert_refused(&err, matches!(err, ActorError::UpdateAfterSettled { .. }), 32);
}

#[test]
fn secret_longer_than_256_bytes_is_refused_with_exit_16() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let secret = vec![1; 257];
    let sv =
        SignedVoucher { secret_hash: crypto::blake2b_256(&secret).to_vec(), ..s.voucher(0, 1, 10) };
    let err = refuse(&s, &mut state, &UpdateChannelStateParams { sv: by_payer(&s, sv), secret });
    assert_refused(&err, matches!(err, ActorError::SecretTooLong(257)), 16);
}

#[test]
fn an_oversized_secret_is_refused_before_the_voucher_is_serialized() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let sv =
        SignedVoucher { amount: huge_amount(), signature: junk_signature(), ..s.voucher(0, 1, 0) };
    let err = refuse(&s, &mut state, &UpdateChannelStateParams { sv, secret: vec![0; 300] });
    assert_refused(&err, matches!(err, ActorError::SecretTooLong(300)), 16);
}

#[test]
fn a_voucher_that_cannot_be_serialized_is_refused_with_exit_21() {
    let s = Setup::new(100);
    let mut state = s.channel();
    // The amount is too large to encode, so the signing bytes cannot be made; this comes
    // before the (junk) signature is checked.
    let sv =
        SignedVoucher { amount: huge_amount(), signature: junk_signature(), ..s.voucher(0, 1, 0) };
    let err = refuse_sv(&s, &mut state, sv);
    assert_refused(&err, matches!(err, ActorError::Serialization(_)), 21);
}

#[test]
fn update_rejects_voucher_signed_by_the_caller_itself() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let err = refuse_sv(&s, &mut state, signed_by(s.voucher(0, 1, 10), &s.payee.key));
    assert_refused(&err, matches!(err, ActorError::InvalidSignature(_)), 16);

    // The same from the payer's side.
    let mut s = s;
    s.env.call.caller = s.payer.id;
    let err = refuse_sv(&s, &mut state, by_payer(&s, s.voucher(0, 1, 10)));
    assert_refused(&err, matches!(err, ActorError::InvalidSignature(_)), 16);
}

#[test]
fn update_rejects_voucher_signed_by_a_stranger() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let err = refuse_sv(&s, &mut state, signed_by(s.voucher(0, 1, 10), &s.stranger.key));
    assert_refused(&err, matches!(err, ActorError::InvalidSignature(_)), 16);
}

#[test]
fn update_rejects_voucher_altered_after_signing() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let mut sv = by_payer(&s, s.voucher(0, 1, 10));
    sv.amount = atto(90);
    let err = refuse_sv(&s, &mut state, sv);
    assert_refused(&err, matches!(err, ActorError::InvalidSignature(_)), 16);
}

#[test]
fn update_rejects_malformed_signatures() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let good = by_payer(&s, s.voucher(0, 1, 10)).signature.unwrap();
    let short = Signature::new_secp256k1(good.bytes[..64].to_vec());
    let bls = Signature::new_bls(vec![0; 96]);
    for signature in [short, bls, junk_signature().unwrap()] {
        let sv = SignedVoucher { signature: Some(signature), ..s.voucher(0, 1, 10) };
        let err = refuse_sv(&s, &mut state, sv);
        assert_refused(&err, matches!(err, ActorError::InvalidSignature(_)), 16);
    }
}

#[test]
fn wrong_signature_and_stale_nonce_fails_with_invalid_signature() {
    let s = Setup::new(100);
    let mut state = two_lanes(&s);
    // Stale nonce, wrong channel, time-locked, negative: the signature is checked first.
    let sv = SignedVoucher {
        channel_addr: Address::new_id(OTHER_CHANNEL_ID),
        time_lock_min: 1000,
        amount: TokenAmount::from_atto(-5),
        ..s.voucher(1, 1, 0)
    };
    let err = refuse_sv(&s, &mut state, signed_by(sv, &s.stranger.key));
    assert_refused(&err, matches!(err, ActorError::InvalidSignature(_)), 16);
}

#[test]
fn voucher_for_an_unknown_channel_address_is_refused_with_exit_16() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let unknown = Address::new_actor(b"no such channel");
    let sv = SignedVoucher { channel_addr: unknown, ..s.voucher(0, 1, 10) };
    let err = refuse_sv(&s, &mut state, by_payer(&s, sv));
    assert_refused(&err, matches!(err, ActorError::UnresolvableChannel(a) if a == unknown), 16);
}

#[test]
fn voucher_for_another_channel_is_refused_with_exit_16() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let other = Address::new_id(OTHER_CHANNEL_ID);
    let other_robust = Address::new_actor(b"another channel");
    for channel_addr in [other, other_robust] {
        let sv = SignedVoucher { channel_addr, ..s.voucher(0, 1, 10) };
        let err = refuse_sv(&s, &mut state, by_payer(&s, sv));
        assert_eq!(
            err,
            ActorError::WrongChannel {
                voucher_channel: other,
                receiver: Address::new_id(CHANNEL_ID)
            }
        );
        assert_refused(&err, matches!(err, ActorError::WrongChannel { .. }), 16);
    }
}

#[test]
fn wrong_channel_is_reported_before_time_locks() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let sv = SignedVoucher {
        channel_addr: Address::new_id(OTHER_CHANNEL_ID),
        time_lock_min: 1000,
        ..s.voucher(0, 1, 10)
    };
    let err = refuse_sv(&s, &mut state, by_payer(&s, sv));
    assert_refused(&err, matches!(err, ActorError::WrongChannel { .. }), 16);
}

#[test]
fn voucher_before_time_lock_min_is_refused_with_exit_16() {
    let mut s = Setup::new(100);
    s.env.call.epoch = 49;
    let mut state = s.channel();
    // Also expired (time_lock_max < epoch): the lower lock is checked first.
    let sv = SignedVoucher { time_lock_min: 50, time_lock_max: 10, ..s.voucher(0, 1, 10) };
    let err = refuse_sv(&s, &mut state, by_payer(&s, sv));
    assert_eq!(err, ActorError::TimeLockMinNotReached { epoch: 49, time_lock_min: 50 });
    assert_refused(&err, matches!(err, ActorError::TimeLockMinNotReached { .. }), 16);
}

#[test]
fn expired_voucher_is_refused_with_exit_16() {
    let mut s = Setup::new(100);
    s.env.call.epoch = 61;
    let mut state = s.channel();
    let sv = SignedVoucher { time_lock_max: 60, ..s.voucher(0, 1, 10) };
    let err = refuse_sv(&s, &mut state, by_payer(&s, sv));
    assert_eq!(err, ActorError::TimeLockMaxPassed { epoch: 61, time_lock_max: 60 });
    assert_refused(&err, matches!(err, ActorError::TimeLockMaxPassed { .. }), 16);
}

#[test]
fn time_locks_are_checked_before_the_amount() {
    let mut s = Setup::new(100);
    s.env.call.epoch = 100;
    let mut state = s.channel();
    let sv = SignedVoucher {
        time_lock_max: 99,
        amount: TokenAmount::from_atto(-1),
        ..s.voucher(0, 1, 0)
    };
    let err = refuse_sv(&s, &mut state, by_payer(&s, sv));
    assert_refused(&err, matches!(err, ActorError::TimeLockMaxPassed { .. }), 16);
}

#[test]
fn negative_amount_is_refused_with_exit_16() {
    let s = Setup::new(100);
    let mut state = s.channel();
    // Also with an incorrect secret: the amount is checked first.
    let sv = SignedVoucher {
        amount: TokenAmount::from_atto(-1),
        secret_hash: vec![0; 32],
        ..s.voucher(0, 1, 0)
    };
    let err = refuse_sv(&s, &mut state, by_payer(&s, sv));
    assert_refused(
        &err,
        matches!(&err, ActorError::NegativeAmount(a) if *a == TokenAmount::from_atto(-1)),
        16,
    );
}

#[test]
fn incorrect_secret_is_refused_with_exit_16_before_the_extra_call() {
    let mut s = Setup::new(100);
    s.env.extra_result = Err(ExtraCallFailure::Exited(ExitCode::new(42)));
    let mut state = s.channel();
    let sv = SignedVoucher {
        secret_hash: crypto::blake2b_256(b"the secret").to_vec(),
        extra: Some(ModVerifyParams { actor: Address::new_id(MINER_ID), method: 2, data: vec![] }),
        ..s.voucher(0, 1, 10)
    };
    let sv = by_payer(&s, sv);
    for secret in [b"not the secret".to_vec(), Vec::new()] {
        let err = refuse(&s, &mut state, &UpdateChannelStateParams { sv: sv.clone(), secret });
        assert_refused(&err, matches!(err, ActorError::IncorrectSecret), 16);
    }
    assert!(s.env.extra_calls.borrow().is_empty(), "the extra call is not made");
}

#[test]
fn extra_call_failure_aborts_with_the_callee_exit_code() {
    for code in [17, 42, 0x1000] {
        let mut s = Setup::new(100);
        s.env.extra_result = Err(ExtraCallFailure::Exited(ExitCode::new(code)));
        let mut state = two_lanes(&s);
        let extra = ModVerifyParams { actor: Address::new_id(MINER_ID), method: 9, data: vec![3] };
        // A stale nonce too: the extra call comes first.
        let sv = SignedVoucher { extra: Some(extra.clone()), ..s.voucher(1, 1, 10) };
        let err = refuse_sv(&s, &mut state, by_payer(&s, sv));
        assert!(
            matches!(err, ActorError::ExtraCallFailed(ExtraCallFailure::Exited(c)) if c.value() == code),
            "{err}"
        );
        assert_exit(&err, code);
        assert_eq!(*s.env.extra_calls.borrow(), vec![extra]);
    }
}

/// Refuses a voucher whose `extra` call fails as `failure`; answers the exit code.
fn extra_failure_exit(failure: ExtraCallFailure) -> u32 {
    let mut s = Setup::new(100);
    s.env.extra_result = Err(failure);
    let mut state = two_lanes(&s);
    let extra = ModVerifyParams { actor: Address::new_id(MINER_ID), method: 9, data: vec![] };
    let sv = SignedVoucher { extra: Some(extra), ..s.voucher(3, 1, 10) };
    let err = refuse_sv(&s, &mut state, by_payer(&s, sv));
    assert_eq!(err, ActorError::ExtraCallFailed(failure));
    err.exit_code().value()
}

#[test]
fn extra_callee_exiting_with_illegal_instruction_illegal_exit_code_or_missing_return_fails_with_exit_23(
) {
    for code in [4, 9, 11] {
        assert_eq!(extra_failure_exit(ExtraCallFailure::Exited(ExitCode::new(code))), 23, "{code}");
    }
}

#[test]
fn extra_callee_exiting_with_any_other_system_code_fails_with_exit_24() {
    for code in [1, 2, 3, 5, 6, 7, 8, 10, 12, 13, 14, 15] {
        assert_eq!(extra_failure_exit(ExtraCallFailure::Exited(ExitCode::new(code))), 24, "{code}");
    }
}

#[test]
fn extra_callee_exiting_with_a_user_code_passes_it_through() {
    for code in [16, 18, 22, 23, 24, 32, 255, 0x1000] {
        assert_eq!(extra_failure_exit(ExtraCallFailure::Exited(ExitCode::new(code))), code);
    }
}

#[test]
fn missing_extra_callee_fails_with_exit_23() {
    assert_eq!(extra_failure_exit(ExtraCallFailure::CalleeMissing), 23);
}

#[test]
fn lane_above_max_lane_is_refused_with_exit_16() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let sv =
        SignedVoucher { merges: merges(&[(MAX_LANE + 1, 1)]), ..s.voucher(MAX_LANE + 1, 1, 1) };
    let err = refuse_sv(&s, &mut state, by_payer(&s, sv));
    assert_refused(&err, matches!(err, ActorError::LaneTooLarge(l) if l == MAX_LANE + 1), 16);
}

#[test]
fn merge_of_a_lane_above_max_lane_is_refused_with_exit_16() {
    let s = Setup::new(100);
    let mut state = two_lanes(&s);
    let sv = SignedVoucher { merges: merges(&[(1, 2), (u64::MAX, 1)]), ..s.voucher(0, 1, 40) };
    let err = refuse_sv(&s, &mut state, by_payer(&s, sv));
    assert_refused(&err, matches!(err, ActorError::LaneTooLarge(u64::MAX)), 16);
}

#[test]
fn stale_nonce_on_an_existing_lane_is_refused_with_exit_16() {
    let s = Setup::new(100);
    let mut state = s.channel();
    redeem(&s, &mut state, by_payer(&s, s.voucher(0, 3, 10)));
    for nonce in [3, 2, 0] {
        // Even for a higher amount.
        let err = refuse_sv(&s, &mut state, by_payer(&s, s.voucher(0, nonce, 50)));
        assert_eq!(err, ActorError::StaleNonce { lane: 0, existing: 3, voucher: nonce });
        assert_refused(&err, matches!(err, ActorError::StaleNonce { .. }), 16);
    }
}

/// One voucher with merges, redeemed on [`two_lanes`]: what it shows, its merges, its
/// `(lane, nonce, amount)`, and the check on the refusal (which always has exit 16).
type MergeCase = (&'static str, &'static [(u64, u64)], (u64, u64, u64), fn(&ActorError) -> bool);

#[test]
fn merge_refusals_exit_16_and_run_in_order() {
    let cases: [MergeCase; 7] = [
        ("a stale nonce is reported before merge errors", &[(1, 1), (9, 1)], (1, 1, 10), |err| {
            matches!(err, ActorError::StaleNonce { lane: 1, .. })
        }),
        ("a merge into the voucher's own lane is refused", &[(1, 9)], (1, 2, 10), |err| {
            matches!(err, ActorError::MergeIntoOwnLane(1))
        }),
        ("a merge of a lane never redeemed is refused", &[(7, 1)], (0, 1, 40), |err| {
            matches!(err, ActorError::MergeLaneMissing(7))
        }),
        ("a merge with a stale nonce is refused", &[(2, 1)], (0, 1, 40), |err| {
            *err == ActorError::MergeStaleNonce { lane: 2, existing: 1, merge: 1 }
                && matches!(err, ActorError::MergeStaleNonce { .. })
        }),
        (
            "merges run in order: own lane before a missing one",
            &[(0, 1), (7, 1)],
            (0, 1, 40),
            |err| matches!(err, ActorError::MergeIntoOwnLane(0)),
        ),
        ("merges run in order: missing before own lane", &[(7, 1), (0, 1)], (0, 1, 40), |err| {
            matches!(err, ActorError::MergeLaneMissing(7))
        }),
        ("merges run in order: stale nonce before missing", &[(2, 1), (7, 1)], (0, 1, 40), |err| {
            matches!(err, ActorError::MergeStaleNonce { lane: 2, .. })
        }),
    ];
    for (shows, pairs, (lane, nonce, amount), check) in cases {
        let s = Setup::new(100);
        let mut state = two_lanes(&s);
        let sv = SignedVoucher { merges: merges(pairs), ..s.voucher(lane, nonce, amount) };
        let err = refuse_sv(&s, &mut state, by_payer(&s, sv));
        assert!(check(&err), "{shows}: {err}");
        assert_exit(&err, 16);
    }
}

#[test]
fn repeating_a_merge_nonce_within_one_voucher_is_refused_and_changes_nothing() {
    let s = Setup::new(100);
    let mut state = two_lanes(&s);
    // The second merge sees the first one's nonce.
    let sv = SignedVoucher { merges: merges(&[(1, 5), (1, 5)]), ..s.voucher(2, 2, 50) };
    let err = refuse_sv(&s, &mut state, by_payer(&s, sv));
    assert_eq!(err, ActorError::MergeStaleNonce { lane: 1, existing: 5, merge: 5 });
    assert_refused(&err, matches!(err, ActorError::MergeStaleNonce { .. }), 16);
    assert_eq!(state.lanes[&1], lane(10, 1), "the first merge was not committed");
}

#[test]
fn a_failed_later_merge_leaves_the_earlier_merged_lane_untouched() {
    let s = Setup::new(100);
    let mut state = two_lanes(&s);
    let before = state.clone();
    let sv = SignedVoucher { merges: merges(&[(1, 5), (2, 6), (8, 1)]), ..s.voucher(0, 1, 40) };
    let err = refuse_sv(&s, &mut state, by_payer(&s, sv));
    assert_refused(&err, matches!(err, ActorError::MergeLaneMissing(8)), 16);
    assert_eq!(state, before);
    assert!(!state.lanes.contains_key(&0));
}

#[test]
fn a_voucher_that_would_make_to_send_negative_is_refused_with_exit_16() {
    let s = Setup::new(100);
    let mut state = two_lanes(&s);
    // Merging lane 2 (20) twice into lane 0 at amount 0: delta −40, to_send 30 − 40 < 0.
    let sv = SignedVoucher {
        merges: merges(&[(2, 2), (2, 3)]),
        min_settle_height: 777,
        ..s.voucher(0, 1, 0)
    };
    let err = refuse_sv(&s, &mut state, by_payer(&s, sv));
    assert_refused(&err, matches!(err, ActorError::NegativeToSend), 16);
    assert_eq!(state.lanes[&2], lane(20, 1));
    assert_eq!(state.min_settle_height, 0);
}

#[test]
fn a_voucher_above_the_balance_is_refused_with_exit_16() {
    let s = Setup::new(100);
    let mut state = s.channel();
    let err = refuse_sv(&s, &mut state, by_payer(&s, s.voucher(0, 1, 101)));
    assert_eq!(err, ActorError::InsufficientFunds { to_send: atto(101), balance: atto(100) });
    assert_refused(&err, matches!(err, ActorError::InsufficientFunds { .. }), 16);
}

#[test]
fn insufficient_funds_after_successful_merges_changes_nothing() {
    let mut s = Setup::new(100);
    let mut state = two_lanes(&s);
    s.env.call.epoch = 10;
    let state_before = state.clone();
    // 130 − (10 + 20) = 100 more: to_send would be 130 > 100.
    let sv = SignedVoucher {
        merges: merges(&[(1, 4), (2, 4)]),
        min_settle_height: 5000,
        ..s.voucher(3, 1, 130)
    };
    let err = refuse_sv(&s, &mut state, by_payer(&s, sv));
    assert_eq!(err, ActorError::InsufficientFunds { to_send: atto(130), balance: atto(100) });
    assert_refused(&err, matches!(err, ActorError::InsufficientFunds { .. }), 16);
    assert_eq!(state, state_before);
    assert_eq!(state.lanes[&1].nonce, 1);
    assert_eq!(state.min_settle_height, 0);
}

// ---------------------------------------------------------------------------------------
// Settle

#[test]
fn settle_by_either_party_starts_the_settle_delay() {
    let mut s = Setup::new(100);
    s.env.call.epoch = 100;
    for caller in [s.payer.id, s.payee.id] {
        s.env.call.caller = caller;
        let mut state = s.channel();
        assert_eq!(settle(&mut state, &s.env).unwrap(), 100 + SETTLE_DELAY);
        assert_eq!(state.settling_at, 100 + SETTLE_DELAY);
        assert!(state.is_settling());
    }
}

#[test]
fn settle_respects_min_settle_height() {
    let mut s = Setup::new(100);
    let mut state = s.channel();
    let sv = SignedVoucher { min_settle_height: 5000, ..s.voucher(0, 1, 1) };
    redeem(&s, &mut state, by_payer(&s, sv));
    s.env.call.epoch = 100;
    let mut early = state.clone();
    assert_eq!(settle(&mut early, &s.env).unwrap(), 5000);
    assert_eq!(early.settling_at, 5000);

    // Once epoch + SETTLE_DELAY passes the height, the delay wins.
    s.env.call.epoch = 4000;
    assert_eq!(settle(&mut state, &s.env).unwrap(), 4000 + SETTLE_DELAY);
}

#[test]
fn settle_by_a_stranger_is_forbidden_with_exit_18() {
    let mut s = Setup::new(100);
    s.env.call.caller = s.stranger.id;
    let mut state = s.channel();
    let before = state.clone();
    let err = settle(&mut state, &s.env).unwrap_err();
    assert_refused(
        &err,
        matches!(err, ActorError::CallerNotParty { caller } if caller == s.stranger.id),
        18,
    );
    assert_eq!(state, before);
}

#[test]
fn second_settle_is_refused_with_exit_20() {
    let mut s = Setup::new(100);
    let mut state = settling(&s);
    let before = state.clone();
    s.env.call.epoch = 500;
    s.env.call.caller = s.payer.id;
    let err = settle(&mut state, &s.env).unwrap_err();
    assert_refused(&err, matches!(err, ActorError::AlreadySettling), 20);
    assert_eq!(state, before, "settling_at is not moved");
}

#[test]
fn settle_checks_the_caller_before_already_settling() {
    let mut s = Setup::new(100);
    let mut state = settling(&s);
    s.env.call.caller = s.stranger.id;
    let err = settle(&mut state, &s.env).unwrap_err();
    assert_refused(&err, matches!(err, ActorError::CallerNotParty { .. }), 18);
}

// ---------------------------------------------------------------------------------------
// Collect

#[test]
fn collect_pays_to_send_to_payee_and_rest_to_payer() {
    let mut s = Setup::new(100);
    let state = settling(&s);
    s.env.call.epoch = state.settling_at;
    for caller in [s.payer.id, s.payee.id] {
        s.env.call.caller = caller;
        let payout = collect(&state, &s.env).unwrap();
        assert_eq!(payout, Payout { to: atto(30), from: atto(70) });
    }
    s.env.call.epoch = state.settling_at + 10_000;
    assert_eq!(collect(&state, &s.env).unwrap(), Payout { to: atto(30), from: atto(70) });
}

#[test]
fn collect_with_nothing_redeemed_returns_everything_to_the_payer() {
    let mut s = Setup::new(100);
    let mut state = s.channel();
    settle(&mut state, &s.env).unwrap();
    s.env.call.epoch = state.settling_at;
    assert_eq!(collect(&state, &s.env).unwrap(), Payout { to: atto(0), from: atto(100) });
}

#[test]
fn collect_before_settle_is_forbidden_with_exit_18() {
    let mut s = Setup::new(100);
    s.env.call.epoch = 1_000_000;
    let state = two_lanes(&s);
    let err = collect(&state, &s.env).unwrap_err();
    assert_eq!(err, ActorError::NotSettled { epoch: 1_000_000, settling_at: 0 });
    assert_refused(&err, matches!(err, ActorError::NotSettled { .. }), 18);
}

#[test]
fn collect_before_settling_at_is_forbidden_with_exit_18() {
    let mut s = Setup::new(100);
    let state = settling(&s);
    s.env.call.epoch = state.settling_at - 1;
    let err = collect(&state, &s.env).unwrap_err();
    assert_eq!(
        err,
        ActorError::NotSettled { epoch: state.settling_at - 1, settling_at: state.settling_at }
    );
    assert_refused(&err, matches!(err, ActorError::NotSettled { .. }), 18);
}

#[test]
fn collect_by_a_stranger_is_forbidden_with_exit_18() {
    let mut s = Setup::new(100);
    let state = settling(&s);
    s.env.call.epoch = state.settling_at;
    s.env.call.caller = s.stranger.id;
    let err = collect(&state, &s.env).unwrap_err();
    assert_refused(
        &err,
        matches!(err, ActorError::CallerNotParty { caller } if caller == s.stranger.id),
        18,
    );
}

#[test]
fn collect_with_a_balance_below_to_send_pays_nothing_and_fails_with_exit_19() {
    let mut s = Setup::new(100);
    let state = settling(&s);
    s.env.call.epoch = state.settling_at;
    s.env.call.balance = atto(29);
    let err = collect(&state, &s.env).unwrap_err();
    assert_eq!(err, ActorError::CollectUnpayable { to_send: atto(30), balance: atto(29) });
    assert_exit(&err, 19);
    // A balance of exactly to_send pays it all to the payee.
    s.env.call.balance = atto(30);
    assert_eq!(collect(&state, &s.env).unwrap(), Payout { to: atto(30), from: atto(0) });
}

#[test]
fn collect_with_a_negative_to_send_pays_nothing_and_fails_with_exit_24() {
    let mut s = Setup::new(100);
    let mut state = settling(&s);
    s.env.call.epoch = state.settling_at;
    state.to_send = TokenAmount::from_atto(-1);
    let err = collect(&state, &s.env).unwrap_err();
    assert_refused(&err, matches!(err, ActorError::CollectUnpayable { .. }), 24);
}

// ---------------------------------------------------------------------------------------
// A whole life

#[test]
fn a_channel_lives_from_construction_to_collection() {
    let mut s = Setup::new(0);
    init_env(&mut s);
    let mut state =
        construct(&s.env, &construct_params(s.payer.key_addr, s.payee.key_addr)).unwrap();

    s.env.call.caller = s.payee.id;
    s.env.call.balance = atto(1000);
    s.env.call.epoch = 10;
    redeem(&s, &mut state, by_payer(&s, s.voucher(0, 1, 100)));
    redeem(&s, &mut state, by_payer(&s, s.voucher(1, 1, 50)));
    let sv = SignedVoucher { merges: merges(&[(1, 2)]), ..s.voucher(0, 2, 300) };
    assert_eq!(redeem(&s, &mut state, by_payer(&s, sv)).delta, atto(150));

    s.env.call.caller = s.payer.id;
    s.env.call.epoch = 20;
    assert_eq!(settle(&mut state, &s.env).unwrap(), 20 + SETTLE_DELAY);

    // The payee hurries in a last voucher before settlement.
    s.env.call.caller = s.payee.id;
    s.env.call.epoch = 20 + SETTLE_DELAY - 1;
    redeem(&s, &mut state, by_payer(&s, s.voucher(0, 3, 400)));

    s.env.call.epoch = 20 + SETTLE_DELAY;
    let err = refuse_sv(&s, &mut state, by_payer(&s, s.voucher(0, 4, 500)));
    assert_refused(&err, matches!(err, ActorError::UpdateAfterSettled { .. }), 32);

    assert_eq!(collect(&state, &s.env).unwrap(), Payout { to: atto(400), from: atto(600) });
}
