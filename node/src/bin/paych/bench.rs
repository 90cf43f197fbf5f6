//! `paych bench`: two nodes in one process on loopback — an in-process devnet, two managers
//! on sled stores in a temporary directory, two swarms through the node's network module —
//! and what one payment costs beside the raw costs it is made of, measured in the same run:
//!
//! - **payment round trip** (p50, p99): the payer creates a voucher (signed, stored
//!   durably), sends it over `/paych/voucher/1.0.0`, the payee validates it (signature
//!   recovery, actor rules), stores it durably and answers; one payment at a time;
//! - **pipelined payments per second**: many payments in flight on one lane of one channel;
//! - **raw request-response**: a trivial echo over the same transport stack (TCP + Noise +
//!   Yamux) and the same DAG-CBOR codec, the responder answering at once — round trip p50
//!   and pipelined rate;
//! - **bare secp256k1 sign and recover rates** over a voucher's signing bytes;
//! - **durable store write**: one sled insert of a voucher-sized record and a flush (p50).
//!
//! Every measure is spread over ten rounds, and each round takes its share of all of them one
//! after the other (crypto, store, raw round trips, payments; then pipelined payments and
//! pipelined raw requests), so that a machine whose speed drifts during the run slows each
//! ratio's two sides alike. Blocks are produced only while the channel is set up.
//!
//! The CPU ceiling is the rate at which one payment's unavoidable work could go if it ran
//! back to back: `ceiling = 1 / (1/sign + 1/recover + 1/raw_rr)` payments per second (each
//! rate in operations per second). The round-trip floor is
//! `raw_rr_rtt_p50 + 1/sign + 1/recover + store_p50`. Targets: pipelined ≥ 0.5 × ceiling,
//! p50 round trip ≤ 1.5 × floor; the ratios are printed, never assumed.
//!
//! `paych bench --route` measures routed payments through a hub instead, beside direct
//! payments ([`route`]); `paych bench --retrieval` measures paid retrievals beside unpaid
//! transfers of the same bytes, on loopback and through the latency relay ([`retrieval`]).

mod retrieval;
mod route;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::chain::Chain;
use paych_core::crypto;
use paych_core::manager::{ManagerConfig, PaymentChannelManager};
use paych_core::store::sled::SledStore;
use paych_core::types::{Address, SignedVoucher, TokenAmount};
use paych_core::wallet::{KeyStore, Wallet};
use paych_node::host::{Host, HostConfig};
use paych_node::network::{NetworkClient, NetworkConfig};
use paych_protocol::{VoucherCodec, VoucherRequest, VoucherResponse};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// The echo protocol of the raw request-response measure.
const ECHO_PROTOCOL: &str = "/paych/bench-echo/1.0.0";
/// How long any one step of the bench may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// The attoFIL each payment adds.
const UNIT: u64 = 1000;

/// `paych bench` options.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Payments measured one at a time, and again pipelined.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub payments: u64,
    /// Payments in flight at once in the pipelined measure.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=200))]
    pub in_flight: u64,
    /// Measure routed payments between three nodes (payer, hub, payee) beside direct
    /// payments from the same payer to the same payee.
    #[arg(long)]
    pub route: bool,
    /// Measure paid retrievals beside unpaid transfers of the same bytes, on loopback and
    /// through the latency relay.
    #[arg(long, conflicts_with = "route")]
    pub retrieval: bool,
    /// With `--retrieval`: the blob's size, MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub blob_mib: u64,
    /// With `--retrieval`: the relay's delays each way, ms (0: straight over loopback).
    #[arg(long, value_delimiter = ',', default_values_t = [0u64, 20, 50], value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub delays: Vec<u64>,
    /// With `--retrieval`: the chunk sizes, bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [65_536u64, 1_048_576], value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub chunk_sizes: Vec<u64>,
    /// With `--retrieval`: rounds per link and chunk size (each an unpaid and a paid
    /// retrieval).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub retrieval_rounds: u64,
    /// With `--retrieval`: each link and chunk size runs at least this long (seconds), in
    /// whole rounds beyond `--retrieval-rounds` (at most 100 rounds).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub retrieval_min_secs: u64,
}

