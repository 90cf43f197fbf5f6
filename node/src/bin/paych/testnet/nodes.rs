//! The testnet's daemons as processes: starting `paych daemon` on a repo of its own,
//! stopping it, killing and restarting it; and [`NodeRpc`], the one place the testnet calls
//! a daemon's API — one short method per API method it uses, over the node's typed client.

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use libp2p::multiaddr::Protocol;
use paych_core::invoice::Hub;
use paych_core::lotus_json::api::{InvoiceJson, RouteReceiptJson};
use paych_core::lotus_json::{parse_amount_field, LotusJson, SignedVoucherJson};
use paych_core::manager::TopUpPolicy;
use paych_core::network::FilNetwork;
use paych_core::types::{parse_address, Address, Network, SignedVoucher, TokenAmount};
use paych_node::daemon::{Multiaddr, RepoConfig, FULLNODE_API_INFO};
use paych_node::relay::{BoundRelay, LinkShape, Relay, RelayOptions};
use paych_node::retrieval::parse_root;
use paych_node::route::HubConfig;
use paych_node::rpc::client::{rpc_url, ApiClient};
use paych_node::rpc::methods::{
    Method, NetAddrsListen, NetPeers, PaychGet, PaychGetWaitReady, PaychInvoice, PaychList,
    PaychPayInvoice, PaychReconcile, PaychRetrievalPublish, PaychRetrieve, PaychSettle,
    PaychStatus, PaychVoucherBestSpendable, PaychVoucherList, PaychVoucherSubmit,
    WalletDefaultAddress,
};
use paych_node::rpc::params::{BlobData, Bytes, InvoiceHubs, InvoiceText, PublishSpec, Root};
use paych_protocol::dial_from::tcp_socket_addr;
use tokio::sync::{Mutex, RwLock};

/// How long one node may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one API call may take (a retrieval pays for every chunk before it answers).
const CALL_TIMEOUT: Duration = Duration::from_secs(600);
/// How long reading a node's metrics may take.
const METRICS_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of a node's log quoted when it fails to start.
const LOG_TAIL_LINES: usize = 12;
/// The daemons' cap on inbound connections per IP without `--wan`. Every daemon then
/// listens and dials on 127.0.0.1, so the cap cannot tell them apart: it is lifted to every
/// inbound slot, and the caps per peer and in total still hold. With `--wan` each daemon
/// has a loopback address of its own, dials from it (`dial_from`), and the relays keep it,
/// so the daemons keep the default cap.
const LOOPBACK_CONNECTIONS_PER_IP: u32 = paych_node::daemon::MAX_INBOUND_CONNECTIONS_PER_IP;
/// The first loopback address a `--wan` testnet gives a daemon (127.0.0.1 stays the
/// devnet's and the APIs'): 127.0.0.2, then 127.0.0.3, …
const FIRST_WAN_HOST: u8 = 2;
/// The most daemons a `--wan` testnet can give a loopback address of their own.
pub const MAX_WAN_NODES: usize = (u8::MAX - FIRST_WAN_HOST) as usize;

/// A running daemon; dropping it kills the process.
pub struct Node {
    /// `client-0`, `provider-1`, …
    pub name: String,
    /// Its API.
    pub rpc: Arc<NodeRpc>,
    /// Its wallet's default address.
    pub address: Address,
    /// Where the other daemons reach it, `<multiaddr>/p2p/<peer id>`: where it listens, or
    /// with `--wan` the address of the relay in front of it.
    pub peer: Multiaddr,
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// The peak resident memory of the process (`VmHWM`), KiB; 0 where `/proc` does not tell.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.id();
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
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.wait();
        Ok(())
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().context("cannot kill the node")?;
        let _ = self.child.wait();
        Ok(())
    }
}

/// Shared handles on the nodes, providers first; swappable when one is restarted.
pub type Nodes = Vec<Arc<RwLock<Node>>>;

/// Starts daemons of one testnet: each in `dir/<name>`, logging to `dir/<name>.log`, on the
/// devnet at `api_info`.
pub struct Launcher {
    /// The `paych` executable.
    pub exe: PathBuf,
    /// The run's directory.
    pub dir: PathBuf,
    /// The devnet's `FULLNODE_API_INFO`.
    pub api_info: String,
    /// The network of the daemons' addresses.
    pub network: Network,
    /// With `--wan`: the relays in front of the daemons.
    pub wan: Option<WanLinks>,
}

