//! `paych daemon`: a node over a repo directory — keystore, datastore, config, API token
//! and libp2p identity — serving the JSON-RPC API and the paych wire protocols.
//!
//! The repo layout (see `docs/operations.md`):
//!
//! ```text
//! repo.lock        held (flock) while a daemon runs: two daemons cannot share a repo
//! config.toml      network, listen/api addresses and limits (a TOML subset, see [`config`])
//! keystore/        Lotus-format keys (0700; files 0600), with the JWT secret
//! datastore/       the manager's sled store
//! devnet/          the embedded devnet's chain (when FULLNODE_API_INFO is not set)
//! libp2p-key       the node's ed25519 libp2p identity, protobuf-encoded (0600)
//! token            an admin JWT for the API (0600)
//! api              the API's multiaddr, `/ip4/127.0.0.1/tcp/PORT/http`, while running
//! ```
//!
//! [`config`] reads and writes `config.toml`; `repo` holds the lock, the keys and how files
//! are written; [`Daemon::start`] opens them in order — config, chain (and which network it
//! is, checked against the one configured: see `docs/networks.md`), keys, manager,
//! network, API — each step failing with a [`DaemonError`] that names what failed.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::chain::lotus::{ApiInfo, LotusChain, LotusConfig};
use paych_core::chain::Chain;
use paych_core::manager::{ManagerConfig, PaymentChannelManager};
use paych_core::network::{check_chain, set_process_address_network, FilNetwork};
use paych_core::route::RouteParams;
use paych_core::store::sled::SledStore;
use paych_core::types::{format_address, Address, Network};
use paych_core::wallet::{KeyStore, Wallet};
use paych_core::watch::{WatchConfig, Watchtower};

use crate::host::Host;
use crate::metrics::{MeteredChain, Metrics};
use crate::network::NetworkClient;
use crate::pay::Payer;
use crate::retrieval::RetrievalProvider;
use crate::route::{CollateralTask, RouteSettings, RouteSweeper, Routes};
use crate::rpc::auth::{self, Permission};
use crate::rpc::server::{serve_node_api, ApiServer, HeadTipsets, NodeParts};

pub mod config;
mod error;
mod repo;

pub use config::{
    ConfigError, Multiaddr, RepoConfig, DEFAULT_NETWORK, MAX_EPOCH_SETTING,
    MAX_INBOUND_CONNECTIONS_PER_IP,
};
pub use error::DaemonError;
pub use repo::default_repo;

/// The environment variable naming the default repo.
pub const PAYCH_PATH: &str = "PAYCH_PATH";
/// The environment variable that switches the chain from the devnet to a Lotus node.
pub const FULLNODE_API_INFO: &str = "FULLNODE_API_INFO";
/// The key name of the API's HS256 secret in the keystore, as Lotus names it.
pub const JWT_KEY_NAME: &str = "auth-jwt-private";
/// The `Type` of the JWT secret's `KeyInfo`, as Lotus writes it.
pub const JWT_KEY_TYPE: &str = "jwt-hmac-secret";
/// How long shutdown waits for the network loop to stop.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// What `paych daemon` was asked for; what is unset comes from the repo's config.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// The repo directory.
    pub repo: PathBuf,
    /// The network to run on (`--network`), over the config's `network`.
    pub network: Option<FilNetwork>,
    /// The libp2p listen address.
    pub listen: Option<Multiaddr>,
    /// The API's listen address.
    pub api: Option<SocketAddr>,
    /// Payees' libp2p addresses, added to (and overriding) the config's.
    pub peers: Vec<(Address, Multiaddr)>,
    /// Whether the daemon owns its process (the `paych daemon` binary): it then sets
    /// fvm_shared's process-wide address network to its network's, so that every address
    /// printed without [`format_address`] (in errors of the chain, the actor rules, the
    /// store) carries the right prefix too. In-process daemons of tests leave it unset.
    pub owns_process: bool,
}

/// A running daemon.
pub struct Daemon {
    repo: PathBuf,
    _lock: File,
    api: ApiServer,
    host: Host,
    manager: PaymentChannelManager,
    routes: RouteTasks,
    listen_addrs: Vec<Multiaddr>,
    network: FilNetwork,
    _devnet: Option<Devnet>,
}