/// What one run measured.
#[derive(Debug, Clone)]
struct Report {
    payments: u64,
    in_flight: u64,
    pipelined_payments_per_sec: f64,
    rtt_p50_us: f64,
    rtt_p99_us: f64,
    create_p50_us: f64,
    send_p50_us: f64,
    pipelined_create_share: f64,
    raw_rr_per_sec: f64,
    raw_rr_rtt_p50_us: f64,
    raw_sign_per_sec: f64,
    raw_recover_per_sec: f64,
    store_p50_us: f64,
}

impl Report {
    fn ceiling(&self) -> f64 {
        let raw = route::RawWork {
            sign_per_sec: self.raw_sign_per_sec,
            recover_per_sec: self.raw_recover_per_sec,
            rr_per_sec: self.raw_rr_per_sec,
        };
        raw.direct_ceiling()
    }

    fn rtt_floor_us(&self) -> f64 {
        self.raw_rr_rtt_p50_us
            + 1e6 / self.raw_sign_per_sec
            + 1e6 / self.raw_recover_per_sec
            + self.store_p50_us
    }

    /// The floor with both durable writes a payment makes in series (the payer's voucher
    /// before it leaves, the payee's before it answers): informational, beside the target's.
    fn rtt_floor_two_stores_us(&self) -> f64 {
        self.rtt_floor_us() + self.store_p50_us
    }

    fn json(&self) -> serde_json::Value {
        let ceiling = self.ceiling();
        let floor = self.rtt_floor_us();
        json!({
            "payments": self.payments,
            "in_flight": self.in_flight,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "pipelined_payments_per_sec": self.pipelined_payments_per_sec,
            "rtt_p50_us": self.rtt_p50_us,
            "rtt_p99_us": self.rtt_p99_us,
            "create_p50_us": self.create_p50_us,
            "send_p50_us": self.send_p50_us,
            "pipelined_create_share": self.pipelined_create_share,
            "raw_rr_per_sec": self.raw_rr_per_sec,
            "raw_rr_rtt_p50_us": self.raw_rr_rtt_p50_us,
            "raw_sign_per_sec": self.raw_sign_per_sec,
            "raw_recover_per_sec": self.raw_recover_per_sec,
            "store_p50_us": self.store_p50_us,
            "ceiling_payments_per_sec": ceiling,
            "rtt_floor_us": floor,
            "pipelined_vs_ceiling": self.pipelined_payments_per_sec / ceiling,
            "rtt_p50_vs_floor": self.rtt_p50_us / floor,
            "rtt_floor_two_stores_us": self.rtt_floor_two_stores_us(),
            "rtt_p50_vs_two_store_floor": self.rtt_p50_us / self.rtt_floor_two_stores_us(),
            "pipelined_vs_raw_rr": self.pipelined_payments_per_sec / self.raw_rr_per_sec,
        })
    }

    fn table(&self) -> String {
        let ceiling = self.ceiling();
        let floor = self.rtt_floor_us();
        let verdict = |ok: bool| if ok { "met" } else { "missed" };
        let pipelined_ratio = self.pipelined_payments_per_sec / ceiling;
        let rtt_ratio = self.rtt_p50_us / floor;
        format!(
            "paych bench: {} payments, {} in flight, {} cores\n\
             \n\
             payments                         raw costs measured in the same run\n\
             pipelined  {:>10.0} /s          raw request-response {:>10.0} /s (p50 {:.0} µs)\n\
             rtt p50    {:>10.0} µs          sign {:>10.0} /s, recover {:>10.0} /s\n\
             rtt p99    {:>10.0} µs          durable store write p50 {:.0} µs\n\
             \n\
             of a round trip (p50): create {:.0} µs, send until the answer {:.0} µs\n\
             pipelined: the payer spent {:.0} % of the time creating vouchers\n\
             \n\
             ceiling = 1 / (1/sign + 1/recover + 1/raw_rr) = {:.0} payments/s\n\
             pipelined / ceiling = {:.2} (target >= 0.5: {})\n\
             rtt floor = raw rtt p50 + sign + recover + store = {:.0} µs\n\
             rtt p50 / floor = {:.2} (target <= 1.5: {})\n\
             with both durable writes of a payment: floor {:.0} µs, rtt p50 / floor = {:.2}\n",
            self.payments,
            self.in_flight,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            self.pipelined_payments_per_sec,
            self.raw_rr_per_sec,
            self.raw_rr_rtt_p50_us,
            self.rtt_p50_us,
            self.raw_sign_per_sec,
            self.raw_recover_per_sec,
            self.rtt_p99_us,
            self.store_p50_us,
            self.create_p50_us,
            self.send_p50_us,
            self.pipelined_create_share * 100.0,
            ceiling,
            pipelined_ratio,
            verdict(pipelined_ratio >= 0.5),
            floor,
            rtt_ratio,
            verdict(rtt_ratio <= 1.5),
            self.rtt_floor_two_stores_us(),
            self.rtt_p50_us / self.rtt_floor_two_stores_us(),
        )
    }
}

