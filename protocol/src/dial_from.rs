//! A TCP transport whose outbound connections leave from one chosen local IP address.
//!
//! libp2p's TCP transport lets the system pick a dial's source address (on loopback,
//! always 127.0.0.1) or reuses a listen port on the unspecified address; neither lets a
//! node on 127.0.0.3 be seen as 127.0.0.3 by the peers it dials. [`DialFrom`] wraps it:
//! listening is the inner transport's, and a dial to an address of the same IP family as
//! [`DialFrom`]'s source binds its socket to that source (any port) before connecting. It
//! never changes where the node listens nor what it announces. No dial leaves from a
//! listening port (libp2p's "port reuse"): see [`DialFrom`]'s `dial`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::FutureExt;
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent};
use libp2p::core::Transport;
use libp2p::multiaddr::Protocol;
use libp2p::{tcp, Multiaddr};

/// libp2p's tokio TCP transport, its dials bound to `source` when one is given.
pub struct DialFrom {
    inner: tcp::tokio::Transport,
    source: Option<IpAddr>,
}

impl DialFrom {
    /// TCP with `config`; dials leave from `source` (the system's choice when `None`).
    pub fn new(config: tcp::Config, source: Option<IpAddr>) -> Self {
        DialFrom { inner: tcp::tokio::Transport::new(config), source }
    }
}

impl Transport for DialFrom {
    type Output = tcp::tokio::TcpStream;
    type Error = io::Error;
    type ListenerUpgrade = <tcp::tokio::Transport as Transport>::ListenerUpgrade;
    type Dial = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.inner.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        // Never dial from the listening port: two nodes that dial each other from their
        // listening ports make the same four-tuple both ways, and a dial while the other
        // side's connection (or its TIME_WAIT) holds it fails with "address in use".
        let opts = DialOpts { port_use: PortUse::New, ..opts };
        let bound = self.source.zip(tcp_socket_addr(&addr));
        let Some((source, target)) = bound.filter(|(s, t)| s.is_ipv4() == t.is_ipv4()) else {
            return self.inner.dial(addr, opts);
        };
        if target.port() == 0 || target.ip().is_unspecified() {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        Ok(async move {
            let socket = match source {
                IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            socket.set_nodelay(true)?;
            socket.bind(SocketAddr::new(source, 0))?;
            Ok(tcp::tokio::TcpStream(socket.connect(target).await?))
        }
        .boxed())
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

/// The IP address and TCP port a multiaddr dials (`/ip4|ip6/…/tcp/…`, a `/p2p/…` after it
/// ignored); `None` for anything else.
pub fn tcp_socket_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut parts = addr.iter();
    let ip: IpAddr = match parts.next()? {
        Protocol::Ip4(v4) => v4.into(),
        Protocol::Ip6(v6) => v6.into(),
        _ => return None,
    };
    let Protocol::Tcp(port) = parts.next()? else { return None };
    match parts.next() {
        None | Some(Protocol::P2p(_)) => Some(SocketAddr::new(ip, port)),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn only_plain_tcp_addresses_are_dialled_from_the_source() {
        let tcp = |text: &str| tcp_socket_addr(&text.parse().unwrap());
        assert_eq!(tcp("/ip4/127.0.0.3/tcp/7"), Some("127.0.0.3:7".parse().unwrap()));
        assert_eq!(
            tcp("/ip4/127.0.0.3/tcp/7/p2p/12D3KooWR3xpchtdRaf8WMXv8dVjaKWqZQ5kS53rcFpHcwrSXqdm"),
            Some("127.0.0.3:7".parse().unwrap())
        );
        assert_eq!(tcp("/ip6/::1/tcp/9"), Some("[::1]:9".parse().unwrap()));
        assert_eq!(tcp("/ip4/127.0.0.3/udp/7"), None);
        assert_eq!(tcp("/ip4/127.0.0.3/tcp/7/ws"), None);
        assert_eq!(tcp("/dns4/example.com/tcp/7"), None);
    }

    #[tokio::test]
    async fn a_dial_never_leaves_from_the_listening_port() {
        let mut transport = DialFrom::new(tcp::Config::default(), None).boxed();
        transport.listen_on(ListenerId::next(), "/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
        let listening = loop {
            match futures::future::poll_fn(|cx| Pin::new(&mut transport).poll(cx)).await {
                TransportEvent::NewAddress { listen_addr, .. } => {
                    break tcp_socket_addr(&listen_addr).unwrap();
                }
                _ => continue,
            }
        };
        let peer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target: Multiaddr =
            format!("/ip4/127.0.0.1/tcp/{}", peer.local_addr().unwrap().port()).parse().unwrap();
        let opts = DialOpts { role: libp2p::core::Endpoint::Dialer, port_use: PortUse::Reuse };
        let dial = transport.dial(target, opts).unwrap();
        let (accepted, _) = tokio::join!(peer.accept(), dial);
        let (_, from) = accepted.unwrap();
        assert_ne!(from.port(), listening.port(), "the dial left from the listening port");
    }
}
