//! The payee's first promise under attack, and kept for an honest payer.
//!
//! For every inbound channel at every moment, *credited* (the deltas the payee's
//! `voucher_add` answered `Accepted` with) never exceeds *redeemable* (the most `to_send` the
//! payee can reach with the vouchers it holds, measured by the brute-force oracle of
//! `redeemable/mod.rs`); for an honest payer — vouchers from paych's own manager,
//! reconciliation included — the two are equal and no valid voucher is refused.
//!
//! - `hostile_payers_are_never_credited_more_than_the_chain_pays`: a payer signs whatever it
//!   likes (every field of the voucher, sometimes with another key), interleaved with epochs
//!   passing (while the channel settles, the payee's settler runs every epoch), the payer
//!   settling and the payee redeeming; the property is checked after every step, and in a
//!   sample of cases the payee then really redeems its best plan, the channel settles and is
//!   collected, and its income is compared with its credit;
//! - `hostile_payers_of_plain_vouchers_...`: the same with vouchers carrying no condition
//!   (lanes, nonces, amounts, merges, addresses and signers only), to reach past the
//!   conditional vouchers;
//! - `the_promise_can_be_kept_...`: the same attacks against a model payee that credits
//!   exactly what each voucher adds to the oracle's measure (leaving out, while the channel
//!   is not settling, vouchers that expire) and redeems by the oracle's plans: the property
//!   holds for it, so it asks nothing impossible of the real one;
//! - `honest_payers_are_credited_exactly_what_the_chain_pays`: the payer's manager pays on
//!   several lanes, the payee adds (in any order, old vouchers again), redeems some lanes,
//!   reconciles, and the payer pays on new lanes with the room left. Every voucher must be
//!   credited exactly what it adds to the oracle's measure; the sum credited, less what the
//!   payee gave up in reconciliations whose combined voucher landed, must equal the measure;
//!   redeemed and collected, the channel pays the payee exactly that.
//!
//! Each case builds its own devnet (mining only when a step says so), sled stores and
//! managers with idle settlers, so a case is reproducible. The seed is fixed; failures are
//! not persisted. `PAYCH_ADVERSARY_CASES` sets the number of cases of each property (default
//! 24); `PAYCH_ADVERSARY_SEED` another seed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod redeemable;

use std::fmt;

use paych_core::chain::Chain;
use paych_core::crypto;
use paych_core::manager::{CreateVoucherError, MessageOutcome};
use paych_core::types::{
    paych_method, Address, ChainEpoch, Merge, ModVerifyParams, SignedVoucher, TokenAmount,
    METHOD_SEND, SETTLE_DELAY,
};
use paych_testkit::amounts::atto;
use paych_testkit::devnet::runtime;
use paych_testkit::keys::{address, key};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::RngSeed;
use redeemable::{
    carry_out, credit, describe, describe_plan, redeemable as oracle, view_of, Plan, World,
};

/// The hostile channel's balance, in attoFIL.
const HOSTILE_BALANCE: u64 = 100;
/// The honest channel's balance, in attoFIL.
const HONEST_BALANCE: u64 = 1000;

fn cases() -> u32 {
    std::env::var("PAYCH_ADVERSARY_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(24)
}

fn config() -> ProptestConfig {
    let seed = std::env::var("PAYCH_ADVERSARY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7061_7963_6800);
    ProptestConfig {
        cases: cases(),
        max_shrink_iters: 300,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    }
}

// ----- the hostile payer ------------------------------------------------------------------

/// A time lock, relative to the moment the voucher is signed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lock {
    /// None (0).
    None,
    /// `head + k`.
    Head(i64),
    /// `settling_at + k` (when not settling: the earliest `settling_at` a settle sent now
    /// gives, `head + 1 + SETTLE_DELAY`).
    Settling(i64),
}

/// A `min_settle_height`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Msh {
    Zero,
    /// Below the head.
    Past,
    /// The earliest `settling_at` a settle sent now gives: no postponement.
    Boundary,
    /// Far beyond any settlement.
    Huge,
}

