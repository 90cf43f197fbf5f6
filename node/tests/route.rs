//! Routed payments over real libp2p on the in-process devnet: a payer pays a payee it has
//! no channel with through a hub, and every way a route can go wrong leaves no party that
//! comes back in time with less than it is owed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use paych_core::chain::Chain;
use paych_core::crypto::blake2b_256;
use paych_core::invoice::unix_now;
use paych_core::store::RouteState;
use paych_core::types::ChainEpoch;
use paych_core::types::TokenAmount;
use paych_core::watch::{WatchConfig, Watchtower};
use paych_node::inbound::route::RouteHandler;
use paych_node::route::{HubConfig, PayInvoiceError};
use paych_protocol::{RouteReplacement, RouteRequest, RouteResponse, RouteStatus};
use paych_testkit::deadline::eventually;
use paych_testkit::devnet::Net;
use paych_testkit::routing::{test_params, RouteParty, Triangle};

fn atto(n: u64) -> TokenAmount {
    TokenAmount::from_atto(n)
}

/// A hub charging 10 attoFIL plus 1% of each payment.
fn hub_config() -> HubConfig {
    HubConfig { fee_base: atto(10), fee_ppm: 10_000, ..HubConfig::default() }
}

async fn triangle(net: &Net) -> Triangle {
    net.triangle(hub_config(), atto(1_000_000)).await
}

/// The chain's head, as `party` reads it.
async fn head_of(party: &RouteParty) -> ChainEpoch {
    party.node.net.head().await.unwrap()
}

/// What the payee can redeem on the hub's channel, by the redemption model.
async fn payee_holds(t: &Triangle) -> TokenAmount {
    match t.payee.node.m().voucher_best_spendable(&t.hub_channel).await {
        Ok(best) => best.iter().map(|v| v.amount.clone()).sum(),
        // A payee never offered a voucher on the channel does not track it.
        Err(_) => TokenAmount::default(),
    }
}

#[tokio::test]
async fn a_payer_pays_a_payee_through_a_hub_gets_the_secret_as_receipt_and_both_vouchers_are_replaced(
) {
    let net = Net::manual();
    let t = triangle(&net).await;
    let invoice = t.invoice(atto(1000)).await;
    let receipt = t.payer.routes.pay_invoice(&invoice.to_text().unwrap(), None).await.unwrap();
    assert_eq!(blake2b_256(&receipt.secret), invoice.payment_hash);
    assert_eq!(receipt.amount, atto(1000));
    assert_eq!(receipt.fee, atto(20));
    assert_eq!((receipt.hub, receipt.channel), (t.hub.node.addr, t.payer_channel));
    assert_eq!(t.payer.route(&invoice).unwrap().secret.unwrap(), receipt.secret.to_vec());
    // The replacements follow the receipt.
    for party in [&t.payer, &t.hub, &t.payee] {
        eventually("the route replaced", || async {
            party.route(&invoice).unwrap().state == RouteState::Replaced
        })
        .await;
    }
    assert_eq!(payee_holds(&t).await, atto(1000));
    let hub_holds: TokenAmount = t
        .hub
        .node
        .m()
        .voucher_best_spendable(&t.payer_channel)
        .await
        .unwrap()
        .iter()
        .map(|v| v.amount.clone())
        .sum();
    assert_eq!(hub_holds, atto(1020));
    // Nothing is pending any more: the lanes went back to their pools and the next payment
    // continues them.
    assert!(t.payer.node.m().pending_conditionals(&t.payer_channel).await.unwrap().is_empty());
    assert!(t.hub.node.m().pending_conditionals(&t.hub_channel).await.unwrap().is_empty());
    eventually("the payer's lane back in its pool", || async {
        t.payer.node.m().pending_conditionals(&t.payer_channel).await.unwrap().is_empty()
    })
    .await;
    let second = t.invoice(atto(500)).await;
    let again = t.payer.routes.pay_invoice(&second.to_text().unwrap(), None).await.unwrap();
    assert_eq!(again.lane, receipt.lane);
    let first_hub_lane = t.hub.route(&invoice).unwrap().outbound.unwrap().lane;
    let second_hub_lane = t.hub.route(&second).unwrap().outbound.unwrap().lane;
    assert_eq!(first_hub_lane, second_hub_lane);
    eventually("the payee holding both payments", || async { payee_holds(&t).await == atto(1500) })
        .await;
}

#[tokio::test]
async fn one_payment_hash_is_offered_once_whatever_the_payer_is_asked() {
    let net = Net::manual();
    let t = triangle(&net).await;
    let text = t.invoice(atto(1000)).await.to_text().unwrap();
    t.payer.routes.pay_invoice(&text, None).await.unwrap();
    let again = t.payer.routes.pay_invoice(&text, None).await.unwrap_err();
    assert!(matches!(again, PayInvoiceError::AlreadyOffered), "{again}");
    eventually("the payee holding the payment once", || async {
        payee_holds(&t).await == atto(1000)
    })
    .await;
    // One conditional voucher was ever signed on this hash.
    let vouchers = t.payer.node.m().voucher_list(&t.payer_channel).unwrap();
    let conditional = vouchers.iter().filter(|v| !v.secret_hash.is_empty()).count();
    assert_eq!(conditional, 1);
}

#[tokio::test]
async fn a_fee_above_the_payers_bound_sends_nothing() {
    let net = Net::manual();
    let t = triangle(&net).await;
    let invoice = t.invoice(atto(1000)).await;
    let refused =
        t.payer.routes.pay_invoice(&invoice.to_text().unwrap(), Some(atto(19))).await.unwrap_err();
    assert!(matches!(refused, PayInvoiceError::FeeTooHigh { .. }), "{refused}");
    assert!(t.payer.route(&invoice).is_none());
    assert!(t.hub.route(&invoice).is_none());
}

/// A payee that takes the hub's voucher and never reveals the secret.
struct Silent;

#[async_trait::async_trait]
impl RouteHandler for Silent {
    async fn handle(&self, _peer: PeerId, _request: RouteRequest) -> RouteResponse {
        RouteResponse::refused(RouteStatus::Refused, "no")
    }
}

#[tokio::test]
async fn when_the_payee_never_reveals_every_lock_expires_nobody_loses_and_the_lanes_come_back() {
    let net = Net::manual();
    let t = triangle(&net).await;
    t.payee.slot.set(Arc::new(Silent));
    let invoice = t.invoice(atto(1000)).await;
    let refused = t.payer.routes.pay_invoice(&invoice.to_text().unwrap(), None).await.unwrap_err();
    assert!(
        matches!(refused, PayInvoiceError::Refused { status: RouteStatus::Refused, .. }),
        "{refused}"
    );
    // Nothing is final yet: both conditional vouchers stay valid until their locks.
    assert_eq!(t.payer.routes.sweep().await + t.hub.routes.sweep().await, 0);
    let payer_leg = t.payer.route(&invoice).unwrap().outbound.unwrap();
    let hub_leg = t.hub.route(&invoice).unwrap().outbound.unwrap();
    assert!(hub_leg.lock < payer_leg.lock);
    // The hub's lock passes by the confirmation depth first: its lane comes back.
    let head = head_of(&t.hub).await;
    net.mine((hub_leg.lock + test_params().conf_epochs() - head).unsigned_abs());
    assert_eq!(t.hub.routes.sweep().await, 1);
    assert_eq!(t.hub.route(&invoice).unwrap().state, RouteState::Expired);
    assert!(t.hub.node.m().pending_conditionals(&t.hub_channel).await.unwrap().is_empty());
    assert_eq!(t.payer.routes.sweep().await, 0);
    let head = head_of(&t.payer).await;
    net.mine((payer_leg.lock + test_params().conf_epochs() - head).unsigned_abs());
    assert_eq!(t.payer.routes.sweep().await, 1);
    assert_eq!(t.payer.route(&invoice).unwrap().state, RouteState::Expired);
    assert!(t.payer.node.m().pending_conditionals(&t.payer_channel).await.unwrap().is_empty());
    // Nobody paid anything: the payer's funds are all available again.
    let funds = t.payer.node.m().available_funds(&t.payer_channel).await.unwrap();
    assert_eq!(funds.non_reserved, atto(1_000_000));
    assert_eq!(payee_holds(&t).await, atto(0));
}

