//! `paych daemon`: a node over a repo directory — keystore, datastore, config, API token
//! and libp2p identity — serving the JSON-RPC API and the paych wire protocols.
//!
//! The repo layout (see `docs/operations.md`):
//!
//! ```text
//! repo.lock        held (flock) while a daemon runs: two daemons cannot share a repo
//! config.toml      listen/api addresses and limits (a TOML subset, see [`RepoConfig`])
//! keystore/        Lotus-format keys (0700; files 0600), with the JWT secret
//! datastore/       the manager's sled store
//! devnet/          the embedded devnet's chain (when FULLNODE_API_INFO is not set)
//! libp2p-key       the node's ed25519 libp2p identity, protobuf-encoded (0600)
//! token            an admin JWT for the API (0600)
//! api              the API's multiaddr, `/ip4/127.0.0.1/tcp/PORT/http`, while running
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use libp2p::identity::Keypair;
pub use libp2p::Multiaddr;
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::chain::lotus::LotusChain;
use paych_core::chain::Chain;
use paych_core::combine::ReconcilePolicy;
use paych_core::manager::{ManagerConfig, PaymentChannelManager, TopUpPolicy};
use paych_core::redemption::IntakePolicy;
use paych_core::store::sled::SledStore;
use paych_core::types::{format_address, Address, Network, TokenAmount};
use paych_core::wallet::{key_file_name, KeyInfo, KeyStore, Wallet};
use tokio::task::JoinHandle;

use crate::api::{serve_node_api, ApiServer};
use crate::auth::{self, Permission};
use crate::metrics::{MeteredChain, Metrics};
use crate::network::{self, NetworkClient, NetworkConfig};
use crate::pay::{parse_peer, Payer};
use crate::retrieval::{RetrievalLimits, RetrievalProvider};

/// The environment variable naming the default repo.
pub const PAYCH_PATH: &str = "PAYCH_PATH";
/// The environment variable that switches the chain from the devnet to a Lotus node.
pub const FULLNODE_API_INFO: &str = "FULLNODE_API_INFO";
/// The key name of the API's HS256 secret in the keystore, as Lotus names it.
pub const JWT_KEY_NAME: &str = "auth-jwt-private";
/// The `Type` of the JWT secret's `KeyInfo`, as Lotus writes it.
pub const JWT_KEY_TYPE: &str = "jwt-hmac-secret";
/// The devnet's time between epochs.
pub const DEVNET_BLOCK_TIME: Duration = Duration::from_secs(1);
/// The most `max_inbound_connections_per_ip` may be: every inbound connection slot.
pub const MAX_INBOUND_CONNECTIONS_PER_IP: u32 =
    paych_protocol::behaviour::DEFAULT_MAX_ESTABLISHED_INCOMING;
/// How long shutdown waits for the network loop to stop.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// The default repo: `$PAYCH_PATH`, else `~/.paych`.
pub fn default_repo() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(PAYCH_PATH).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither PAYCH_PATH nor HOME is set: pass --repo")?;
    Ok(PathBuf::from(home).join(".paych"))
}

/// What `paych daemon` was asked for; unset addresses come from the repo's config.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// The repo directory.
    pub repo: PathBuf,
    /// The libp2p listen address.
    pub listen: Option<Multiaddr>,
    /// The API's listen address.
    pub api: Option<SocketAddr>,
    /// Payees' libp2p addresses, added to (and overriding) the config's.
    pub peers: Vec<(Address, Multiaddr)>,
}

