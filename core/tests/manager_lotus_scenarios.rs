//! Lotus's payment-channel manager scenarios, reproduced with this manager's semantics.
//!
//! Two differences from Lotus shape the expectations: `voucher_create`'s amount is the
//! lane's new cumulative amount (not an increment), and `voucher_check_valid` runs every
//! rule of the actor as if the payee submitted the voucher now, on the chain's state with the
//! node's stored vouchers laid over it.
//!
//! `voucher_check_valid` needs the channel known to the node. The payer knows its channel
//! from the create; the payee learns an inbound channel on its first `voucher_add`. The
//! check-valid table therefore runs on both sides, each channel first shown to the payee with
//! a zero-amount voucher on a spare lane (it changes no lane total).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};

use paych_core::actor::ActorError;
use paych_core::chain::Chain;
use paych_core::manager::{
    AddOutcome, AddVoucherError, CreateVoucherError, FundsError, ManagerConfig, MessageOutcome,
    SubmitError, TopUpPolicy,
};
use paych_core::store::{Lifecycle, MessagePurpose, MessageState};
use paych_core::types::{Address, SignedVoucher, TokenAmount};
use paych_testkit::amounts::atto;
use paych_testkit::deadline::{eventually, within};
use paych_testkit::devnet::{test_config, Net, Node};
use paych_testkit::keys::sign_as_stranger;

/// A lane no scenario uses: the payee learns each channel from a zero voucher on it.
const SPARE_LANE: u64 = 100;

fn add_funds_messages(node: &Node) -> Vec<(cid::Cid, TokenAmount)> {
    node.m()
        .store()
        .messages()
        .unwrap()
        .into_iter()
        .filter_map(|m| match m.purpose {
            MessagePurpose::AddFunds { amount, .. } => Some((m.cid, amount)),
            _ => None,
        })
        .collect()
}

/// `net` with a channel holding `balance` from a payer (10 FIL) to a payee (none).
async fn with_channel(net: Net, balance: TokenAmount) -> (Net, Node, Node, Address) {
    let (payer, payee, ch) = net.channel(10, 0, balance).await;
    (net, payer, payee, ch)
}

/// Reserves the whole balance of `ch` (100, no message), then 50 more: returns the
/// add-funds message that second reservation sends.
async fn reserve_past_the_balance(payer: &Node, ch: &Address) -> cid::Cid {
    assert_eq!(payer.m().reserve_funds(ch, atto(100)).await.unwrap(), None);
    payer.m().reserve_funds(ch, atto(50)).await.unwrap().expect("an add-funds message")
}

// ----- voucher_check_valid ---------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Signer {
    Payer,
    Payee,
    Stranger,
}

#[derive(Debug, Clone, Copy)]
enum Verdict {
    Valid,
    InsufficientFunds,
    BadSignature,
    StaleNonce,
}

struct Row {
    scenario: &'static str,
    balance: u64,
    /// Vouchers created by the payer (and added by the payee) first: (lane, amount).
    stored: &'static [(u64, u64)],
    signer: Signer,
    lane: u64,
    nonce: u64,
    amount: u64,
    verdict: Verdict,
}

const CHECK_VALID_TABLE: &[Row] = &[
    Row {
        scenario: "balance 10, voucher of 5",
        balance: 10,
        stored: &[],
        signer: Signer::Payer,
        lane: 0,
        nonce: 1,
        amount: 5,
        verdict: Verdict::Valid,
    },
    Row {
        scenario: "balance 5, voucher of 10",
        balance: 5,
        stored: &[],
        signer: Signer::Payer,
        lane: 0,
        nonce: 1,
        amount: 10,
        verdict: Verdict::InsufficientFunds,
    },
    Row {
        scenario: "signed by a stranger",
        balance: 10,
        stored: &[],
        signer: Signer::Stranger,
        lane: 0,
        nonce: 1,
        amount: 5,
        verdict: Verdict::BadSignature,
    },
    Row {
        scenario: "signed by the payee (to)",
        balance: 10,
        stored: &[],
        signer: Signer::Payee,
        lane: 0,
        nonce: 1,
        amount: 5,
        verdict: Verdict::BadSignature,
    },
    Row {
        scenario: "nonce below a stored voucher's",
        balance: 10,
        stored: &[(0, 1), (0, 2), (0, 3)],
        signer: Signer::Payer,
        lane: 0,
        nonce: 2,
        amount: 5,
        verdict: Verdict::StaleNonce,
    },
    Row {
        scenario: "two lanes within the balance each, above it together",
        balance: 10,
        stored: &[(1, 6)],
        signer: Signer::Payer,
        lane: 2,
        nonce: 1,
        amount: 5,
        verdict: Verdict::InsufficientFunds,
    },
    Row {
        scenario: "lane totals exactly at the balance",
        balance: 10,
        stored: &[(1, 6)],
        signer: Signer::Payer,
        lane: 2,
        nonce: 1,
        amount: 4,
        verdict: Verdict::Valid,
    },
];