/// Runs the bench and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let (json, table) = if args.retrieval {
        let report = retrieval::measure(&args, &scratch.0).await?;
        (report.json(), report.table())
    } else if args.route {
        let report = route::measure(&args, &scratch.0).await?;
        (report.json(), report.table())
    } else {
        let report = measure(&args, &scratch.0).await?;
        (report.json(), report.table())
    };
    match args.json {
        true => println!("{json}"),
        false => print!("{table}"),
    }
    Ok(())
}

/// A temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("paych-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The rounds every measure is spread over. Each round measures its share of every raw
/// reference and of the payments, one after the other, so that a machine whose speed drifts
/// during the run (shared cores, a neighbour's load) slows both sides of each ratio alike.
const ROUNDS: usize = 10;

/// Round `round`'s share of `total`: the rounds' shares differ by one at most and add up to
/// `total`.
fn share(total: usize, round: usize) -> usize {
    total / ROUNDS + usize::from(round < total % ROUNDS)
}

/// How many of each measure one run takes.
struct Sizes {
    samples: usize,
    in_flight: usize,
    crypto_per_round: usize,
    store_per_round: usize,
}

impl Sizes {
    fn of(args: &BenchArgs) -> Self {
        let samples = usize::try_from(args.payments).unwrap_or(usize::MAX);
        Sizes {
            samples,
            in_flight: usize::try_from(args.in_flight).unwrap_or(64),
            crypto_per_round: samples.clamp(200, 5000).div_ceil(ROUNDS),
            store_per_round: samples.clamp(20, 500).div_ceil(ROUNDS),
        }
    }
}

/// The two nodes of the bench, a channel between them, and the lane paid on.
struct Pair {
    payer: Party,
    payee: Party,
    channel: Address,
    lane: u64,
    payer_host: Host,
    payee_host: Host,
    target: Target,
    /// The lane's cumulative amount so far.
    paid: u64,
}

/// What the one-at-a-time rounds measured.
#[derive(Default)]
struct Serial {
    signing: Duration,
    recovering: Duration,
    stores: Vec<Duration>,
    raw_rtts: Vec<Duration>,
    rtts: Vec<Duration>,
    creates: Vec<Duration>,
    sends: Vec<Duration>,
}

/// What the pipelined rounds measured: time paying, of which creating vouchers, and time
/// echoing.
#[derive(Default)]
struct Pipelined {
    paying: Duration,
    creating: Duration,
    echoing: Duration,
}

async fn measure(args: &BenchArgs, dir: &std::path::Path) -> anyhow::Result<Report> {
    let sizes = Sizes::of(args);
    let mut pair = start_pair(dir).await?;

    // Warm up both paths; the echo answers with a voucher the payee accepted.
    for _ in 0..10 {
        pair.paid += UNIT;
        pay_once(&pair.payer.manager, &pair.target, &pair.channel, pair.lane, pair.paid).await?;
    }
    let voucher = pair
        .payer
        .manager
        .voucher_list(&pair.channel)?
        .pop()
        .context("the payer holds no voucher after paying")?;
    let echo = Echo::start(&voucher).await?;
    for _ in 0..10 {
        echo.round_trip(voucher.clone()).await?;
    }

    let mut serial = measure_serial(&sizes, dir, &mut pair, &echo, &voucher).await?;
    let pipelined = measure_pipelined(&sizes, &mut pair, &echo, &voucher).await?;

    echo.stop();
    pair.payee_host.shutdown(STEP_TIMEOUT).await;
    pair.payer_host.shutdown(STEP_TIMEOUT).await;
    pair.payer.manager.shutdown().await?;
    pair.payee.manager.shutdown().await?;
    Ok(report(args, &sizes, &mut serial, &pipelined))
}

