//! `paych bench --route`: routed payments between three nodes in one process — payer, hub,
//! payee, each a manager on its own sled store with its own networking on loopback, on one
//! in-process devnet — beside direct payments from the same payer to the same payee,
//! measured in the same run.
//!
//! A routed payment is the payee's invoice paid through the hub (the payer's
//! `Routes::pay_invoice`): a conditional voucher to the hub, one from the hub to the payee,
//! the payee's secret back, then both replaced by unconditional vouchers — two exchanges,
//! but ten signature operations against a direct payment's two (see the ceilings below). Its
//! latency is from the call until the receipt. In both measures the
//! invoice is issued before the payment is timed, as a payee hands it out before it is paid
//! (a direct payment likewise starts from the payee's channel, made before); issuing them is
//! timed on its own and reported as invoices per second. A direct payment is a voucher on the
//! payer's own channel to the payee (`/paych/voucher/1.0.0`), created and answered.
//!
//! Both are measured one at a time (latency p50, p99) and pipelined with the same number in
//! flight (payments per second; a pipelined round of routed payments ends once the payer,
//! the hub and the payee have each replaced every route paid), spread over ten rounds that
//! each take their share of the four measures one after the other, so that a machine whose speed drifts slows both sides
//! of each ratio alike. A payment the hub refuses is paid again with a fresh invoice and
//! counted. Targets: routed payments per second ≥ 0.3 × direct, routed p50 ≤ 4 × direct; the
//! ratios are printed, never assumed.
//!
//! Each round also measures the raw work both kinds of payment are made of, as `paych bench`
//! does: bare secp256k1 signs and recoveries on one thread, and pipelined request-response
//! round trips over the same transport stack. From them, each kind's ceiling — the rate at
//! which its unavoidable work could go back to back — and the ratio of the two:
//! - direct: one signature, one recovery, one exchange:
//!   `1 / (1/sign + 1/recover + 1/raw_rr)`;
//! - routed: [`ROUTED_SIGNS`] signatures (the payer's conditional voucher and its replacement,
//!   the hub's two), [`ROUTED_RECOVERIES`] recoveries (the invoice at the payer and at the
//!   hub, each conditional voucher and each replacement at its receiver) and
//!   [`ROUTED_EXCHANGES`] exchanges (the offer and its forward; the secret rides their
//!   answers, and the replacements go in batches, not counted):
//!   `1 / (4/sign + 6/recover + 2/raw_rr)`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::crypto;
use paych_core::invoice::{issue, unix_now, Hub, InvoiceTerms};
use paych_core::manager::ManagerConfig;
use paych_core::types::ChainEpoch;
use paych_core::types::{Address, TokenAmount};
use paych_node::host::Host;
use paych_node::metrics::{Metrics, RouteOutcome};
use paych_node::pay::Payer;
use paych_node::route::{HubConfig, PayInvoiceError, RouteSettings, Routes};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{
    create, micros, party, pay_once, percentile, rate, share, start_host, BenchArgs, Echo, Party,
    Pipeline, Sizes, Target, ROUNDS, STEP_TIMEOUT, UNIT,
};

/// How long the bench's invoices stay payable, seconds.
const INVOICE_EXPIRY_SECS: u64 = 3600;
/// Refusals of the hub one routed payment may meet before the bench gives up on it (each
/// is paid again with a fresh invoice).
const MAX_REFUSALS_PER_PAYMENT: usize = 20;
/// How often the bench looks whether the replacements are done (three counters; the stores
/// are read once they say so).
const REPLACEMENT_POLL: Duration = Duration::from_millis(1);
/// Payments of each kind made before anything is measured.
const WARM_UP: usize = 5;
/// The targets: routed payments per second against direct, at least.
const TARGET_RATE_VS_DIRECT: f64 = 0.3;
/// The targets: routed p50 latency against direct, at most.
const TARGET_P50_VS_DIRECT: f64 = 4.0;
/// Signatures a routed payment needs: the payer's conditional voucher and its replacement,
/// the hub's two (the payee's invoice is signed before the payment).
const ROUTED_SIGNS: f64 = 4.0;
/// Recoveries a routed payment needs: the invoice at the payer and at the hub, each
/// conditional voucher and each replacement at its receiver.
const ROUTED_RECOVERIES: f64 = 6.0;
/// Request-response exchanges a routed payment needs: the offer and its forward.
const ROUTED_EXCHANGES: f64 = 2.0;

