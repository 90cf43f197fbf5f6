//! The holder of conditional vouchers under attack: a hostile payer (or hub) signs
//! conditional vouchers varying every field — lane, nonce, amount, a secret hash of every
//! length (0, 31, 32, 33, 300 bytes; the route's, or one nobody can open), `time_lock_min`
//! and `time_lock_max` around the route's margins and `settling_at`, `min_settle_height`,
//! `extra`, merges, a stranger's signature, the channel by its robust or its ID address —
//! and sends them through `conditional_accept` (on the terms of one of two routes), through
//! ordinary intake and through a route's replacement intake, in random orders, while the holder learns secrets (and is
//! offered wrong ones), epochs pass with the holder's settler at work, the payer settles, the
//! holder redeems on demand and crashes and restarts.
//!
//! - `hostile_conditional_vouchers_are_never_credited_more_than_the_chain_pays`: after every
//!   step, what the holder credited (the deltas `conditional_accept` and `voucher_add`
//!   answered) never exceeds what the brute-force oracle of `redeemable/mod.rs` says the
//!   chain pays it with the vouchers it holds and the secrets it knows; at the end every lock
//!   runs out with the settler at work, the oracle's best plan is redeemed for real on the
//!   devnet, and the channel pays at least what was credited.
//!
//! The holder issued the invoices of routes 0 and 1 (it knows their secrets from the start,
//! as a payee does) and learns those of routes 2 and 3 only when revealed (as a hub does). The seed is fixed;
//! `PAYCH_ADVERSARY_CASES` sets the number of cases (default 24).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod redeemable;

use std::collections::BTreeMap;

use paych_core::chain::Chain;
use paych_core::invoice::{self, InvoiceTerms};
use paych_core::manager::ConditionalTerms;
use paych_core::route::RouteParams;
use paych_core::types::{
    Address, ChainEpoch, Merge, ModVerifyParams, SignedVoucher, TokenAmount, METHOD_SEND,
};
use paych_testkit::amounts::atto;
use paych_testkit::devnet::runtime;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::RngSeed;
use redeemable::{carry_out_with, credit, describe, describe_plan, view_of, Plan, World};

/// The route's timing: the devnet defaults.
const PARAMS: RouteParams =
    RouteParams { conf: 2, inclusion: 2, hub_downtime: 3, payee_downtime: 3 };
/// The holder's margin `D_R`.
const D_R: ChainEpoch = 7;
/// The channel's balance, in attoFIL: some histories over-commit it.
const BALANCE: u64 = 200;
/// The routes whose payment hashes the vouchers may carry: the first [`OWN_ROUTES`] are the
/// holder's own invoices, the others' secrets it learns only when revealed.
const ROUTES: usize = 4;
const OWN_ROUTES: usize = 2;

fn cases() -> u32 {
    std::env::var("PAYCH_ADVERSARY_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(24)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        max_shrink_iters: 200,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x636f_6e64),
        ..ProptestConfig::default()
    }
}

/// The secret hash a voucher carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    /// The payment hash of the route whose terms the voucher is sent on.
    Terms,
    /// Route `i`'s payment hash.
    Route(usize),
    /// 32 bytes nobody knows a pre-image of.
    Unknown,
    /// `n` bytes (0 = no secret hash at all).
    Len(usize),
}

/// A time lock, relative to the moment the voucher is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    None,
    /// `head + k`.
    Head(i64),
    /// `settling_at + k` (the earliest a settle sent now gives, while not settling).
    Settling(i64),
}

/// The voucher's amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Amount {
    /// The highest amount sent on the lane so far plus the terms' delta: the exact shape.
    OnTop,
    /// Any amount.
    Raw(u64),
}

/// One hostile conditional voucher and how it is sent.
#[derive(Debug, Clone)]
struct Spec {
    lane: u64,
    /// `None`: one above the highest nonce sent on the lane.
    nonce: Option<u64>,
    amount: Amount,
    /// What the route's terms say the voucher adds.
    delta: u64,
    hash: Hash,
    /// The route whose terms the holder checks it against.
    terms_route: usize,
    time_lock_min: Lock,
    time_lock_max: Lock,
    /// The terms' lock differs from the voucher's by this much.
    terms_lock_off: i64,
    huge_settle_height: bool,
    extra: bool,
    merges: Vec<(u64, u64)>,
    stranger: bool,
    by_id: bool,
    /// Names another channel of the same payer to the same holder.
    other_channel: bool,
    /// Sent through ordinary intake instead of `conditional_accept`.
    plain_intake: bool,
    /// Through ordinary intake, the would-be replacement of the lane's top: no secret hash,
    /// no time locks, the top's amount.
    replacement: bool,
    /// With `plain_intake`, through a route's replacement intake (`replacement_add`, which
    /// credits nothing) instead of `voucher_add`, whatever its shape.
    replacement_intake: bool,
}

