//! What time resolves in a route (design §9 steps 5 to 7), once per interval over the open
//! routes in the store:
//!
//! - a conditional voucher this node signed whose lock has passed by the confirmation depth
//!   unredeemed expires ([`PaymentChannelManager::conditional_expire`]): its lane comes back
//!   (payer: `T1 + conf`; hub: `T2 + conf`) — the only way a route fails;
//! - a hub holding the secret whose payer's replacement has not come by `D_H − (S + conf)`
//!   lands the payer's voucher with the secret ([`PaymentChannelManager::conditional_redeem`]);
//! - a payer that learned the secret but crashed before replacing replaces now, and a payer
//!   or hub whose replacement was not acknowledged sends the stored one again (at most
//!   [`MAX_RESENDS_PER_PASS`] a pass): the lane goes back to the pool only on the receiver's
//!   `Ok`;
//! - a hub whose payer's voucher is already paid replaces the payee's (it stopped before);
//! - a payee closes its route once its conditional voucher was replaced, landed on chain, or
//!   its lock passed by the confirmation depth;
//! - a secret found on chain (a payee redeeming its conditional voucher instead of
//!   answering) is learned and used at once by the hub ([`Routes::secret_found`]).
//!
//! [`PaymentChannelManager::conditional_expire`]: paych_core::manager::PaymentChannelManager::conditional_expire
//! [`PaymentChannelManager::conditional_redeem`]: paych_core::manager::PaymentChannelManager::conditional_redeem

use std::time::Duration;

use paych_core::manager::{ConditionalError, ExpireOutcome};
use paych_core::route::check_secret;
use paych_core::store::{Leg, RouteRecord, RouteRole, RouteState, VoucherOrigin};
use paych_core::types::{Address, ChainEpoch, TokenAmount};
use tokio::sync::watch;

use super::Routes;
use crate::metrics::RouteOutcome;

/// Open routes looked at per pass, at most (the rest wait for the next pass).
pub const MAX_ROUTES_PER_PASS: usize = 4096;
/// Unacknowledged replacements sent again per pass, at most (the rest wait for the next
/// pass): each is one request over the network.
pub const MAX_RESENDS_PER_PASS: usize = 64;

/// What the conditional voucher of `route`'s inbound (or outbound) leg adds to its lane, if
/// it has that leg: the invoice's amount, plus the fee on the payer's side of the hub.
fn leg_value(route: &RouteRecord, inbound: bool) -> Option<TokenAmount> {
    let leg = if inbound { route.inbound.as_ref() } else { route.outbound.as_ref() };
    leg?;
    let amount = paych_core::invoice::Invoice::from_cbor(&route.invoice).ok()?.amount;
    let with_fee = match route.role {
        RouteRole::Payer => !inbound,
        RouteRole::Hub => inbound,
        RouteRole::Payee => false,
    };
    Some(if with_fee { amount + &route.fee } else { amount })
}

/// Runs [`Routes::sweep`] once per interval until shut down.
pub struct RouteSweeper {
    /// The node's routes.
    pub routes: Routes,
    /// How often to look.
    pub interval: Duration,
}

impl RouteSweeper {
    /// Spawns the task; it ends when `shutdown` turns true or its sender is dropped.
    pub fn spawn(self, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                self.routes.sweep().await;
                tokio::select! {
                    _ = tokio::time::sleep(self.interval) => {}
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            return;
                        }
                    }
                }
            }
        })
    }
}

