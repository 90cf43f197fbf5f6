//! Conditional vouchers of routed payments (design §9) between three real managers — payer P,
//! hub H, payee R — over sled stores on the in-process devnet, mined by hand so that every
//! lock and deadline is an epoch the test chooses. What is credited, refused and redeemed is
//! read from the managers' answers and from the chain's channel state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paych_core::chain::{prepare_message, Chain};
use paych_core::combine::ReconcilePolicy;
use paych_core::invoice::{self, InvoiceTerms};
use paych_core::manager::{
    AddOutcome, AddVoucherError, ConditionalError, ConditionalTerms, CreateVoucherError,
    ExpireOutcome, ManagerConfig,
};
use paych_core::route::{self, RouteParams, RouteRefusal};
use paych_core::types::{
    paych_method, Address, ChainEpoch, Message, SignedVoucher, TokenAmount,
    UpdateChannelStateParams,
};
use paych_testkit::amounts::atto;
use paych_testkit::devnet::{test_config, Net, Node};

/// The route's timing: the managers' defaults (conf 2, S 2, G_H 3, G_R 3).
const PARAMS: RouteParams =
    RouteParams { conf: 2, inclusion: 2, hub_downtime: 3, payee_downtime: 3 };
/// The payee's margin `D_R` its invoice states.
const D_R: ChainEpoch = 7;
/// What P pays R, and the hub's fee.
const AMOUNT: u64 = 1_000;
const FEE: u64 = 10;

/// P, H and R on one devnet mined by hand, with channels P→H and H→R.
struct Route {
    net: Net,
    p: Node,
    h: Node,
    r: Node,
    ph: Address,
    hr: Address,
}

impl Route {
    /// Three funded nodes; P→H holds `ph_funds` attoFIL and H→R holds `hr_funds`.
    async fn new(ph_funds: u64, hr_funds: u64) -> Self {
        // Messages land within `S + conf` epochs: the window a held voucher must leave
        // before its lock to count (the default of 20 epochs would outlast these short locks).
        Route::with_landing_margin(ph_funds, hr_funds, PARAMS.submit_margin()).await
    }

    async fn with_landing_margin(ph_funds: u64, hr_funds: u64, margin: ChainEpoch) -> Self {
        let mut config = test_config();
        config.intake.landing_margin = margin;
        Route::with_config(ph_funds, hr_funds, config).await
    }

    /// The three nodes run with `config`.
    async fn with_config(ph_funds: u64, hr_funds: u64, config: ManagerConfig) -> Self {
        let net = Net::manual();
        let p = net.node_with(10, config.clone()).await;
        let h = net.node_with(10, config.clone()).await;
        let r = net.node_with(10, config).await;
        let ph = p.open_channel(h.addr, atto(ph_funds)).await;
        let hr = h.open_channel(r.addr, atto(hr_funds)).await;
        Route { net, p, h, r, ph, hr }
    }

    async fn head(&self) -> ChainEpoch {
        self.net.devnet.head().await.unwrap()
    }

    /// R's invoice: its secret kept in R's store; answers the payment hash and the secret.
    async fn invoice(&self) -> (Vec<u8>, Vec<u8>) {
        let terms = InvoiceTerms {
            payee: self.r.addr,
            amount: atto(AMOUNT),
            expiry: invoice::unix_now() + 3600,
            payee_margin: D_R,
            hubs: Vec::new(),
        };
        let m = self.r.m();
        let issued = invoice::issue(m.store().as_ref(), m.wallet().as_ref(), terms).await.unwrap();
        let hash = issued.payment_hash.to_vec();
        let secret = m.known_secret(&hash).unwrap().unwrap();
        (hash, secret)
    }

    /// P's lock `T1` for a route starting now.
    async fn t1(&self) -> ChainEpoch {
        route::offer_lock(self.head().await, D_R, &PARAMS, 3)
    }

    /// P offers `Vp` on P→H and H accepts it: answers P's lane, `Vp`, and H's credit.
    async fn offer(&self, hash: &[u8], t1: ChainEpoch) -> (u64, SignedVoucher, TokenAmount) {
        let offered =
            self.p.m().conditional_offer(&self.ph, atto(AMOUNT + FEE), hash, t1).await.unwrap();
        let credited = self
            .h
            .m()
            .conditional_accept(&offered.voucher, &self.hub_terms(hash, t1))
            .await
            .unwrap();
        (offered.lane, offered.voucher, credited)
    }

    fn hub_terms(&self, hash: &[u8], t1: ChainEpoch) -> ConditionalTerms {
        ConditionalTerms {
            hash: hash.to_vec(),
            lock: t1,
            delta: atto(AMOUNT + FEE),
            margin: PARAMS.hub_delta() + D_R,
        }
    }

    /// H forwards `Vh` on H→R with `T2` and R accepts it: answers H's lane, `Vh`, R's credit.
    async fn forward(&self, hash: &[u8], t1: ChainEpoch) -> (u64, SignedVoucher, TokenAmount) {
        let plan = route::plan_forward(t1, 0, self.head().await, &PARAMS, D_R).unwrap();
        let t2 = plan.payee_lock;
        let offered = self.h.m().conditional_offer(&self.hr, atto(AMOUNT), hash, t2).await.unwrap();
        let terms =
            ConditionalTerms { hash: hash.to_vec(), lock: t2, delta: atto(AMOUNT), margin: D_R };
        let credited = self.r.m().conditional_accept(&offered.voucher, &terms).await.unwrap();
        (offered.lane, offered.voucher, credited)
    }

