//! Reconciliation through two managers on a devnet with sled stores: the payer answers only
//! the channel's payee, prices on its own latest vouchers, and records the combined voucher,
//! the closed lanes and its answer durably — every answer, first or repeated, leaves only
//! once durable; a restart answers the same request with the same bytes and keeps the lanes
//! closed — and the payee stores a combined voucher only when it is exactly its plan, in
//! place of the ones it folds, superseding them only once the combined voucher is durable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use paych_core::chain::Chain;
use paych_core::combine::{ReconcilePolicy, ReconcileStatus, Refusal};
use paych_core::crypto;
use paych_core::manager::VoucherSpec;
use paych_core::manager::{
    CombineError, CreateVoucherError, MessageOutcome, PaymentChannelManager, ReconcileDraft,
};
use paych_core::store::sled::SledStore;
use paych_core::store::{Store, StoreError};
use paych_core::types::{Address, Merge, SignedVoucher};
use paych_testkit::amounts::atto;
use paych_testkit::deadline::within;
use paych_testkit::devnet::{open_store_when_free, test_config, Net, Node};
use paych_testkit::keys::stranger_address;
use paych_testkit::store::{Durability, SledWith};
use tokio::sync::watch;

/// `payer` answers `draft` as the request `hash`, from a peer proven to hold `requester`.
async fn ask_payer(
    payer: &PaymentChannelManager,
    requester: Option<&Address>,
    hash: &[u8],
    draft: &ReconcileDraft,
    policy: &ReconcilePolicy,
) -> Result<Vec<u8>, Refusal> {
    payer.reconcile_as_payer(requester, hash, &draft.vouchers, &draft.req_val, policy, encode).await
}

