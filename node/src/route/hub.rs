//! The hub's side of a route (design §9 steps 3 to 5): an offer from a payer is checked —
//! the invoice names this hub, is signed and unexpired; the payment hash is unseen; the
//! amount within `max_amount`; the lock not far beyond what the route needs; the inbound
//! channel is ours and its deadline `D_H` leaves the payee's lock `T2 = D_H − Δ` at least
//! `D_R` away; the outbound channel to the payee exists, is not settling and has capacity;
//! the payer's and payee's caps hold — then the payer's voucher `Vp` is taken (exact shape,
//! a lane with nothing pending, the channel covering every pending conditional voucher as if
//! all were revealed) and the route persisted before `Vh` is signed and sent to the payee.
//! The payee's secret is checked and made durable before it goes back to the payer.
//!
//! A replacement from the payer is taken only as the exact replacement of `Vp`; the hub then
//! replaces `Vh` and sends that to the payee. Each refusal has its own status; a refusal
//! binds nobody, and a route whose `Vh` left stays pending (counted against the caps) until
//! it resolves in [`super::sweep`].

use libp2p::PeerId;
use paych_core::invoice::{unix_now, Invoice, InvoiceError};
use paych_core::manager::{ConditionalError, ConditionalTerms};
use paych_core::route::{check_lock_not_too_far, check_secret, plan_forward, RouteRefusal};
use paych_core::store::{Leg, RouteRecord, RouteRole, RouteState};
use paych_core::types::{Address, SignedVoucher, TokenAmount};
use paych_protocol::RouteRequest;

use super::caps::{CapRefusal, PendingRoute};
use super::{intake_refusal, internal, replaced_leg, Routes};
use crate::metrics::RouteOutcome;

/// The role label of the hub's metrics.
const ROLE: &str = "hub";

/// What a hub route counts against the caps while it is pending; `payer` is the `from` of
/// its inbound channel.
pub(super) fn pending_of(route: &RouteRecord, payer: Address) -> Option<PendingRoute> {
    if route.role != RouteRole::Hub {
        return None;
    }
    let outbound = route.outbound.as_ref()?;
    let invoice = Invoice::from_cbor(&route.invoice).ok()?;
    Some(PendingRoute {
        payer,
        payee: invoice.payee,
        channel: outbound.channel,
        amount: invoice.amount,
    })
}

/// An invoice's refusal as the hub answers it.
pub(super) fn invoice_refusal(e: InvoiceError) -> RouteRefusal {
    match e {
        InvoiceError::Expired { .. } => RouteRefusal::InvoiceExpired,
        other => RouteRefusal::InvoiceInvalid(other.to_string()),
    }
}