/// Two nodes on one devnet, a channel between them. Blocks come every 10 ms while the
/// parties are funded and the channel is created, and stop before anything is measured:
/// producing blocks is not part of a payment (a real chain makes one every 30 s).
async fn start_pair(dir: &std::path::Path) -> anyhow::Result<Pair> {
    let devnet = Devnet::new(DevnetConfig {
        block_time: Some(Duration::from_millis(10)),
        ..DevnetConfig::default()
    })
    .context("cannot start the devnet")?;
    let miner = devnet.start_mining().context("the devnet has no block time")?;
    let payer = party(&devnet, dir, "payer", 10).await?;
    let payee = party(&devnet, dir, "payee", 0).await?;
    let handle = payer
        .manager
        .create(payer.addr, payee.addr, TokenAmount::from_whole(1), TokenAmount::default())
        .await?;
    let sentinel = handle.wait_sentinel.context("the channel create sent no message")?;
    let channel =
        tokio::time::timeout(STEP_TIMEOUT, payer.manager.get_wait_ready(&sentinel)).await??;
    let lane = payer.manager.allocate_lane(&channel).await?;
    miner.abort();

    let payee_host = start_host(&payee.manager).await?;
    let payer_host = start_host(&payer.manager).await?;
    let target = Target {
        net: payer_host.client().clone(),
        peer: payee_host.peer_id(),
        addrs: payee_host.listen_addrs().to_vec(),
    };
    Ok(Pair { payer, payee, channel, lane, payer_host, payee_host, target, paid: 0 })
}

/// One at a time: each round measures sign and recover, the store's durable write, the raw
/// round trip and the payments.
async fn measure_serial(
    sizes: &Sizes,
    dir: &std::path::Path,
    pair: &mut Pair,
    echo: &Echo,
    voucher: &SignedVoucher,
) -> anyhow::Result<Serial> {
    let key = crypto::generate_secret_key().map_err(|e| anyhow!("cannot draw a key: {e}"))?;
    let store_probe = sled::open(dir.join("store-probe")).context("cannot open the store probe")?;
    let (crypto_per_round, store_per_round) = (sizes.crypto_per_round, sizes.store_per_round);
    let mut serial = Serial::default();
    for round in 0..ROUNDS {
        let per_round = share(sizes.samples, round);
        let (sign, recover) = tokio::task::spawn_blocking(move || {
            paych_node::limits::crypto_times(&key, crypto_per_round)
        })
        .await??;
        serial.signing += sign;
        serial.recovering += recover;
        let db = store_probe.clone();
        let first = round * store_per_round;
        serial.stores.extend(
            tokio::task::spawn_blocking(move || durable_writes(&db, first, store_per_round))
                .await??,
        );
        for _ in 0..per_round {
            let start = Instant::now();
            echo.round_trip(voucher.clone()).await?;
            serial.raw_rtts.push(start.elapsed());
        }
        for _ in 0..per_round {
            pair.paid += UNIT;
            let start = Instant::now();
            let voucher = create(&pair.payer.manager, &pair.channel, pair.lane, pair.paid).await?;
            let created = start.elapsed();
            pair.target.send(voucher).await?;
            let total = start.elapsed();
            serial.rtts.push(total);
            serial.creates.push(created);
            serial.sends.push(total.saturating_sub(created));
        }
    }
    Ok(serial)
}

/// Pipelined, with `in_flight` requests outstanding: each round runs its share of the
/// payments and of the raw requests.
async fn measure_pipelined(
    sizes: &Sizes,
    pair: &mut Pair,
    echo: &Echo,
    voucher: &SignedVoucher,
) -> anyhow::Result<Pipelined> {
    let mut pipelined = Pipelined::default();
    let (manager, in_flight) = (&pair.payer.manager, sizes.in_flight);
    for round in 0..ROUNDS {
        let per_round = share(sizes.samples, round);
        let start = Instant::now();
        pipelined.creating += pay_pipelined(
            manager,
            &pair.target,
            &pair.channel,
            pair.lane,
            pair.paid,
            per_round,
            in_flight,
        )
        .await?;
        pipelined.paying += start.elapsed();
        pair.paid += UNIT * per_round as u64;
        let start = Instant::now();
        echo.pipelined(voucher, per_round, in_flight).await?;
        pipelined.echoing += start.elapsed();
    }
    Ok(pipelined)
}