/// The repo's `config.toml`. Only a TOML subset is read: one `key = value` per line, the
/// value a double-quoted string (no escapes) or a whole number; `#` starts a comment line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoConfig {
    /// `listen`: the libp2p listen multiaddr.
    pub listen: Multiaddr,
    /// `api`: the JSON-RPC listen address.
    pub api: SocketAddr,
    /// `min_delta`: the least (attoFIL) an inbound voucher must add to its lane.
    pub min_delta: TokenAmount,
    /// `max_inbound_per_peer`: inbound voucher requests one peer may have in flight.
    pub max_inbound_per_peer: usize,
    /// `max_inbound_connections_per_ip`: inbound libp2p connections, pending and
    /// established, one remote address (IPv4, or IPv6 /64) may hold; from 1 to
    /// [`MAX_INBOUND_CONNECTIONS_PER_IP`].
    pub max_inbound_connections_per_ip: u32,
    /// `reconcile_min_discount`: the least discount (attoFIL) this node, as a payer, asks
    /// for folding vouchers into a combined one.
    pub reconcile_min_discount: TokenAmount,
    /// `reconcile_min_discount_per_voucher`: the least discount (attoFIL) per voucher folded.
    pub reconcile_min_discount_per_voucher: TokenAmount,
    /// `reconcile_max_vouchers`: the most vouchers one reconcile request may fold.
    pub reconcile_max_vouchers: usize,
    /// `max_reconcile_per_peer`: inbound reconcile requests one peer may have in flight.
    pub max_reconcile_per_peer: usize,
    /// `reconcile_fee_per_message`: what one redeeming message costs (attoFIL); as a payee,
    /// this node asks for the vouchers' sum less half the fees a reconciliation saves.
    pub reconcile_fee_per_message: TokenAmount,
    /// `retrieval_max_bytes_in_flight_per_peer`: bytes of retrieval responses (manifests and
    /// chunks) one peer may have in flight; beyond, `RateLimited`.
    pub retrieval_max_bytes_per_peer: usize,
    /// `retrieval_max_bytes_in_flight`: bytes of retrieval responses in flight over all
    /// peers; beyond, `RateLimited`.
    pub retrieval_max_bytes: usize,
    /// `confidence`: epochs a message (an add-funds, say) must be buried under before it
    /// counts — for the node's own messages, and for the channel balance a payee credits
    /// vouchers against. Unset: 0 on a paych devnet, [`LOTUS_CONFIDENCE`] on a Lotus node.
    pub confidence: Option<u64>,
    /// `accept_time_locks` (0 or 1): as a payee, take time-locked vouchers (counted for what
    /// they are sure to be worth, redeemed before their lock); refused by default, as Lotus.
    pub accept_time_locks: bool,
    /// `landing_margin`: epochs a payee leaves for its messages to land — a voucher counts
    /// only if it can still be redeemed that long after the next epoch, before `settling_at`.
    pub landing_margin: i64,
    /// `max_settle_delay`: the furthest beyond the head (epochs) a voucher's
    /// `min_settle_height` may lie.
    pub max_settle_delay: i64,
    /// `peer.<address> = "<multiaddr>/p2p/<peer id>"`: where payee `<address>` listens.
    pub peers: BTreeMap<Address, Multiaddr>,
    /// `top_up_low` and `top_up_high` (attoFIL): when an outbound channel's available funds
    /// fall below the low water, funds are added in the background up to the high water.
    /// Off unless both are set.
    pub top_up: Option<TopUpPolicy>,
}

impl Default for RepoConfig {
    fn default() -> Self {
        RepoConfig {
            listen: "/ip4/0.0.0.0/tcp/24001".parse().unwrap_or_else(|_| Multiaddr::empty()),
            api: SocketAddr::from(([127, 0, 0, 1], 3456)),
            min_delta: TokenAmount::default(),
            max_inbound_per_peer: NetworkConfig::default().max_inbound_per_peer,
            max_inbound_connections_per_ip: paych_protocol::Config::default().max_inbound_per_ip,
            reconcile_min_discount: ReconcilePolicy::default().min_discount,
            reconcile_min_discount_per_voucher: ReconcilePolicy::default().min_discount_per_voucher,
            reconcile_max_vouchers: ReconcilePolicy::default().max_vouchers,
            max_reconcile_per_peer: NetworkConfig::default().max_reconcile_per_peer,
            reconcile_fee_per_message: TokenAmount::default(),
            retrieval_max_bytes_per_peer: RetrievalLimits::default().max_bytes_per_peer,
            retrieval_max_bytes: RetrievalLimits::default().max_bytes,
            confidence: None,
            accept_time_locks: IntakePolicy::default().accept_time_locks,
            landing_margin: IntakePolicy::default().landing_margin,
            max_settle_delay: IntakePolicy::default().max_settle_delay,
            peers: BTreeMap::new(),
            top_up: None,
        }
    }
}