impl Routes {
    /// Answers a payer's offer: the payee's secret, once the payee revealed it.
    pub(super) async fn hub_offer(
        &self,
        peer: PeerId,
        invoice_cbor: Vec<u8>,
        invoice: Invoice,
        vp: SignedVoucher,
    ) -> Result<Vec<u8>, RouteRefusal> {
        let hub = self.inner.settings.hub_address.ok_or(RouteRefusal::NotAHub)?;
        if !invoice.hubs.iter().any(|h| h.address == hub) {
            return Err(RouteRefusal::InvoiceInvalid("it does not name this hub".into()));
        }
        invoice.verify(unix_now()).map_err(invoice_refusal)?;
        let hash = invoice.payment_hash;
        let _claim = self.claim(hash).ok_or(RouteRefusal::HashSeen)?;
        if let Some(route) = self.inner.manager.store().route(&hash).map_err(internal)? {
            return same_offer_again(&route, &vp).ok_or(RouteRefusal::HashSeen);
        }
        let settings = &self.inner.settings;
        if invoice.amount > settings.hub.max_amount {
            return Err(RouteRefusal::CapExceeded(format!(
                "{} attoFIL is above the hub's largest payment, {} attoFIL",
                invoice.amount.atto(),
                settings.hub.max_amount.atto()
            )));
        }
        let fee = self.fee_policy().fee(&invoice.amount);
        let manager = &self.inner.manager;
        let head = manager.chain().head().await.map_err(internal)?;
        let t1 = vp.time_lock_max;
        let needed = invoice
            .payee_margin
            .saturating_add(settings.params.hub_delta())
            .saturating_add(settings.params.submit_margin().saturating_mul(2));
        check_lock_not_too_far(t1, head, needed.unsigned_abs().min(self.max_lock()))?;
        let on_chain = manager
            .chain()
            .channel(&vp.channel_addr)
            .await
            .map_err(|e| RouteRefusal::UnknownChannel(e.to_string()))?;
        let hub_id = manager.chain().lookup_id(&hub).await.map_err(internal)?;
        if hub_id != Some(on_chain.state.to) {
            return Err(RouteRefusal::UnknownChannel("not a channel to this hub".into()));
        }
        let plan = plan_forward(
            t1,
            on_chain.state.settling_at,
            head,
            &settings.params,
            invoice.payee_margin,
        )?;
        let outbound = self.outbound_to(&invoice.payee).await?;
        let (payee_peer, payee_addrs) = self
            .inner
            .payer
            .payee_peer(&outbound)
            .await
            .map_err(|e| RouteRefusal::NoRoute(e.to_string()))?;
        let pending = PendingRoute {
            payer: on_chain.state.from,
            payee: invoice.payee,
            channel: outbound,
            amount: invoice.amount.clone(),
        };
        self.admit(&pending)?;
        let forwarded = self
            .accept_and_forward(AcceptForward {
                peer,
                invoice_cbor: &invoice_cbor,
                invoice: &invoice,
                vp: &vp,
                fee: &fee,
                head,
                hub_deadline: plan.hub_deadline,
                payee_lock: plan.payee_lock,
                outbound,
            })
            .await;
        let (mut route, vh) = match forwarded {
            Ok(forwarded) => forwarded,
            Err(Forward::NotForwarded(refusal)) => {
                self.release(&pending);
                return Err(refusal);
            }
            Err(Forward::Pending(refusal)) => return Err(refusal),
        };
        let request = RouteRequest::Offer { invoice: invoice_cbor, voucher: vh };
        let answer = self.inner.payer.network().ask(payee_peer, payee_addrs, request).await;
        let secret = match answer {
            Err(e) => return Err(RouteRefusal::NoRoute(format!("the payee did not answer: {e}"))),
            Ok(r) if !r.status.is_ok() => {
                return Err(RouteRefusal::Refused(format!(
                    "the payee answered {}: {}",
                    r.status, r.message
                )))
            }
            Ok(r) => r.secret,
        };
        if let Err(bad) = check_secret(&secret, &hash) {
            return Err(RouteRefusal::Refused(format!("the payee's secret is wrong: {bad}")));
        }
        // The route with its secret, and the secret itself, durable in one flush before the
        // secret goes back to the payer.
        route.secret = Some(secret.clone());
        route.state = RouteState::Fulfilled;
        self.stage(&route).map_err(internal)?;
        manager.learn_secret(&hash, &secret).await.map_err(internal)?;
        manager.store().durable().await.map_err(internal)?;
        self.inner.ledger.completed(outbound, head, invoice.amount.clone());
        self.inner.metrics.hub_fee(&fee);
        self.inner.metrics.route_ended(ROLE, RouteOutcome::Fulfilled);
        Ok(secret)
    }

    /// Takes `Vp`, persists the route, signs `Vh`: the route record as it stands with `Vh`
    /// signed (state Forwarded).
    async fn accept_and_forward(
        &self,
        a: AcceptForward<'_>,
    ) -> Result<(RouteRecord, SignedVoucher), Forward> {
        let manager = &self.inner.manager;
        let params = &self.inner.settings.params;
        let hash = a.invoice.payment_hash;
        let terms = ConditionalTerms {
            hash: hash.to_vec(),
            lock: a.vp.time_lock_max,
            delta: &a.invoice.amount + a.fee,
            margin: params.hub_delta().saturating_add(a.invoice.payee_margin),
        };
        // Durable with the route and `Vh` in the flush that signing `Vh` makes, before `Vh`
        // leaves (or with the route recorded over, if that fails); the payer is answered
        // only after the later flush of the secret.
        manager
            .conditional_accept_unflushed(a.vp, &terms)
            .await
            .map_err(|e| Forward::NotForwarded(intake_refusal(e)))?;
        let mut route = RouteRecord {
            payment_hash: hash.to_vec(),
            role: RouteRole::Hub,
            state: RouteState::Offered,
            invoice: a.invoice_cbor.to_vec(),
            inbound: Some(Leg {
                channel: a.vp.channel_addr,
                lane: a.vp.lane,
                nonce: a.vp.nonce,
                amount: a.vp.amount.clone(),
                lock: a.vp.time_lock_max,
                peer: Some(a.peer.to_string()),
            }),
            outbound: None,
            fee: a.fee.clone(),
            secret: None,
            hub_deadline: Some(a.hub_deadline),
            created: a.head,
        };
        // From here the payer's voucher is held.
        self.stage(&route).map_err(|e| Forward::NotForwarded(internal(e)))?;
        let vh = match manager
            .conditional_offer(&a.outbound, a.invoice.amount.clone(), &hash, a.payee_lock)
            .await
        {
            Ok(vh) => vh,
            Err(e) => {
                // Nothing was signed downstream: the route is over (the payer's voucher is
                // worth nothing without the secret, and expires at its lock).
                route.state = RouteState::Expired;
                if let Err(e) = self.save(&route).await {
                    tracing::warn!(error = %e, "cannot record the route over");
                }
                return Err(Forward::NotForwarded(match e {
                    ConditionalError::Shortfall(short) => RouteRefusal::NoCapacity(format!(
                        "the channel to the payee lacks {} attoFIL",
                        short.atto()
                    )),
                    other => internal(other),
                }));
            }
        };
        route.outbound = Some(Leg {
            channel: a.outbound,
            lane: vh.lane,
            nonce: vh.voucher.nonce,
            amount: vh.voucher.amount.clone(),
            lock: a.payee_lock,
            peer: None,
        });
        route.state = RouteState::Forwarded;
        // The leg rides on the next flush (the secret's): should the node stop first, the
        // sweep finds it again among the channel's pending conditional vouchers.
        self.stage(&route).map_err(|e| Forward::Pending(internal(e)))?;
        Ok((route, vh.voucher))
    }

