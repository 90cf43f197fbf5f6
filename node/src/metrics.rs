//! The node's Prometheus metrics, served as text on the API server's `GET /metrics` (no
//! token needed, as Lotus serves its own).
//!
//! One [`Metrics`] per node, shared as an `Arc` by the API, the network loop and the
//! [`MeteredChain`] that wraps the node's chain. Every label takes its values from a fixed
//! set (statuses, purposes, declared API methods), so no input can grow the number of series.
//! This module only counts; it never decides anything.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `paych_vouchers_sent_total` | counter | `status`: the payee's answer, or `failed` |
//! | `paych_vouchers_received_total` | counter | `status`: the answer given |
//! | `paych_sent_attofil_total` | counter | — (the deltas payees accepted) |
//! | `paych_received_attofil_total` | counter | — (the deltas accepted) |
//! | `paych_reconciliations_total` | counter | `role` (`payer`/`payee`), `status` |
//! | `paych_chain_messages_total` | counter | `purpose`: create, add_funds, submit, settle, collect, other |
//! | `paych_chain_message_outcomes_total` | counter | `purpose`, `outcome`: executed, failed, refused |
//! | `paych_libp2p_connections` | gauge | — |
//! | `paych_libp2p_peers` | gauge | — |
//! | `paych_inbound_rate_limited_total` | counter | `protocol` |
//! | `paych_refusals_total` | counter | `reason`: a [`Refusal`] label |
//! | `paych_api_calls_total` | counter | `method`: a declared method, or `unknown` |
//! | `paych_api_batches_total` | counter | — (JSON-RPC batches received) |
//! | `paych_api_batch_calls_total` | counter | — (the calls they held) |
//! | `paych_api_websockets` | gauge | — (open WebSocket connections to the API) |
//! | `paych_retrieval_responses_in_flight` | gauge | — (manifests and chunks being sent) |
//! | `paych_retrieval_bytes_in_flight` | gauge | — (their bytes) |
//! | `paych_retrieval_open_flows` | gauge | — |
//! | `paych_routed_payments_total` | counter | `role` (`payer`/`hub`/`payee`), `outcome`: a [`RouteOutcome`] label |
//! | `paych_hub_fees_attofil_total` | counter | — (fees of the routes the hub completed) |
//! | `paych_hub_capacity_attofil` | gauge | — (available funds on the hub's outbound channels) |
//! | `paych_route_in_flight_attofil` | gauge | `leg` (`inbound`/`outbound`): conditional value pending |
//! | `paych_route_in_flight` | gauge | `leg`: conditional vouchers pending |
//! | `paych_hub_collateral_top_ups_total` | counter | — (auto-collateral messages) |
//! | `paych_hub_collateral_attofil_total` | counter | — (what they added) |
//! | `paych_route_requests_sent_total` | counter | `kind` (`offer`, `replace`, `policy`, `replace_many`), `status`: the answer, or `failed` |
//! | `paych_route_requests_received_total` | counter | `kind` (or `unknown`), `status`: the answer given |

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cid::Cid;
use paych_core::chain::{
    ActorInfo, ActorKind, Chain, ChainError, ChainMessage, ChannelAtDepth, ChannelOnChain,
    MessageLookup, Receipt,
};
use paych_core::types::{Address, ChainEpoch, Message, SignedMessage, TokenAmount};
use paych_protocol::VoucherStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

use crate::refusals::{Refusal, RefusalLog};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Pushed messages whose purpose is remembered until their outcome is known, at most.
pub const MAX_TRACKED_MESSAGES: usize = 4096;