fn encode(v: &SignedVoucher) -> Result<Vec<u8>, paych_core::types::EncodeError> {
    v.to_cbor()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payers_answer_and_closed_lanes_survive_a_restart() {
    // Lanes 0..3 redeemed once, then paid again.
    let (net, payer, payee, ch, draft) = redeemed_lanes(3).await;
    assert_eq!(draft.vouchers.len(), 3);
    assert_eq!(draft.req_val, atto(900 - 40));
    let policy = ReconcilePolicy::default();
    let hash = crypto::blake2b_256(b"a request");

    // The payee's own manager pays from no such channel.
    let refusal =
        ask_payer(payee.m(), Some(&payee.addr), &hash, &draft, &policy).await.unwrap_err();
    assert_eq!(refusal.status, ReconcileStatus::NotOurChannel);

    // A failure before the answer is recorded (here: encoding it) is `Internal`, and leaves
    // nothing behind: no lane closed, no answer recorded.
    let refusal = payer
        .m()
        .reconcile_as_payer(
            Some(&payee.addr),
            &hash,
            &draft.vouchers,
            &draft.req_val,
            &policy,
            |_| Err::<Vec<u8>, _>("cannot encode"),
        )
        .await
        .unwrap_err();
    assert_eq!(refusal.status, ReconcileStatus::Internal);
    let status = payer.m().status(&ch).await.unwrap();
    assert!(status.lanes.iter().all(|l| !l.closed), "{status:?}");
    assert!(payer.m().store().reconcile(&hash).unwrap().is_none());

    let answer = ask_payer(payer.m(), Some(&payee.addr), &hash, &draft, &policy).await.unwrap();
    let combined = SignedVoucher::from_cbor(&answer).unwrap();
    assert_eq!(combined.amount, draft.req_val);
    // What the channel has spent: the combined amount stands for the lanes it folds.
    let funds = payer.m().available_funds(&ch).await.unwrap();
    assert_eq!(funds.voucher_redeemed, draft.req_val);

    payee.m().reconcile_accept(&ch, &draft.vouchers, &draft.req_val, &combined).await.unwrap();
    // A voucher folding something else is refused, and changes nothing.
    let mut wrong = combined.clone();
    wrong.amount = atto(1);
    let err = payee.m().reconcile_accept(&ch, &draft.vouchers, &draft.req_val, &wrong).await;
    assert!(matches!(err, Err(CombineError::CombinedRejected(_))), "{err:?}");

    let payer = payer.stop().await.started().await;
    let payee = payee.stop().await.started().await;

    // The same request: the same bytes. Another one on those lanes: closed.
    let again = ask_payer(payer.m(), Some(&payee.addr), &hash, &draft, &policy).await.unwrap();
    assert_eq!(again, answer);
    let other = crypto::blake2b_256(b"another request");
    let refusal =
        ask_payer(payer.m(), Some(&payee.addr), &other, &draft, &policy).await.unwrap_err();
    assert_eq!(refusal.status, ReconcileStatus::LaneClosed);
    for lane in 0..3 {
        let err = payer.m().voucher_create(&ch, atto(1000), lane).await.unwrap_err();
        assert!(matches!(err, CreateVoucherError::LaneClosed(l) if l == lane), "{err}");
        // A closed lane handed back is not leased again.
        payer.m().return_lane(&ch, lane).await.unwrap();
    }
    let leased = payer.m().lease_lane(&ch).await.unwrap();
    assert!(leased >= 3, "{leased}");
    let funds = payer.m().available_funds(&ch).await.unwrap();
    assert_eq!(funds.voucher_redeemed, draft.req_val);

    // The payee's best voucher is the combined one; redeemed, the channel owes req_val.
    assert_eq!(payee.m().voucher_best_spendable(&ch).await.unwrap(), vec![combined.clone()]);
    let cid = payee.m().voucher_submit(&ch, &combined, &[]).await.unwrap();
    let outcome = within("the combined voucher", payee.m().wait_message(&cid)).await.unwrap();
    assert!(matches!(outcome, MessageOutcome::Landed { exit_code: 0, .. }), "{outcome:?}");
    let state = net.devnet.channel(&ch).await.unwrap().state;
    assert_eq!(state.to_send, draft.req_val);
    assert!(payee.m().voucher_best_spendable(&ch).await.unwrap().is_empty());
}

/// On a fresh channel `ch`: lanes `0..lanes` each paid 100 and redeemed on chain by the
/// payee, then paid up to 300; answers the payee's reconcile draft folding them.
async fn draft_after_redeeming(
    payer: &Node,
    payee: &Node,
    ch: Address,
    lanes: u64,
) -> ReconcileDraft {
    for lane in 0..lanes {
        let v = payer.create_voucher(&ch, atto(100), lane).await;
        payee.m().voucher_add(&ch, &v, atto(0)).await.unwrap();
        let cid = payee.m().voucher_submit(&ch, &v, &[]).await.unwrap();
        let outcome = within("the submit to land", payee.m().wait_message(&cid)).await.unwrap();
        assert!(matches!(outcome, MessageOutcome::Landed { exit_code: 0, .. }), "{outcome:?}");
    }
    for lane in 0..lanes {
        let v = payer.create_voucher(&ch, atto(300), lane).await;
        payee.m().voucher_add(&ch, &v, atto(0)).await.unwrap();
    }
    payee.m().reconcile_draft(&ch, &atto(40)).await.unwrap()
}

/// A payer and a payee with a channel of 1 000 000 on which `lanes` lanes were redeemed
/// and paid on since, and the payee's draft to fold them (see [`draft_after_redeeming`]).
async fn redeemed_lanes(lanes: u64) -> (Net, Node, Node, Address, ReconcileDraft) {
    let net = Net::new();
    let (payer, payee, ch) = net.channel(10, 10, atto(1_000_000)).await;
    let draft = draft_after_redeeming(&payer, &payee, ch, lanes).await;
    (net, payer, payee, ch, draft)
}

tokio::task_local! {
    /// Who is calling the store, as a test names its tasks.
    static CALLER: &'static str;
}

/// A flush a test holds back: while the gate is shut, `durable` waits (noting which named
/// task waits) before flushing the sled store.
struct Gate {
    open: watch::Sender<bool>,
    waiting: watch::Sender<Vec<&'static str>>,
}

/// A sled store behind a [`Gate`]. Everything else is the sled store's.
type GatedStore = SledWith<Gate>;

impl Gate {
    fn new() -> Self {
        Gate { open: watch::channel(true).0, waiting: watch::channel(Vec::new()).0 }
    }

    fn shut(&self) {
        self.open.send_replace(false);
    }

    fn open(&self) {
        self.open.send_replace(true);
    }

    /// Waits until the task named `who` waits for a flush.
    async fn until_waiting(&self, who: &'static str) {
        let mut waiting = self.waiting.subscribe();
        within(who, waiting.wait_for(|w| w.contains(&who))).await.unwrap();
    }
}

#[async_trait::async_trait]
impl Durability for Gate {
    async fn durable(&self, sled: &SledStore) -> Result<(), StoreError> {
        let who = CALLER.try_with(|c| *c).unwrap_or("untold");
        self.waiting.send_modify(|w| w.push(who));
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|o| *o).await;
        self.waiting.send_modify(|w| {
            if let Some(i) = w.iter().position(|x| *x == who) {
                w.remove(i);
            }
        });
        sled.durable().await
    }
}