/// The raw work measured beside the payments in the same run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawWork {
    /// Bare secp256k1 signs per second, one thread.
    pub sign_per_sec: f64,
    /// Bare secp256k1 recoveries per second, one thread.
    pub recover_per_sec: f64,
    /// Pipelined request-response round trips per second.
    pub rr_per_sec: f64,
}

impl RawWork {
    /// Payments per second if a payment cost only `signs` signatures, `recoveries`
    /// recoveries and `exchanges` round trips, back to back.
    fn ceiling(&self, signs: f64, recoveries: f64, exchanges: f64) -> f64 {
        let per = |n: f64, rate: f64| n / rate.max(1e-9);
        let cost = per(signs, self.sign_per_sec)
            + per(recoveries, self.recover_per_sec)
            + per(exchanges, self.rr_per_sec);
        1.0 / cost.max(1e-12)
    }

    /// A direct payment's ceiling: one signature, one recovery, one exchange (`paych bench`'s
    /// too).
    pub(super) fn direct_ceiling(&self) -> f64 {
        self.ceiling(1.0, 1.0, 1.0)
    }

    fn routed_ceiling(&self) -> f64 {
        self.ceiling(ROUTED_SIGNS, ROUTED_RECOVERIES, ROUTED_EXCHANGES)
    }
}

/// What one `--route` run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteReport {
    payments: u64,
    in_flight: u64,
    routed_payments_per_sec: f64,
    routed_p50_us: f64,
    routed_p99_us: f64,
    direct_payments_per_sec: f64,
    direct_p50_us: f64,
    direct_p99_us: f64,
    invoices_per_sec: f64,
    fee_atto: String,
    refusals: usize,
    last_refusal: String,
    raw: RawWork,
}

impl RouteReport {
    fn rate_vs_direct(&self) -> f64 {
        self.routed_payments_per_sec / self.direct_payments_per_sec.max(1e-9)
    }

    fn p50_vs_direct(&self) -> f64 {
        self.routed_p50_us / self.direct_p50_us.max(1e-9)
    }