/// The confirmation depth when `confidence` is unset: 0 on a paych devnet (embedded or
/// served: its chain never reorganises), else [`LOTUS_CONFIDENCE`] — also when the node
/// cannot be asked its network's name.
async fn default_confidence(chain: &dyn Chain) -> u64 {
    match chain.network_name().await {
        Ok(name) if name == DevnetConfig::default().network_name => 0,
        _ => LOTUS_CONFIDENCE,
    }
}

/// The most epochs `landing_margin` and `max_settle_delay` may be (a year of 30 s epochs).
pub const MAX_EPOCH_SETTING: i64 = 1_051_200;

/// The confirmation depth used against a Lotus node when `confidence` is unset: Lotus's own
/// message confidence.
pub const LOTUS_CONFIDENCE: u64 = 5;

impl RepoConfig {
    /// The file's text.
    pub fn to_text(&self) -> String {
        format!(
            "# paych daemon configuration (a TOML subset: `key = \"string\"` or `key = number`)\n\
             # The libp2p listen multiaddr.\n\
             listen = \"{}\"\n\
             # The JSON-RPC API's listen address (keep it on loopback).\n\
             api = \"{}\"\n\
             # The least an inbound voucher must add to its lane, in attoFIL.\n\
             min_delta = \"{}\"\n\
             # Inbound voucher requests one peer may have in flight.\n\
             max_inbound_per_peer = {}\n\
             # Inbound libp2p connections one IP address (an IPv6 /64) may hold at once, from 1\n\
             # to {}. Keep it small: peer ids cost nothing, so this is what stops one host\n\
             # from taking every connection slot.\n\
             max_inbound_connections_per_ip = {}\n\
             # Auto top-up of outbound channels (attoFIL): below top_up_low, add funds up to\n\
             # top_up_high. Off unless both are set.\n{}\
             # As a payer: the least discount (attoFIL) asked for a reconciliation, in all\n\
             # and per voucher folded, and the most vouchers one request may fold.\n\
             reconcile_min_discount = \"{}\"\n\
             reconcile_min_discount_per_voucher = \"{}\"\n\
             reconcile_max_vouchers = {}\n\
             # Inbound reconcile requests one peer may have in flight.\n\
             max_reconcile_per_peer = {}\n\
             # As a payee: the fee (attoFIL) of one redeeming message, half of whose saving\n\
             # a reconcile request gives the payer.\n\
             reconcile_fee_per_message = \"{}\"\n\
             # As a retrieval provider: the bytes of responses (manifests and chunks) in\n\
             # flight, per peer and in all; beyond, requests are answered RateLimited.\n\
             retrieval_max_bytes_in_flight_per_peer = {}\n\
             retrieval_max_bytes_in_flight = {}\n\
             # Epochs a message must be buried under before it counts (the node's own, and\n\
             # the channel balance a payee credits against). Unset: 0 on a paych devnet,\n\
             # {LOTUS_CONFIDENCE} on a Lotus node.\n{}\
             # As a payee: take time-locked vouchers (1) or refuse them as Lotus does (0); the\n\
             # epochs left for a message to land before settling_at or a voucher's lock; the\n\
             # furthest beyond the head a voucher's min_settle_height may lie.\n\
             accept_time_locks = {}\n\
             landing_margin = {}\n\
             max_settle_delay = {}\n\
             # Payees' libp2p addresses, for PaychPay: peer.<address> = \"<multiaddr>/p2p/<id>\"\n{}",
            self.listen,
            self.api,
            self.min_delta.atto(),
            self.max_inbound_per_peer,
            MAX_INBOUND_CONNECTIONS_PER_IP,
            self.max_inbound_connections_per_ip,
            match &self.top_up {
                Some(p) => format!(
                    "top_up_low = \"{}\"\ntop_up_high = \"{}\"\n",
                    p.low_water.atto(),
                    p.high_water.atto()
                ),
                None => String::new(),
            },
            self.reconcile_min_discount.atto(),
            self.reconcile_min_discount_per_voucher.atto(),
            self.reconcile_max_vouchers,
            self.max_reconcile_per_peer,
            self.reconcile_fee_per_message.atto(),
            self.retrieval_max_bytes_per_peer,
            self.retrieval_max_bytes,
            match self.confidence {
                Some(depth) => format!("confidence = {depth}\n"),
                None => String::new(),
            },
            u8::from(self.accept_time_locks),
            self.landing_margin,
            self.max_settle_delay,
            self.peers
                .iter()
                .map(|(a, m)| format!("peer.{} = \"{m}\"\n", format_address(a, Network::Testnet)))
                .collect::<String>()
        )
    }