/// With `--wan`: each daemon on a loopback address of its own, a relay of the link's shape in
/// front of its libp2p listener, and the address of that relay the only one the others know
/// it by (its `peer.<address>` entries, its announce, the hub's entry in invoices).
pub struct WanLinks {
    /// The shape of every link.
    pub shape: LinkShape,
    /// Each daemon's loopback address, by name.
    hosts: BTreeMap<String, Ipv4Addr>,
    /// Each daemon's relay, by name, made before its first start and kept across restarts.
    relays: Mutex<BTreeMap<String, WanRelay>>,
}

/// A daemon's relay: bound before the daemon first starts (so that its address can be the
/// daemon's `announce`), relaying once the daemon listens.
enum WanRelay {
    Bound(BoundRelay),
    Running(Relay),
}

impl WanLinks {
    /// Links of `shape` for the daemons `names`: 127.0.0.2, 127.0.0.3, … in their order.
    pub fn new(shape: LinkShape, names: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut hosts = BTreeMap::new();
        for (i, name) in names.enumerate() {
            let last = u8::try_from(i)
                .ok()
                .and_then(|i| i.checked_add(FIRST_WAN_HOST))
                .filter(|last| *last < u8::MAX)
                .ok_or_else(|| {
                    anyhow!(
                        "--wan gives each node its own 127.0.0.N: at most {MAX_WAN_NODES} nodes"
                    )
                })?;
            hosts.insert(name, Ipv4Addr::new(127, 0, 0, last));
        }
        Ok(WanLinks { shape, hosts, relays: Mutex::new(BTreeMap::new()) })
    }

    fn host(&self, name: &str) -> anyhow::Result<Ipv4Addr> {
        self.hosts.get(name).copied().ok_or_else(|| anyhow!("no loopback address for {name}"))
    }

    /// Binds `name`'s relay on its host; the address it announces.
    async fn bind(&self, name: &str) -> anyhow::Result<Multiaddr> {
        let host = self.host(name)?;
        let bound = Relay::bind(SocketAddr::from((host, 0))).await?;
        let addr = tcp_multiaddr(bound.local_addr());
        self.relays.lock().await.insert(name.to_owned(), WanRelay::Bound(bound));
        Ok(addr)
    }

    /// Starts `name`'s relay towards where the daemon listens (`listen`, a multiaddr), once;
    /// where the others reach the daemon, `<relay>/p2p/<peer id>`.
    async fn reach(&self, name: &str, listen: &Multiaddr) -> anyhow::Result<Multiaddr> {
        let mut relays = self.relays.lock().await;
        let relay = relays.remove(name).ok_or_else(|| anyhow!("{name} has no relay"))?;
        let running = match relay {
            WanRelay::Running(relay) => relay,
            WanRelay::Bound(bound) => {
                let upstream = tcp_socket_addr(listen)
                    .ok_or_else(|| anyhow!("{name} listens on {listen}, not TCP"))?;
                let options = RelayOptions { keep_source_ip: true };
                bound.relay_to(upstream, self.shape, options)
            }
        };
        let mut reach = tcp_multiaddr(running.local_addr());
        if let Some(peer) = listen.iter().find(|p| matches!(p, Protocol::P2p(_))) {
            reach.push(peer);
        }
        relays.insert(name.to_owned(), WanRelay::Running(running));
        Ok(reach)
    }
}

