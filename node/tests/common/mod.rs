//! Shared by the node's in-process network tests: parties (a manager on a sled store in a
//! temporary directory, with a funded key on one in-process devnet), a channel between two
//! of them, their networking started the library's one way ([`Host::start`]) listening on
//! loopback, and the voucher exchange between them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::chain::Chain;
use paych_core::crypto;
use paych_core::manager::{ManagerConfig, PaymentChannelManager};
use paych_core::store::sled::SledStore;
use paych_core::types::{Address, SignedVoucher, TokenAmount};
use paych_core::wallet::{KeyStore, Wallet};
use paych_node::host::{Host, HostConfig};
use paych_node::metrics::Metrics;
use paych_node::network::{NetworkClient, NetworkConfig};
use paych_node::pay::Payer;
use paych_protocol::{VoucherRequest, VoucherResponse};

/// The longest any step may take.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// `n` attoFIL.
pub fn atto(n: u64) -> TokenAmount {
    TokenAmount::from_atto(n)
}

/// An in-process devnet producing a block every 5 ms.
pub fn mining_devnet() -> Devnet {
    let devnet = Devnet::new(DevnetConfig {
        block_time: Some(Duration::from_millis(5)),
        ..DevnetConfig::default()
    })
    .unwrap();
    devnet.start_mining();
    devnet
}

/// A manager with its own key and store.
pub struct Party {
    pub manager: PaymentChannelManager,
    pub addr: Address,
    _dir: tempfile::TempDir,
}

/// A party whose key the faucet funds with `fil` FIL (its account exists on chain even at 0).
pub async fn party(devnet: &Devnet, fil: u64) -> Party {
    let dir = tempfile::tempdir().unwrap();
    let config = ManagerConfig {
        settler_interval: Duration::from_millis(20),
        wait_timeout: Duration::from_secs(5),
        ..ManagerConfig::default()
    };
    let wallet = Arc::new(KeyStore::open(dir.path().join("keystore"), config.network).unwrap());
    let addr = wallet.new_key().unwrap();
    let cid = devnet.faucet(&addr, TokenAmount::from_whole(fil)).unwrap();
    devnet.wait(&cid, 0, DEADLINE).await.unwrap();
    let store = Arc::new(SledStore::open(dir.path().join("datastore")).unwrap());
    let manager = PaymentChannelManager::new(Arc::new(devnet.clone()), wallet, store, config);
    manager.start().await.unwrap();
    Party { manager, addr, _dir: dir }
}

/// Opens a channel from `payer` to `payee` holding `amount` and waits until it is ready.
pub async fn open_channel(payer: &Party, payee: &Party, amount: TokenAmount) -> Address {
    let handle = payer.manager.create(payer.addr, payee.addr, amount, atto(0)).await.unwrap();
    tokio::time::timeout(DEADLINE, payer.manager.get_wait_ready(&handle.wait_sentinel.unwrap()))
        .await
        .expect("the channel was not ready in time")
        .unwrap()
}

/// A mining devnet, a payer funded with `payer_fil` FIL, a payee with `payee_fil`, and a
/// channel of `amount` from one to the other.
pub struct PayingPair {
    pub devnet: Devnet,
    pub payer: Party,
    pub payee: Party,
    pub channel: Address,
}

/// See [`PayingPair`].
pub async fn paying_pair(payer_fil: u64, payee_fil: u64, amount: TokenAmount) -> PayingPair {
    let devnet = mining_devnet();
    let payer = party(&devnet, payer_fil).await;
    let payee = party(&devnet, payee_fil).await;
    let channel = open_channel(&payer, &payee, amount).await;
    PayingPair { devnet, payer, payee, channel }
}

/// The networking of `manager`, started as the daemon starts it and listening on loopback:
/// its client, peer id and addresses.
pub async fn node(
    manager: &PaymentChannelManager,
    config: HostConfig,
) -> (NetworkClient, PeerId, Vec<Multiaddr>) {
    let listen = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
    let host =
        Host::start(Keypair::generate_ed25519(), config, manager.clone(), listen).await.unwrap();
    assert!(!host.listen_addrs().is_empty());
    (host.client().clone(), host.peer_id(), host.listen_addrs().to_vec())
}

/// [`node`], counting in metrics of its own: the metrics, the client, peer id and addresses.
pub async fn metered_node(
    manager: &PaymentChannelManager,
    config: HostConfig,
) -> (Arc<Metrics>, NetworkClient, PeerId, Vec<Multiaddr>) {
    let metrics = Arc::new(Metrics::new());
    let (net, peer, addrs) = node(manager, config.with_metrics(metrics.clone())).await;
    (metrics, net, peer, addrs)
}

/// A node's configuration with its transport's limits set by `network`.
pub fn limits(network: NetworkConfig) -> HostConfig {
    HostConfig { network, ..HostConfig::default() }
}

/// The address of the peer `peer` listening at `addrs`, ending in `/p2p/<peer>`.
pub fn target(peer: PeerId, addrs: &[Multiaddr]) -> Multiaddr {
    addrs[0].clone().with(Protocol::P2p(peer))
}

