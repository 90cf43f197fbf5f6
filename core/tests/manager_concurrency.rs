//! Vouchers created concurrently on one channel: each is given its nonce and amount under
//! the channel's lock and signed outside it. These tests check what that must keep: no
//! (lane, nonce) given twice, never more promised than the channel holds, every returned
//! voucher stored (across a restart), a payer's reconciliation seeing every voucher issued
//! on the lanes it closes, and a voucher whose signing fails leaving nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex as StdMutex};

use paych_core::chain::devnet::Devnet;
use paych_core::combine::ReconcilePolicy;
use paych_core::crypto;
use paych_core::manager::{
    CreateVoucherError, MessageOutcome, PaymentChannelManager, ReconcileDraft,
};
use paych_core::types::{Address, Network, Signature, SignedVoucher, TokenAmount};
use paych_core::wallet::{KeyStore, Wallet, WalletError};
use paych_testkit::amounts::atto;
use paych_testkit::deadline::within;
use paych_testkit::devnet::{fund, open_store_when_free, test_config, Net};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_on_one_channel_give_no_nonce_twice_and_never_overspend() {
    const LANES: u64 = 16;
    const PER_LANE: u64 = 8;
    let net = Net::new();
    let (payer, payee) = net.pair(10, 1).await;
    // Enough for about half of what the tasks ask: the rest must come back as shortfalls.
    let holds = LANES * PER_LANE * 1000 / 2;
    let ch = payer.open_channel(payee.addr, atto(holds)).await;

    let mut tasks = Vec::new();
    for lane in 0..LANES {
        let m = payer.m().clone();
        tasks.push(tokio::spawn(async move {
            let mut returned = Vec::new();
            for k in 1..=PER_LANE {
                let created = m.voucher_create(&ch, atto(k * 1000), lane).await.unwrap();
                match created.voucher {
                    Some(v) => returned.push(v),
                    None => assert!(created.shortfall.is_positive()),
                }
            }
            returned
        }));
    }
    let mut returned: Vec<SignedVoucher> = Vec::new();
    for t in tasks {
        returned.extend(t.await.unwrap());
    }
    assert!(!returned.is_empty());

    // No (lane, nonce) twice; nonces rise with amounts on each lane.
    let mut seen = BTreeSet::new();
    let mut tips: BTreeMap<u64, &SignedVoucher> = BTreeMap::new();
    for v in &returned {
        assert!(seen.insert((v.lane, v.nonce)), "lane {} nonce {} given twice", v.lane, v.nonce);
        let tip = tips.entry(v.lane).or_insert(v);
        if v.nonce > tip.nonce {
            assert!(v.amount > tip.amount);
            *tip = v;
        }
    }
    // Never more promised than the channel holds.
    let promised: TokenAmount = tips.values().map(|v| v.amount.clone()).sum();
    assert!(promised <= atto(holds), "promised {promised} from a channel of {holds}");
    let funds = payer.m().available_funds(&ch).await.unwrap();
    assert_eq!(funds.voucher_redeemed, promised);

    // Every returned voucher is stored and comes back after a restart; the next voucher on
    // a lane takes the next nonce.
    let payer = payer.stop().await.started().await;
    let stored: BTreeSet<(u64, u64)> =
        payer.m().voucher_list(&ch).unwrap().into_iter().map(|v| (v.lane, v.nonce)).collect();
    assert_eq!(stored, seen);
    let (&lane, tip) = tips.iter().next().unwrap();
    let next = payer.m().voucher_create(&ch, tip.amount.clone(), lane).await.unwrap();
    assert_eq!(next.voucher.unwrap().nonce, tip.nonce + 1);
}