impl WanLinks {
    /// Whether every connection the daemons hold crossed a relay, from the remote address
    /// each daemon reports for each of its peers (`NetPeers`: one connection per peer):
    /// a connection a daemon dialled must end at a relay, one it accepted must come from a
    /// daemon's own 127.0.0.N (a relay keeps it), and none may end at a daemon's direct
    /// listen address. `(held, detail)`.
    pub async fn crossings(&self, seen: &[(String, Vec<String>)]) -> (bool, String) {
        let relays = self.relays.lock().await;
        let running = relays.values().filter_map(|r| match r {
            WanRelay::Running(relay) => Some(relay),
            WanRelay::Bound(_) => None,
        });
        let (fronts, direct): (Vec<SocketAddr>, Vec<SocketAddr>) =
            running.map(|r| (r.local_addr(), r.upstream())).unzip();
        let (mut dialled, mut accepted, mut bad) = (0, 0, Vec::new());
        for (name, addrs) in seen {
            for text in addrs {
                let socket = text.parse::<Multiaddr>().ok().and_then(|a| tcp_socket_addr(&a));
                match socket {
                    Some(at) if fronts.contains(&at) => dialled += 1,
                    Some(at) if direct.contains(&at) => {
                        bad.push(format!("{name} → {text} (direct)"))
                    }
                    Some(at) if self.hosts.values().any(|h| IpAddr::V4(*h) == at.ip()) => {
                        accepted += 1
                    }
                    _ => bad.push(format!("{name} ↔ {text}")),
                }
            }
        }
        let detail = format!(
            "{dialled} connections dialled a relay, {accepted} came in from a daemon's own \
             127.0.0.N{}",
            if bad.is_empty() {
                String::new()
            } else {
                format!("; not relayed: {}", bad.join(", "))
            }
        );
        (bad.is_empty() && dialled > 0, detail)
    }
}

/// `/ip4/…/tcp/…` of an IPv4 socket address.
fn tcp_multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::from(addr.ip()).with(Protocol::Tcp(addr.port()))
}

impl Launcher {
    /// Starts node `name` for the first time: writes its config (knowing `peers`, with
    /// `top_up`, and `hub` as its `[hub]` section), starts it, and pins its libp2p port in its config — the daemon binds a
    /// port the system gives it, so that a restart listens there again and its peers'
    /// addresses stay good (picking a free port up front would race with every other socket
    /// opened meanwhile).
    pub async fn start(
        &self,
        name: &str,
        peers: &[(Address, Multiaddr)],
        top_up: Option<TopUpPolicy>,
        hub: HubConfig,
    ) -> anyhow::Result<Node> {
        let repo = self.dir.join(name);
        fs::create_dir_all(&repo).with_context(|| format!("cannot create {}", repo.display()))?;
        if !repo.join("config.toml").exists() {
            let mut config = RepoConfig { hub, ..self.first_config(peers, top_up) };
            if let Some(wan) = &self.wan {
                let host = wan.host(name)?;
                config.listen = Multiaddr::from(host).with(Protocol::Tcp(0));
                config.max_inbound_connections_per_ip =
                    RepoConfig::default().max_inbound_connections_per_ip;
            }
            write_config(&repo, &config)?;
        }
        if let Some(wan) = &self.wan {
            // A new relay each run (a kept repo's config names the last run's, gone since).
            let mut config = read_config(&repo)?;
            config.announce = Some(wan.bind(name).await?);
            config.dial_from = Some(wan.host(name)?.into());
            write_config(&repo, &config)?;
        }
        let node = self.launch(name).await?;
        let mut config = read_config(&repo)?;
        config.listen = node.peer.iter().take_while(is_transport).collect();
        write_config(&repo, &config)?;
        self.reach(node).await
    }

    /// With `--wan`, `node` as the others reach it: through its relay (started on its first
    /// start, towards where it listens).
    async fn reach(&self, mut node: Node) -> anyhow::Result<Node> {
        if let Some(wan) = &self.wan {
            node.peer = wan.reach(&node.name, &node.peer).await?;
        }
        Ok(node)
    }

    /// A node's config before its first start: on loopback, a port the system picks.
    fn first_config(
        &self,
        peers: &[(Address, Multiaddr)],
        top_up: Option<TopUpPolicy>,
    ) -> RepoConfig {
        RepoConfig {
            // The testnet's chain is paych's devnet, which its daemons check.
            network: Some(FilNetwork::Devnet),
            listen: Multiaddr::empty()
                .with(Protocol::Ip4(Ipv4Addr::LOCALHOST))
                .with(Protocol::Tcp(0)),
            api: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            max_inbound_connections_per_ip: LOOPBACK_CONNECTIONS_PER_IP,
            // The devnet does not reorganise: its blocks count at once.
            confidence: Some(0),
            top_up,
            peers: peers.iter().cloned().collect(),
            ..RepoConfig::default()
        }
    }

