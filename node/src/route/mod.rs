//! Routed payments through a hub (docs/hub.md, the design's §9): the node's side of
//! `/paych/route/1.0.0` as payer, hub and payee, and the hub's operation.
//!
//! - [`config`]: the `[hub]` section of `config.toml` — on or off, fee, caps, capacity,
//!   auto-collateral — and its checks;
//! - [`caps`]: the hub's caps on pending routes per payer, per payee and per channel;
//! - [`collateral`]: auto-collateral of the hub's outbound channels, sized on completed flow;
//! - [`payer`]: paying an invoice — its checks, the choice of hub, the offer, the receipt and
//!   the replacement;
//! - [`hub`]: forwarding an offer to the payee and its replacement, every check of §9 step 3
//!   answered with its own status;
//! - [`payee`]: taking the hub's conditional voucher and revealing the invoice's secret once
//!   it is durable;
//! - [`sweep`]: what time resolves — expired locks give lanes back, a hub lands the payer's
//!   voucher with the secret when the replacement does not come, a secret found on chain;
//! - [`watcher`]: what the node's watchtower watches the chain for, and what it does with a
//!   secret found there;
//! - [`receipt`]: what paying an invoice answers;
//! - [`replacer`]: replacements for one peer sent together, in one request.
//!
//! [`Routes`] holds the parts every role needs and answers inbound route requests (it is the
//! node's [`RouteHandler`]). The rules every party checks (voucher shapes, locks, deadlines,
//! secrets) are `paych_core::route`'s and the manager's; this module drives them over the
//! network and keeps each route's [`RouteRecord`] current, durable before any answer that
//! depends on it. A route's state only moves forward: Offered → Forwarded → Fulfilled →
//! Replaced, or Expired / Redeemed. Nothing here runs unless the node pays an invoice, is
//! paid through a hub, or has `[hub] enabled = 1`.

pub mod caps;
pub mod collateral;
pub mod config;
pub mod hub;
pub mod payee;
pub mod payer;
pub mod receipt;
pub mod replacer;
pub mod sweep;
pub mod watcher;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use libp2p::PeerId;
use paych_core::invoice::{unix_now, Invoice};
use paych_core::manager::{AddVoucherError, PaymentChannelManager};
use paych_core::route::{FeePolicy, HubPolicy, RouteParams, RouteRefusal, SignedHubPolicy};
use paych_core::store::{
    Leg, RouteRecord, RouteRole, RouteState, StoreError, VoucherOrigin, VoucherRecord, Write,
};
use paych_core::types::{Address, SignedVoucher, SETTLE_DELAY};
use paych_core::wallet::Wallet;
use paych_protocol::{RouteReplacement, RouteRequest, RouteResponse, RouteStatus};

use crate::inbound::route::RouteHandler;
use crate::metrics::Metrics;
use crate::pay::Payer;

pub use caps::{CapRefusal, PendingCaps, PendingRoute};
pub use collateral::{CollateralPolicy, CollateralTask, FlowLedger};
pub use config::{HubConfig, HubConfigError};
pub use payer::PayInvoiceError;
pub use receipt::RouteReceipt;
pub use sweep::RouteSweeper;

/// Payment hashes handled at once (offers being answered, invoices being paid), at most;
/// beyond, offers are answered `Busy`.
pub const MAX_ROUTES_IN_PROGRESS: usize = 1024;
/// How long a hub's signed policy stays valid, in seconds.
pub const POLICY_LIFETIME_SECS: u64 = 3600;
/// Hubs' policies a payer keeps, at most (beyond, it forgets them all and asks again).
pub const MAX_CACHED_POLICIES: usize = 256;
/// A payer asks a hub for its policy again once it is this close to expiring, in seconds.
pub const POLICY_REFRESH_SECS: u64 = 60;

/// What a node's routing is set up with.
#[derive(Debug, Clone)]
pub struct RouteSettings {
    /// The `[hub]` section.
    pub hub: HubConfig,
    /// The hub's key address (the `to` of its inbound channels, the `from` of its outbound
    /// ones, the signer of its policy); `None` on a node that is no hub.
    pub hub_address: Option<Address>,
    /// The timing parameters.
    pub params: RouteParams,
}

/// A node's routed payments: it pays invoices through hubs, is paid through them, and (with
/// `[hub] enabled = 1`) routes others' payments. Cheap to clone.
#[derive(Clone)]
pub struct Routes {
    inner: Arc<Inner>,
}

