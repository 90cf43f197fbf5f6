//! `paych testnet`: a multi-node testnet on one machine, with paid retrievals,
//! redemption, reconciliation, settlement, and a report whose invariants are checked.
//!
//! A [`Testnet`] runs, phase by phase (each a method; [`run`] calls them in this order):
//!
//! 1. `start`: an embedded devnet, served over JSON-RPC on loopback; one `paych daemon`
//!    process per node (providers first, then clients that know the providers' libp2p
//!    addresses), each with its own repo under the run's directory;
//! 2. `fund`: every wallet funded from the faucet; the balances (plus the burnt funds) are
//!    recorded;
//! 3. `open_channels`: each provider publishes a random blob; each client opens (or
//!    reuses) a channel to each provider with funds reserved for its retrievals, auto
//!    top-up on;
//! 4. `round` 1: half of the retrievals, concurrently; every chunk checked against the
//!    manifest and paid with a voucher before the next is asked for;
//! 5. `redeem`: providers redeem their best voucher per lane;
//! 6. `round` 2: the other half, on the lanes the pool hands back;
//! 7. `reconcile`: providers reconcile each channel into one combined voucher and submit
//!    it — except one channel, left for the provider's settler;
//! 8. `settle`: clients settle every channel; the settler submits what was left;
//! 9. `collect`: once settlement is due the channels are collected;
//! 10. `report`: payments, bytes, latency, throughput (payments per second, and per
//!     retrieval: bytes over its time, MB/s, and the time to its first checked chunk),
//!     chain messages against the one-per-lane and one-per-payment alternatives, gas,
//!     balances, and the invariants.
//!
//! With `--crash NODE` one daemon is killed with SIGKILL during round 2 and restarted on the
//! same repo; its channels and vouchers must come back and the run must complete with its
//! invariants intact.
//!
//! With `--hub`, a hub daemon stands between the clients and the providers and every chunk
//! is paid through it with the provider's invoice ([`hub`] says how the phases differ).
//!
//! With `--wan DELAY[,JITTER[,RATE]]`, each daemon listens and dials on a loopback address
//! of its own (127.0.0.2, 127.0.0.3, …) behind a latency relay of that shape
//! ([`paych_node::relay`]) that keeps the dialler's address; the relay's address is the only
//! one the other daemons know it by (their `peer.<address>` entries, its `announce`, the
//! hub's entry in invoices), so every libp2p connection between daemons crosses exactly one
//! relay, the dialled daemon's. The report adds the link's shape and checks that every
//! connection crossed a relay ([`nodes::WanLinks`]).
//!
//! [`nodes`] runs the daemons and holds every call to their API; [`rounds`] runs the
//! retrievals; [`report`] checks and renders what the run did.

mod hub;
mod nodes;
mod report;
mod rounds;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::manager::TopUpPolicy;
use paych_core::types::{
    format_address, parse_address, parse_fil, Address, Network, PaychState, TokenAmount,
    SETTLE_DELAY,
};
use paych_node::parse_duration;
use paych_node::relay::LinkShape;
use paych_node::route::HubConfig;
use paych_node::rpc::devnet::RpcServer;
use tokio::sync::RwLock;

use hub::{HubSide, HUB_NAME};
use nodes::{Launcher, Node, NodeRpc, Nodes, WanLinks, MAX_WAN_NODES};
pub use report::{render, Report};
use report::{Ending, Holdings, Ledger, Run};
use rounds::{CrashPlan, Job, Pair, RoundContext, RoundOutcome, RoutedChunks, Tally};

/// How long the chain may take to reach a state the run waits for.
const CHAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the run looks at the chain while it waits.
const CHAIN_POLL: Duration = Duration::from_millis(50);
/// How often the run asks the providers whether their settlers are done.
const SETTLER_POLL: Duration = Duration::from_millis(100);
/// Rounds of bare signatures and recoveries the crypto ceiling is measured over.
const CRYPTO_ROUNDS: usize = 500;
/// What each client receives from the faucet.
const CLIENT_FUNDS_FIL: &str = "1000";
/// What each provider receives from the faucet (for gas).
const PROVIDER_FUNDS_FIL: &str = "10";

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
    /// Kill this node (`client-0`, `provider-1`, `hub`, …) with SIGKILL during round 2,
    /// then restart it on its repo.
    #[arg(long)]
    pub crash: Option<String>,
    /// Pay every chunk through one hub daemon with the provider's invoice: each client
    /// opens one channel to the hub and the hub one to each provider (C + P channels
    /// instead of C × P). Chunks are paid, not transferred.
    #[arg(long)]
    pub hub: bool,
    /// Give every link between daemons the shape `DELAY[,JITTER[,RATE]]` (`20ms`,
    /// `50ms,5ms,10M`: a one-way delay, a jitter drawn per chunk, a rate cap in bytes per
    /// second): each daemon on a loopback address of its own behind a relay of that shape.
    #[arg(long, value_name = "DELAY[,JITTER[,RATE]]")]
    pub wan: Option<LinkShape>,
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
            hub: false,
            wan: None,
        }
    }
}

