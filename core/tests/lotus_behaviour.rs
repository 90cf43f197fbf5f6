//! Where the manager behaves as Lotus's payment-channel manager (`paychmgr`) does, one
//! scenario each, on the in-process devnet with real sled stores and keys: a payee learns an
//! inbound channel from the chain for a check, lanes are handed out on any channel, queued
//! `get`s share one message and a `get` whose caller went away holds and sends nothing, and
//! a payer's own vouchers are spendable as their recipient would spend them, a collected
//! channel answers as a gone one and `PaychGet` on its pair makes a new channel, and a
//! settle or collect asked again (after the payer's settler collected, say) answers the
//! message already sent.
//!
//! The differences that stay deliberate are listed in docs/api.md ("Differences from Lotus").
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cid::Cid;
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::manager::{
    AddVoucherError, ChannelHandle, FundsError, ManagerConfig, SettleError, SubmitError,
};
use paych_core::store::{Lifecycle, MessagePurpose};
use paych_core::types::{paych_method, Address, SignedVoucher, TokenAmount, SETTLE_DELAY};
use paych_testkit::amounts::atto;
use paych_testkit::deadline::{eventually, within};
use paych_testkit::devnet::{test_config, Net, Node};

/// A node configuration whose settler does not look by itself during a test.
fn idle_settler() -> ManagerConfig {
    ManagerConfig { settler_interval: Duration::from_secs(24 * 3600), ..test_config() }
}

/// The collect messages from `node`'s key the chain executed.
fn collects_on_chain(net: &Net, node: &Node) -> u64 {
    let stats = net.devnet.sender_stats(&node.addr);
    stats
        .by_method
        .iter()
        .filter(|((_, method), _)| *method == paych_method::COLLECT)
        .map(|(_, n)| n)
        .sum()
}

/// The collect messages `node` recorded for the channel it sent them on.
fn collects_sent(node: &Node) -> Vec<Cid> {
    let messages = node.m().store().messages().unwrap();
    messages
        .into_iter()
        .filter(|m| matches!(m.purpose, MessagePurpose::Collect { .. }))
        .map(|m| m.cid)
        .collect()
}

/// A payer and a payee whose settlers stay idle, a channel of 100 between them and a voucher
/// of 40 on it the payee added.
async fn paid_channel(net: &Net) -> (Node, Node, Address, SignedVoucher) {
    let payer = net.node_with(10, idle_settler()).await;
    let payee = net.node_with(0, idle_settler()).await;
    let ch = payer.open_channel(payee.addr, atto(100)).await;
    let voucher = payer.create_voucher(&ch, atto(40), 0).await;
    payee.m().voucher_add(&ch, &voucher, atto(0)).await.unwrap();
    (payer, payee, ch, voucher)
}

/// The payer settles `ch` and the settlement period passes on a manual devnet; answers the
/// settle's CID.
async fn settle_and_pass(net: &Net, payer: &Node, ch: &Address) -> Cid {
    let settle = payer.m().settle(ch).await.unwrap();
    net.mine_until_landed(payer.m(), &settle).await;
    net.mine(SETTLE_DELAY as u64 + 1);
    settle
}

/// The amounts of the channel's create and add-funds messages the node sent, in order.
fn funds_messages(node: &Node) -> (Vec<TokenAmount>, Vec<TokenAmount>) {
    let (mut creates, mut adds) = (Vec::new(), Vec::new());
    for message in node.m().store().messages().unwrap() {
        match message.purpose {
            MessagePurpose::Create { amount, .. } => creates.push(amount),
            MessagePurpose::AddFunds { amount, .. } => adds.push(amount),
            _ => {}
        }
    }
    (creates, adds)
}

/// What the payer's channel to `payee` has queued for the next add-funds message.
async fn queued(payer: &Node, payee: &Node) -> TokenAmount {
    payer.m().available_funds_by_from_to(&payer.addr, &payee.addr).await.unwrap().queued
}