struct Inner {
    manager: PaymentChannelManager,
    wallet: Arc<dyn Wallet>,
    payer: Arc<Payer>,
    settings: RouteSettings,
    metrics: Arc<Metrics>,
    ledger: Arc<FlowLedger>,
    caps: Mutex<PendingCaps>,
    in_progress: Mutex<HashSet<[u8; 32]>>,
    /// Hubs' verified policies, by hub address, at most [`MAX_CACHED_POLICIES`].
    policies: Mutex<HashMap<Address, HubPolicy>>,
    /// The payment hashes of the routes not yet resolved: read from the store at start,
    /// kept with every route written, so that the sweep and the watchtower never read the
    /// routes that are over.
    open: Mutex<BTreeSet<Vec<u8>>>,
    /// The ID addresses of the channels open routes use, as the chain resolved them (a
    /// message may name a channel by either address), filled by the sweep.
    channel_ids: Mutex<HashMap<Address, Address>>,
    /// Sends the replacements, together where several wait for one peer.
    replacer: Arc<replacer::Replacer>,
}

/// A payment hash being handled; released when dropped.
struct Claim {
    routes: Arc<Inner>,
    hash: [u8; 32],
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut set) = self.routes.in_progress.lock() {
            set.remove(&self.hash);
        }
    }
}