/// Runs the testnet and returns its report; its daemons' addresses are of `network`.
pub async fn run(args: TestnetArgs, network: Network) -> anyhow::Result<Report> {
    let started = Instant::now();
    let price = check(&args)?;
    let (dir, temporary) = run_dir(args.keep.as_deref())?;
    let result = run_phases(args, network, price, &dir, started).await;
    if temporary && result.is_ok() {
        let _ = fs::remove_dir_all(&dir);
    } else if result.is_err() {
        eprintln!("testnet: nodes' repos and logs kept in {}", dir.display());
    }
    result
}

/// The phases, in the order the module doc lists them.
async fn run_phases(
    args: TestnetArgs,
    network: Network,
    price: TokenAmount,
    dir: &Path,
    started: Instant,
) -> anyhow::Result<Report> {
    if args.hub {
        return run_routed_phases(args, network, price, dir, started).await;
    }
    let mut testnet = Testnet::start(args, network, price, dir, started).await?;
    testnet.fund().await?;
    testnet.open_channels().await?;
    let jobs = testnet.jobs();
    let (round1, round2) = jobs.split_at(jobs.len() / 2);
    let retrievals_started = Instant::now();
    testnet.round(round1, "round 1", None).await?;
    let settler_channel = testnet.redeem().await?;
    let crash = testnet.crash_plan(round2.len()).await?;
    testnet.round(round2, "round 2", crash.as_ref()).await?;
    testnet.ledger.retrieval_secs = retrievals_started.elapsed().as_secs_f64();
    testnet.reconcile(settler_channel.as_deref()).await?;
    testnet.settle().await?;
    testnet.collect().await?;
    testnet.report().await
}

/// The phases with `--hub`: the same order, with the hub's channels, redemptions and
/// settlement ([`hub`]), and no reconciliation.
async fn run_routed_phases(
    args: TestnetArgs,
    network: Network,
    price: TokenAmount,
    dir: &Path,
    started: Instant,
) -> anyhow::Result<Report> {
    let mut testnet = Testnet::start(args, network, price, dir, started).await?;
    testnet.fund().await?;
    testnet.open_hub_channels().await?;
    let jobs = testnet.jobs();
    let (round1, round2) = jobs.split_at(jobs.len() / 2);
    let retrievals_started = Instant::now();
    testnet.round(round1, "round 1", None).await?;
    testnet.redeem_routed().await?;
    let crash = testnet.crash_plan(round2.len()).await?;
    testnet.round(round2, "round 2", crash.as_ref()).await?;
    testnet.ledger.retrieval_secs = retrievals_started.elapsed().as_secs_f64();
    testnet.resolve_routes().await?;
    testnet.settle_routed().await?;
    testnet.collect().await?;
    testnet.report().await
}

/// Checks the arguments; the price of a chunk.
fn check(args: &TestnetArgs) -> anyhow::Result<TokenAmount> {
    if args.clients == 0 || args.providers == 0 {
        bail!("--clients and --providers must be at least 1");
    }
    if args.chunks == 0 || args.chunk_size == 0 {
        bail!("--chunks and --chunk-size must be at least 1");
    }
    if let Some(name) = &args.crash {
        if !node_names(args.clients, args.providers, args.hub).any(|n| &n == name) {
            let hub = if args.hub { ", or hub" } else { "" };
            bail!("--crash {name:?}: no such node; name one of client-0…client-{} or provider-0…provider-{}{hub}", args.clients - 1, args.providers - 1);
        }
    }
    let nodes = node_names(args.clients, args.providers, args.hub).count();
    if args.wan.is_some() && nodes > MAX_WAN_NODES {
        bail!(
            "--wan gives each node its own 127.0.0.N: at most {MAX_WAN_NODES} nodes, not {nodes}"
        );
    }
    let price = parse_fil(&args.price_per_chunk)
        .map_err(|e| anyhow!("--price-per-chunk {:?}: {e}", args.price_per_chunk))?;
    if !price.is_positive() {
        bail!("--price-per-chunk must be positive");
    }
    Ok(price)
}