/// The voucher's `extra` call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Extra {
    None,
    /// A plain send to the payee's account: passes everywhere.
    SendToPayee,
    /// A plain send to a fresh key address: the payee's dry run creates the account and
    /// passes; the channel's call finds no actor and fails.
    SendToNobody,
    /// The channel's own `Settle`: passes as the payee's dry run, fails from the channel.
    ChannelSettle,
}

/// The channel the voucher names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Named {
    Robust,
    Id,
    /// Another channel from the same payer to the same payee.
    Other,
}

/// One voucher of the hostile payer.
#[derive(Clone)]
struct Spec {
    lane: u64,
    nonce: u64,
    amount: u64,
    merges: Vec<(u64, u64)>,
    time_lock_min: Lock,
    time_lock_max: Lock,
    min_settle_height: Msh,
    secret: bool,
    extra: Extra,
    named: Named,
    /// Added under the channel's ID address instead of its robust one.
    add_by_id: bool,
    /// Signed by a key party to nothing.
    stranger: bool,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lock::None => write!(f, "0"),
            Lock::Head(k) => write!(f, "head{k:+}"),
            Lock::Settling(k) => write!(f, "settling_at{k:+}"),
        }
    }
}

impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lane {} nonce {} amount {}", self.lane, self.nonce, self.amount)?;
        if !self.merges.is_empty() {
            write!(f, " merges {:?}", self.merges)?;
        }
        if self.time_lock_min != Lock::None {
            write!(f, " time_lock_min {:?}", self.time_lock_min)?;
        }
        if self.time_lock_max != Lock::None {
            write!(f, " time_lock_max {:?}", self.time_lock_max)?;
        }
        if self.min_settle_height != Msh::Zero {
            write!(f, " min_settle_height {:?}", self.min_settle_height)?;
        }
        if self.secret {
            write!(f, " secret_hash")?;
        }
        if self.extra != Extra::None {
            write!(f, " extra {:?}", self.extra)?;
        }
        if self.named != Named::Robust {
            write!(f, " names {:?}", self.named)?;
        }
        if self.add_by_id {
            write!(f, " added by ID")?;
        }
        if self.stranger {
            write!(f, " signed by a stranger")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
enum Step {
    /// The payer signs a voucher; the payee adds it.
    Send(Spec),
    /// The payee is sent an earlier voucher again.
    Resend(usize),
    /// Epochs pass.
    Mine(u64),
    /// Many epochs pass (only while the channel is not settling).
    Jump(u64),
    /// The payer settles the channel (the settle lands).
    PayerSettles,
    /// The payee submits the first voucher of its best plan through its manager.
    PayeeSubmits,
    /// The payee redeems its whole best plan, then epochs pass until `settling_at − 1 − k`
    /// (only while settling).
    NearSettlement(i64),
}

fn lock() -> impl Strategy<Value = Lock> {
    prop_oneof![
        6 => Just(Lock::None),
        2 => (-2i64..=3).prop_map(Lock::Head),
        1 => (-2i64..=1).prop_map(Lock::Settling),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    let merge = (0u64..3, select(vec![1u64, 2, 3, 4, 6]));
    (
        (0u64..3, select(vec![0u64, 1, 2, 3, 5]), select(vec![0u64, 10, 30, 60, 100, 150])),
        prop_oneof![4 => Just(Vec::new()), 1 => vec(merge, 1..=2)],
        (lock(), lock()),
        prop_oneof![
            8 => Just(Msh::Zero),
            1 => Just(Msh::Past),
            1 => Just(Msh::Boundary),
            1 => Just(Msh::Huge),
        ],
        prop::bool::weighted(0.1),
        prop_oneof![
            8 => Just(Extra::None),
            1 => Just(Extra::SendToPayee),
            1 => Just(Extra::SendToNobody),
            1 => Just(Extra::ChannelSettle),
        ],
        prop_oneof![6 => Just(Named::Robust), 2 => Just(Named::Id), 1 => Just(Named::Other)],
        (prop::bool::weighted(0.03), prop::bool::weighted(0.1)),
    )
        .prop_map(
            |(
                (lane, nonce, amount),
                merges,
                (time_lock_min, time_lock_max),
                min_settle_height,
                secret,
                extra,
                named,
                (add_by_id, stranger),
            )| Spec {
                lane,
                nonce,
                amount,
                merges,
                time_lock_min,
                time_lock_max,
                min_settle_height,
                secret,
                extra,
                named,
                add_by_id,
                stranger,
            },
        )
}

/// A voucher with no condition at all: lanes, nonces, amounts, merges, channel addresses
/// and signers only.
fn plain_spec() -> impl Strategy<Value = Spec> {
    spec().prop_map(|spec| Spec {
        time_lock_min: Lock::None,
        time_lock_max: Lock::None,
        min_settle_height: Msh::Zero,
        secret: false,
        extra: Extra::None,
        ..spec
    })
}

fn step() -> impl Strategy<Value = Step> {
    step_with(spec().boxed())
}

fn plain_step() -> impl Strategy<Value = Step> {
    step_with(plain_spec().boxed())
}

fn step_with(spec: BoxedStrategy<Spec>) -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => spec.prop_map(Step::Send),
        2 => any::<usize>().prop_map(Step::Resend),
        3 => (1u64..=3).prop_map(Step::Mine),
        1 => select(vec![50u64, 1500]).prop_map(Step::Jump),
        1 => Just(Step::PayerSettles),
        2 => Just(Step::PayeeSubmits),
        1 => (0i64..3).prop_map(Step::NearSettlement),
    ]
}

