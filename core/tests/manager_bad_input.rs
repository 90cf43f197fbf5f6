//! Bad input of any kind gets a typed error and changes nothing stored: every scenario
//! compares both nodes' channels, vouchers and messages before and after each bad call, and
//! checks that no chain message was sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::any::Any;
use std::future::Future;

use paych_core::actor::ActorError;
use paych_core::chain::Chain;
use paych_core::manager::{
    AddVoucherError, CheckVoucherError, CreateVoucherError, FundsError, LaneError, LookupError,
    SettleError, SubmitError,
};
use paych_core::store::Direction;
use paych_core::types::{Address, SignedVoucher, TokenAmount, MAX_LANE};
use paych_testkit::amounts::atto;
use paych_testkit::devnet::{Net, Node};
use paych_testkit::keys::{sign_as_stranger, stranger_address};
use paych_testkit::store::StoreSnapshot;

/// A payer and a payee with two channels between them (`a` known to both sides, `b` known to
/// the payer only), and a third node party to nothing.
struct World {
    net: Net,
    payer: Node,
    payee: Node,
    third: Node,
    a: Address,
    b: Address,
}

impl World {
    async fn new() -> Self {
        let net = Net::new();
        let [payer, payee, third] = net.nodes(10).await;
        let a = payer.open_channel(payee.addr, atto(1000)).await;
        let b = payer.open_channel(payee.addr, atto(1000)).await;
        // The payee learns `a` from two vouchers on lane 0: nonce 1 (10) and nonce 2 (20).
        for amount in [10, 20] {
            let v = payer.create_voucher(&a, atto(amount), 0).await;
            payee.m().voucher_add(&a, &v, atto(0)).await.unwrap();
        }
        payer.m().reserve_funds(&a, atto(100)).await.unwrap();
        World { net, payer, payee, third, a, b }
    }

    fn nodes(&self) -> [&Node; 3] {
        [&self.payer, &self.payee, &self.third]
    }

    fn snapshots(&self) -> Vec<StoreSnapshot> {
        self.nodes().iter().map(|n| n.snapshot()).collect()
    }

    async fn chain_nonces(&self) -> Vec<u64> {
        let mut nonces = Vec::new();
        for node in self.nodes() {
            nonces.push(self.net.devnet.next_nonce(&node.addr).await.unwrap());
        }
        nonces
    }

    /// Runs a bad call: it must fail with an error `expected` accepts, and change nothing
    /// stored on any node nor send any message.
    async fn refuses<T: std::fmt::Debug, E: Refusal>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, E>>,
        expected: impl Fn(&dyn Refusal) -> bool,
    ) {
        let (stores, nonces) = (self.snapshots(), self.chain_nonces().await);
        match call.await {
            Ok(v) => panic!("{what}: accepted, answered {v:?}"),
            Err(e) => assert!(expected(&e), "{what}: wrong error {e:?}"),
        }
        assert!(self.snapshots() == stores, "{what}: the store changed");
        assert_eq!(self.chain_nonces().await, nonces, "{what}: a message was sent");
    }

    /// [`World::refuses`] where the refusal must be an invalid amount.
    async fn refuses_amount<T: std::fmt::Debug, E: Refusal>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, E>>,
    ) {
        self.refuses(what, call, invalid_amount).await;
    }

    /// A voucher on `channel` signed by the payer.
    fn payer_voucher(
        &self,
        channel: Address,
        lane: u64,
        nonce: u64,
        amount: TokenAmount,
    ) -> SignedVoucher {
        self.payer.sign(SignedVoucher::new(channel, lane, nonce, amount))
    }
}

/// A manager operation's error, asked about whichever operation failed: each operation has
/// its own error type, and a type answers only for the variants it has.
trait Refusal: std::fmt::Debug + 'static {
    fn any(&self) -> &dyn Any;
    fn unknown_channel(&self) -> bool;
    fn invalid_amount(&self) -> bool {
        false
    }
    fn wrong_direction(&self) -> Option<Direction> {
        None
    }
    fn invalid_voucher(&self) -> Option<&ActorError> {
        None
    }
}

