//! Routed payments under random interleavings: payer P, hub H and payee R — three real
//! managers over sled stores on the in-process devnet — take their steps of design §9 in a
//! random order, crash and restart (their stores reopened), go away for up to their tolerated
//! downtime `G` (neither settler nor watchtower acting), settle either channel, and let the
//! chain advance; the payer also signs rogue conditional vouchers outside its manager,
//! whatever its channel covers. Then every lock runs out while each party keeps coming back
//! within its tolerated downtime.
//!
//! At the end, what each party can be paid is measured by the brute-force oracle of
//! `redeemable/mod.rs` — every order of every subset of the vouchers held, through the actor's
//! rules, on the chain's state — never by the code under test, and checked against what each
//! party is owed:
//! - the payee is paid at least what it credited;
//! - the hub is paid on P→H at least what it pays on H→R (it never loses money);
//! - the payer pays at most the amount plus fee of the routes whose secret left the payee
//!   (the payer's receipts: revealed to the hub, or published on chain).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod redeemable;

use std::time::Duration;

use paych_core::chain::Chain;
use paych_core::invoice::{self, InvoiceTerms};
use paych_core::manager::ConditionalTerms;
use paych_core::route::{self, RouteParams};
use paych_core::types::{Address, ChainEpoch, SignedVoucher, TokenAmount};
use paych_testkit::amounts::atto;
use paych_testkit::devnet::{runtime, test_config, Net, Node};
use proptest::collection::vec;
use proptest::prelude::*;
use redeemable::{redeemable, view_of};

const PARAMS: RouteParams =
    RouteParams { conf: 2, inclusion: 2, hub_downtime: 3, payee_downtime: 3 };
const D_R: ChainEpoch = 7;
const AMOUNT: u64 = 1_000;
const FEE: u64 = 10;
/// Routes per history: few enough for the brute-force oracle.
const ROUTES: usize = 2;

/// One step of one party.
#[derive(Debug, Clone)]
enum Op {
    /// P offers route `i` to H, H forwards it to R.
    Offer(usize),
    /// R reveals route `i`'s secret to H.
    Reveal(usize),
    /// P replaces its conditional voucher of route `i` (it holds the secret from H).
    PayerReplaces(usize),
    /// H replaces its conditional voucher of route `i` for R.
    HubReplaces(usize),
    /// R redeems its conditional voucher of route `i` on chain (the secret becomes public;
    /// the hub's watchtower finds it).
    PayeeRedeems(usize),
    /// Party 0 (P), 1 (H) or 2 (R) crashes and restarts.
    Crash(usize),
    /// P settles P→H (false) or H settles H→R (true).
    Settle(bool),
    /// The chain advances by 1 to 3 epochs; every party looks at it (within its downtime).
    Mine(u64),
    /// P and H try to expire their conditional vouchers of route `i`.
    Expire(usize),
    /// Party 1 (H) or 2 (R) is away for the next 1 to `G` epochs: neither its settler nor its
    /// watchtower acts meanwhile. A party already away comes back before it goes away again
    /// (it acts at the epoch it comes back), so no absence outlasts its tolerated downtime.
    Away(usize, u64),
    /// P signs, outside its manager, a conditional voucher for route `i` on a lane of its
    /// own choosing whatever its channel covers, and offers it to H.
    RogueOffer(usize, u64),
}

fn op() -> impl Strategy<Value = Op> {
    let route = 0..ROUTES;
    prop_oneof![
        3 => route.clone().prop_map(Op::Offer),
        2 => route.clone().prop_map(Op::Reveal),
        2 => route.clone().prop_map(Op::PayerReplaces),
        2 => route.clone().prop_map(Op::HubReplaces),
        1 => route.clone().prop_map(Op::PayeeRedeems),
        1 => (0..3usize).prop_map(Op::Crash),
        1 => any::<bool>().prop_map(Op::Settle),
        3 => (1..=3u64).prop_map(Op::Mine),
        1 => route.clone().prop_map(Op::Expire),
        2 => (1..3usize, 1..=PARAMS.hub_downtime).prop_map(|(p, k)| Op::Away(p, k)),
        1 => (route, 50..52u64).prop_map(|(i, lane)| Op::RogueOffer(i, lane)),
    ]
}