    /// Takes the payer's replacement of `Vp`, then replaces `Vh` and sends it to the payee.
    pub(super) async fn hub_replace(
        &self,
        hash: &[u8],
        voucher: SignedVoucher,
    ) -> Result<(), RouteRefusal> {
        let route = self.route(hash, RouteRole::Hub).map_err(internal)?;
        let mut route = route.ok_or(RouteRefusal::UnknownRoute)?;
        let inbound = replaced_leg(&route, &voucher)?;
        match route.state {
            // Paid already (replaced, or landed on chain with the secret): the payer's
            // replacement adds nothing and is acknowledged.
            RouteState::Replaced | RouteState::Redeemed => return Ok(()),
            RouteState::Fulfilled => {}
            _ => return Err(RouteRefusal::BadReplacement("the route is not fulfilled".into())),
        }
        self.take_replacement(&inbound, &voucher).await?;
        // The payer is answered now; the payee's replacement follows in the background (the
        // payee's conditional voucher and the secret already pay it), and again from the
        // sweep until the payee acknowledges it.
        let routes = self.clone();
        tokio::spawn(async move {
            let Ok(hash) = <[u8; 32]>::try_from(route.payment_hash.as_slice()) else { return };
            // Being sent by the sweep right now otherwise.
            let Some(_claim) = routes.claim(hash) else { return };
            routes.replace_outbound(&mut route, RouteState::Replaced).await;
        });
        Ok(())
    }

    /// The payer's voucher is paid (replaced, or redeemed on chain): replaces `Vh` with its
    /// unconditional voucher (or takes the one signed before) and sends it to the payee.
    /// Only once the payee acknowledged it does the lane go back to the pool and the route
    /// end in `done`; until then the route stays Fulfilled, and the sweep sends the stored
    /// replacement again. Whether the route ended.
    pub(super) async fn replace_outbound(&self, route: &mut RouteRecord, done: RouteState) -> bool {
        let (Some(outbound), Some(secret)) = (route.outbound.clone(), route.secret.clone()) else {
            return false;
        };
        let manager = &self.inner.manager;
        let replacement = match self.signed_replacement(&outbound) {
            Ok(Some(signed)) => Some(signed),
            Ok(None) => match manager
                .conditional_replace_leased(&outbound.channel, outbound.lane, &secret)
                .await
            {
                Ok(v) => Some(v),
                // The lane resolved otherwise (its voucher expired or was landed): nothing
                // is left to replace, and the lane is back in the pool.
                Err(ConditionalError::NotPending(_)) => None,
                Err(e) => {
                    tracing::warn!(error = %e, lane = outbound.lane, "cannot replace the payee's conditional voucher");
                    return false;
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the payee's lane");
                return false;
            }
        };
        // A payee that landed its conditional voucher on chain is paid: the replacement
        // (signed above only to clear the lane) has nothing to add.
        let landed = match manager.chain().channel(&outbound.channel).await {
            Ok(on_chain) => on_chain.lane(outbound.lane).is_some_and(|l| l.nonce >= outbound.nonce),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the channel to the payee");
                false
            }
        };
        if replacement.is_some() && landed {
            if let Err(e) = manager.return_lane(&outbound.channel, outbound.lane).await {
                tracing::warn!(error = %e, lane = outbound.lane, "cannot return the payee's lane");
                return false;
            }
        }
        if let Some(replacement) = replacement.filter(|_| !landed) {
            if !self.send_to_payee(route, &outbound.channel, replacement).await {
                return false;
            }
            if let Err(e) = manager.return_lane(&outbound.channel, outbound.lane).await {
                tracing::warn!(error = %e, lane = outbound.lane, "cannot return the payee's lane");
                return false;
            }
        }
        route.state = done;
        // Rides the next flush: a stop before it leaves the route Fulfilled, and the sweep
        // sends the stored replacement again, which the payee acknowledges again.
        if let Err(e) = self.stage(route) {
            tracing::warn!(error = %e, "cannot record the route replaced");
            return false;
        }
        if let Some(pending) = self.pending_route(route).await {
            self.release(&pending);
        }
        if done == RouteState::Replaced {
            self.inner.metrics.route_ended(ROLE, RouteOutcome::Replaced);
        }
        true
    }