/// One hostile history being played.
struct Hostile {
    w: World,
    /// Another channel of the same payer to the same payee.
    other: Address,
    /// Every voucher sent, in order.
    sent: Vec<SignedVoucher>,
    /// What the payee credited on the channel.
    credited: TokenAmount,
    /// The payee's balance and the gas it had paid when the history started.
    start: (TokenAmount, TokenAmount),
    /// `None`: the payee is paych's manager. `Some`: the payee is the oracle's model — it
    /// holds every voucher sent and credits exactly what each adds to the oracle's measure,
    /// redeeming by the oracle's plans (a check that the promise can be kept under these
    /// attacks at all).
    model: Option<Vec<SignedVoucher>>,
}

impl Hostile {
    async fn new(model: bool) -> Self {
        let w = World::new(HOSTILE_BALANCE).await;
        let other = w.payer.open_channel(w.payee.addr, atto(HOSTILE_BALANCE)).await;
        let start = payee_money(&w).await;
        Hostile {
            w,
            other,
            sent: Vec::new(),
            credited: TokenAmount::default(),
            start,
            model: model.then(Vec::new),
        }
    }

    /// The vouchers the payee holds.
    fn held(&self) -> Vec<SignedVoucher> {
        match &self.model {
            Some(held) => held.clone(),
            None => self.w.held(),
        }
    }

    /// The payee sends the messages of its best plan due at the next epoch; one epoch is
    /// mined. The manager's payee runs its settler instead.
    async fn next_epoch(&self) {
        if self.model.is_none() {
            if self.settling_at().await != 0 {
                // Refused or not: the chain is what counts.
                let _ = self.w.payee.m().settler_pass().await;
            }
            self.w.mine(1).await;
            return;
        }
        let mut plan = self.plan().await;
        let next = self.w.head().await + 1;
        plan.steps.retain(|(_, epoch)| *epoch == next);
        if plan.steps.is_empty() || self.settling_at().await == 0 {
            self.w.mine(1).await;
            return;
        }
        let w = &self.w;
        let codes =
            carry_out(&w.net.devnet, w.payee.wallet.as_ref(), w.payee.addr, w.ch, &plan).await;
        assert!(codes.iter().all(|c| c.is_success()), "the oracle's plan failed: {codes:?}");
    }

    async fn settling_at(&self) -> ChainEpoch {
        self.w.net.devnet.channel(&self.w.ch).await.unwrap().state.settling_at
    }

