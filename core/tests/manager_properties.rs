//! Property tests of the manager's accounting over random histories of a payer and a payee
//! on a devnet that mines only when the history says so.
//!
//! A history is a sequence of creates, reservations, releases, vouchers created by the payer
//! and added by the payee, submissions, settles, collects and mined epochs. After every step:
//! - on every outbound channel `reserved + spent ≤ confirmed`, `available` is exactly the
//!   rest (never negative), and the chain holds exactly the confirmed balance;
//! - no (channel, lane, nonce) was ever issued twice, and a shortfall is exactly what the
//!   channel lacks;
//! - the payee never sees a payer's voucher exceed the channel's funds;
//! - nothing is redeemable twice: the chain's `to_send` never exceeds the sum over lanes of
//!   the highest amount the payee accepted, and a submitted voucher is never spendable again.
//!
//! Each case builds its own tokio runtime, devnet and sled stores; the settlers are idle (a
//! history runs them explicitly through settles and collects), so a case is reproducible.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use cid::Cid;
use paych_core::actor::ActorError;
use paych_core::chain::Chain;
use paych_core::manager::{
    AddOutcome, AddVoucherError, CreateVoucherError, FundsError, ManagerConfig, SettleError,
    SubmitError,
};
use paych_core::redemption::Unredeemable;
use paych_core::store::{Direction, Lifecycle, MessageState};
use paych_core::types::{Address, SignedVoucher, TokenAmount, SETTLE_DELAY};
use paych_testkit::amounts::atto;
use paych_testkit::deadline::{within, DEADLINE};
use paych_testkit::devnet::{runtime, test_config, Net, Node};
use proptest::collection::vec;
use proptest::prelude::*;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
enum Op {
    /// The payer creates another channel to the payee.
    Create { amount: u64 },
    /// The payer reserves funds on a channel.
    Reserve { ch: usize, amount: u64 },
    /// The payer releases reserved funds.
    Release { ch: usize, amount: u64 },
    /// The payer raises a lane by `delta` with a new voucher.
    Pay { ch: usize, lane: u64, delta: u64 },
    /// The payee adds one of the vouchers the payer issued (old ones included).
    Add { pick: usize },
    /// The payee submits its best spendable voucher of a channel.
    Submit { ch: usize },
    /// The payer settles a channel.
    Settle { ch: usize },
    /// The settlement period passes and the payer collects.
    Collect { ch: usize },
    /// Epochs are mined.
    Mine { epochs: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (100u64..600).prop_map(|amount| Op::Create { amount }),
        4 => (any::<usize>(), 50u64..400).prop_map(|(ch, amount)| Op::Reserve { ch, amount }),
        2 => (any::<usize>(), 1u64..300).prop_map(|(ch, amount)| Op::Release { ch, amount }),
        10 => (any::<usize>(), 0u64..3, 0u64..150)
            .prop_map(|(ch, lane, delta)| Op::Pay { ch, lane, delta }),
        8 => any::<usize>().prop_map(|pick| Op::Add { pick }),
        3 => any::<usize>().prop_map(|ch| Op::Submit { ch }),
        1 => any::<usize>().prop_map(|ch| Op::Settle { ch }),
        1 => any::<usize>().prop_map(|ch| Op::Collect { ch }),
        4 => (1u64..3).prop_map(|epochs| Op::Mine { epochs }),
    ]
}

/// One history being played.
struct History {
    net: Net,
    payer: Node,
    payee: Node,
    /// Every voucher the payer issued, by (channel, lane, nonce).
    issued: HashMap<(Address, u64, u64), SignedVoucher>,
    /// The same, in the order issued.
    issued_order: Vec<(Address, SignedVoucher)>,
    /// The highest amount the payee accepted per (channel, lane).
    accepted: HashMap<(Address, u64), TokenAmount>,
    /// Submit messages sent by the payee: (message, channel, voucher).
    submits: Vec<(Cid, Address, SignedVoucher)>,
    /// The settle message the payer sent per channel.
    settles: HashMap<Address, Cid>,
    /// Reservations queued behind a message in flight, still waiting.
    waiting: Vec<JoinHandle<Result<Option<Cid>, FundsError>>>,
}

/// Nodes whose settlers stay idle during a history.
fn idle_settler() -> ManagerConfig {
    ManagerConfig { settler_interval: Duration::from_secs(24 * 3600), ..test_config() }
}

impl History {
    async fn new() -> Self {
        let net = Net::manual();
        let payer = net.node_with(10, idle_settler()).await;
        let payee = net.node_with(10, idle_settler()).await;
        payer.open_channel(payee.addr, atto(300)).await;
        History {
            net,
            payer,
            payee,
            issued: HashMap::new(),
            issued_order: Vec::new(),
            accepted: HashMap::new(),
            submits: Vec::new(),
            settles: HashMap::new(),
            waiting: Vec::new(),
        }
    }