    /// The report as `--json` prints it.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "route": true,
            "payments": self.payments,
            "in_flight": self.in_flight,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "routed_payments_per_sec": self.routed_payments_per_sec,
            "routed_p50_us": self.routed_p50_us,
            "routed_p99_us": self.routed_p99_us,
            "direct_payments_per_sec": self.direct_payments_per_sec,
            "direct_p50_us": self.direct_p50_us,
            "direct_p99_us": self.direct_p99_us,
            "invoices_per_sec": self.invoices_per_sec,
            "routed_vs_direct_payments_per_sec": self.rate_vs_direct(),
            "routed_vs_direct_p50": self.p50_vs_direct(),
            "fee_atto": self.fee_atto,
            "hub_refusals": self.refusals,
            "last_hub_refusal": self.last_refusal,
            "raw_sign_per_sec": self.raw.sign_per_sec,
            "raw_recover_per_sec": self.raw.recover_per_sec,
            "raw_rr_per_sec": self.raw.rr_per_sec,
            "direct_ceiling_per_sec": self.raw.direct_ceiling(),
            "routed_ceiling_per_sec": self.raw.routed_ceiling(),
            "direct_vs_ceiling": self.direct_payments_per_sec / self.raw.direct_ceiling(),
            "routed_vs_ceiling": self.routed_payments_per_sec / self.raw.routed_ceiling(),
            "routed_vs_direct_ceilings": self.ceilings_ratio(),
        })
    }

    /// What the routed payments per second would be against direct if both ran at their
    /// ceilings.
    fn ceilings_ratio(&self) -> f64 {
        self.raw.routed_ceiling() / self.raw.direct_ceiling()
    }

    /// The report as people read it.
    pub fn table(&self) -> String {
        let verdict = |ok: bool| if ok { "met" } else { "missed" };
        let (rate, p50) = (self.rate_vs_direct(), self.p50_vs_direct());
        format!(
            "paych bench --route: {} payments of each kind, {} in flight, {} cores\n\
             \n\
             {:<10} {:>12} {:>12} {:>12}\n\
             {:<10} {:>10.0}/s {:>9.0} µs {:>9.0} µs\n\
             {:<10} {:>10.0}/s {:>9.0} µs {:>9.0} µs\n\
             \n\
             routed: payer → hub → payee with hash-locked vouchers, the hub's fee {} attoFIL\n\
             invoices the payee issued beforehand, one at a time (untimed above): {:.0}/s\n\
             routed payments the hub refused, each paid again with a fresh invoice: {}{}\n\
             direct: a voucher on the payer's own channel to the payee\n\
             \n\
             routed / direct payments per second = {:.2} (target >= {TARGET_RATE_VS_DIRECT}: {})\n\
             routed / direct p50 latency = {:.2} (target <= {TARGET_P50_VS_DIRECT}: {})\n\
             \n\
             raw, same run: sign {:.0}/s, recover {:.0}/s (one thread), request-response {:.0}/s\n\
             direct ceiling = 1 / (1/sign + 1/recover + 1/raw_rr) = {:.0}/s; direct / ceiling = {:.2}\n\
             routed ceiling = 1 / (4/sign + 6/recover + 2/raw_rr) = {:.0}/s; routed / ceiling = {:.2}\n\
             routed / direct at their ceilings = {:.2}\n",
            self.payments,
            self.in_flight,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "",
            "pipelined",
            "p50",
            "p99",
            "routed",
            self.routed_payments_per_sec,
            self.routed_p50_us,
            self.routed_p99_us,
            "direct",
            self.direct_payments_per_sec,
            self.direct_p50_us,
            self.direct_p99_us,
            self.fee_atto,
            self.invoices_per_sec,
            self.refusals,
            if self.last_refusal.is_empty() {
                String::new()
            } else {
                format!(" (the last: {})", self.last_refusal)
            },
            rate,
            verdict(rate >= TARGET_RATE_VS_DIRECT),
            p50,
            verdict(p50 <= TARGET_P50_VS_DIRECT),
            self.raw.sign_per_sec,
            self.raw.recover_per_sec,
            self.raw.rr_per_sec,
            self.raw.direct_ceiling(),
            self.direct_payments_per_sec / self.raw.direct_ceiling(),
            self.raw.routed_ceiling(),
            self.routed_payments_per_sec / self.raw.routed_ceiling(),
            self.ceilings_ratio(),
        )
    }
}

/// One node of the three: its manager, its networking and its routed payments.
struct RouteNode {
    party: Party,
    host: Host,
    routes: Routes,
    metrics: Arc<Metrics>,
}

impl RouteNode {
    /// A node of the devnet whose key holds `fil` FIL, reaching `peers` (payee address →
    /// where it listens), answering `/paych/route/1.0.0` — as a hub when `hub.enabled`.
    async fn start(
        devnet: &Devnet,
        dir: &Path,
        name: &str,
        fil: u64,
        hub: HubConfig,
        peers: Vec<(Address, libp2p::Multiaddr)>,
    ) -> anyhow::Result<Self> {
        let party = party(devnet, dir, name, fil).await?;
        let host = start_host(&party.manager).await?;
        let net = host.client().clone();
        let payer = Arc::new(Payer::new(party.manager.clone(), net, peers.into_iter().collect()));
        let settings = RouteSettings {
            hub_address: hub.enabled.then_some(party.addr),
            hub,
            params: ManagerConfig::default().route,
        };
        let metrics = Arc::new(Metrics::new());
        let wallet = party.wallet.clone();
        let routes =
            Routes::new(party.manager.clone(), wallet, payer, settings, metrics.clone()).await?;
        host.route_handler().set(Arc::new(routes.clone()));
        Ok(RouteNode { party, host, routes, metrics })
    }