macro_rules! refusal {
    ($t:ident: $($has:ident),*) => {
        impl Refusal for $t {
            fn any(&self) -> &dyn Any {
                self
            }
            fn unknown_channel(&self) -> bool {
                matches!(self, $t::UnknownChannel(_))
            }
            $(refusal!(@ $t $has);)*
        }
    };
    (@ $t:ident invalid_amount) => {
        fn invalid_amount(&self) -> bool {
            matches!(self, $t::InvalidAmount(_))
        }
    };
    (@ $t:ident wrong_direction) => {
        fn wrong_direction(&self) -> Option<Direction> {
            match self {
                $t::WrongDirection { expected, .. } => Some(*expected),
                _ => None,
            }
        }
    };
    (@ $t:ident invalid_voucher) => {
        fn invalid_voucher(&self) -> Option<&ActorError> {
            match self {
                $t::InvalidVoucher(a) => Some(a),
                _ => None,
            }
        }
    };
}

refusal!(LookupError:);
refusal!(SettleError:);
refusal!(LaneError: wrong_direction);
refusal!(CheckVoucherError: invalid_voucher);
refusal!(FundsError: invalid_amount, wrong_direction);
refusal!(CreateVoucherError: invalid_amount, wrong_direction, invalid_voucher);
refusal!(AddVoucherError: invalid_amount, wrong_direction, invalid_voucher);

/// A submit carries the refusal of the intake it runs for a voucher not held yet.
impl Refusal for SubmitError {
    fn any(&self) -> &dyn Any {
        self
    }
    fn unknown_channel(&self) -> bool {
        match self {
            SubmitError::Add(e) => e.unknown_channel(),
            e => matches!(e, SubmitError::UnknownChannel(_)),
        }
    }
    fn invalid_voucher(&self) -> Option<&ActorError> {
        match self {
            SubmitError::Add(e) => e.invalid_voucher(),
            _ => None,
        }
    }
}

/// Whether `e` is the error `E` and `test` holds for it.
fn is<E: 'static>(e: &dyn Refusal, test: impl Fn(&E) -> bool) -> bool {
    e.any().downcast_ref::<E>().is_some_and(test)
}

fn unknown_channel(e: &dyn Refusal) -> bool {
    e.unknown_channel()
}

fn invalid_amount(e: &dyn Refusal) -> bool {
    e.invalid_amount()
}

fn wrong_direction(expected: Direction) -> impl Fn(&dyn Refusal) -> bool {
    move |e| e.wrong_direction() == Some(expected)
}