    async fn at(&self, lock: Lock) -> ChainEpoch {
        let head = self.w.head().await;
        match lock {
            Lock::None => 0,
            Lock::Head(k) => (head + k).max(1),
            Lock::Settling(k) => match self.settling_at().await {
                0 => head + 1 + SETTLE_DELAY + k,
                at => at + k,
            },
        }
    }

    async fn voucher(&self, spec: &Spec) -> SignedVoucher {
        let channel = match spec.named {
            Named::Robust => self.w.ch,
            Named::Id => self.w.id,
            Named::Other => self.other,
        };
        let mut v = SignedVoucher::new(channel, spec.lane, spec.nonce, atto(spec.amount));
        v.merges = spec.merges.iter().map(|&(lane, nonce)| Merge { lane, nonce }).collect();
        v.time_lock_min = self.at(spec.time_lock_min).await;
        v.time_lock_max = self.at(spec.time_lock_max).await;
        let head = self.w.head().await;
        v.min_settle_height = match spec.min_settle_height {
            Msh::Zero => 0,
            Msh::Past => (head - 1).max(1),
            Msh::Boundary => head + 1 + SETTLE_DELAY,
            Msh::Huge => ChainEpoch::MAX / 2,
        };
        if spec.secret {
            v.secret_hash = crypto::blake2b_256(b"a secret the payee never learns").to_vec();
        }
        let nobody = || address(&key(0x5a));
        v.extra = match spec.extra {
            Extra::None => None,
            Extra::SendToPayee => Some(ModVerifyParams {
                actor: self.w.payee.addr,
                method: METHOD_SEND,
                data: vec![],
            }),
            Extra::SendToNobody => {
                Some(ModVerifyParams { actor: nobody(), method: METHOD_SEND, data: vec![] })
            }
            Extra::ChannelSettle => Some(ModVerifyParams {
                actor: self.w.ch,
                method: paych_method::SETTLE,
                data: vec![],
            }),
        };
        if spec.stranger {
            paych_testkit::keys::sign_as_stranger(v)
        } else {
            self.w.signed(v)
        }
    }

    async fn add(&mut self, voucher: SignedVoucher, by_id: bool) {
        self.sent.push(voucher.clone());
        if self.model.is_some() {
            let before = self.lasting().await;
            if let Some(held) = &mut self.model {
                held.push(voucher);
            }
            self.credited += self.lasting().await - before;
            return;
        }
        let addr = if by_id { self.w.id } else { self.w.ch };
        let outcome = self.w.payee.m().voucher_add(&addr, &voucher, TokenAmount::default()).await;
        self.credited += credit(&outcome);
    }

    /// What the model payee counts on: the oracle's measure without the vouchers that
    /// expire while the channel is not settling (nothing redeems them in time; once it is
    /// settling, the model redeems each voucher as soon as it can land).
    async fn lasting(&self) -> TokenAmount {
        let mut held = self.held();
        if self.settling_at().await == 0 {
            held.retain(|v| v.time_lock_max == 0);
        }
        oracle(&view_of(&self.w.net.devnet, &self.w.ch, &held).await, &held).to_send
    }

    async fn plan(&self) -> Plan {
        let held = self.held();
        oracle(&view_of(&self.w.net.devnet, &self.w.ch, &held).await, &held)
    }