    /// Routes this node replaced in `role` so far.
    fn replaced(&self, role: &'static str) -> u64 {
        self.metrics.routes_ended(role, RouteOutcome::Replaced)
    }

    /// How peers reach this node: `<listen address>/p2p/<peer id>`.
    fn multiaddr(&self) -> anyhow::Result<String> {
        let addr = self.host.listen_addrs().first().context("the node listens nowhere")?;
        Ok(format!("{addr}/p2p/{}", self.host.peer_id()))
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.host.shutdown(STEP_TIMEOUT).await;
        self.party.manager.shutdown().await?;
        Ok(())
    }
}

/// The three nodes, their channels, and the direct lane.
struct Triangle {
    payer: RouteNode,
    hub: RouteNode,
    payee: RouteNode,
    hub_entry: Hub,
    /// The payer's own channel to the payee, its lane, and its cumulative amount so far.
    direct: (Address, u64, u64),
    direct_target: Target,
    margin: ChainEpoch,
    /// The payer's channel to the hub and the hub's to the payee.
    routed_channels: (Address, Address),
}

/// The three nodes on one devnet, with channels payer → hub, hub → payee and payer →
/// payee, the hub taking `in_flight` pipelined routes. Blocks come every 10 ms while the channels are made and stop before anything is
/// measured (a real chain makes one every 30 s).
async fn start_triangle(dir: &Path, in_flight: usize) -> anyhow::Result<Triangle> {
    let devnet = Devnet::new(DevnetConfig {
        block_time: Some(Duration::from_millis(10)),
        ..DevnetConfig::default()
    })
    .context("cannot start the devnet")?;
    let miner = devnet.start_mining().context("the devnet has no block time")?;
    // The payer's routes stay pending at the hub until its replacement arrives, after the
    // receipt: room for the pipelined payments and the replacements behind them.
    let pending = (4 * in_flight).min(paych_node::route::config::MAX_PENDING_COUNT);
    let hub_config = HubConfig {
        enabled: true,
        max_pending_count_per_payer: pending,
        max_pending_count_per_payee: pending,
        ..HubConfig::default()
    };
    let payee = RouteNode::start(&devnet, dir, "payee", 1, HubConfig::default(), vec![]).await?;
    let reach_payee = vec![(payee.party.addr, payee.multiaddr()?.parse()?)];
    let hub = RouteNode::start(&devnet, dir, "hub", 10, hub_config, reach_payee).await?;
    let payer = RouteNode::start(&devnet, dir, "payer", 10, HubConfig::default(), vec![]).await?;
    let routed_channels = (
        open_channel(&payer.party, &hub.party).await?,
        open_channel(&hub.party, &payee.party).await?,
    );
    let direct = open_channel(&payer.party, &payee.party).await?;
    let lane = payer.party.manager.allocate_lane(&direct).await?;
    miner.abort();
    let hub_entry = Hub { address: hub.party.addr, multiaddr: hub.multiaddr()? };
    let direct_target = Target {
        net: payer.host.client().clone(),
        peer: payee.host.peer_id(),
        addrs: payee.host.listen_addrs().to_vec(),
    };
    let margin = ManagerConfig::default().route.payee_margin();
    Ok(Triangle {
        payer,
        hub,
        payee,
        hub_entry,
        direct: (direct, lane, 0),
        direct_target,
        margin,
        routed_channels,
    })
}

/// A channel from `from` to `to` with 1 FIL, waited for.
async fn open_channel(from: &Party, to: &Party) -> anyhow::Result<Address> {
    let handle = from
        .manager
        .create(from.addr, to.addr, TokenAmount::from_whole(1), TokenAmount::default())
        .await?;
    let sentinel = handle.wait_sentinel.context("the channel create sent no message")?;
    Ok(tokio::time::timeout(STEP_TIMEOUT, from.manager.get_wait_ready(&sentinel)).await??)
}