/// A payee that answers with a pre-image that is not the invoice's.
struct WrongSecret(Vec<u8>);

#[async_trait::async_trait]
impl RouteHandler for WrongSecret {
    async fn handle(&self, _peer: PeerId, _request: RouteRequest) -> RouteResponse {
        RouteResponse::fulfilled(self.0.clone())
    }
}

#[tokio::test]
async fn a_wrong_or_300_byte_pre_image_from_the_payee_is_refused_and_never_reaches_the_payer() {
    for secret in [vec![7; 300], vec![7; 32]] {
        let net = Net::manual();
        let t = triangle(&net).await;
        t.payee.slot.set(Arc::new(WrongSecret(secret)));
        let invoice = t.invoice(atto(1000)).await;
        let refused =
            t.payer.routes.pay_invoice(&invoice.to_text().unwrap(), None).await.unwrap_err();
        assert!(
            matches!(refused, PayInvoiceError::Refused { status: RouteStatus::Refused, .. }),
            "{refused}"
        );
        assert_eq!(t.hub.route(&invoice).unwrap().state, RouteState::Forwarded);
        assert!(t.hub.node.m().known_secret(&invoice.payment_hash).unwrap().is_none());
        assert!(t.payer.node.m().known_secret(&invoice.payment_hash).unwrap().is_none());
    }
}

#[tokio::test]
async fn the_hub_refuses_an_expired_invoice() {
    let net = Net::manual();
    let t = triangle(&net).await;
    let invoice = t.invoice_with(atto(1000), unix_now() + 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    // The payer checks first; a hostile payer offering it anyway is refused by the hub.
    let refused = t.payer.routes.pay_invoice(&invoice.to_text().unwrap(), None).await.unwrap_err();
    assert!(matches!(refused, PayInvoiceError::Invoice(_)), "{refused}");
    let head = head_of(&t.payer).await;
    let lock = head + 30;
    let offered = t
        .payer
        .node
        .m()
        .conditional_offer(&t.payer_channel, atto(1020), &invoice.payment_hash, lock)
        .await
        .unwrap();
    let request =
        RouteRequest::Offer { invoice: invoice.to_cbor().unwrap(), voucher: offered.voucher };
    let answer = t.payer.client.ask(t.hub.peer, t.hub.addrs.clone(), request).await.unwrap();
    assert_eq!(answer.status, RouteStatus::InvoiceExpired);
    assert!(t.hub.route(&invoice).is_none());
}

#[tokio::test]
async fn the_hub_lands_the_payers_voucher_with_the_secret_when_the_replacement_never_comes() {
    let net = Net::manual();
    let t = triangle(&net).await;
    let invoice = t.invoice(atto(1000)).await;
    // A payer that takes the secret and never replaces: it offers by hand.
    let head = head_of(&t.payer).await;
    let params = test_params();
    let lock =
        paych_core::route::offer_lock(head, invoice.payee_margin, &params, params.submit_margin());
    let offered = t
        .payer
        .node
        .m()
        .conditional_offer(&t.payer_channel, atto(1020), &invoice.payment_hash, lock)
        .await
        .unwrap();
    let request =
        RouteRequest::Offer { invoice: invoice.to_cbor().unwrap(), voucher: offered.voucher };
    let answer = t.payer.client.ask(t.hub.peer, t.hub.addrs.clone(), request).await.unwrap();
    assert_eq!(answer.status, RouteStatus::Ok);
    assert_eq!(blake2b_256(&answer.secret), invoice.payment_hash);
    let route = t.hub.route(&invoice).unwrap();
    assert_eq!(route.state, RouteState::Fulfilled);
    assert_eq!(t.hub.routes.sweep().await, 0);
    // The payer's lane holds the amount and the fee on chain, before its lock.
    the_hub_lands_the_payers_voucher_at_its_deadline(&net, &t, &invoice).await;
    assert!(head_of(&t.hub).await <= lock);
}

/// The chain mined up to the hub's deadline for landing the payer's voucher of `invoice`
/// (less the submit margin): the sweep lands it with the secret, the route is Redeemed, and
/// once mined the payer's channel pays the amount and the fee.
async fn the_hub_lands_the_payers_voucher_at_its_deadline(
    net: &Net,
    t: &Triangle,
    invoice: &paych_core::invoice::Invoice,
) {
    let route = t.hub.route(invoice).unwrap();
    let submit_by = route.hub_deadline.unwrap() - test_params().submit_margin();
    let head = head_of(&t.hub).await;
    net.mine((submit_by - head).unsigned_abs());
    assert_eq!(t.hub.routes.sweep().await, 1);
    assert_eq!(t.hub.route(invoice).unwrap().state, RouteState::Redeemed);
    net.mine(1);
    let on_chain = t.hub.node.net.channel(&t.payer_channel).await.unwrap();
    assert_eq!(on_chain.state.to_send, atto(1020));
}

#[tokio::test]
async fn a_replacement_below_the_payers_conditional_voucher_is_refused_and_the_hub_still_lands_it()
{
    let net = Net::manual();
    let t = triangle(&net).await;
    let invoice = t.invoice(atto(1000)).await;
    let vp = fulfilled_by_hand(&t, &invoice).await;
    // A "replacement" on the lane below the conditional voucher, which the lane's top covers:
    // it resolves nothing, and the hub pays the payee nothing more for it.
    let below =
        paych_core::types::SignedVoucher::new(t.payer_channel, vp.lane, vp.nonce - 1, atto(1020));
    let request = RouteRequest::Replace {
        payment_hash: invoice.payment_hash.to_vec(),
        voucher: t.payer.node.sign(below),
    };
    let answer = t.payer.client.ask(t.hub.peer, t.hub.addrs.clone(), request).await.unwrap();
    assert_eq!(answer.status, RouteStatus::BadReplacement, "{}", answer.message);
    assert_eq!(t.hub.route(&invoice).unwrap().state, RouteState::Fulfilled);
    assert_eq!(t.hub.node.m().pending_conditionals(&t.payer_channel).await.unwrap().len(), 1);
    // So the hub lands the payer's voucher with the secret by its deadline.
    the_hub_lands_the_payers_voucher_at_its_deadline(&net, &t, &invoice).await;
}

/// An offer by hand for `invoice`, fulfilled: the payer's conditional voucher.
async fn fulfilled_by_hand(
    t: &Triangle,
    invoice: &paych_core::invoice::Invoice,
) -> paych_core::types::SignedVoucher {
    let params = test_params();
    let head = head_of(&t.payer).await;
    let lock =
        paych_core::route::offer_lock(head, invoice.payee_margin, &params, params.submit_margin());
    let (vp, answer) = offer_voucher_by_hand(t, invoice, atto(1020), lock).await;
    assert_eq!(answer.status, RouteStatus::Ok, "{}", answer.message);
    vp
}

#[tokio::test]
async fn several_replacements_in_one_request_are_each_taken_or_refused_as_if_sent_alone() {
    let net = Net::manual();
    let t = triangle(&net).await;
    let first = t.invoice(atto(1000)).await;
    let second = t.invoice(atto(1000)).await;
    let (vp1, vp2) = (fulfilled_by_hand(&t, &first).await, fulfilled_by_hand(&t, &second).await);
    let plain = |vp: &paych_core::types::SignedVoucher, nonce: u64| {
        let v = paych_core::types::SignedVoucher::new(t.payer_channel, vp.lane, nonce, atto(1020));
        t.payer.node.sign(v)
    };
    let batch = |replacements: Vec<(&paych_core::invoice::Invoice, _)>| RouteRequest::ReplaceMany {
        replacements: replacements
            .into_iter()
            .map(|(invoice, voucher)| RouteReplacement {
                payment_hash: invoice.payment_hash.to_vec(),
                voucher,
            })
            .collect(),
    };
    // The first route's exact replacement, and one below the second's conditional voucher.
    let request = batch(vec![(&first, plain(&vp1, vp1.nonce + 1)), (&second, plain(&vp2, 0))]);
    let answer = t.payer.client.ask(t.hub.peer, t.hub.addrs.clone(), request).await.unwrap();
    assert_eq!(answer.status, RouteStatus::BadReplacement, "{}", answer.message);
    assert!(answer.message.starts_with("replacement 2 of 2"), "{}", answer.message);
    // The first was taken all the same (and its route goes on to the payee); the second is
    // still pending at the hub.
    eventually("the first route replaced", || async {
        t.hub.route(&first).unwrap().state == RouteState::Replaced
    })
    .await;
    assert_eq!(t.hub.route(&second).unwrap().state, RouteState::Fulfilled);
    let pending = t.hub.node.m().pending_conditionals(&t.payer_channel).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].hash, second.payment_hash.to_vec());
    // Sent again with the second's exact replacement, both are acknowledged.
    let request =
        batch(vec![(&first, plain(&vp1, vp1.nonce + 1)), (&second, plain(&vp2, vp2.nonce + 1))]);
    let answer = t.payer.client.ask(t.hub.peer, t.hub.addrs.clone(), request).await.unwrap();
    assert_eq!(answer.status, RouteStatus::Ok, "{}", answer.message);
    assert!(t.hub.node.m().pending_conditionals(&t.payer_channel).await.unwrap().is_empty());
}