    async fn apply(&mut self, step: &Step) {
        match step {
            Step::Send(spec) => {
                let v = self.voucher(spec).await;
                self.add(v, spec.add_by_id).await;
            }
            Step::Resend(pick) => {
                if !self.sent.is_empty() {
                    let v = self.sent[pick % self.sent.len()].clone();
                    self.add(v, false).await;
                }
            }
            Step::Mine(n) => {
                for _ in 0..*n {
                    self.next_epoch().await;
                }
            }
            Step::Jump(n) => {
                if self.settling_at().await == 0 {
                    self.w.mine(*n).await;
                }
            }
            Step::PayerSettles => {
                if self.settling_at().await == 0 {
                    self.w.payer_settles().await;
                }
            }
            Step::PayeeSubmits => {
                let plan = self.plan().await;
                let next = self.w.head().await + 1;
                let first = plan.steps.first().filter(|(_, epoch)| *epoch == next).cloned();
                match (first, self.model.is_some()) {
                    (Some((v, _)), false) => {
                        // Refused or not: the chain is what counts. The epoch then passes as
                        // any other (the settler runs while the channel settles).
                        let _ = self.w.payee.m().voucher_submit(&self.w.ch, &v, &[]).await;
                        self.next_epoch().await;
                    }
                    (Some(step), true) if self.settling_at().await == 0 => {
                        let first = Plan { steps: vec![step], to_send: atto(0) };
                        let w = &self.w;
                        carry_out(
                            &w.net.devnet,
                            w.payee.wallet.as_ref(),
                            w.payee.addr,
                            w.ch,
                            &first,
                        )
                        .await;
                    }
                    // The model redeems all it can at once while the channel settles.
                    (_, _) => self.next_epoch().await,
                }
            }
            Step::NearSettlement(k) => {
                let settling_at = self.settling_at().await;
                if settling_at == 0 {
                    return;
                }
                self.redeem_best_plan().await;
                let target = settling_at - 1 - k;
                let head = self.w.head().await;
                if head < target {
                    self.w.mine((target - head) as u64).await;
                }
            }
        }
    }

    /// The payee carries out its best plan on chain: every message must land as the oracle
    /// said, and the channel then pays what the oracle promised.
    async fn redeem_best_plan(&self) {
        let plan = self.plan().await;
        let w = &self.w;
        let codes =
            carry_out(&w.net.devnet, w.payee.wallet.as_ref(), w.payee.addr, w.ch, &plan).await;
        assert!(codes.iter().all(|c| c.is_success()), "the oracle's plan failed: {codes:?}");
        assert_eq!(w.to_send().await, plan.to_send, "the oracle's plan paid otherwise");
        redeemable::settle_landed(&w.net.devnet, w.payee.m()).await;
    }

    async fn check(&self) {
        let plan = self.plan().await;
        assert!(
            self.credited <= plan.to_send,
            "credited {} attoFIL, redeemable {} attoFIL at head {}\nheld:\n{}best plan: {}",
            self.credited.atto(),
            plan.to_send.atto(),
            self.w.head().await,
            describe(&self.held()),
            describe_plan(&plan)
        );
    }

    /// The payee redeems, the channel settles and is collected: the payee's income is at
    /// least what it credited.
    async fn redeem_and_collect(&self) {
        if self.w.head().await + 1 < self.settling_at().await || self.settling_at().await == 0 {
            self.redeem_best_plan().await;
        }
        let income = collect_income(&self.w, &self.start).await;
        assert!(
            income >= self.credited,
            "paid {} attoFIL, credited {} attoFIL",
            income.atto(),
            self.credited.atto()
        );
    }
}

/// The payee's balance and the gas fees its key has paid.
async fn payee_money(w: &World) -> (TokenAmount, TokenAmount) {
    (w.payee.balance().await, w.net.devnet.sender_stats(&w.payee.addr).fees)
}

/// Settles (if the payer has not), lets the settlement pass, has the payer collect, and
/// answers what the payee earned since `start`, its gas added back.
async fn collect_income(w: &World, start: &(TokenAmount, TokenAmount)) -> TokenAmount {
    let settling_at = match w.net.devnet.channel(&w.ch).await.unwrap().state.settling_at {
        0 => w.payer_settles().await,
        at => at,
    };
    let head = w.head().await;
    if head < settling_at {
        w.mine((settling_at - head) as u64).await;
    }
    let cid = w.payer.m().collect(&w.ch).await.unwrap();
    w.mine(1).await;
    let outcome = w.payer.m().wait_message(&cid).await.unwrap();
    assert!(matches!(outcome, MessageOutcome::Landed { exit_code: 0, .. }), "{outcome:?}");
    let (balance, fees) = payee_money(w).await;
    balance - &start.0 + (fees - &start.1)
}