fn actor_refuses(rule: fn(&ActorError) -> bool) -> impl Fn(&dyn Refusal) -> bool {
    move |e| e.invalid_voucher().is_some_and(rule)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_on_an_unknown_channel_is_refused_as_unknown() {
    let w = World::new().await;
    let ghost = Address::new_actor(b"no such channel");
    let v = w.payer_voucher(ghost, 0, 1, atto(5));
    let m = w.payer.m();

    w.refuses("voucher_create", m.voucher_create(&ghost, atto(5), 0), unknown_channel).await;
    w.refuses("voucher_add (payer)", m.voucher_add(&ghost, &v, atto(0)), unknown_channel).await;
    w.refuses("voucher_add (payee)", w.payee.m().voucher_add(&ghost, &v, atto(0)), unknown_channel)
        .await;
    w.refuses("voucher_check_valid", m.voucher_check_valid(&ghost, &v), unknown_channel).await;
    w.refuses(
        "voucher_check_spendable",
        m.voucher_check_spendable(&ghost, &v, &[]),
        unknown_channel,
    )
    .await;
    w.refuses("voucher_submit", w.payee.m().voucher_submit(&ghost, &v, &[]), unknown_channel).await;
    w.refuses("voucher_best_spendable", m.voucher_best_spendable(&ghost), unknown_channel).await;
    w.refuses("voucher_list", async { m.voucher_list(&ghost) }, unknown_channel).await;
    w.refuses("reserve_funds", m.reserve_funds(&ghost, atto(5)), unknown_channel).await;
    w.refuses("release_funds", m.release_funds(&ghost, atto(5)), unknown_channel).await;
    w.refuses("add_funds", m.add_funds(&ghost, atto(5)), unknown_channel).await;
    w.refuses("status", m.status(&ghost), unknown_channel).await;
    w.refuses("available_funds", m.available_funds(&ghost), unknown_channel).await;
    w.refuses("allocate_lane", m.allocate_lane(&ghost), unknown_channel).await;
    w.refuses("lease_lane", m.lease_lane(&ghost), unknown_channel).await;
    w.refuses("return_lane", m.return_lane(&ghost, 0), unknown_channel).await;
    w.refuses("settle", m.settle(&ghost), unknown_channel).await;
    w.refuses("collect", m.collect(&ghost), unknown_channel).await;
    // A channel that exists on chain but that the third node never heard of.
    w.refuses("status of a stranger's channel", w.third.m().status(&w.a), unknown_channel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_in_the_wrong_direction_are_refused() {
    let w = World::new().await;
    let payee = w.payee.m();
    let outbound = wrong_direction(Direction::Outbound);

    w.refuses(
        "voucher_create on an inbound channel",
        payee.voucher_create(&w.a, atto(30), 0),
        &outbound,
    )
    .await;
    w.refuses("reserve_funds on an inbound channel", payee.reserve_funds(&w.a, atto(5)), &outbound)
        .await;
    w.refuses("release_funds on an inbound channel", payee.release_funds(&w.a, atto(5)), &outbound)
        .await;
    w.refuses("add_funds on an inbound channel", payee.add_funds(&w.a, atto(5)), &outbound).await;
    w.refuses("lease_lane on an inbound channel", payee.lease_lane(&w.a), &outbound).await;

    let v = w.payer_voucher(w.a, 0, 3, atto(30));
    w.refuses(
        "voucher_add on an outbound channel",
        w.payer.m().voucher_add(&w.a, &v, atto(0)),
        wrong_direction(Direction::Inbound),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_elses_vouchers_are_refused() {
    let w = World::new().await;
    let payee = w.payee.m();

    // `a` holds lane 0 at nonce 2 (20); older vouchers (nonce 0) take the "covered" path.
    // A valid voucher of the payer's other channel, offered on `a`: new to lane 0 ...
    let other = w.payer_voucher(w.b, 0, 3, atto(30));
    w.refuses(
        "a voucher for another channel",
        payee.voucher_add(&w.a, &other, atto(0)),
        actor_refuses(|a| matches!(a, ActorError::WrongChannel { .. })),
    )
    .await;
    // ... or older than what lane 0 already holds: still not this channel's.
    let older = w.payer_voucher(w.b, 0, 0, atto(5));
    w.refuses(
        "an older voucher for another channel",
        payee.voucher_add(&w.a, &older, atto(0)),
        |e| is(e, |e| matches!(e, AddVoucherError::ForeignVoucher(_))),
    )
    .await;

    let bad_signature = actor_refuses(|a| matches!(a, ActorError::InvalidSignature(_)));
    let stranger = sign_as_stranger(SignedVoucher::new(w.a, 0, 3, atto(30)));
    w.refuses(
        "a voucher signed by a stranger",
        payee.voucher_add(&w.a, &stranger, atto(0)),
        &bad_signature,
    )
    .await;
    let stranger_older = sign_as_stranger(SignedVoucher::new(w.a, 0, 0, atto(5)));
    w.refuses(
        "an older voucher signed by a stranger",
        payee.voucher_add(&w.a, &stranger_older, atto(0)),
        &bad_signature,
    )
    .await;
    let by_payee = w.payee.sign(SignedVoucher::new(w.a, 1, 1, atto(5)));
    w.refuses(
        "a voucher signed by the payee itself",
        payee.voucher_add(&w.a, &by_payee, atto(0)),
        &bad_signature,
    )
    .await;

    // A node party to nothing is offered the payer's voucher on `a`.
    let v = w.payer_voucher(w.a, 0, 3, atto(30));
    w.refuses(
        "a voucher on a channel paying someone else",
        w.third.m().voucher_add(&w.a, &v, atto(0)),
        |e| is(e, |e| matches!(e, AddVoucherError::ForeignVoucher(_))),
    )
    .await;

    // The payee has never seen `b`: a bad first voucher must not leave the channel behind.
    let stranger_b = sign_as_stranger(SignedVoucher::new(w.b, 0, 1, atto(5)));
    w.refuses(
        "a stranger's first voucher on a new channel",
        payee.voucher_add(&w.b, &stranger_b, atto(0)),
        &bad_signature,
    )
    .await;
    let small = w.payer_voucher(w.b, 0, 1, atto(5));
    w.refuses(
        "a first voucher below the minimum delta",
        payee.voucher_add(&w.b, &small, atto(6)),
        |e| is(e, |e| matches!(e, AddVoucherError::BelowMinDelta { .. })),
    )
    .await;
    let too_much = w.payer_voucher(w.b, 0, 1, atto(1001));
    w.refuses(
        "a first voucher above the balance",
        payee.voucher_add(&w.b, &too_much, atto(0)),
        actor_refuses(|a| matches!(a, ActorError::InsufficientFunds { .. })),
    )
    .await;
    // A good first voucher is still accepted afterwards.
    payee.voucher_add(&w.b, &small, atto(0)).await.unwrap();
    assert_eq!(payee.voucher_list(&w.b).unwrap(), vec![small]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_vouchers_are_refused() {
    let w = World::new().await;
    let payee = w.payee.m();

    let unsigned = SignedVoucher::new(w.a, 0, 3, atto(30));
    let missing = actor_refuses(|a| matches!(a, ActorError::MissingSignature));
    w.refuses("an unsigned voucher", payee.voucher_add(&w.a, &unsigned, atto(0)), &missing).await;
    w.refuses(
        "submitting an unsigned voucher",
        payee.voucher_submit(&w.a, &unsigned, &[]),
        &missing,
    )
    .await;
    let unsigned_older = SignedVoucher::new(w.a, 0, 0, atto(5));
    w.refuses(
        "an unsigned older voucher",
        payee.voucher_add(&w.a, &unsigned_older, atto(0)),
        &missing,
    )
    .await;

    let negative = w.payer_voucher(w.a, 0, 3, TokenAmount::from_atto(-30));
    w.refuses("a negative voucher", payee.voucher_add(&w.a, &negative, atto(0)), invalid_amount)
        .await;
    w.refuses(
        "checking a negative voucher",
        payee.voucher_check_valid(&w.a, &negative),
        actor_refuses(|a| matches!(a, ActorError::NegativeAmount(_))),
    )
    .await;

    let lane_too_large = actor_refuses(|a| matches!(a, ActorError::LaneTooLarge(_)));
    let high = w.payer_voucher(w.a, MAX_LANE + 1, 1, atto(5));
    w.refuses("a voucher above MAX_LANE", payee.voucher_add(&w.a, &high, atto(0)), &lane_too_large)
        .await;

    let payer = w.payer.m();
    w.refuses(
        "creating a negative voucher",
        payer.voucher_create(&w.a, TokenAmount::from_atto(-1), 0),
        invalid_amount,
    )
    .await;
    w.refuses(
        "creating a voucher above MAX_LANE",
        payer.voucher_create(&w.a, atto(5), MAX_LANE + 1),
        &lane_too_large,
    )
    .await;
    w.refuses("lowering a lane's amount", payer.voucher_create(&w.a, atto(19), 0), |e| {
        is(e, |e| matches!(e, CreateVoucherError::AmountBelowLane { lane: 0, .. }))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_positive_amounts_and_over_releases_are_refused() {
    let w = World::new().await;
    let m = w.payer.m();
    let (from, to) = (w.payer.addr, w.payee.addr);
    let negative = || TokenAmount::from_atto(-5);
    let nobody = stranger_address();

    for (label, amount) in [("zero", atto(0)), ("negative", negative())] {
        w.refuses_amount(
            &format!("create with a {label} amount"),
            m.create(from, nobody, amount.clone(), atto(0)),
        )
        .await;
        w.refuses_amount(
            &format!("get with a {label} amount"),
            m.get(from, nobody, amount.clone()),
        )
        .await;
        w.refuses_amount(
            &format!("add_funds of a {label} amount"),
            m.add_funds(&w.a, amount.clone()),
        )
        .await;
        w.refuses_amount(&format!("fund with a {label} amount"), m.fund(from, to, amount.clone()))
            .await;
        w.refuses_amount(
            &format!("reserve a {label} amount"),
            m.reserve_funds(&w.a, amount.clone()),
        )
        .await;
        w.refuses_amount(&format!("release a {label} amount"), m.release_funds(&w.a, amount)).await;
    }
    w.refuses_amount(
        "create reserving more than its amount",
        m.create(from, nobody, atto(5), atto(6)),
    )
    .await;
    w.refuses_amount(
        "create reserving a negative amount",
        m.create(from, nobody, atto(5), negative()),
    )
    .await;
    w.refuses("create from a key the wallet lacks", m.create(nobody, to, atto(5), atto(0)), |e| {
        is(e, |e| matches!(e, FundsError::NotOurKey(_)))
    })
    .await;
    w.refuses(
        "release more than reserved",
        m.release_funds(&w.a, atto(101)),
        |e| is(e, |e| matches!(e, FundsError::ReleaseExceedsReserved { requested, reserved } if *requested == atto(101) && *reserved == atto(100))),
    )
    .await;
    // Exactly what is reserved is fine.
    m.release_funds(&w.a, atto(100)).await.unwrap();
    w.refuses("release once nothing is reserved", m.release_funds(&w.a, atto(1)), |e| {
        is(e, |e| matches!(e, FundsError::ReleaseExceedsReserved { .. }))
    })
    .await;
}
