//! The payer's side of a routed payment (design §9 steps 2 and 5).
//!
//! An invoice is paid only if its payee's signature verifies, it has not expired, its
//! payment hash was never offered before (a route record under it, durable before the
//! voucher is signed, says it was), and one of its hubs is one this node has an open
//! outbound channel to ([`choose_hub`]). The hub's signed policy must verify and its fee be
//! within the caller's bound ([`check_fee`]). The conditional voucher `Vp` — the amount plus
//! the fee, locked by the payment hash until `T1 = head + D_R + Δ + slack` — goes to the
//! hub; an answer with the secret is checked (32 bytes hashing to the payment hash), made
//! durable, and becomes the receipt; `Vp` is then replaced by its unconditional voucher,
//! sent to the hub in the background. A refusal returns an error but binds nobody: `Vp` stays valid until its
//! lock, and its lane comes back only once the lock has passed by the confirmation depth
//! ([`super::sweep`]).

use libp2p::{Multiaddr, PeerId};
use paych_core::invoice::{unix_now, Hub, Invoice, InvoiceError};
use paych_core::manager::ConditionalError;
use paych_core::route::{check_secret, offer_lock, HubPolicy, SignedHubPolicy};
use paych_core::store::{
    Direction, Leg, Lifecycle, RouteRecord, RouteRole, RouteState, StoreError,
};
use paych_core::types::{Address, ChainEpoch, TokenAmount};
use paych_protocol::{RouteRequest, RouteStatus};

use super::receipt::RouteReceipt;
use super::{Routes, MAX_CACHED_POLICIES, POLICY_REFRESH_SECS};
use crate::metrics::RouteOutcome;
use crate::network::NetworkError;
use crate::pay::peer_of;

/// The role label of the payer's metrics.
const ROLE: &str = "payer";

