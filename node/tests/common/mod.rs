//! Shared by the node's in-process network tests: parties (a manager on a sled store in a
//! temporary directory, with a funded key on one in-process devnet) and their network loops
//! listening on loopback.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use paych_core::chain::devnet::Devnet;
use paych_core::chain::Chain;
use paych_core::manager::{ManagerConfig, PaymentChannelManager};
use paych_core::store::sled::SledStore;
use paych_core::types::{Address, Network, TokenAmount};
use paych_core::wallet::{KeyStore, Wallet};
use paych_node::network::{self, NetworkClient, NetworkConfig};

/// The longest any step may take.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// `n` attoFIL.
pub fn atto(n: u64) -> TokenAmount {
    TokenAmount::from_atto(n)
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
    let wallet = Arc::new(KeyStore::open(dir.path().join("keystore"), Network::Testnet).unwrap());
    let addr = wallet.new_key().unwrap();
    let cid = devnet.faucet(&addr, TokenAmount::from_whole(fil)).unwrap();
    devnet.wait(&cid, 0, DEADLINE).await.unwrap();
    let store = Arc::new(SledStore::open(dir.path().join("datastore")).unwrap());
    let config = ManagerConfig {
        settler_interval: Duration::from_millis(20),
        wait_timeout: Duration::from_secs(5),
        ..ManagerConfig::default()
    };
    let manager = PaymentChannelManager::new(Arc::new(devnet.clone()), wallet, store, config);
    manager.start().await.unwrap();
    Party { manager, addr, _dir: dir }
}

/// The network loop of `manager`, listening on loopback: its client, peer id and addresses.
pub async fn node(
    manager: &PaymentChannelManager,
    config: NetworkConfig,
) -> (NetworkClient, PeerId, Vec<Multiaddr>) {
    let (client, _task) =
        network::spawn(Keypair::generate_ed25519(), config, manager.clone()).unwrap();
    client.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap()).await.unwrap();
    let addrs = network::wait_for_listen_addrs(&client).await.unwrap();
    assert!(!addrs.is_empty());
    let peer = client.local_peer_id();
    (client, peer, addrs)
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
