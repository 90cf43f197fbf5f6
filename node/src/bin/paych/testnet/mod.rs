//! `paych testnet`: a multi-node testnet on one machine, with paid retrievals,
//! redemption, reconciliation, settlement, and a report whose invariants are checked.
//!
//! The run, phase by phase:
//!
//! 1. an embedded devnet, served over JSON-RPC on loopback;
//! 2. one `paych daemon` process per node (providers first, then clients that know the
//!    providers' libp2p addresses), each with its own repo under the run's directory;
//! 3. every wallet funded from the faucet; the balances (plus the burnt funds) are recorded;
//! 4. each provider publishes a random blob; each client opens (or reuses) a channel to
//!    each provider with funds reserved for its retrievals, auto top-up on;
//! 5. round 1: half of the retrievals, concurrently; every chunk checked against the
//!    manifest and paid with a voucher before the next is asked for;
//! 6. providers redeem their best voucher per lane;
//! 7. round 2: the other half, on the lanes the pool hands back;
//! 8. providers reconcile each channel into one combined voucher and submit it — except
//!    one channel, left for the provider's settler;
//! 9. clients settle every channel; the settler submits what was left; once settlement is
//!    due the channels are collected;
//! 10. the report: payments, bytes, latency, throughput, chain messages against the
//!     one-per-lane and one-per-payment alternatives, gas, balances, and the invariants.
//!
//! With `--crash NODE` one daemon is killed with SIGKILL during round 2 and restarted on the
//! same repo; its channels and vouchers must come back and the run must complete with its
//! invariants intact.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::chain::lotus::{ApiInfo, LotusChain, LotusConfig};
use paych_core::types::{
    format_address, format_fil, parse_address, parse_fil, Address, Network, TokenAmount,
    SETTLE_DELAY,
};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{RwLock, Semaphore};

use paych_node::daemon::RepoConfig;
use paych_node::parse_duration;

/// How long one node may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the chain may take to reach a state the run waits for.
const CHAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts at one retrieval (more than one only when a node was killed under it).
const ATTEMPTS: usize = 4;
/// Retrievals running at once. Each has at most one voucher in flight.
const MAX_CONCURRENT_RETRIEVALS: usize = 16;
/// What each client receives from the faucet.
const CLIENT_FUNDS_FIL: &str = "1000";
/// What each provider receives from the faucet (for gas).
const PROVIDER_FUNDS_FIL: &str = "10";
/// The daemons' cap on inbound connections per IP. Every daemon of a testnet dials from
/// 127.0.0.1, whatever loopback address it listens on (the system picks the source address
/// of a dial, and libp2p's TCP transport does not bind it), so the cap cannot tell them
/// apart: it is lifted to every inbound slot, and the caps per peer and in total still hold.
const LOOPBACK_CONNECTIONS_PER_IP: u32 = paych_node::daemon::MAX_INBOUND_CONNECTIONS_PER_IP;

/// The arguments of `paych testnet`.
#[derive(Debug, Clone, clap::Args)]
pub struct TestnetArgs {
    /// Retrieval clients (payers).
    #[arg(long, default_value_t = 2)]
    pub clients: usize,
    /// Providers (payees).
    #[arg(long, default_value_t = 2)]
    pub providers: usize,
    /// Retrievals in all, spread over the client–provider pairs two at a time (so that a
    /// channel carries two concurrent retrievals on two lanes), half in each round.
    /// Default: 20, or 4 per pair when there are more than 5 pairs.
    #[arg(long)]
    pub retrievals: Option<usize>,
    /// Bytes per chunk.
    #[arg(long, default_value_t = 16 * 1024)]
    pub chunk_size: u64,
    /// Chunks per blob (each provider publishes one blob).
    #[arg(long, default_value_t = 8)]
    pub chunks: u64,
    /// Price of one chunk, in FIL as Lotus writes it (`0.001`, `5 attoFIL`).
    #[arg(long, default_value = "0.001")]
    pub price_per_chunk: String,
    /// Time between devnet epochs (`1s`, `500ms`).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub block_time: Duration,
    /// Print the report as one JSON object (and no progress bar).
    #[arg(long)]
    pub json: bool,
    /// Keep the nodes' repos and logs in this directory (a temporary one otherwise,
    /// removed at the end).
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Kill this node (`client-0`, `provider-1`, …) with SIGKILL during round 2, then
    /// restart it on its repo.
    #[arg(long)]
    pub crash: Option<String>,
}

impl Default for TestnetArgs {
    fn default() -> Self {
        TestnetArgs {
            clients: 2,
            providers: 2,
            retrievals: None,
            chunk_size: 16 * 1024,
            chunks: 8,
            price_per_chunk: "0.001".into(),
            block_time: Duration::from_secs(1),
            json: false,
            keep: None,
            crash: None,
        }
    }
}

/// One invariant of the run and whether it held.
#[derive(Debug, Clone, Serialize)]
pub struct Invariant {
    /// What it says.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// The figures behind it.
    pub detail: String,
}

/// A node's wallet before and after the run.
#[derive(Debug, Clone, Serialize)]
pub struct Balance {
    /// `client-0`, `provider-1`, …
    pub node: String,
    /// Its wallet address.
    pub address: String,
    /// attoFIL after funding.
    pub before_atto: String,
    /// attoFIL at the end.
    pub after_atto: String,
    /// Gas fees its messages paid, attoFIL.
    pub fees_atto: String,
    /// Chain messages it sent.
    pub messages: u64,
}