#[derive(Debug, Clone)]
enum Step {
    Send(Spec),
    /// The holder learns route `i`'s secret.
    Reveal(usize),
    /// The holder is offered a wrong pre-image of route `i`'s hash, `n` bytes long.
    WrongReveal(usize, usize),
    /// `n` epochs pass, the holder's settler looking at each.
    Mine(u64),
    PayerSettles,
    /// The holder redeems the conditional voucher of a lane on demand.
    Redeem(u64),
    /// The holder crashes and restarts.
    Restart,
}

fn lock() -> impl Strategy<Value = Lock> {
    prop_oneof![
        1 => Just(Lock::None),
        3 => select(vec![-1i64, 0, 1, 4, 5, 6]).prop_map(Lock::Head),
        8 => select(vec![7i64, 8, 9, 10, 12, 20]).prop_map(Lock::Head),
        1 => (-1i64..=1).prop_map(Lock::Settling),
    ]
}

fn hash() -> impl Strategy<Value = Hash> {
    prop_oneof![
        24 => Just(Hash::Terms),
        2 => (0..ROUTES).prop_map(Hash::Route),
        1 => Just(Hash::Unknown),
        2 => select(vec![0usize, 31, 33, 300]).prop_map(Hash::Len),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    let merge = (0u64..3, select(vec![1u64, 2, 5]));
    (
        (0u64..3, prop_oneof![8 => Just(None), 1 => select(vec![0u64, 1, 2, 5]).prop_map(Some)]),
        (
            prop_oneof![8 => Just(Amount::OnTop), 1 => select(vec![0u64, 50, 150, 300]).prop_map(Amount::Raw)],
            select(vec![10u64, 50, 120]),
        ),
        (hash(), 0..ROUTES),
        (prop_oneof![16 => Just(Lock::None), 1 => lock()], lock(), prop_oneof![16 => Just(0i64), 1 => Just(1i64), 1 => Just(-1i64)]),
        (prop::bool::weighted(0.05), prop::bool::weighted(0.05)),
        prop_oneof![16 => Just(Vec::new()), 1 => vec(merge, 1..=2)],
        (
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.3),
            prop::bool::weighted(0.25),
            prop::bool::weighted(0.7),
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.4),
        ),
    )
        .prop_map(
            |(
                (lane, nonce),
                (amount, delta),
                (hash, terms_route),
                (time_lock_min, time_lock_max, terms_lock_off),
                (huge_settle_height, extra),
                merges,
                (stranger, by_id, plain_intake, replacement, other_channel, replacement_intake),
            )| Spec {
                lane,
                nonce,
                amount,
                delta,
                hash,
                terms_route,
                time_lock_min,
                time_lock_max,
                terms_lock_off,
                huge_settle_height,
                extra,
                merges,
                stranger,
                by_id,
                other_channel,
                plain_intake,
                replacement,
                replacement_intake,
            },
        )
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => spec().prop_map(Step::Send),
        2 => (0..ROUTES).prop_map(Step::Reveal),
        1 => ((0..ROUTES), select(vec![0usize, 31, 32, 33, 300])).prop_map(|(i, n)| Step::WrongReveal(i, n)),
        3 => (1u64..=4).prop_map(Step::Mine),
        1 => Just(Step::PayerSettles),
        1 => (0u64..3).prop_map(Step::Redeem),
        1 => Just(Step::Restart),
    ]
}

/// One hostile history being played against a holder.
struct Hostile {
    /// The payer, the holder and their channel (`None` only while the holder restarts).
    world: Option<World>,
    /// Each route's payment hash and secret.
    routes: Vec<(Vec<u8>, Vec<u8>)>,
    /// What the holder credited on the channel.
    credited: TokenAmount,
    /// Another channel of the same payer to the holder, and what the holder credited there.
    other: Address,
    credited_other: TokenAmount,
    /// The furthest lock of any voucher sent.
    last_lock: ChainEpoch,
}