/// `get(payer → payee, amount)` run in its own task, as a caller of the API runs it.
fn spawn_get(
    payer: &Node,
    payee: &Node,
    amount: u64,
) -> tokio::task::JoinHandle<Result<ChannelHandle, FundsError>> {
    let (m, from, to) = (payer.m().clone(), payer.addr, payee.addr);
    tokio::spawn(async move { m.get(from, to, atto(amount)).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_check_valid_learns_an_inbound_channel_it_has_never_seen_from_the_chain() {
    let net = Net::new();
    let (payer, payee, ch) = net.channel(10, 0, atto(100)).await;
    let voucher = payer.sign(SignedVoucher::new(ch, 0, 1, atto(40)));

    payee.m().voucher_check_valid(&ch, &voucher).await.unwrap();

    // A check stores nothing: the channel is learned for good by its first added voucher.
    assert!(payee.m().store().channels().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocate_lane_hands_out_a_fresh_lane_on_an_inbound_channel_too() {
    let net = Net::new();
    let (payer, payee, ch) = net.channel(10, 0, atto(100)).await;
    let voucher = payer.create_voucher(&ch, atto(40), 0).await;
    payee.m().voucher_add(&ch, &voucher, atto(0)).await.unwrap();

    // Lane 0 carries a voucher received: the payee's next lanes are above it.
    assert_eq!(payee.m().allocate_lane(&ch).await.unwrap(), 1);
    assert_eq!(payee.m().allocate_lane(&ch).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_gets_on_a_channel_being_created_send_one_create_and_one_add_funds() {
    let net = Net::manual();
    let (payer, payee) = net.pair(10, 0).await;
    let create = payer.m().get(payer.addr, payee.addr, atto(100)).await.unwrap();
    let create = create.wait_sentinel.unwrap();

    // While the create waits in the pool, two more gets queue beside each other.
    let gets = [spawn_get(&payer, &payee, 30), spawn_get(&payer, &payee, 20)];
    eventually("both gets to queue behind the create", || async {
        queued(&payer, &payee).await == atto(50)
    })
    .await;
    net.mine_until_landed(payer.m(), &create).await;

    let mut sentinels = Vec::new();
    for get in gets {
        let handle = within("a queued get to answer", get).await.unwrap().unwrap();
        sentinels.push(handle.wait_sentinel.unwrap());
    }
    assert_eq!(sentinels[0], sentinels[1], "both answer the one add-funds message");
    assert_eq!(funds_messages(&payer), (vec![atto(100)], vec![atto(50)]));
    net.mine_until_landed(payer.m(), &sentinels[0]).await;
    let ch = payer.m().get_wait_ready(&create).await.unwrap();
    let status = payer.m().status(&ch).await.unwrap();
    assert_eq!((status.confirmed, status.reserved), (atto(150), atto(150)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_whose_caller_went_away_releases_its_reservation_and_sends_nothing() {
    let net = Net::manual();
    let (payer, payee) = net.pair(10, 0).await;
    let ch = payer.open_channel(payee.addr, atto(100)).await;
    assert_eq!(payer.m().reserve_funds(&ch, atto(80)).await.unwrap(), None);
    // A message in flight, so that the next get queues behind it.
    let in_flight = payer.m().add_funds(&ch, atto(10)).await.unwrap();

    // 20 reserved at once, 30 queued for the next message.
    let get = spawn_get(&payer, &payee, 50);
    eventually("the get to queue", || async { queued(&payer, &payee).await == atto(30) }).await;
    assert_eq!(payer.m().status(&ch).await.unwrap().reserved, atto(100));

    get.abort();
    eventually("the dropped get to be undone", || async {
        let status = payer.m().status(&ch).await.unwrap();
        status.queued.is_zero() && status.reserved == atto(80)
    })
    .await;

    net.mine_until_landed(payer.m(), &in_flight).await;
    let status = payer.m().status(&ch).await.unwrap();
    assert_eq!((status.confirmed, status.reserved), (atto(110), atto(80)));
    assert_eq!(funds_messages(&payer), (vec![atto(100)], vec![atto(10)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payer_finds_its_own_vouchers_spendable_as_their_recipient_would() {
    let net = Net::new();
    let (payer, _payee, ch) = net.channel(10, 0, atto(100)).await;
    let first = payer.create_voucher(&ch, atto(30), 0).await;
    let best = payer.create_voucher(&ch, atto(40), 0).await;
    let other = payer.create_voucher(&ch, atto(25), 1).await;

    assert!(payer.m().voucher_check_spendable(&ch, &best, &[]).await.unwrap());
    assert!(payer.m().voucher_check_spendable(&ch, &first, &[]).await.unwrap());
    let mut spendable = payer.m().voucher_best_spendable(&ch).await.unwrap();
    spendable.sort_by_key(|v| v.lane);
    assert_eq!(spendable, vec![best, other]);
}

/// A channel read as missing before it could have been collected — its node lagging behind,
/// say — is answered gone for that call, but nothing is recorded: back on a chain that has
/// it, the payee's voucher is spendable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_missing_on_a_lagging_chain_is_not_recorded_collected() {
    let net = Net::new();
    let (_payer, payee, ch, voucher) = paid_channel(&net).await;
    let mut payee = payee.stop().await;
    let lagging = Devnet::new(DevnetConfig::default()).unwrap();
    let real = std::mem::replace(&mut payee.net, lagging);
    let payee = payee.started().await;
    assert!(payee.m().voucher_best_spendable(&ch).await.unwrap().is_empty());
    assert_eq!(payee.m().status(&ch).await.unwrap().lifecycle, Lifecycle::Collected);

    let mut payee = payee.stop().await;
    payee.net = real;
    let payee = payee.started().await;
    assert_eq!(payee.m().status(&ch).await.unwrap().lifecycle, Lifecycle::Open);
    assert_eq!(payee.m().voucher_best_spendable(&ch).await.unwrap(), vec![voucher]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collected_channel_has_nothing_spendable_refuses_vouchers_and_get_makes_a_new_one() {
    let net = Net::manual();
    let (payer, payee, ch, voucher) = paid_channel(&net).await;
    settle_and_pass(&net, &payer, &ch).await;
    let collect = payer.m().collect(&ch).await.unwrap();
    net.mine_until_landed(payer.m(), &collect).await;
    // While the channel settled, the payee's settler may have tried to submit its voucher
    // (its watch on settlement); from here on it must send nothing.
    let cids = |node: &Node| -> Vec<Cid> {
        node.m().store().messages().unwrap().into_iter().map(|m| m.cid).collect()
    };
    let sent = cids(&payee);

    // The payee's record still says open; the chain no longer has the actor. Best-spendable
    // answers nothing (not a chain error) and the payee records the channel collected.
    assert_eq!(payee.m().voucher_best_spendable(&ch).await.unwrap(), Vec::new());
    assert_eq!(payee.m().status(&ch).await.unwrap().lifecycle, Lifecycle::Collected);
    assert!(!payee.m().voucher_check_spendable(&ch, &voucher, &[]).await.unwrap());
    let submitted = payee.m().voucher_submit(&ch, &voucher, &[]).await;
    assert!(matches!(submitted, Err(SubmitError::ChannelCollected(_))), "{submitted:?}");
    let later = payer.sign(SignedVoucher::new(ch, 0, 2, atto(60)));
    let checked = payee.m().voucher_check_valid(&ch, &later).await;
    assert!(matches!(checked, Err(AddVoucherError::ChannelCollected(_))), "{checked:?}");
    let added = payee.m().voucher_add(&ch, &later, atto(0)).await;
    assert!(matches!(added, Err(AddVoucherError::ChannelCollected(_))), "{added:?}");
    // The payee sent nothing more: a submit or collect could only fail.
    assert_eq!(cids(&payee), sent);
    let collected = payee.m().collect(&ch).await;
    assert!(
        matches!(
            collected,
            Err(SettleError::ChannelNotOpen { lifecycle: Lifecycle::Collected, .. })
        ),
        "{collected:?}"
    );

    // The payer: a settle on the collected channel is refused as collected; PaychGet on the
    // pair creates a new channel, as Lotus does.
    let settled = payer.m().settle(&ch).await;
    assert!(
        matches!(settled, Err(SettleError::ChannelNotOpen { lifecycle: Lifecycle::Collected, .. })),
        "{settled:?}"
    );
    let handle = payer.m().get(payer.addr, payee.addr, atto(30)).await.unwrap();
    net.mine(1);
    let fresh = payer.m().get_wait_ready(&handle.wait_sentinel.unwrap()).await.unwrap();
    assert_ne!(fresh, ch);
    assert_eq!(payer.m().status(&fresh).await.unwrap().lifecycle, Lifecycle::Open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_after_the_payers_settler_collected_answers_its_message_and_one_collect_lands() {
    let net = Net::manual();
    let payer = net.node(10).await;
    let payee = net.node_with(0, idle_settler()).await;
    let ch = payer.open_channel(payee.addr, atto(100)).await;
    settle_and_pass(&net, &payer, &ch).await;
    // The payer's settler collects the settled channel by itself.
    eventually("the settler to collect", || async { !collects_sent(&payer).is_empty() }).await;
    let settlers = collects_sent(&payer)[0];

    // Asked while the settler's collect is in flight, and again once it landed: its CID
    // both times, so the caller's wait for it succeeds.
    assert_eq!(payer.m().collect(&ch).await.unwrap(), settlers);
    net.mine_until_landed(payer.m(), &settlers).await;
    assert_eq!(payer.m().collect(&ch).await.unwrap(), settlers);
    net.mine(2);

    assert_eq!(collects_sent(&payer), vec![settlers]);
    assert_eq!(collects_on_chain(&net, &payer), 1);
    assert_eq!(payer.m().status(&ch).await.unwrap().lifecycle, Lifecycle::Collected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_asked_again_answers_the_settle_already_sent() {
    let net = Net::manual();
    let (payer, payee, ch, _) = paid_channel(&net).await;

    let settle = payer.m().settle(&ch).await.unwrap();
    assert_eq!(payer.m().settle(&ch).await.unwrap(), settle, "in flight");
    net.mine_until_landed(payer.m(), &settle).await;
    assert_eq!(payer.m().settle(&ch).await.unwrap(), settle, "landed");
    let messages = payer.m().store().messages().unwrap();
    let settles = messages.iter().filter(|m| matches!(m.purpose, MessagePurpose::Settle { .. }));
    assert_eq!(settles.count(), 1);

    // The payee, whose record still says open, did not settle: its settle is refused with
    // what the chain shows, and sends no settle (its settler may meanwhile submit its voucher,
    // as it does once a channel settles).
    let refused = payee.m().settle(&ch).await;
    assert!(
        matches!(refused, Err(SettleError::ChannelNotOpen { lifecycle: Lifecycle::Settling, .. })),
        "{refused:?}"
    );
    let messages = payee.m().store().messages().unwrap();
    assert!(
        messages.iter().all(|m| matches!(m.purpose, MessagePurpose::Submit { .. })),
        "{messages:?}"
    );
}