/// What the run did; `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Daemons run.
    pub nodes: usize,
    /// Of which clients.
    pub clients: usize,
    /// Of which providers.
    pub providers: usize,
    /// Payment channels used.
    pub channels: usize,
    /// Retrievals completed.
    pub retrievals: usize,
    /// Retrieval attempts that failed and were tried again.
    pub retries: usize,
    /// Why they failed (the first few).
    pub retry_reasons: Vec<String>,
    /// Chunk payments made (one voucher each).
    pub payments: usize,
    /// Bytes retrieved and checked.
    pub bytes: u64,
    /// Seconds the two retrieval rounds took.
    pub retrieval_secs: f64,
    /// Payments per second over the retrieval rounds.
    pub payments_per_sec: f64,
    /// Bare secp256k1 signatures per second on one core, measured in the same run.
    pub raw_sign_per_sec: f64,
    /// Bare secp256k1 recoveries per second on one core, measured in the same run.
    pub raw_recover_per_sec: f64,
    /// `1 / (1/sign + 1/recover)`: payments per second one core could make if a payment
    /// cost only its signature and its recovery.
    pub crypto_ceiling_payments_per_sec: f64,
    /// `payments_per_sec ÷ crypto_ceiling_payments_per_sec`.
    pub payments_vs_crypto_ceiling: f64,
    /// Median payment latency (voucher made, stored, sent, validated, stored, answered), µs.
    pub latency_p50_us: u64,
    /// 99th percentile payment latency, µs.
    pub latency_p99_us: u64,
    /// Chain messages the nodes sent.
    pub chain_messages: u64,
    /// Of which: creates, add-funds, updates (voucher redemptions), settles, collects.
    pub chain_messages_by_kind: BTreeMap<String, u64>,
    /// Messages if every lane with new payments were redeemed on its own each round.
    pub chain_messages_one_per_lane: u64,
    /// Messages if every payment were its own chain message.
    pub chain_messages_one_per_payment: u64,
    /// Channels reconciled into one combined voucher.
    pub reconciled_channels: usize,
    /// Vouchers the providers' settlers submitted after a client settled.
    pub settler_submissions: u64,
    /// Gas burnt during the run, attoFIL.
    pub gas_burnt_atto: String,
    /// Wallet balances.
    pub balances: Vec<Balance>,
    /// The largest peak resident memory of one daemon, KiB (Linux; 0 elsewhere).
    pub peak_rss_kib_max: u64,
    /// The mean of the daemons' peak resident memory, KiB (Linux; 0 elsewhere).
    pub peak_rss_kib_mean: u64,
    /// The node killed and restarted, if any, and what came back.
    pub crash: Option<String>,
    /// The invariants checked.
    pub invariants: Vec<Invariant>,
    /// Whether every invariant held.
    pub invariants_ok: bool,
    /// Seconds the whole run took.
    pub total_secs: f64,
}

/// A running daemon.
struct Node {
    name: String,
    repo: PathBuf,
    child: Child,
    rpc: Arc<LotusChain>,
    address: Address,
    /// `<multiaddr>/p2p/<peer id>`.
    peer: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Shared handles on the nodes, swappable when one is restarted.
type Nodes = Vec<Arc<RwLock<Node>>>;

/// Runs the testnet and returns its report.
pub async fn run(args: TestnetArgs) -> anyhow::Result<Report> {
    let started = Instant::now();
    if args.clients == 0 || args.providers == 0 {
        bail!("--clients and --providers must be at least 1");
    }
    if args.chunks == 0 || args.chunk_size == 0 {
        bail!("--chunks and --chunk-size must be at least 1");
    }
    if let Some(name) = &args.crash {
        let known = (0..args.clients)
            .map(|c| format!("client-{c}"))
            .chain((0..args.providers).map(|p| format!("provider-{p}")))
            .any(|n| &n == name);
        if !known {
            bail!("--crash {name:?}: no such node; name one of client-0…client-{} or provider-0…provider-{}", args.clients - 1, args.providers - 1);
        }
    }
    let price = parse_fil(&args.price_per_chunk)
        .map_err(|e| anyhow!("--price-per-chunk {:?}: {e}", args.price_per_chunk))?;
    if !price.is_positive() {
        bail!("--price-per-chunk must be positive");
    }
    let (dir, temporary) = match &args.keep {
        Some(dir) => {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            (dir.clone(), false)
        }
        None => {
            let nonce = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let dir =
                std::env::temp_dir().join(format!("paych-testnet-{}-{nonce}", std::process::id()));
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            (dir, true)
        }
    };
    let result = run_in(&args, price, &dir, started).await;
    if temporary && result.is_ok() {
        let _ = fs::remove_dir_all(&dir);
    } else if result.is_err() {
        eprintln!("testnet: nodes' repos and logs kept in {}", dir.display());
    }
    result
}

struct Progress {
    enabled: bool,
}

impl Progress {
    fn phase(&self, text: &str) {
        if self.enabled {
            eprint!("\r\x1b[2K{text}");
            let _ = std::io::stderr().flush();
        }
    }

    fn bar(&self, phase: &str, done: usize, total: usize) {
        if self.enabled {
            let width = 30;
            let filled = (done * width).checked_div(total).unwrap_or(width).min(width);
            eprint!(
                "\r\x1b[2K{phase} [{}{}] {done}/{total} retrievals",
                "#".repeat(filled),
                " ".repeat(width - filled)
            );
            let _ = std::io::stderr().flush();
        }
    }