impl Hostile {
    async fn new() -> Self {
        // The devnet defaults: the intake's landing margin for plain vouchers, the route's
        // `S + conf` for conditional ones.
        let config = redeemable::idle_settler();
        assert_eq!(config.route, PARAMS);
        let w = World::with_payee(BALANCE, 10, config).await;
        let mut routes = Vec::new();
        let m = w.payee.m();
        for i in 0..ROUTES {
            if i >= OWN_ROUTES {
                // Another party's route: the holder learns its secret only when revealed.
                let secret = vec![0x5e ^ u8::try_from(i).unwrap(); 32];
                routes.push((paych_core::crypto::blake2b_256(&secret).to_vec(), secret));
                continue;
            }
            let terms = InvoiceTerms {
                payee: w.payee.addr,
                amount: atto(100),
                expiry: invoice::unix_now() + 3600,
                payee_margin: D_R,
                hubs: Vec::new(),
            };
            let issued =
                invoice::issue(m.store().as_ref(), m.wallet().as_ref(), terms).await.unwrap();
            let hash = issued.payment_hash.to_vec();
            let secret = m.known_secret(&hash).unwrap().unwrap();
            routes.push((hash, secret));
        }
        let other = w.payer.open_channel(w.payee.addr, atto(BALANCE)).await;
        Hostile {
            world: Some(w),
            routes,
            credited: TokenAmount::default(),
            other,
            credited_other: TokenAmount::default(),
            last_lock: 0,
        }
    }

    fn w(&self) -> &World {
        self.world.as_ref().unwrap()
    }

    /// The holder crashes and restarts: its store is reopened.
    async fn restart(&mut self) {
        let mut w = self.world.take().unwrap();
        w.payee = w.payee.stop().await.started().await;
        self.world = Some(w);
    }

    async fn settling_at(&self) -> ChainEpoch {
        self.w().net.devnet.channel(&self.w().ch).await.unwrap().state.settling_at
    }

    async fn at(&self, lock: Lock) -> ChainEpoch {
        let head = self.w().head().await;
        match lock {
            Lock::None => 0,
            Lock::Head(k) => (head + k).max(1),
            Lock::Settling(k) => match self.settling_at().await {
                0 => head + 1 + paych_core::types::SETTLE_DELAY + k,
                at => at + k,
            },
        }
    }

    fn hash_of(&self, hash: Hash, terms_route: usize) -> Vec<u8> {
        match hash {
            Hash::Terms => self.routes[terms_route].0.clone(),
            Hash::Route(i) => self.routes[i].0.clone(),
            Hash::Unknown => paych_core::crypto::blake2b_256(b"nobody knows me").to_vec(),
            Hash::Len(n) => vec![0x42; n],
        }
    }

    async fn voucher(&mut self, spec: &Spec) -> SignedVoucher {
        let channel = match (spec.other_channel, spec.by_id) {
            (true, _) => self.other,
            (false, true) => self.w().id,
            (false, false) => self.w().ch,
        };
        // What the payer knows the holder holds on the lane: its highest voucher there.
        let top =
            self.w().held().into_iter().filter(|v| v.lane == spec.lane).max_by_key(|v| v.nonce);
        let (top_nonce, top_amount) =
            top.map_or((0, 0), |v| (v.nonce, u64::try_from(v.amount.atto()).unwrap_or(0)));
        let nonce = spec.nonce.unwrap_or(top_nonce + 1);
        let amount = match spec.amount {
            Amount::OnTop => top_amount + spec.delta,
            Amount::Raw(n) => n,
        };
        let mut v = SignedVoucher::new(channel, spec.lane, nonce, atto(amount));
        v.secret_hash = self.hash_of(spec.hash, spec.terms_route);
        v.time_lock_min = self.at(spec.time_lock_min).await;
        v.time_lock_max = self.at(spec.time_lock_max).await;
        self.last_lock = self.last_lock.max(v.time_lock_max.min(self.w().head().await + 100));
        if spec.huge_settle_height {
            v.min_settle_height = ChainEpoch::MAX / 2;
        }
        if spec.extra {
            let actor = self.w().payee.addr;
            v.extra = Some(ModVerifyParams { actor, method: METHOD_SEND, data: vec![] });
        }
        v.merges = spec.merges.iter().map(|&(lane, nonce)| Merge { lane, nonce }).collect();
        if spec.plain_intake && spec.replacement {
            v.amount = atto(top_amount);
            v.secret_hash.clear();
            v.time_lock_min = 0;
            v.time_lock_max = 0;
        }
        match spec.stranger {
            true => paych_testkit::keys::sign_as_stranger(v),
            false => self.w().signed(v),
        }
    }