    /// Parses the file's text; unset keys keep their defaults, unknown keys are errors.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut config = RepoConfig::default();
        let (mut low, mut high) = (None, None);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = || format!("config.toml line {}", n + 1);
            let (key, value) =
                line.split_once('=').with_context(|| format!("{}: expected key = value", at()))?;
            let value = value.trim();
            let value = match value.strip_prefix('"') {
                Some(rest) => rest
                    .strip_suffix('"')
                    .with_context(|| format!("{}: unterminated string", at()))?,
                None => value,
            };
            match key.trim() {
                "listen" => {
                    config.listen =
                        value.parse().with_context(|| format!("{}: bad multiaddr", at()))?
                }
                "api" => {
                    config.api = value.parse().with_context(|| format!("{}: bad address", at()))?
                }
                "min_delta" => config.min_delta = parse_atto(value, &at)?,
                "reconcile_min_discount" => config.reconcile_min_discount = parse_atto(value, &at)?,
                "reconcile_min_discount_per_voucher" => {
                    config.reconcile_min_discount_per_voucher = parse_atto(value, &at)?
                }
                "reconcile_fee_per_message" => {
                    config.reconcile_fee_per_message = parse_atto(value, &at)?
                }
                "reconcile_max_vouchers" => {
                    config.reconcile_max_vouchers =
                        value.parse().with_context(|| format!("{}: bad number", at()))?
                }
                "max_reconcile_per_peer" => {
                    config.max_reconcile_per_peer =
                        value.parse().with_context(|| format!("{}: bad number", at()))?
                }
                "top_up_low" | "top_up_high" => {
                    let atto: u128 =
                        value.parse().with_context(|| format!("{}: bad attoFIL amount", at()))?;
                    let slot = if key.trim() == "top_up_low" { &mut low } else { &mut high };
                    *slot = Some(TokenAmount::from_atto(atto));
                }
                "retrieval_max_bytes_in_flight_per_peer" => {
                    config.retrieval_max_bytes_per_peer =
                        value.parse().with_context(|| format!("{}: bad number", at()))?
                }
                "retrieval_max_bytes_in_flight" => {
                    config.retrieval_max_bytes =
                        value.parse().with_context(|| format!("{}: bad number", at()))?
                }
                "max_inbound_per_peer" => {
                    config.max_inbound_per_peer =
                        value.parse().with_context(|| format!("{}: bad number", at()))?
                }
                "max_inbound_connections_per_ip" => {
                    let max: u32 =
                        value.parse().with_context(|| format!("{}: bad number", at()))?;
                    if !(1..=MAX_INBOUND_CONNECTIONS_PER_IP).contains(&max) {
                        bail!(
                            "{}: max_inbound_connections_per_ip must be from 1 to \
                             {MAX_INBOUND_CONNECTIONS_PER_IP} (the inbound connections in all)",
                            at()
                        );
                    }
                    config.max_inbound_connections_per_ip = max;
                }
                "confidence" => {
                    config.confidence =
                        Some(value.parse().with_context(|| format!("{}: bad number", at()))?)
                }
                "accept_time_locks" => {
                    config.accept_time_locks = match value {
                        "0" => false,
                        "1" => true,
                        _ => bail!("{}: accept_time_locks is 0 or 1", at()),
                    }
                }
                "landing_margin" | "max_settle_delay" => {
                    let epochs: i64 = value
                        .parse()
                        .ok()
                        .filter(|e| (0..=MAX_EPOCH_SETTING).contains(e))
                        .with_context(|| {
                            format!("{}: epochs from 0 to {MAX_EPOCH_SETTING}", at())
                        })?;
                    if key.trim() == "landing_margin" {
                        config.landing_margin = epochs;
                    } else {
                        config.max_settle_delay = epochs;
                    }
                }
                other => match other.strip_prefix("peer.") {
                    Some(addr) => {
                        let (addr, maddr) = parse_peer(&format!("{addr}={value}"))
                            .map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
                        config.peers.insert(addr, maddr);
                    }
                    None => bail!("{}: unknown key {other:?}", at()),
                },
            }
        }
        config.top_up = match (low, high) {
            (None, None) => None,
            (Some(low_water), Some(high_water)) if low_water <= high_water => {
                Some(TopUpPolicy { low_water, high_water })
            }
            (Some(_), Some(_)) => bail!("config.toml: top_up_low is above top_up_high"),
            _ => bail!("config.toml: set both top_up_low and top_up_high, or neither"),
        };
        Ok(config)
    }
}