    /// The payer's channels that exist on chain, oldest first.
    fn channels(&self) -> Vec<Address> {
        let records = self.payer.m().store().channels().unwrap();
        records
            .into_iter()
            .filter(|c| c.direction == Direction::Outbound)
            .filter_map(|c| c.channel)
            .collect()
    }

    fn channel(&self, pick: usize) -> Option<Address> {
        let channels = self.channels();
        (!channels.is_empty()).then(|| channels[pick % channels.len()])
    }

    /// Mines, then waits until both managers have recorded every message that executed.
    async fn mine(&self, epochs: u64) {
        self.net.mine(epochs);
        for node in [&self.payer, &self.payee] {
            for message in node.m().store().messages().unwrap() {
                let in_flight =
                    matches!(message.state, MessageState::Recorded | MessageState::Pushed);
                if in_flight && self.net.devnet.search(&message.cid).await.unwrap().is_some() {
                    within("a landed message to be recorded", node.m().wait_message(&message.cid))
                        .await
                        .unwrap();
                }
            }
        }
    }

    async fn apply(&mut self, op: &Op) {
        match *op {
            Op::Create { amount } => {
                let m = self.payer.m();
                m.create(self.payer.addr, self.payee.addr, atto(amount), atto(0)).await.unwrap();
            }
            Op::Reserve { ch, amount } => {
                let Some(ch) = self.channel(ch) else { return };
                let m = self.payer.m().clone();
                let status = m.status(&ch).await.unwrap();
                if status.lifecycle != Lifecycle::Open {
                    let refused = m.reserve_funds(&ch, atto(amount)).await;
                    assert!(
                        matches!(refused, Err(FundsError::ChannelNotOpen { .. })),
                        "{refused:?}"
                    );
                } else if status.pending_message.is_none() {
                    m.reserve_funds(&ch, atto(amount)).await.unwrap();
                } else {
                    // Queued behind the message in flight: answered once the next goes out.
                    self.waiting.push(tokio::spawn(async move {
                        m.reserve_funds(&ch, atto(amount)).await
                    }));
                }
            }
            Op::Release { ch, amount } => {
                let Some(ch) = self.channel(ch) else { return };
                match self.payer.m().release_funds(&ch, atto(amount)).await {
                    Ok(()) | Err(FundsError::ReleaseExceedsReserved { .. }) => {}
                    Err(e) => panic!("release: {e:?}"),
                }
            }
            Op::Pay { ch, lane, delta } => {
                let Some(ch) = self.channel(ch) else { return };
                self.pay(ch, lane, delta).await;
            }
            Op::Add { pick } => {
                if self.issued_order.is_empty() {
                    return;
                }
                let (ch, voucher) = self.issued_order[pick % self.issued_order.len()].clone();
                self.add(ch, voucher).await;
            }
            Op::Submit { ch } => {
                let Some(ch) = self.channel(ch) else { return };
                self.submit(ch).await;
            }
            Op::Settle { ch } => {
                let Some(ch) = self.channel(ch) else { return };
                let lifecycle = self.payer.m().status(&ch).await.unwrap().lifecycle;
                let sent = self.settles.get(&ch).copied();
                match self.payer.m().settle(&ch).await {
                    // A settle asked again answers the one sent, until the channel is gone.
                    Ok(cid) if sent.is_some() => {
                        assert_eq!(Some(cid), sent);
                        assert_ne!(lifecycle, Lifecycle::Collected);
                    }
                    Ok(cid) => {
                        assert_eq!(lifecycle, Lifecycle::Open);
                        self.settles.insert(ch, cid);
                    }
                    Err(SettleError::ChannelNotOpen { .. }) => {
                        assert_ne!(lifecycle, Lifecycle::Open);
                        assert!(sent.is_none() || lifecycle == Lifecycle::Collected);
                    }
                    Err(e) => panic!("settle: {e:?}"),
                }
            }
            Op::Collect { ch } => {
                let Some(ch) = self.channel(ch) else { return };
                let settling = |l| matches!(l, Lifecycle::Settling | Lifecycle::Settled);
                if settling(self.payer.m().status(&ch).await.unwrap().lifecycle) {
                    // Mining lands what is in flight: the settle, or an earlier collect.
                    self.mine(SETTLE_DELAY as u64 + 1).await;
                    if settling(self.payer.m().status(&ch).await.unwrap().lifecycle) {
                        self.payer.m().collect(&ch).await.unwrap();
                    }
                }
            }
            Op::Mine { epochs } => self.mine(epochs).await,
        }
    }