    async fn send(&mut self, spec: &Spec) {
        let v = self.voucher(spec).await;
        let m = self.w().payee.m();
        let addr = if spec.by_id { self.w().id } else { self.w().ch };
        if spec.plain_intake && spec.replacement_intake {
            // Held if taken, never credited: what it changes shows in later credits only.
            let _ = m.replacement_add(&addr, &v).await;
            return;
        }
        if spec.plain_intake {
            let outcome = m.voucher_add(&addr, &v, TokenAmount::default()).await;
            self.credited += credit(&outcome);
            return;
        }
        let terms = ConditionalTerms {
            hash: self.routes[spec.terms_route].0.clone(),
            lock: v.time_lock_max + spec.terms_lock_off,
            delta: atto(spec.delta),
            margin: D_R,
        };
        // `conditional_accept` files a voucher under the channel it names.
        if let Ok(delta) = m.conditional_accept(&v, &terms).await {
            match v.channel_addr == self.other {
                true => self.credited_other += delta,
                false => self.credited += delta,
            }
        }
    }

    /// One epoch passes: the holder's settler looks first, and its messages land.
    async fn next_epoch(&self) {
        let _ = self.w().payee.m().settler_pass().await;
        self.w().mine(1).await;
    }

    async fn apply(&mut self, step: &Step) {
        match step {
            Step::Send(spec) => self.send(spec).await,
            Step::Reveal(i) => {
                let (hash, secret) = &self.routes[*i];
                self.w().payee.m().learn_secret(hash, secret).await.unwrap();
            }
            Step::WrongReveal(i, n) => {
                let (hash, secret) = &self.routes[*i];
                let wrong = vec![0x17; *n];
                assert_ne!(&wrong, secret);
                assert!(self.w().payee.m().learn_secret(hash, &wrong).await.is_err());
            }
            Step::Mine(n) => {
                for _ in 0..*n {
                    self.next_epoch().await;
                }
            }
            Step::PayerSettles => {
                if self.settling_at().await == 0 {
                    self.w().payer_settles().await;
                }
            }
            Step::Restart => self.restart().await,
            Step::Redeem(lane) => {
                let _ = self.w().payee.m().conditional_redeem(&self.w().ch, *lane).await;
                self.next_epoch().await;
            }
        }
    }

    /// The secrets the holder knows.
    fn known(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let m = self.w().payee.m();
        let mut known = BTreeMap::new();
        for (hash, _) in &self.routes {
            if let Some(secret) = m.known_secret(hash).unwrap() {
                known.insert(hash.clone(), secret);
            }
        }
        known
    }

    /// The oracle's best plan with what the holder holds and knows.
    async fn plan(&self) -> Plan {
        let held = self.w().held();
        let mut view = view_of(&self.w().net.devnet, &self.w().ch, &held).await;
        view.secrets = self.known();
        redeemable::redeemable(&view, &held)
    }

    async fn check(&self) {
        let held = redeemable::held_by(self.w().payee.m(), &[self.other]);
        let mut view = view_of(&self.w().net.devnet, &self.other, &held).await;
        view.secrets = self.known();
        let other = redeemable::redeemable(&view, &held).to_send;
        assert!(
            self.credited_other <= other,
            "the other channel: credited {:?}, pays {other:?}",
            self.credited_other
        );
        let plan = self.plan().await;
        assert!(
            self.credited <= plan.to_send,
            "credited {} attoFIL, the chain pays {} attoFIL at head {}\nheld:\n{}best plan: {}",
            self.credited.atto(),
            plan.to_send.atto(),
            self.w().head().await,
            describe(&self.w().held()),
            describe_plan(&plan)
        );
    }

    /// Every lock runs out with the settler at work; then the oracle's best plan is redeemed
    /// for real, and the channel pays at least what was credited.
    async fn run_out_and_redeem(&self) {
        while self.w().head().await <= self.last_lock + 1 {
            self.next_epoch().await;
            self.check().await;
        }
        let plan = self.plan().await;
        let w = self.w();
        let settling_at = self.settling_at().await;
        if settling_at == 0 || w.head().await + 1 < settling_at {
            let wallet = w.payee.wallet.as_ref();
            let known = self.known();
            let codes = carry_out_with(&w.net.devnet, wallet, w.payee.addr, w.ch, &plan, &known);
            let codes = codes.await;
            assert!(codes.iter().all(|c| c.is_success()), "the oracle's plan failed: {codes:?}");
        }
        let paid = w.to_send().await;
        assert_eq!(paid, plan.to_send, "the chain paid otherwise than the oracle's plan");
        assert!(
            paid >= self.credited,
            "the chain pays {} attoFIL, the holder credited {} attoFIL",
            paid.atto(),
            self.credited.atto()
        );
    }
}

async fn play(steps: Vec<Step>) {
    let mut h = Hostile::new().await;
    for step in &steps {
        h.apply(step).await;
        h.check().await;
    }
    h.run_out_and_redeem().await;
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn hostile_conditional_vouchers_are_never_credited_more_than_the_chain_pays(
        steps in vec(step(), 4..20)
    ) {
        runtime().block_on(play(steps));
    }
}