impl Routes {
    /// Routing over `manager`, sending through `payer`'s network and reaching payees
    /// through its peer book; the hub's pending routes are counted again from the store.
    pub async fn new(
        manager: PaymentChannelManager,
        wallet: Arc<dyn Wallet>,
        payer: Arc<Payer>,
        settings: RouteSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let mut caps = PendingCaps::default();
        let mut open = BTreeSet::new();
        for route in manager.store().routes()? {
            if is_open(route.state) {
                open.insert(route.payment_hash.clone());
            }
            if route.role != RouteRole::Hub || !is_open(route.state) {
                continue;
            }
            let Some(inbound) = route.inbound.as_ref() else { continue };
            let Ok(on_chain) = manager.chain().channel(&inbound.channel).await else { continue };
            if let Some(pending) = hub::pending_of(&route, on_chain.state.from) {
                caps.count(&pending);
            }
        }
        let replacer = replacer::Replacer::new(payer.network().clone());
        Ok(Routes {
            inner: Arc::new(Inner {
                manager,
                wallet,
                payer,
                replacer,
                settings,
                metrics,
                ledger: Arc::new(FlowLedger::default()),
                caps: Mutex::new(caps),
                in_progress: Mutex::new(HashSet::new()),
                policies: Mutex::new(HashMap::new()),
                open: Mutex::new(open),
                channel_ids: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The completed flow per outbound channel (what auto-collateral sizes on).
    pub fn ledger(&self) -> Arc<FlowLedger> {
        self.inner.ledger.clone()
    }

    /// The manager.
    pub fn manager(&self) -> &PaymentChannelManager {
        &self.inner.manager
    }

    /// The timing parameters.
    pub fn params(&self) -> &RouteParams {
        &self.inner.settings.params
    }

    /// Whether this node answers offers as a hub.
    pub fn is_hub(&self) -> bool {
        self.inner.settings.hub.enabled && self.inner.settings.hub_address.is_some()
    }

    /// The hub's fee policy.
    fn fee_policy(&self) -> FeePolicy {
        self.inner.settings.hub.fee_policy()
    }

    /// The longest lock (epochs beyond the head) the hub takes: one settle window less the
    /// confirmation depth.
    fn max_lock(&self) -> u64 {
        SETTLE_DELAY.unsigned_abs().saturating_sub(self.inner.settings.params.conf)
    }

    /// The hub's policy, signed now.
    fn signed_policy(&self) -> Result<SignedHubPolicy, RouteRefusal> {
        let hub = self.inner.settings.hub_address.filter(|_| self.is_hub());
        let hub = hub.ok_or(RouteRefusal::NotAHub)?;
        let policy = HubPolicy {
            hub,
            fee: self.fee_policy(),
            max_amount: self.inner.settings.hub.max_amount.clone(),
            max_lock: self.max_lock(),
            expires_unix: unix_now().saturating_add(POLICY_LIFETIME_SECS),
        };
        SignedHubPolicy::sign(policy, self.inner.wallet.as_ref())
            .map_err(|e| RouteRefusal::Internal(e.to_string()))
    }

    /// Whether a call handles `hash` now.
    fn in_progress(&self, hash: &[u8]) -> bool {
        let Ok(hash) = <[u8; 32]>::try_from(hash) else { return false };
        self.inner.in_progress.lock().is_ok_and(|set| set.contains(&hash))
    }

    /// Claims `hash` for the call; `None` when another call handles it now or too many are
    /// handled.
    fn claim(&self, hash: [u8; 32]) -> Option<Claim> {
        let mut set = self.inner.in_progress.lock().ok()?;
        if set.len() >= MAX_ROUTES_IN_PROGRESS || !set.insert(hash) {
            return None;
        }
        Some(Claim { routes: self.inner.clone(), hash })
    }

    /// Writes `record`, durable before it returns.
    async fn save(&self, record: &RouteRecord) -> Result<(), StoreError> {
        self.stage(record)?;
        self.inner.manager.store().durable().await
    }

    /// Writes `record` without waiting for it to be durable: the next durable write of the
    /// store (the manager's, which every step that signs, takes or learns something makes;
    /// sled's own flush, every half second, at the latest) carries it. Used where that write
    /// follows at once and comes before anything leaves the node, and where a stop that loses
    /// it only leaves the route a step behind — a replaced route still Fulfilled, whose
    /// replacement is sent again and acknowledged again — saving a flush.
    fn stage(&self, record: &RouteRecord) -> Result<(), StoreError> {
        self.inner.manager.store().apply(vec![Write::Route(record.clone())])?;
        if let Ok(mut open) = self.inner.open.lock() {
            if is_open(record.state) {
                open.insert(record.payment_hash.clone());
            } else {
                open.remove(&record.payment_hash);
            }
        }
        Ok(())
    }

    /// The routes not yet resolved, at most `limit`, read from the store.
    fn open_routes(&self, limit: usize) -> Result<Vec<RouteRecord>, StoreError> {
        let hashes: Vec<Vec<u8>> = match self.inner.open.lock() {
            Ok(open) => open.iter().take(limit).cloned().collect(),
            Err(_) => Vec::new(),
        };
        let store = self.inner.manager.store();
        let mut routes = Vec::with_capacity(hashes.len());
        for hash in hashes {
            if let Some(route) = store.route(&hash)?.filter(|r| is_open(r.state)) {
                routes.push(route);
            }
        }
        Ok(routes)
    }

    /// The stored route of `hash` in `role`.
    fn route(&self, hash: &[u8], role: RouteRole) -> Result<Option<RouteRecord>, StoreError> {
        Ok(self.inner.manager.store().route(hash)?.filter(|r| r.role == role))
    }

    /// The vouchers stored on `channel`'s `lane` from nonce `from` on, in nonce order.
    fn lane_vouchers(
        &self,
        channel: &Address,
        lane: u64,
        from: u64,
    ) -> Result<Vec<VoucherRecord>, StoreError> {
        let store = self.inner.manager.store();
        let Some(record) = store.channel_by_address(channel)? else {
            return Ok(Vec::new());
        };
        store.lane_vouchers(record.id, lane, from)
    }

    /// The unconditional replacement of the conditional voucher `leg` that this node signed
    /// (kept by the manager, durable), if it signed one: what is sent again until the
    /// receiver acknowledges it.
    fn signed_replacement(&self, leg: &Leg) -> Result<Option<SignedVoucher>, StoreError> {
        Ok(self
            .lane_vouchers(&leg.channel, leg.lane, leg.nonce)?
            .into_iter()
            .rev()
            .find(|v| {
                v.origin == VoucherOrigin::Created
                    && v.voucher.nonce > leg.nonce
                    && v.voucher.secret_hash.is_empty()
            })
            .map(|v| v.voucher))
    }

    /// Sets the hub's pending-routes gauge from its caps (the sweep sets every gauge).
    fn update_gauges(&self) {
        if let Ok(caps) = self.inner.caps.lock() {
            let (count, value) = caps.total();
            self.inner.metrics.set_route_in_flight("outbound", count, &value);
        }
    }
}

#[async_trait::async_trait]
impl RouteHandler for Routes {
    async fn handle(&self, peer: PeerId, request: RouteRequest) -> RouteResponse {
        let answer = match request {
            RouteRequest::Policy => self
                .signed_policy()
                .and_then(|p| p.to_cbor().map_err(|e| RouteRefusal::Internal(e.to_string())))
                .map(RouteResponse::policy),
            RouteRequest::Offer { invoice, voucher } => {
                self.offer(peer, invoice, voucher).await.map(RouteResponse::fulfilled)
            }
            RouteRequest::Replace { payment_hash, voucher } => {
                self.replace(&payment_hash, voucher).await.map(|()| RouteResponse::ok())
            }
            RouteRequest::ReplaceMany { replacements } => {
                return self.replace_many(replacements).await;
            }
        };
        answer.unwrap_or_else(|refusal| refused(&refusal))
    }
}

impl Routes {
    /// Several replacements, each taken as if sent alone (together, so that their intakes
    /// share the store's flushes): `Ok` if every one was taken, else the first refusal, its
    /// message naming which. A refused replacement binds nobody, and one taken is
    /// acknowledged again if sent again, so the sender can send each alone to learn its
    /// answer.
    async fn replace_many(&self, replacements: Vec<RouteReplacement>) -> RouteResponse {
        let count = replacements.len();
        let answers = futures::future::join_all(
            replacements.iter().map(|r| self.replace(&r.payment_hash, r.voucher.clone())),
        )
        .await;
        match answers.iter().enumerate().find_map(|(i, a)| a.as_ref().err().map(|e| (i, e))) {
            None => RouteResponse::ok(),
            Some((i, refusal)) => {
                let status = refused(refusal).status;
                RouteResponse::refused(
                    status,
                    format!("replacement {} of {count}: {refusal}", i + 1),
                )
            }
        }
    }

    /// An offer: to this node as the invoice's payee, else as a hub.
    async fn offer(
        &self,
        peer: PeerId,
        invoice_cbor: Vec<u8>,
        voucher: paych_core::types::SignedVoucher,
    ) -> Result<Vec<u8>, RouteRefusal> {
        let invoice = Invoice::from_cbor(&invoice_cbor)
            .map_err(|e| RouteRefusal::InvoiceInvalid(e.to_string()))?;
        if self.inner.wallet.has(&invoice.payee) {
            return self.payee_offer(peer, invoice, voucher).await;
        }
        if !self.is_hub() {
            return Err(RouteRefusal::NotAHub);
        }
        self.hub_offer(peer, invoice_cbor, invoice, voucher).await
    }

    /// A replacement: of the voucher this node holds as the payee, or as the hub.
    async fn replace(
        &self,
        hash: &[u8],
        voucher: paych_core::types::SignedVoucher,
    ) -> Result<(), RouteRefusal> {
        let route = self.inner.manager.store().route(hash).map_err(internal)?;
        match route.map(|r| r.role) {
            Some(RouteRole::Payee) => self.payee_replace(hash, voucher).await,
            Some(RouteRole::Hub) => self.hub_replace(hash, voucher).await,
            _ => Err(RouteRefusal::UnknownRoute),
        }
    }
}

/// A refusal as the route protocol answers it.
fn refused(refusal: &RouteRefusal) -> RouteResponse {
    let status = RouteStatus::from_code(refusal.status()).unwrap_or(RouteStatus::Internal);
    RouteResponse::refused(status, refusal.to_string())
}

/// An internal failure (the store, the chain) as a refusal.
/// The inbound leg of `route` whose conditional voucher `voucher` must replace: on its
/// lane of its channel, or refused.
fn replaced_leg(route: &RouteRecord, voucher: &SignedVoucher) -> Result<Leg, RouteRefusal> {
    let leg = route.inbound.clone().ok_or(RouteRefusal::UnknownRoute)?;
    if voucher.lane != leg.lane || voucher.channel_addr != leg.channel {
        return Err(RouteRefusal::BadReplacement("not on the conditional voucher's lane".into()));
    }
    Ok(leg)
}

impl Routes {
    /// Takes `voucher`, the unconditional replacement of `leg`'s conditional voucher,
    /// through the manager's replacement intake (which takes only the exact replacement of a
    /// conditional voucher held on its lane, and credits nothing: the secret paid the route);
    /// a wrong shape is answered `BadReplacement`.
    async fn take_replacement(
        &self,
        leg: &Leg,
        voucher: &SignedVoucher,
    ) -> Result<(), RouteRefusal> {
        self.inner.manager.replacement_add(&leg.channel, voucher).await.map_err(|e| {
            match intake_refusal(e) {
                RouteRefusal::BadShape(why) => RouteRefusal::BadReplacement(why),
                other => other,
            }
        })
    }
}

fn internal(e: impl std::fmt::Display) -> RouteRefusal {
    RouteRefusal::Internal(e.to_string())
}

/// A holder's intake refusal as a route refusal: the manager's own when it is one of §9,
/// else the voucher's shape.
fn intake_refusal(e: AddVoucherError) -> RouteRefusal {
    match e {
        AddVoucherError::Route(refusal) => refusal,
        AddVoucherError::UnknownChannel(_) | AddVoucherError::WrongDirection { .. } => {
            RouteRefusal::UnknownChannel(e.to_string())
        }
        AddVoucherError::Chain(_) | AddVoucherError::Store(_) => internal(e),
        other => RouteRefusal::BadShape(other.to_string()),
    }
}

/// Whether a route is still unresolved.
fn is_open(state: RouteState) -> bool {
    matches!(state, RouteState::Offered | RouteState::Forwarded | RouteState::Fulfilled)
}