/// What the test driver knows of one route.
#[derive(Default)]
struct RouteState {
    hash: Vec<u8>,
    secret: Vec<u8>,
    t1: ChainEpoch,
    /// P's lane, once offered.
    payer_lane: Option<u64>,
    /// H's lane on H→R and its conditional voucher's nonce, once R accepted.
    hub_lane: Option<u64>,
    hub_nonce: u64,
    hub_knows: bool,
    payer_replaced: bool,
    hub_replaced: bool,
}

struct History {
    net: Net,
    nodes: Vec<Option<Node>>,
    ph: Address,
    hr: Address,
    routes: Vec<RouteState>,
    payee_credited: TokenAmount,
    /// Per party, the first epoch at which it acts again.
    back_at: [ChainEpoch; 3],
}

impl History {
    async fn new() -> Self {
        let net = Net::manual();
        let mut config = test_config();
        config.intake.landing_margin = PARAMS.submit_margin();
        // The settler acts when the history says so (every `Mine` step), never on its own.
        config.settler_interval = Duration::from_secs(3600);
        let p = net.node_with(10, config.clone()).await;
        let h = net.node_with(10, config.clone()).await;
        let r = net.node_with(10, config).await;
        // P→H covers one route revealed, not two: over-commitment is tried too.
        let ph = p.open_channel(h.addr, atto(AMOUNT + FEE + 500)).await;
        let hr = h.open_channel(r.addr, atto(10 * AMOUNT)).await;
        let mut routes = Vec::new();
        for _ in 0..ROUTES {
            let m = r.m();
            let terms = InvoiceTerms {
                payee: r.addr,
                amount: atto(AMOUNT),
                expiry: invoice::unix_now() + 3600,
                payee_margin: D_R,
                hubs: Vec::new(),
            };
            let issued =
                invoice::issue(m.store().as_ref(), m.wallet().as_ref(), terms).await.unwrap();
            let hash = issued.payment_hash.to_vec();
            let secret = m.known_secret(&hash).unwrap().unwrap();
            routes.push(RouteState { hash, secret, ..RouteState::default() });
        }
        History {
            net,
            nodes: vec![Some(p), Some(h), Some(r)],
            ph,
            hr,
            routes,
            payee_credited: TokenAmount::default(),
            back_at: [0; 3],
        }
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().unwrap()
    }

    async fn head(&self) -> ChainEpoch {
        self.net.devnet.head().await.unwrap()
    }

    async fn apply(&mut self, op: &Op) {
        match *op {
            Op::Offer(i) => self.offer(i).await,
            Op::Reveal(i) => {
                if self.routes[i].hub_lane.is_some() {
                    self.hub_learns(i).await;
                }
            }
            Op::PayerReplaces(i) => self.payer_replaces(i).await,
            Op::HubReplaces(i) => self.hub_replaces(i).await,
            Op::PayeeRedeems(i) => self.payee_redeems(i).await,
            Op::Crash(party) => {
                let node = self.nodes[party].take().unwrap();
                self.nodes[party] = Some(node.stop().await.started().await);
            }
            Op::Settle(hub) => {
                let (node, channel) = if hub { (1, self.hr) } else { (0, self.ph) };
                // A settle already under way is answered again; a refused one changes nothing.
                let _ = self.node(node).m().settle(&channel).await;
            }
            Op::Mine(n) => self.mine(n).await,
            Op::Expire(i) => self.expire(i).await,
            Op::Away(party, epochs) => {
                let away = ChainEpoch::try_from(epochs).unwrap();
                let head = self.head().await;
                // Back-to-back absences would add up to more than the tolerated downtime.
                if head >= self.back_at[party] {
                    self.back_at[party] = head + 1 + away;
                }
            }
            Op::RogueOffer(i, lane) => self.rogue_offer(i, lane).await,
        }
    }