/// A hostile payer's offer, made by hand: a conditional voucher adding `delta` on the
/// payer's channel, locked until `lock`, sent straight to the hub; the hub's answer.
async fn offer_by_hand(
    t: &Triangle,
    invoice: &paych_core::invoice::Invoice,
    delta: TokenAmount,
    lock: ChainEpoch,
) -> RouteResponse {
    offer_voucher_by_hand(t, invoice, delta, lock).await.1
}

/// [`offer_by_hand`], with the voucher offered.
async fn offer_voucher_by_hand(
    t: &Triangle,
    invoice: &paych_core::invoice::Invoice,
    delta: TokenAmount,
    lock: ChainEpoch,
) -> (paych_core::types::SignedVoucher, RouteResponse) {
    let offered = t
        .payer
        .node
        .m()
        .conditional_offer(&t.payer_channel, delta, &invoice.payment_hash, lock)
        .await
        .unwrap();
    let voucher = offered.voucher;
    let request =
        RouteRequest::Offer { invoice: invoice.to_cbor().unwrap(), voucher: voucher.clone() };
    let answer = t.payer.client.ask(t.hub.peer, t.hub.addrs.clone(), request).await.unwrap();
    (voucher, answer)
}

#[tokio::test]
async fn a_lock_too_close_for_the_hubs_delta_is_refused_and_nothing_is_forwarded() {
    let net = Net::manual();
    let t = triangle(&net).await;
    let invoice = t.invoice(atto(1000)).await;
    // The hub needs D_R + Δ beyond the head: a lock just short of it leaves the payee too
    // little time.
    let lock = head_of(&t.payer).await + invoice.payee_margin + test_params().hub_delta() - 1;
    let answer = offer_by_hand(&t, &invoice, atto(1020), lock).await;
    assert_eq!(answer.status, RouteStatus::DeadlineTooClose, "{}", answer.message);
    assert!(t.hub.route(&invoice).is_none());
    assert!(t.hub.node.m().pending_conditionals(&t.hub_channel).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_lock_far_beyond_what_the_route_needs_is_refused() {
    let net = Net::manual();
    let t = triangle(&net).await;
    let invoice = t.invoice(atto(1000)).await;
    let lock = head_of(&t.payer).await + 1000;
    let answer = offer_by_hand(&t, &invoice, atto(1020), lock).await;
    assert_eq!(answer.status, RouteStatus::LockTooFar, "{}", answer.message);
    assert!(t.hub.route(&invoice).is_none());
}

#[tokio::test]
async fn a_voucher_short_of_the_hubs_fee_is_refused_for_its_shape() {
    let net = Net::manual();
    let t = triangle(&net).await;
    let invoice = t.invoice(atto(1000)).await;
    let params = test_params();
    let lock = paych_core::route::offer_lock(
        head_of(&t.payer).await,
        invoice.payee_margin,
        &params,
        params.submit_margin(),
    );
    let answer = offer_by_hand(&t, &invoice, atto(1000), lock).await;
    assert_eq!(answer.status, RouteStatus::BadShape, "{}", answer.message);
    assert!(t.hub.route(&invoice).is_none());
}

#[tokio::test]
async fn a_node_that_is_no_hub_answers_not_a_hub() {
    let net = Net::manual();
    let t = triangle(&net).await;
    let invoice = t.invoice(atto(1000)).await;
    // The payee is no hub: an offer for someone else's invoice is not its business.
    let other = paych_core::invoice::Invoice { payee: t.hub.node.addr, ..invoice };
    let request = RouteRequest::Offer {
        invoice: other.to_cbor().unwrap(),
        voucher: paych_testkit::keys::signed_voucher(
            &paych_testkit::keys::key(1),
            t.payer_channel,
            0,
            1,
            5,
        ),
    };
    let answer = t.payer.client.ask(t.payee.peer, t.payee.addrs.clone(), request).await.unwrap();
    assert_eq!(answer.status, RouteStatus::NotAHub);
}

#[tokio::test]
async fn the_hub_caps_the_routes_one_payer_holds_pending() {
    let net = Net::manual();
    let hub = HubConfig { max_pending_count_per_payer: 1, ..hub_config() };
    let t = net.triangle(hub, atto(1_000_000)).await;
    t.payee.slot.set(Arc::new(Silent));
    let first = t.invoice(atto(1000)).await;
    let refused = t.payer.routes.pay_invoice(&first.to_text().unwrap(), None).await.unwrap_err();
    assert!(matches!(refused, PayInvoiceError::Refused { status: RouteStatus::Refused, .. }));
    // The first route stays pending until its lock: the payer's next one is over its cap.
    let second = t.invoice(atto(1000)).await;
    let capped = t.payer.routes.pay_invoice(&second.to_text().unwrap(), None).await.unwrap_err();
    assert!(
        matches!(capped, PayInvoiceError::Refused { status: RouteStatus::CapExceeded, .. }),
        "{capped}"
    );
    assert!(t.hub.route(&second).is_none());
}

#[tokio::test]
async fn the_hub_answers_the_same_offer_made_again_with_the_same_secret() {
    let net = Net::manual();
    let t = triangle(&net).await;
    let invoice = t.invoice(atto(1000)).await;
    let params = test_params();
    let lock = paych_core::route::offer_lock(
        head_of(&t.payer).await,
        invoice.payee_margin,
        &params,
        params.submit_margin(),
    );
    let offered = t
        .payer
        .node
        .m()
        .conditional_offer(&t.payer_channel, atto(1020), &invoice.payment_hash, lock)
        .await
        .unwrap();
    let request = RouteRequest::Offer {
        invoice: invoice.to_cbor().unwrap(),
        voucher: offered.voucher.clone(),
    };
    let first = t.payer.client.ask(t.hub.peer, t.hub.addrs.clone(), request.clone()).await.unwrap();
    let again = t.payer.client.ask(t.hub.peer, t.hub.addrs.clone(), request).await.unwrap();
    assert_eq!((first.status, again.status), (RouteStatus::Ok, RouteStatus::Ok));
    assert_eq!(first.secret, again.secret);
    // Taken once: the payer's channel holds one conditional voucher for it.
    assert_eq!(t.hub.node.m().pending_conditionals(&t.payer_channel).await.unwrap().len(), 1);
}

/// A payee that takes the hub's conditional voucher (durably, as an honest payee does) but,
/// instead of answering with the secret, redeems the voucher on chain with it.
struct RedeemsOnChain {
    payee: paych_node::route::Routes,
    channel: paych_core::types::Address,
}

#[async_trait::async_trait]
impl RouteHandler for RedeemsOnChain {
    async fn handle(&self, peer: PeerId, request: RouteRequest) -> RouteResponse {
        let lane = request.voucher().map(|v| v.lane);
        let answer = self.payee.handle(peer, request).await;
        if let (true, Some(lane)) = (answer.status.is_ok(), lane) {
            self.payee.manager().conditional_redeem(&self.channel, lane).await.unwrap();
        }
        RouteResponse::refused(RouteStatus::Refused, "redeemed on chain instead")
    }
}

#[tokio::test]
async fn when_the_payee_redeems_on_chain_instead_of_answering_the_hubs_watchtower_lands_the_payers_voucher_in_time(
) {
    let net = Net::manual();
    let t = triangle(&net).await;
    let redeemer = RedeemsOnChain { payee: t.payee.routes.clone(), channel: t.hub_channel };
    t.payee.slot.set(Arc::new(redeemer));
    let invoice = t.invoice(atto(1000)).await;
    let refused = t.payer.routes.pay_invoice(&invoice.to_text().unwrap(), None).await.unwrap_err();
    assert!(matches!(refused, PayInvoiceError::Refused { .. }), "{refused}");
    assert_eq!(t.hub.route(&invoice).unwrap().state, RouteState::Forwarded);
    // The payee's message lands: the secret is on chain.
    net.mine(1);
    let hub_channel_on_chain = t.hub.node.net.channel(&t.hub_channel).await.unwrap();
    assert_eq!(hub_channel_on_chain.state.to_send, atto(1000));
    // The hub's watchtower reads it from that message and lands the payer's voucher at once.
    let chain: Arc<dyn Chain> = Arc::new(t.hub.node.net.clone());
    let tower = Watchtower::new(chain, t.hub.node.m().store().clone(), config_from_zero()).unwrap();
    let pass = tower.pass(&t.hub.routes).await.unwrap();
    assert_eq!(pass.found, 1);
    assert_eq!(t.hub.route(&invoice).unwrap().state, RouteState::Redeemed);
    net.mine(1);
    let payer_channel_on_chain = t.hub.node.net.channel(&t.payer_channel).await.unwrap();
    assert_eq!(payer_channel_on_chain.state.to_send, atto(1020));
    let lock = t.payer.route(&invoice).unwrap().outbound.unwrap().lock;
    assert!(head_of(&t.hub).await <= lock);
    // The payer's own watchtower finds the secret in the hub's message: its receipt.
    let chain: Arc<dyn Chain> = Arc::new(t.payer.node.net.clone());
    let tower =
        Watchtower::new(chain, t.payer.node.m().store().clone(), config_from_zero()).unwrap();
    tower.pass(&t.payer.routes).await.unwrap();
    let known = t.payer.node.m().known_secret(&invoice.payment_hash).unwrap().unwrap();
    assert_eq!(blake2b_256(&known), invoice.payment_hash);
}

/// A watchtower configuration scanning from genesis.
fn config_from_zero() -> WatchConfig {
    WatchConfig { start: Some(0), ..WatchConfig::new(test_params().conf, Duration::ZERO) }
}

/// An honest payee whose hub goes offline the moment it has forwarded: the payee takes the
/// hub's voucher and reveals, but the hub's network is gone before the answer arrives.
struct HubGoesOffline {
    payee: paych_node::route::Routes,
    hub: paych_node::network::NetworkClient,
}

#[async_trait::async_trait]
impl RouteHandler for HubGoesOffline {
    async fn handle(&self, peer: PeerId, request: RouteRequest) -> RouteResponse {
        let answer = self.payee.handle(peer, request).await;
        self.hub.shutdown().await;
        answer
    }
}

#[tokio::test]
async fn when_the_hub_goes_offline_after_forwarding_the_payee_lands_its_voucher_and_the_hub_back_online_lands_the_payers(
) {
    let net = Net::manual();
    let t = triangle(&net).await;
    let offline = HubGoesOffline { payee: t.payee.routes.clone(), hub: t.hub.client.clone() };
    t.payee.slot.set(Arc::new(offline));
    let invoice = t.invoice(atto(1000)).await;
    let failed = t.payer.routes.pay_invoice(&invoice.to_text().unwrap(), None).await.unwrap_err();
    assert!(
        matches!(failed, PayInvoiceError::Network(_) | PayInvoiceError::Refused { .. }),
        "{failed}"
    );
    assert_eq!(t.hub.route(&invoice).unwrap().state, RouteState::Forwarded);
    // The payee's settler lands its conditional voucher with the secret before its lock.
    let t2 = t.hub.route(&invoice).unwrap().outbound.unwrap().lock;
    loop {
        let on_chain = t.payee.node.net.channel(&t.hub_channel).await.unwrap();
        if on_chain.state.to_send == atto(1000) {
            break;
        }
        assert!(head_of(&t.payee).await < t2, "the payee's voucher never landed before its lock");
        net.mine(1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Back online, the hub's watchtower finds the secret and lands the payer's voucher.
    let chain: Arc<dyn Chain> = Arc::new(t.hub.node.net.clone());
    let tower = Watchtower::new(chain, t.hub.node.m().store().clone(), config_from_zero()).unwrap();
    assert_eq!(tower.pass(&t.hub.routes).await.unwrap().found, 1);
    assert_eq!(t.hub.route(&invoice).unwrap().state, RouteState::Redeemed);
    net.mine(1);
    let on_chain = t.hub.node.net.channel(&t.payer_channel).await.unwrap();
    assert_eq!(on_chain.state.to_send, atto(1020));
    let t1 = t.payer.route(&invoice).unwrap().outbound.unwrap().lock;
    assert!(head_of(&t.hub).await <= t1);
    // Nobody lost: the payee got the amount, the hub the amount and its fee, and the payer
    // finds its receipt on chain.
    let chain: Arc<dyn Chain> = Arc::new(t.payer.node.net.clone());
    let tower =
        Watchtower::new(chain, t.payer.node.m().store().clone(), config_from_zero()).unwrap();
    tower.pass(&t.payer.routes).await.unwrap();
    assert!(t.payer.node.m().known_secret(&invoice.payment_hash).unwrap().is_some());
}

/// A payee that takes the hub's voucher and answers "refuse" (its secret kept to itself).
struct TakesAndRefuses {
    payee: paych_node::route::Routes,
}

#[async_trait::async_trait]
impl RouteHandler for TakesAndRefuses {
    async fn handle(&self, peer: PeerId, request: RouteRequest) -> RouteResponse {
        let _held = self.payee.handle(peer, request).await;
        RouteResponse::refused(RouteStatus::Refused, "no")
    }
}

#[tokio::test]
async fn a_payee_that_refuses_and_then_redeems_anyway_binds_the_hub_to_nothing_it_cannot_recover() {
    let net = Net::manual();
    let t = triangle(&net).await;
    t.payee.slot.set(Arc::new(TakesAndRefuses { payee: t.payee.routes.clone() }));
    let invoice = t.invoice(atto(1000)).await;
    let refused = t.payer.routes.pay_invoice(&invoice.to_text().unwrap(), None).await.unwrap_err();
    assert!(matches!(refused, PayInvoiceError::Refused { .. }), "{refused}");
    // The refusal binds nobody: the hub keeps the route open while the payee's voucher may
    // still land, and the payee's redemption (its settler's, before the lock) lands it.
    let t2 = t.hub.route(&invoice).unwrap().outbound.unwrap().lock;
    loop {
        assert_eq!(t.hub.routes.sweep().await, 0);
        assert_eq!(t.hub.route(&invoice).unwrap().state, RouteState::Forwarded);
        if t.payee.node.net.channel(&t.hub_channel).await.unwrap().state.to_send == atto(1000) {
            break;
        }
        assert!(head_of(&t.payee).await < t2, "the payee's voucher never landed before its lock");
        net.mine(1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let chain: Arc<dyn Chain> = Arc::new(t.hub.node.net.clone());
    let tower = Watchtower::new(chain, t.hub.node.m().store().clone(), config_from_zero()).unwrap();
    assert_eq!(tower.pass(&t.hub.routes).await.unwrap().found, 1);
    net.mine(1);
    let on_chain = t.hub.node.net.channel(&t.payer_channel).await.unwrap();
    assert_eq!(on_chain.state.to_send, atto(1020));
}

/// A conditional voucher signed by hand by the payer's key on `lane` of its channel to the
/// hub — as a payer whose own node would refuse (its channel settling) could sign it — sent
/// to the hub with the invoice; the hub's answer.
async fn signed_by_hand(
    t: &Triangle,
    invoice: &paych_core::invoice::Invoice,
    lane: u64,
    lock: ChainEpoch,
) -> RouteResponse {
    let mut voucher = paych_core::types::SignedVoucher::new(t.payer_channel, lane, 1, atto(1020));
    voucher.secret_hash = invoice.payment_hash.to_vec();
    voucher.time_lock_max = lock;
    let voucher = t.payer.node.sign(voucher);
    let request = RouteRequest::Offer { invoice: invoice.to_cbor().unwrap(), voucher };
    t.payer.client.ask(t.hub.peer, t.hub.addrs.clone(), request).await.unwrap()
}

#[tokio::test]
async fn on_a_channel_the_payer_settles_the_hubs_deadline_and_the_payees_lock_shrink_to_settling_at(
) {
    let net = Net::manual();
    let t = triangle(&net).await;
    t.payer.node.m().settle(&t.payer_channel).await.unwrap();
    let settling_at = loop {
        net.mine(1);
        let on_chain = t.hub.node.net.channel(&t.payer_channel).await.unwrap();
        if on_chain.state.settling_at != 0 {
            break on_chain.state.settling_at;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Close enough to settle that the channel's last epoch comes before the payer's lock.
    let head = head_of(&t.hub).await;
    net.mine((settling_at - 63 - head).unsigned_abs());
    let params = test_params();
    let invoice = t.invoice(atto(1000)).await;
    let head = head_of(&t.hub).await;
    let t1 =
        paych_core::route::offer_lock(head, invoice.payee_margin, &params, params.submit_margin());
    assert!(settling_at - 1 < t1);
    let answer = signed_by_hand(&t, &invoice, 100, t1).await;
    assert_eq!(answer.status, RouteStatus::Ok, "{}", answer.message);
    let route = t.hub.route(&invoice).unwrap();
    assert_eq!(route.hub_deadline, Some(settling_at - 1));
    assert_eq!(route.outbound.unwrap().lock, settling_at - 1 - params.hub_delta());
    // A few epochs later the payee could not be given its margin: refused before anything.
    net.mine(3);
    let late = t.invoice(atto(1000)).await;
    let head = head_of(&t.hub).await;
    let t1 =
        paych_core::route::offer_lock(head, late.payee_margin, &params, params.submit_margin());
    let answer = signed_by_hand(&t, &late, 101, t1).await;
    assert_eq!(answer.status, RouteStatus::DeadlineTooClose, "{}", answer.message);
    assert!(t.hub.route(&late).is_none());
}

#[tokio::test]
async fn two_pending_routes_over_committing_the_payers_channel_are_refused_the_second() {
    let net = Net::manual();
    let t = triangle(&net).await;
    t.payee.slot.set(Arc::new(Silent));
    let params = test_params();
    let first = t.invoice(atto(1000)).await;
    let head = head_of(&t.hub).await;
    let t1 =
        paych_core::route::offer_lock(head, first.payee_margin, &params, params.submit_margin());
    assert_eq!(signed_by_hand(&t, &first, 100, t1).await.status, RouteStatus::Refused);
    // The first stays pending (its secret unknown): with the second, the payer's channel
    // would owe more than it holds were both revealed.
    let second = t.invoice(atto(990_000)).await;
    let mut voucher = paych_core::types::SignedVoucher::new(t.payer_channel, 101, 1, atto(999_910));
    voucher.secret_hash = second.payment_hash.to_vec();
    voucher.time_lock_max = t1;
    let request = RouteRequest::Offer {
        invoice: second.to_cbor().unwrap(),
        voucher: t.payer.node.sign(voucher),
    };
    let answer = t.payer.client.ask(t.hub.peer, t.hub.addrs.clone(), request).await.unwrap();
    assert_eq!(answer.status, RouteStatus::OverCommitted, "{}", answer.message);
    assert!(t.hub.route(&second).is_none());
    assert_eq!(t.hub.node.m().pending_conditionals(&t.hub_channel).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_second_voucher_on_a_lane_with_a_pending_conditional_one_is_refused() {
    let net = Net::manual();
    let t = triangle(&net).await;
    t.payee.slot.set(Arc::new(Silent));
    let params = test_params();
    let first = t.invoice(atto(1000)).await;
    let head = head_of(&t.hub).await;
    let t1 =
        paych_core::route::offer_lock(head, first.payee_margin, &params, params.submit_margin());
    assert_eq!(signed_by_hand(&t, &first, 100, t1).await.status, RouteStatus::Refused);
    // Another conditional voucher on that lane, for another invoice.
    let second = t.invoice(atto(1000)).await;
    let mut voucher = paych_core::types::SignedVoucher::new(t.payer_channel, 100, 2, atto(2040));
    voucher.secret_hash = second.payment_hash.to_vec();
    voucher.time_lock_max = t1;
    let request = RouteRequest::Offer {
        invoice: second.to_cbor().unwrap(),
        voucher: t.payer.node.sign(voucher),
    };
    let answer = t.payer.client.ask(t.hub.peer, t.hub.addrs.clone(), request).await.unwrap();
    assert_eq!(answer.status, RouteStatus::LanePending, "{}", answer.message);
    // An ordinary voucher on that lane, over the voucher protocol.
    let plain = t.payer.node.sign(paych_core::types::SignedVoucher::new(
        t.payer_channel,
        100,
        3,
        atto(5000),
    ));
    let response = t
        .payer
        .client
        .ask(t.hub.peer, t.hub.addrs.clone(), paych_protocol::VoucherRequest::new(plain))
        .await
        .unwrap();
    assert!(!response.is_held(), "{response:?}");
    assert!(t.hub.route(&second).is_none());
}

/// A payee that takes the hub's voucher but reveals only after its lock has passed.
struct RevealsLate {
    payee: paych_node::route::Routes,
    net: paych_core::chain::devnet::Devnet,
}

#[async_trait::async_trait]
impl RouteHandler for RevealsLate {
    async fn handle(&self, peer: PeerId, request: RouteRequest) -> RouteResponse {
        let lock = request.voucher().map_or(0, |v| v.time_lock_max);
        let answer = self.payee.handle(peer, request).await;
        let head = self.net.head().await.unwrap();
        self.net.mine((lock + 1 - head).unsigned_abs());
        answer
    }
}

#[tokio::test]
async fn a_reveal_after_the_payees_lock_still_pays_the_payee_through_the_hubs_replacement() {
    let net = Net::manual();
    let t = triangle(&net).await;
    let late = RevealsLate { payee: t.payee.routes.clone(), net: t.payee.node.net.clone() };
    t.payee.slot.set(Arc::new(late));
    let invoice = t.invoice(atto(1000)).await;
    let receipt = t.payer.routes.pay_invoice(&invoice.to_text().unwrap(), None).await.unwrap();
    assert_eq!(blake2b_256(&receipt.secret), invoice.payment_hash);
    // Past the payee's lock its conditional voucher is worth nothing; the hub, paid by the
    // payer's replacement, replaces it with an unconditional one.
    let t2 = t.hub.route(&invoice).unwrap().outbound.unwrap().lock;
    assert!(head_of(&t.hub).await > t2);
    eventually("the payee paid by the hub's replacement", || async {
        payee_holds(&t).await == atto(1000)
    })
    .await;
    eventually("the hub's route replaced", || async {
        t.hub.route(&invoice).unwrap().state == RouteState::Replaced
    })
    .await;
}

#[tokio::test]
async fn a_hub_restarted_mid_route_still_lands_the_payers_voucher_from_its_stored_route() {
    let net = Net::manual();
    let t = triangle(&net).await;
    let invoice = t.invoice(atto(1000)).await;
    let params = test_params();
    let head = head_of(&t.payer).await;
    let lock =
        paych_core::route::offer_lock(head, invoice.payee_margin, &params, params.submit_margin());
    // A payer that takes the secret and never replaces.
    let answer = offer_by_hand(&t, &invoice, atto(1020), lock).await;
    assert_eq!(answer.status, RouteStatus::Ok, "{}", answer.message);
    let deadline = t.hub.route(&invoice).unwrap().hub_deadline.unwrap();
    // The hub goes down: its networking, its routes and its manager.
    let Triangle { hub, payer_channel, payee, .. } = t;
    hub.slot.clear();
    hub.client.shutdown().await;
    let paych_testkit::routing::RouteParty { node, routes, .. } = hub;
    drop(routes);
    let node = node.stop().await.started().await;
    // Back up on the same store, reaching the payee again: the route and its secret are
    // there; the sweep lands the payer's voucher by the hub's deadline less the submit
    // margin, and the payee acknowledges the replacement of its own.
    let peers = vec![(payee.node.addr, payee.target())];
    let routes =
        paych_testkit::routing::restarted_routes_reaching(&node, hub_config(), peers).await;
    assert_eq!(routes.sweep().await, 0);
    let head = node.net.head().await.unwrap();
    net.mine((deadline - params.submit_margin() - head).unsigned_abs());
    assert_eq!(routes.sweep().await, 1);
    let route = node.m().store().route(&invoice.payment_hash).unwrap().unwrap();
    assert_eq!(route.state, RouteState::Redeemed);
    net.mine(1);
    let on_chain = node.net.channel(&payer_channel).await.unwrap();
    assert_eq!(on_chain.state.to_send, atto(1020));
}

#[tokio::test]
async fn a_hub_short_of_funds_towards_the_payee_refuses_no_capacity_and_frees_the_route() {
    let net = Net::manual();
    let hub = HubConfig { max_pending_count_per_payer: 1, ..hub_config() };
    let t = net.triangle_funded(hub, atto(1_000_000), atto(500)).await;
    let invoice = t.invoice(atto(1000)).await;
    let refused = t.payer.routes.pay_invoice(&invoice.to_text().unwrap(), None).await.unwrap_err();
    assert!(
        matches!(refused, PayInvoiceError::Refused { status: RouteStatus::NoCapacity, .. }),
        "{refused}"
    );
    assert_eq!(t.hub.route(&invoice).unwrap().state, RouteState::Expired);
    assert!(t.hub.node.m().pending_conditionals(&t.hub_channel).await.unwrap().is_empty());
    // Nothing stays counted against the payer's cap of one pending route.
    let smaller = t.invoice(atto(400)).await;
    t.payer.routes.pay_invoice(&smaller.to_text().unwrap(), None).await.unwrap();
}

#[tokio::test]
async fn the_hubs_watchtower_watches_a_pending_routes_channel_by_both_its_addresses() {
    use paych_core::watch::Watcher;
    let net = Net::manual();
    let t = triangle(&net).await;
    t.payee.slot.set(Arc::new(Silent));
    let invoice = t.invoice(atto(1000)).await;
    t.payer.routes.pay_invoice(&invoice.to_text().unwrap(), None).await.unwrap_err();
    let id = t.hub.node.net.lookup_id(&t.hub_channel).await.unwrap().unwrap();
    t.hub.routes.sweep().await;
    let watched = t.hub.routes.watched();
    assert_eq!(watched.channel(&t.hub_channel), Some(t.hub_channel));
    // A payee's message may name the channel by its ID address.
    assert_eq!(watched.channel(&id), Some(t.hub_channel));
    assert!(t.hub.routes.wants(&invoice.payment_hash));
}

#[tokio::test]
async fn a_payers_route_recorded_without_its_leg_finds_it_again_or_is_over() {
    let net = Net::manual();
    let t = triangle(&net).await;
    t.payee.slot.set(Arc::new(Silent));
    let params = test_params();
    // As if the node stopped between recording the route and recording its voucher's leg:
    // one route whose voucher was signed, one whose voucher never was.
    let signed = t.invoice(atto(1000)).await;
    let unsigned = t.invoice(atto(1000)).await;
    let head = head_of(&t.payer).await;
    let lock =
        paych_core::route::offer_lock(head, signed.payee_margin, &params, params.submit_margin());
    let offered = t
        .payer
        .node
        .m()
        .conditional_offer(&t.payer_channel, atto(1020), &signed.payment_hash, lock)
        .await
        .unwrap();
    for invoice in [&signed, &unsigned] {
        let record = paych_core::store::RouteRecord {
            payment_hash: invoice.payment_hash.to_vec(),
            role: paych_core::store::RouteRole::Payer,
            state: RouteState::Offered,
            invoice: invoice.to_cbor().unwrap(),
            inbound: None,
            outbound: None,
            fee: atto(20),
            secret: None,
            hub_deadline: None,
            created: head,
        };
        let store = t.payer.node.m().store();
        store.apply(vec![paych_core::store::Write::Route(record)]).unwrap();
        store.durable().await.unwrap();
    }
    let routes = paych_testkit::routing::restarted_payer_routes(&t.payer.node).await;
    assert_eq!(routes.sweep().await, 2);
    let found = t.payer.route(&signed).unwrap();
    assert_eq!(found.state, RouteState::Offered);
    let leg = found.outbound.unwrap();
    assert_eq!((leg.channel, leg.lane, leg.lock), (t.payer_channel, offered.lane, lock));
    assert_eq!(t.payer.route(&unsigned).unwrap().state, RouteState::Expired);
    // From there the signed one expires as any other once its lock has passed.
    let head = head_of(&t.payer).await;
    net.mine((lock + params.conf_epochs() - head).unsigned_abs());
    assert_eq!(routes.sweep().await, 1);
    assert_eq!(t.payer.route(&signed).unwrap().state, RouteState::Expired);
}

#[tokio::test]
async fn a_hubs_route_recorded_without_its_voucher_to_the_payee_finds_it_again_and_expires_it() {
    let net = Net::manual();
    let t = triangle(&net).await;
    let invoice = t.invoice(atto(1000)).await;
    let head = head_of(&t.hub).await;
    let lock = head + 40;
    // As if the hub stopped between signing its voucher to the payee and recording it.
    let signed = t
        .hub
        .node
        .m()
        .conditional_offer(&t.hub_channel, atto(1000), &invoice.payment_hash, lock)
        .await
        .unwrap();
    let record = paych_core::store::RouteRecord {
        payment_hash: invoice.payment_hash.to_vec(),
        role: paych_core::store::RouteRole::Hub,
        state: RouteState::Offered,
        invoice: invoice.to_cbor().unwrap(),
        inbound: None,
        outbound: None,
        fee: atto(20),
        secret: None,
        hub_deadline: Some(lock + test_params().hub_delta()),
        created: head,
    };
    let store = t.hub.node.m().store();
    store.apply(vec![paych_core::store::Write::Route(record)]).unwrap();
    store.durable().await.unwrap();
    let routes = paych_testkit::routing::restarted_routes(&t.hub.node, hub_config()).await;
    assert_eq!(routes.sweep().await, 1);
    let found = t.hub.route(&invoice).unwrap();
    assert_eq!(found.state, RouteState::Forwarded);
    assert_eq!(found.outbound.unwrap().lane, signed.lane);
    let head = head_of(&t.hub).await;
    net.mine((lock + test_params().conf_epochs() - head).unsigned_abs());
    assert_eq!(routes.sweep().await, 1);
    assert_eq!(t.hub.route(&invoice).unwrap().state, RouteState::Expired);
    assert!(t.hub.node.m().pending_conditionals(&t.hub_channel).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_hub_counts_its_routed_payments_fees_capacity_and_pending_amounts() {
    let net = Net::manual();
    let t = triangle(&net).await;
    let invoice = t.invoice(atto(1000)).await;
    t.payer.routes.pay_invoice(&invoice.to_text().unwrap(), None).await.unwrap();
    eventually("the hub's route replaced", || async {
        t.hub.route(&invoice).unwrap().state == RouteState::Replaced
    })
    .await;
    // One pending route, its payee silent.
    t.payee.slot.set(Arc::new(Silent));
    let pending = t.invoice(atto(300)).await;
    t.payer.routes.pay_invoice(&pending.to_text().unwrap(), None).await.unwrap_err();
    t.hub.routes.sweep().await;
    let text = t.hub.metrics.encode();
    for line in [
        "paych_routed_payments_total{role=\"hub\",outcome=\"fulfilled\"} 1\n",
        "paych_routed_payments_total{role=\"hub\",outcome=\"replaced\"} 1\n",
        "paych_hub_fees_attofil_total 20",
        "paych_route_in_flight{leg=\"inbound\"} 1\n",
        "paych_route_in_flight_attofil{leg=\"inbound\"} 313",
        "paych_route_in_flight{leg=\"outbound\"} 1\n",
        "paych_route_in_flight_attofil{leg=\"outbound\"} 300",
        // The channel to the payee: its funds less the 1000 paid and the 300 pending.
        "paych_hub_capacity_attofil 998700",
    ] {
        assert!(text.contains(line), "{line:?} not in {text}");
    }
    let payer = t.payer.metrics.encode();
    assert!(payer.contains("paych_routed_payments_total{role=\"payer\",outcome=\"fulfilled\"} 1\n"));
    assert!(payer.contains("paych_routed_payments_total{role=\"payer\",outcome=\"refused\"} 1\n"));
}

/// A payee that answers offers but, while `down`, no replacement: as one that is down (or
/// out of reach) when the hub's replacement comes. Counts the replacements it missed.
struct MissesReplacements {
    payee: paych_node::route::Routes,
    down: Arc<AtomicBool>,
    missed: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl RouteHandler for MissesReplacements {
    async fn handle(&self, peer: PeerId, request: RouteRequest) -> RouteResponse {
        let replacements = match &request {
            RouteRequest::Replace { .. } => 1,
            RouteRequest::ReplaceMany { replacements } => replacements.len(),
            _ => 0,
        };
        if replacements > 0 && self.down.load(Ordering::SeqCst) {
            self.missed.fetch_add(replacements, Ordering::SeqCst);
            return RouteResponse::refused(RouteStatus::Internal, "down");
        }
        self.payee.handle(peer, request).await
    }
}

/// A triangle whose payee misses the hub's replacements while the flag answered is true.
fn payee_misses_replacements(t: &Triangle) -> (Arc<AtomicBool>, Arc<AtomicUsize>) {
    let down = Arc::new(AtomicBool::new(true));
    let missed = Arc::new(AtomicUsize::new(0));
    let handler = MissesReplacements {
        payee: t.payee.routes.clone(),
        down: down.clone(),
        missed: missed.clone(),
    };
    t.payee.slot.set(Arc::new(handler));
    (down, missed)
}

#[tokio::test]
async fn a_replacement_the_payee_missed_is_sent_again_by_the_hubs_sweep_and_closes_the_payees_route(
) {
    let net = Net::manual();
    let t = triangle(&net).await;
    let (down, missed) = payee_misses_replacements(&t);
    let invoice = t.invoice(atto(1000)).await;
    t.payer.routes.pay_invoice(&invoice.to_text().unwrap(), None).await.unwrap();
    eventually("the hub's replacement missed", || async { missed.load(Ordering::SeqCst) >= 1 })
        .await;
    // Not acknowledged: the hub's route waits for the payee, the payee's is pending.
    assert_ne!(t.hub.route(&invoice).unwrap().state, RouteState::Replaced);
    assert_eq!(t.payee.route(&invoice).unwrap().state, RouteState::Fulfilled);
    // The payee is back: the hub's sweep sends the stored replacement again.
    down.store(false, Ordering::SeqCst);
    assert_eq!(t.hub.routes.sweep().await, 1);
    assert_eq!(t.hub.route(&invoice).unwrap().state, RouteState::Replaced);
    assert_eq!(t.payee.route(&invoice).unwrap().state, RouteState::Replaced);
    assert_eq!(payee_holds(&t).await, atto(1000));
    assert_eq!(t.payee.routes.sweep().await, 0);
}

#[tokio::test]
async fn a_payees_route_whose_replacement_never_comes_closes_once_its_voucher_landed_or_expired() {
    let net = Net::manual();
    let t = triangle(&net).await;
    let (_down, missed) = payee_misses_replacements(&t);
    let invoice = t.invoice(atto(1000)).await;
    t.payer.routes.pay_invoice(&invoice.to_text().unwrap(), None).await.unwrap();
    eventually("the hub's replacement missed", || async { missed.load(Ordering::SeqCst) >= 1 })
        .await;
    assert_eq!(t.payee.routes.sweep().await, 0);
    assert_eq!(t.payee.route(&invoice).unwrap().state, RouteState::Fulfilled);
    // Past the payee's lock by the confirmation depth its voucher is either landed (its
    // settler lands it with the secret) or worth nothing: the route is over either way.
    let lock = t.payee.route(&invoice).unwrap().inbound.unwrap().lock;
    let head = head_of(&t.payee).await;
    net.mine((lock + test_params().conf_epochs() - head).unsigned_abs());
    assert_eq!(t.payee.routes.sweep().await, 1);
    let state = t.payee.route(&invoice).unwrap().state;
    assert!(matches!(state, RouteState::Redeemed | RouteState::Expired), "{state:?}");
}

#[tokio::test]
async fn the_next_offer_takes_another_lane_while_the_payee_has_not_acknowledged_the_replacement() {
    let net = Net::manual();
    let t = triangle(&net).await;
    let (down, missed) = payee_misses_replacements(&t);
    let first = t.invoice(atto(1000)).await;
    t.payer.routes.pay_invoice(&first.to_text().unwrap(), None).await.unwrap();
    eventually("the hub's replacement missed", || async { missed.load(Ordering::SeqCst) >= 1 })
        .await;
    // The payee still has the first conditional voucher pending on its lane: the hub's next
    // offer goes on another lane, and is taken.
    let second = t.invoice(atto(500)).await;
    t.payer.routes.pay_invoice(&second.to_text().unwrap(), None).await.unwrap();
    let first_lane = t.hub.route(&first).unwrap().outbound.unwrap().lane;
    let second_lane = t.hub.route(&second).unwrap().outbound.unwrap().lane;
    assert_ne!(first_lane, second_lane);
    eventually("the second replacement missed", || async { missed.load(Ordering::SeqCst) >= 2 })
        .await;
    // Acknowledged at last: both lanes come back, and the next payment reuses the first.
    down.store(false, Ordering::SeqCst);
    assert_eq!(t.hub.routes.sweep().await, 2);
    for invoice in [&first, &second] {
        assert_eq!(t.payee.route(invoice).unwrap().state, RouteState::Replaced);
    }
    let third = t.invoice(atto(200)).await;
    t.payer.routes.pay_invoice(&third.to_text().unwrap(), None).await.unwrap();
    assert_eq!(t.hub.route(&third).unwrap().outbound.unwrap().lane, first_lane);
    eventually("the payee holding every payment", || async { payee_holds(&t).await == atto(1700) })
        .await;
}

#[tokio::test]
async fn a_hub_stopped_between_the_payers_replacement_and_its_own_replaces_the_payees_on_its_next_sweep(
) {
    let net = Net::manual();
    let t = triangle(&net).await;
    let invoice = t.invoice(atto(1000)).await;
    let params = test_params();
    let head = head_of(&t.payer).await;
    let lock =
        paych_core::route::offer_lock(head, invoice.payee_margin, &params, params.submit_margin());
    let offered = t
        .payer
        .node
        .m()
        .conditional_offer(&t.payer_channel, atto(1020), &invoice.payment_hash, lock)
        .await
        .unwrap();
    let request =
        RouteRequest::Offer { invoice: invoice.to_cbor().unwrap(), voucher: offered.voucher };
    let answer = t.payer.client.ask(t.hub.peer, t.hub.addrs.clone(), request).await.unwrap();
    assert_eq!(answer.status, RouteStatus::Ok, "{}", answer.message);
    // The payer's replacement reaches the hub's store, and the hub stops before it replaces
    // the payee's voucher: its route is Fulfilled with the payer's voucher already paid.
    let replacement = t
        .payer
        .node
        .m()
        .conditional_replace(&t.payer_channel, offered.lane, &answer.secret)
        .await
        .unwrap();
    t.hub
        .node
        .m()
        .voucher_add(&t.payer_channel, &replacement, TokenAmount::default())
        .await
        .unwrap();
    assert_eq!(t.hub.route(&invoice).unwrap().state, RouteState::Fulfilled);
    // Its next sweep replaces the payee's voucher and sends it; nothing waits for a lock.
    assert_eq!(t.hub.routes.sweep().await, 1);
    assert_eq!(t.hub.route(&invoice).unwrap().state, RouteState::Replaced);
    assert_eq!(t.payee.route(&invoice).unwrap().state, RouteState::Replaced);
    assert_eq!(payee_holds(&t).await, atto(1000));
    assert!(t.hub.node.m().pending_conditionals(&t.hub_channel).await.unwrap().is_empty());
}

/// A conditional voucher the hub signs by hand on its channel to the payee, offered to the
/// payee with `invoice_cbor` as a hostile hub could; the payee's answer.
async fn hub_offers_by_hand(t: &Triangle, invoice_cbor: Vec<u8>, hash: &[u8]) -> RouteResponse {
    let head = head_of(&t.hub).await;
    let mut voucher = paych_core::types::SignedVoucher::new(t.hub_channel, 0, 1, atto(1));
    voucher.secret_hash = hash.to_vec();
    voucher.time_lock_max = head + 200;
    let voucher = t.hub.node.sign(voucher);
    let request = RouteRequest::Offer { invoice: invoice_cbor, voucher };
    t.hub.client.ask(t.payee.peer, t.payee.addrs.clone(), request).await.unwrap()
}

#[tokio::test]
async fn a_payee_reveals_nothing_for_an_invoice_it_did_not_issue_as_it_stands() {
    let net = Net::manual();
    let t = triangle(&net).await;
    let invoice = t.invoice(atto(1000)).await;
    // Its own invoice with the amount lowered (the payee's signature kept): not what it
    // issued, refused without a secret, nothing held.
    let mut lowered = invoice.clone();
    lowered.amount = atto(1);
    let answer = hub_offers_by_hand(&t, lowered.to_cbor().unwrap(), &invoice.payment_hash).await;
    assert_eq!(answer.status, RouteStatus::InvoiceInvalid, "{answer:?}");
    assert!(answer.secret.is_empty());
    // An invoice under a hash it never issued, signed by someone else naming it as payee.
    let mut foreign = invoice.clone();
    foreign.payment_hash = blake2b_256(&[7; 32]);
    let answer = hub_offers_by_hand(&t, foreign.to_cbor().unwrap(), &foreign.payment_hash).await;
    assert_eq!(answer.status, RouteStatus::InvoiceInvalid, "{answer:?}");
    assert!(answer.secret.is_empty());
    assert!(t.payee.route(&invoice).is_none());
    assert_eq!(payee_holds(&t).await, TokenAmount::default());
    // The invoice as issued is still paid through the hub as usual.
    let receipt = t.payer.routes.pay_invoice(&invoice.to_text().unwrap(), None).await.unwrap();
    assert_eq!(blake2b_256(&receipt.secret), invoice.payment_hash);
}