    /// P pays `amount` more on `lane` of P→H (leased and returned) and H takes it.
    async fn pay_on_lane(&self, lane: u64, amount: u64) -> SignedVoucher {
        let m = self.p.m();
        let voucher = m.voucher_pay(&self.ph, lane, atto(amount)).await.unwrap().voucher.unwrap();
        self.h.m().voucher_add(&self.ph, &voucher, TokenAmount::default()).await.unwrap();
        voucher
    }

    /// H redeems `voucher` on P→H and the message lands.
    async fn hub_redeems(&self, voucher: &SignedVoucher) {
        let cid = self.h.m().voucher_submit(&self.ph, voucher, &[]).await.unwrap();
        self.net.mine_until_landed(self.h.m(), &cid).await;
    }

    /// Lanes 0 and 1 of P→H: paid, redeemed on chain by H, then paid again (where `again`
    /// is not 0); answers each lane's latest voucher.
    async fn lanes_on_chain(&self, first: [u64; 2], again: [u64; 2]) -> Vec<SignedVoucher> {
        let m = self.p.m();
        let (l0, l1) =
            (m.lease_lane(&self.ph).await.unwrap(), m.lease_lane(&self.ph).await.unwrap());
        assert_eq!((l0, l1), (0, 1));
        let mut latest = Vec::new();
        for (lane, amount) in [(0, first[0]), (1, first[1])] {
            let voucher = self.pay_on_lane(lane, amount).await;
            self.hub_redeems(&voucher).await;
            latest.push(voucher);
        }
        for (lane, amount) in [(0, again[0]), (1, again[1])] {
            if amount > 0 {
                latest[usize::try_from(lane).unwrap()] = self.pay_on_lane(lane, amount).await;
            }
        }
        m.return_lane(&self.ph, 0).await.unwrap();
        m.return_lane(&self.ph, 1).await.unwrap();
        latest
    }

    /// H asks P to reconcile P→H and takes the combined voucher P answers.
    async fn reconcile(&self) -> SignedVoucher {
        let draft = self.h.m().reconcile_draft(&self.ph, &atto(40)).await.unwrap();
        let hash = paych_core::crypto::blake2b_256(b"reconcile P->H");
        let answer = self
            .p
            .m()
            .reconcile_as_payer(
                Some(&self.h.addr),
                &hash,
                &draft.vouchers,
                &draft.req_val,
                &ReconcilePolicy::default(),
                |v: &SignedVoucher| v.to_cbor(),
            )
            .await
            .unwrap();
        let combined = SignedVoucher::from_cbor(&answer).unwrap();
        let m = self.h.m();
        m.reconcile_accept(&self.ph, &draft.vouchers, &draft.req_val, &combined).await.unwrap();
        combined
    }

    /// Mines until the head is `epoch`.
    async fn mine_to(&self, epoch: ChainEpoch) {
        let head = self.head().await;
        self.net.mine(u64::try_from((epoch - head).max(0)).unwrap());
    }

    /// The `to_send` of a channel on chain.
    async fn to_send(&self, channel: &Address) -> TokenAmount {
        self.net.devnet.channel(channel).await.unwrap().state.to_send
    }
}

