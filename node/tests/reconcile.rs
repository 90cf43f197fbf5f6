//! Reconciliation between two nodes over real TCP on one in-process devnet with sled
//! stores: the payer pays on four lanes, the payee redeems each lane, the payer pays more,
//! and the payee — finding the payer from the peer record announced with the first payment,
//! knowing only the channel's `from` — gets one combined voucher that one message redeems.
//! Every refusal status is reached over the wire.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use libp2p::{Multiaddr, PeerId};
use paych_core::chain::devnet::Devnet;
use paych_core::chain::Chain;
use paych_core::combine::{ReconcilePolicy, ReconcileStatus};
use paych_core::crypto;
use paych_core::manager::{CombineError, CreateVoucherError};
use paych_core::types::{SignedVoucher, TokenAmount};
use paych_node::host::HostConfig;
use paych_node::inbound::InboundConfig;
use paych_node::network::{NetworkClient, NetworkConfig};
use paych_node::reconcile_as_payee::{self, ReconcileError};
use paych_protocol::{
    Announce, PeerRecord, ReconcileRequest, ReconcileResponse, SignedPeerRecord, VoucherRequest,
    VoucherStatus,
};
use paych_testkit::amounts::atto;
use paych_testkit::deadline::{eventually, within, DEADLINE};
use paych_testkit::devnet::Net;
use paych_testkit::keys::{stranger, stranger_address};
use paych_testkit::node::{host, limits, payer_to};

/// A voucher request for `voucher` carrying `announce`.
fn announced(voucher: SignedVoucher, announce: Announce) -> VoucherRequest {
    VoucherRequest { voucher, flow: None, announce: Some(Box::new(announce)) }
}

/// Asks `peer` to fold `vouchers` into `req_val`, proving who asks with `record`.
async fn ask(
    net: &NetworkClient,
    peer: PeerId,
    addrs: &[Multiaddr],
    record: &SignedPeerRecord,
    vouchers: Vec<SignedVoucher>,
    req_val: TokenAmount,
) -> ReconcileResponse {
    let request = ReconcileRequest { vouchers, req_val, payee_record: record.clone() };
    within("the reconcile exchange", net.ask(peer, addrs.to_vec(), request)).await.unwrap()
}

async fn landed_ok(devnet: &Devnet, cid: &cid::Cid) {
    let lookup = devnet.wait(cid, 0, DEADLINE).await.unwrap();
    assert!(lookup.receipt.is_ok(), "{:?}", lookup.receipt);
}

/// Polls (bounded) until `net` has no connection with `peer`.
async fn wait_disconnected(net: &NetworkClient, peer: PeerId) {
    let what = format!("the disconnection from {peer}");
    eventually(&what, || async { !net.peers().await.unwrap().contains(&peer) }).await;
}

fn sum(vouchers: &[SignedVoucher]) -> TokenAmount {
    vouchers.iter().map(|v| v.amount.clone()).sum()
}