fn parse_atto(value: &str, at: &dyn Fn() -> String) -> anyhow::Result<TokenAmount> {
    let atto: u128 = value.parse().with_context(|| format!("{}: bad attoFIL amount", at()))?;
    Ok(TokenAmount::from_atto(atto))
}

impl RepoConfig {
    /// The bounds of this node's work as a retrieval provider.
    pub fn retrieval_limits(&self) -> RetrievalLimits {
        RetrievalLimits {
            max_bytes_per_peer: self.retrieval_max_bytes_per_peer,
            max_bytes: self.retrieval_max_bytes,
            ..RetrievalLimits::default()
        }
    }

    /// The reconcile policy this node applies as a payer.
    pub fn reconcile_policy(&self) -> ReconcilePolicy {
        ReconcilePolicy {
            min_discount: self.reconcile_min_discount.clone(),
            min_discount_per_voucher: self.reconcile_min_discount_per_voucher.clone(),
            max_vouchers: self.reconcile_max_vouchers,
        }
    }
}

/// A running daemon.
pub struct Daemon {
    repo: PathBuf,
    _lock: File,
    api: ApiServer,
    network: NetworkClient,
    network_task: JoinHandle<()>,
    manager: PaymentChannelManager,
    listen_addrs: Vec<Multiaddr>,
    _devnet: Option<Devnet>,
}