/// The nodes' names, providers first, then clients, then the hub with `--hub` (their
/// order in [`Nodes`]).
fn node_names(clients: usize, providers: usize, hub: bool) -> impl Iterator<Item = String> {
    (0..providers)
        .map(|p| format!("provider-{p}"))
        .chain((0..clients).map(|c| format!("client-{c}")))
        .chain(hub.then(|| HUB_NAME.to_owned()))
}

/// The run's directory: `keep`, else a new temporary one (`true`: remove it after).
fn run_dir(keep: Option<&Path>) -> anyhow::Result<(PathBuf, bool)> {
    let (dir, temporary) = match keep {
        Some(dir) => (dir.to_owned(), false),
        None => {
            let nonce = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let name = format!("paych-testnet-{}-{nonce}", std::process::id());
            (std::env::temp_dir().join(name), true)
        }
    };
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok((dir, temporary))
}

/// A running testnet: the devnet, the daemons, and what the phases have recorded.
pub struct Testnet {
    args: TestnetArgs,
    price: TokenAmount,
    started: Instant,
    progress: Progress,
    devnet: Devnet,
    server: RpcServer,
    launcher: Launcher,
    /// Providers first, then clients.
    nodes: Nodes,
    /// The root of each provider's blob.
    roots: Vec<String>,
    /// The channel of each client–provider pair (none with `--hub`).
    channels: BTreeMap<Pair, String>,
    /// With `--hub`: the hub and the channels through it.
    hub: Option<HubSide>,
    ledger: Ledger,
}

impl Testnet {
    /// Phase 1: measures the crypto ceiling, starts the devnet and serves it, then the
    /// providers' daemons and the clients'.
    async fn start(
        args: TestnetArgs,
        network: Network,
        price: TokenAmount,
        dir: &Path,
        started: Instant,
    ) -> anyhow::Result<Testnet> {
        let progress = Progress { enabled: !args.json };
        let exe = std::env::current_exe().context("cannot find the paych executable")?;
        let probe = paych_core::crypto::generate_secret_key().context("cannot make a probe key")?;
        let (raw_sign_per_sec, raw_recover_per_sec) =
            paych_node::limits::crypto_rates(&probe, CRYPTO_ROUNDS)?;
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
        let names = node_names(args.clients, args.providers, args.hub);
        let wan = args.wan.map(|shape| WanLinks::new(shape, names)).transpose()?;
        let launcher = Launcher { exe, dir: dir.to_owned(), api_info, network, wan };
        let ledger = Ledger { raw_sign_per_sec, raw_recover_per_sec, ..Ledger::default() };
        let mut testnet = Testnet {
            args,
            price,
            started,
            progress,
            devnet,
            server,
            launcher,
            nodes: Vec::new(),
            roots: Vec::new(),
            channels: BTreeMap::new(),
            hub: None,
            ledger,
        };
        testnet.start_nodes().await?;
        Ok(testnet)
    }