/// Declares label sets, each a struct of `&'static str` labels (bounded by construction).
macro_rules! label_sets {
    ($(
        $(#[doc = $doc:literal])+
        $name:ident { $($(#[doc = $field_doc:literal])+ $field:ident),+ }
    )*) => {$(
        $(#[doc = $doc])+
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        pub struct $name {
            $($(#[doc = $field_doc])+ pub $field: &'static str,)+
        }
    )*};
}

label_sets! {
    /// A `status` label.
    StatusLabel {
        /// The status, in lower case.
        status
    }
    /// The labels of a reconciliation.
    ReconcileLabels {
        /// `payer` (answering a request) or `payee` (asking).
        role,
        /// The outcome.
        status
    }
    /// A `purpose` label.
    PurposeLabel {
        /// Why the message was sent.
        purpose
    }
    /// The labels of a message outcome.
    OutcomeLabels {
        /// Why the message was sent.
        purpose,
        /// `executed`, `failed` (a non-zero exit code) or `refused` (at push).
        outcome
    }
    /// A `protocol` label.
    ProtocolLabel {
        /// The protocol, e.g. `voucher`.
        protocol
    }
    /// A `reason` label.
    ReasonLabel {
        /// Why, a [`Refusal`] label.
        reason
    }
    /// The labels of a routed payment's end.
    RoutedPaymentLabels {
        /// `payer`, `hub` or `payee`.
        role,
        /// A [`RouteOutcome`] label.
        outcome
    }
    /// A `leg` label: `inbound` (conditional vouchers held) or `outbound` (signed).
    LegLabel {
        /// The leg.
        leg
    }
    /// A `method` label.
    MethodLabel {
        /// A declared API method, or `unknown`.
        method
    }
    /// The labels of a route request.
    RouteLabels {
        /// What it asked: `offer`, `replace`, `policy` (`unknown` for one the loop refused
        /// before reading its kind).
        kind,
        /// The answer's status in snake case, or `failed` (no answer).
        status
    }
}

type FloatCounter = Counter<f64, AtomicU64>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// How a routed payment ended, for one party.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteOutcome {
    /// The secret came back (payer, hub) or was revealed (payee).
    Fulfilled,
    /// The conditional voucher was replaced by an unconditional one.
    Replaced,
    /// Refused with a status (binds nobody).
    Refused,
    /// The lock passed by the confirmation depth with nothing redeemed: the lanes came back.
    Expired,
    /// Redeemed on chain with its secret (a payer that never replaced, a payee that
    /// redeemed instead of answering).
    Redeemed,
    /// Failed before any voucher left (no hub, no policy, a fee too high, …).
    Failed,
}

impl RouteOutcome {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            RouteOutcome::Fulfilled => "fulfilled",
            RouteOutcome::Replaced => "replaced",
            RouteOutcome::Refused => "refused",
            RouteOutcome::Expired => "expired",
            RouteOutcome::Redeemed => "redeemed",
            RouteOutcome::Failed => "failed",
        }
    }
}

/// The node's counters and gauges.
pub struct Metrics {
    registry: Registry,
    /// Vouchers sent, by the payee's answer.
    pub vouchers_sent: Family<StatusLabel, Counter>,
    /// Vouchers received, by the answer given.
    pub vouchers_received: Family<StatusLabel, Counter>,
    /// The deltas payees accepted, in attoFIL.
    pub sent_attofil: FloatCounter,
    /// The deltas accepted from payers, in attoFIL.
    pub received_attofil: FloatCounter,
    /// Reconciliations, by role and outcome.
    pub reconciliations: Family<ReconcileLabels, Counter>,
    /// Chain messages pushed, by purpose.
    pub chain_messages: Family<PurposeLabel, Counter>,
    /// Outcomes of chain messages, by purpose.
    pub chain_message_outcomes: Family<OutcomeLabels, Counter>,
    /// Open libp2p connections.
    pub connections: Gauge,
    /// Connected libp2p peers.
    pub peers: Gauge,
    /// Inbound requests answered `RateLimited`, by protocol.
    pub rate_limited: Family<ProtocolLabel, Counter>,
    /// API calls, by method.
    pub api_calls: Family<MethodLabel, Counter>,
    /// API batches received.
    pub api_batches: Counter,
    /// The calls those batches held.
    pub api_batch_calls: Counter,
    /// Open WebSocket connections to the API.
    pub api_websockets: Gauge,
    /// Retrieval responses handed to the network and not yet sent.
    pub retrieval_responses_in_flight: Gauge,
    /// Their bytes.
    pub retrieval_bytes_in_flight: Gauge,
    /// Open retrieval flows.
    pub retrieval_open_flows: Gauge,
    /// Route requests sent, by kind and the answer's status (`failed`: no answer).
    pub route_requests_sent: Family<RouteLabels, Counter>,
    /// Route requests received, by kind and the status answered.
    pub route_requests_received: Family<RouteLabels, Counter>,
    /// Connections and requests refused, by reason.
    pub refusals: Family<ReasonLabel, Counter>,
    /// The routed payments' and the hub's metrics.
    pub hub: HubMetrics,
    /// Paces the log lines of refusals.
    refusal_log: RefusalLog,
    /// Pushed messages' purposes, until their outcome is counted (bounded).
    pending: Mutex<(HashMap<Cid, &'static str>, VecDeque<Cid>)>,
}

/// The routed payments' and the hub's metrics (design §9, docs/hub.md).
pub struct HubMetrics {
    /// Routed payments' ends, by role and outcome.
    pub routed_payments: Family<RoutedPaymentLabels, Counter>,
    /// The fees of the routes the hub completed, in attoFIL.
    pub hub_fees_attofil: FloatCounter,
    /// Available funds on the hub's outbound channels, in attoFIL.
    pub hub_capacity_attofil: FloatGauge,
    /// Conditional value pending, by leg, in attoFIL.
    pub route_in_flight_attofil: Family<LegLabel, FloatGauge>,
    /// Conditional vouchers pending, by leg.
    pub route_in_flight: Family<LegLabel, Gauge>,
    /// Auto-collateral messages sent.
    pub hub_collateral_top_ups: Counter,
    /// What they added, in attoFIL.
    pub hub_collateral_attofil: FloatCounter,
}

impl HubMetrics {
    /// Fresh metrics, registered in `r`.
    fn new(r: &mut Registry) -> Self {
        HubMetrics {
            routed_payments: registered(
                r,
                "paych_routed_payments",
                "Routed payments' ends, by role (payer, hub, payee) and outcome",
            ),
            hub_fees_attofil: registered(
                r,
                "paych_hub_fees_attofil",
                "Fees of the routes this hub completed, in attoFIL",
            ),
            hub_capacity_attofil: registered(
                r,
                "paych_hub_capacity_attofil",
                "Available funds on this hub's outbound channels, in attoFIL",
            ),
            route_in_flight_attofil: registered(
                r,
                "paych_route_in_flight_attofil",
                "Conditional value pending, by leg (inbound: held, outbound: signed), in attoFIL",
            ),
            route_in_flight: registered(
                r,
                "paych_route_in_flight",
                "Conditional vouchers pending, by leg (inbound: held, outbound: signed)",
            ),
            hub_collateral_top_ups: registered(
                r,
                "paych_hub_collateral_top_ups",
                "Auto-collateral add-funds messages sent",
            ),
            hub_collateral_attofil: registered(
                r,
                "paych_hub_collateral_attofil",
                "Funds auto-collateral added, in attoFIL",
            ),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A fresh metric of type `M`, registered in `registry` as `name` with `help`.
fn registered<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// Fresh metrics, every counter at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let r = &mut registry;
        Metrics {
            vouchers_sent: registered(
                r,
                "paych_vouchers_sent",
                "Vouchers sent to payees, by the payee's answer (failed: no answer)",
            ),
            vouchers_received: registered(
                r,
                "paych_vouchers_received",
                "Vouchers received from payers, by the answer given",
            ),
            sent_attofil: registered(
                r,
                "paych_sent_attofil",
                "The amounts payees accepted, in attoFIL",
            ),
            received_attofil: registered(
                r,
                "paych_received_attofil",
                "The amounts accepted from payers, in attoFIL",
            ),
            reconciliations: registered(
                r,
                "paych_reconciliations",
                "Reconciliations, by role and outcome",
            ),
            chain_messages: registered(
                r,
                "paych_chain_messages",
                "Chain messages pushed, by purpose",
            ),
            chain_message_outcomes: registered(
                r,
                "paych_chain_message_outcomes",
                "Outcomes of the chain messages this process pushed, by purpose",
            ),
            connections: registered(r, "paych_libp2p_connections", "Open libp2p connections"),
            peers: registered(r, "paych_libp2p_peers", "Connected libp2p peers"),
            rate_limited: registered(
                r,
                "paych_inbound_rate_limited",
                "Inbound requests answered RateLimited, by protocol",
            ),
            api_calls: registered(r, "paych_api_calls", "JSON-RPC API calls, by method"),
            api_batches: registered(r, "paych_api_batches", "JSON-RPC API batches received"),
            api_batch_calls: registered(
                r,
                "paych_api_batch_calls",
                "The calls the JSON-RPC API's batches held",
            ),
            api_websockets: registered(
                r,
                "paych_api_websockets",
                "Open WebSocket connections to the JSON-RPC API",
            ),
            retrieval_responses_in_flight: registered(
                r,
                "paych_retrieval_responses_in_flight",
                "Retrieval responses (manifests and chunks) handed to the network and not yet sent",
            ),
            retrieval_bytes_in_flight: registered(
                r,
                "paych_retrieval_bytes_in_flight",
                "Bytes of the retrieval responses in flight",
            ),
            retrieval_open_flows: registered(
                r,
                "paych_retrieval_open_flows",
                "Open retrieval flows",
            ),
            route_requests_sent: registered(
                r,
                "paych_route_requests_sent",
                "Route requests sent, by kind and the answer's status (failed: no answer)",
            ),
            route_requests_received: registered(
                r,
                "paych_route_requests_received",
                "Route requests received, by kind and the status answered",
            ),
            refusals: registered(
                r,
                "paych_refusals",
                "Connections and requests refused (limits hit, error statuses answered), by reason",
            ),
            hub: HubMetrics::new(r),
            registry,
            refusal_log: RefusalLog::default(),
            pending: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// The metrics in the OpenMetrics text format (which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Counts a voucher sent and the payee's answer (`None`: no answer).
    pub fn voucher_sent(&self, status: Option<&'static str>, delta: &TokenAmount) {
        let status = status.unwrap_or("failed");
        self.vouchers_sent.get_or_create(&StatusLabel { status }).inc();
        self.sent_attofil.inc_by(atto_f64(delta));
    }

    /// Counts a voucher received and the answer given.
    pub fn voucher_received(&self, status: &'static str, delta: &TokenAmount) {
        self.vouchers_received.get_or_create(&StatusLabel { status }).inc();
        self.received_attofil.inc_by(atto_f64(delta));
    }

    /// Counts a route request sent and the answer's status (`None`: no answer).
    pub fn route_sent(&self, kind: &'static str, status: Option<&'static str>) {
        let status = status.unwrap_or("failed");
        self.route_requests_sent.get_or_create(&RouteLabels { kind, status }).inc();
    }

    /// Counts a route request received and the status answered.
    pub fn route_received(&self, kind: &'static str, status: &'static str) {
        self.route_requests_received.get_or_create(&RouteLabels { kind, status }).inc();
    }

    /// Counts a reconciliation.
    pub fn reconciliation(&self, role: &'static str, status: &'static str) {
        self.reconciliations.get_or_create(&ReconcileLabels { role, status }).inc();
    }

    /// Counts an inbound request refused for its rate.
    pub fn rate_limited(&self, protocol: &'static str) {
        self.rate_limited.get_or_create(&ProtocolLabel { protocol }).inc();
    }

    /// Counts a refusal and logs it at `info`, at most one line per reason per
    /// [`crate::refusals::LOG_INTERVAL`] (the next line says how many were left out).
    pub fn refused(&self, refusal: Refusal, detail: std::fmt::Arguments<'_>) {
        self.refusals.get_or_create(&ReasonLabel { reason: refusal.label() }).inc();
        if let Some(left_out) = self.refusal_log.admit(refusal, Instant::now()) {
            tracing::info!(reason = refusal.label(), left_out, "refused: {detail}");
        }
    }

    /// Counts an API call of `method`: the API passes the declared name of the method
    /// called, or `unknown`, so that the labels stay bounded.
    /// Counts an API batch of `calls` calls.
    pub fn api_batch(&self, calls: usize) {
        self.api_batches.inc();
        self.api_batch_calls.inc_by(u64::try_from(calls).unwrap_or(u64::MAX));
    }

    /// Counts one API call of `method`.
    pub fn api_call(&self, method: &'static str) {
        self.api_calls.get_or_create(&MethodLabel { method }).inc();
    }

    /// Sets the connection and peer gauges.
    pub fn set_connections(&self, connections: usize, peers: usize) {
        self.connections.set(i64::try_from(connections).unwrap_or(i64::MAX));
        self.peers.set(i64::try_from(peers).unwrap_or(i64::MAX));
    }

    /// Sets the retrieval gauges: responses in flight, their bytes, open flows.
    pub fn set_retrieval_load(&self, responses: usize, bytes: usize, flows: usize) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.retrieval_responses_in_flight.set(gauge(responses));
        self.retrieval_bytes_in_flight.set(gauge(bytes));
        self.retrieval_open_flows.set(gauge(flows));
    }

    /// Counts a routed payment's end for `role` (`payer`, `hub` or `payee`).
    pub fn route_ended(&self, role: &'static str, outcome: RouteOutcome) {
        self.hub
            .routed_payments
            .get_or_create(&RoutedPaymentLabels { role, outcome: outcome.label() })
            .inc();
    }

    /// Routed payments that ended as `outcome` in `role` so far.
    pub fn routes_ended(&self, role: &'static str, outcome: RouteOutcome) -> u64 {
        self.hub
            .routed_payments
            .get_or_create(&RoutedPaymentLabels { role, outcome: outcome.label() })
            .get()
    }

    /// Counts a fee the hub earned.
    pub fn hub_fee(&self, fee: &TokenAmount) {
        self.hub.hub_fees_attofil.inc_by(atto_f64(fee));
    }

    /// Sets the hub's capacity gauge.
    pub fn set_hub_capacity(&self, available: &TokenAmount) {
        self.hub.hub_capacity_attofil.set(atto_f64(available));
    }

    /// Sets the conditional vouchers pending on `leg` (`inbound` or `outbound`): how many,
    /// and their value.
    pub fn set_route_in_flight(&self, leg: &'static str, count: usize, value: &TokenAmount) {
        let label = LegLabel { leg };
        self.hub
            .route_in_flight
            .get_or_create(&label)
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        self.hub.route_in_flight_attofil.get_or_create(&label).set(atto_f64(value));
    }

    /// Counts an auto-collateral message adding `amount`.
    pub fn collateral_top_up(&self, amount: &TokenAmount) {
        self.hub.hub_collateral_top_ups.inc();
        self.hub.hub_collateral_attofil.inc_by(atto_f64(amount));
    }

    fn pushed(&self, cid: Cid, purpose: &'static str) {
        self.chain_messages.get_or_create(&PurposeLabel { purpose }).inc();
        let Ok(mut pending) = self.pending.lock() else { return };
        let (purposes, order) = &mut *pending;
        if purposes.insert(cid, purpose).is_none() {
            order.push_back(cid);
        }
        while order.len() > MAX_TRACKED_MESSAGES {
            if let Some(old) = order.pop_front() {
                purposes.remove(&old);
            }
        }
    }

    fn outcome(&self, purpose: &'static str, outcome: &'static str) {
        self.chain_message_outcomes.get_or_create(&OutcomeLabels { purpose, outcome }).inc();
    }

    /// Counts the outcome of `cid` if this process pushed it and has not counted it yet.
    fn landed(&self, cid: &Cid, ok: bool) {
        let purpose = match self.pending.lock() {
            Ok(mut pending) => pending.0.remove(cid),
            Err(_) => None,
        };
        if let Some(purpose) = purpose {
            self.outcome(purpose, if ok { "executed" } else { "failed" });
        }
    }
}

/// A voucher status as a metrics label.
pub fn status_label(status: VoucherStatus) -> &'static str {
    use VoucherStatus as S;
    match status {
        S::Accepted => "accepted",
        S::Covered => "covered",
        S::AlreadyHeld => "already_held",
        S::HashLocked => "hash_locked",
        S::MessageLocked => "message_locked",
        S::Merges => "merges",
        S::SettleHeight => "settle_height",
        S::RateLimited => "rate_limited",
        S::UnknownChannel => "unknown_channel",
        S::InvalidSignature => "invalid_signature",
        S::StaleNonce => "stale_nonce",
        S::InsufficientFunds => "insufficient_funds",
        S::TimeLock => "time_lock",
        S::Settling => "settling",
        S::BelowMinimum => "below_minimum",
        S::Malformed => "malformed",
        S::Internal => "internal",
    }
}

/// An amount as a float (exact below 2^53 attoFIL; close enough above, for a counter).
fn atto_f64(amount: &TokenAmount) -> f64 {
    amount.atto().to_string().parse().unwrap_or(0.0)
}

/// Why a message is sent, from its recipient and method: Init's `Exec` creates a channel,
/// a plain send adds funds, the payment-channel methods 2, 3 and 4 submit a voucher,
/// settle and collect.
pub fn message_purpose(message: &Message) -> &'static str {
    if message.to == Address::new_id(1) && message.method == 2 {
        return "create";
    }
    match message.method {
        0 => "add_funds",
        2 => "submit",
        3 => "settle",
        4 => "collect",
        _ => "other",
    }
}

/// A [`Chain`] that counts the messages pushed through it and their outcomes.
pub struct MeteredChain {
    inner: Arc<dyn Chain>,
    metrics: Arc<Metrics>,
}

impl MeteredChain {
    /// Wraps `inner`, counting into `metrics`.
    pub fn new(inner: Arc<dyn Chain>, metrics: Arc<Metrics>) -> Self {
        MeteredChain { inner, metrics }
    }
}

#[async_trait]
impl Chain for MeteredChain {
    async fn head(&self) -> Result<ChainEpoch, ChainError> {
        self.inner.head().await
    }

    async fn actor(&self, addr: &Address) -> Result<Option<ActorInfo>, ChainError> {
        self.inner.actor(addr).await
    }

    async fn channel(&self, channel: &Address) -> Result<ChannelOnChain, ChainError> {
        self.inner.channel(channel).await
    }

    async fn channel_at_head(
        &self,
        channel: &Address,
    ) -> Result<(ChainEpoch, ChannelOnChain), ChainError> {
        self.inner.channel_at_head(channel).await
    }

    async fn balance_at(
        &self,
        addr: &Address,
        epoch: ChainEpoch,
    ) -> Result<Option<TokenAmount>, ChainError> {
        self.inner.balance_at(addr, epoch).await
    }

    async fn channel_at_depth(
        &self,
        channel: &Address,
        depth: u64,
    ) -> Result<ChannelAtDepth, ChainError> {
        self.inner.channel_at_depth(channel, depth).await
    }

    async fn lookup_id(&self, addr: &Address) -> Result<Option<Address>, ChainError> {
        self.inner.lookup_id(addr).await
    }

    async fn account_key(&self, addr: &Address) -> Result<Address, ChainError> {
        self.inner.account_key(addr).await
    }

    async fn next_nonce(&self, addr: &Address) -> Result<u64, ChainError> {
        self.inner.next_nonce(addr).await
    }

    async fn estimate_gas(&self, message: Message) -> Result<Message, ChainError> {
        self.inner.estimate_gas(message).await
    }

    async fn push(&self, message: &SignedMessage) -> Result<Cid, ChainError> {
        let purpose = message_purpose(&message.message);
        let result = self.inner.push(message).await;
        match &result {
            Ok(cid) => self.metrics.pushed(*cid, purpose),
            Err(_) => {
                self.metrics.chain_messages.get_or_create(&PurposeLabel { purpose }).inc();
                self.metrics.outcome(purpose, "refused");
            }
        }
        result
    }

    async fn wait(
        &self,
        message: &Cid,
        confidence: u64,
        timeout: Duration,
    ) -> Result<MessageLookup, ChainError> {
        let result = self.inner.wait(message, confidence, timeout).await;
        match &result {
            Ok(lookup) => self.metrics.landed(message, lookup.receipt.is_ok()),
            Err(ChainError::Rejected { exit_code: Some(_), .. }) => {
                self.metrics.landed(message, false)
            }
            Err(_) => {}
        }
        result
    }

    async fn search(&self, message: &Cid) -> Result<Option<MessageLookup>, ChainError> {
        let result = self.inner.search(message).await;
        if let Ok(Some(lookup)) = &result {
            self.metrics.landed(message, lookup.receipt.is_ok());
        }
        result
    }

    async fn tipset_messages(&self, epoch: ChainEpoch) -> Result<Vec<ChainMessage>, ChainError> {
        self.inner.tipset_messages(epoch).await
    }

    async fn call(&self, message: &Message) -> Result<Receipt, ChainError> {
        self.inner.call(message).await
    }

    async fn network_name(&self) -> Result<String, ChainError> {
        self.inner.network_name().await
    }

    async fn actor_code(&self, kind: ActorKind) -> Result<Cid, ChainError> {
        self.inner.actor_code(kind).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn encodes_counters_with_their_labels() {
        let metrics = Metrics::new();
        metrics.voucher_sent(Some("accepted"), &TokenAmount::from_atto(5u64));
        metrics.voucher_received("covered", &TokenAmount::default());
        metrics.api_call("Filecoin.PaychList");
        metrics.api_call("unknown");
        metrics.set_connections(2, 1);
        metrics.refused(Refusal::ConnectionsPerIp, format_args!("from 10.0.0.1"));
        metrics.refused(Refusal::ConnectionsPerIp, format_args!("from 10.0.0.1"));
        let text = metrics.encode();
        assert!(text.contains("paych_refusals_total{reason=\"connections_per_ip\"} 2\n"), "{text}");
        assert!(text.contains("# TYPE paych_vouchers_sent counter\n"), "{text}");
        assert!(text.contains("paych_vouchers_sent_total{status=\"accepted\"} 1\n"), "{text}");
        assert!(text.contains("paych_vouchers_received_total{status=\"covered\"} 1\n"), "{text}");
        assert!(text.contains("paych_sent_attofil_total 5"), "{text}");
        assert!(
            text.contains("paych_api_calls_total{method=\"Filecoin.PaychList\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("paych_api_calls_total{method=\"unknown\"} 1\n"), "{text}");
        assert!(text.contains("paych_libp2p_connections 2\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_hubs_routes_fees_capacity_and_in_flight_amounts_are_exported() {
        let metrics = Metrics::new();
        metrics.route_ended("hub", RouteOutcome::Fulfilled);
        metrics.route_ended("payer", RouteOutcome::Refused);
        metrics.hub_fee(&TokenAmount::from_atto(12u64));
        metrics.set_hub_capacity(&TokenAmount::from_atto(500u64));
        metrics.set_route_in_flight("inbound", 2, &TokenAmount::from_atto(30u64));
        metrics.collateral_top_up(&TokenAmount::from_atto(70u64));
        let text = metrics.encode();
        for line in [
            "paych_routed_payments_total{role=\"hub\",outcome=\"fulfilled\"} 1\n",
            "paych_routed_payments_total{role=\"payer\",outcome=\"refused\"} 1\n",
            "paych_hub_fees_attofil_total 12",
            "paych_hub_capacity_attofil 500",
            "paych_route_in_flight{leg=\"inbound\"} 2\n",
            "paych_route_in_flight_attofil{leg=\"inbound\"} 30",
            "paych_hub_collateral_top_ups_total 1\n",
            "paych_hub_collateral_attofil_total 70",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
    }

    /// A log sink the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_flood_of_refusals_is_counted_in_full_and_logged_at_info_once() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        let metrics = Metrics::new();
        tracing::subscriber::with_default(subscriber, || {
            for n in 0..1000 {
                metrics.refused(Refusal::ConnectionsPerIp, format_args!("from 10.0.0.{}", n % 250));
            }
            metrics.refused(Refusal::VoucherRefused, format_args!("stale nonce"));
        });
        let text = metrics.encode();
        assert!(text.contains("paych_refusals_total{reason=\"connections_per_ip\"} 1000\n"));
        assert!(text.contains("paych_refusals_total{reason=\"voucher_refused\"} 1\n"));
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert!(lines[0].contains("INFO") && lines[0].contains("connections_per_ip"), "{log}");
        assert!(lines[0].contains("refused: from 10.0.0.0"), "{log}");
        assert!(lines[1].contains("voucher_refused"), "{log}");
    }

    #[tokio::test]
    async fn a_metered_chain_reads_earlier_balances_from_its_backend() {
        use paych_core::chain::devnet::{Devnet, DevnetConfig};
        let devnet = Devnet::new(DevnetConfig::default()).unwrap();
        let metered = MeteredChain::new(Arc::new(devnet.clone()), Arc::new(Metrics::new()));
        let key = paych_core::crypto::secp_address(&paych_core::crypto::public_key(
            &paych_core::crypto::generate_secret_key().unwrap(),
        ));
        devnet.faucet(&key, TokenAmount::from_atto(5u64)).unwrap();
        devnet.mine(1);
        devnet.faucet(&key, TokenAmount::from_atto(3u64)).unwrap();
        devnet.mine(1);
        let at = |epoch| metered.balance_at(&key, epoch);
        assert_eq!(at(0).await.unwrap(), None);
        assert_eq!(at(1).await.unwrap(), Some(TokenAmount::from_atto(5u64)));
        assert_eq!(at(2).await.unwrap(), Some(TokenAmount::from_atto(8u64)));
        let nowhere = Address::new_id(12345);
        assert!(matches!(
            metered.channel_at_depth(&nowhere, 1).await,
            Err(ChainError::NotFound(_))
        ));
    }

    #[test]
    fn remembers_a_bounded_number_of_pushed_messages() {
        let metrics = Metrics::new();
        for i in 0..MAX_TRACKED_MESSAGES + 10 {
            let digest = paych_core::crypto::blake2b_256(&i.to_le_bytes());
            let hash = cid::multihash::Multihash::<64>::wrap(0xb220, &digest).unwrap();
            metrics.pushed(Cid::new_v1(0x71, hash), "submit");
        }
        let pending = metrics.pending.lock().unwrap();
        assert_eq!(pending.0.len(), MAX_TRACKED_MESSAGES);
        assert_eq!(pending.1.len(), MAX_TRACKED_MESSAGES);
    }
}