fn report(args: &BenchArgs, sizes: &Sizes, serial: &mut Serial, pipelined: &Pipelined) -> Report {
    let crypto_ops = sizes.crypto_per_round * ROUNDS;
    for times in [
        &mut serial.stores,
        &mut serial.raw_rtts,
        &mut serial.rtts,
        &mut serial.creates,
        &mut serial.sends,
    ] {
        times.sort();
    }
    let samples = sizes.samples;
    Report {
        payments: args.payments,
        in_flight: args.in_flight,
        pipelined_payments_per_sec: rate(samples, pipelined.paying),
        rtt_p50_us: micros(percentile(&serial.rtts, 50)),
        rtt_p99_us: micros(percentile(&serial.rtts, 99)),
        create_p50_us: micros(percentile(&serial.creates, 50)),
        send_p50_us: micros(percentile(&serial.sends, 50)),
        pipelined_create_share: pipelined.creating.as_secs_f64()
            / pipelined.paying.as_secs_f64().max(1e-9),
        raw_rr_per_sec: rate(samples, pipelined.echoing),
        raw_rr_rtt_p50_us: micros(percentile(&serial.raw_rtts, 50)),
        raw_sign_per_sec: rate(crypto_ops, serial.signing),
        raw_recover_per_sec: rate(crypto_ops, serial.recovering),
        store_p50_us: micros(percentile(&serial.stores, 50)),
    }
}

/// A node's networking for `manager`, listening on loopback, taking as many vouchers (and
/// route requests) in flight as the pipelined measures send.
async fn start_host(manager: &PaymentChannelManager) -> anyhow::Result<Host> {
    let config = HostConfig {
        network: NetworkConfig {
            protocol: paych_protocol::Config {
                voucher_max_concurrent_streams: 256,
                route_max_concurrent_streams: 256,
                ..paych_protocol::Config::default()
            },
            max_inbound_per_peer: 256,
            max_route_per_peer: 256,
            ..NetworkConfig::default()
        },
        ..HostConfig::default()
    };
    let listen = "/ip4/127.0.0.1/tcp/0".parse()?;
    Ok(Host::start(Keypair::generate_ed25519(), config, manager.clone(), listen).await?)
}

/// One side of the bench: a manager over its own keystore and sled store.
struct Party {
    manager: PaymentChannelManager,
    wallet: Arc<KeyStore>,
    addr: Address,
}

async fn party(
    devnet: &Devnet,
    dir: &std::path::Path,
    name: &str,
    fil: u64,
) -> anyhow::Result<Party> {
    let dir = dir.join(name);
    let config = ManagerConfig::default();
    let wallet = Arc::new(KeyStore::open(dir.join("keystore"), config.network)?);
    let addr = wallet.new_key()?;
    if fil > 0 {
        let cid = devnet.faucet(&addr, TokenAmount::from_whole(fil))?;
        devnet.wait(&cid, 0, STEP_TIMEOUT).await?;
    }
    let store = Arc::new(SledStore::open(dir.join("datastore"))?);
    let manager =
        PaymentChannelManager::new(Arc::new(devnet.clone()), wallet.clone(), store, config);
    manager.start().await?;
    Ok(Party { manager, wallet, addr })
}

/// Where the payer sends vouchers.
#[derive(Clone)]
struct Target {
    net: NetworkClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
}

impl Target {
    async fn send(&self, voucher: SignedVoucher) -> anyhow::Result<VoucherResponse> {
        let request = VoucherRequest::new(voucher);
        let send = self.net.ask(self.peer, self.addrs.clone(), request);
        let response = tokio::time::timeout(STEP_TIMEOUT, send).await??;
        if !response.is_held() {
            bail!("the payee refused a voucher: {:?} {:?}", response.status(), response.message);
        }
        Ok(response)
    }
}

/// Creates the voucher for `amount` on `lane` and pays it.
async fn pay_once(
    manager: &PaymentChannelManager,
    target: &Target,
    channel: &Address,
    lane: u64,
    amount: u64,
) -> anyhow::Result<()> {
    let voucher = create(manager, channel, lane, amount).await?;
    target.send(voucher).await?;
    Ok(())
}