/// On a fresh channel `ch`: lanes `0..lanes` each paid 100 and redeemed on chain by the
/// payee, then paid up to 300; answers the payee's reconcile draft folding them.
async fn draft_after_redeeming(
    payer: &PaymentChannelManager,
    payee: &PaymentChannelManager,
    ch: Address,
    lanes: u64,
) -> ReconcileDraft {
    for lane in 0..lanes {
        let v = payer.voucher_create(&ch, atto(100), lane).await.unwrap().voucher.unwrap();
        payee.voucher_add(&ch, &v, atto(0)).await.unwrap();
        let cid = payee.voucher_submit(&ch, &v, &[]).await.unwrap();
        let outcome = within("the submit to land", payee.wait_message(&cid)).await.unwrap();
        assert!(matches!(outcome, MessageOutcome::Landed { exit_code: 0, .. }), "{outcome:?}");
    }
    for lane in 0..lanes {
        let v = payer.voucher_create(&ch, atto(300), lane).await.unwrap().voucher.unwrap();
        payee.voucher_add(&ch, &v, atto(0)).await.unwrap();
    }
    payee.reconcile_draft(&ch, &atto(40)).await.unwrap()
}

/// The payer's combined voucher for `draft`, asked under request hash `blake2b(tag)`.
async fn answer(
    payer: &PaymentChannelManager,
    draft: &ReconcileDraft,
    tag: &[u8],
) -> SignedVoucher {
    let hash = crypto::blake2b_256(tag);
    let policy = ReconcilePolicy::default();
    let answer = payer
        .reconcile_as_payer(
            Some(&draft.payee),
            &hash,
            &draft.vouchers,
            &draft.req_val,
            &policy,
            |v| v.to_cbor(),
        )
        .await
        .unwrap();
    SignedVoucher::from_cbor(&answer).unwrap()
}