async fn play_hostile(steps: Vec<Step>, redeem: bool, model: bool) {
    let mut h = Hostile::new(model).await;
    for step in &steps {
        h.apply(step).await;
        h.check().await;
    }
    if redeem {
        h.redeem_and_collect().await;
    }
}

// ----- the honest payer -------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Honest {
    /// The payer's manager raises lane `lane` by `delta` (refused on a closed lane), and
    /// sends the voucher to the payee.
    Pay { lane: u64, delta: u64 },
    /// The payer pays `percent` of the channel's remaining room on a fresh lane.
    PayRoom { percent: u64 },
    /// The payee is sent one of the vouchers the payer issued again (an old one, say).
    Add(usize),
    /// The payee submits its highest voucher on a lane through its manager.
    Submit(u64),
    /// The payee asks to reconcile (at `fee` per message saved), the payer answers, the
    /// payee accepts the combined voucher and, if `submit`, submits it at once.
    Reconcile { fee: u64, submit: bool },
    /// Epochs pass.
    Mine,
}

fn pay() -> impl Strategy<Value = Honest> {
    (0u64..4, 1u64..200).prop_map(|(lane, delta)| Honest::Pay { lane, delta })
}

fn now_and_then() -> impl Strategy<Value = Vec<Honest>> {
    vec(
        prop_oneof![
            2 => any::<usize>().prop_map(Honest::Add),
            1 => Just(Honest::Mine),
            1 => (0u64..4).prop_map(Honest::Submit),
        ],
        0..3,
    )
}

/// An honest history in the phases a payment relationship goes through: payments on a few
/// lanes, some lanes redeemed, more payments on them, a reconciliation, payments on fresh
/// lanes with the room left — with old vouchers sent again, epochs passing and redemptions
/// in between.
fn honest_history() -> impl Strategy<Value = Vec<Honest>> {
    let deltas = vec(1u64..200, 2..5);
    (
        deltas.clone(),
        vec(pay(), 0..3),
        (0usize..4, deltas),
        now_and_then(),
        (0u64..20, any::<bool>()).prop_map(|(fee, submit)| Honest::Reconcile { fee, submit }),
        vec(prop_oneof![(1u64..=100).prop_map(|percent| Honest::PayRoom { percent }), pay()], 1..3),
        now_and_then(),
    )
        .prop_map(|(first, more, (unredeemed, second), between, reconcile, room, after)| {
            let lanes = first.len() as u64;
            let mut steps: Vec<Honest> =
                (0..lanes).zip(first).map(|(lane, delta)| Honest::Pay { lane, delta }).collect();
            steps.extend(more);
            // Every lane but a few is redeemed, then raised again.
            let redeemed = lanes.saturating_sub(unredeemed as u64).max(2);
            steps.extend((0..redeemed).map(Honest::Submit));
            steps.extend((0..lanes).zip(second).map(|(lane, delta)| Honest::Pay { lane, delta }));
            steps.extend(between);
            steps.push(reconcile);
            steps.extend(room);
            steps.extend(after);
            steps
        })
}

struct HonestHistory {
    w: World,
    issued: Vec<SignedVoucher>,
    credited: TokenAmount,
    /// The combined vouchers the payee accepted, with what it gave up for each.
    combined: Vec<(SignedVoucher, TokenAmount)>,
    /// What the payee's own submissions took off what it could redeem: only a combined
    /// voucher landing, for no more than the discounts it carried.
    given_up: TokenAmount,
    start: (TokenAmount, TokenAmount),
}

impl HonestHistory {
    async fn new() -> Self {
        let w = World::new(HONEST_BALANCE).await;
        let start = payee_money(&w).await;
        HonestHistory {
            w,
            issued: Vec::new(),
            credited: TokenAmount::default(),
            combined: Vec::new(),
            given_up: TokenAmount::default(),
            start,
        }
    }

