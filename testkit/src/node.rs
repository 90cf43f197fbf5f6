//! A node's networking in process: a manager's host started the library's one way
//! ([`Host::start`]) listening on loopback, with limits or metrics of the test's choosing, a
//! payer reaching a payee through it, vouchers sent and answered, refusals counted, and
//! connections from another loopback address that a test holds idle.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent};
use libp2p::core::upgrade::Version;
use libp2p::core::{Endpoint, Transport};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use paych_core::manager::PaymentChannelManager;
use paych_core::types::{Address, SignedVoucher, TokenAmount};
use paych_node::host::{Host, HostConfig};
use paych_node::metrics::Metrics;
use paych_node::network::{NetworkClient, NetworkConfig};
use paych_node::pay::Payer;
use paych_protocol::{VoucherRequest, VoucherResponse};

use crate::deadline::within;
use crate::devnet::{Net, Node};

/// A node's networking as [`host`] starts it: its client, peer id and addresses.
pub type Hosted = (NetworkClient, PeerId, Vec<Multiaddr>);

/// The networking of `manager`, started as the daemon starts it and listening on loopback:
/// its client, peer id and addresses. Hold the client: the loop stops once no client is
/// left.
pub async fn host(manager: &PaymentChannelManager, config: HostConfig) -> Hosted {
    let listen = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
    let host =
        Host::start(Keypair::generate_ed25519(), config, manager.clone(), listen).await.unwrap();
    assert!(!host.listen_addrs().is_empty());
    (host.client().clone(), host.peer_id(), host.listen_addrs().to_vec())
}

impl Net {
    /// A payer and a payee with a channel between them as [`Net::channel`] makes them, and
    /// their networking, both run with `config` (the payee's started first, as a payee
    /// listens before its payer pays): the payer, the payee, the channel, and the payer's
    /// and the payee's networking.
    pub async fn online_channel(
        &self,
        payer_fil: u64,
        payee_fil: u64,
        balance: TokenAmount,
        config: HostConfig,
    ) -> (Node, Node, Address, Hosted, Hosted) {
        let (payer, payee, channel) = self.channel(payer_fil, payee_fil, balance).await;
        let payee_host = host(payee.m(), config.clone()).await;
        let payer_host = host(payer.m(), config).await;
        (payer, payee, channel, payer_host, payee_host)
    }
}

/// [`host`], counting in metrics of its own: the metrics, the client, peer id and
/// addresses.
pub async fn metered_host(
    manager: &PaymentChannelManager,
    config: HostConfig,
) -> (Arc<Metrics>, NetworkClient, PeerId, Vec<Multiaddr>) {
    let metrics = Arc::new(Metrics::new());
    let (net, peer, addrs) = host(manager, config.with_metrics(metrics.clone())).await;
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

/// A payer paying through `payer`'s manager and `net`, reaching `payee` at `peer`.
pub fn payer_to(
    payer: &Node,
    net: &NetworkClient,
    payee: &Node,
    peer: PeerId,
    addrs: &[Multiaddr],
) -> Payer {
    Payer::new(payer.m().clone(), net.clone(), [(payee.addr, target(peer, addrs))].into())
}

/// Sends `voucher` from `net` to `peer` (at `addrs`) and waits (within the deadline) for
/// the answer.
pub async fn send_voucher(
    net: &NetworkClient,
    peer: PeerId,
    addrs: &[Multiaddr],
    voucher: SignedVoucher,
) -> VoucherResponse {
    within("the voucher exchange", net.ask(peer, addrs.to_vec(), VoucherRequest::new(voucher)))
        .await
        .unwrap()
}

/// Asserts that `metrics` counted exactly `count` refusals for `reason`.
pub fn assert_refusals(metrics: &Metrics, reason: &str, count: usize) {
    let text = metrics.encode();
    let line = format!("paych_refusals_total{{reason=\"{reason}\"}} {count}\n");
    assert!(text.contains(&line), "{line:?} not in {text}");
}

/// A TCP transport that dials from a chosen local IP (libp2p's own TCP transport lets the
/// system choose, which on loopback is always 127.0.0.1), so that a test can play peers on
/// another host: on Linux the whole of 127.0.0.0/8 is the loopback interface. It never
/// listens.
pub struct DialFrom(pub IpAddr);

impl Transport for DialFrom {
    type Output = libp2p::tcp::tokio::TcpStream;
    type Error = std::io::Error;
    type ListenerUpgrade = futures::future::Pending<Result<Self::Output, Self::Error>>;
    type Dial = futures::future::BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn listen_on(
        &mut self,
        _: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _: ListenerId) -> bool {
        false
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let mut parts = addr.iter();
        let target = match (parts.next(), parts.next()) {
            (Some(Protocol::Ip4(ip)), Some(Protocol::Tcp(port))) => SocketAddr::from((ip, port)),
            _ => return Err(TransportError::MultiaddrNotSupported(addr)),
        };
        let source = self.0;
        Ok(Box::pin(async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            let stream = socket.connect(target).await?;
            stream.set_nodelay(true)?;
            Ok(libp2p::tcp::tokio::TcpStream(stream))
        }))
    }

    fn poll(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Poll::Pending
    }
}

/// A libp2p connection held open by a fresh identity that does nothing on it.
pub type IdleConnection = (PeerId, StreamMuxerBox);

/// Opens a libp2p connection (TCP, Noise, Yamux) to `target` from local IP `source` with a
/// fresh identity, and holds it without ever reading from it. `Err` when the listener
/// refused it before the handshake was done.
pub async fn idle_connection_from(
    source: IpAddr,
    target: &Multiaddr,
) -> Result<IdleConnection, String> {
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