impl Daemon {
    /// Opens (creating it if needed) the repo and starts the chain, the manager, the
    /// network and the API.
    pub async fn start(options: DaemonOptions) -> anyhow::Result<Daemon> {
        let repo = options.repo;
        create_private_dir(&repo)?;
        let lock = lock_repo(&repo)?;

        let config_path = repo.join("config.toml");
        let config = if config_path.exists() {
            let text = fs::read_to_string(&config_path)
                .with_context(|| format!("cannot read {}", config_path.display()))?;
            RepoConfig::parse(&text)?
        } else {
            let mut config = RepoConfig::default();
            if let Some(listen) = &options.listen {
                config.listen = listen.clone();
            }
            if let Some(api) = options.api {
                config.api = api;
            }
            write_file(&config_path, config.to_text().as_bytes(), 0o644)?;
            config
        };
        let listen = options.listen.unwrap_or_else(|| config.listen.clone());
        let api_addr = options.api.unwrap_or(config.api);

        let keystore_dir = repo.join("keystore");
        let wallet = Arc::new(
            KeyStore::open(&keystore_dir, Network::Testnet).context("cannot open the keystore")?,
        );
        if wallet.list()?.is_empty() {
            let addr = wallet.new_key().context("cannot create the default key")?;
            tracing::info!(address = %format_address(&addr, Network::Testnet), "created the default key");
        }
        let secret = jwt_secret(&keystore_dir)?;
        let token = auth::issue(&secret, &Permission::Admin.up_to());
        write_file(&repo.join("token"), token.as_bytes(), 0o600)?;
        let keypair = libp2p_key(&repo.join("libp2p-key"))?;

        let (chain, devnet): (Arc<dyn Chain>, Option<Devnet>) =
            match std::env::var(FULLNODE_API_INFO).ok().filter(|v| !v.is_empty()) {
                Some(info) => (
                    Arc::new(
                        LotusChain::from_api_info(&info)
                            .with_context(|| format!("cannot use {FULLNODE_API_INFO}"))?,
                    ),
                    None,
                ),
                None => {
                    let devnet = Devnet::new(DevnetConfig {
                        block_time: Some(DEVNET_BLOCK_TIME),
                        repo: Some(repo.join("devnet")),
                        ..DevnetConfig::default()
                    })
                    .context("cannot start the devnet")?;
                    devnet.start_mining();
                    (Arc::new(devnet.clone()), Some(devnet))
                }
            };

        let metrics = Arc::new(Metrics::new());
        let chain: Arc<dyn Chain> = Arc::new(MeteredChain::new(chain, metrics.clone()));
        let store =
            Arc::new(SledStore::open(repo.join("datastore")).context("cannot open the datastore")?);
        let confidence = match config.confidence {
            Some(depth) => depth,
            None => default_confidence(chain.as_ref()).await,
        };
        let manager = PaymentChannelManager::new(
            chain,
            wallet.clone(),
            store,
            ManagerConfig {
                network: Network::Testnet,
                top_up: config.top_up.clone(),
                confidence,
                intake: IntakePolicy {
                    accept_time_locks: config.accept_time_locks,
                    landing_margin: config.landing_margin,
                    max_settle_delay: config.max_settle_delay,
                },
                ..ManagerConfig::default()
            },
        );
        manager.start().await.context("cannot start the payment-channel manager")?;

        let blobs = repo.join("blobs");
        let retrieval = RetrievalProvider::open(&blobs)
            .with_context(|| format!("cannot open the blob store {}", blobs.display()))?
            .with_limits(config.retrieval_limits());
        let network_config = NetworkConfig {
            protocol: paych_protocol::Config {
                max_inbound_per_ip: config.max_inbound_connections_per_ip,
                ..paych_protocol::Config::default()
            },
            retrieval: Arc::new(retrieval),
            min_delta: config.min_delta.clone(),
            max_inbound_per_peer: config.max_inbound_per_peer,
            reconcile_policy: config.reconcile_policy(),
            max_reconcile_per_peer: config.max_reconcile_per_peer,
            metrics: metrics.clone(),
        };
        let (network, network_task) = network::spawn(keypair, network_config, manager.clone())?;
        network.listen(listen).await?;
        let listen_addrs = network::wait_for_listen_addrs(&network).await?;

        let mut peers = config.peers.clone();
        peers.extend(options.peers);
        let payer = Arc::new(
            Payer::new(manager.clone(), network.clone(), peers)
                .with_fee_per_message(config.reconcile_fee_per_message.clone()),
        );
        let api = serve_node_api(
            manager.clone(),
            wallet,
            Some(payer),
            metrics,
            secret,
            Network::Testnet,
            api_addr,
        )
        .await
        .with_context(|| format!("cannot serve the API on {api_addr}"))?;
        let local = api.local_addr();
        let ip = match local.ip() {
            std::net::IpAddr::V4(ip) => format!("/ip4/{ip}"),
            std::net::IpAddr::V6(ip) => format!("/ip6/{ip}"),
        };
        write_file(&repo.join("api"), format!("{ip}/tcp/{}/http", local.port()).as_bytes(), 0o644)?;

        Ok(Daemon {
            repo,
            _lock: lock,
            api,
            network,
            network_task,
            manager,
            listen_addrs,
            _devnet: devnet,
        })
    }