    async fn pay(&mut self, ch: Address, lane: u64, delta: u64) {
        let m = self.payer.m();
        let before = m.status(&ch).await.unwrap();
        let tip = before.lanes.iter().find(|l| l.lane == lane).map(|l| (l.nonce, l.amount.clone()));
        let (tip_nonce, tip_amount) = tip.unwrap_or_default();
        let created = m.voucher_create(&ch, tip_amount.clone() + atto(delta), lane).await;
        if before.lifecycle != Lifecycle::Open {
            assert!(
                matches!(created, Err(CreateVoucherError::ChannelNotOpen { .. })),
                "{created:?}"
            );
            return;
        }
        let created = created.unwrap();
        match created.voucher {
            Some(voucher) => {
                assert_eq!((voucher.lane, voucher.nonce), (lane, tip_nonce + 1));
                let key = (ch, voucher.lane, voucher.nonce);
                assert!(self.issued.insert(key, voucher.clone()).is_none(), "{key:?} issued twice");
                self.issued_order.push((ch, voucher));
            }
            None => {
                let lacking = before.voucher_redeemed + atto(delta) - before.confirmed;
                assert!(lacking.is_positive());
                assert_eq!(created.shortfall, lacking);
            }
        }
    }

    async fn add(&mut self, ch: Address, voucher: SignedVoucher) {
        match self.payee.m().voucher_add(&ch, &voucher, atto(0)).await {
            Ok(AddOutcome::Accepted { .. }) => {
                let best = self.accepted.entry((ch, voucher.lane)).or_default();
                if voucher.amount > *best {
                    *best = voucher.amount;
                }
            }
            Ok(AddOutcome::Covered { lane_amount }) => assert!(voucher.amount <= lane_amount),
            Ok(AddOutcome::AlreadyHeld) => {}
            Err(AddVoucherError::InvalidVoucher(ActorError::InsufficientFunds { .. })) => {
                panic!("the payer issued a voucher its channel cannot cover: {voucher:?}")
            }
            // The channel settled or was collected since (a channel the payee never held
            // is unknown once its actor is gone).
            Err(
                AddVoucherError::InvalidVoucher(_)
                | AddVoucherError::Unredeemable(Unredeemable::Settling { .. })
                | AddVoucherError::ChannelCollected(_)
                | AddVoucherError::UnknownChannel(_),
            ) => {}
            Err(e) => panic!("add: {e:?}"),
        }
    }

    async fn submit(&mut self, ch: Address) {
        let m = self.payee.m();
        if m.store().channel_by_address(&ch).unwrap().is_none() {
            return;
        }
        let best = m.voucher_best_spendable(&ch).await.unwrap();
        let Some(voucher) = best.first() else { return };
        let cid = m.voucher_submit(&ch, voucher, &[]).await.unwrap();
        assert!(!m.voucher_check_spendable(&ch, voucher, &[]).await.unwrap());
        let again = m.voucher_submit(&ch, voucher, &[]).await;
        assert!(matches!(again, Err(SubmitError::AlreadySubmitted { .. })), "{again:?}");
        self.submits.push((cid, ch, voucher.clone()));
    }

    async fn check(&self) {
        for ch in self.channels() {
            let status = self.payer.m().status(&ch).await.unwrap();
            let committed = status.voucher_redeemed.clone() + &status.reserved;
            assert!(committed <= status.confirmed, "over-allocated: {status:?}");
            assert_eq!(status.available, status.confirmed.clone() - committed);
            let Ok(on_chain) = self.net.devnet.channel(&ch).await else {
                assert_eq!(status.lifecycle, Lifecycle::Collected, "{status:?}");
                continue;
            };
            assert_eq!(on_chain.balance, status.confirmed, "{status:?}");
            let accepted: TokenAmount = self
                .accepted
                .iter()
                .filter(|((c, _), _)| *c == ch)
                .map(|(_, amount)| amount.clone())
                .sum();
            assert!(
                on_chain.state.to_send <= accepted,
                "to_send {:?} above the accepted lane totals {accepted:?}",
                on_chain.state.to_send
            );
        }
        for (cid, ch, voucher) in &self.submits {
            let state = self.payee.m().store().message(cid).unwrap().map(|m| m.state);
            if matches!(
                state,
                Some(MessageState::Refused { .. } | MessageState::Landed { exit_code: 1.., .. })
            ) {
                // It never redeemed (the channel settled first, say); it may be refused again.
                continue;
            }
            assert!(
                !self.payee.m().voucher_check_spendable(ch, voucher, &[]).await.unwrap(),
                "a submitted voucher is spendable again: {voucher:?}"
            );
        }
    }

    /// Mines until every queued reservation has been answered.
    async fn drain(&mut self) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while self.waiting.iter().any(|w| !w.is_finished()) {
            assert!(tokio::time::Instant::now() < deadline, "queued reservations never answered");
            self.mine(1).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for waiter in self.waiting.drain(..) {
            match waiter.await.unwrap() {
                Ok(_) | Err(FundsError::ChannelNotOpen { .. }) => {}
                Err(e) => panic!("queued reservation: {e:?}"),
            }
        }
    }
}

async fn play(ops: Vec<Op>) {
    let mut history = History::new().await;
    history.check().await;
    for op in &ops {
        history.apply(op).await;
        history.check().await;
    }
    history.drain().await;
    history.mine(1).await;
    history.check().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_keep_funds_covered_and_nothing_redeemable_twice(ops in vec(op(), 10..20)) {
        let runtime = runtime();
        runtime.block_on(play(ops));
    }
}