    async fn offer(&mut self, i: usize) {
        if self.routes[i].payer_lane.is_some() {
            return;
        }
        let t1 = route::offer_lock(self.head().await, D_R, &PARAMS, 3);
        let hash = self.routes[i].hash.clone();
        let Ok(offered) =
            self.node(0).m().conditional_offer(&self.ph, atto(AMOUNT + FEE), &hash, t1).await
        else {
            return;
        };
        self.routes[i].payer_lane = Some(offered.lane);
        self.hub_takes(i, offered.voucher, t1).await;
    }

    async fn rogue_offer(&mut self, i: usize, lane: u64) {
        if self.routes[i].hub_lane.is_some() {
            return;
        }
        let t1 = route::offer_lock(self.head().await, D_R, &PARAMS, 3);
        let mut voucher = SignedVoucher::new(self.ph, lane, 1, atto(AMOUNT + FEE));
        voucher.secret_hash = self.routes[i].hash.clone();
        voucher.time_lock_max = t1;
        let voucher = self.node(0).sign(voucher);
        self.hub_takes(i, voucher, t1).await;
    }

    /// H takes P's conditional voucher for route `i` and forwards the route to R.
    async fn hub_takes(&mut self, i: usize, voucher: SignedVoucher, t1: ChainEpoch) {
        let head = self.head().await;
        let hash = self.routes[i].hash.clone();
        self.routes[i].t1 = self.routes[i].t1.max(t1);
        let terms = ConditionalTerms {
            hash: hash.clone(),
            lock: t1,
            delta: atto(AMOUNT + FEE),
            margin: PARAMS.hub_delta() + D_R,
        };
        if self.node(1).m().conditional_accept(&voucher, &terms).await.is_err() {
            return;
        }
        let settling_at = self.net.devnet.channel(&self.ph).await.unwrap().state.settling_at;
        let Ok(plan) = route::plan_forward(t1, settling_at, head, &PARAMS, D_R) else { return };
        let hub = self.node(1).m();
        let Ok(forwarded) =
            hub.conditional_offer(&self.hr, atto(AMOUNT), &hash, plan.payee_lock).await
        else {
            return;
        };
        let terms =
            ConditionalTerms { hash, lock: plan.payee_lock, delta: atto(AMOUNT), margin: D_R };
        if let Ok(credit) = self.node(2).m().conditional_accept(&forwarded.voucher, &terms).await {
            self.payee_credited += credit;
            self.routes[i].hub_lane = Some(forwarded.lane);
            self.routes[i].hub_nonce = forwarded.voucher.nonce;
        }
    }

    async fn hub_learns(&mut self, i: usize) {
        let (hash, secret) = (self.routes[i].hash.clone(), self.routes[i].secret.clone());
        self.node(1).m().learn_secret(&hash, &secret).await.unwrap();
        self.routes[i].hub_knows = true;
    }

    async fn payer_replaces(&mut self, i: usize) {
        let r = &self.routes[i];
        let (Some(lane), true, false) = (r.payer_lane, r.hub_knows, r.payer_replaced) else {
            return;
        };
        let secret = r.secret.clone();
        let Ok(replacement) = self.node(0).m().conditional_replace(&self.ph, lane, &secret).await
        else {
            return;
        };
        self.routes[i].payer_replaced = true;
        // As the hub's node takes it: the replacement's own intake, crediting nothing.
        let _ = self.node(1).m().replacement_add(&self.ph, &replacement).await;
    }

    async fn hub_replaces(&mut self, i: usize) {
        let r = &self.routes[i];
        let (Some(lane), true, false) = (r.hub_lane, r.hub_knows, r.hub_replaced) else {
            return;
        };
        // §9: once it holds P's replacement, or while P's voucher can still land.
        let margin = PARAMS.submit_margin() + PARAMS.conf_epochs();
        if !r.payer_replaced && self.head().await + margin >= r.t1 {
            return;
        }
        let secret = r.secret.clone();
        let Ok(replacement) = self.node(1).m().conditional_replace(&self.hr, lane, &secret).await
        else {
            return;
        };
        self.routes[i].hub_replaced = true;
        // As the payee's node takes it: the replacement's own intake, crediting nothing (the
        // payee was credited with the conditional voucher and its secret).
        let _ = self.node(2).m().replacement_add(&self.hr, &replacement).await;
    }