impl Triangle {
    /// `count` invoices of the payee for one unit each, through the hub, in their text form.
    async fn invoices(&self, count: usize) -> anyhow::Result<Vec<String>> {
        let (manager, payee) = (&self.payee.party.manager, &self.payee.party);
        let mut texts = Vec::with_capacity(count);
        for _ in 0..count {
            let terms = InvoiceTerms {
                payee: payee.addr,
                amount: TokenAmount::from_atto(UNIT),
                expiry: unix_now() + INVOICE_EXPIRY_SECS,
                payee_margin: self.margin,
                hubs: vec![self.hub_entry.clone()],
            };
            let invoice = issue(manager.store().as_ref(), payee.wallet.as_ref(), terms).await?;
            texts.push(invoice.to_text()?);
        }
        Ok(texts)
    }

    /// One direct payment: a voucher on the direct lane, created and answered.
    async fn pay_direct(&mut self) -> anyhow::Result<()> {
        let (channel, lane, paid) = &mut self.direct;
        *paid += UNIT;
        pay_once(&self.payer.party.manager, &self.direct_target, channel, *lane, *paid).await
    }

    /// `count` direct payments with at most `in_flight` awaiting their answer.
    async fn pay_direct_pipelined(&mut self, count: usize, in_flight: usize) -> anyhow::Result<()> {
        let manager = &self.payer.party.manager;
        let (channel, lane, paid) = &mut self.direct;
        let mut pipeline = Pipeline::new(in_flight);
        for _ in 0..count {
            let slot = pipeline.slot().await?;
            *paid += UNIT;
            let voucher = create(manager, channel, *lane, *paid).await?;
            let target = self.direct_target.clone();
            pipeline.spawn(slot, async move { target.send(voucher).await.map(drop) })?;
        }
        pipeline.finish().await
    }

    /// `count` routed payments with at most `in_flight` routes pending at once.
    async fn pay_routed_pipelined(
        self: &Arc<Self>,
        texts: Vec<String>,
        in_flight: usize,
        refused: &Arc<Refusals>,
    ) -> anyhow::Result<()> {
        let mut pipeline = Pipeline::new(in_flight);
        for text in texts {
            let slot = pipeline.slot().await?;
            let (triangle, refused) = (self.clone(), refused.clone());
            pipeline.spawn(slot, async move {
                triangle.pay_routed(Some(text), &refused).await.map(drop)
            })?;
        }
        pipeline.finish().await
    }

    /// One routed payment of a fresh invoice, paid again with another when the hub refuses
    /// it (counted in `refused`); its fee. A refused offer binds nobody: its conditional
    /// voucher stays pending on the payer's lane until its lock has passed.
    async fn pay_routed(
        &self,
        mut issued: Option<String>,
        refused: &Refusals,
    ) -> anyhow::Result<TokenAmount> {
        for _ in 0..MAX_REFUSALS_PER_PAYMENT {
            let text = match issued.take() {
                Some(text) => text,
                None => self.invoices(1).await?.pop().context("no invoice issued")?,
            };
            match pay_routed(&self.payer.routes, &text).await? {
                Ok(fee) => return Ok(fee),
                Err(refusal) => refused.record(refusal),
            }
        }
        anyhow::bail!(
            "the hub refused one payment {MAX_REFUSALS_PER_PAYMENT} times: {}",
            refused.last()
        )
    }

    /// Waits until the payer, the hub and the payee have each replaced every route the
    /// payer was answered for (the replacements follow the receipts in the background).
    /// Polls the three nodes' counters of replaced routes, which cost nothing to read, so
    /// that the wait takes no CPU from the replacements it waits for; [`Self::check_replaced`]
    /// then reads the stores.
    async fn await_replacements(&self) -> anyhow::Result<()> {
        let fulfilled = self.payer.metrics.routes_ended("payer", RouteOutcome::Fulfilled);
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let replaced = [
                self.payer.replaced("payer"),
                self.hub.replaced("hub"),
                self.payee.replaced("payee"),
            ];
            if replaced.iter().all(|n| *n >= fulfilled) {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "routes replaced (payer, hub, payee): {replaced:?} of {fulfilled} after \
                     {STEP_TIMEOUT:?}"
                );
            }
            tokio::time::sleep(REPLACEMENT_POLL).await;
        }
    }

    /// Checks in the stores that no conditional voucher is pending — but those of the offers
    /// the hub refused, which stay pending on the payer's side until their locks pass.
    async fn check_replaced(&self, refused: &Refusals) -> anyhow::Result<()> {
        let (to_hub, to_payee) = &self.routed_channels;
        let payer = self.payer.party.manager.pending_conditionals(to_hub).await?.len();
        let pending = payer.saturating_sub(refused.count())
            + self.hub.party.manager.pending_conditionals(to_payee).await?.len()
            + self.payee.party.manager.pending_conditionals(to_payee).await?.len();
        anyhow::ensure!(
            pending == 0,
            "{pending} conditional vouchers still pending once every route was replaced"
        );
        Ok(())
    }

    async fn stop(self) -> anyhow::Result<()> {
        for node in [self.payer, self.hub, self.payee] {
            node.stop().await?;
        }
        Ok(())
    }
}