    /// Starts the providers, then (with `--hub`) the hub, which is told where the providers
    /// listen, then the clients, which are told where the providers (or the hub) listen.
    async fn start_nodes(&mut self) -> anyhow::Result<()> {
        let (clients, providers) = (self.args.clients, self.args.providers);
        let (provider_names, client_names): (Vec<_>, Vec<_>) =
            node_names(clients, providers, false).enumerate().partition(|(i, _)| *i < providers);
        self.progress.phase(&format!("starting {providers} providers"));
        let launcher = &self.launcher;
        let starting = provider_names
            .iter()
            .map(|(_, name)| launcher.start(name, &[], None, HubConfig::default()));
        let started = futures::future::try_join_all(starting).await?;
        let mut peers: Vec<_> = started.iter().map(|n| (n.address, n.peer.clone())).collect();
        self.nodes.extend(started.into_iter().map(|n| Arc::new(RwLock::new(n))));
        let hub = match self.args.hub {
            true => Some(self.start_hub(&peers).await?),
            false => None,
        };
        let top_up = match &hub {
            Some((node, _)) => {
                peers = vec![(node.address, node.peer.clone())];
                self.routed_top_up()
            }
            None => {
                let blob_price = self.blob_price();
                TopUpPolicy { low_water: blob_price.clone(), high_water: &blob_price * 2u64 }
            }
        };
        self.progress.phase(&format!("starting {clients} clients"));
        let launcher = &self.launcher;
        let starting = client_names.iter().map(|(_, name)| {
            launcher.start(name, &peers, Some(top_up.clone()), HubConfig::default())
        });
        let started = futures::future::try_join_all(starting).await?;
        self.nodes.extend(started.into_iter().map(|n| Arc::new(RwLock::new(n))));
        if let Some((node, entry)) = hub {
            let index = self.nodes.len();
            self.nodes.push(Arc::new(RwLock::new(node)));
            let (inbound, outbound) = (BTreeMap::new(), BTreeMap::new());
            self.hub = Some(HubSide { index, entry, inbound, outbound });
        }
        Ok(())
    }