fn status(response: &ReconcileResponse) -> Option<ReconcileStatus> {
    assert!(response.message.is_some() || response.combined.is_some(), "{response:?}");
    response.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_reconciles_four_redeemed_lanes_into_one_message() {
    let net = Net::new();
    let devnet = &net.devnet;
    let (payer, payee, channel) = net.channel(10, 10, atto(1_000_000)).await;

    let policy = ReconcilePolicy { min_discount: atto(1), max_vouchers: 8, ..Default::default() };
    let payer_config = HostConfig {
        inbound: InboundConfig { reconcile_policy: policy.clone(), ..InboundConfig::default() },
        ..HostConfig::default()
    };
    let (payer_net, payer_peer, payer_addrs) = host(payer.m(), payer_config).await;
    let (payee_net, payee_peer, payee_addrs) = host(payee.m(), HostConfig::default()).await;
    let pay = payer_to(&payer, &payer_net, &payee, payee_peer, &payee_addrs);

    // Forged announces are refused, and nothing is kept.
    let lane = payer.m().allocate_lane(&channel).await.unwrap();
    let probe = payer.m().voucher_create(&channel, atto(1), lane).await.unwrap();
    let probe = probe.voucher.unwrap();
    let (key, other) = stranger();
    let by_stranger = SignedPeerRecord::new(&key, &payer_peer, &payer_addrs, 1).unwrap();
    let mis_signed = {
        let record = PeerRecord::new(payer.addr, &payer_peer, &payer_addrs, 1).unwrap();
        let signature = crypto::sign(&key, &record.signing_bytes().unwrap());
        SignedPeerRecord { record, signature }
    };
    for (from, record) in
        [(payer.addr, by_stranger.clone()), (other, by_stranger), (payer.addr, mis_signed)]
    {
        let announce = Announce { channel, from, to: payee.addr, peer_record: record };
        let request = announced(probe.clone(), announce);
        let response = payer_net.ask(payee_peer, payee_addrs.clone(), request).await.unwrap();
        assert_eq!(response.status(), Some(VoucherStatus::InvalidSignature), "{response:?}");
        assert!(payee.m().peer_record(&payer.addr).unwrap().is_none());
        assert!(payee.m().peer_record(&other).unwrap().is_none());
    }

    // Genuinely signed by the payer, but naming another peer than the sender, or another
    // payee than the channel's: refused too.
    let wallet = payer.m().wallet().clone();
    let elsewhere = SignedPeerRecord::sign_with(payer.addr, &payee_peer, &payee_addrs, 2, |b| {
        wallet.sign(&payer.addr, b)
    })
    .unwrap();
    let genuine = SignedPeerRecord::sign_with(payer.addr, &payer_peer, &payer_addrs, 2, |b| {
        wallet.sign(&payer.addr, b)
    })
    .unwrap();
    for (to, record, expected) in [
        (payee.addr, elsewhere, VoucherStatus::Malformed),
        (other, genuine, VoucherStatus::InvalidSignature),
    ] {
        let announce = Announce { channel, from: payer.addr, to, peer_record: record };
        let request = announced(probe.clone(), announce);
        let response = payer_net.ask(payee_peer, payee_addrs.clone(), request).await.unwrap();
        assert_eq!(response.status(), Some(expected), "{response:?}");
        assert!(payee.m().peer_record(&payer.addr).unwrap().is_none());
    }

    // Four flows, four lanes; the first payment announces the payer.
    let flows: Vec<Vec<u8>> = (0..4).map(|i| format!("flow-{i}").into_bytes()).collect();
    let mut first = Vec::new();
    for flow in &flows {
        let paid = pay.pay(&channel, atto(100), Some(flow.clone())).await.unwrap();
        assert_eq!(paid.response.status(), Some(VoucherStatus::Accepted), "{:?}", paid.response);
        first.push(paid);
    }
    let lanes: Vec<u64> = first.iter().map(|p| p.lane).collect();
    let held = payee.m().peer_record(&payer.addr).unwrap().expect("the announce is kept");
    assert!(held.sequence > 1);
    // A lower sequence number, genuinely signed, does not replace it.
    let older = SignedPeerRecord::sign_with(payer.addr, &payer_peer, &[], 1, |b| {
        wallet.sign(&payer.addr, b)
    })
    .unwrap();
    let announce = Announce { channel, from: payer.addr, to: payee.addr, peer_record: older };
    let request = announced(first[0].voucher.clone(), announce);
    let response = payer_net.ask(payee_peer, payee_addrs.clone(), request).await.unwrap();
    assert!(response.is_held(), "{response:?}");
    assert_eq!(payee.m().peer_record(&payer.addr).unwrap(), Some(held.clone()));

    // The payee redeems every lane: the lanes now exist on chain.
    for paid in &first {
        let cid = payee.m().voucher_submit(&channel, &paid.voucher, &[]).await.unwrap();
        landed_ok(devnet, &cid).await;
    }
    // The payer pays more on each lane.
    for flow in &flows {
        for _ in 0..2 {
            let paid = pay.pay(&channel, atto(50), Some(flow.clone())).await.unwrap();
            assert_eq!(paid.response.status(), Some(VoucherStatus::Accepted));
            assert!(lanes.contains(&paid.lane));
        }
    }
    // A fifth lane, never redeemed.
    let unredeemed = pay.pay(&channel, atto(30), Some(b"flow-4".to_vec())).await.unwrap().voucher;

    let fee = atto(100);
    let draft = payee.m().reconcile_draft(&channel, &fee).await.unwrap();
    assert_eq!(draft.payer, payer.addr);
    assert_eq!(draft.vouchers.iter().map(|v| v.lane).collect::<Vec<_>>(), lanes);
    let total = sum(&draft.vouchers);
    assert_eq!(total, atto(800));
    assert_eq!(draft.req_val, atto(800 - 150));
    let best = draft.vouchers.clone();

    // Refusals over the wire; none of them changes anything.
    let record = reconcile_as_payee::payee_record(payee.m(), &payee_net, payee.addr).await.unwrap();
    let asks = |vouchers: Vec<SignedVoucher>, req_val: TokenAmount| {
        let net = payee_net.clone();
        let addrs = payer_addrs.clone();
        let record = record.clone();
        async move { status(&ask(&net, payer_peer, &addrs, &record, vouchers, req_val).await) }
    };
    use ReconcileStatus as S;
    assert_eq!(asks(vec![], atto(0)).await, Some(S::InvalidVoucher));
    assert_eq!(asks(vec![best[0].clone(); 9], atto(0)).await, Some(S::TooManyVouchers));
    let mut elsewhere = best[1].clone();
    elsewhere.channel_addr = stranger_address();
    assert_eq!(
        asks(vec![best[0].clone(), elsewhere.clone()], atto(0)).await,
        Some(S::MixedChannels)
    );
    assert_eq!(asks(vec![elsewhere], atto(0)).await, Some(S::NotOurChannel));
    let mut unsigned = best[0].clone();
    unsigned.signature = None;
    assert_eq!(asks(vec![unsigned, best[1].clone()], atto(0)).await, Some(S::InvalidVoucher));
    let mut inflated = best[0].clone();
    inflated.amount = &inflated.amount + atto(1);
    assert_eq!(asks(vec![inflated, best[1].clone()], atto(0)).await, Some(S::NotIssuedByUs));
    assert_eq!(asks(vec![best[0].clone(), best[0].clone()], atto(0)).await, Some(S::DuplicateLane));
    assert_eq!(
        asks(vec![best[0].clone(), unredeemed.clone()], atto(0)).await,
        Some(S::LaneNotOnChain)
    );
    assert_eq!(asks(best.clone(), &total + atto(1)).await, Some(S::ReqValAboveSum));
    assert_eq!(asks(best.clone(), total.clone()).await, Some(S::DiscountBelowPolicy));
    let busy = limits(NetworkConfig { max_reconcile_per_peer: 0, ..NetworkConfig::default() });
    let (_busy_net, busy_peer, busy_addrs) = host(payer.m(), busy).await;
    let response =
        ask(&payee_net, busy_peer, &busy_addrs, &record, best.clone(), draft.req_val.clone()).await;
    assert_eq!(status(&response), Some(S::RateLimited));
    let status_before = payer.m().status(&channel).await.unwrap();
    assert!(status_before.lanes.iter().all(|l| !l.closed), "{status_before:?}");

    // The payee is no longer connected to the payer: it finds it by `from` alone.
    payee_net.disconnect(payer_peer).await.unwrap();
    payer_net.disconnect(payee_peer).await.unwrap();
    wait_disconnected(&payee_net, payer_peer).await;
    let done = reconcile_as_payee::ask_payer(payee.m(), &payee_net, &channel, &fee).await.unwrap();
    assert_eq!(done.status(), Some(S::Success), "{:?}", done.response);
    assert!(payee_net.peers().await.unwrap().contains(&payer_peer));
    let combined = done.combined.clone().unwrap();
    assert_eq!(combined.amount, draft.req_val);
    assert_eq!(combined.lane, lanes[0]);
    assert_eq!(combined.merges.iter().map(|m| m.lane).collect::<Vec<_>>(), lanes[1..]);
    assert_eq!(done.request.vouchers, best);

    // The payer closed every lane it touched, durably, before answering.
    let after = payer.m().status(&channel).await.unwrap();
    for lane in &lanes {
        assert!(after.lanes.iter().any(|l| l.lane == *lane && l.closed), "{after:?}");
    }
    // The identical request again: the byte-identical answer.
    let again = ask(
        &payee_net,
        payer_peer,
        &payer_addrs,
        &record,
        done.request.vouchers.clone(),
        done.request.req_val.clone(),
    )
    .await;
    assert_eq!(again.to_cbor().unwrap(), done.response.to_cbor().unwrap());
    // Any other request on those lanes: closed.
    let subset = vec![best[1].clone(), best[2].clone()];
    assert_eq!(asks(subset, atto(0)).await, Some(S::LaneClosed));

    // The payee's best spendable voucher on the folded lanes is the combined one (the
    // unredeemed fifth lane keeps its own); one message redeems it.
    let spendable = payee.m().voucher_best_spendable(&channel).await.unwrap();
    assert_eq!(spendable, vec![combined.clone(), unredeemed.clone()]);
    let cid = payee.m().voucher_submit(&channel, &combined, &[]).await.unwrap();
    landed_ok(devnet, &cid).await;
    let on_chain = devnet.channel(&channel).await.unwrap();
    assert_eq!(on_chain.state.to_send, draft.req_val);
    // An original, later voucher on a merged lane is refused by the chain.
    let cid = payee.m().voucher_submit(&channel, &best[1], &[]).await.unwrap();
    let lookup = devnet.wait(&cid, 0, DEADLINE).await.unwrap();
    assert_eq!(lookup.receipt.exit_code.value(), 16, "{:?}", lookup.receipt);
    assert_eq!(devnet.channel(&channel).await.unwrap().state.to_send, draft.req_val);

    // The payer signs nothing more on a closed lane; the flow moves to a fresh lane.
    for lane in &lanes {
        let err = payer.m().voucher_create(&channel, atto(10_000), *lane).await.unwrap_err();
        assert!(matches!(err, CreateVoucherError::LaneClosed(l) if l == *lane), "{err}");
    }
    let moved = pay.pay(&channel, atto(5), Some(flows[1].clone())).await.unwrap();
    assert!(!lanes.contains(&moved.lane), "{}", moved.lane);
    assert_eq!(moved.response.status(), Some(VoucherStatus::Accepted), "{:?}", moved.response);

    // A settling channel takes no reconciliation.
    let cid = payer.m().settle(&channel).await.unwrap();
    landed_ok(devnet, &cid).await;
    let late = vec![moved.voucher.clone(), unredeemed.clone()];
    assert_eq!(asks(late, atto(0)).await, Some(S::ChannelSettling));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payee_without_the_payers_record_or_vouchers_cannot_reconcile() {
    let net = Net::new();
    let devnet = &net.devnet;
    let (payer, payee, channel, (payer_net, _, _), (payee_net, payee_peer, payee_addrs)) =
        net.online_channel(10, 10, atto(1000), HostConfig::default()).await;

    // Vouchers sent without an announce: the payee holds them but knows no peer for `from`.
    let mut vouchers = Vec::new();
    for lane in 0..2 {
        let v = payer.m().voucher_create(&channel, atto(10), lane).await.unwrap();
        let v = v.voucher.unwrap();
        let response = payer_net
            .ask(payee_peer, payee_addrs.clone(), VoucherRequest::new(v.clone()))
            .await
            .unwrap();
        assert!(response.is_held(), "{response:?}");
        vouchers.push(v);
    }
    // Lanes not yet on chain: nothing to fold.
    let err = reconcile_as_payee::ask_payer(payee.m(), &payee_net, &channel, &atto(0)).await;
    assert!(
        matches!(err, Err(ReconcileError::Manager(CombineError::NothingToReconcile(_)))),
        "{err:?}"
    );
    for v in &vouchers {
        let cid = payee.m().voucher_submit(&channel, v, &[]).await.unwrap();
        landed_ok(devnet, &cid).await;
    }
    for lane in 0..2 {
        let v = payer.m().voucher_create(&channel, atto(20), lane).await.unwrap();
        vouchers.push(v.voucher.unwrap());
    }
    for v in &vouchers[2..] {
        let response = payer_net
            .ask(payee_peer, payee_addrs.clone(), VoucherRequest::new(v.clone()))
            .await
            .unwrap();
        assert!(response.is_held(), "{response:?}");
    }
    let err = reconcile_as_payee::ask_payer(payee.m(), &payee_net, &channel, &atto(0)).await;
    assert!(matches!(err, Err(ReconcileError::UnknownPayer(_))), "{err:?}");
    // The payer's own side of a channel is not the payee's to reconcile.
    let err = reconcile_as_payee::ask_payer(payer.m(), &payer_net, &channel, &atto(0)).await;
    assert!(
        matches!(err, Err(ReconcileError::Manager(CombineError::WrongDirection { .. }))),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_reconcile_request_is_refused() {
    let net = Net::new();
    let devnet = &net.devnet;
    let (payer, payee, channel) = net.channel(10, 10, atto(1_000_000)).await;
    let outsider = net.node(1).await;
    let (payer_net, payer_peer, payer_addrs) = host(payer.m(), HostConfig::default()).await;
    let (payee_net, payee_peer, payee_addrs) = host(payee.m(), HostConfig::default()).await;
    let (outsider_net, outsider_peer, _) = host(outsider.m(), HostConfig::default()).await;
    let pay = payer_to(&payer, &payer_net, &payee, payee_peer, &payee_addrs);

    // Two lanes paid, redeemed on chain, paid again: worth reconciling.
    let flows: Vec<Vec<u8>> = (0..2).map(|i| format!("flow-{i}").into_bytes()).collect();
    for flow in &flows {
        let paid = pay.pay(&channel, atto(100), Some(flow.clone())).await.unwrap();
        let cid = payee.m().voucher_submit(&channel, &paid.voucher, &[]).await.unwrap();
        landed_ok(devnet, &cid).await;
        pay.pay(&channel, atto(100), Some(flow.clone())).await.unwrap();
    }
    let draft = payee.m().reconcile_draft(&channel, &atto(100)).await.unwrap();
    assert_eq!(draft.vouchers.len(), 2);
    let payees_record =
        reconcile_as_payee::payee_record(payee.m(), &payee_net, payee.addr).await.unwrap();
    let request = ReconcileRequest {
        vouchers: draft.vouchers.clone(),
        req_val: draft.req_val.clone(),
        payee_record: payees_record.clone(),
    };
    let hash = request.request_hash().unwrap();

    // The outsider replays the payee's record (it names the payee's PeerId, not the
    // outsider's), then sends its own record (its own key, its own PeerId), then a record
    // naming its PeerId but signed by a key that is not the payee's.
    let own =
        reconcile_as_payee::payee_record(outsider.m(), &outsider_net, outsider.addr).await.unwrap();
    let (key, _) = stranger();
    let forged = SignedPeerRecord::new(&key, &outsider_peer, &[], 1).unwrap();
    for record in [payees_record, own, forged] {
        let response = ask(
            &outsider_net,
            payer_peer,
            &payer_addrs,
            &record,
            draft.vouchers.clone(),
            draft.req_val.clone(),
        )
        .await;
        assert_eq!(status(&response), Some(ReconcileStatus::NotPayee), "{response:?}");
    }
    // Nothing was signed or recorded: no lane closed, no answer kept.
    let after = payer.m().status(&channel).await.unwrap();
    assert!(after.lanes.iter().all(|l| !l.closed), "{after:?}");
    assert!(payer.m().store().reconcile(&hash).unwrap().is_none());

    // The payee itself is answered.
    let done =
        reconcile_as_payee::ask_payer(payee.m(), &payee_net, &channel, &atto(100)).await.unwrap();
    assert_eq!(done.status(), Some(ReconcileStatus::Success), "{:?}", done.response);
    assert!(payer.m().store().reconcile(&hash).unwrap().is_some());
}