/// Pays the invoice `text` through the hub: its fee, or the hub's refusal.
async fn pay_routed(
    routes: &Routes,
    text: &str,
) -> anyhow::Result<Result<TokenAmount, PayInvoiceError>> {
    let paid = tokio::time::timeout(STEP_TIMEOUT, routes.pay_invoice(text, None))
        .await
        .map_err(|_| anyhow!("a routed payment took longer than {STEP_TIMEOUT:?}"))?;
    match paid {
        Ok(receipt) => Ok(Ok(receipt.fee)),
        Err(refused @ PayInvoiceError::Refused { .. }) => Ok(Err(refused)),
        Err(e) => Err(anyhow!("a routed payment failed: {e}")),
    }
}

/// The hub's refusals of routed payments: how many, and the last one's text.
#[derive(Default)]
struct Refusals {
    count: AtomicUsize,
    last: std::sync::Mutex<String>,
}

impl Refusals {
    fn record(&self, refusal: PayInvoiceError) {
        self.count.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut last) = self.last.lock() {
            *last = refusal.to_string();
        }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    fn last(&self) -> String {
        self.last.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// What the rounds measured.
#[derive(Default)]
struct Measured {
    routed: Vec<Duration>,
    direct: Vec<Duration>,
    routed_pipelined: Duration,
    direct_pipelined: Duration,
    /// Issuing the pipelined rounds' invoices, one after the other.
    issuing: Duration,
    fee: Option<TokenAmount>,
    signing: Duration,
    recovering: Duration,
    echoing: Duration,
}

/// Runs `paych bench --route` in `dir`.
pub async fn measure(args: &BenchArgs, dir: &Path) -> anyhow::Result<RouteReport> {
    let samples = usize::try_from(args.payments).unwrap_or(usize::MAX);
    let in_flight = usize::try_from(args.in_flight).unwrap_or(64);
    let mut triangle = start_triangle(dir, in_flight).await?;
    let refused = Arc::new(Refusals::default());
    let mut measured = Measured::default();
    for _ in 0..WARM_UP {
        measured.fee = Some(triangle.pay_routed(None, &refused).await?);
        triangle.await_replacements().await?;
        triangle.pay_direct().await?;
    }
    // The raw request-response answers with a voucher the payee accepted, as `paych bench`'s.
    let manager = &triangle.payer.party.manager;
    let voucher = manager.voucher_list(&triangle.direct.0)?.pop().context("no direct voucher")?;
    let echo = Echo::start(&voucher).await?;
    let key = crypto::generate_secret_key().map_err(|e| anyhow!("cannot draw a key: {e}"))?;
    let crypto_per_round = Sizes::of(args).crypto_per_round;
    for round in 0..ROUNDS {
        let per_round = share(samples, round);
        for _ in 0..per_round {
            let start = Instant::now();
            triangle.pay_direct().await?;
            measured.direct.push(start.elapsed());
        }
        for text in triangle.invoices(per_round).await? {
            let start = Instant::now();
            match pay_routed(&triangle.payer.routes, &text).await? {
                Ok(_) => measured.routed.push(start.elapsed()),
                Err(refusal) => refused.record(refusal),
            }
            // One at a time: the next payment waits for this one's replacements (untimed).
            triangle.await_replacements().await?;
        }
        triangle.check_replaced(&refused).await?;
        let start = Instant::now();
        triangle.pay_direct_pipelined(per_round, in_flight).await?;
        measured.direct_pipelined += start.elapsed();
        let start = Instant::now();
        let texts = triangle.invoices(per_round).await?;
        measured.issuing += start.elapsed();
        let shared = Arc::new(triangle);
        let start = Instant::now();
        shared.pay_routed_pipelined(texts, in_flight, &refused).await?;
        shared.await_replacements().await?;
        measured.routed_pipelined += start.elapsed();
        shared.check_replaced(&refused).await?;
        triangle =
            Arc::try_unwrap(shared).map_err(|_| anyhow!("a routed payment outlived its round"))?;
        let (sign, recover) = tokio::task::spawn_blocking(move || {
            paych_node::limits::crypto_times(&key, crypto_per_round)
        })
        .await??;
        measured.signing += sign;
        measured.recovering += recover;
        let start = Instant::now();
        echo.pipelined(&voucher, per_round, in_flight).await?;
        measured.echoing += start.elapsed();
    }
    echo.stop();
    triangle.await_replacements().await?;
    triangle.check_replaced(&refused).await?;
    triangle.stop().await?;
    measured.routed.sort();
    measured.direct.sort();
    Ok(RouteReport {
        payments: args.payments,
        in_flight: args.in_flight,
        routed_payments_per_sec: rate(samples, measured.routed_pipelined),
        routed_p50_us: micros(percentile(&measured.routed, 50)),
        routed_p99_us: micros(percentile(&measured.routed, 99)),
        direct_payments_per_sec: rate(samples, measured.direct_pipelined),
        direct_p50_us: micros(percentile(&measured.direct, 50)),
        direct_p99_us: micros(percentile(&measured.direct, 99)),
        invoices_per_sec: rate(samples, measured.issuing),
        fee_atto: measured.fee.map(|f| f.atto().to_string()).unwrap_or_default(),
        refusals: refused.count(),
        last_refusal: refused.last(),
        raw: RawWork {
            sign_per_sec: rate(crypto_per_round * ROUNDS, measured.signing),
            recover_per_sec: rate(crypto_per_round * ROUNDS, measured.recovering),
            rr_per_sec: rate(samples, measured.echoing),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratios_compare_routed_with_direct() {
        let report = RouteReport {
            payments: 10,
            in_flight: 4,
            routed_payments_per_sec: 300.0,
            routed_p50_us: 3000.0,
            routed_p99_us: 9000.0,
            direct_payments_per_sec: 1000.0,
            direct_p50_us: 1000.0,
            direct_p99_us: 2000.0,
            invoices_per_sec: 5000.0,
            fee_atto: "1".into(),
            refusals: 0,
            last_refusal: String::new(),
            raw: RawWork {
                sign_per_sec: 40_000.0,
                recover_per_sec: 30_000.0,
                rr_per_sec: 20_000.0,
            },
        };
        assert!((report.rate_vs_direct() - 0.3).abs() < 1e-9);
        // 1 / (1/40k + 1/30k + 1/20k) = 9 231/s; 1 / (4/40k + 6/30k + 2/20k) = 2 500/s.
        assert!((report.raw.direct_ceiling() - 120_000.0 / 13.0).abs() < 1e-6);
        assert!((report.raw.routed_ceiling() - 2_500.0).abs() < 1e-6);
        assert!((report.ceilings_ratio() - 2_500.0 * 13.0 / 120_000.0).abs() < 1e-9);
        assert!(report.table().contains("routed / direct at their ceilings = 0.27"));
        assert!((report.p50_vs_direct() - 3.0).abs() < 1e-9);
        let json = report.json();
        assert_eq!(json["route"], true);
        assert_eq!(json["invoices_per_sec"], 5000.0);
        assert!(report.table().contains("(target >= 0.3: met)"), "{}", report.table());
        assert!(report.table().contains("(target <= 4: met)"), "{}", report.table());
    }
}