    fn done(&self) {
        if self.enabled {
            eprintln!("\r\x1b[2Kdone");
        }
    }
}

/// One retrieval to run: client `c` from provider `p`.
#[derive(Debug, Clone, Copy)]
struct Job {
    client: usize,
    provider: usize,
}

/// What one round of retrievals produced.
#[derive(Default)]
struct RoundOutcome {
    retrievals: usize,
    retries: usize,
    retry_reasons: Vec<String>,
    payments: usize,
    bytes: u64,
    latencies_us: Vec<u64>,
    /// (client, provider) → lanes paid on in this round.
    lanes: BTreeMap<(usize, usize), BTreeSet<u64>>,
}

async fn run_in(
    args: &TestnetArgs,
    price: TokenAmount,
    dir: &Path,
    started: Instant,
) -> anyhow::Result<Report> {
    let progress = Progress { enabled: !args.json };
    let exe = std::env::current_exe().context("cannot find the paych executable")?;
    let probe = paych_core::crypto::generate_secret_key().context("cannot make a probe key")?;
    let (raw_sign, raw_recover) = paych_node::limits::crypto_rates(&probe, 500)?;
    let crypto_ceiling = paych_node::limits::crypto_ceiling(raw_sign, raw_recover);

    progress.phase("starting the devnet");
    let devnet = Devnet::new(DevnetConfig {
        block_time: (!args.block_time.is_zero()).then_some(args.block_time),
        ..DevnetConfig::default()
    })
    .context("cannot start the devnet")?;
    devnet.start_mining();
    let server =
        paych_node::rpc::devnet::serve(devnet.clone(), SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("cannot serve the devnet")?;
    let api_info = server.api_info();

    // Providers first: clients are told where they listen.
    let pairs = args.clients * args.providers;
    let retrievals = args.retrievals.unwrap_or(if pairs > 5 { 4 * pairs } else { 20 });
    let retrievals_per_pair = retrievals.div_ceil(pairs).max(1);
    let blob_price = &price * args.chunks;
    let reserve = &blob_price * retrievals_per_pair as u64;
    let mut nodes: Nodes = Vec::new();
    progress.phase(&format!("starting {} providers", args.providers));
    let mut starting = Vec::new();
    for p in 0..args.providers {
        let (exe, api_info) = (&exe, &api_info);
        starting.push(async move {
            start_node(exe, dir, &format!("provider-{p}"), api_info, &[], None, 0).await
        });
    }
    for node in futures::future::try_join_all(starting).await? {
        nodes.push(Arc::new(RwLock::new(node)));
    }
    let mut peers = Vec::new();
    for node in &nodes {
        let node = node.read().await;
        peers.push(format!("{}={}", format_address(&node.address, Network::Testnet), node.peer));
    }
    let top_up = paych_core::manager::TopUpPolicy {
        low_water: blob_price.clone(),
        high_water: &blob_price * 2u64,
    };
    progress.phase(&format!("starting {} clients", args.clients));
    let mut starting = Vec::new();
    for c in 0..args.clients {
        let (exe, api_info, peers, top_up) = (&exe, &api_info, &peers, top_up.clone());
        starting.push(async move {
            start_node(exe, dir, &format!("client-{c}"), api_info, peers, Some(top_up), 0).await
        });
    }
    for node in futures::future::try_join_all(starting).await? {
        nodes.push(Arc::new(RwLock::new(node)));
    }
    let provider_of = |p: usize| nodes[p].clone();
    let client_of = |c: usize| nodes[args.providers + c].clone();

    // Funding.
    progress.phase("funding wallets from the faucet");
    let mut addresses = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let node = node.read().await;
        let fil = if i < args.providers { PROVIDER_FUNDS_FIL } else { CLIENT_FUNDS_FIL };
        let amount = parse_fil(fil).map_err(|e| anyhow!("{e}"))?;
        devnet.faucet(&node.address, amount.clone()).context("the faucet refused")?;
        addresses.push((node.name.clone(), node.address, amount));
    }
    wait_until(CHAIN_TIMEOUT, "the faucet's funds to land", || {
        addresses.iter().all(|(_, a, amount)| balance(&devnet, a) == *amount)
    })
    .await?;
    let before: Vec<TokenAmount> = addresses.iter().map(|(_, a, _)| balance(&devnet, a)).collect();
    let burnt_before = devnet.burnt();

    // Blobs and channels.
    progress.phase("publishing blobs");
    let mut roots = Vec::new();
    for p in 0..args.providers {
        let rpc = provider_of(p).read().await.rpc.clone();
        let manifest = call(
            &rpc,
            "PaychRetrievalPublish",
            json!([{
                "RandomSize": args.chunk_size * args.chunks,
                "ChunkSize": args.chunk_size,
                "PricePerChunk": price.atto().to_string(),
            }]),
        )
        .await?;
        roots.push(text(&manifest["Root"])?);
    }
    progress.phase(&format!("opening {} channels", args.clients * args.providers));
    let mut opening = Vec::new();
    for c in 0..args.clients {
        let client = client_of(c);
        let (rpc, from) = {
            let n = client.read().await;
            (n.rpc.clone(), format_address(&n.address, Network::Testnet))
        };
        for p in 0..args.providers {
            let to = format_address(&provider_of(p).read().await.address, Network::Testnet);
            let (rpc, from, amount) = (rpc.clone(), from.clone(), reserve.atto().to_string());
            opening.push(async move {
                let got = call(&rpc, "PaychGet", json!([from, to, amount])).await?;
                let channel = match got["WaitSentinel"].clone() {
                    Value::Null => got["Channel"].clone(),
                    sentinel => call(&rpc, "PaychGetWaitReady", json!([sentinel])).await?,
                };
                anyhow::Ok(((c, p), text(&channel)?))
            });
        }
    }
    let channels: BTreeMap<(usize, usize), String> =
        futures::future::try_join_all(opening).await?.into_iter().collect();

    // Jobs, spread over every pair two by two (a pair's two retrievals run together, on
    // two lanes), half per round.
    let jobs: Vec<Job> = (0..retrievals)
        .map(|i| {
            let pair = (i / 2) % pairs;
            Job { client: pair / args.providers, provider: pair % args.providers }
        })
        .collect();
    let (round1, round2) = jobs.split_at(jobs.len() / 2);
    // The channels some round paid on (a provider learns of a channel with its first
    // voucher).
    let paid_on = |outcomes: &[&RoundOutcome]| -> BTreeMap<(usize, usize), String> {
        channels
            .iter()
            .filter(|(pair, _)| outcomes.iter().any(|o| o.lanes.contains_key(*pair)))
            .map(|(pair, ch)| (*pair, ch.clone()))
            .collect()
    };
    let ctx = Arc::new(RoundContext {
        nodes: nodes.clone(),
        providers: args.providers,
        channels: channels.clone(),
        roots: roots.clone(),
        max_price: price.clone(),
    });

    let retrieval_started = Instant::now();
    let total = jobs.len();
    let first = run_round(&ctx, round1, &progress, "round 1", 0, total, None).await?;

    progress.phase("providers redeem their best vouchers");
    let mut settler_channel = None;
    for ((c, p), ch) in &paid_on(&[&first]) {
        let rpc = provider_of(*p).read().await.rpc.clone();
        submit_best(&rpc, ch).await?;
        if settler_channel.is_none() && (*c, *p) == (0, 0) {
            settler_channel = Some(ch.clone());
        }
    }
    wait_for_pool(&devnet).await?;

    let crash = match &args.crash {
        Some(name) => {
            let index = nodes_index(&nodes, name).await?;
            Some(CrashPlan { index, after: round2.len().div_ceil(3).max(1), exe: exe.clone() })
        }
        None => None,
    };
    let crash_state = Arc::new(CrashState::default());
    let second = run_round(
        &ctx,
        round2,
        &progress,
        "round 2",
        first.retrievals,
        total,
        crash.as_ref().map(|plan| (plan, crash_state.clone(), api_info.clone())),
    )
    .await?;
    let retrieval_secs = retrieval_started.elapsed().as_secs_f64();
    let active = paid_on(&[&first, &second]);
    let crash_report = crash_state.report.lock().await.clone();

    // What each client issued on each channel, before any voucher is folded.
    let mut issued: BTreeMap<(usize, usize), TokenAmount> = BTreeMap::new();
    for ((c, p), ch) in &channels {
        let rpc = client_of(*c).read().await.rpc.clone();
        let status = call(&rpc, "PaychStatus", json!([ch])).await?;
        let mut total = TokenAmount::default();
        for lane in status["Lanes"].as_array().cloned().unwrap_or_default() {
            let atto: u128 = text(&lane["Amount"])?.parse().context("a lane amount")?;
            total += TokenAmount::from_atto(atto);
        }
        issued.insert((*c, *p), total);
    }

    // Reconciliation (every channel but the settler's).
    progress.phase("providers reconcile and submit");
    let mut reconciled = 0;
    for ((_, p), ch) in &active {
        if Some(ch) == settler_channel.as_ref() {
            continue;
        }
        let rpc = provider_of(*p).read().await.rpc.clone();
        if reconcile(&rpc, ch).await? {
            reconciled += 1;
        }
        submit_best(&rpc, ch).await?;
    }
    wait_for_pool(&devnet).await?;

    // Settlement: clients settle; the settler channel's provider must submit on its own.
    progress.phase("clients settle; providers' settlers submit");
    let mut settler_before = 0u64;
    for p in 0..args.providers {
        let addr = provider_of(p).read().await.address;
        settler_before += updates(&devnet, &addr);
    }
    let mut settling = Vec::new();
    for ((c, _), ch) in &channels {
        let rpc = client_of(*c).read().await.rpc.clone();
        settling.push(async move { call(&rpc, "PaychSettle", json!([ch])).await });
    }
    futures::future::try_join_all(settling).await?;
    let channel_addrs: Vec<Address> = channels
        .values()
        .map(|ch| parse_address(ch).map(|(a, _)| a).map_err(|e| anyhow!("{ch}: {e}")))
        .collect::<Result<_, _>>()?;
    wait_until(CHAIN_TIMEOUT, "every channel to start settling", || {
        channel_addrs.iter().all(|ch| {
            devnet.actor_state(ch).ok().and_then(|s| s.paych).is_some_and(|s| s.settling_at > 0)
        })
    })
    .await?;
    // The providers' settlers submit whatever was left unredeemed.
    let deadline = Instant::now() + CHAIN_TIMEOUT;
    loop {
        let mut pending = 0;
        for ((_, p), ch) in &active {
            let rpc = provider_of(*p).read().await.rpc.clone();
            let best = call(&rpc, "PaychVoucherBestSpendable", json!([ch])).await?;
            pending += best.as_array().map_or(0, Vec::len);
        }
        if pending == 0 && devnet.pending_messages() == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the providers' settlers left {pending} vouchers unsubmitted");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut settler_after = 0u64;
    for p in 0..args.providers {
        let addr = provider_of(p).read().await.address;
        settler_after += updates(&devnet, &addr);
    }
    // What each channel pays out, read before the channels are collected.
    let mut to_send: BTreeMap<(usize, usize), TokenAmount> = BTreeMap::new();
    for ((pair, _), ch) in channels.iter().zip(&channel_addrs) {
        let state = devnet
            .actor_state(ch)
            .ok()
            .and_then(|s| s.paych)
            .ok_or_else(|| anyhow!("channel {} vanished before collection", channels[pair]))?;
        to_send.insert(*pair, state.to_send.clone());
    }

    // Mine to just past the latest `settling_at`: the clients' settlers collect (the
    // providers' wait a few epochs more, leaving the payers the first chance).
    progress.phase("settlement due: collecting");
    let settling_at = channel_addrs
        .iter()
        .filter_map(|ch| devnet.actor_state(ch).ok().and_then(|s| s.paych))
        .map(|s| s.settling_at)
        .max()
        .unwrap_or(0);
    let head = devnet.head_tipset().height;
    let epochs = u64::try_from(settling_at + 1 - head).unwrap_or(0).min(SETTLE_DELAY as u64 + 1);
    let chain = devnet.clone();
    tokio::task::spawn_blocking(move || chain.mine(epochs))
        .await
        .context("mining past settlement failed")?;
    wait_until(CHAIN_TIMEOUT, "every channel to be collected", || {
        devnet.pending_messages() == 0
            && channel_addrs.iter().all(|ch| devnet.actor_state(ch).is_err())
    })
    .await?;
    progress.done();

    // The report.
    let after: Vec<TokenAmount> = addresses.iter().map(|(_, a, _)| balance(&devnet, a)).collect();
    let burnt_after = devnet.burnt();
    let stats: Vec<_> = addresses.iter().map(|(_, a, _)| devnet.sender_stats(a)).collect();
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for s in &stats {
        for ((kind, method), n) in &s.by_method {
            let name = match (kind.as_str(), method) {
                ("init", 2) => "create",
                ("paymentchannel", 0) => "add_funds",
                ("paymentchannel", 2) => "update",
                ("paymentchannel", 3) => "settle",
                ("paymentchannel", 4) => "collect",
                ("missing", 4) => "collect_too_late",
                ("account", 0) | ("missing", 0) => "send",
                _ => "other",
            };
            *by_kind.entry(name.to_owned()).or_default() += n;
        }
    }
    let chain_messages: u64 = stats.iter().map(|s| s.messages).sum();
    let updates_used = by_kind.get("update").copied().unwrap_or(0);
    let other_messages = chain_messages - updates_used;
    let lanes_paid: u64 =
        first.lanes.values().chain(second.lanes.values()).map(|l| l.len() as u64).sum();
    let payments = first.payments + second.payments;
    let mut latencies: Vec<u64> =
        first.latencies_us.iter().chain(&second.latencies_us).copied().collect();
    latencies.sort_unstable();

    let mut invariants = Vec::new();
    let sum = |v: &[TokenAmount]| v.iter().fold(TokenAmount::default(), |acc, x| acc + x);
    let left_in_channels = channel_addrs
        .iter()
        .filter_map(|ch| devnet.actor_state(ch).ok())
        .fold(TokenAmount::default(), |acc, s| acc + s.info.balance);
    let total_before = sum(&before) + &burnt_before;
    let total_after = sum(&after) + &burnt_after + &left_in_channels;
    invariants.push(Invariant {
        name: "the sum of all balances plus burnt gas is unchanged".into(),
        ok: total_before == total_after,
        detail: format!(
            "before {} attoFIL, after {} attoFIL",
            total_before.atto(),
            total_after.atto()
        ),
    });
    invariants.push(Invariant {
        name: "every channel was settled and collected".into(),
        ok: left_in_channels.is_zero(),
        detail: format!("{} attoFIL left in channels", left_in_channels.atto()),
    });
    for c in 0..args.clients {
        let i = args.providers + c;
        let spent = &before[i] - &after[i] - &stats[i].fees;
        let paid: TokenAmount = (0..args.providers)
            .map(|p| to_send.get(&(c, p)).cloned().unwrap_or_default())
            .fold(TokenAmount::default(), |acc, x| acc + x);
        invariants.push(Invariant {
            name: format!("client-{c}'s spend equals the providers' income from it"),
            ok: spent == paid,
            detail: format!(
                "spent {} attoFIL (balance change less gas); providers redeemed {} attoFIL",
                spent.atto(),
                paid.atto()
            ),
        });
    }
    for p in 0..args.providers {
        let income = &after[p] - &before[p] + &stats[p].fees;
        let redeemed: TokenAmount = (0..args.clients)
            .map(|c| to_send.get(&(c, p)).cloned().unwrap_or_default())
            .fold(TokenAmount::default(), |acc, x| acc + x);
        invariants.push(Invariant {
            name: format!("provider-{p}'s income equals what its channels paid out"),
            ok: income == redeemed,
            detail: format!(
                "income {} attoFIL (balance change plus gas); redeemed {} attoFIL",
                income.atto(),
                redeemed.atto()
            ),
        });
    }
    let over: Vec<String> = to_send
        .iter()
        .filter(|(pair, redeemed)| issued.get(pair).is_none_or(|i| *redeemed > i))
        .map(|((c, p), _)| format!("client-{c}→provider-{p}"))
        .collect();
    let issued_total = issued.values().fold(TokenAmount::default(), |acc, x| acc + x);
    let redeemed_total = to_send.values().fold(TokenAmount::default(), |acc, x| acc + x);
    invariants.push(Invariant {
        name: "no channel paid out more than its client issued in vouchers".into(),
        ok: over.is_empty(),
        detail: if over.is_empty() {
            format!(
                "issued {}, redeemed {} (the difference is the reconciliation discount and \
                 vouchers lost with a killed node)",
                format_fil(&issued_total),
                format_fil(&redeemed_total)
            )
        } else {
            format!("over-redeemed: {}", over.join(", "))
        },
    });
    if args.crash.is_none() {
        let retries = first.retries + second.retries;
        invariants.push(Invariant {
            name: "no retrieval failed (none needed trying again)".into(),
            ok: retries == 0,
            detail: format!("{retries} attempts failed"),
        });
    }
    invariants.push(Invariant {
        name: "every retrieval completed".into(),
        ok: first.retrievals + second.retrievals == retrievals,
        detail: format!("{} of {}", first.retrievals + second.retrievals, retrievals),
    });
    let invariants_ok = invariants.iter().all(|i| i.ok);

    let balances = addresses
        .iter()
        .enumerate()
        .map(|(i, (name, addr, _))| Balance {
            node: name.clone(),
            address: format_address(addr, Network::Testnet),
            before_atto: before[i].atto().to_string(),
            after_atto: after[i].atto().to_string(),
            fees_atto: stats[i].fees.atto().to_string(),
            messages: stats[i].messages,
        })
        .collect();
    let percentile = |q: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let rank = ((latencies.len() as f64) * q).ceil() as usize;
        latencies[rank.clamp(1, latencies.len()) - 1]
    };
    let payments_per_sec =
        if retrieval_secs > 0.0 { payments as f64 / retrieval_secs } else { 0.0 };
    let mut peaks = Vec::new();
    for node in &nodes {
        peaks.push(peak_rss_kib(node.read().await.child.id()));
    }
    server.shutdown().await;
    for node in &nodes {
        let mut node = node.write().await;
        let _ = stop_gracefully(&mut node.child).await;
    }
    Ok(Report {
        nodes: nodes.len(),
        clients: args.clients,
        providers: args.providers,
        channels: channels.len(),
        retrievals: first.retrievals + second.retrievals,
        retries: first.retries + second.retries,
        retry_reasons: first.retry_reasons.iter().chain(&second.retry_reasons).cloned().collect(),
        payments,
        bytes: first.bytes + second.bytes,
        retrieval_secs,
        payments_per_sec,
        raw_sign_per_sec: raw_sign,
        raw_recover_per_sec: raw_recover,
        crypto_ceiling_payments_per_sec: crypto_ceiling,
        payments_vs_crypto_ceiling: if crypto_ceiling > 0.0 {
            payments_per_sec / crypto_ceiling
        } else {
            0.0
        },
        latency_p50_us: percentile(0.50),
        latency_p99_us: percentile(0.99),
        chain_messages,
        chain_messages_by_kind: by_kind,
        chain_messages_one_per_lane: other_messages + lanes_paid,
        chain_messages_one_per_payment: other_messages + payments as u64,
        reconciled_channels: reconciled,
        settler_submissions: settler_after.saturating_sub(settler_before),
        gas_burnt_atto: (&burnt_after - &burnt_before).atto().to_string(),
        balances,
        peak_rss_kib_max: peaks.iter().copied().max().unwrap_or(0),
        peak_rss_kib_mean: if peaks.is_empty() {
            0
        } else {
            peaks.iter().sum::<u64>() / peaks.len() as u64
        },
        crash: crash_report,
        invariants,
        invariants_ok,
        total_secs: started.elapsed().as_secs_f64(),
    })
}

/// The report as people read it.
pub fn render(report: &Report) -> String {
    let fil = |atto: &str| {
        atto.parse::<u128>().map(|a| format_fil(&TokenAmount::from_atto(a))).unwrap_or_default()
    };
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "paych testnet: {} nodes ({} clients, {} providers), {} channels, {:.1} s",
        report.nodes, report.clients, report.providers, report.channels, report.total_secs
    ));
    line(format!(
        "retrievals     {} ({} retried), {} bytes checked against their manifests",
        report.retrievals, report.retries, report.bytes
    ));
    for reason in &report.retry_reasons {
        line(format!("  retried: {reason}"));
    }
    line(format!(
        "payments       {} in {:.2} s: {:.0} payments/s",
        report.payments, report.retrieval_secs, report.payments_per_sec
    ));
    line(format!(
        "               {:.3} of the {:.0}/s one core could sign and recover ({:.0} signs/s, {:.0} recoveries/s)",
        report.payments_vs_crypto_ceiling,
        report.crypto_ceiling_payments_per_sec,
        report.raw_sign_per_sec,
        report.raw_recover_per_sec
    ));
    line(format!(
        "latency        p50 {} µs, p99 {} µs (voucher made, stored, sent, validated, stored, answered)",
        report.latency_p50_us, report.latency_p99_us
    ));
    let kinds: Vec<String> =
        report.chain_messages_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    line(format!("chain messages {} ({})", report.chain_messages, kinds.join(", ")));
    line(format!(
        "               vs {} redeeming each lane each round, {} paying on chain per chunk",
        report.chain_messages_one_per_lane, report.chain_messages_one_per_payment
    ));
    line(format!(
        "reconciled     {} channels into one voucher each; settlers submitted {} vouchers",
        report.reconciled_channels, report.settler_submissions
    ));
    line(format!("gas burnt      {}", fil(&report.gas_burnt_atto)));
    if report.peak_rss_kib_max > 0 {
        line(format!(
            "memory         peak per daemon: mean {} MiB, max {} MiB",
            report.peak_rss_kib_mean / 1024,
            report.peak_rss_kib_max / 1024
        ));
    }
    if let Some(crash) = &report.crash {
        line(format!("crash          {crash}"));
    }
    line("balances".into());
    for b in &report.balances {
        line(format!(
            "  {:<12} {}  {} → {}  (gas {}, {} messages)",
            b.node,
            b.address,
            fil(&b.before_atto),
            fil(&b.after_atto),
            fil(&b.fees_atto),
            b.messages
        ));
    }
    line("invariants".into());
    for i in &report.invariants {
        line(format!("  [{}] {}: {}", if i.ok { "ok" } else { "FAILED" }, i.name, i.detail));
    }
    out
}