    /// The API's address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api.local_addr()
    }

    /// The network client.
    pub fn network(&self) -> &NetworkClient {
        &self.network
    }

    /// The libp2p addresses the node listens on.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// The repo directory.
    pub fn repo(&self) -> &Path {
        &self.repo
    }

    /// Stops the API, the network and the manager (flushing the store), then removes the
    /// `api` file; the repo lock is released when this returns.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.api.shutdown().await;
        self.network.shutdown().await;
        if tokio::time::timeout(STOP_WAIT, self.network_task).await.is_err() {
            tracing::warn!("the network loop did not stop in time");
        }
        let result = self.manager.shutdown().await.context("cannot flush the store");
        let api_file = self.repo.join("api");
        if let Err(e) = fs::remove_file(&api_file) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %api_file.display(), error = %e, "cannot remove the api file");
            }
        }
        result
    }
}

fn lock_repo(repo: &Path) -> anyhow::Result<File> {
    let path = repo.join("repo.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // An advisory lock (flock), released by the kernel when the process exits however it
    // exits: a crashed daemon leaves no stale lock behind.
    match fs2::FileExt::try_lock_exclusive(&file) {
        Ok(()) => Ok(file),
        Err(e) if e.kind() == fs2::lock_contended_error().kind() => bail!(
            "the repo {} is in use by another paych daemon (it holds {})",
            repo.display(),
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// Reads the API's HS256 secret from the keystore, creating it on first use.
fn jwt_secret(keystore: &Path) -> anyhow::Result<Vec<u8>> {
    let path = keystore.join(key_file_name(JWT_KEY_NAME));
    if path.exists() {
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let info = KeyInfo::from_json(JWT_KEY_NAME, &bytes)?;
        if info.key_type != JWT_KEY_TYPE || info.private_key.is_empty() {
            bail!("{}: not a {JWT_KEY_TYPE} key", path.display());
        }
        return Ok(info.private_key);
    }
    let secret =
        auth::new_secret().map_err(|e| anyhow::anyhow!("cannot draw the API secret: {e}"))?;
    let info = KeyInfo { key_type: JWT_KEY_TYPE.to_owned(), private_key: secret.clone() };
    write_file(&path, info.to_json().as_bytes(), 0o600)?;
    Ok(secret)
}

/// Reads the node's libp2p identity, creating an ed25519 one on first use.
fn libp2p_key(path: &Path) -> anyhow::Result<Keypair> {
    if path.exists() {
        let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        return Keypair::from_protobuf_encoding(&bytes)
            .with_context(|| format!("{}: not a libp2p key", path.display()));
    }
    let keypair = Keypair::generate_ed25519();
    let bytes = keypair.to_protobuf_encoding().context("cannot encode the libp2p key")?;
    write_file(path, &bytes, 0o600)?;
    Ok(keypair)
}

/// Writes `bytes` to `path` (replacing it) with `mode`, flushed to disk.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let context = || format!("cannot write {}", path.display());
    let mut options = OpenOptions::new();
    options.create(true).truncate(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(mode);
        let mut file = options.open(path).with_context(context)?;
        file.set_permissions(fs::Permissions::from_mode(mode)).with_context(context)?;
        file.write_all(bytes).with_context(context)?;
        file.sync_all().with_context(context)?;
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        let mut file = options.open(path).with_context(context)?;
        file.write_all(bytes).with_context(context)?;
        file.sync_all().with_context(context)?;
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).with_context(|| format!("cannot create {}", dir.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_per_ip_connection_cap_is_read_from_the_config_and_refused_out_of_range() {
        assert_eq!(
            RepoConfig::default().max_inbound_connections_per_ip,
            paych_protocol::ip_limits::DEFAULT_MAX_INBOUND_PER_IP
        );
        let config = RepoConfig::parse("max_inbound_connections_per_ip = 3").unwrap();
        assert_eq!(config.max_inbound_connections_per_ip, 3);
        let most = format!("max_inbound_connections_per_ip = {MAX_INBOUND_CONNECTIONS_PER_IP}");
        assert_eq!(
            RepoConfig::parse(&most).unwrap().max_inbound_connections_per_ip,
            MAX_INBOUND_CONNECTIONS_PER_IP
        );
        for bad in [0, MAX_INBOUND_CONNECTIONS_PER_IP + 1] {
            let error = RepoConfig::parse(&format!("max_inbound_connections_per_ip = {bad}"))
                .unwrap_err()
                .to_string();
            assert!(error.contains("max_inbound_connections_per_ip must be from 1"), "{error}");
        }
        assert!(RepoConfig::parse("max_inbound_connections_per_ip = \"x\"").is_err());
    }

    #[test]
    fn the_payees_intake_policy_and_confidence_are_read_from_the_config_and_checked() {
        let config = RepoConfig::parse(
            "confidence = 3\naccept_time_locks = 1\nlanding_margin = 40\nmax_settle_delay = 100",
        )
        .unwrap();
        assert_eq!(config.confidence, Some(3));
        assert!(config.accept_time_locks);
        assert_eq!((config.landing_margin, config.max_settle_delay), (40, 100));
        let defaults = RepoConfig::default();
        assert_eq!(defaults.confidence, None);
        assert!(!defaults.accept_time_locks);
        for bad in [
            "confidence = -1",
            "accept_time_locks = 2",
            "accept_time_locks = yes",
            "landing_margin = -5",
            "max_settle_delay = 99999999999",
        ] {
            assert!(RepoConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_round_trips() {
        let config = RepoConfig {
            listen: "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            api: "127.0.0.1:0".parse().unwrap(),
            min_delta: TokenAmount::from_atto(42u64),
            max_inbound_per_peer: 3,
            max_inbound_connections_per_ip: 5,
            reconcile_min_discount: TokenAmount::from_atto(5u64),
            reconcile_min_discount_per_voucher: TokenAmount::from_atto(2u64),
            reconcile_max_vouchers: 9,
            max_reconcile_per_peer: 4,
            reconcile_fee_per_message: TokenAmount::from_atto(1000u64),
            retrieval_max_bytes_per_peer: 1 << 20,
            retrieval_max_bytes: 1 << 24,
            confidence: Some(7),
            accept_time_locks: true,
            landing_margin: 30,
            max_settle_delay: 2880,
            peers: [(
                Address::new_id(7),
                "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWR3xpchtdRaf8WMXv8dVjaKWqZQ5kS53rcFpHcwrSXqdm"
                    .parse()
                    .unwrap(),
            )]
            .into(),
            top_up: Some(TopUpPolicy {
                low_water: TokenAmount::from_atto(10u64),
                high_water: TokenAmount::from_atto(100u64),
            }),
        };
        assert_eq!(RepoConfig::parse(&config.to_text()).unwrap(), config);
        assert_eq!(RepoConfig::parse("").unwrap(), RepoConfig::default());
        for bad in [
            "listen",
            "nope = 1",
            "api = \"x\"",
            "min_delta = \"-1\"",
            "reconcile_min_discount = \"x\"",
            "reconcile_max_vouchers = -1",
            "listen = \"/ip4",
            "peer.t07 = \"/ip4/127.0.0.1/tcp/1\"",
            "top_up_low = \"5\"",
            "top_up_low = \"50\"\ntop_up_high = \"5\"",
            "top_up_high = \"x\"",
            "max_inbound_connections_per_ip = 0",
            "max_inbound_connections_per_ip = -1",
            "max_inbound_connections_per_ip = 225",
            "max_inbound_connections_per_ip = \"many\"",
            "peer.x = \"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWR3xpchtdRaf8WMXv8dVjaKWqZQ5kS53rcFpHcwrSXqdm\"",
        ] {
            assert!(RepoConfig::parse(bad).is_err(), "{bad:?}");
        }
    }
}