    /// Sends the replacement of the route's `Vh` to the payee; whether it acknowledged it.
    async fn send_to_payee(
        &self,
        route: &RouteRecord,
        channel: &Address,
        replacement: SignedVoucher,
    ) -> bool {
        let (peer, addrs) = match self.inner.payer.payee_peer(channel).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "cannot find the payee to send the replacement to");
                return false;
            }
        };
        let hash = route.payment_hash.clone();
        self.inner.replacer.send(peer, addrs, hash, replacement).await.taken_by("the payee")
    }

    /// The open outbound channel to `payee`, not settling.
    async fn outbound_to(&self, payee: &Address) -> Result<Address, RouteRefusal> {
        for (to, channel) in self.open_outbound_channels().await {
            if to != *payee {
                continue;
            }
            let status = self.inner.manager.status(&channel).await.map_err(internal)?;
            if status.settling {
                return Err(RouteRefusal::ChannelSettling(status.settling_at));
            }
            return Ok(channel);
        }
        Err(RouteRefusal::NoRoute("this hub has no open channel to the payee".into()))
    }

    /// What `route` counts against the caps (its payer read from its inbound channel).
    pub(super) async fn pending_route(&self, route: &RouteRecord) -> Option<PendingRoute> {
        let inbound = route.inbound.as_ref()?;
        let payer = self.inner.manager.chain().channel(&inbound.channel).await.ok()?.state.from;
        pending_of(route, payer)
    }

    /// Counts `pending` against the caps, or refuses it.
    fn admit(&self, pending: &PendingRoute) -> Result<(), RouteRefusal> {
        let mut caps = self.inner.caps.lock().map_err(internal)?;
        caps.admit(pending, &self.inner.settings.hub).map_err(|e| match e {
            CapRefusal::CapExceeded { .. } => RouteRefusal::CapExceeded(e.to_string()),
            CapRefusal::NoCapacity(_) => RouteRefusal::NoCapacity(e.to_string()),
        })?;
        drop(caps);
        self.update_gauges();
        Ok(())
    }

    /// Stops counting `pending`.
    pub(super) fn release(&self, pending: &PendingRoute) {
        if let Ok(mut caps) = self.inner.caps.lock() {
            caps.release(pending);
        }
        self.update_gauges();
    }
}

/// What taking `Vp` and signing `Vh` need.
struct AcceptForward<'a> {
    peer: PeerId,
    invoice_cbor: &'a [u8],
    invoice: &'a Invoice,
    vp: &'a SignedVoucher,
    fee: &'a TokenAmount,
    head: paych_core::types::ChainEpoch,
    hub_deadline: paych_core::types::ChainEpoch,
    payee_lock: paych_core::types::ChainEpoch,
    outbound: Address,
}

/// Why a route was not forwarded: before the payer's voucher was held (nothing pending),
/// or after (pending until it resolves).
enum Forward {
    NotForwarded(RouteRefusal),
    Pending(RouteRefusal),
}

/// The secret again, for the same offer made again (its answer lost); `None` otherwise.
fn same_offer_again(route: &RouteRecord, vp: &SignedVoucher) -> Option<Vec<u8>> {
    let inbound = route.inbound.as_ref()?;
    let same = route.role == RouteRole::Hub
        && inbound.channel == vp.channel_addr
        && inbound.lane == vp.lane
        && inbound.nonce == vp.nonce;
    if same {
        route.secret.clone()
    } else {
        None
    }
}