/// The node's routed payments and their background tasks (the sweep of open routes, the
/// watchtower, the hub's auto-collateral), stopped at shutdown.
struct RouteTasks {
    routes: Routes,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The timing parameters of routed payments on `network`: from the configured confidence,
/// else the network's — the same for the manager (its settler) and the route logic.
fn route_params(config: &RepoConfig, network: FilNetwork) -> RouteParams {
    RouteParams::for_confidence(config.confidence.unwrap_or(network.preset().confidence))
}

/// Starts the node's routed payments: answering `/paych/route/1.0.0` through `host` (as a
/// hub with `[hub] enabled = 1`, its key the wallet's default), sweeping open routes once
/// an epoch, the watchtower scanning the chain for the secrets of open routes, and the
/// hub's auto-collateral when set.
async fn start_routes(
    config: &RepoConfig,
    manager: &PaymentChannelManager,
    wallet: &Arc<KeyStore>,
    payer: &Arc<Payer>,
    host: &Host,
    metrics: &Arc<Metrics>,
    network: FilNetwork,
) -> Result<RouteTasks, DaemonError> {
    let hub_address = wallet.default_address().ok().flatten();
    if config.hub.enabled && hub_address.is_none() {
        tracing::warn!("[hub] enabled = 1 but the wallet has no default key: not routing");
    }
    let settings = RouteSettings {
        hub: config.hub.clone(),
        hub_address,
        params: route_params(config, network),
    };
    let routes =
        Routes::new(manager.clone(), wallet.clone(), payer.clone(), settings, metrics.clone())
            .await
            .map_err(DaemonError::Datastore)?;
    host.route_handler().set(Arc::new(routes.clone()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let interval = network.preset().block_time;
    let mut tasks = vec![RouteSweeper { routes: routes.clone(), interval }.spawn(stopped.clone())];
    let watch = WatchConfig::new(routes.params().conf, interval);
    let tower = Watchtower::new(manager.chain().clone(), manager.store().clone(), watch)
        .map_err(|e| DaemonError::Watchtower(e.to_string()))?;
    let (watcher, stopping) = (routes.clone(), stopped.clone());
    tasks.push(tokio::spawn(async move { tower.run(&watcher, stopping).await }));
    if let (true, Some(policy)) = (routes.is_hub(), config.hub.collateral.clone()) {
        let task = CollateralTask {
            manager: manager.clone(),
            ledger: routes.ledger(),
            policy,
            metrics: metrics.clone(),
            interval,
        };
        tasks.push(task.spawn(stopped));
    }
    Ok(RouteTasks { routes, stop, tasks })
}

/// The repo's keys: the wallet, the API's secret, the libp2p identity.
struct Keys {
    wallet: Arc<KeyStore>,
    secret: Vec<u8>,
    keypair: Keypair,
}

impl Daemon {
    /// Opens (creating it if needed) the repo and starts the chain, the manager, the
    /// network and the API.
    pub async fn start(options: DaemonOptions) -> Result<Daemon, DaemonError> {
        let repo = options.repo.clone();
        repo::create_private_dir(&repo)?;
        let lock = repo::lock(&repo)?;
        let config = read_config(&repo, &options)?;
        // The one place the node's network is decided: the flag, else the config, else the
        // chain's own name — and the chain must answer the name of the network decided.
        let OpenChain { chain, tipsets, devnet, network } =
            open_chain(&repo, &config, options.network.or(config.network)).await?;
        if options.owns_process {
            set_process_address_network(network);
        }
        let address_network = network.address_network();
        let keys = open_keys(&repo, address_network)?;
        log_network(network, &keys.wallet);
        let metrics = Arc::new(Metrics::new());
        let chain: Arc<dyn Chain> = Arc::new(MeteredChain::new(chain, metrics.clone()));
        let manager = start_manager(&repo, chain, keys.wallet.clone(), &config, network).await?;
        let listen = options.listen.unwrap_or_else(|| config.listen.clone());
        let host =
            start_network(&repo, keys.keypair, &config, listen, &manager, metrics.clone()).await?;
        let mut peers = config.peers.clone();
        peers.extend(options.peers);
        let payer = Arc::new(
            Payer::new(manager.clone(), host.client().clone(), peers)
                .with_fee_per_message(config.reconcile_fee_per_message.clone()),
        );
        let routes =
            start_routes(&config, &manager, &keys.wallet, &payer, &host, &metrics, network).await?;
        let api_addr = options.api.unwrap_or(config.api);
        let api = serve_node_api(
            manager.clone(),
            keys.wallet,
            NodeParts {
                payer: Some(payer),
                retrieval: Some(host.retrieval().clone()),
                routes: Some(Arc::new(routes.routes.clone())),
            },
            metrics,
            Some(tipsets),
            keys.secret,
            network,
            api_addr,
        )
        .await
        .map_err(|source| DaemonError::Api { addr: api_addr, source })?;
        write_api_file(&repo, api.local_addr())?;
        let listen_addrs = host.listen_addrs().to_vec();
        Ok(Daemon {
            repo,
            _lock: lock,
            api,
            host,
            manager,
            routes,
            listen_addrs,
            network,
            _devnet: devnet,
        })
    }

    /// The network the daemon runs on.
    pub fn chain_network(&self) -> FilNetwork {
        self.network
    }

    /// The API's address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api.local_addr()
    }

    /// The network client.
    pub fn network(&self) -> &NetworkClient {
        self.host.client()
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
    pub async fn shutdown(self) -> Result<(), DaemonError> {
        self.api.shutdown().await;
        let _ = self.routes.stop.send(true);
        for task in self.routes.tasks {
            let _ = task.await;
        }
        if !self.host.shutdown(STOP_WAIT).await {
            tracing::warn!("the network loop did not stop in time");
        }
        let result = self.manager.shutdown().await.map_err(DaemonError::Flush);
        let api_file = self.repo.join("api");
        if let Err(e) = fs::remove_file(&api_file) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %api_file.display(), error = %e, "cannot remove the api file");
            }
        }
        result
    }
}