fn verdict_holds(verdict: Verdict, result: &Result<(), AddVoucherError>) -> bool {
    use AddVoucherError::InvalidVoucher;
    match verdict {
        Verdict::Valid => result.is_ok(),
        Verdict::InsufficientFunds => {
            matches!(result, Err(InvalidVoucher(ActorError::InsufficientFunds { .. })))
        }
        Verdict::BadSignature => {
            matches!(result, Err(InvalidVoucher(ActorError::InvalidSignature(_))))
        }
        Verdict::StaleNonce => matches!(result, Err(InvalidVoucher(ActorError::StaleNonce { .. }))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_valid_applies_every_actor_rule_on_both_sides_of_the_channel() {
    let net = Net::new();
    let (payer, payee) = net.pair(10, 0).await;

    for row in CHECK_VALID_TABLE {
        let ch = payer.open_channel(payee.addr, atto(row.balance)).await;
        let zero = payer.create_voucher(&ch, atto(0), SPARE_LANE).await;
        payee.m().voucher_add(&ch, &zero, atto(0)).await.unwrap();
        for (lane, amount) in row.stored {
            let v = payer.m().voucher_create(&ch, atto(*amount), *lane).await.unwrap();
            let v =
                v.voucher.unwrap_or_else(|| panic!("{}: stored voucher not created", row.scenario));
            payee.m().voucher_add(&ch, &v, atto(0)).await.unwrap();
        }

        let unsigned = SignedVoucher::new(ch, row.lane, row.nonce, atto(row.amount));
        let voucher = match row.signer {
            Signer::Payer => payer.sign(unsigned),
            Signer::Payee => payee.sign(unsigned),
            Signer::Stranger => sign_as_stranger(unsigned),
        };
        for (side, node) in [("payer", &payer), ("payee", &payee)] {
            let before = node.snapshot();
            let result = node.m().voucher_check_valid(&ch, &voucher).await;
            assert!(
                verdict_holds(row.verdict, &result),
                "{} ({side} side): expected {:?}, got {result:?}",
                row.scenario,
                row.verdict
            );
            assert_eq!(
                node.snapshot(),
                before,
                "{} ({side} side): a check changed the store",
                row.scenario
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_valid_on_a_channel_the_chain_does_not_know_is_an_unknown_channel() {
    let (_net, payer, payee, ch) = with_channel(Net::new(), atto(10)).await;
    let ghost = Address::new_id(999_999);
    let voucher = payer.sign(SignedVoucher::new(ghost, 0, 1, atto(5)));

    let result = payee.m().voucher_check_valid(&ghost, &voucher).await;
    assert!(matches!(result, Err(AddVoucherError::UnknownChannel(_))), "{result:?}");
    assert!(payee.m().store().channels().unwrap().is_empty());
    // The payer, which created the channel, can check a voucher on it.
    let voucher = payer.sign(SignedVoucher::new(ch, 0, 1, atto(5)));
    payer.m().voucher_check_valid(&ch, &voucher).await.unwrap();
}

// ----- voucher_create ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vouchers_are_created_up_to_the_balance_and_one_atto_more_is_a_shortfall_of_one() {
    let (_net, payer, _payee, ch) = with_channel(Net::new(), atto(10)).await;

    let first = payer.m().voucher_create(&ch, atto(4), 0).await.unwrap();
    assert_eq!(first.shortfall, atto(0));
    let first = first.voucher.unwrap();
    assert_eq!((first.lane, first.nonce, first.amount.clone()), (0, 1, atto(4)));
    let second = payer.m().voucher_create(&ch, atto(6), 1).await.unwrap();
    assert_eq!(second.shortfall, atto(0));
    assert!(second.voucher.is_some());

    let before = payer.snapshot();
    for (lane, amount) in [(0, 5), (1, 7), (2, 1)] {
        let over = payer.m().voucher_create(&ch, atto(amount), lane).await.unwrap();
        assert_eq!(over.voucher, None, "lane {lane} amount {amount}");
        assert_eq!(over.shortfall, atto(1), "lane {lane} amount {amount}");
    }
    assert_eq!(payer.snapshot(), before, "a shortfall stored something");

    let status = payer.m().status(&ch).await.unwrap();
    assert_eq!(status.voucher_redeemed, atto(10));
    assert_eq!(status.available, atto(0));
}

// ----- voucher_add ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_adds_vouchers_with_a_min_delta_idempotently_and_calls_older_ones_covered() {
    let (_net, payer, payee, ch) = with_channel(Net::new(), atto(100)).await;
    let create = |amount: u64| {
        let m = payer.m().clone();
        async move { m.voucher_create(&ch, atto(amount), 0).await.unwrap().voucher.unwrap() }
    };
    let v1 = create(10).await;
    let v2 = create(15).await;
    let v3 = create(40).await;

    assert_eq!(
        payee.m().voucher_add(&ch, &v1, atto(5)).await.unwrap(),
        AddOutcome::Accepted { delta: atto(10) }
    );

    // Below the minimum delta: refused, nothing stored.
    let before = payee.snapshot();
    let below = payee.m().voucher_add(&ch, &v2, atto(10)).await;
    assert!(
        matches!(&below, Err(AddVoucherError::BelowMinDelta { delta, min_delta }) if *delta == atto(5) && *min_delta == atto(10)),
        "{below:?}"
    );
    assert_eq!(payee.snapshot(), before);

    // v3 skips v2: its delta is over v1.
    assert_eq!(
        payee.m().voucher_add(&ch, &v3, atto(10)).await.unwrap(),
        AddOutcome::Accepted { delta: atto(30) }
    );
    // The same voucher again: already held, credited nothing again, nothing new stored.
    let before = payee.snapshot();
    assert_eq!(payee.m().voucher_add(&ch, &v3, atto(10)).await.unwrap(), AddOutcome::AlreadyHeld);
    assert_eq!(payee.m().voucher_add(&ch, &v1, atto(0)).await.unwrap(), AddOutcome::AlreadyHeld);
    // v2 arrives late: the lane's 40 already includes it.
    assert_eq!(
        payee.m().voucher_add(&ch, &v2, atto(0)).await.unwrap(),
        AddOutcome::Covered { lane_amount: atto(40) }
    );
    assert_eq!(payee.snapshot(), before);

    // A different voucher with v3's lane and nonce.
    let mut forged = v3.clone();
    forged.amount = atto(41);
    let forged = payer.sign(forged);
    let conflict = payee.m().voucher_add(&ch, &forged, atto(0)).await;
    assert!(
        matches!(conflict, Err(AddVoucherError::ConflictingVoucher { lane: 0, nonce: 3 })),
        "{conflict:?}"
    );
    assert_eq!(payee.snapshot(), before);
}

// ----- lanes ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_lane_follows_the_highest_lane_used_on_either_side() {
    let (_net, payer, payee, ch) = with_channel(Net::new(), atto(100)).await;

    assert_eq!(payer.m().status(&ch).await.unwrap().next_lane, 0);
    assert_eq!(payer.m().allocate_lane(&ch).await.unwrap(), 0);
    assert_eq!(payer.m().allocate_lane(&ch).await.unwrap(), 1);
    assert_eq!(payer.m().status(&ch).await.unwrap().next_lane, 2);

    // A voucher on a higher lane moves the next lane past it.
    let on_7 = payer.create_voucher(&ch, atto(1), 7).await;
    assert_eq!(payer.m().status(&ch).await.unwrap().next_lane, 8);
    let on_3 = payer.create_voucher(&ch, atto(1), 3).await;
    assert_eq!(payer.m().status(&ch).await.unwrap().next_lane, 8);
    assert_eq!(payer.m().allocate_lane(&ch).await.unwrap(), 8);

    // The payee's bookkeeping follows the lanes of the vouchers it adds.
    payee.m().voucher_add(&ch, &on_3, atto(0)).await.unwrap();
    assert_eq!(payee.m().status(&ch).await.unwrap().next_lane, 4);
    payee.m().voucher_add(&ch, &on_7, atto(0)).await.unwrap();
    assert_eq!(payee.m().status(&ch).await.unwrap().next_lane, 8);
    let on_1 = payer.create_voucher(&ch, atto(1), 1).await;
    payee.m().voucher_add(&ch, &on_1, atto(0)).await.unwrap();
    assert_eq!(payee.m().status(&ch).await.unwrap().next_lane, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_lanes_are_reused_lowest_first_and_continue_their_cumulative_amount() {
    let (_net, payer, _payee, ch) = with_channel(Net::new(), atto(1000)).await;
    let m = payer.m();

    assert_eq!(m.lease_lane(&ch).await.unwrap(), 0);
    assert_eq!(m.lease_lane(&ch).await.unwrap(), 1);
    assert_eq!(m.lease_lane(&ch).await.unwrap(), 2);
    for (lane, amount) in [(0, 10), (1, 20), (2, 30)] {
        m.voucher_create(&ch, atto(amount), lane).await.unwrap().voucher.unwrap();
    }

    // Flows on lanes 2 and 0 end; the next flow gets the lowest returned lane.
    m.return_lane(&ch, 2).await.unwrap();
    m.return_lane(&ch, 0).await.unwrap();
    assert_eq!(m.lease_lane(&ch).await.unwrap(), 0);
    let next = m.voucher_create(&ch, atto(15), 0).await.unwrap().voucher.unwrap();
    assert_eq!((next.lane, next.nonce, next.amount), (0, 2, atto(15)));
    let lower = m.voucher_create(&ch, atto(5), 0).await;
    assert!(
        matches!(&lower, Err(CreateVoucherError::AmountBelowLane { lane: 0, previous, .. }) if *previous == atto(15)),
        "{lower:?}"
    );

    // allocate_lane never hands out a returned lane.
    m.return_lane(&ch, 1).await.unwrap();
    assert_eq!(m.allocate_lane(&ch).await.unwrap(), 3);
    assert_eq!(m.lease_lane(&ch).await.unwrap(), 1);
    assert_eq!(m.lease_lane(&ch).await.unwrap(), 2);
    assert_eq!(m.lease_lane(&ch).await.unwrap(), 4);
    let continued = m.voucher_create(&ch, atto(31), 2).await.unwrap().voucher.unwrap();
    assert_eq!((continued.nonce, continued.amount), (2, atto(31)));
    assert_eq!(m.status(&ch).await.unwrap().voucher_redeemed, atto(15 + 20 + 31));
}

// ----- spendability and submission ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_spendable_shrinks_as_vouchers_are_submitted_and_a_resubmission_is_refused() {
    let net = Net::new();
    let (payer, payee, ch) = net.channel(10, 10, atto(1000)).await;

    let mut best = BTreeMap::new();
    let mut older = BTreeMap::new();
    for lane in 0..2u64 {
        for step in 1..=2u64 {
            let v = payer
                .m()
                .voucher_create(&ch, atto(100 * step), lane)
                .await
                .unwrap()
                .voucher
                .unwrap();
            payee.m().voucher_add(&ch, &v, atto(0)).await.unwrap();
            if step == 1 {
                older.insert(lane, v);
            } else {
                best.insert(lane, v);
            }
        }
    }
    let spendable = payee.m().voucher_best_spendable(&ch).await.unwrap();
    assert_eq!(spendable, best.values().cloned().collect::<Vec<_>>());

    let lane0 = &best[&0];
    assert!(payee.m().voucher_check_spendable(&ch, lane0, &[]).await.unwrap());
    let cid = payee.m().voucher_submit(&ch, lane0, &[]).await.unwrap();
    // Submitted but not landed: not spendable (an answer, not an error).
    assert!(!payee.m().voucher_check_spendable(&ch, lane0, &[]).await.unwrap());
    assert!(!payee.m().voucher_check_spendable(&ch, &older[&0], &[]).await.unwrap());
    assert_eq!(payee.m().voucher_best_spendable(&ch).await.unwrap(), vec![best[&1].clone()]);

    let outcome = within("the submit to land", payee.m().wait_message(&cid)).await.unwrap();
    assert!(matches!(outcome, MessageOutcome::Landed { exit_code: 0, .. }), "{outcome:?}");
    assert_eq!(net.devnet.channel(&ch).await.unwrap().state.to_send, atto(200));
    assert!(!payee.m().voucher_check_spendable(&ch, lane0, &[]).await.unwrap());

    for again in [lane0, &older[&0]] {
        let refused = payee.m().voucher_submit(&ch, again, &[]).await;
        assert!(
            matches!(refused, Err(SubmitError::AlreadySubmitted { lane: 0, .. })),
            "{refused:?}"
        );
    }
    // The other lane is still spendable and submits.
    let cid = payee.m().voucher_submit(&ch, &best[&1], &[]).await.unwrap();
    within("the second submit to land", payee.m().wait_message(&cid)).await.unwrap();
    assert_eq!(net.devnet.channel(&ch).await.unwrap().state.to_send, atto(400));
    assert!(payee.m().voucher_best_spendable(&ch).await.unwrap().is_empty());
}

// ----- funds ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_queued_behind_an_add_funds_share_one_coalesced_message() {
    let (net, payer, _payee, ch) = with_channel(Net::manual(), atto(100)).await;
    let first = reserve_past_the_balance(&payer, &ch).await;
    let status = payer.m().status(&ch).await.unwrap();
    assert_eq!(status.pending_message, Some(first));
    assert_eq!(status.pending, atto(50));

    // Three more reservations while the first add-funds is unmined: all queued.
    let waiters: Vec<_> = [10u64, 20, 30]
        .into_iter()
        .map(|amount| {
            let m = payer.m().clone();
            tokio::spawn(async move { m.reserve_funds(&ch, atto(amount)).await })
        })
        .collect();
    eventually("the three reservations to queue", || async {
        payer.m().status(&ch).await.unwrap().queued == atto(60)
    })
    .await;

    // The first lands; the queue goes out as one message, whose CID every waiter gets.
    net.mine(1);
    let mut answers = Vec::new();
    for waiter in waiters {
        answers.push(within("a queued reservation", waiter).await.unwrap().unwrap());
    }
    let next = answers[0].expect("queued reservations answer the next message");
    assert_ne!(next, first);
    assert!(answers.iter().all(|a| *a == Some(next)), "{answers:?}");
    let adds = add_funds_messages(&payer);
    assert_eq!(adds.len(), 2, "{adds:?}");
    assert!(adds.contains(&(first, atto(50))));
    assert!(adds.contains(&(next, atto(60))));

    let outcome = net.mine_until_landed(payer.m(), &next).await;
    assert!(matches!(outcome, MessageOutcome::Landed { exit_code: 0, .. }), "{outcome:?}");
    let status = payer.m().status(&ch).await.unwrap();
    assert_eq!(status.confirmed, atto(210));
    assert_eq!(status.reserved, atto(210));
    assert_eq!(status.available, atto(0));
    assert_eq!(net.devnet.channel(&ch).await.unwrap().balance, atto(210));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funding_a_channel_being_created_adds_funds_without_touching_reservations() {
    let net = Net::manual();
    let (payer, payee) = net.pair(10, 0).await;
    let created = payer.m().get(payer.addr, payee.addr, atto(100)).await.unwrap();
    let create = created.wait_sentinel.expect("a create message");
    let funded = payer.m().fund(payer.addr, payee.addr, atto(50)).await.unwrap();
    assert_eq!(funded.id, created.id);
    assert_eq!(funded.wait_sentinel, Some(create));

    let ch = net.mine_until_landed(payer.m(), &create).await;
    assert!(matches!(ch, MessageOutcome::Landed { exit_code: 0, .. }), "{ch:?}");
    let ch = payer.m().get_wait_ready(&create).await.unwrap();
    let next = within("the queued funds to be sent", async {
        loop {
            let status = payer.m().status(&ch).await.unwrap();
            if let Some(cid) = status.pending_message {
                return cid;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    net.mine_until_landed(payer.m(), &next).await;
    let status = payer.m().status(&ch).await.unwrap();
    assert_eq!(status.confirmed, atto(150));
    assert_eq!(status.reserved, atto(100), "the reservation made by get stays whole");
    assert_eq!(status.available, atto(50));
    assert_eq!(status.queued, atto(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_queued_behind_a_refused_add_funds_are_told_it_failed() {
    let (net, payer, _payee, ch) = with_channel(Net::manual(), atto(100)).await;
    let first = reserve_past_the_balance(&payer, &ch).await;

    // Queued behind the first: more than the payer's whole wallet, so the message that would
    // carry it is refused by the pool.
    let waiter = {
        let m = payer.m().clone();
        tokio::spawn(async move { m.reserve_funds(&ch, TokenAmount::from_whole(20)).await })
    };
    eventually("the reservation to queue", || async {
        payer.m().status(&ch).await.unwrap().queued.is_positive()
    })
    .await;
    net.mine(1);
    let answer = within("the queued reservation", waiter).await.unwrap();
    assert!(matches!(answer, Err(FundsError::ReservationFailed(_))), "{answer:?}");

    // The first message landed and its reservation holds; nothing of the refused one is left.
    let outcome = payer.m().wait_message(&first).await.unwrap();
    assert!(matches!(outcome, MessageOutcome::Landed { exit_code: 0, .. }), "{outcome:?}");
    let status = payer.m().status(&ch).await.unwrap();
    assert_eq!(status.queued, atto(0));
    assert_eq!(status.pending, atto(0));
    assert_eq!(status.pending_message, None);
    assert_eq!(status.confirmed, atto(150));
    assert_eq!(status.reserved, atto(150));
    assert_eq!(status.available, atto(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_fails_on_chain_or_is_refused_leaves_the_next_create_working() {
    let (net, payer, _payee, _first) = with_channel(Net::new(), atto(100)).await;

    // A channel whose payee is an actor address no actor has: the constructor's send to
    // create it fails, and it exits with 23.
    let nobody = Address::new_actor(b"no actor has this address");
    let handle = payer.m().create(payer.addr, nobody, atto(100), atto(0)).await.unwrap();
    let failed =
        within("the failing create", payer.m().get_wait_ready(&handle.wait_sentinel.unwrap()))
            .await;
    assert!(matches!(failed, Err(FundsError::MessageFailed { exit_code: 23, .. })), "{failed:?}");
    let record = payer.m().store().channel(handle.id).unwrap().unwrap();
    assert_eq!(record.lifecycle, Lifecycle::CreateFailed);
    assert!(record.create_error.as_deref().unwrap_or_default().contains("23"), "{record:?}");
    assert_eq!(
        (record.pending, record.confirmed, record.pending_message),
        (atto(0), atto(0), None)
    );
    assert_eq!(payer.m().lookup(&payer.addr, &nobody).unwrap(), None);

    // A create the message pool refuses: the payer cannot afford it.
    let other = net.node(0).await;
    let refused =
        payer.m().create(payer.addr, other.addr, TokenAmount::from_whole(1000), atto(0)).await;
    assert!(matches!(refused, Err(FundsError::MessageRefused { .. })), "{refused:?}");
    let record = payer.m().store().channels().unwrap().into_iter().last().unwrap();
    assert_eq!((record.to, record.lifecycle), (other.addr, Lifecycle::CreateFailed));
    assert_eq!(payer.m().lookup(&payer.addr, &other.addr).unwrap(), None);

    // The next create to the same payee works.
    let handle = payer.m().get(payer.addr, other.addr, atto(70)).await.unwrap();
    assert_ne!(handle.id, record.id);
    let ch = within("the create", payer.m().get_wait_ready(&handle.wait_sentinel.unwrap()))
        .await
        .unwrap();
    let status = payer.m().status(&ch).await.unwrap();
    assert_eq!(
        (status.lifecycle, status.confirmed, status.reserved),
        (Lifecycle::Open, atto(70), atto(70))
    );
    assert_eq!(payer.m().lookup(&payer.addr, &other.addr).unwrap().map(|h| h.id), Some(handle.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_mined_while_the_node_is_down_is_found_again_on_restart() {
    let net = Net::manual();
    let (payer, payee) = net.pair(10, 0).await;

    let handle = payer.m().create(payer.addr, payee.addr, atto(100), atto(40)).await.unwrap();
    let sentinel = handle.wait_sentinel.unwrap();
    let payer = payer.stop().await;
    net.mine(1);
    let payer = payer.started().await;

    let ch = within("the create found again", payer.m().get_wait_ready(&sentinel)).await.unwrap();
    let status = payer.m().status(&ch).await.unwrap();
    assert_eq!(status.lifecycle, Lifecycle::Open);
    assert_eq!(
        (status.confirmed, status.pending, status.pending_message),
        (atto(100), atto(0), None)
    );
    assert_eq!(status.reserved, atto(40));
    assert_eq!(status.available, atto(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_funds_mined_while_the_node_is_down_is_found_again_on_restart() {
    let (net, payer, _payee, ch) = with_channel(Net::manual(), atto(100)).await;

    let cid = payer.m().add_funds(&ch, atto(25)).await.unwrap();
    assert_eq!(payer.m().status(&ch).await.unwrap().pending, atto(25));
    let payer = payer.stop().await;
    net.mine(1);
    let payer = payer.started().await;

    let outcome = within("the add-funds found again", payer.m().wait_message(&cid)).await.unwrap();
    assert!(matches!(outcome, MessageOutcome::Landed { exit_code: 0, .. }), "{outcome:?}");
    let status = payer.m().status(&ch).await.unwrap();
    assert_eq!(
        (status.confirmed, status.pending, status.pending_message),
        (atto(125), atto(0), None)
    );
    assert_eq!(status.available, atto(125));
    let record = payer.m().store().message(&cid).unwrap().unwrap();
    assert!(matches!(record.state, MessageState::Landed { exit_code: 0, .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn available_funds_follow_a_channel_through_create_queue_confirmation_reservation_and_vouchers(
) {
    let net = Net::manual();
    let (payer, payee) = net.pair(10, 0).await;
    let (from, to) = (payer.addr, payee.addr);
    let funds = || payer.m().available_funds_by_from_to(&from, &to);

    // Nothing yet.
    let f = funds().await.unwrap();
    assert_eq!(
        (f.channel, f.confirmed.clone(), f.pending.clone(), f.queued.clone()),
        (None, atto(0), atto(0), atto(0))
    );

    // Creating, with everything reserved: pending, none of it available later.
    let handle = payer.m().get(from, to, atto(100)).await.unwrap();
    let create = handle.wait_sentinel.unwrap();
    let f = funds().await.unwrap();
    assert_eq!(f.channel, None);
    assert_eq!(
        (f.confirmed.clone(), f.pending.clone(), f.queued.clone()),
        (atto(0), atto(100), atto(0))
    );
    assert_eq!(f.pending_wait_sentinel, Some(create));
    assert_eq!((f.non_reserved.clone(), f.pending_available.clone()), (atto(0), atto(0)));

    // A second get while creating: queued behind the create.
    let queued_get = {
        let m = payer.m().clone();
        tokio::spawn(async move { m.get(from, to, atto(30)).await })
    };
    eventually("the second get to queue", || async { funds().await.unwrap().queued == atto(30) })
        .await;
    let f = funds().await.unwrap();
    assert_eq!((f.pending.clone(), f.pending_available.clone()), (atto(100), atto(0)));

    // The create lands; the queue goes out as an add-funds.
    net.mine(1);
    let handle = within("the queued get", queued_get).await.unwrap().unwrap();
    let add = handle.wait_sentinel.expect("the queued get waits for the add-funds");
    assert_ne!(add, create);
    let ch = handle.channel.unwrap();
    let f = funds().await.unwrap();
    assert_eq!(f.channel, Some(ch));
    assert_eq!(
        (f.confirmed.clone(), f.pending.clone(), f.queued.clone()),
        (atto(100), atto(30), atto(0))
    );
    assert_eq!(f.pending_wait_sentinel, Some(add));
    assert_eq!(
        (f.non_reserved.clone(), f.pending_available.clone(), f.voucher_redeemed.clone()),
        (atto(0), atto(0), atto(0))
    );

    // Confirmed: everything reserved.
    net.mine_until_landed(payer.m(), &add).await;
    let f = funds().await.unwrap();
    assert_eq!(
        (f.confirmed.clone(), f.pending.clone(), f.non_reserved.clone()),
        (atto(130), atto(0), atto(0))
    );
    assert_eq!(f.pending_wait_sentinel, None);

    // A voucher spends reserved funds; a release makes the rest available.
    payer.create_voucher(&ch, atto(40), 0).await;
    let f = funds().await.unwrap();
    assert_eq!((f.voucher_redeemed.clone(), f.non_reserved.clone()), (atto(40), atto(0)));
    payer.m().release_funds(&ch, atto(50)).await.unwrap();
    let f = funds().await.unwrap();
    assert_eq!(
        (f.voucher_redeemed.clone(), f.non_reserved.clone(), f.pending_available.clone()),
        (atto(40), atto(50), atto(50))
    );
    assert_eq!(payer.m().status(&ch).await.unwrap().reserved, atto(40));
    assert_eq!(payer.m().available_funds(&ch).await.unwrap(), f);

    // Funds added without a reservation are available once they land.
    let fund = payer.m().fund(from, to, atto(20)).await.unwrap().wait_sentinel.unwrap();
    let f = funds().await.unwrap();
    assert_eq!(
        (f.pending.clone(), f.pending_available.clone(), f.pending_wait_sentinel),
        (atto(20), atto(70), Some(fund))
    );
    net.mine(1);
    within("the fund message", payer.m().wait_message(&fund)).await.unwrap();
    let f = funds().await.unwrap();
    assert_eq!(
        (f.confirmed, f.pending, f.non_reserved, f.pending_available),
        (atto(150), atto(0), atto(70), atto(70))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_settle_the_next_get_creates_a_new_channel() {
    let net = Net::new();
    let (payer, payee) = net.pair(10, 0).await;
    let (from, to) = (payer.addr, payee.addr);

    let first = payer.m().get(from, to, atto(100)).await.unwrap();
    let ch1 = within("the create", payer.m().get_wait_ready(&first.wait_sentinel.unwrap()))
        .await
        .unwrap();
    assert_eq!(payer.m().lookup(&from, &to).unwrap().map(|h| h.id), Some(first.id));
    // While open, get reuses the channel.
    let again = payer.m().get(from, to, atto(0)).await.unwrap();
    assert_eq!((again.id, again.channel), (first.id, Some(ch1)));

    let settle = payer.m().settle(&ch1).await.unwrap();
    within("the settle", payer.m().wait_message(&settle)).await.unwrap();
    assert_eq!(payer.m().lookup(&from, &to).unwrap(), None);

    let second = payer.m().get(from, to, atto(50)).await.unwrap();
    assert_ne!(second.id, first.id);
    let ch2 = within("the second create", payer.m().get_wait_ready(&second.wait_sentinel.unwrap()))
        .await
        .unwrap();
    assert_ne!(ch2, ch1);
    assert_eq!(payer.m().status(&ch2).await.unwrap().confirmed, atto(50));
    assert_ne!(payer.m().status(&ch1).await.unwrap().lifecycle, Lifecycle::Open);
    assert_eq!(payer.m().lookup(&from, &to).unwrap().map(|h| h.id), Some(second.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_top_up_refills_a_channel_spent_below_low_water_and_small_reservations_send_nothing() {
    let net = Net::new();
    let policy = TopUpPolicy { low_water: atto(300), high_water: atto(1000) };
    let config = ManagerConfig { top_up: Some(policy), ..test_config() };
    let payer = net.node_with(10, config).await;
    let payee = net.node(0).await;
    let ch = payer.open_channel(payee.addr, atto(1000)).await;
    let messages = || payer.m().store().messages().unwrap().len();
    let sent = messages();

    // Reservations within available funds send no message.
    assert_eq!(payer.m().reserve_funds(&ch, atto(100)).await.unwrap(), None);
    payer.m().release_funds(&ch, atto(100)).await.unwrap();
    assert_eq!(payer.m().reserve_funds(&ch, atto(600)).await.unwrap(), None);
    assert_eq!(messages(), sent);

    // Vouchers bring available funds to 200, below low water: one add-funds of 800.
    payer.create_voucher(&ch, atto(800), 0).await;
    eventually("the top-up to land", || async {
        payer.m().status(&ch).await.unwrap().confirmed == atto(1800)
    })
    .await;
    let adds = add_funds_messages(&payer);
    assert_eq!(adds.iter().map(|(_, a)| a.clone()).collect::<Vec<_>>(), vec![atto(800)]);
    let status = payer.m().status(&ch).await.unwrap();
    assert_eq!(
        (status.available, status.reserved, status.voucher_redeemed),
        (atto(1000), atto(0), atto(800))
    );

    // Back above low water: a reservation below available sends nothing.
    let sent = messages();
    assert_eq!(payer.m().reserve_funds(&ch, atto(500)).await.unwrap(), None);
    assert_eq!(messages(), sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_flows_on_one_channel_never_over_allocate() {
    let (net, payer, _payee, ch) = with_channel(Net::new(), atto(5_000)).await;

    // Each flow pays on its own lane, three rounds of: reserve 30, pay 20 more, release 10.
    // Together they want more than the channel holds, so some reservations add funds.
    let flows: Vec<_> = (0..100u64)
        .map(|lane| {
            let m = payer.m().clone();
            tokio::spawn(async move {
                let mut issued = Vec::new();
                for round in 1..=3u64 {
                    m.reserve_funds(&ch, atto(30)).await.unwrap();
                    let created = m.voucher_create(&ch, atto(20 * round), lane).await.unwrap();
                    if let Some(v) = created.voucher {
                        issued.push(v);
                    }
                    match m.release_funds(&ch, atto(10)).await {
                        Ok(()) | Err(FundsError::ReleaseExceedsReserved { .. }) => {}
                        Err(e) => panic!("release on lane {lane}: {e}"),
                    }
                    let status = m.status(&ch).await.unwrap();
                    assert!(
                        status.reserved.clone() + &status.voucher_redeemed <= status.confirmed,
                        "{status:?}"
                    );
                }
                issued
            })
        })
        .collect();
    let mut issued = Vec::new();
    for flow in flows {
        issued.extend(within("a flow", flow).await.unwrap());
    }

    // No (lane, nonce) twice; the spent total is every lane's last amount.
    let mut seen = HashMap::new();
    for v in &issued {
        assert!(
            seen.insert((v.lane, v.nonce), v.clone()).is_none(),
            "({}, {}) issued twice",
            v.lane,
            v.nonce
        );
    }
    let mut last = BTreeMap::new();
    for v in &issued {
        let entry = last.entry(v.lane).or_insert((0, atto(0)));
        if v.nonce > entry.0 {
            *entry = (v.nonce, v.amount.clone());
        }
    }
    let spent: TokenAmount = last.values().map(|(_, a)| a.clone()).sum();

    eventually("every add-funds to land", || async {
        let s = payer.m().status(&ch).await.unwrap();
        s.pending_message.is_none() && s.queued.is_zero() && s.pending.is_zero()
    })
    .await;
    let status = payer.m().status(&ch).await.unwrap();
    assert_eq!(status.voucher_redeemed, spent);
    assert!(status.reserved.clone() + &status.voucher_redeemed <= status.confirmed, "{status:?}");
    assert!(!status.available.is_negative());
    assert_eq!(
        status.available,
        status.confirmed.clone() - &status.voucher_redeemed - &status.reserved
    );
    assert_eq!(net.devnet.channel(&ch).await.unwrap().balance, status.confirmed);
    assert_eq!(payer.m().voucher_list(&ch).unwrap().len(), issued.len());
}

// ----- beyond Lotus ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_queued_on_a_channel_that_starts_settling_is_refused_not_left_waiting() {
    let (net, payer, _payee, ch) = with_channel(Net::manual(), atto(100)).await;

    assert_eq!(payer.m().reserve_funds(&ch, atto(100)).await.unwrap(), None);
    let first = payer.m().reserve_funds(&ch, atto(50)).await.unwrap().unwrap();
    let waiter = {
        let m = payer.m().clone();
        tokio::spawn(async move { m.reserve_funds(&ch, atto(20)).await })
    };
    eventually("the reservation to queue", || async {
        payer.m().status(&ch).await.unwrap().queued == atto(20)
    })
    .await;

    // The channel starts settling before the queue could go out: it never will.
    payer.m().settle(&ch).await.unwrap();
    net.mine_until_landed(payer.m(), &first).await;
    let answer = within("the queued reservation to be answered", waiter).await.unwrap();
    assert!(matches!(answer, Err(FundsError::ChannelNotOpen { .. })), "{answer:?}");
    assert_eq!(add_funds_messages(&payer).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_vouchers_on_a_new_inbound_channel_learn_it_once() {
    let (_net, payer, payee, ch) = with_channel(Net::new(), atto(1000)).await;
    let mut vouchers = Vec::new();
    for lane in 0..8u64 {
        vouchers.push(payer.create_voucher(&ch, atto(10 + lane), lane).await);
    }

    let adds: Vec<_> = vouchers
        .iter()
        .cloned()
        .map(|v| {
            let m = payee.m().clone();
            tokio::spawn(async move { m.voucher_add(&ch, &v, atto(1)).await })
        })
        .collect();
    for (add, v) in adds.into_iter().zip(&vouchers) {
        let outcome = within("a first add", add).await.unwrap().unwrap();
        assert_eq!(outcome, AddOutcome::Accepted { delta: v.amount.clone() });
    }
    let channels = payee.m().store().channels().unwrap();
    assert_eq!(channels.len(), 1, "{channels:?}");
    assert_eq!(channels[0].next_lane, 8);
    assert_eq!(payee.m().voucher_list(&ch).unwrap(), vouchers);
}