/// `node`'s manager again, stopped and started over its own sled store behind a gate.
async fn restarted_gated(node: Node) -> (Node, Arc<GatedStore>, PaymentChannelManager) {
    let node = node.stop().await;
    let sled = open_store_when_free(&node.dir.path().join("datastore")).await;
    let store = Arc::new(SledWith { sled, durability: Gate::new() });
    let manager = PaymentChannelManager::new(
        Arc::new(node.net.clone()),
        node.wallet.clone(),
        store.clone(),
        test_config(),
    );
    manager.start().await.unwrap();
    (node, store, manager)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payer_refuses_a_strangers_request_and_signs_and_stores_nothing() {
    let (_net, payer, payee, _ch, draft) = redeemed_lanes(3).await;
    let policy = ReconcilePolicy::default();
    let hash = crypto::blake2b_256(b"the payee's request");
    let before = payer.snapshot();

    // No key proven, a stranger's key, the payer's own key: refused, nothing signed or kept.
    let stranger = stranger_address();
    for requester in [None, Some(&stranger), Some(&payer.addr)] {
        let refusal = payer
            .m()
            .reconcile_as_payer(requester, &hash, &draft.vouchers, &draft.req_val, &policy, encode)
            .await
            .unwrap_err();
        assert_eq!(refusal.status, ReconcileStatus::NotPayee, "{requester:?}");
    }
    assert_eq!(payer.snapshot(), before);
    assert!(payer.m().store().reconcile(&hash).unwrap().is_none());

    // The payee is answered; a stranger replaying the very same request is not given the
    // recorded answer.
    let answer = ask_payer(payer.m(), Some(&payee.addr), &hash, &draft, &policy).await.unwrap();
    let replayed = ask_payer(payer.m(), Some(&stranger), &hash, &draft, &policy).await.unwrap_err();
    assert_eq!(replayed.status, ReconcileStatus::NotPayee);
    let again = ask_payer(payer.m(), Some(&payee.addr), &hash, &draft, &policy).await.unwrap();
    assert_eq!(again, answer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payer_prices_on_its_latest_vouchers_when_shown_older_ones() {
    let (_net, payer, _payee, ch, draft) = redeemed_lanes(3).await;
    let policy = ReconcilePolicy::default();
    // The payee shows each lane's first voucher (100 each); the payer issued 300 on each.
    let older: Vec<SignedVoucher> =
        payer.m().voucher_list(&ch).unwrap().into_iter().filter(|v| v.nonce == 1).collect();
    assert_eq!(older.len(), 3);
    let hash = crypto::blake2b_256(b"priced on the latest");
    let refusal = payer
        .m()
        .reconcile_as_payer(Some(&draft.payee), &hash, &older, &atto(901), &policy, encode)
        .await
        .unwrap_err();
    assert_eq!(refusal.status, ReconcileStatus::ReqValAboveSum);
    let answer = payer
        .m()
        .reconcile_as_payer(Some(&draft.payee), &hash, &older, &atto(600), &policy, encode)
        .await
        .unwrap();
    let combined = SignedVoucher::from_cbor(&answer).unwrap();
    assert_eq!(combined.amount, atto(600));
    // Above every nonce issued, the latest ones included.
    assert_eq!((combined.lane, combined.nonce), (0, 3));
    assert!(combined.merges.iter().all(|m| m.nonce == 3), "{combined:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payer_will_not_fold_a_lane_whose_latest_voucher_is_hash_locked() {
    let (_net, payer, _payee, ch, draft) = redeemed_lanes(2).await;
    // Lane 1 then carries a payment that is owed only against a secret.
    let spec = VoucherSpec { amount: atto(5_000), secret_hash: vec![9; 32], ..Default::default() };
    let locked = payer.m().voucher_create_with(&ch, 1, spec).await.unwrap().voucher.unwrap();
    let before = payer.snapshot();
    let policy = ReconcilePolicy::default();
    for (tag, shown) in [
        (&b"shown locked"[..], vec![draft.vouchers[0].clone(), locked.clone()]),
        (&b"shown plain"[..], draft.vouchers.clone()),
    ] {
        let hash = crypto::blake2b_256(tag);
        let refusal = payer
            .m()
            .reconcile_as_payer(Some(&draft.payee), &hash, &shown, &atto(5_000), &policy, encode)
            .await
            .unwrap_err();
        assert_eq!(refusal.status, ReconcileStatus::LaneConditional, "{refusal}");
    }
    assert_eq!(payer.snapshot(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_request_is_answered_only_once_the_first_answer_is_durable() {
    let (_net, payer, _payee, _ch, draft) = redeemed_lanes(3).await;
    let (payer, store, manager) = restarted_gated(payer).await;
    let hash = crypto::blake2b_256(b"asked twice");

    store.durability.shut();
    let ask = |who: &'static str| {
        let (m, draft) = (manager.clone(), draft.clone());
        tokio::spawn(CALLER.scope(who, async move {
            let policy = ReconcilePolicy::default();
            m.reconcile_as_payer(
                Some(&draft.payee),
                &hash,
                &draft.vouchers,
                &draft.req_val,
                &policy,
                encode,
            )
            .await
        }))
    };
    let first = ask("first");
    // The first answer is recorded and waits for its flush.
    store.durability.until_waiting("first").await;
    assert!(manager.store().reconcile(&hash).unwrap().is_some());
    let mut repeated = ask("repeated");
    tokio::select! {
        done = &mut repeated => panic!("the repeated request was answered before the first answer was durable: {done:?}"),
        () = store.durability.until_waiting("repeated") => {}
    }
    assert!(!first.is_finished());
    store.durability.open();
    let first = within("the first answer", first).await.unwrap().unwrap();
    let repeated = within("the repeated answer", repeated).await.unwrap().unwrap();
    assert_eq!(first, repeated);
    manager.shutdown().await.unwrap();
    drop(payer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_refuses_a_combined_voucher_that_is_not_its_plan_and_supersedes_nothing() {
    let (_net, payer, payee, ch, draft) = redeemed_lanes(3).await;
    // Lane 0 gets two more vouchers, of which the payee holds only the later (nonce 4).
    let _three = payer.create_voucher(&ch, atto(400), 0).await;
    let four = payer.create_voucher(&ch, atto(500), 0).await;
    payee.m().voucher_add(&ch, &four, atto(0)).await.unwrap();
    let requested = payee.m().reconcile_draft(&ch, &atto(40)).await.unwrap();
    assert_eq!(requested.vouchers.len(), 3);
    let req_val = requested.req_val.clone();
    // What an honest payer would sign: lane 0 above nonce 4, lanes 1 and 2 above nonce 2.
    let mut plan = SignedVoucher::new(ch, 0, 5, req_val.clone());
    plan.merges = vec![Merge { lane: 1, nonce: 3 }, Merge { lane: 2, nonce: 3 }];
    let before = payee.snapshot();

    type Edit = fn(&mut SignedVoucher);
    let hostile: [(&str, Edit); 5] = [
        ("a time lock", |v| v.time_lock_max = 1_000_000),
        ("a minimum settle height", |v| v.min_settle_height = 1_000_000),
        ("a nonce below one held on its lane", |v| v.nonce = 3),
        ("a merge at a nonce held", |v| v.merges[0].nonce = 2),
        ("a lane merged twice", |v| v.merges[1] = Merge { lane: 1, nonce: 4 }),
    ];
    for (what, edit) in hostile {
        let mut v = plan.clone();
        edit(&mut v);
        let v = payer.sign(v);
        let err = payee.m().reconcile_accept(&ch, &requested.vouchers, &req_val, &v).await;
        assert!(matches!(err, Err(CombineError::CombinedRejected(_))), "{what}: {err:?}");
        assert_eq!(payee.snapshot(), before, "{what}");
    }
    // The plan itself is accepted.
    let plan = payer.sign(plan);
    payee.m().reconcile_accept(&ch, &requested.vouchers, &req_val, &plan).await.unwrap();
    assert_eq!(payee.m().voucher_best_spendable(&ch).await.unwrap(), vec![plan]);
    drop(draft);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_supersedes_the_folded_vouchers_only_once_the_combined_voucher_is_durable() {
    let (_net, payer, payee, ch, draft) = redeemed_lanes(3).await;
    let hash = crypto::blake2b_256(b"the request");
    let answer =
        ask_payer(payer.m(), Some(&draft.payee), &hash, &draft, &ReconcilePolicy::default())
            .await
            .unwrap();
    let combined = SignedVoucher::from_cbor(&answer).unwrap();
    let (payee, store, manager) = restarted_gated(payee).await;

    store.durability.shut();
    let accept = {
        let (m, draft, combined) = (manager.clone(), draft.clone(), combined.clone());
        tokio::spawn(CALLER.scope("accept", async move {
            m.reconcile_accept(&ch, &draft.vouchers, &draft.req_val, &combined).await
        }))
    };
    // The combined voucher is written and waits for its flush: nothing is superseded yet.
    store.durability.until_waiting("accept").await;
    let id = store.channel_by_address(&ch).unwrap().unwrap().id;
    let held = store.vouchers(id).unwrap();
    assert!(held.iter().any(|r| r.voucher == combined));
    assert!(
        held.iter().all(|r| !r.superseded),
        "superseded before the combined voucher is durable"
    );
    store.durability.open();
    within("the accept", accept).await.unwrap().unwrap();
    let held = store.vouchers(id).unwrap();
    for v in &draft.vouchers {
        let r = held.iter().find(|r| r.voucher == *v).unwrap();
        assert!(r.superseded, "{v:?}");
    }
    // Accepting it again changes nothing and answers as before.
    manager.reconcile_accept(&ch, &draft.vouchers, &draft.req_val, &combined).await.unwrap();
    assert_eq!(manager.voucher_best_spendable(&ch).await.unwrap(), vec![combined]);
    manager.shutdown().await.unwrap();
    drop(payee);
}