/// Reads the repo's `config.toml`; on first start writes one, with the addresses and the
/// network `options` name.
fn read_config(repo: &Path, options: &DaemonOptions) -> Result<RepoConfig, DaemonError> {
    let path = repo.join("config.toml");
    if path.exists() {
        let text = fs::read_to_string(&path).map_err(|source| DaemonError::File {
            action: "read",
            path: path.clone(),
            source,
        })?;
        return RepoConfig::parse(&text).map_err(|source| DaemonError::Config { path, source });
    }
    let mut config = RepoConfig::default();
    if let Some(network) = options.network {
        config.network = Some(network);
    }
    if let Some(listen) = &options.listen {
        config.listen = listen.clone();
    }
    if let Some(api) = options.api {
        config.api = api;
    }
    repo::write_file(&path, config.to_text().as_bytes(), 0o644)?;
    Ok(config)
}

/// Opens the keystore (making a default key on first start), the API's secret (writing an
/// admin token beside it) and the libp2p identity.
fn open_keys(repo: &Path, address_network: Network) -> Result<Keys, DaemonError> {
    let keystore_dir = repo.join("keystore");
    let keystore_error = |action| move |source| DaemonError::Keystore { action, source };
    let wallet =
        Arc::new(KeyStore::open(&keystore_dir, address_network).map_err(keystore_error("open"))?);
    if wallet.list().map_err(keystore_error("list"))?.is_empty() {
        let addr = wallet.new_key().map_err(keystore_error("create"))?;
        tracing::info!(address = %format_address(&addr, address_network), "created the default key");
    }
    let secret = repo::jwt_secret(&keystore_dir)?;
    let token = auth::issue(&secret, &Permission::Admin.up_to());
    repo::write_file(&repo.join("token"), token.as_bytes(), 0o600)?;
    let keypair = repo::libp2p_key(&repo.join("libp2p-key"))?;
    Ok(Keys { wallet, secret, keypair })
}

/// The chain and its network: the Lotus node `FULLNODE_API_INFO` names (trusting the CA file
/// of `PAYCH_LOTUS_CA_FILE`, else of `lotus_ca_file`, besides the system's roots), else a devnet
/// embedded in the repo (returned too, so that it runs as long as the daemon). The chain
/// must answer `StateNetworkName` with the name of `expected`; with nothing expected, a
/// Lotus node's name chooses the network, and the embedded devnet is the devnet.
async fn open_chain(
    repo: &Path,
    repo_config: &RepoConfig,
    expected: Option<FilNetwork>,
) -> Result<OpenChain, DaemonError> {
    if let Some(info) = std::env::var(FULLNODE_API_INFO).ok().filter(|v| !v.is_empty()) {
        let config = lotus_config(&info, repo_config)?;
        let probe = LotusChain::new(config.clone()).map_err(DaemonError::ChainConfig)?;
        let network = check_network(&probe, expected).await?;
        // Addresses go to the node with the network's prefix (Lotus reads both).
        let config = LotusConfig { network: network.address_network(), ..config };
        let lotus = Arc::new(LotusChain::new(config).map_err(DaemonError::ChainConfig)?);
        return Ok(OpenChain { chain: lotus.clone(), tipsets: lotus, devnet: None, network });
    }
    let devnet = Devnet::new(DevnetConfig {
        block_time: Some(FilNetwork::Devnet.preset().block_time),
        repo: Some(repo.join("devnet")),
        ..DevnetConfig::default()
    })
    .map_err(DaemonError::Devnet)?;
    let network = check_network(&devnet, Some(expected.unwrap_or(FilNetwork::Devnet))).await?;
    devnet.start_mining();
    let (chain, tipsets) = (Arc::new(devnet.clone()), Arc::new(devnet.clone()));
    Ok(OpenChain { chain, tipsets, devnet: Some(devnet), network })
}

