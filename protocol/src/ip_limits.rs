//! A cap on the inbound connections one remote address may hold, pending and established
//! together, so that identities — which cost nothing to make — cannot be used to take every
//! connection slot from one host.
//!
//! `connection_limits` caps connections per peer id and in total; a peer id is a key pair,
//! and anyone can make thousands. This behaviour keys inbound connections by the address
//! they come from instead: an IPv4 address, or the /64 prefix of an IPv6 address (one
//! host's share of an IPv6 network is a whole /64). An IPv4-mapped IPv6 address counts as
//! its IPv4 address.
//!
//! Only inbound connections are counted: the connections this node dials are its own
//! choice. A connection whose remote address carries no IP (no transport of a paych node
//! makes one) is not counted. The behaviour only counts and denies; it never reads a
//! message.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr};
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::{ConnectionClosed, ListenFailure};
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// The inbound connections one remote address may hold at once by default, pending and
/// established together: a payer needs one (two while a connection is replaced), and a few
/// payers behind one NAT need a few each.
pub const DEFAULT_MAX_INBOUND_PER_IP: u32 = 8;

/// The key inbound connections are counted under: an IPv4 address, or an IPv6 /64 prefix
/// (the host bits zeroed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey(IpAddr);

impl AddressKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => AddressKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    AddressKey(IpAddr::V6(Ipv6Addr::from(bits)))
                }
            },
        }
    }

    /// The key of the IP in `addr`, if it carries one.
    pub fn of_multiaddr(addr: &Multiaddr) -> Option<Self> {
        addr.iter().find_map(|protocol| match protocol {
            Protocol::Ip4(ip) => Some(AddressKey::of(IpAddr::V4(ip))),
            Protocol::Ip6(ip) => Some(AddressKey::of(IpAddr::V6(ip))),
            _ => None,
        })
    }

    /// The address (for IPv6, the prefix with its host bits zeroed).
    pub fn ip(&self) -> IpAddr {
        self.0
    }
}

impl std::fmt::Display for AddressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => write!(f, "{ip}"),
            IpAddr::V6(ip) => write!(f, "{ip}/64"),
        }
    }
}

/// Why an inbound connection was denied: its address holds the most it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection limit exceeded: at most {limit} inbound connections from {address}")]
pub struct Exceeded {
    /// The cap.
    pub limit: u32,
    /// The address the connection came from.
    pub address: AddressKey,
}

/// Counts inbound connections by remote address and denies those over the cap.
#[derive(Debug)]
pub struct Behaviour {
    max_per_address: u32,
    /// Every inbound connection counted, pending or established, with its address.
    inbound: HashMap<ConnectionId, AddressKey>,
    /// Connections counted per address; an address with none has no entry.
    per_address: HashMap<AddressKey, u32>,
}

impl Behaviour {
    /// At most `max_per_address` inbound connections from one address at once.
    pub fn new(max_per_address: u32) -> Self {
        Behaviour { max_per_address, inbound: HashMap::new(), per_address: HashMap::new() }
    }

    /// Inbound connections counted from `address` now.
    pub fn connections_from(&self, address: &AddressKey) -> u32 {
        self.per_address.get(address).copied().unwrap_or(0)
    }

    /// Counts `connection` from `remote`, or denies it when its address is full.
    fn admit(&mut self, connection: ConnectionId, remote: &Multiaddr) -> Result<(), Exceeded> {
        if self.inbound.contains_key(&connection) {
            return Ok(());
        }
        let Some(address) = AddressKey::of_multiaddr(remote) else { return Ok(()) };
        let count = self.per_address.entry(address).or_insert(0);
        if *count >= self.max_per_address {
            if *count == 0 {
                self.per_address.remove(&address);
            }
            return Err(Exceeded { limit: self.max_per_address, address });
        }
        *count += 1;
        self.inbound.insert(connection, address);
        Ok(())
    }

    /// Stops counting `connection`.
    fn release(&mut self, connection: ConnectionId) {
        let Some(address) = self.inbound.remove(&connection) else { return };
        if let Some(count) = self.per_address.get_mut(&address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_address.remove(&address);
            }
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.admit(connection_id, remote_addr).map_err(ConnectionDenied::new)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // Counted since it was pending; admitted here only if this behaviour missed that.
        self.admit(connection_id, remote_addr).map_err(ConnectionDenied::new)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. })
            | FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                self.release(connection_id)
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_address_gets_its_cap_and_no_more_while_another_still_gets_in() {
        let mut limits = Behaviour::new(2);
        let attacker = addr("/ip4/10.0.0.1/tcp/4001");
        let (a, b, c) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
            ConnectionId::new_unchecked(3),
        );
        limits.admit(a, &attacker).unwrap();
        limits.admit(b, &addr("/ip4/10.0.0.1/tcp/4002")).unwrap();
        let denied = limits.admit(c, &addr("/ip4/10.0.0.1/tcp/4003")).unwrap_err();
        assert_eq!(denied.limit, 2);
        assert_eq!(denied.address.to_string(), "10.0.0.1");
        limits.admit(ConnectionId::new_unchecked(4), &addr("/ip4/10.0.0.2/tcp/1")).unwrap();

        // A closed connection frees its slot; releasing twice frees it once.
        limits.release(a);
        limits.release(a);
        assert_eq!(limits.connections_from(&AddressKey::of_multiaddr(&attacker).unwrap()), 1);
        limits.admit(c, &attacker).unwrap();
        // Counted once, pending then established.
        limits.admit(c, &attacker).unwrap();
        assert_eq!(limits.connections_from(&AddressKey::of_multiaddr(&attacker).unwrap()), 2);
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_64_prefix_and_a_mapped_ipv4_as_ipv4() {
        let one = AddressKey::of_multiaddr(&addr("/ip6/2001:db8:1:2:aaaa::1/tcp/1")).unwrap();
        let other = AddressKey::of_multiaddr(&addr("/ip6/2001:db8:1:2:ffff::9/tcp/1")).unwrap();
        let next = AddressKey::of_multiaddr(&addr("/ip6/2001:db8:1:3::1/tcp/1")).unwrap();
        assert_eq!(one, other);
        assert_ne!(one, next);
        assert_eq!(one.to_string(), "2001:db8:1:2::/64");
        let mapped = AddressKey::of_multiaddr(&addr("/ip6/::ffff:10.0.0.1/tcp/1")).unwrap();
        assert_eq!(mapped, AddressKey::of_multiaddr(&addr("/ip4/10.0.0.1/tcp/1")).unwrap());
        assert_eq!(AddressKey::of_multiaddr(&addr("/dns4/example.com/tcp/1")), None);
    }

    #[test]
    fn a_connection_without_an_ip_is_not_counted() {
        let mut limits = Behaviour::new(1);
        for n in 0..3 {
            limits.admit(ConnectionId::new_unchecked(n), &addr("/memory/7")).unwrap();
        }
        assert!(limits.inbound.is_empty() && limits.per_address.is_empty());
    }
}