/// The nonce at which `combined` closes each lane it touches: its own and every merged one.
fn closed_at(combined: &SignedVoucher) -> BTreeMap<u64, u64> {
    let mut closes: BTreeMap<u64, u64> =
        combined.merges.iter().map(|m| (m.lane, m.nonce)).collect();
    closes.insert(combined.lane, combined.nonce);
    closes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciliation_sees_every_voucher_issued_on_the_lanes_it_closes() {
    let net = Net::new();
    let (payer, payee, ch) = net.channel(10, 10, atto(10_000_000)).await;

    let draft = draft_after_redeeming(payer.m(), payee.m(), ch, 4).await;
    assert_eq!(draft.vouchers.len(), 4);

    // The payer keeps creating vouchers on those lanes while it answers.
    let mut creators = Vec::new();
    for lane in 0..4 {
        let m = payer.m().clone();
        creators.push(tokio::spawn(async move {
            let mut returned = Vec::new();
            for k in 1..=50u64 {
                match m.voucher_create(&ch, atto(300 + k), lane).await {
                    Ok(created) => returned.push(created.voucher.unwrap()),
                    Err(CreateVoucherError::LaneClosed(l)) => {
                        assert_eq!(l, lane);
                        break;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            returned
        }));
    }
    tokio::task::yield_now().await;
    let combined = answer(payer.m(), &draft, b"a request during creates").await;
    let mut returned = Vec::new();
    for c in creators {
        returned.extend(c.await.unwrap());
    }

    // Every voucher the payer returned on a lane the combined voucher closes is below the
    // nonce it closes that lane at: none of them can be redeemed after it.
    let closes = closed_at(&combined);
    for v in &returned {
        if let Some(&at) = closes.get(&v.lane) {
            assert!(
                v.nonce < at,
                "voucher {}/{} issued but not closed (closed at {at})",
                v.lane,
                v.nonce
            );
        }
    }
}

/// A keystore whose signing can be made to fail, or to wait until released.
struct ControlledWallet {
    keys: KeyStore,
    fail: AtomicBool,
    /// Whether the next signature waits (blocking its thread) until released.
    hold_next: AtomicBool,
    /// Whether the held signature may go on.
    gate: StdMutex<bool>,
    released: Condvar,
    /// How many signatures have been held.
    held: AtomicUsize,
}

impl ControlledWallet {
    fn open(dir: &std::path::Path) -> Self {
        ControlledWallet {
            keys: KeyStore::open(dir.join("keystore"), Network::Testnet).unwrap(),
            fail: AtomicBool::new(false),
            hold_next: AtomicBool::new(false),
            gate: StdMutex::new(false),
            released: Condvar::new(),
            held: AtomicUsize::new(0),
        }
    }

    /// Makes the next signature wait until [`Self::release`].
    fn hold_next(&self) {
        *self.gate.lock().unwrap() = false;
        self.hold_next.store(true, Ordering::SeqCst);
    }

    fn release(&self) {
        *self.gate.lock().unwrap() = true;
        self.released.notify_all();
    }
}

impl Wallet for ControlledWallet {
    fn new_key(&self) -> Result<Address, WalletError> {
        self.keys.new_key()
    }
    fn list(&self) -> Result<Vec<Address>, WalletError> {
        self.keys.list()
    }
    fn has(&self, addr: &Address) -> bool {
        self.keys.has(addr)
    }
    fn sign(&self, addr: &Address, data: &[u8]) -> Result<Signature, WalletError> {
        if self.hold_next.swap(false, Ordering::SeqCst) {
            self.held.fetch_add(1, Ordering::SeqCst);
            let mut open = self.gate.lock().unwrap();
            while !*open {
                open = self.released.wait(open).unwrap();
            }
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(WalletError::UnknownAddress(addr.to_string()));
        }
        self.keys.sign(addr, data)
    }
    fn default_address(&self) -> Result<Option<Address>, WalletError> {
        self.keys.default_address()
    }
}

/// A manager on `devnet` over a [`ControlledWallet`] holding one funded key.
async fn controlled_payer(
    devnet: &Devnet,
    dir: &std::path::Path,
) -> (PaymentChannelManager, Arc<ControlledWallet>, Address) {
    let wallet = Arc::new(ControlledWallet::open(dir));
    let from = wallet.new_key().unwrap();
    fund(devnet, false, &from, TokenAmount::from_whole(10)).await;
    let store = Arc::new(open_store_when_free(&dir.join("datastore")).await);
    let m =
        PaymentChannelManager::new(Arc::new(devnet.clone()), wallet.clone(), store, test_config());
    m.start().await.unwrap();
    (m, wallet, from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciliation_waits_for_a_voucher_being_signed_on_a_lane_it_closes() {
    let net = Net::new();
    let payee = net.node(10).await;
    let dir = tempfile::tempdir().unwrap();
    let (payer, wallet, from) = controlled_payer(&net.devnet, dir.path()).await;
    let handle = payer.create(from, payee.addr, atto(1_000_000), atto(0)).await.unwrap();
    let ch =
        within("the channel", payer.get_wait_ready(&handle.wait_sentinel.unwrap())).await.unwrap();
    let draft = draft_after_redeeming(&payer, payee.m(), ch, 2).await;

    // A voucher on lane 0 is being signed (its nonce given, not yet stored) ...
    wallet.hold_next();
    let creating = tokio::spawn({
        let payer = payer.clone();
        async move { payer.voucher_create(&ch, atto(400), 0).await }
    });
    within("the signature to begin", async {
        while wallet.held.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    // ... when the payee's request arrives: the answer waits for it.
    let answering = tokio::spawn({
        let (payer, draft) = (payer.clone(), draft.clone());
        async move { answer(&payer, &draft, b"a request while signing").await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let answered_early = answering.is_finished();
    wallet.release();
    assert!(!answered_early, "answered while a voucher on a closing lane was unsigned");
    let created = creating.await.unwrap().unwrap().voucher.unwrap();
    let combined = answering.await.unwrap();
    assert!(
        created.nonce < closed_at(&combined)[&0],
        "{created:?} stays redeemable after {combined:?}"
    );
    payer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voucher_whose_signing_fails_leaves_its_lane_and_the_reservation_as_they_were() {
    let net = Net::new();
    let dir = tempfile::tempdir().unwrap();
    let (m, wallet, from) = controlled_payer(&net.devnet, dir.path()).await;
    let to = wallet.new_key().unwrap();
    // A channel of 10 000 with 6 000 of it reserved.
    let handle = m.create(from, to, atto(10_000), atto(6_000)).await.unwrap();
    let ch = within("the channel", m.get_wait_ready(&handle.wait_sentinel.unwrap())).await.unwrap();
    m.voucher_create(&ch, atto(1_000), 0).await.unwrap().voucher.unwrap();
    let before = m.available_funds(&ch).await.unwrap();
    let status_before = m.status(&ch).await.unwrap();

    wallet.fail.store(true, Ordering::SeqCst);
    let err = m.voucher_create(&ch, atto(3_000), 0).await.unwrap_err();
    assert!(matches!(err, CreateVoucherError::Wallet(_)), "{err}");
    let err = m.voucher_create(&ch, atto(500), 7).await.unwrap_err();
    assert!(matches!(err, CreateVoucherError::Wallet(_)), "{err}");
    assert_eq!(m.available_funds(&ch).await.unwrap(), before);
    assert_eq!(m.status(&ch).await.unwrap().lanes, status_before.lanes);
    assert_eq!(m.voucher_list(&ch).unwrap().len(), 1);

    // Signing again: the lane goes on from where it was.
    wallet.fail.store(false, Ordering::SeqCst);
    let v = m.voucher_create(&ch, atto(3_000), 0).await.unwrap().voucher.unwrap();
    assert_eq!((v.lane, v.nonce), (0, 2));
    let after = m.available_funds(&ch).await.unwrap();
    assert_eq!(after.voucher_redeemed, atto(3_000));
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_payments_on_one_lane_each_add_their_amount() {
    const PAYMENTS: u64 = 48;
    let net = Net::new();
    let (payer, payee, ch) = net.channel(10, 1, atto(1_000_000)).await;
    let lane = payer.m().lease_lane(&ch).await.unwrap();

    let mut tasks = Vec::new();
    for k in 1..=PAYMENTS {
        let m = payer.m().clone();
        tasks.push(tokio::spawn(async move { m.voucher_pay(&ch, lane, atto(k)).await }));
    }
    let mut vouchers = Vec::new();
    for t in tasks {
        vouchers.push(t.await.unwrap().unwrap().voucher.unwrap());
    }
    // Nonces 1..=N, each voucher's amount above the one before it on the lane, the last one
    // carrying every payment.
    vouchers.sort_by_key(|v| v.nonce);
    let nonces: Vec<u64> = vouchers.iter().map(|v| v.nonce).collect();
    assert_eq!(nonces, (1..=PAYMENTS).collect::<Vec<_>>());
    assert!(vouchers.windows(2).all(|w| w[0].amount < w[1].amount));
    assert_eq!(vouchers.last().unwrap().amount, atto(PAYMENTS * (PAYMENTS + 1) / 2));
    // Each voucher adds one payment's amount, so the payee accepts every one in order.
    for (i, v) in vouchers.iter().enumerate() {
        payee.m().voucher_add(&ch, v, atto(1)).await.unwrap();
        let previous = if i == 0 { atto(0) } else { vouchers[i - 1].amount.clone() };
        assert!(&v.amount - previous >= atto(1));
    }

    // A payment must be positive; one the channel cannot cover answers its shortfall.
    let err = payer.m().voucher_pay(&ch, lane, atto(0)).await.unwrap_err();
    assert!(matches!(err, CreateVoucherError::InvalidAmount(_)), "{err}");
    let over = payer.m().voucher_pay(&ch, lane, atto(1_000_000)).await.unwrap();
    assert!(over.voucher.is_none());
    assert_eq!(over.shortfall, atto(PAYMENTS * (PAYMENTS + 1) / 2));
}