async fn create(
    manager: &PaymentChannelManager,
    channel: &Address,
    lane: u64,
    amount: u64,
) -> anyhow::Result<SignedVoucher> {
    let created = manager.voucher_create(channel, TokenAmount::from_atto(amount), lane).await?;
    created.voucher.ok_or_else(|| anyhow!("the channel cannot cover {amount} attoFIL"))
}

/// `count` payments on one lane, at most `in_flight` of them awaiting their answer;
/// returns the time spent creating vouchers.
async fn pay_pipelined(
    manager: &PaymentChannelManager,
    target: &Target,
    channel: &Address,
    lane: u64,
    mut paid: u64,
    count: usize,
    in_flight: usize,
) -> anyhow::Result<Duration> {
    let mut pipeline = Pipeline::new(in_flight);
    let mut creating = Duration::ZERO;
    for _ in 0..count {
        let slot = pipeline.slot().await?;
        paid += UNIT;
        let start = Instant::now();
        let voucher = create(manager, channel, lane, paid).await?;
        creating += start.elapsed();
        let target = target.clone();
        pipeline.spawn(slot, async move { target.send(voucher).await })?;
    }
    pipeline.finish().await?;
    Ok(creating)
}

/// `count` durable writes, timed one by one: a sled insert of a voucher-sized record (keys
/// from `first` on) and a flush, as the store does for each voucher.
fn durable_writes(db: &sled::Db, first: usize, count: usize) -> anyhow::Result<Vec<Duration>> {
    let value = [7u8; 256];
    let mut times = Vec::with_capacity(count);
    for i in first..first + count {
        let start = Instant::now();
        db.insert(i.to_be_bytes(), &value[..])?;
        db.flush()?;
        times.push(start.elapsed());
    }
    Ok(times)
}

type EchoBehaviour = request_response::Behaviour<VoucherCodec>;
type EchoReply = oneshot::Sender<Result<VoucherResponse, String>>;

fn echo_swarm(streams: usize) -> anyhow::Result<Swarm<EchoBehaviour>> {
    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                VoucherCodec::default(),
                [(StreamProtocol::new(ECHO_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(STEP_TIMEOUT)
                    .with_max_concurrent_streams(streams),
            )
        })
        .map_err(|e| anyhow!("cannot build the echo behaviour: {e:?}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    Ok(swarm)
}

/// The raw request-response: two bare swarms with the node's transport stack and codec, the
/// responder answering a fixed response at once, the requester behind a client loop shaped
/// like the node's (commands over a bounded channel, one-shot replies).
struct Echo {
    commands: mpsc::Sender<(VoucherRequest, EchoReply)>,
    client: tokio::task::JoinHandle<()>,
    server: tokio::task::JoinHandle<()>,
}

impl Echo {
    /// Starts both swarms; the responder answers every request as if it had accepted
    /// `voucher`.
    async fn start(voucher: &SignedVoucher) -> anyhow::Result<Self> {
        let mut server = echo_swarm(256)?;
        server.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
        let server_addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
                break address;
            }
        };
        let server_peer = *server.local_peer_id();
        let answer = VoucherResponse::accepted(voucher.amount.clone(), voucher.amount.clone());
        let server = tokio::spawn(async move {
            loop {
                if let SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Request { channel, .. },
                    ..
                }) = server.select_next_some().await
                {
                    let _ = server.behaviour_mut().send_response(channel, answer.clone());
                }
            }
        });

        let mut client = echo_swarm(256)?;
        client.add_peer_address(server_peer, server_addr);
        let (commands, mut receiver) = mpsc::channel::<(VoucherRequest, EchoReply)>(64);
        let client = tokio::spawn(async move {
            let mut pending: HashMap<OutboundRequestId, EchoReply> = HashMap::new();
            loop {
                tokio::select! {
                    command = receiver.recv() => match command {
                        Some((request, reply)) => {
                            let id = client.behaviour_mut().send_request(&server_peer, request);
                            pending.insert(id, reply);
                        }
                        None => break,
                    },
                    event = client.select_next_some() => match event {
                        SwarmEvent::Behaviour(request_response::Event::Message {
                            message: request_response::Message::Response { request_id, response },
                            ..
                        }) => {
                            if let Some(reply) = pending.remove(&request_id) {
                                let _ = reply.send(Ok(response));
                            }
                        }
                        SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                            request_id, error, ..
                        }) => {
                            if let Some(reply) = pending.remove(&request_id) {
                                let _ = reply.send(Err(error.to_string()));
                            }
                        }
                        _ => {}
                    },
                }
            }
        });
        Ok(Echo { commands, client, server })
    }

    /// One request and its answer.
    fn round_trip(
        &self,
        voucher: SignedVoucher,
    ) -> impl std::future::Future<Output = anyhow::Result<VoucherResponse>> + Send + 'static {
        let commands = self.commands.clone();
        async move {
            let (reply, answer) = oneshot::channel();
            commands
                .send((VoucherRequest::new(voucher), reply))
                .await
                .map_err(|_| anyhow!("the echo client stopped"))?;
            let answer = tokio::time::timeout(STEP_TIMEOUT, answer).await??;
            answer.map_err(|e| anyhow!("echo request failed: {e}"))
        }
    }

    /// `count` requests with at most `in_flight` outstanding, through the same [`Pipeline`]
    /// as the payments.
    async fn pipelined(
        &self,
        voucher: &SignedVoucher,
        count: usize,
        in_flight: usize,
    ) -> anyhow::Result<()> {
        let mut pipeline = Pipeline::new(in_flight);
        for _ in 0..count {
            let slot = pipeline.slot().await?;
            pipeline.spawn(slot, self.round_trip(voucher.clone()))?;
        }
        pipeline.finish().await
    }

    fn stop(self) {
        drop(self.commands);
        self.client.abort();
        self.server.abort();
    }
}