    /// Phase 2: every wallet funded from the faucet; records the balances and burnt funds.
    async fn fund(&mut self) -> anyhow::Result<()> {
        self.progress.phase("funding wallets from the faucet");
        let mut funded = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let address = node.read().await.address;
            let fil = if i < self.args.providers { PROVIDER_FUNDS_FIL } else { CLIENT_FUNDS_FIL };
            let amount = parse_fil(fil).map_err(|e| anyhow!("{e}"))?;
            self.devnet.faucet(&address, amount.clone()).context("the faucet refused")?;
            funded.push((address, amount));
        }
        let devnet = &self.devnet;
        wait_until(CHAIN_TIMEOUT, "the faucet's funds to land", || {
            funded.iter().all(|(a, amount)| balance(devnet, a) == *amount)
        })
        .await?;
        self.ledger.funded = Holdings {
            balances: funded.iter().map(|(a, _)| balance(devnet, a)).collect(),
            burnt: devnet.burnt(),
        };
        Ok(())
    }

    /// Phase 3: each provider publishes a blob; each client opens a channel to each
    /// provider, with funds reserved for its share of the retrievals.
    async fn open_channels(&mut self) -> anyhow::Result<()> {
        self.progress.phase("publishing blobs");
        let (size, chunk_size) = (self.args.chunk_size * self.args.chunks, self.args.chunk_size);
        for p in 0..self.args.providers {
            let root = self.rpc(p).await.retrieval_publish(size, chunk_size, &self.price).await?;
            self.roots.push(root);
        }
        self.progress.phase(&format!("opening {} channels", self.pairs()));
        let reserve = self.blob_price() * self.retrievals().div_ceil(self.pairs()).max(1) as u64;
        let mut opening = Vec::new();
        for c in 0..self.args.clients {
            let client = self.client(c);
            let from = self.address_text(&client.read().await.address);
            let rpc = client.read().await.rpc.clone();
            for p in 0..self.args.providers {
                let to = self.address_text(&self.node(p).read().await.address);
                let (rpc, from, reserve) = (rpc.clone(), from.clone(), &reserve);
                opening.push(async move {
                    anyhow::Ok(((c, p), rpc.paych_get(&from, &to, reserve).await?))
                });
            }
        }
        self.channels = futures::future::try_join_all(opening).await?.into_iter().collect();
        Ok(())
    }

    /// The retrievals, spread over every pair two by two (a pair's two retrievals run
    /// together, on two lanes).
    fn jobs(&self) -> Vec<Job> {
        let (pairs, providers) = (self.pairs(), self.args.providers);
        (0..self.retrievals())
            .map(|i| {
                let pair = (i / 2) % pairs;
                Job { client: pair / providers, provider: pair % providers }
            })
            .collect()
    }

    /// Phases 4 and 6: a round of retrievals; with `crash`, one node is killed and
    /// restarted partway.
    async fn round(
        &mut self,
        jobs: &[Job],
        phase: &str,
        crash: Option<&CrashPlan>,
    ) -> anyhow::Result<()> {
        let ctx = Arc::new(RoundContext {
            nodes: self.nodes.clone(),
            providers: self.args.providers,
            channels: self.channels.clone(),
            roots: self.roots.clone(),
            max_price: self.price.clone(),
            hub: self.hub.as_ref().map(|side| RoutedChunks {
                hub: side.entry.clone(),
                hub_index: side.index,
                chunks: self.args.chunks,
            }),
        });
        let done_before = self.ledger.rounds.iter().map(RoundOutcome::retrievals).sum();
        let tally = Tally { phase, done_before, total: self.retrievals() };
        let crash = crash.map(|plan| (plan, &self.launcher));
        let outcome = rounds::run_round(&ctx, jobs, &self.progress, tally, crash).await?;
        self.ledger.rounds.push(outcome);
        Ok(())
    }

    /// Phase 5: providers submit their best voucher per lane; returns the channel whose
    /// later vouchers are left to its provider's settler (client-0's to provider-0).
    async fn redeem(&mut self) -> anyhow::Result<Option<String>> {
        self.progress.phase("providers redeem their best vouchers");
        let paid_on = self.paid_on();
        for ((_, p), ch) in &paid_on {
            submit_best(self.rpc(*p).await.as_ref(), ch).await?;
        }
        wait_for_pool(&self.devnet).await?;
        Ok(paid_on.get(&(0, 0)).cloned())
    }

    /// With `--crash NODE`: which node round 2 kills, and after how many retrievals.
    async fn crash_plan(&self, round: usize) -> anyhow::Result<Option<CrashPlan>> {
        let Some(name) = &self.args.crash else { return Ok(None) };
        for (index, node) in self.nodes.iter().enumerate() {
            if &node.read().await.name == name {
                let units = match self.hub {
                    Some(_) => round * self.args.chunks as usize,
                    None => round,
                };
                return Ok(Some(CrashPlan { index, after: units.div_ceil(3).max(1) }));
            }
        }
        bail!("--crash {name:?}: no such node (client-N or provider-N)")
    }

    /// Phase 7: records what each client issued, then providers reconcile every channel
    /// paid on but `settler_channel`, and submit.
    async fn reconcile(&mut self, settler_channel: Option<&str>) -> anyhow::Result<()> {
        self.record_issued().await?;
        self.progress.phase("providers reconcile and submit");
        for ((_, p), ch) in &self.paid_on() {
            if Some(ch.as_str()) == settler_channel {
                continue;
            }
            let rpc = self.rpc(*p).await;
            if reconcile(&rpc, ch).await? {
                self.ledger.reconciled += 1;
            }
            submit_best(&rpc, ch).await?;
        }
        wait_for_pool(&self.devnet).await
    }

    /// What each client issued on each channel, before any voucher is folded.
    async fn record_issued(&mut self) -> anyhow::Result<()> {
        for ((c, p), ch) in &self.channels {
            let lanes = self.client(*c).read().await.rpc.paych_status_lanes(ch).await?;
            let total = lanes.iter().fold(TokenAmount::default(), |acc, x| acc + x);
            self.ledger.issued.insert((*c, *p), total);
        }
        Ok(())
    }

    /// Phase 8: clients settle every channel; the providers' settlers submit what was left;
    /// records what each channel pays out.
    async fn settle(&mut self) -> anyhow::Result<()> {
        self.progress.phase("clients settle; providers' settlers submit");
        let settler_before = self.provider_updates().await;
        let mut settling = Vec::new();
        for ((c, _), ch) in &self.channels {
            let rpc = self.client(*c).read().await.rpc.clone();
            settling.push(async move { rpc.paych_settle(ch).await });
        }
        futures::future::try_join_all(settling).await?;
        let channel_addrs = self.wait_settling().await?;
        self.await_settlers().await?;
        self.ledger.settler_submissions =
            self.provider_updates().await.saturating_sub(settler_before);
        let devnet = &self.devnet;
        for ((pair, ch), addr) in self.channels.iter().zip(&channel_addrs) {
            let state = paych_state(devnet, addr)
                .ok_or_else(|| anyhow!("channel {ch} vanished before collection"))?;
            self.ledger.to_send.insert(*pair, state.to_send);
        }
        Ok(())
    }

    /// Waits for every channel of the run to start settling; their addresses.
    async fn wait_settling(&self) -> anyhow::Result<Vec<Address>> {
        let channel_addrs = self.channel_addrs()?;
        let devnet = &self.devnet;
        wait_until(CHAIN_TIMEOUT, "every channel to start settling", || {
            channel_addrs
                .iter()
                .all(|ch| paych_state(devnet, ch).is_some_and(|s| s.settling_at > 0))
        })
        .await?;
        Ok(channel_addrs)
    }

    /// Waits for the providers' settlers to submit whatever was left unredeemed.
    async fn await_settlers(&self) -> anyhow::Result<()> {
        let mut holders = Vec::new();
        for ((_, p), ch) in &self.paid_on() {
            holders.push((self.rpc(*p).await, ch.clone()));
        }
        self.await_holders(&holders).await
    }

    /// Waits until each holder has nothing left to spend on its channel and the message
    /// pool is empty.
    async fn await_holders(&self, holders: &[(Arc<NodeRpc>, String)]) -> anyhow::Result<()> {
        let deadline = Instant::now() + CHAIN_TIMEOUT;
        loop {
            let mut pending = 0;
            for (rpc, ch) in holders {
                pending += rpc.paych_voucher_best_spendable(ch).await?.len();
            }
            if pending == 0 && self.devnet.pending_messages() == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the settlers left {pending} vouchers unsubmitted");
            }
            tokio::time::sleep(SETTLER_POLL).await;
        }
    }

    /// Phase 9: mines to just past the latest `settling_at`; the clients' settlers collect
    /// (the providers' wait a few epochs more, leaving the payers the first chance).
    async fn collect(&mut self) -> anyhow::Result<()> {
        self.progress.phase("settlement due: collecting");
        let channel_addrs = self.channel_addrs()?;
        let devnet = &self.devnet;
        let settling_at = channel_addrs
            .iter()
            .filter_map(|ch| paych_state(devnet, ch))
            .map(|s| s.settling_at)
            .max()
            .unwrap_or(0);
        let head = devnet.head_tipset().height;
        let epochs =
            u64::try_from(settling_at + 1 - head).unwrap_or(0).min(SETTLE_DELAY as u64 + 1);
        let chain = devnet.clone();
        tokio::task::spawn_blocking(move || chain.mine(epochs))
            .await
            .context("mining past settlement failed")?;
        wait_until(CHAIN_TIMEOUT, "every channel to be collected", || {
            devnet.pending_messages() == 0
                && channel_addrs.iter().all(|ch| devnet.actor_state(ch).is_err())
        })
        .await?;
        self.progress.done();
        Ok(())
    }

    /// Phase 10: reads the chain's end state, stops the nodes, and reports.
    async fn report(self) -> anyhow::Result<Report> {
        let mut parties = Vec::new();
        let mut peaks_kib = Vec::new();
        let (mut after, mut stats) = (Vec::new(), Vec::new());
        for node in &self.nodes {
            let node = node.read().await;
            parties.push((node.name.clone(), self.address_text(&node.address)));
            peaks_kib.push(node.peak_rss_kib());
            after.push(balance(&self.devnet, &node.address));
            stats.push(self.devnet.sender_stats(&node.address));
        }
        let crossings = self.wan_crossings().await?;
        let left_in_channels = self
            .channel_addrs()?
            .iter()
            .filter_map(|ch| self.devnet.actor_state(ch).ok())
            .fold(TokenAmount::default(), |acc, s| acc + s.info.balance);
        let holdings = Holdings { balances: after, burnt: self.devnet.burnt() };
        let end = Ending { holdings, stats, left_in_channels };
        let run = Run {
            clients: self.args.clients,
            providers: self.args.providers,
            channels: self.all_channels().len(),
            hub: self.hub.as_ref().map(|side| side.index),
            retrievals: self.retrievals(),
            crashed: self.args.crash.is_some(),
            wan: self.args.wan,
            crossings,
            parties,
            peaks_kib,
            total_secs: 0.0,
        };
        self.server.shutdown().await;
        for node in &self.nodes {
            let _ = node.write().await.stop().await;
        }
        let run = Run { total_secs: self.started.elapsed().as_secs_f64(), ..run };
        Ok(Report::new(&run, &self.ledger, &end))
    }

    /// With `--wan`: whether every connection the daemons hold crossed a relay, and the
    /// figures (read before the daemons stop).
    async fn wan_crossings(&self) -> anyhow::Result<Option<(bool, String)>> {
        let Some(wan) = &self.launcher.wan else { return Ok(None) };
        let mut seen = Vec::new();
        for node in &self.nodes {
            let node = node.read().await;
            seen.push((node.name.clone(), node.rpc.net_peer_addrs().await?));
        }
        Ok(Some(wan.crossings(&seen).await))
    }

    /// Client–provider pairs.
    fn pairs(&self) -> usize {
        self.args.clients * self.args.providers
    }

    /// Retrievals in all: as asked, else 20, or 4 per pair when there are more than 5 pairs.
    fn retrievals(&self) -> usize {
        let pairs = self.pairs();
        self.args.retrievals.unwrap_or(if pairs > 5 { 4 * pairs } else { 20 })
    }

    /// The price of one whole blob.
    fn blob_price(&self) -> TokenAmount {
        &self.price * self.args.chunks
    }

    fn node(&self, i: usize) -> &Arc<RwLock<Node>> {
        &self.nodes[i]
    }

    fn client(&self, c: usize) -> &Arc<RwLock<Node>> {
        self.node(self.args.providers + c)
    }

    /// Node `i`'s API (the node may be restarted, so it is looked up each time).
    async fn rpc(&self, i: usize) -> Arc<NodeRpc> {
        self.node(i).read().await.rpc.clone()
    }

    fn address_text(&self, address: &Address) -> String {
        format_address(address, self.launcher.network)
    }

    /// The channels some round paid on (a provider learns of a channel with its first
    /// voucher).
    fn paid_on(&self) -> BTreeMap<Pair, String> {
        let rounds = &self.ledger.rounds;
        self.channels
            .iter()
            .filter(|(pair, _)| rounds.iter().any(|r| r.lanes().contains_key(*pair)))
            .map(|(pair, ch)| (*pair, ch.clone()))
            .collect()
    }

    /// Every channel of the run: the pairs' or, with `--hub`, those through the hub.
    fn all_channels(&self) -> Vec<&String> {
        let through_hub =
            self.hub.iter().flat_map(|h| h.inbound.values().chain(h.outbound.values()));
        self.channels.values().chain(through_hub).collect()
    }

    fn channel_addrs(&self) -> anyhow::Result<Vec<Address>> {
        self.all_channels()
            .into_iter()
            .map(|ch| parse_address(ch).map(|(a, _)| a).map_err(|e| anyhow!("{ch}: {e}")))
            .collect()
    }

    /// UpdateChannelState messages the providers sent.
    async fn provider_updates(&self) -> u64 {
        let mut updates = 0;
        for p in 0..self.args.providers {
            let address = self.node(p).read().await.address;
            updates += self
                .devnet
                .sender_stats(&address)
                .by_method
                .iter()
                .filter(|((kind, method), _)| kind == "paymentchannel" && *method == 2)
                .map(|(_, n)| *n)
                .sum::<u64>();
        }
        updates
    }
}

