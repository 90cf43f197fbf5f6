//! The payee's side of a route (design §9 step 4): the hub's conditional voucher `Vh` is
//! taken only for an invoice this node issued (its secret in the store), unexpired, whose
//! hash has no route yet, on an inbound channel to the invoice's payee, of the exact shape
//! (hash, lock, the invoice's amount) with a lock — or the channel's `settling_at − 1` if
//! earlier — at least `D_R` beyond the head. The secret is revealed only once `Vh` and the
//! route are durable; from then on the manager credits `Vh` (the secret is known) and its
//! settler lands it with the secret before its lock unless the hub's unconditional
//! replacement comes first.

use libp2p::PeerId;
use paych_core::invoice::{unix_now, Invoice};
use paych_core::manager::ConditionalTerms;
use paych_core::route::RouteRefusal;
use paych_core::store::{Leg, RouteRecord, RouteRole, RouteState};
use paych_core::types::{SignedVoucher, TokenAmount};

use super::hub::invoice_refusal;
use super::{intake_refusal, internal, replaced_leg, Routes};
use crate::metrics::RouteOutcome;

/// The role label of the payee's metrics.
const ROLE: &str = "payee";

impl Routes {
    /// Answers the hub's offer: the invoice's secret, once `Vh` is durable.
    pub(super) async fn payee_offer(
        &self,
        peer: PeerId,
        invoice: Invoice,
        vh: SignedVoucher,
    ) -> Result<Vec<u8>, RouteRefusal> {
        let hash = invoice.payment_hash;
        let manager = &self.inner.manager;
        let issued = manager.store().invoice_secret(&hash).map_err(internal)?.ok_or_else(|| {
            RouteRefusal::InvoiceInvalid("this node issued no such invoice".into())
        })?;
        // This node's own invoice, checked against the signed bytes it issued (every field,
        // the signature among them) rather than by recovering its own signature.
        if invoice.to_cbor().map_err(internal)? != issued.invoice {
            return Err(RouteRefusal::InvoiceInvalid(
                "it is not the invoice this node issued".into(),
            ));
        }
        invoice.check_expiry(unix_now()).map_err(invoice_refusal)?;
        let secret = issued.secret;
        let _claim = self.claim(hash).ok_or(RouteRefusal::HashSeen)?;
        if let Some(route) = manager.store().route(&hash).map_err(internal)? {
            let inbound = route.inbound.as_ref();
            let same = route.role == RouteRole::Payee
                && inbound.is_some_and(|l| {
                    l.channel == vh.channel_addr && l.lane == vh.lane && l.nonce == vh.nonce
                });
            return if same { Ok(secret) } else { Err(RouteRefusal::HashSeen) };
        }
        let on_chain = manager
            .chain()
            .channel(&vh.channel_addr)
            .await
            .map_err(|e| RouteRefusal::UnknownChannel(e.to_string()))?;
        let payee_id = manager.chain().lookup_id(&invoice.payee).await.map_err(internal)?;
        if payee_id != Some(on_chain.state.to) {
            return Err(RouteRefusal::UnknownChannel(
                "not a channel to the invoice's payee".into(),
            ));
        }
        let terms = ConditionalTerms {
            hash: hash.to_vec(),
            lock: vh.time_lock_max,
            delta: invoice.amount.clone(),
            margin: invoice.payee_margin,
        };
        // `Vh` and the route durable in one flush, before the secret is revealed.
        manager.conditional_accept_unflushed(&vh, &terms).await.map_err(intake_refusal)?;
        let head = manager.chain().head().await.map_err(internal)?;
        let route = RouteRecord {
            payment_hash: hash.to_vec(),
            role: RouteRole::Payee,
            state: RouteState::Fulfilled,
            invoice: invoice.to_cbor().map_err(internal)?,
            inbound: Some(Leg {
                channel: vh.channel_addr,
                lane: vh.lane,
                nonce: vh.nonce,
                amount: vh.amount.clone(),
                lock: vh.time_lock_max,
                peer: Some(peer.to_string()),
            }),
            outbound: None,
            fee: TokenAmount::default(),
            secret: Some(secret.clone()),
            hub_deadline: None,
            created: head,
        };
        self.save(&route).await.map_err(internal)?;
        self.inner.metrics.route_ended(ROLE, RouteOutcome::Fulfilled);
        Ok(secret)
    }

    /// Takes the hub's unconditional replacement of `Vh`.
    pub(super) async fn payee_replace(
        &self,
        hash: &[u8],
        voucher: SignedVoucher,
    ) -> Result<(), RouteRefusal> {
        let route = self.route(hash, RouteRole::Payee).map_err(internal)?;
        let mut route = route.ok_or(RouteRefusal::UnknownRoute)?;
        let inbound = replaced_leg(&route, &voucher)?;
        if route.state == RouteState::Replaced {
            return Ok(());
        }
        // Durable before it returns (and so before the hub hears of it).
        self.take_replacement(&inbound, &voucher).await?;
        route.state = RouteState::Replaced;
        // Rides the next flush (sled's own, at the latest, within half a second): a stop
        // before it leaves the route Fulfilled, and the hub's next send of the replacement
        // is answered from the voucher held.
        self.stage(&route).map_err(internal)?;
        self.inner.metrics.route_ended(ROLE, RouteOutcome::Replaced);
        Ok(())
    }
}