/// The daemon's chain, as [`open_chain`] opens it.
struct OpenChain {
    /// The chain the manager uses.
    chain: Arc<dyn Chain>,
    /// The same backend, for the API's `ChainHead`.
    tipsets: Arc<dyn HeadTipsets>,
    /// The embedded devnet, if the chain is one: it runs as long as the daemon.
    devnet: Option<Devnet>,
    /// The network decided.
    network: FilNetwork,
}

/// How the daemon talks to the Lotus node of API info `info`: the same for the network check
/// and for the chain the manager uses.
fn lotus_config(info: &str, repo_config: &RepoConfig) -> Result<LotusConfig, DaemonError> {
    let api = ApiInfo::parse(info).map_err(|e| DaemonError::ChainConfig(e.into()))?;
    let mut lotus_config = LotusConfig::new(api);
    lotus_config.ca_file = std::env::var_os(config::LOTUS_CA_FILE_ENV)
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| repo_config.lotus_ca_file.clone());
    Ok(lotus_config)
}

/// Checks `chain` is the network `expected` (or, with none, chooses it from the chain's name,
/// saying so in the log).
async fn check_network(
    chain: &dyn Chain,
    expected: Option<FilNetwork>,
) -> Result<FilNetwork, DaemonError> {
    let network = check_chain(chain, expected).await.map_err(DaemonError::WrongChain)?;
    if expected.is_none() {
        tracing::info!(
            %network,
            chain = network.preset().chain_name,
            "no network configured: chose {network} from the chain's name (StateNetworkName); \
             set --network or network in config.toml to require it"
        );
    }
    Ok(network)
}

/// Logs the network the daemon runs on, with its wallet's default address in its prefix.
fn log_network(network: FilNetwork, wallet: &KeyStore) {
    let preset = network.preset();
    let default_address = match wallet.default_address() {
        Ok(Some(addr)) => format_address(&addr, preset.address_network),
        _ => "none".to_owned(),
    };
    tracing::info!(
        %network,
        chain = preset.chain_name,
        confidence = preset.confidence,
        settle_delay = preset.settle_delay,
        %default_address,
        "running on {network}"
    );
}

/// Opens the datastore and starts the payment-channel manager over it.
async fn start_manager(
    repo: &Path,
    chain: Arc<dyn Chain>,
    wallet: Arc<KeyStore>,
    config: &RepoConfig,
    network: FilNetwork,
) -> Result<PaymentChannelManager, DaemonError> {
    let store = Arc::new(SledStore::open(repo.join("datastore")).map_err(DaemonError::Datastore)?);
    let defaults = ManagerConfig::for_network(network);
    let manager = PaymentChannelManager::new(
        chain,
        wallet,
        store,
        ManagerConfig {
            top_up: config.top_up.clone(),
            confidence: config.confidence.unwrap_or(defaults.confidence),
            route: route_params(config, network),
            intake: config.intake_policy(network),
            ..defaults
        },
    );
    manager.start().await.map_err(DaemonError::Manager)?;
    Ok(manager)
}

/// Opens the retrieval provider's blobs and starts the node's networking (the transport and
/// the handling of inbound requests) listening on `listen`.
async fn start_network(
    repo: &Path,
    keypair: Keypair,
    config: &RepoConfig,
    listen: Multiaddr,
    manager: &PaymentChannelManager,
    metrics: Arc<Metrics>,
) -> Result<Host, DaemonError> {
    let blobs = repo.join("blobs");
    let retrieval = RetrievalProvider::open(&blobs)
        .map_err(|source| DaemonError::Blobs { path: blobs, source })?
        .with_limits(config.retrieval_limits())
        .with_network(manager.network());
    let host_config = config.host_config(Arc::new(retrieval), metrics);
    Ok(Host::start(keypair, host_config, manager.clone(), listen).await?)
}