    async fn payee_redeems(&mut self, i: usize) {
        let Some(lane) = self.routes[i].hub_lane else { return };
        if self.node(2).m().conditional_redeem(&self.hr, lane).await.is_ok() {
            // The secret is in the message: the hub's watchtower finds it.
            self.hub_learns(i).await;
        }
    }

    /// The hub's watchtower: a conditional voucher of H→R redeemed on chain carried its
    /// secret in the message.
    async fn watch(&mut self) {
        let lanes = self.net.devnet.channel(&self.hr).await.unwrap().state.lanes;
        for i in 0..self.routes.len() {
            let r = &self.routes[i];
            let Some(lane) = r.hub_lane else { continue };
            let redeemed = lanes.get(&lane).is_some_and(|l| l.nonce >= r.hub_nonce);
            if redeemed && !r.hub_knows {
                self.hub_learns(i).await;
            }
        }
    }

    async fn expire(&mut self, i: usize) {
        if let Some(lane) = self.routes[i].payer_lane {
            let _ = self.node(0).m().conditional_expire(&self.ph, lane).await;
        }
        if let Some(lane) = self.routes[i].hub_lane {
            let _ = self.node(1).m().conditional_expire(&self.hr, lane).await;
        }
    }

    /// Mines `n` epochs, one at a time, every party looking after each: the hub's watchtower
    /// finds a secret the payee published on chain, and every settler takes its turn.
    async fn mine(&mut self, n: u64) {
        for _ in 0..n {
            self.messages_reach_the_pool().await;
            self.net.mine(1);
            let head = self.head().await;
            if head >= self.back_at[1] {
                self.watch().await;
            }
            for party in (0..3).filter(|p| head >= self.back_at[*p]) {
                let _ = self.node(party).m().settler_pass().await;
            }
        }
    }

    /// Waits until every message a party has recorded has reached the message pool (see
    /// [`redeemable::pushed`]).
    async fn messages_reach_the_pool(&self) {
        for node in self.nodes.iter().flatten() {
            redeemable::pushed(node.m()).await;
        }
    }

    /// Every lock runs out (by the confirmation depth) while the parties keep acting.
    async fn run_out(&mut self) {
        let last = self.routes.iter().map(|r| r.t1).max().unwrap_or(0);
        while self.head().await <= last + PARAMS.conf_epochs() + 1 {
            self.mine(1).await;
        }
        // Submitted messages land.
        self.mine(2).await;
    }

    /// What the oracle says the holder of `channel` (node `holder`) can be paid.
    async fn paid(&self, holder: usize, channel: &Address) -> TokenAmount {
        // A holder that never took a voucher on the channel does not know it: it holds nothing.
        let held: Vec<SignedVoucher> =
            self.node(holder).m().voucher_list(channel).unwrap_or_default();
        let view = view_of(&self.net.devnet, channel, &held).await;
        redeemable(&view, &held).to_send
    }

    async fn check(&self) {
        let payee_paid = self.paid(2, &self.hr).await;
        let hub_paid = self.paid(1, &self.ph).await;
        assert!(
            payee_paid >= self.payee_credited,
            "the payee credited {:?} but can be paid only {payee_paid:?}",
            self.payee_credited
        );
        assert!(hub_paid >= payee_paid, "the hub is paid {hub_paid:?} but pays {payee_paid:?}");
        let receipts = self.routes.iter().filter(|r| r.hub_knows).count();
        let owed = atto((AMOUNT + FEE) * u64::try_from(receipts).unwrap());
        assert!(hub_paid <= owed, "the payer pays {hub_paid:?} for {receipts} receipts");
    }
}

async fn play(ops: Vec<Op>) {
    let mut history = History::new().await;
    for op in &ops {
        history.apply(op).await;
    }
    history.run_out().await;
    history.check().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 50, ..ProptestConfig::default() })]

    #[test]
    fn no_party_that_comes_back_within_its_downtime_ends_with_less_than_it_is_owed(
        ops in vec(op(), 6..24)
    ) {
        runtime().block_on(play(ops));
    }
}