    /// Starts node `name` again on its repo (after a crash): it listens where it did, behind
    /// the same relay with `--wan`.
    pub async fn restart(&self, name: &str) -> anyhow::Result<Node> {
        let node = self.launch(name).await?;
        self.reach(node).await
    }

    /// Runs `paych daemon` on node `name`'s repo and waits for its API to answer.
    async fn launch(&self, name: &str) -> anyhow::Result<Node> {
        let repo = self.dir.join(name);
        let api_file = repo.join("api");
        let _ = fs::remove_file(&api_file);
        let log = self.dir.join(format!("{name}.log"));
        let log_file = fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let mut child = Command::new(&self.exe)
            .arg("daemon")
            .arg("--repo")
            .arg(&repo)
            .env(FULLNODE_API_INFO, &self.api_info)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let api = match wait_for_api(&mut child, &api_file).await {
            Ok(api) => api,
            Err(why) => {
                let _ = child.kill();
                bail!("{name} {why}; see {}:\n{}", log.display(), log_tail(&log));
            }
        };
        let token = fs::read_to_string(repo.join("token"))?.trim().to_owned();
        let rpc = Arc::new(NodeRpc::connect(&token, &api, self.network)?);
        let address = rpc.wallet_default_address().await?;
        let peer =
            rpc.net_addrs_listen().await?.ok_or_else(|| anyhow!("{name} listens nowhere"))?;
        Ok(Node { name: name.to_owned(), rpc, address, peer, child })
    }
}

/// Whether `p` is part of where a node listens rather than who it is (`/p2p/…`).
fn is_transport(p: &Protocol<'_>) -> bool {
    !matches!(p, Protocol::P2p(_))
}

fn read_config(repo: &Path) -> anyhow::Result<RepoConfig> {
    let path = repo.join("config.toml");
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    RepoConfig::parse(&text).with_context(|| format!("cannot use {}", path.display()))
}

fn write_config(repo: &Path, config: &RepoConfig) -> anyhow::Result<()> {
    let path = repo.join("config.toml");
    fs::write(&path, config.to_text()).with_context(|| format!("cannot write {}", path.display()))
}