    async fn redeemable_with(&self, extra: Option<&SignedVoucher>) -> TokenAmount {
        let mut held = self.w.held();
        held.extend(extra.cloned());
        oracle(&view_of(&self.w.net.devnet, &self.w.ch, &held).await, &held).to_send
    }

    async fn apply(&mut self, step: &Honest) {
        match *step {
            Honest::Pay { lane, delta } => {
                let w = &self.w;
                let tip = w.payer.m().status(&w.ch).await.unwrap();
                let tip = tip.lanes.iter().find(|l| l.lane == lane).map(|l| l.amount.clone());
                let amount = tip.unwrap_or_default() + atto(delta);
                match w.payer.m().voucher_create(&w.ch, amount, lane).await {
                    Ok(created) => {
                        if let Some(v) = created.voucher {
                            self.pay(v).await;
                        }
                    }
                    Err(CreateVoucherError::LaneClosed(_)) => {}
                    Err(e) => panic!("the payer's voucher_create: {e:?}"),
                }
            }
            Honest::PayRoom { percent } => {
                let w = &self.w;
                let room = w.payer.m().available_funds(&w.ch).await.unwrap().non_reserved;
                let amount = (room * percent).div_floor(100);
                if amount.is_positive() {
                    let lane = w.payer.m().allocate_lane(&w.ch).await.unwrap();
                    let created = w.payer.m().voucher_create(&w.ch, amount, lane).await.unwrap();
                    self.pay(created.voucher.expect("the room is there")).await;
                }
            }
            Honest::Add(pick) => {
                if !self.issued.is_empty() {
                    let v = self.issued[pick % self.issued.len()].clone();
                    self.add(v).await;
                }
            }
            Honest::Submit(lane) => {
                let w = &self.w;
                let Ok(held) = w.payee.m().voucher_list(&w.ch) else { return };
                let Some(top) = held.iter().filter(|v| v.lane == lane).max_by_key(|v| v.nonce)
                else {
                    return;
                };
                let before = self.redeemable_with(None).await;
                if w.payee.m().voucher_submit(&w.ch, top, &[]).await.is_ok() {
                    w.mine(1).await;
                }
                self.note_given_up(before).await;
            }
            Honest::Reconcile { fee, submit } => self.reconcile(fee, submit).await,
            Honest::Mine => self.w.mine(1).await,
        }
    }

    /// The payer's new voucher, sent to the payee at once.
    async fn pay(&mut self, v: SignedVoucher) {
        self.issued.push(v.clone());
        self.add(v).await;
    }

    /// Adds an honest voucher: it must be credited exactly what it adds to what the payee
    /// can redeem — a valid voucher is never refused.
    async fn add(&mut self, v: SignedVoucher) {
        let before = self.redeemable_with(None).await;
        let with = self.redeemable_with(Some(&v)).await;
        let outcome = self.w.payee.m().voucher_add(&self.w.ch, &v, TokenAmount::default()).await;
        let expected = with - &before;
        assert_eq!(
            credit(&outcome),
            expected,
            "an honest voucher adding {} attoFIL: {outcome:?}\nvoucher:\n{}held:\n{}",
            expected.atto(),
            describe(std::slice::from_ref(&v)),
            describe(&self.w.held())
        );
        self.credited += credit(&outcome);
    }

    async fn reconcile(&mut self, fee: u64, submit: bool) {
        let (w, payer, payee) = (&self.w, self.w.payer.m(), self.w.payee.m());
        let hash = crypto::blake2b_256(&(self.issued.len() as u64).to_be_bytes());
        let Ok((draft, combined)) =
            paych_testkit::channel::fold_lanes(payer, payee, &w.ch, &atto(fee), &hash).await
        else {
            return;
        };
        let sum: TokenAmount = draft.vouchers.iter().map(|v| v.amount.clone()).sum();
        self.combined.push((combined.clone(), sum - draft.req_val));
        if submit {
            let before = self.redeemable_with(None).await;
            let (w, payee) = (&self.w, self.w.payee.m());
            let cid = payee.voucher_submit(&w.ch, &combined, &[]).await.unwrap();
            w.mine(1).await;
            let outcome = payee.wait_message(&cid).await.unwrap();
            assert!(matches!(outcome, MessageOutcome::Landed { exit_code: 0, .. }), "{outcome:?}");
            self.note_given_up(before).await;
        }
    }