/// A payer paying through `party`'s manager and `net`, reaching `payee` at `peer`.
pub fn payer_to(
    party: &Party,
    net: &NetworkClient,
    payee: &Party,
    peer: PeerId,
    addrs: &[Multiaddr],
) -> Payer {
    Payer::new(party.manager.clone(), net.clone(), [(payee.addr, target(peer, addrs))].into())
}

/// Sends `voucher` from `net` to `peer` (at `addrs`) and waits (at most [`DEADLINE`]) for
/// the answer.
pub async fn send_voucher(
    net: &NetworkClient,
    peer: PeerId,
    addrs: &[Multiaddr],
    voucher: SignedVoucher,
) -> VoucherResponse {
    tokio::time::timeout(DEADLINE, net.ask(peer, addrs.to_vec(), VoucherRequest::new(voucher)))
        .await
        .expect("the voucher exchange timed out")
        .unwrap()
}

/// Asserts that `metrics` counted exactly `count` refusals for `reason`.
pub fn assert_refusals(metrics: &Metrics, reason: &str, count: usize) {
    let text = metrics.encode();
    let line = format!("paych_refusals_total{{reason=\"{reason}\"}} {count}\n");
    assert!(text.contains(&line), "{line:?} not in {text}");
}

/// A fresh key no party knows, and its address.
pub fn stranger() -> (crypto::SecretKey, Address) {
    let key = crypto::generate_secret_key().unwrap();
    let addr = crypto::secp_address(&crypto::public_key(&key));
    (key, addr)
}

/// `voucher` signed by a stranger's key instead of the channel's `from`.
pub fn sign_as_stranger(mut voucher: SignedVoucher) -> SignedVoucher {
    let (key, _) = stranger();
    voucher.signature = Some(crypto::sign(&key, &voucher.signing_bytes().unwrap()));
    voucher
}

/// A TCP transport that dials from a chosen local IP (libp2p's own TCP transport lets the
/// system choose, which on loopback is always 127.0.0.1), so that a test can play peers on
/// another host: on Linux the whole of 127.0.0.0/8 is the loopback interface. It never
/// listens.
pub struct DialFrom(pub std::net::IpAddr);

impl libp2p::core::Transport for DialFrom {
    type Output = libp2p::tcp::tokio::TcpStream;
    type Error = std::io::Error;
    type ListenerUpgrade = futures::future::Pending<Result<Self::Output, Self::Error>>;
    type Dial = futures::future::BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn listen_on(
        &mut self,
        _: libp2p::core::transport::ListenerId,
        addr: Multiaddr,
    ) -> Result<(), libp2p::core::transport::TransportError<Self::Error>> {
        Err(libp2p::core::transport::TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _: libp2p::core::transport::ListenerId) -> bool {
        false
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _: libp2p::core::transport::DialOpts,
    ) -> Result<Self::Dial, libp2p::core::transport::TransportError<Self::Error>> {
        use libp2p::multiaddr::Protocol;
        let mut parts = addr.iter();
        let target = match (parts.next(), parts.next()) {
            (Some(Protocol::Ip4(ip)), Some(Protocol::Tcp(port))) => {
                std::net::SocketAddr::from((ip, port))
            }
            _ => return Err(libp2p::core::transport::TransportError::MultiaddrNotSupported(addr)),
        };
        let source = self.0;
        Ok(Box::pin(async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(std::net::SocketAddr::new(source, 0))?;
            let stream = socket.connect(target).await?;
            stream.set_nodelay(true)?;
            Ok(libp2p::tcp::tokio::TcpStream(stream))
        }))
    }

    fn poll(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<libp2p::core::transport::TransportEvent<Self::ListenerUpgrade, Self::Error>>
    {
        std::task::Poll::Pending
    }
}

/// A libp2p connection held open by a fresh identity that does nothing on it.
pub type IdleConnection = (PeerId, libp2p::core::muxing::StreamMuxerBox);

/// Opens a libp2p connection (TCP, Noise, Yamux) to `target` from local IP `source` with a
/// fresh identity, and holds it without ever reading from it. `Err` when the listener
/// refused it before the handshake was done.
pub async fn idle_connection_from(
    source: std::net::IpAddr,
    target: &Multiaddr,
) -> Result<IdleConnection, String> {
    use libp2p::core::transport::{DialOpts, PortUse};
    use libp2p::core::upgrade::Version;
    use libp2p::core::{Endpoint, Transport};
    let key = Keypair::generate_ed25519();
    let noise = libp2p::noise::Config::new(&key).map_err(|e| e.to_string())?;
    let mut transport = DialFrom(source)
        .upgrade(Version::V1)
        .authenticate(noise)
        .multiplex(libp2p::yamux::Config::default())
        .boxed();
    let dial = transport
        .dial(target.clone(), DialOpts { role: Endpoint::Dialer, port_use: PortUse::New })
        .map_err(|e| e.to_string())?;
    dial.await.map_err(|e| e.to_string())
}