/// Why an invoice was not paid (before or during the route).
#[derive(Debug, thiserror::Error)]
pub enum PayInvoiceError {
    /// The text is not a valid invoice, its signature is not the payee's, or it expired.
    #[error("invoice: {0}")]
    Invoice(#[from] InvoiceError),
    /// The invoice names no hub this node has an open channel to.
    #[error("none of the invoice's hubs ({0}) is one this node has an open channel to")]
    NoHub(String),
    /// This node offered a voucher on this payment hash before.
    #[error("the invoice's payment hash was offered before: an invoice is paid once")]
    AlreadyOffered,
    /// The hub's multiaddr in the invoice does not end in `/p2p/<peer id>`.
    #[error("the hub's address {0} is not a multiaddr ending in /p2p/<peer id>")]
    BadHubAddress(String),
    /// The hub's policy could not be had or did not verify.
    #[error("the hub's policy: {0}")]
    Policy(String),
    /// The amount is above the hub's largest payment.
    #[error("the hub routes at most {} attoFIL", .0.atto())]
    AboveHubMaximum(TokenAmount),
    /// The route needs a lock further than the hub's policy takes (the invoice's margin is
    /// too long for it).
    #[error("the route needs a lock at epoch {lock}; the hub takes none beyond {furthest}")]
    LockTooFar {
        /// The lock the route needs.
        lock: ChainEpoch,
        /// The furthest the hub takes.
        furthest: ChainEpoch,
    },
    /// The hub refused the offer (binds nobody; the voucher's lane comes back once its lock
    /// has passed by the confirmation depth).
    #[error("the hub refused: {status}: {message}")]
    Refused {
        /// The hub's status.
        status: RouteStatus,
        /// Its explanation.
        message: String,
    },
    /// The hub answered with a secret that does not hash to the payment hash.
    #[error("the hub's secret does not hash to the payment hash")]
    BadSecret,
    /// The manager refused (the channel cannot cover the voucher, …).
    #[error(transparent)]
    Conditional(#[from] ConditionalError),
    /// The hub could not be reached.
    #[error("cannot reach the hub: {0}")]
    Network(#[from] NetworkError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The hub's fee is above the caller's bound.
    #[error("the hub's fee of {} attoFIL is above the bound of {} attoFIL", .fee.atto(), .max.atto())]
    FeeTooHigh {
        /// The fee the hub's policy asks.
        fee: TokenAmount,
        /// The caller's bound.
        max: TokenAmount,
    },
}

/// A hub this node can pay through: the invoice's entry and this node's channel to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenHub {
    /// The invoice's entry for the hub.
    pub hub: Hub,
    /// This node's open outbound channel to the hub.
    pub channel: Address,
}

/// The hub's peer id and address, from the invoice's multiaddr.
pub fn hub_peer(hub: &Hub) -> Result<(PeerId, Multiaddr), PayInvoiceError> {
    let bad = || PayInvoiceError::BadHubAddress(hub.multiaddr.clone());
    let addr: Multiaddr = hub.multiaddr.parse().map_err(|_| bad())?;
    let peer = peer_of(&addr).ok_or_else(bad)?;
    Ok((peer, addr))
}

impl Routes {
    /// Pays the invoice `text` through one of its hubs, the hub's fee at most `max_fee`;
    /// answers the receipt once the payee's secret came back.
    pub async fn pay_invoice(
        &self,
        text: &str,
        max_fee: Option<TokenAmount>,
    ) -> Result<RouteReceipt, PayInvoiceError> {
        let invoice = Invoice::from_text(text)?;
        check_invoice(&invoice, unix_now())?;
        let hash = invoice.payment_hash;
        let _claim = self.claim(hash).ok_or(PayInvoiceError::AlreadyOffered)?;
        if self.inner.manager.store().route(&hash)?.is_some() {
            return Err(PayInvoiceError::AlreadyOffered);
        }
        let chosen = choose_hub(&invoice, &self.open_outbound_channels().await)?;
        let (peer, addr) = hub_peer(&chosen.hub)?;
        let policy = self.hub_policy(peer, addr.clone(), chosen.hub.address).await?;
        if invoice.amount > policy.max_amount {
            return Err(PayInvoiceError::AboveHubMaximum(policy.max_amount));
        }
        let fee = policy.fee.fee(&invoice.amount);
        check_fee(&fee, max_fee.as_ref())?;
        let manager = &self.inner.manager;
        let params = &self.inner.settings.params;
        let head = manager.chain().head().await.map_err(ConditionalError::from)?;
        let t1 = offer_lock(head, invoice.payee_margin, params, params.submit_margin());
        let furthest = head.saturating_add(ChainEpoch::try_from(policy.max_lock).unwrap_or(0));
        if t1 > furthest {
            return Err(PayInvoiceError::LockTooFar { lock: t1, furthest });
        }
        let invoice_cbor = invoice.to_cbor()?;
        let mut route = RouteRecord {
            payment_hash: hash.to_vec(),
            role: RouteRole::Payer,
            state: RouteState::Offered,
            invoice: invoice_cbor.clone(),
            inbound: None,
            outbound: None,
            fee: fee.clone(),
            secret: None,
            hub_deadline: None,
            created: head,
        };
        // Durable with the voucher (the manager's flush carries it), before anything leaves:
        // this hash is never offered again.
        self.stage(&route)?;
        let offered = match manager
            .conditional_offer(&chosen.channel, &invoice.amount + &fee, &hash, t1)
            .await
        {
            Ok(offered) => offered,
            Err(e) => {
                // Nothing was signed: the route is over before it began.
                route.state = RouteState::Expired;
                self.save(&route).await?;
                return Err(e.into());
            }
        };
        route.outbound = Some(Leg {
            channel: chosen.channel,
            lane: offered.lane,
            nonce: offered.voucher.nonce,
            amount: offered.voucher.amount.clone(),
            lock: t1,
            peer: Some(peer.to_string()),
        });
        // The leg rides on the next flush (the receipt's): should the node stop first, the
        // sweep finds it again among the channel's pending conditional vouchers.
        self.stage(&route)?;
        let request = RouteRequest::Offer { invoice: invoice_cbor, voucher: offered.voucher };
        let response = self.inner.payer.network().ask(peer, vec![addr.clone()], request).await;
        let response = response.inspect_err(|_| {
            self.inner.metrics.route_ended(ROLE, RouteOutcome::Failed);
        })?;
        if !response.status.is_ok() {
            self.inner.metrics.route_ended(ROLE, RouteOutcome::Refused);
            return Err(PayInvoiceError::Refused {
                status: response.status,
                message: response.message,
            });
        }
        let secret = response.secret;
        let receipt_secret: [u8; 32] =
            match (check_secret(&secret, &hash), secret.as_slice().try_into()) {
                (Ok(()), Ok(checked)) => checked,
                _ => return Err(PayInvoiceError::BadSecret),
            };
        // The receipt and the secret durable in one flush.
        route.secret = Some(secret.clone());
        route.state = RouteState::Fulfilled;
        self.stage(&route)?;
        manager.learn_secret(&hash, &secret).await?;
        manager.store().durable().await?;
        self.inner.metrics.route_ended(ROLE, RouteOutcome::Fulfilled);
        // The receipt stands now; the replacement follows in the background (the hub lands
        // the conditional voucher with the secret should it never arrive).
        // The claim on the hash goes with it: the sweep does not send it at the same time.
        let routes = self.clone();
        tokio::spawn(async move {
            let _claim = _claim;
            routes.replace_inbound_of_hub(&mut route, peer, addr).await;
        });
        Ok(RouteReceipt {
            payment_hash: hash,
            secret: receipt_secret,
            amount: invoice.amount,
            fee,
            hub: chosen.hub.address,
            channel: chosen.channel,
            lane: offered.lane,
        })
    }

    /// Replaces the payer's conditional voucher of a fulfilled `route` by its unconditional
    /// voucher (or takes the one signed before) and sends it to the hub (which lands the
    /// conditional one with the secret if this never arrives). Only once the hub
    /// acknowledged it does the lane go back to the pool and the route end Replaced; until
    /// then the route stays Fulfilled and the sweep sends it again. Whether the route ended.
    pub(super) async fn replace_inbound_of_hub(
        &self,
        route: &mut RouteRecord,
        peer: PeerId,
        addr: Multiaddr,
    ) -> bool {
        let (Some(leg), Some(secret)) = (route.outbound.clone(), route.secret.clone()) else {
            return false;
        };
        let manager = &self.inner.manager;
        let replacement = match self.signed_replacement(&leg) {
            Ok(Some(signed)) => Some(signed),
            Ok(None) => {
                match manager.conditional_replace_leased(&leg.channel, leg.lane, &secret).await {
                    Ok(v) => Some(v),
                    // The lane resolved otherwise: nothing is left to replace.
                    Err(ConditionalError::NotPending(_)) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, lane = leg.lane, "cannot replace the conditional voucher");
                        return false;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the lane");
                return false;
            }
        };
        // The hub landed the conditional voucher on chain with the secret: it is paid, and
        // the replacement (signed above only to clear the lane) has nothing to add.
        let landed = match manager.chain().channel(&leg.channel).await {
            Ok(on_chain) => on_chain.lane(leg.lane).is_some_and(|l| l.nonce >= leg.nonce),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the channel to the hub");
                false
            }
        };
        let replacement = replacement.filter(|_| !landed);
        if landed {
            if let Err(e) = manager.return_lane(&leg.channel, leg.lane).await {
                tracing::warn!(error = %e, lane = leg.lane, "cannot return the lane");
                return false;
            }
        }
        if let Some(replacement) = replacement {
            let hash = route.payment_hash.clone();
            let sent = self.inner.replacer.send(peer, vec![addr], hash, replacement).await;
            if !sent.taken_by("the hub") {
                return false;
            }
            if let Err(e) = manager.return_lane(&leg.channel, leg.lane).await {
                tracing::warn!(error = %e, lane = leg.lane, "cannot return the lane");
                return false;
            }
        }
        route.state = RouteState::Replaced;
        // Rides the next flush: a stop before it leaves the route Fulfilled, and the sweep
        // sends the stored replacement again, which the hub acknowledges again.
        if let Err(e) = self.stage(route) {
            tracing::warn!(error = %e, "cannot record the route replaced");
            return false;
        }
        self.inner.metrics.route_ended(ROLE, RouteOutcome::Replaced);
        true
    }

    /// The hub's policy: the one kept from an earlier payment while it is not close to
    /// expiring, else asked of the hub and verified as signed by `hub`.
    async fn hub_policy(
        &self,
        peer: PeerId,
        addr: Multiaddr,
        hub: Address,
    ) -> Result<HubPolicy, PayInvoiceError> {
        let fresh = |p: &HubPolicy| p.expires_unix > unix_now().saturating_add(POLICY_REFRESH_SECS);
        if let Some(policy) = self.inner.policies.lock().ok().and_then(|p| p.get(&hub).cloned()) {
            if fresh(&policy) {
                return Ok(policy);
            }
        }
        let policy = self.ask_policy(peer, addr, hub).await?;
        if let Ok(mut policies) = self.inner.policies.lock() {
            if policies.len() >= MAX_CACHED_POLICIES {
                policies.clear();
            }
            policies.insert(hub, policy.clone());
        }
        Ok(policy)
    }

    /// The hub's policy, asked of it and verified as signed by `hub`.
    async fn ask_policy(
        &self,
        peer: PeerId,
        addr: Multiaddr,
        hub: Address,
    ) -> Result<HubPolicy, PayInvoiceError> {
        let response =
            self.inner.payer.network().ask(peer, vec![addr], RouteRequest::Policy).await?;
        if !response.status.is_ok() {
            return Err(PayInvoiceError::Refused {
                status: response.status,
                message: response.message,
            });
        }
        let signed = SignedHubPolicy::from_cbor(&response.policy)
            .map_err(|e| PayInvoiceError::Policy(e.to_string()))?;
        let policy =
            signed.verify_at(unix_now()).map_err(|e| PayInvoiceError::Policy(e.to_string()))?;
        if policy.hub != hub {
            return Err(PayInvoiceError::Policy("signed by another key than the hub's".into()));
        }
        Ok(policy)
    }

    /// This node's open outbound channels, as `(payee, channel)`.
    pub(super) async fn open_outbound_channels(&self) -> Vec<(Address, Address)> {
        let channels = self.inner.manager.store().channels().unwrap_or_default();
        channels
            .into_iter()
            .filter(|c| c.direction == Direction::Outbound && c.lifecycle == Lifecycle::Open)
            .filter_map(|c| c.channel.map(|channel| (c.to, channel)))
            .collect()
    }
}

/// Checks the invoice at `now` (unix seconds): bounds, the payee's signature, expiry.
pub fn check_invoice(invoice: &Invoice, now: u64) -> Result<(), PayInvoiceError> {
    Ok(invoice.verify(now)?)
}

/// The first of the invoice's hubs (in the invoice's order) that one of `channels`, this
/// node's open outbound channels as `(payee, channel)`, goes to.
pub fn choose_hub(
    invoice: &Invoice,
    channels: &[(Address, Address)],
) -> Result<ChosenHub, PayInvoiceError> {
    invoice
        .hubs
        .iter()
        .find_map(|hub| {
            channels
                .iter()
                .find(|(to, _)| *to == hub.address)
                .map(|(_, channel)| ChosenHub { hub: hub.clone(), channel: *channel })
        })
        .ok_or_else(|| {
            let named: Vec<String> = invoice.hubs.iter().map(|h| h.address.to_string()).collect();
            PayInvoiceError::NoHub(if named.is_empty() { "none".into() } else { named.join(", ") })
        })
}

/// The fee is within `max` (no bound when `None`).
pub fn check_fee(fee: &TokenAmount, max: Option<&TokenAmount>) -> Result<(), PayInvoiceError> {
    match max {
        Some(max) if fee > max => {
            Err(PayInvoiceError::FeeTooHigh { fee: fee.clone(), max: max.clone() })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use paych_core::crypto;

    fn hub(id: u64) -> Hub {
        Hub {
            address: Address::new_id(id),
            multiaddr:
                "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWR3xpchtdRaf8WMXv8dVjaKWqZQ5kS53rcFpHcwrSXqdm"
                    .into(),
        }
    }

    fn invoice(hubs: Vec<Hub>, expiry: u64) -> Invoice {
        let key = crypto::generate_secret_key().unwrap();
        let mut invoice = Invoice {
            id: [1; 16],
            amount: TokenAmount::from_atto(100u64),
            payment_hash: [2; 32],
            payee: crypto::secp_address(&crypto::public_key(&key)),
            hubs,
            expiry,
            payee_margin: 7,
            signature: None,
        };
        invoice.sign(&key).unwrap();
        invoice
    }

    #[test]
    fn a_payer_refuses_an_expired_or_forged_invoice() {
        let good = invoice(vec![hub(10)], 1000);
        assert!(check_invoice(&good, 1000).is_ok());
        assert!(matches!(
            check_invoice(&good, 1001),
            Err(PayInvoiceError::Invoice(InvoiceError::Expired { .. }))
        ));
        let forged = Invoice { amount: TokenAmount::from_atto(1u64), ..good };
        assert!(matches!(
            check_invoice(&forged, 0),
            Err(PayInvoiceError::Invoice(InvoiceError::BadSignature(_)))
        ));
    }

    #[test]
    fn a_payer_pays_through_the_first_listed_hub_it_has_a_channel_to() {
        let invoice = invoice(vec![hub(10), hub(11)], 1000);
        let channels = [
            (Address::new_id(11), Address::new_id(2011)),
            (Address::new_id(10), Address::new_id(2010)),
        ];
        let chosen = choose_hub(&invoice, &channels).unwrap();
        assert_eq!(
            (chosen.hub.address, chosen.channel),
            (Address::new_id(10), Address::new_id(2010))
        );
        assert!(matches!(
            choose_hub(&invoice, &[(Address::new_id(12), Address::new_id(2012))]),
            Err(PayInvoiceError::NoHub(_))
        ));
    }

    #[test]
    fn a_fee_above_the_callers_bound_is_refused() {
        let fee = TokenAmount::from_atto(5u64);
        assert!(check_fee(&fee, None).is_ok());
        assert!(check_fee(&fee, Some(&TokenAmount::from_atto(5u64))).is_ok());
        assert!(matches!(
            check_fee(&fee, Some(&TokenAmount::from_atto(4u64))),
            Err(PayInvoiceError::FeeTooHigh { .. })
        ));
    }
}