/// A voucher on `lane` at `nonce` for `amount`, unconditional, signed by `payer`.
fn plain(payer: &Node, channel: Address, lane: u64, nonce: u64, amount: u64) -> SignedVoucher {
    payer.sign(SignedVoucher::new(channel, lane, nonce, atto(amount)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_payment_is_credited_once_its_secret_is_known_and_replaced_on_the_same_lanes() {
    let w = Route::new(10_000, 10_000).await;
    let (hash, secret) = w.invoice().await;
    let t1 = w.t1().await;
    let (lp, vp, hub_credit) = w.offer(&hash, t1).await;
    assert!(hub_credit.is_zero(), "the hub credits nothing without the secret");
    let (lh, vh, payee_credit) = w.forward(&hash, t1).await;
    assert_eq!(payee_credit, atto(AMOUNT), "the payee holds its own secret");

    // R reveals; H learns it: P's voucher is now worth its amount to H.
    w.h.m().learn_secret(&hash, &secret).await.unwrap();
    let pending = w.h.m().pending_conditionals(&w.ph).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert!(pending[0].secret_known);
    let best = w.h.m().voucher_best_spendable(&w.ph).await.unwrap();
    assert_eq!(best, vec![vp.clone()]);

    // P replaces its voucher with the secret: same lane and amount, next nonce, no conditions.
    let rp = w.p.m().conditional_replace(&w.ph, lp, &secret).await.unwrap();
    assert_eq!((rp.lane, rp.nonce, &rp.amount), (lp, vp.nonce + 1, &vp.amount));
    assert!(rp.secret_hash.is_empty() && rp.time_lock_max == 0);
    // H already counted the secret: the replacement adds nothing more.
    let added = w.h.m().voucher_add(&w.ph, &rp, TokenAmount::default()).await.unwrap();
    assert!(matches!(added, AddOutcome::Covered { .. }), "{added:?}");
    assert!(w.h.m().pending_conditionals(&w.ph).await.unwrap().is_empty());

    // H replaces its own; R credits nothing twice.
    let rh = w.h.m().conditional_replace(&w.hr, lh, &secret).await.unwrap();
    assert_eq!((rh.lane, rh.nonce, &rh.amount), (lh, vh.nonce + 1, &vh.amount));
    let added = w.r.m().voucher_add(&w.hr, &rh, TokenAmount::default()).await.unwrap();
    assert!(matches!(added, AddOutcome::Covered { .. }), "{added:?}");

    // The lanes are back in their pools: the next route reuses them on fresh nonces.
    let (hash2, _) = w.invoice().await;
    let t1 = w.t1().await;
    let (lp2, vp2, _) = w.offer(&hash2, t1).await;
    assert_eq!(lp2, lp);
    assert_eq!(vp2.nonce, rp.nonce + 1);
    assert_eq!(vp2.amount, atto(2 * (AMOUNT + FEE)));
    let (lh2, ..) = w.forward(&hash2, t1).await;
    assert_eq!(lh2, lh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_with_a_pending_conditional_voucher_takes_no_other_voucher_but_its_replacement() {
    let w = Route::new(10_000, 10_000).await;
    let (hash, _) = w.invoice().await;
    let t1 = w.t1().await;
    let (lp, vp, _) = w.offer(&hash, t1).await;

    // The payer signs nothing else on the lane.
    let err = w.p.m().voucher_pay(&w.ph, lp, atto(5)).await.unwrap_err();
    assert!(matches!(err, CreateVoucherError::Route(RouteRefusal::LanePending(l)) if l == lp));
    // Nor after a restart: the pending lane is found again in the store.
    let p = Route { p: w.p.stop().await.started().await, ..w };
    let err = p.p.m().voucher_pay(&p.ph, lp, atto(5)).await.unwrap_err();
    assert!(matches!(err, CreateVoucherError::Route(RouteRefusal::LanePending(_))), "{err}");

    // The hub takes no higher voucher there (after a restart too), nor one that looks like a
    // replacement but pays another amount, nor a second conditional voucher.
    let w = Route { h: p.h.stop().await.started().await, ..p };
    let higher = plain(&w.p, w.ph, lp, vp.nonce + 1, AMOUNT + FEE + 5);
    let err = w.h.m().voucher_add(&w.ph, &higher, TokenAmount::default()).await.unwrap_err();
    assert!(matches!(err, AddVoucherError::Route(RouteRefusal::BadReplacement(_))), "{err}");
    let mut second = SignedVoucher::new(w.ph, lp, vp.nonce + 1, atto(2 * (AMOUNT + FEE)));
    second.secret_hash = vec![7; 32];
    second.time_lock_max = t1;
    let second = w.p.sign(second);
    let terms = ConditionalTerms { hash: vec![7; 32], ..w.hub_terms(&hash, t1) };
    let err = w.h.m().conditional_accept(&second, &terms).await.unwrap_err();
    assert!(matches!(err, AddVoucherError::Route(RouteRefusal::LanePending(_))), "{err}");
    // Its exact replacement is taken.
    let exact = plain(&w.p, w.ph, lp, vp.nonce + 1, AMOUNT + FEE);
    let added = w.h.m().voucher_add(&w.ph, &exact, TokenAmount::default()).await.unwrap();
    assert_eq!(added, AddOutcome::Accepted { delta: atto(AMOUNT + FEE) });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routes_replacement_intake_takes_only_the_exact_replacement_and_credits_nothing() {
    let w = Route::new(10_000, 10_000).await;
    let (hash, secret) = w.invoice().await;
    let t1 = w.t1().await;
    let (lp, vp, _) = w.offer(&hash, t1).await;
    w.h.m().learn_secret(&hash, &secret).await.unwrap();
    let h = w.h.m();
    let credited = || async { h.store().channel_by_address(&w.ph).unwrap().unwrap().credited };
    let before = credited().await;
    let bad_replacement = |e: AddVoucherError| {
        assert!(matches!(e, AddVoucherError::Route(RouteRefusal::BadReplacement(_))), "{e}");
    };

    // Below the pending conditional voucher: not its replacement, however it pays.
    assert!(vp.nonce >= 1, "the lane's first voucher has nonce {}", vp.nonce);
    let below = plain(&w.p, w.ph, lp, vp.nonce - 1, AMOUNT + FEE);
    bad_replacement(h.replacement_add(&w.ph, &below).await.unwrap_err());
    // Above it but for another amount, or with a condition left on it.
    let more = plain(&w.p, w.ph, lp, vp.nonce + 1, AMOUNT + FEE + 5);
    bad_replacement(h.replacement_add(&w.ph, &more).await.unwrap_err());
    let mut locked = SignedVoucher::new(w.ph, lp, vp.nonce + 1, atto(AMOUNT + FEE));
    locked.time_lock_max = t1;
    bad_replacement(h.replacement_add(&w.ph, &w.p.sign(locked)).await.unwrap_err());
    // On a lane holding no conditional voucher.
    let elsewhere = plain(&w.p, w.ph, lp + 1, 1, AMOUNT + FEE);
    bad_replacement(h.replacement_add(&w.ph, &elsewhere).await.unwrap_err());
    // The right shape signed by another key: the actor's verdict refuses it.
    let forged = w.h.sign(SignedVoucher::new(w.ph, lp, vp.nonce + 1, atto(AMOUNT + FEE)));
    let err = h.replacement_add(&w.ph, &forged).await.unwrap_err();
    assert!(matches!(err, AddVoucherError::InvalidVoucher(_)), "{err}");
    // None of them resolved the conditional voucher, or was kept.
    assert_eq!(h.pending_conditionals(&w.ph).await.unwrap().len(), 1);
    let id = h.store().channel_by_address(&w.ph).unwrap().unwrap().id;
    assert_eq!(h.store().lane_vouchers(id, lp, 0).unwrap().len(), 1);

    // The exact replacement is taken: the conditional voucher is no longer pending, and the
    // channel's credit stays where the secret put it.
    let exact = plain(&w.p, w.ph, lp, vp.nonce + 1, AMOUNT + FEE);
    h.replacement_add(&w.ph, &exact).await.unwrap();
    assert!(h.pending_conditionals(&w.ph).await.unwrap().is_empty());
    assert_eq!(credited().await, before);
    assert_eq!(h.voucher_best_spendable(&w.ph).await.unwrap(), vec![exact.clone()]);
    // Sent again, it is acknowledged again and changes nothing.
    h.replacement_add(&w.ph, &exact).await.unwrap();
    assert_eq!(credited().await, before);
    // Nor after a restart (the held vouchers come back from the store).
    let w = Route { h: w.h.stop().await.started().await, ..w };
    w.h.m().replacement_add(&w.ph, &exact).await.unwrap();
    // Now that the lane's top is unconditional, a lower voucher it covers is acknowledged
    // (as a replacement sent again after the lane moved on would be) and not kept.
    w.h.m().replacement_add(&w.ph, &below).await.unwrap();
    assert_eq!(w.h.m().store().lane_vouchers(id, lp, 0).unwrap().len(), 2);
    // Nothing else is a replacement there: a later payment on the lane is not one.
    let later = plain(&w.p, w.ph, lp, exact.nonce + 1, AMOUNT + FEE + 5);
    bad_replacement(w.h.m().replacement_add(&w.ph, &later).await.unwrap_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_at_an_older_routes_amount_on_a_reused_lane_is_refused() {
    let w = Route::new(10_000, 10_000).await;
    // The first route on the lane, replaced; the lane comes back and carries a second.
    let (hash, secret) = w.invoice().await;
    let t1 = w.t1().await;
    let (lp, vp, _) = w.offer(&hash, t1).await;
    w.h.m().learn_secret(&hash, &secret).await.unwrap();
    let rp = w.p.m().conditional_replace(&w.ph, lp, &secret).await.unwrap();
    w.h.m().replacement_add(&w.ph, &rp).await.unwrap();
    let (hash2, secret2) = w.invoice().await;
    let (lp2, vp2, _) = w.offer(&hash2, t1).await;
    assert_eq!(lp2, lp);
    w.h.m().learn_secret(&hash2, &secret2).await.unwrap();
    let h = w.h.m();
    let id = h.store().channel_by_address(&w.ph).unwrap().unwrap().id;
    let held = h.store().lane_vouchers(id, lp, 0).unwrap().len();

    // Above the second route's conditional voucher, at the first route's amount: it matches
    // a conditional voucher the lane held once, not the one on top of it — refused while the
    // second is pending, and still once its lock has passed and nothing is pending.
    let older = plain(&w.p, w.ph, lp, vp2.nonce + 1, AMOUNT + FEE);
    assert_eq!(older.amount, vp.amount);
    let bad_replacement = |e: AddVoucherError| {
        assert!(matches!(e, AddVoucherError::Route(RouteRefusal::BadReplacement(_))), "{e}");
    };
    bad_replacement(h.replacement_add(&w.ph, &older).await.unwrap_err());
    w.mine_to(t1 + PARAMS.conf_epochs() + 1).await;
    assert!(h.pending_conditionals(&w.ph).await.unwrap().is_empty());
    bad_replacement(h.replacement_add(&w.ph, &older).await.unwrap_err());
    assert_eq!(h.store().lane_vouchers(id, lp, 0).unwrap().len(), held);
    // The second route's own replacement is still taken, late.
    let exact = plain(&w.p, w.ph, lp, vp2.nonce + 1, 2 * (AMOUNT + FEE));
    h.replacement_add(&w.ph, &exact).await.unwrap();
    assert_eq!(h.store().lane_vouchers(id, lp, 0).unwrap().len(), held + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_return_of_a_lane_with_a_pending_conditional_voucher_leaves_it_leased() {
    let w = Route::new(10_000, 10_000).await;
    let (hash, secret) = w.invoice().await;
    let t1 = w.t1().await;
    let (lp, ..) = w.offer(&hash, t1).await;

    // A return that comes late (a flow that ended before the lane was leased again) does not
    // put a lane with a pending conditional voucher back in the pool.
    w.p.m().return_lane(&w.ph, lp).await.unwrap();
    let next = w.p.m().lease_lane(&w.ph).await.unwrap();
    assert_ne!(next, lp, "a lane with a pending conditional voucher was handed out again");
    w.p.m().return_lane(&w.ph, next).await.unwrap();

    // Once replaced, its return takes it back.
    w.p.m().conditional_replace_leased(&w.ph, lp, &secret).await.unwrap();
    w.p.m().return_lane(&w.ph, lp).await.unwrap();
    let leased =
        [w.p.m().lease_lane(&w.ph).await.unwrap(), w.p.m().lease_lane(&w.ph).await.unwrap()];
    assert!(leased.contains(&lp), "the replaced lane never came back: {leased:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pending_routes_that_would_over_commit_the_payers_channel_are_refused() {
    let w = Route::new(1_500, 10_000).await;
    let (hash, _) = w.invoice().await;
    let (hash2, _) = w.invoice().await;
    let t1 = w.t1().await;
    let (lp, ..) = w.offer(&hash, t1).await;

    // P never signs a second one its channel cannot cover with the first revealed.
    let err = w.p.m().conditional_offer(&w.ph, atto(AMOUNT + FEE), &hash2, t1).await.unwrap_err();
    assert!(matches!(err, ConditionalError::Shortfall(_)), "{err}");
    // A payer that signs one anyway (on another lane) is refused by the hub.
    let mut second = SignedVoucher::new(w.ph, lp + 1, 1, atto(AMOUNT + FEE));
    second.secret_hash = hash2.clone();
    second.time_lock_max = t1;
    let second = w.p.sign(second);
    let err = w.h.m().conditional_accept(&second, &w.hub_terms(&hash2, t1)).await.unwrap_err();
    assert!(matches!(err, AddVoucherError::Route(RouteRefusal::OverCommitted { .. })), "{err}");
    assert_eq!(w.h.m().pending_conditionals(&w.ph).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_300_byte_pre_image_is_refused_and_changes_nothing() {
    let w = Route::new(10_000, 10_000).await;
    let (hash, secret) = w.invoice().await;
    let t1 = w.t1().await;
    let (lp, ..) = w.offer(&hash, t1).await;
    for bad in [vec![0u8; 32], vec![1u8; 300], secret[..31].to_vec()] {
        let err = w.h.m().learn_secret(&hash, &bad).await.unwrap_err();
        assert!(matches!(err, ConditionalError::Refused(RouteRefusal::BadSecret(_))), "{err}");
        let err = w.p.m().conditional_replace(&w.ph, lp, &bad).await.unwrap_err();
        assert!(matches!(err, ConditionalError::Refused(RouteRefusal::BadSecret(_))), "{err}");
    }
    assert!(w.h.m().known_secret(&hash).unwrap().is_none());
    assert_eq!(w.p.m().pending_conditionals(&w.ph).await.unwrap().len(), 1);
    assert!(w.p.m().conditional_replace(&w.ph, lp, &secret).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_payment_hash_is_offered_once_and_a_lock_too_close_is_refused() {
    let w = Route::new(10_000, 10_000).await;
    let (hash, _) = w.invoice().await;
    let t1 = w.t1().await;
    w.offer(&hash, t1).await;
    let err = w.p.m().conditional_offer(&w.ph, atto(AMOUNT), &hash, t1).await.unwrap_err();
    assert!(matches!(err, ConditionalError::Refused(RouteRefusal::HashSeen)), "{err}");
    // Nor after a restart: the hashes signed are found again in the store.
    let w = Route { p: w.p.stop().await.started().await, ..w };
    let err = w.p.m().conditional_offer(&w.ph, atto(AMOUNT), &hash, t1).await.unwrap_err();
    assert!(matches!(err, ConditionalError::Refused(RouteRefusal::HashSeen)), "{err}");
    // A payer that signs one anyway on another lane is refused by the hub.
    let mut again = SignedVoucher::new(w.ph, 7, 1, atto(AMOUNT + FEE));
    again.secret_hash = hash.clone();
    again.time_lock_max = t1;
    let again = w.p.sign(again);
    let err = w.h.m().conditional_accept(&again, &w.hub_terms(&hash, t1)).await.unwrap_err();
    assert!(matches!(err, AddVoucherError::Route(RouteRefusal::HashSeen)), "{err}");

    // A lock too close for the hub's Δ and the payee's margin.
    let (hash2, _) = w.invoice().await;
    let close = w.head().await + PARAMS.hub_delta() + D_R - 1;
    let offered = w.p.m().conditional_offer(&w.ph, atto(AMOUNT), &hash2, close).await.unwrap();
    let terms = ConditionalTerms { delta: atto(AMOUNT), ..w.hub_terms(&hash2, close) };
    let err = w.h.m().conditional_accept(&offered.voucher, &terms).await.unwrap_err();
    assert!(matches!(err, AddVoucherError::Route(RouteRefusal::DeadlineTooClose { .. })), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfulfilled_route_expires_after_the_lock_and_the_confirmation_depth_and_nobody_loses() {
    let w = Route::new(10_000, 10_000).await;
    let first = plain(&w.p, w.ph, 0, 1, 300);
    // Lane 0 carries 300 before the route.
    let lane = w.p.m().lease_lane(&w.ph).await.unwrap();
    assert_eq!(lane, 0);
    let before = w.p.m().voucher_create(&w.ph, atto(300), lane).await.unwrap().voucher.unwrap();
    assert_eq!(before.amount, first.amount);
    w.h.m().voucher_add(&w.ph, &before, TokenAmount::default()).await.unwrap();
    w.p.m().return_lane(&w.ph, lane).await.unwrap();

    let (hash, _) = w.invoice().await;
    let t1 = w.t1().await;
    let (lp, vp, _) = w.offer(&hash, t1).await;
    assert_eq!(lp, 0);
    assert_eq!(vp.amount, atto(300 + AMOUNT + FEE));

    // Not before the lock has passed by the confirmation depth.
    let err = w.p.m().conditional_expire(&w.ph, lp).await.unwrap_err();
    assert!(matches!(err, ConditionalError::NotExpired { .. }), "{err}");
    let head = w.head().await;
    w.net.mine(u64::try_from(t1 + PARAMS.conf_epochs() - head).unwrap());
    let outcome = w.p.m().conditional_expire(&w.ph, lp).await.unwrap();
    assert_eq!(outcome, ExpireOutcome::Expired { amount: atto(300) });

    // The lane is free again, on a fresh nonce, at its amount before the route.
    let lane = w.p.m().lease_lane(&w.ph).await.unwrap();
    assert_eq!(lane, lp);
    let next = w.p.m().voucher_pay(&w.ph, lane, atto(50)).await.unwrap().voucher.unwrap();
    assert_eq!((next.nonce, next.amount.clone()), (vp.nonce + 1, atto(350)));
    // The hub takes it: the conditional voucher can no longer land, nothing is pending.
    let added = w.h.m().voucher_add(&w.ph, &next, TokenAmount::default()).await.unwrap();
    assert_eq!(added, AddOutcome::Accepted { delta: atto(50) });
    // Nobody paid anything on chain.
    assert!(w.to_send(&w.ph).await.is_zero());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settler_lands_a_conditional_voucher_with_its_secret_before_its_lock() {
    let w = Route::new(10_000, 10_000).await;
    let (hash, secret) = w.invoice().await;
    let t1 = w.t1().await;
    let (_, vp, _) = w.offer(&hash, t1).await;
    let (_, vh, _) = w.forward(&hash, t1).await;
    w.h.m().learn_secret(&hash, &secret).await.unwrap();

    // P never replaces; the hub's settler submits Vp with the secret, the payee's Vh.
    for node in [&w.h, &w.r] {
        node.m().settler_pass().await.unwrap();
    }
    let deadline = t1;
    loop {
        w.net.mine(1);
        let done = w.to_send(&w.ph).await == vp.amount && w.to_send(&w.hr).await == vh.amount;
        if done {
            break;
        }
        assert!(w.head().await < deadline, "not redeemed before the lock");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(w.head().await <= t1);
    assert_eq!(w.to_send(&w.ph).await, atto(AMOUNT + FEE));
    assert_eq!(w.to_send(&w.hr).await, atto(AMOUNT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_redeems_its_conditional_voucher_with_the_secret_on_demand() {
    let w = Route::new(10_000, 10_000).await;
    let (hash, secret) = w.invoice().await;
    let t1 = w.t1().await;
    w.offer(&hash, t1).await;
    let (_, vh, _) = w.forward(&hash, t1).await;
    let err = w.h.m().conditional_redeem(&w.ph, 0).await.unwrap_err();
    assert!(matches!(err, ConditionalError::SecretUnknown(0)), "{err}");
    let cid = w.r.m().conditional_redeem(&w.hr, vh.lane).await.unwrap();
    w.net.mine_until_landed(w.r.m(), &cid).await;
    assert_eq!(w.to_send(&w.hr).await, atto(AMOUNT));
    // The secret is in that message: the hub learns it and redeems P's voucher.
    w.h.m().learn_secret(&hash, &secret).await.unwrap();
    let cid = w.h.m().conditional_redeem(&w.ph, 0).await.unwrap();
    w.net.mine_until_landed(w.h.m(), &cid).await;
    assert_eq!(w.to_send(&w.ph).await, atto(AMOUNT + FEE));
    // The payer's lane is resolved once the lock is final: redeemed, at its amount.
    let head = w.head().await;
    w.net.mine(u64::try_from((t1 + PARAMS.conf_epochs() - head).max(0)).unwrap());
    let outcome = w.p.m().conditional_expire(&w.ph, 0).await.unwrap();
    assert_eq!(outcome, ExpireOutcome::RedeemedOnChain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_replacement_is_kept_by_the_payee_but_never_credited_twice() {
    let w = Route::new(10_000, 10_000).await;
    let (hash, secret) = w.invoice().await;
    let t1 = w.t1().await;
    w.offer(&hash, t1).await;
    let (lh, vh, credited) = w.forward(&hash, t1).await;
    assert_eq!(credited, atto(AMOUNT));
    // The hub's replacement comes once R's voucher can no longer surely land before its lock.
    let head = w.head().await;
    let late = vh.time_lock_max - PARAMS.submit_margin();
    w.net.mine(u64::try_from(late - head).unwrap());
    w.h.m().learn_secret(&hash, &secret).await.unwrap();
    let rh = w.h.m().conditional_replace(&w.hr, lh, &secret).await.unwrap();
    let added = w.r.m().voucher_add(&w.hr, &rh, TokenAmount::default()).await.unwrap();
    assert!(matches!(added, AddOutcome::Covered { .. }), "credited again: {added:?}");
    // R keeps it: it is what pays R now.
    assert_eq!(w.r.m().voucher_best_spendable(&w.hr).await.unwrap(), vec![rh]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_nearer_than_the_routes_landing_window_is_held_but_credited_only_once_replaced() {
    // The payee's inclusion delay `S` of 10 epochs: a conditional voucher must leave
    // `S + conf` = 12 epochs to count, more than this route's lock leaves. The payee holds it
    // without counting it, and counts the replacement.
    let mut config = test_config();
    config.route = RouteParams { inclusion: 10, ..PARAMS };
    let w = Route::with_config(10_000, 10_000, config).await;
    let (hash, secret) = w.invoice().await;
    let t1 = w.t1().await;
    w.offer(&hash, t1).await;
    let (lh, vh, credited) = w.forward(&hash, t1).await;
    assert!(vh.time_lock_max < w.head().await + 1 + 12);
    assert!(credited.is_zero(), "credited {credited:?} for a voucher it cannot surely land");
    w.h.m().learn_secret(&hash, &secret).await.unwrap();
    let rh = w.h.m().conditional_replace(&w.hr, lh, &secret).await.unwrap();
    let added = w.r.m().voucher_add(&w.hr, &rh, TokenAmount::default()).await.unwrap();
    assert_eq!(added, AddOutcome::Accepted { delta: atto(AMOUNT) });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_combined_voucher_that_folded_a_conditional_one_counts_against_over_commitment() {
    // The hub's settler stays idle: the combined voucher is held, not redeemed.
    let mut config = test_config();
    config.settler_interval = std::time::Duration::from_secs(3600);
    let w = Route::with_config(2_000, 10_000, config).await;
    w.lanes_on_chain([100, 100], [0, 50]).await;
    // Route 1 on lane 0: the hub learns the secret; P's replacement never reaches the hub.
    let (hash, secret) = w.invoice().await;
    let t1 = w.t1().await;
    let (lp, vp, _) = w.offer(&hash, t1).await;
    assert_eq!(lp, 0);
    w.h.m().learn_secret(&hash, &secret).await.unwrap();
    w.p.m().conditional_replace(&w.ph, lp, &secret).await.unwrap();
    // The hub folds lane 0 (its conditional voucher) and lane 1 into one combined voucher:
    // it pays route 1 unconditionally, whatever happens to the conditional voucher's lock.
    let combined = w.reconcile().await;
    assert_eq!(combined.amount, vp.amount.clone() + atto(150) - atto(20));
    w.mine_to(t1 + 1).await;

    // Route 2, signed outside P's manager on a fresh lane: with the combined voucher the
    // channel would owe 200 + 1_040 + 1_010 = 2_250 attoFIL, more than its 2_000.
    let (hash2, _) = w.invoice().await;
    let t1 = w.t1().await;
    let mut second = SignedVoucher::new(w.ph, 2, 1, atto(AMOUNT + FEE));
    second.secret_hash = hash2.clone();
    second.time_lock_max = t1;
    let second = w.p.sign(second);
    let err = w.h.m().conditional_accept(&second, &w.hub_terms(&hash2, t1)).await.unwrap_err();
    assert!(matches!(err, AddVoucherError::Route(RouteRefusal::OverCommitted { .. })), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_whose_conditional_voucher_expired_is_reconciled_on_a_fresh_nonce_at_its_amount() {
    let w = Route::new(10_000, 10_000).await;
    let paid = w.lanes_on_chain([100, 100], [200, 50]).await;
    let (paid0, paid1) = (paid[0].clone(), paid[1].clone());
    let (hash, _) = w.invoice().await;
    let t1 = w.t1().await;
    let (lp, vp, _) = w.offer(&hash, t1).await;
    assert_eq!(lp, 0);
    w.mine_to(t1 + PARAMS.conf_epochs()).await;
    let outcome = w.p.m().conditional_expire(&w.ph, lp).await.unwrap();
    assert_eq!(outcome, ExpireOutcome::Expired { amount: paid0.amount.clone() });

    // The hub asks to fold lanes 0 and 1 at what they carry without the expired voucher;
    // the payer answers above every nonce it issued there, the expired voucher's included.
    let combined = w.reconcile().await;
    assert_eq!(combined.lane, 0);
    assert!(combined.nonce > vp.nonce, "nonce {} reused", combined.nonce);
    assert_eq!(combined.amount, paid0.amount + paid1.amount - atto(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_voucher_redeemed_on_chain_is_no_longer_pending_for_its_holder() {
    let w = Route::new(10_000, 10_000).await;
    let (hash, secret) = w.invoice().await;
    let t1 = w.t1().await;
    w.offer(&hash, t1).await;
    let (_, vh, _) = w.forward(&hash, t1).await;
    let cid = w.r.m().conditional_redeem(&w.hr, vh.lane).await.unwrap();
    w.net.mine_until_landed(w.r.m(), &cid).await;
    assert!(w.r.m().pending_conditionals(&w.hr).await.unwrap().is_empty());
    // The hub's own, redeemed on chain by the hub with the secret it found there.
    w.h.m().learn_secret(&hash, &secret).await.unwrap();
    let cid = w.h.m().conditional_redeem(&w.ph, 0).await.unwrap();
    w.net.mine_until_landed(w.h.m(), &cid).await;
    assert!(w.h.m().pending_conditionals(&w.ph).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_voucher_redeemed_on_chain_outside_the_manager_is_no_longer_pending() {
    let w = Route::new(10_000, 10_000).await;
    let (hash, secret) = w.invoice().await;
    let t1 = w.t1().await;
    w.offer(&hash, t1).await;
    let (_, vh, _) = w.forward(&hash, t1).await;
    // The payee's key redeems it with the secret in a message of its own (another tool with
    // the same wallet, say): the manager never marked it submitted.
    let params = UpdateChannelStateParams { sv: vh.clone(), secret };
    let message = Message::new(
        w.r.addr,
        w.hr,
        0,
        TokenAmount::default(),
        paych_method::UPDATE_CHANNEL_STATE,
        fvm_ipld_encoding::to_vec(&params).unwrap(),
    );
    let signed = prepare_message(&w.net.devnet, w.r.wallet.as_ref(), message).await.unwrap();
    let cid = w.net.devnet.push(&signed).await.unwrap();
    w.net.mine(1);
    assert!(w.net.devnet.search(&cid).await.unwrap().unwrap().receipt.exit_code.is_success());
    assert_eq!(w.to_send(&w.hr).await, vh.amount);
    assert!(w.head().await < vh.time_lock_max);
    let pending = w.r.m().pending_conditionals(&w.hr).await.unwrap();
    assert!(pending.is_empty(), "still pending: {pending:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_devnet_defaults_a_payee_is_credited_at_once_and_a_hub_once_it_learns_the_secret()
{
    // The managers' own defaults: the intake's landing margin and `RouteParams::default()`.
    let mut config = test_config();
    config.settler_interval = std::time::Duration::from_secs(3600);
    let w = Route::with_config(10_000, 10_000, config).await;
    assert_eq!(w.h.config.route, RouteParams::default());
    assert_eq!(PARAMS, RouteParams::default());
    let (hash, secret) = w.invoice().await;
    let t1 = w.t1().await;
    let (lp, _, hub_credit) = w.offer(&hash, t1).await;
    assert!(hub_credit.is_zero(), "the hub credits nothing without the secret");
    let (_, _, payee_credit) = w.forward(&hash, t1).await;
    assert_eq!(payee_credit, atto(AMOUNT), "the payee issued the invoice: it knows the secret");

    // Once the hub learns the secret, P's voucher counts: its replacement adds nothing more.
    w.h.m().learn_secret(&hash, &secret).await.unwrap();
    let rp = w.p.m().conditional_replace(&w.ph, lp, &secret).await.unwrap();
    let added = w.h.m().voucher_add(&w.ph, &rp, TokenAmount::default()).await.unwrap();
    assert!(matches!(added, AddOutcome::Covered { .. }), "counted only now: {added:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_knows_the_secret_waits_for_the_replacement_until_the_redeem_margin() {
    let mut config = test_config();
    config.settler_interval = std::time::Duration::from_secs(3600);
    let w = Route::with_config(10_000, 10_000, config).await;
    let (hash, secret) = w.invoice().await;
    let t1 = w.t1().await;
    let (_, vp, _) = w.offer(&hash, t1).await;
    w.h.m().learn_secret(&hash, &secret).await.unwrap();
    // Before `T1 − (S + conf + G)` the settler leaves P's voucher for its replacement (no
    // message, no gas).
    while w.head().await + PARAMS.redeem_margin() < t1 {
        w.h.m().settler_pass().await.unwrap();
        w.net.mine(1);
        assert!(w.to_send(&w.ph).await.is_zero(), "redeemed early at {}", w.head().await);
    }
    // From then on it lands it, before the lock.
    w.h.m().settler_pass().await.unwrap();
    while w.to_send(&w.ph).await.is_zero() {
        assert!(w.head().await < t1, "not redeemed before the lock");
        w.net.mine(1);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(w.to_send(&w.ph).await, vp.amount);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_voucher_counts_before_settlement_within_the_routes_window_not_the_intakes() {
    // The devnet defaults: the intake keeps 20 epochs before `settling_at`, the route `S + conf`.
    let mut config = test_config();
    config.settler_interval = std::time::Duration::from_secs(3600);
    let w = Route::with_config(10_000, 10_000, config).await;
    // H→R settles 15 epochs from now: room for the payee's margin, not for the intake's.
    let cid = w.h.m().settle(&w.hr).await.unwrap();
    w.net.mine_until_landed(w.h.m(), &cid).await;
    let settling_at = w.net.devnet.channel(&w.hr).await.unwrap().state.settling_at;
    w.mine_to(settling_at - 15).await;
    // A hub that signs outside its manager (which pays nothing on a settling channel).
    let (hash, _) = w.invoice().await;
    let lock = w.head().await + 12;
    let mut vh = SignedVoucher::new(w.hr, 0, 1, atto(AMOUNT));
    vh.secret_hash = hash.clone();
    vh.time_lock_max = lock;
    let vh = w.h.sign(vh);
    let terms = ConditionalTerms { hash, lock, delta: atto(AMOUNT), margin: D_R };
    let credited = w.r.m().conditional_accept(&vh, &terms).await.unwrap();
    assert_eq!(credited, atto(AMOUNT), "the payee knows the secret and the voucher can land");
    // And it is paid: its settler lands the voucher before the channel settles.
    while w.to_send(&w.hr).await.is_zero() {
        assert!(w.head().await + 1 < settling_at, "not redeemed before settlement");
        w.r.m().settler_pass().await.unwrap();
        w.net.mine(1);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(w.to_send(&w.hr).await, atto(AMOUNT));
}