/// Writes the `api` file: the API's multiaddr, `/ip4/127.0.0.1/tcp/PORT/http`.
fn write_api_file(repo: &Path, local: SocketAddr) -> Result<(), DaemonError> {
    let ip = match local.ip() {
        std::net::IpAddr::V4(ip) => format!("/ip4/{ip}"),
        std::net::IpAddr::V6(ip) => format!("/ip6/{ip}"),
    };
    repo::write_file(&repo.join("api"), format!("{ip}/tcp/{}/http", local.port()).as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::rpc::client::ApiClient;
    use crate::rpc::methods::WalletDefaultAddress;
    use paych_core::network::NetworkCheckError;

    fn loopback_config() -> RepoConfig {
        RepoConfig {
            listen: "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            api: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..RepoConfig::default()
        }
    }

    async fn default_address(repo: &Path) -> String {
        let client = ApiClient::from_repo(repo).unwrap();
        let address = client.call::<WalletDefaultAddress>(()).await.unwrap();
        address.unwrap()
    }

    /// A repo holding `config`, and the options of a daemon on it.
    fn repo_with(config: &RepoConfig) -> (tempfile::TempDir, DaemonOptions) {
        let repo = tempfile::tempdir().unwrap();
        fs::write(repo.path().join("config.toml"), config.to_text()).unwrap();
        let options = DaemonOptions { repo: repo.path().to_owned(), ..DaemonOptions::default() };
        (repo, options)
    }

    /// Starts a daemon with `options`, checks it runs the devnet and writes `t` addresses,
    /// and stops it.
    async fn runs_the_devnet_with_t_addresses(options: DaemonOptions) {
        let daemon = Daemon::start(options.clone()).await.unwrap();
        assert_eq!(daemon.chain_network(), FilNetwork::Devnet);
        let address = default_address(&options.repo).await;
        assert!(address.starts_with("t1"), "{address}");
        daemon.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_daemon_configured_for_mainnet_refuses_its_devnet_unless_the_flag_says_devnet() {
        let config = RepoConfig { network: Some(FilNetwork::Mainnet), ..loopback_config() };
        let (_repo, options) = repo_with(&config);

        let Err(refused) = Daemon::start(options.clone()).await else {
            panic!("a daemon configured for mainnet ran on the devnet");
        };
        match &refused {
            DaemonError::WrongChain(NetworkCheckError::Mismatch {
                expected, chain_name, ..
            }) => {
                assert_eq!((*expected, chain_name.as_str()), (FilNetwork::Mainnet, "paych-devnet"))
            }
            other => panic!("{other:?}"),
        }

        let flagged = DaemonOptions { network: Some(FilNetwork::Devnet), ..options };
        runs_the_devnet_with_t_addresses(flagged).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_daemon_with_no_network_configured_runs_its_embedded_devnet_with_t_addresses() {
        let (_repo, options) = repo_with(&loopback_config());
        runs_the_devnet_with_t_addresses(options).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_bad_config_and_a_held_repo_are_refused_with_what_failed() {
        let repo = tempfile::tempdir().unwrap();
        let options = DaemonOptions { repo: repo.path().to_owned(), ..DaemonOptions::default() };
        let config_path = repo.path().join("config.toml");
        fs::write(&config_path, "# set by hand\nlisten = \"/ip4\"\n").unwrap();
        let Err(refused) = Daemon::start(options.clone()).await else {
            panic!("a daemon started on a bad config");
        };
        match &refused {
            DaemonError::Config { path, source: ConfigError::BadValue { line, key, .. } } => {
                assert_eq!((path, *line, key.as_str()), (&config_path, 2, "listen"));
            }
            other => panic!("{other:?}"),
        }

        fs::write(&config_path, loopback_config().to_text()).unwrap();
        let daemon = Daemon::start(options.clone()).await.unwrap();
        let Err(refused) = Daemon::start(options).await else {
            panic!("two daemons shared a repo");
        };
        assert!(matches!(refused, DaemonError::LockHeld { .. }), "{refused:?}");
        daemon.shutdown().await.unwrap();
    }
}