struct RoundContext {
    nodes: Nodes,
    providers: usize,
    channels: BTreeMap<(usize, usize), String>,
    roots: Vec<String>,
    max_price: TokenAmount,
}

struct CrashPlan {
    index: usize,
    /// Kill once this many retrievals of the round have completed.
    after: usize,
    exe: PathBuf,
}

#[derive(Default)]
struct CrashState {
    report: tokio::sync::Mutex<Option<String>>,
}

/// Runs `jobs` concurrently (one task each, bounded), trying each again when a node was
/// killed under it.
#[allow(clippy::too_many_arguments)]
async fn run_round(
    ctx: &Arc<RoundContext>,
    jobs: &[Job],
    progress: &Progress,
    phase: &str,
    done_before: usize,
    total: usize,
    crash: Option<(&CrashPlan, Arc<CrashState>, String)>,
) -> anyhow::Result<RoundOutcome> {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_RETRIEVALS));
    let completed = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for job in jobs.iter().copied() {
        let ctx = ctx.clone();
        let permits = permits.clone();
        let completed = completed.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let mut failures = Vec::new();
            for _ in 0..ATTEMPTS {
                match retrieve_once(&ctx, job).await {
                    Ok(got) => {
                        completed.fetch_add(1, Ordering::SeqCst);
                        return (job, Ok(got), failures);
                    }
                    Err(e) => {
                        failures.push(e.to_string());
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            let error = anyhow!("retrieval failed {ATTEMPTS} times: {}", failures.join("; "));
            (job, Err(error), failures)
        });
    }
    let mut outcome = RoundOutcome::default();
    let mut crashed = false;
    progress.bar(phase, done_before, total);
    loop {
        if let Some((plan, state, api_info)) = &crash {
            if !crashed && completed.load(Ordering::SeqCst) >= plan.after {
                crashed = true;
                let text = crash_and_restart(&ctx.nodes, plan, api_info).await?;
                *state.report.lock().await = Some(text);
            }
        }
        let next = tokio::time::timeout(Duration::from_millis(50), tasks.join_next()).await;
        let Ok(next) = next else { continue };
        let Some(joined) = next else { break };
        let (job, result, failures) = joined.context("a retrieval task failed")?;
        outcome.retries += failures.len();
        for reason in failures {
            if outcome.retry_reasons.len() < 8 {
                outcome.retry_reasons.push(format!(
                    "client-{} from provider-{}: {reason}",
                    job.client, job.provider
                ));
            }
        }
        let got = result.with_context(|| {
            format!("client-{} retrieving from provider-{}", job.client, job.provider)
        })?;
        outcome.retrievals += 1;
        outcome.bytes += got["Bytes"].as_u64().unwrap_or(0);
        let micros: Vec<u64> = got["PaymentMicros"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        outcome.payments += micros.len();
        outcome.latencies_us.extend(micros);
        if let Some(lane) = got["Lane"].as_u64() {
            outcome.lanes.entry((job.client, job.provider)).or_default().insert(lane);
        }
        progress.bar(phase, done_before + outcome.retrievals, total);
    }
    Ok(outcome)
}

async fn retrieve_once(ctx: &RoundContext, job: Job) -> anyhow::Result<Value> {
    let rpc = ctx.nodes[ctx.providers + job.client].read().await.rpc.clone();
    let channel = ctx
        .channels
        .get(&(job.client, job.provider))
        .ok_or_else(|| anyhow!("no channel for the pair"))?;
    let root = &ctx.roots[job.provider];
    call(&rpc, "PaychRetrieve", json!([channel, root, ctx.max_price.atto().to_string()])).await
}

async fn nodes_index(nodes: &Nodes, name: &str) -> anyhow::Result<usize> {
    for (i, node) in nodes.iter().enumerate() {
        if node.read().await.name == name {
            return Ok(i);
        }
    }
    bail!("--crash {name:?}: no such node (client-N or provider-N)")
}

/// Kills node `plan.index` with SIGKILL, restarts it on its repo, and says what came back.
async fn crash_and_restart(
    nodes: &Nodes,
    plan: &CrashPlan,
    api_info: &str,
) -> anyhow::Result<String> {
    let handle = nodes[plan.index].clone();
    let mut node = handle.write().await;
    let before = holdings(&node.rpc).await.unwrap_or_default();
    node.child.kill().context("cannot kill the node")?;
    let _ = node.child.wait();
    let config = RepoConfig::parse(
        &fs::read_to_string(node.repo.join("config.toml")).context("cannot read config.toml")?,
    )?;
    let port = config
        .listen
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap_or(0);
    let restarted = start_node(
        &plan.exe,
        node.repo.parent().unwrap_or(Path::new(".")),
        &node.name.clone(),
        api_info,
        &[],
        config.top_up.clone(),
        port,
    )
    .await?;
    // The old handle's drop must not kill the new process: swap them.
    let mut old = std::mem::replace(&mut *node, restarted);
    let _ = old.child.wait();
    let after = holdings(&node.rpc).await?;
    // A voucher being stored when the node was killed is listed before but was never
    // acknowledged (nor returned, on a client), so it may be gone: at most one per running
    // retrieval. Acknowledged ones must all be back (the invariants check what they paid).
    if after.0 < before.0 || after.1 + MAX_CONCURRENT_RETRIEVALS < before.1 {
        bail!(
            "{} came back with {} channels and {} vouchers; it held {} and {}",
            node.name,
            after.0,
            after.1,
            before.0,
            before.1
        );
    }
    Ok(format!(
        "{} killed with SIGKILL during round 2 and restarted: {} channels and {} vouchers listed before (unacknowledged ones included), {} and {} after",
        node.name, before.0, before.1, after.0, after.1
    ))
}

/// Channels and vouchers a node holds.
async fn holdings(rpc: &LotusChain) -> anyhow::Result<(usize, usize)> {
    let list = call(rpc, "PaychList", json!([])).await?;
    let channels = list.as_array().cloned().unwrap_or_default();
    let mut vouchers = 0;
    for ch in &channels {
        let v = call(rpc, "PaychVoucherList", json!([ch])).await?;
        vouchers += v.as_array().map_or(0, Vec::len);
    }
    Ok((channels.len(), vouchers))
}

/// Submits the best spendable voucher of each lane of `ch`.
async fn submit_best(rpc: &LotusChain, ch: &str) -> anyhow::Result<usize> {
    let best = call(rpc, "PaychVoucherBestSpendable", json!([ch])).await?;
    let vouchers = best.as_array().cloned().unwrap_or_default();
    for v in &vouchers {
        call(rpc, "PaychVoucherSubmit", json!([ch, v, Value::Null, Value::Null])).await?;
    }
    Ok(vouchers.len())
}

/// Asks the payer of `ch` for one combined voucher and submits it; `false` when the node
/// cannot reconcile this channel (its lanes are then redeemed one by one).
async fn reconcile(rpc: &LotusChain, ch: &str) -> anyhow::Result<bool> {
    match call(rpc, "PaychReconcile", json!([ch])).await {
        Ok(answer) => {
            let combined = answer.get("Combined").cloned().unwrap_or(Value::Null);
            if combined.is_null() {
                return Ok(false);
            }
            call(rpc, "PaychVoucherSubmit", json!([ch, combined, Value::Null, Value::Null]))
                .await?;
            Ok(true)
        }
        Err(e) => {
            tracing::info!(%ch, error = %e, "not reconciled; lanes redeemed one by one");
            Ok(false)
        }
    }
}

/// UpdateChannelState messages `addr` sent.
fn updates(devnet: &Devnet, addr: &Address) -> u64 {
    devnet
        .sender_stats(addr)
        .by_method
        .iter()
        .filter(|((kind, method), _)| kind == "paymentchannel" && *method == 2)
        .map(|(_, n)| *n)
        .sum()
}

fn balance(devnet: &Devnet, addr: &Address) -> TokenAmount {
    devnet.actor_state(addr).map(|s| s.info.balance).unwrap_or_default()
}

async fn wait_for_pool(devnet: &Devnet) -> anyhow::Result<()> {
    wait_until(CHAIN_TIMEOUT, "pending messages to land", || devnet.pending_messages() == 0).await
}

async fn wait_until(
    timeout: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Starts `paych daemon` for node `name` under `dir`, on the devnet at `api_info`, its
/// libp2p listener on loopback `port` (0 on a first start: the daemon binds a port the
/// system gives it, which is then written into its config so a restart listens there again
/// and its peers' addresses stay good — picking a free port up front would race with every
/// other socket opened meanwhile).
async fn start_node(
    exe: &Path,
    dir: &Path,
    name: &str,
    api_info: &str,
    peers: &[String],
    top_up: Option<paych_core::manager::TopUpPolicy>,
    port: u16,
) -> anyhow::Result<Node> {
    let repo = dir.join(name);
    fs::create_dir_all(&repo).with_context(|| format!("cannot create {}", repo.display()))?;
    let config_path = repo.join("config.toml");
    if !config_path.exists() {
        let peers = peers
            .iter()
            .map(|p| paych_node::pay::parse_peer(p).map_err(|e| anyhow!("{e}")))
            .collect::<anyhow::Result<_>>()?;
        let config = RepoConfig {
            listen: format!("/ip4/127.0.0.1/tcp/{port}").parse()?,
            api: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_inbound_connections_per_ip: LOOPBACK_CONNECTIONS_PER_IP,
            // The devnet does not reorganise: its blocks count at once.
            confidence: Some(0),
            top_up,
            peers,
            ..RepoConfig::default()
        };
        fs::write(&config_path, config.to_text())?;
    }
    let api_file = repo.join("api");
    let _ = fs::remove_file(&api_file);
    let log = dir.join(format!("{name}.log"));
    let log_file = fs::OpenOptions::new().create(true).append(true).open(&log)?;
    let mut child = Command::new(exe)
        .arg("daemon")
        .arg("--repo")
        .arg(&repo)
        .env("FULLNODE_API_INFO", api_info)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file))
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    let api = loop {
        if let Ok(text) = fs::read_to_string(&api_file) {
            if !text.trim().is_empty() {
                break text.trim().to_owned();
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "{name} exited ({status}) while starting; see {}:\n{}",
                log.display(),
                log_tail(&log)
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "{name} did not start within {START_TIMEOUT:?}; see {}:\n{}",
                log.display(),
                log_tail(&log)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let token = fs::read_to_string(repo.join("token"))?.trim().to_owned();
    let mut config = LotusConfig::new(ApiInfo::parse(&format!("{token}:{api}"))?);
    config.request_timeout = Duration::from_secs(600);
    config.retries = 0;
    let rpc = Arc::new(LotusChain::new(config)?);
    let address = text(&call(&rpc, "WalletDefaultAddress", json!([])).await?)?;
    let (address, _) = parse_address(&address).map_err(|e| anyhow!("{address}: {e}"))?;
    let listen = call(&rpc, "NetAddrsListen", json!([])).await?;
    let addr = listen["Addrs"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{name} listens nowhere"))?;
    let peer = format!("{addr}/p2p/{}", text(&listen["ID"])?);
    if port == 0 {
        pin_listen_port(&config_path, addr)?;
    }
    Ok(Node { name: name.to_owned(), repo, child, rpc, address, peer })
}

/// The last lines of a node's log, for an error that must say why the node stopped.
fn log_tail(log: &Path) -> String {
    const LINES: usize = 12;
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LINES)..].join("\n")
}

/// Rewrites the `listen` address in `config_path` to `bound`, where the daemon listens.
fn pin_listen_port(config_path: &Path, bound: &str) -> anyhow::Result<()> {
    let mut config = RepoConfig::parse(
        &fs::read_to_string(config_path)
            .with_context(|| format!("cannot read {}", config_path.display()))?,
    )?;
    config.listen = bound.parse().with_context(|| format!("bad listen address {bound}"))?;
    fs::write(config_path, config.to_text())
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    Ok(())
}

/// The peak resident memory of process `pid` (`VmHWM`), KiB; 0 where `/proc` does not tell.
fn peak_rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok()
            })
        })
        .unwrap_or(0)
}

/// Sends SIGTERM and waits for the process, killing it after a grace period.
async fn stop_gracefully(child: &mut Child) -> anyhow::Result<()> {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.wait();
    Ok(())
}

async fn call(rpc: &LotusChain, method: &str, params: Value) -> anyhow::Result<Value> {
    let params = match params {
        Value::Array(items) => items,
        other => vec![other],
    };
    rpc.request(method, params).await.map_err(|e| anyhow!("{method}: {e}"))
}

fn text(value: &Value) -> anyhow::Result<String> {
    value.as_str().map(str::to_owned).ok_or_else(|| anyhow!("expected a string, got {value}"))
}