/// Requests kept in flight, at most a fixed number at once: the same loop for paych's
/// payments and for the raw request-response they are measured against.
struct Pipeline<T> {
    permits: Arc<Semaphore>,
    tasks: tokio::task::JoinSet<anyhow::Result<T>>,
}

impl<T: Send + 'static> Pipeline<T> {
    fn new(in_flight: usize) -> Self {
        Pipeline {
            permits: Arc::new(Semaphore::new(in_flight)),
            tasks: tokio::task::JoinSet::new(),
        }
    }

    /// Waits for room for one more request.
    async fn slot(&self) -> anyhow::Result<tokio::sync::OwnedSemaphorePermit> {
        Ok(self.permits.clone().acquire_owned().await?)
    }

    /// Runs `request` in `slot`; fails with the first request that has failed so far.
    fn spawn(
        &mut self,
        slot: tokio::sync::OwnedSemaphorePermit,
        request: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.tasks.spawn(async move {
            let result = request.await;
            drop(slot);
            result
        });
        while let Some(done) = self.tasks.try_join_next() {
            done??;
        }
        Ok(())
    }

    /// Waits for every request; fails with the first that failed.
    async fn finish(mut self) -> anyhow::Result<()> {
        while let Some(done) = self.tasks.join_next().await {
            done??;
        }
        Ok(())
    }
}

/// The `p`-th percentile of sorted `times`.
fn percentile(times: &[Duration], p: usize) -> Duration {
    if times.is_empty() {
        return Duration::ZERO;
    }
    let index = (times.len() * p).div_ceil(100).saturating_sub(1).min(times.len() - 1);
    times[index]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let times: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&times, 50), Duration::from_micros(50));
        assert_eq!(percentile(&times, 99), Duration::from_micros(99));
        assert_eq!(percentile(&times[..1], 99), Duration::from_micros(1));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }

    #[test]
    fn the_ceiling_adds_the_costs_per_payment() {
        let report = Report {
            payments: 1,
            in_flight: 1,
            pipelined_payments_per_sec: 500.0,
            rtt_p50_us: 1000.0,
            rtt_p99_us: 2000.0,
            create_p50_us: 400.0,
            send_p50_us: 600.0,
            pipelined_create_share: 0.5,
            raw_rr_per_sec: 1000.0,
            raw_rr_rtt_p50_us: 100.0,
            raw_sign_per_sec: 1000.0,
            raw_recover_per_sec: 1000.0,
            store_p50_us: 100.0,
        };
        assert!((report.ceiling() - 1000.0 / 3.0).abs() < 1e-6);
        assert!((report.rtt_floor_us() - 2200.0).abs() < 1e-6);
        assert!((report.rtt_floor_two_stores_us() - 2300.0).abs() < 1e-6);
        assert!(report.json()["pipelined_vs_ceiling"].as_f64().unwrap_or(0.0) > 1.0);
    }
}