/// Waits for the daemon to write its `api` file; says why not when it exits or times out.
async fn wait_for_api(child: &mut Child, api_file: &Path) -> Result<String, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(text) = fs::read_to_string(api_file) {
            if !text.trim().is_empty() {
                return Ok(text.trim().to_owned());
            }
        }
        match child.try_wait() {
            Ok(Some(status)) => return Err(format!("exited ({status}) while starting")),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot be watched: {e}")),
        }
        if Instant::now() > deadline {
            return Err(format!("did not start within {START_TIMEOUT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last lines of a node's log, for an error that must say why the node stopped.
fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Kills node `index` of `nodes` with SIGKILL, restarts it on its repo, and says what came
/// back. A voucher being stored when the node was killed is listed before but was never
/// acknowledged (nor returned, on a client), so it may be gone: at most `in_flight` of them
/// (one per running retrieval). Acknowledged ones must all be back (the invariants check
/// what they paid).
pub async fn crash_and_restart(
    nodes: &Nodes,
    index: usize,
    launcher: &Launcher,
    in_flight: usize,
) -> anyhow::Result<String> {
    let handle = nodes.get(index).ok_or_else(|| anyhow!("no node {index}"))?.clone();
    let mut node = handle.write().await;
    let before = holdings(&node.rpc).await.unwrap_or_default();
    node.kill()?;
    let restarted = launcher.restart(&node.name).await?;
    // The old handle's drop must not kill the new process: swap them.
    drop(std::mem::replace(&mut *node, restarted));
    let after = holdings(&node.rpc).await?;
    if after.0 < before.0 || after.1 + in_flight < before.1 {
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
async fn holdings(rpc: &NodeRpc) -> anyhow::Result<(usize, usize)> {
    let channels = rpc.paych_list().await?;
    let mut vouchers = 0;
    for ch in &channels {
        vouchers += rpc.paych_voucher_list(ch).await?.len();
    }
    Ok((channels.len(), vouchers))
}

/// What one paid retrieval brought back.
#[derive(Debug, Clone, Default)]
pub struct Retrieved {
    /// Bytes retrieved and checked against the manifest.
    pub bytes: u64,
    /// Chunks paid for.
    pub chunks: u64,
    /// Each chunk payment's latency, µs.
    pub payment_micros: Vec<u64>,
    /// The lane paid on.
    pub lane: Option<u64>,
    /// From the request to the first chunk checked, µs (none when nothing was retrieved).
    pub first_byte_micros: Option<u64>,
    /// The whole retrieval, µs.
    pub elapsed_micros: u64,
    /// With `--hub`: each chunk's routed payment, as its receipt says.
    pub receipts: Vec<RoutedPaid>,
    /// With `--hub`: payments tried and failed (a fresh invoice paid after each); a failed
    /// one may still be paid on chain, with its secret, once its parties resolve it.
    pub unresolved: usize,
}

/// One routed payment, as the payer's receipt says.
#[derive(Debug, Clone)]
pub struct RoutedPaid {
    /// What the payee asked for.
    pub amount: TokenAmount,
    /// The hub's fee.
    pub fee: TokenAmount,
}

/// A daemon's API through the node's typed client: one method per API method the testnet
/// calls. Channels travel as the address text the API hands out; vouchers as vouchers.
pub struct NodeRpc {
    api: ApiClient,
    /// The node's `GET /metrics`.
    metrics_url: String,
    http: reqwest::Client,
}

impl NodeRpc {
    /// A client of the API at multiaddr `api`, with an admin `token`, writing addresses for
    /// `network`. A call may take [`CALL_TIMEOUT`] and is never retried.
    fn connect(token: &str, api: &str, network: Network) -> anyhow::Result<Self> {
        let url = rpc_url(api).ok_or_else(|| anyhow!("bad API address {api}"))?;
        let metrics_url = url.replace("/rpc/v1", "/metrics");
        let api = ApiClient::new(url, Some(token.to_owned()))
            .with_network(network)
            .with_timeout(CALL_TIMEOUT);
        let http = reqwest::Client::builder().timeout(METRICS_TIMEOUT).build()?;
        Ok(NodeRpc { api, metrics_url, http })
    }

    /// Calls method `M`; its error names the method.
    async fn call<M: Method>(&self, params: M::Params) -> anyhow::Result<M::Result> {
        self.api.call::<M>(params).await.map_err(|e| anyhow!("{}: {e}", M::NAME))
    }

    /// `WalletDefaultAddress`.
    pub async fn wallet_default_address(&self) -> anyhow::Result<Address> {
        let address = self
            .call::<WalletDefaultAddress>(())
            .await?
            .ok_or_else(|| anyhow!("the node has no default address"))?;
        let (address, _) = parse_address(&address).map_err(|e| anyhow!("{address}: {e}"))?;
        Ok(address)
    }

    /// `NetAddrsListen`: the first address listened on, with `/p2p/<peer id>`.
    pub async fn net_addrs_listen(&self) -> anyhow::Result<Option<Multiaddr>> {
        let listen = self.call::<NetAddrsListen>(()).await?;
        let Some(addr) = listen.addrs.first() else {
            return Ok(None);
        };
        let peer = format!("{addr}/p2p/{}", listen.id);
        Ok(Some(peer.parse().with_context(|| format!("bad listen address {peer}"))?))
    }

    /// `NetPeers`: the remote address of a connection with each connected peer.
    pub async fn net_peer_addrs(&self) -> anyhow::Result<Vec<String>> {
        let peers = self.call::<NetPeers>(()).await?;
        Ok(peers.into_iter().flat_map(|peer| peer.addrs).collect())
    }

    /// `PaychRetrievalPublish` of a random blob: its root.
    pub async fn retrieval_publish(
        &self,
        size: u64,
        chunk_size: u64,
        price_per_chunk: &TokenAmount,
    ) -> anyhow::Result<String> {
        let size = usize::try_from(size).context("the blob's size")?;
        let spec = PublishSpec {
            data: BlobData::Random(size),
            chunk_size,
            price_per_chunk: price_per_chunk.clone(),
            corrupt_chunk: None,
        };
        Ok(self.call::<PaychRetrievalPublish>((spec,)).await?.root)
    }

    /// `PaychGet`, then `PaychGetWaitReady` when the channel is still being made or funded.
    pub async fn paych_get(
        &self,
        from: &str,
        to: &str,
        amount: &TokenAmount,
    ) -> anyhow::Result<String> {
        let got =
            self.call::<PaychGet>((address(from)?, address(to)?, amount.clone(), None)).await?;
        match (got.wait_sentinel, got.channel) {
            (None, Some(channel)) => Ok(channel),
            (None, None) => bail!("{}: neither a channel nor a sentinel", PaychGet::NAME),
            (Some(sentinel), _) => {
                let sentinel = sentinel.parse("WaitSentinel")?;
                self.call::<PaychGetWaitReady>((sentinel,)).await
            }
        }
    }

    /// `PaychStatus`: the amount of each lane.
    pub async fn paych_status_lanes(&self, ch: &str) -> anyhow::Result<Vec<TokenAmount>> {
        let status = self.call::<PaychStatus>((address(ch)?,)).await?;
        status
            .lanes
            .iter()
            .map(|lane| parse_amount_field("Amount", &lane.amount).context("a lane amount"))
            .collect()
    }

    /// `PaychSettle`.
    pub async fn paych_settle(&self, ch: &str) -> anyhow::Result<()> {
        self.call::<PaychSettle>((address(ch)?,)).await.map(drop)
    }

    /// `PaychList`: the channels the node holds.
    pub async fn paych_list(&self) -> anyhow::Result<Vec<String>> {
        self.call::<PaychList>(()).await
    }

    /// `PaychVoucherList`: the vouchers of channel `ch`.
    pub async fn paych_voucher_list(&self, ch: &str) -> anyhow::Result<Vec<SignedVoucher>> {
        vouchers(self.call::<PaychVoucherList>((address(ch)?,)).await?)
    }

    /// `PaychVoucherBestSpendable`: the best voucher of each lane of `ch`.
    pub async fn paych_voucher_best_spendable(
        &self,
        ch: &str,
    ) -> anyhow::Result<Vec<SignedVoucher>> {
        vouchers(self.call::<PaychVoucherBestSpendable>((address(ch)?,)).await?)
    }

    /// `PaychVoucherSubmit` of `voucher`, without secret or proof.
    pub async fn paych_voucher_submit(
        &self,
        ch: &str,
        voucher: &SignedVoucher,
    ) -> anyhow::Result<()> {
        let params = (address(ch)?, voucher.clone(), Bytes::default(), Bytes::default());
        self.call::<PaychVoucherSubmit>(params).await.map(drop)
    }

    /// `PaychReconcile`: the combined voucher the payer of `ch` signed, if it did.
    pub async fn paych_reconcile(&self, ch: &str) -> anyhow::Result<Option<SignedVoucher>> {
        let answer = self.call::<PaychReconcile>((address(ch)?,)).await?;
        answer.combined.map(voucher).transpose()
    }

    /// `PaychInvoice`: an invoice of `payee` for `amount`, reachable through `hubs`, valid
    /// for `expiry_secs`.
    pub async fn paych_invoice(
        &self,
        payee: &Address,
        amount: &TokenAmount,
        expiry_secs: u64,
        hubs: Vec<Hub>,
    ) -> anyhow::Result<InvoiceJson> {
        let params = (*payee, amount.clone(), expiry_secs, InvoiceHubs(hubs));
        self.call::<PaychInvoice>(params).await
    }

    /// `PaychPayInvoice` of the invoice `text`, the hub's fee unbounded: the receipt.
    pub async fn paych_pay_invoice(&self, text: &str) -> anyhow::Result<RouteReceiptJson> {
        self.call::<PaychPayInvoice>((InvoiceText(text.to_owned()), None)).await
    }

    /// The routes the node has open (conditional vouchers it signed or holds that no
    /// replacement, expiry or redemption has closed yet), as its last sweep counted them:
    /// `paych_route_in_flight` of `GET /metrics`, both legs.
    pub async fn routes_in_flight(&self) -> anyhow::Result<u64> {
        let text =
            self.http.get(&self.metrics_url).send().await?.error_for_status()?.text().await?;
        Ok(text
            .lines()
            .filter(|line| line.starts_with("paych_route_in_flight{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|value| value.max(0.0) as u64)
            .sum())
    }

    /// `PaychRetrieve` of blob `root` over channel `ch`, paying at most `max_price` a chunk.
    pub async fn paych_retrieve(
        &self,
        ch: &str,
        root: &str,
        max_price: &TokenAmount,
    ) -> anyhow::Result<Retrieved> {
        let root = Root(parse_root(root).with_context(|| format!("blob root {root}"))?);
        let params = (address(ch)?, root, max_price.clone(), None);
        let got = self.call::<PaychRetrieve>(params).await?;
        Ok(Retrieved {
            bytes: got.bytes,
            chunks: got.chunks,
            payment_micros: got.payment_micros,
            lane: got.lane,
            first_byte_micros: got.first_byte_micros,
            elapsed_micros: got.elapsed_micros,
            ..Retrieved::default()
        })
    }
}

/// An address the API handed out.
fn address(text: &str) -> anyhow::Result<Address> {
    parse_address(text).map(|(address, _)| address).map_err(|e| anyhow!("{text}: {e}"))
}

/// A voucher from the Lotus JSON shape the API hands out.
fn voucher(shape: SignedVoucherJson) -> anyhow::Result<SignedVoucher> {
    <SignedVoucher as LotusJson>::from_shape(shape).context("a voucher the node answered")
}

fn vouchers(shapes: Vec<SignedVoucherJson>) -> anyhow::Result<Vec<SignedVoucher>> {
    shapes.into_iter().map(voucher).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const PEER: &str = "12D3KooWR3xpchtdRaf8WMXv8dVjaKWqZQ5kS53rcFpHcwrSXqdm";

    /// Links for nodes `a` and `b`, their relays running towards `a` on 127.0.0.2:1111 and `b`
    /// on 127.0.0.3:2222; the relays' addresses.
    async fn two_links() -> (WanLinks, Multiaddr, Multiaddr) {
        let names = ["a".to_owned(), "b".to_owned()].into_iter();
        let wan = WanLinks::new(LinkShape::default(), names).unwrap();
        let mut fronts = Vec::new();
        for (name, listen) in [("a", "/ip4/127.0.0.2/tcp/1111"), ("b", "/ip4/127.0.0.3/tcp/2222")] {
            let announced = wan.bind(name).await.unwrap();
            let listen: Multiaddr = format!("{listen}/p2p/{PEER}").parse().unwrap();
            let reach = wan.reach(name, &listen).await.unwrap();
            assert_eq!(reach, format!("{announced}/p2p/{PEER}").parse().unwrap());
            fronts.push(reach);
        }
        let b = fronts.pop().unwrap();
        (wan, fronts.pop().unwrap(), b)
    }

    #[tokio::test]
    async fn connections_through_the_relays_keep_the_crossing_invariant_and_others_break_it() {
        let (wan, _a, b) = two_links().await;
        let relayed = vec![
            ("a".to_owned(), vec![b.to_string()]),
            ("b".to_owned(), vec![format!("/ip4/127.0.0.2/tcp/40000/p2p/{PEER}")]),
        ];
        let (held, detail) = wan.crossings(&relayed).await;
        assert!(held, "{detail}");
        for stray in ["/ip4/127.0.0.3/tcp/2222", "/ip4/127.0.0.1/tcp/40000"] {
            let mut seen = relayed.clone();
            seen[0].1.push(format!("{stray}/p2p/{PEER}"));
            let (held, detail) = wan.crossings(&seen).await;
            assert!(!held, "{stray}: {detail}");
            assert!(detail.contains(stray), "{detail}");
        }
        // No connection through a relay at all proves nothing.
        assert!(!wan.crossings(&[]).await.0);
    }

    #[test]
    fn each_wan_node_gets_its_own_loopback_address_up_to_the_last() {
        let names = (0..MAX_WAN_NODES).map(|i| format!("n{i}"));
        let wan = WanLinks::new(LinkShape::default(), names).unwrap();
        assert_eq!(wan.host("n0").unwrap(), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(
            wan.host(&format!("n{}", MAX_WAN_NODES - 1)).unwrap(),
            Ipv4Addr::new(127, 0, 0, 254)
        );
        let too_many = (0..=MAX_WAN_NODES).map(|i| format!("n{i}"));
        assert!(WanLinks::new(LinkShape::default(), too_many).is_err());
    }
}