/// Submits the best spendable voucher of each lane of `ch`.
async fn submit_best(rpc: &NodeRpc, ch: &str) -> anyhow::Result<usize> {
    let vouchers = rpc.paych_voucher_best_spendable(ch).await?;
    for v in &vouchers {
        rpc.paych_voucher_submit(ch, v).await?;
    }
    Ok(vouchers.len())
}

/// Asks the payer of `ch` for one combined voucher and submits it; `false` when the node
/// cannot reconcile this channel (its lanes are then redeemed one by one).
async fn reconcile(rpc: &NodeRpc, ch: &str) -> anyhow::Result<bool> {
    match rpc.paych_reconcile(ch).await {
        Ok(Some(combined)) => {
            rpc.paych_voucher_submit(ch, &combined).await?;
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(e) => {
            tracing::info!(%ch, error = %e, "not reconciled; lanes redeemed one by one");
            Ok(false)
        }
    }
}

fn balance(devnet: &Devnet, addr: &Address) -> TokenAmount {
    devnet.actor_state(addr).map(|s| s.info.balance).unwrap_or_default()
}

fn paych_state(devnet: &Devnet, ch: &Address) -> Option<PaychState> {
    devnet.actor_state(ch).ok().and_then(|s| s.paych)
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
        tokio::time::sleep(CHAIN_POLL).await;
    }
    Ok(())
}

/// The run's progress on stderr (off with `--json`).
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