impl Routes {
    /// One look at every open route: expiries, the hub's redemptions, unfinished
    /// replacements. Answers how many routes changed.
    pub async fn sweep(&self) -> usize {
        let manager = &self.inner.manager;
        let Ok(head) = manager.chain().head().await else { return 0 };
        let open = match self.open_routes(MAX_ROUTES_PER_PASS) {
            Ok(open) => open,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the routes");
                return 0;
            }
        };
        self.set_gauges(&open).await;
        self.resolve_channel_ids(&open).await;
        let mut changed = 0;
        let mut resends = MAX_RESENDS_PER_PASS;
        for route in open {
            match self.resolve(route, head, &mut resends).await {
                Ok(true) => changed += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot resolve a route"),
            }
        }
        changed
    }

    /// Resolves (once each) the ID addresses of the channels the open routes' outbound legs
    /// use, for the watchtower.
    async fn resolve_channel_ids(&self, open: &[RouteRecord]) {
        for leg in open.iter().filter_map(|r| r.outbound.as_ref()) {
            if self.channel_id(&leg.channel).is_some() {
                continue;
            }
            if let Ok(Some(id)) = self.inner.manager.chain().lookup_id(&leg.channel).await {
                if let Ok(mut ids) = self.inner.channel_ids.lock() {
                    if ids.len() >= MAX_ROUTES_PER_PASS {
                        ids.clear();
                    }
                    ids.insert(leg.channel, id);
                }
            }
        }
    }

    /// The ID address of `channel`, if resolved.
    pub(super) fn channel_id(&self, channel: &Address) -> Option<Address> {
        self.inner.channel_ids.lock().ok()?.get(channel).copied()
    }

    /// Sets the in-flight gauges from the open routes — conditional vouchers held (inbound)
    /// and signed (outbound) — and a hub's capacity: the available funds of its open
    /// outbound channels.
    async fn set_gauges(&self, open: &[RouteRecord]) {
        let metrics = &self.inner.metrics;
        for (leg, inbound) in [("inbound", true), ("outbound", false)] {
            let values: Vec<TokenAmount> =
                open.iter().filter_map(|route| leg_value(route, inbound)).collect();
            let total: TokenAmount = values.iter().sum();
            metrics.set_route_in_flight(leg, values.len(), &total);
        }
        if !self.is_hub() {
            return;
        }
        let mut capacity = TokenAmount::default();
        for (_, channel) in self.open_outbound_channels().await {
            if let Ok(funds) = self.inner.manager.available_funds(&channel).await {
                capacity += funds.non_reserved;
            }
        }
        metrics.set_hub_capacity(&capacity);
    }

    /// Resolves `route` if time has come; whether it changed.
    async fn resolve(
        &self,
        mut route: RouteRecord,
        head: ChainEpoch,
        resends: &mut usize,
    ) -> Result<bool, ConditionalError> {
        let conf = self.inner.settings.params.conf_epochs();
        if self.in_progress(&route.payment_hash) {
            // Being offered or answered right now: its steps are not over.
            return Ok(false);
        }
        match (route.role, route.state) {
            (RouteRole::Payer | RouteRole::Hub, RouteState::Offered)
                if route.outbound.is_none() =>
            {
                self.find_outbound_leg(route).await
            }
            (RouteRole::Payer, RouteState::Offered) | (RouteRole::Hub, RouteState::Forwarded) => {
                let Some(leg) = route.outbound.clone() else { return Ok(false) };
                if head < leg.lock.saturating_add(conf) {
                    return Ok(false);
                }
                let outcome = self.inner.manager.conditional_expire(&leg.channel, leg.lane).await;
                let (state, outcome) = match outcome {
                    Ok(ExpireOutcome::Expired { .. }) => {
                        (RouteState::Expired, RouteOutcome::Expired)
                    }
                    Ok(ExpireOutcome::RedeemedOnChain) => {
                        (RouteState::Redeemed, RouteOutcome::Redeemed)
                    }
                    Err(ConditionalError::SecretKnown(_)) => return self.secret_known(route).await,
                    Err(e) => return Err(e),
                };
                let pending = self.pending_route(&route).await;
                route.state = state;
                self.save(&route).await?;
                if let Some(pending) = pending {
                    self.release(&pending);
                }
                let role = if route.role == RouteRole::Payer { "payer" } else { "hub" };
                self.inner.metrics.route_ended(role, outcome);
                Ok(true)
            }
            (RouteRole::Hub, RouteState::Fulfilled) => {
                if let Some(done) = self.inbound_paid(&route)? {
                    // The payer's voucher is paid: the payee's replacement is (signed and)
                    // sent until the payee acknowledges it.
                    let Some(_claim) = self.take_resend(&route, resends) else { return Ok(false) };
                    return Ok(self.replace_outbound(&mut route, done).await);
                }
                let deadline = route.hub_deadline.unwrap_or(ChainEpoch::MAX);
                let submit_by = deadline.saturating_sub(self.inner.settings.params.submit_margin());
                if head < submit_by {
                    return Ok(false);
                }
                match self.hub_redeem(&mut route).await {
                    Ok(()) => Ok(true),
                    Err(e) => {
                        let Some(inbound) = route.inbound.as_ref() else { return Err(e) };
                        if head < inbound.lock.saturating_add(conf) {
                            return Err(e);
                        }
                        // Past the payer's lock by the confirmation depth, unpaid: its voucher
                        // can no longer land, and the route is over.
                        tracing::warn!(error = %e, "a payer's voucher never landed before its lock");
                        route.state = RouteState::Expired;
                        self.save(&route).await?;
                        if let Some(pending) = self.pending_route(&route).await {
                            self.release(&pending);
                        }
                        self.inner.metrics.route_ended("hub", RouteOutcome::Failed);
                        Ok(true)
                    }
                }
            }
            (RouteRole::Payer, RouteState::Fulfilled) => {
                let Some(hub) = self.hub_of(&route).await else { return Ok(false) };
                let Some(_claim) = self.take_resend(&route, resends) else { return Ok(false) };
                Ok(self.replace_inbound_of_hub(&mut route, hub.0, hub.1).await)
            }
            (RouteRole::Payee, RouteState::Fulfilled) => self.payee_close(route, head).await,
            _ => Ok(false),
        }
    }

    /// A route recorded before its outbound voucher was signed, whose leg was never
    /// recorded (the node stopped in between) — a payer's `Vp`, a hub's `Vh`: the leg is
    /// found again among the conditional vouchers pending on this node's channels, and the
    /// route expires normally once its lock has passed; with none, nothing was signed and
    /// the route is over.
    async fn find_outbound_leg(&self, mut route: RouteRecord) -> Result<bool, ConditionalError> {
        let manager = &self.inner.manager;
        for (_, channel) in self.open_outbound_channels().await {
            let pending = manager.pending_conditionals(&channel).await?;
            if let Some(found) = pending.into_iter().find(|p| p.hash == route.payment_hash) {
                route.outbound = Some(Leg {
                    channel,
                    lane: found.lane,
                    nonce: found.nonce,
                    amount: found.amount,
                    lock: found.lock,
                    peer: None,
                });
                if route.role == RouteRole::Hub {
                    route.state = RouteState::Forwarded;
                }
                self.save(&route).await?;
                return Ok(true);
            }
        }
        let role = if route.role == RouteRole::Payer { "payer" } else { "hub" };
        route.state = RouteState::Expired;
        self.save(&route).await?;
        if let Some(pending) = self.pending_route(&route).await {
            self.release(&pending);
        }
        self.inner.metrics.route_ended(role, RouteOutcome::Failed);
        Ok(true)
    }

    /// The hub lands the payer's voucher with the secret (its replacement never came), then
    /// replaces the payee's: the route ends Redeemed once the payee acknowledged that (until
    /// then it stays Fulfilled, the payer's voucher submitted, and the sweep sends the
    /// replacement again).
    async fn hub_redeem(&self, route: &mut RouteRecord) -> Result<(), ConditionalError> {
        let Some(inbound) = route.inbound.clone() else { return Ok(()) };
        let cid = self.inner.manager.conditional_redeem(&inbound.channel, inbound.lane).await?;
        tracing::info!(%cid, lane = inbound.lane, "landed the payer's conditional voucher with the secret");
        self.inner.metrics.route_ended("hub", RouteOutcome::Redeemed);
        self.replace_outbound(route, RouteState::Redeemed).await;
        Ok(())
    }

    /// A hub's route: whether the payer's conditional voucher is paid, and how the route
    /// ends once the payee has its replacement — Replaced when the payer's replacement is
    /// held, Redeemed when the hub submitted the conditional voucher with the secret;
    /// `None` while it is still pending.
    fn inbound_paid(&self, route: &RouteRecord) -> Result<Option<RouteState>, ConditionalError> {
        let Some(inbound) = route.inbound.as_ref() else { return Ok(None) };
        let vouchers = self.lane_vouchers(&inbound.channel, inbound.lane, inbound.nonce)?;
        let received = |v: &&paych_core::store::VoucherRecord| v.origin == VoucherOrigin::Received;
        if vouchers
            .iter()
            .filter(received)
            .any(|v| v.voucher.nonce > inbound.nonce && v.voucher.secret_hash.is_empty())
        {
            return Ok(Some(RouteState::Replaced));
        }
        let submitted = vouchers
            .iter()
            .filter(received)
            .any(|v| v.voucher.nonce == inbound.nonce && v.submitted);
        Ok(submitted.then_some(RouteState::Redeemed))
    }

    /// One of the pass's resends, and the claim on the route's hash while it is sent;
    /// `None` when the pass has sent its share or another call handles the hash.
    fn take_resend(&self, route: &RouteRecord, resends: &mut usize) -> Option<super::Claim> {
        if *resends == 0 {
            return None;
        }
        let hash = <[u8; 32]>::try_from(route.payment_hash.as_slice()).ok()?;
        let claim = self.claim(hash)?;
        // The pass read the route before the claim: another task (the replacement sent in
        // the background) may have moved it on and returned its lane meanwhile. Only a route
        // still as read is sent again — a stale copy would return a lane another route has
        // leased since.
        match self.route(&route.payment_hash, route.role) {
            Ok(Some(fresh)) if fresh.state == route.state => {}
            _ => return None,
        }
        *resends -= 1;
        Some(claim)
    }

    /// The payee's route ends once its conditional voucher is no longer pending: replaced
    /// by the hub's unconditional voucher (Replaced), redeemed on chain (Redeemed), or its
    /// lock passed by the confirmation depth unredeemed (Expired). Its lane takes the hub's
    /// next conditional voucher then.
    async fn payee_close(
        &self,
        mut route: RouteRecord,
        head: ChainEpoch,
    ) -> Result<bool, ConditionalError> {
        let Some(leg) = route.inbound.clone() else { return Ok(false) };
        let vouchers = self.lane_vouchers(&leg.channel, leg.lane, leg.nonce)?;
        let replaced = vouchers.iter().any(|v| {
            v.origin == VoucherOrigin::Received
                && v.voucher.nonce > leg.nonce
                && v.voucher.secret_hash.is_empty()
        });
        let (state, outcome) = if replaced {
            (RouteState::Replaced, RouteOutcome::Replaced)
        } else {
            let on_chain = self.inner.manager.chain().channel(&leg.channel).await?;
            let redeemed = on_chain.lane(leg.lane).is_some_and(|l| l.nonce >= leg.nonce);
            let conf = self.inner.settings.params.conf_epochs();
            if redeemed {
                (RouteState::Redeemed, RouteOutcome::Redeemed)
            } else if head >= leg.lock.saturating_add(conf) {
                (RouteState::Expired, RouteOutcome::Expired)
            } else {
                return Ok(false);
            }
        };
        route.state = state;
        self.save(&route).await?;
        self.inner.metrics.route_ended("payee", outcome);
        Ok(true)
    }

    /// A route whose secret turned out known: recorded fulfilled (the next pass replaces or
    /// redeems).
    async fn secret_known(&self, mut route: RouteRecord) -> Result<bool, ConditionalError> {
        if route.secret.is_none() {
            route.secret = self.inner.manager.known_secret(&route.payment_hash)?;
        }
        if route.secret.is_none() {
            return Ok(false);
        }
        route.state = RouteState::Fulfilled;
        self.save(&route).await?;
        Ok(true)
    }

    /// A secret found on chain: learned at once; a hub that forwarded a route on it lands
    /// the payer's voucher now (the payee redeemed instead of answering).
    pub async fn secret_found(&self, hash: &[u8], secret: &[u8]) -> Result<bool, ConditionalError> {
        if check_secret(secret, hash).is_err() {
            return Ok(false);
        }
        let manager = &self.inner.manager;
        manager.learn_secret(hash, secret).await?;
        let Some(mut route) = manager.store().route(hash)? else { return Ok(false) };
        if route.role != RouteRole::Hub || route.state != RouteState::Forwarded {
            return Ok(false);
        }
        route.secret = Some(secret.to_vec());
        route.state = RouteState::Fulfilled;
        self.save(&route).await?;
        self.hub_redeem(&mut route).await?;
        Ok(true)
    }

    /// Where the hub of a payer's route listens, from the invoice: the hub the route's leg
    /// names, or (a leg found again after a restart names none) the invoice's hub that the
    /// leg's channel goes to.
    async fn hub_of(&self, route: &RouteRecord) -> Option<(libp2p::PeerId, libp2p::Multiaddr)> {
        let leg = route.outbound.as_ref()?;
        let invoice = paych_core::invoice::Invoice::from_cbor(&route.invoice).ok()?;
        if let Some(peer) = leg.peer.as_ref() {
            return invoice
                .hubs
                .iter()
                .filter_map(|hub| super::payer::hub_peer(hub).ok())
                .find(|(id, _)| id.to_string() == *peer);
        }
        let channels = self.open_outbound_channels().await;
        let (to, _) = channels.iter().find(|(_, channel)| *channel == leg.channel)?;
        let hub = invoice.hubs.iter().find(|hub| hub.address == *to)?;
        super::payer::hub_peer(hub).ok()
    }
}