    /// Records what a submission of the payee's took off what it can redeem (`before`):
    /// at most the discounts of the combined vouchers on chain.
    async fn note_given_up(&mut self, before: TokenAmount) {
        let after = self.redeemable_with(None).await;
        if after < before {
            self.given_up += before - after;
        }
        let discounts = self.discounts().await;
        assert!(
            self.given_up <= discounts,
            "the payee's submissions gave up {} attoFIL, more than the {} attoFIL of discounts \
             it agreed to",
            self.given_up.atto(),
            discounts.atto()
        );
    }

    /// What the payee gave up in the reconciliations whose combined voucher is on chain.
    async fn discounts(&self) -> TokenAmount {
        let state = self.w.net.devnet.channel(&self.w.ch).await.unwrap().state;
        self.combined
            .iter()
            .filter(|(v, _)| state.lanes.get(&v.lane).is_some_and(|l| l.nonce >= v.nonce))
            .map(|(_, discount)| discount.clone())
            .sum()
    }

    async fn check(&self) {
        let redeemable = self.redeemable_with(None).await;
        assert_eq!(
            self.credited.clone() - &self.given_up,
            redeemable,
            "credited {} attoFIL less {} attoFIL given up for reconciliation discounts\nheld:\n{}",
            self.credited.atto(),
            self.given_up.atto(),
            describe(&self.w.held())
        );
    }

    async fn redeem_and_collect(&self) {
        let w = &self.w;
        let plan = w.redeemable().await;
        let codes =
            carry_out(&w.net.devnet, w.payee.wallet.as_ref(), w.payee.addr, w.ch, &plan).await;
        assert!(codes.iter().all(|c| c.is_success()), "{codes:?}");
        redeemable::settle_landed(&w.net.devnet, w.payee.m()).await;
        let income = collect_income(w, &self.start).await;
        assert_eq!(income, self.credited.clone() - &self.given_up, "paid otherwise than credited");
    }
}

async fn play_honest(steps: Vec<Honest>, redeem: bool) {
    let mut h = HonestHistory::new().await;
    for step in &steps {
        h.apply(step).await;
        h.check().await;
    }
    if redeem {
        h.redeem_and_collect().await;
    }
}

/// A history drawn from `history`, and whether the payee redeems at the end (a quarter of
/// the time).
fn then_redeem<T: fmt::Debug>(
    history: impl Strategy<Value = T>,
) -> impl Strategy<Value = (T, bool)> {
    (history, prop::bool::weighted(0.25))
}

/// One to eleven hostile steps drawn from `step`, and whether the payee redeems at the end.
fn hostile(step: impl Strategy<Value = Step>) -> impl Strategy<Value = (Vec<Step>, bool)> {
    then_redeem(vec(step, 1..12))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn hostile_payers_are_never_credited_more_than_the_chain_pays(
        (steps, redeem) in hostile(step()),
    ) {
        runtime().block_on(play_hostile(steps, redeem, false));
    }

    #[test]
    fn hostile_payers_of_plain_vouchers_are_never_credited_more_than_the_chain_pays(
        (steps, redeem) in hostile(plain_step()),
    ) {
        runtime().block_on(play_hostile(steps, redeem, false));
    }

    #[test]
    fn the_promise_can_be_kept_under_the_same_attacks_by_a_payee_crediting_the_oracle(
        (steps, redeem) in hostile(step()),
    ) {
        runtime().block_on(play_hostile(steps, redeem, true));
    }

    #[test]
    fn honest_payers_are_credited_exactly_what_the_chain_pays(
        (steps, redeem) in then_redeem(honest_history()),
    ) {
        runtime().block_on(play_honest(steps, redeem));
    }
}
