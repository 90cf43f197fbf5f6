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
//! Of an address's connections, only a few may be still in their handshake at once
//! ([`MAX_PENDING_INBOUND_PER_IP`]): a handshake that never ends holds a slot of the node's
//! small pool of connections being upgraded until the upgrade timeout.
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
/// Of an address's inbound connections, at most this many may be still being upgraded
/// (Noise, Yamux) at once: a handshake takes milliseconds, and one that never ends holds
/// its slot until the upgrade timeout, so this is what keeps a few hosts from taking every
/// one of the node's upgrade slots.
pub const MAX_PENDING_INBOUND_PER_IP: u32 = 4;

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
#[error(
    "connection limit exceeded: at most {limit} inbound connections {} from {address}",
    if *.pending { "being upgraded" } else { "in all" }
)]
pub struct Exceeded {
    /// The cap.
    pub limit: u32,
    /// Whether the cap on connections still being upgraded was hit (else the cap on all).
    pub pending: bool,
    /// The address the connection came from.
    pub address: AddressKey,
}

/// Where a counted connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Accepted, its handshake (Noise, Yamux) not done yet.
    Pending,
    /// Established.
    Established,
}

/// The connections counted from one address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    /// Pending and established.
    all: u32,
    /// Pending only.
    pending: u32,
}

/// Counts inbound connections by remote address and denies those over the caps.
#[derive(Debug)]
pub struct Behaviour {
    max_per_address: u32,
    max_pending_per_address: u32,
    /// Every inbound connection counted, with its address and stage.
    inbound: HashMap<ConnectionId, (AddressKey, Stage)>,
    /// Connections counted per address; an address with none has no entry.
    per_address: HashMap<AddressKey, Counts>,
}

impl Behaviour {
    /// At most `max_per_address` inbound connections from one address at once, of which at
    /// most [`MAX_PENDING_INBOUND_PER_IP`] (or `max_per_address`, if lower) still being
    /// upgraded.
    pub fn new(max_per_address: u32) -> Self {
        Behaviour {
            max_per_address,
            max_pending_per_address: max_per_address.min(MAX_PENDING_INBOUND_PER_IP),
            inbound: HashMap::new(),
            per_address: HashMap::new(),
        }
    }

    /// Inbound connections counted from `address` now, pending and established.
    pub fn connections_from(&self, address: &AddressKey) -> u32 {
        self.per_address.get(address).map_or(0, |counts| counts.all)
    }

    /// Counts `connection` from `remote` as pending, or denies it when its address is full.
    fn admit(&mut self, connection: ConnectionId, remote: &Multiaddr) -> Result<(), Exceeded> {
        if self.inbound.contains_key(&connection) {
            return Ok(());
        }
        let Some(address) = AddressKey::of_multiaddr(remote) else { return Ok(()) };
        let counts = self.per_address.get(&address).copied().unwrap_or_default();
        if counts.all >= self.max_per_address {
            return Err(Exceeded { limit: self.max_per_address, pending: false, address });
        }
        if counts.pending >= self.max_pending_per_address {
            return Err(Exceeded { limit: self.max_pending_per_address, pending: true, address });
        }
        let counts = self.per_address.entry(address).or_default();
        counts.all += 1;
        counts.pending += 1;
        self.inbound.insert(connection, (address, Stage::Pending));
        Ok(())
    }

    /// Moves `connection` from pending to established; counts it if it was never seen
    /// pending, or denies it when its address is full.
    fn establish(&mut self, connection: ConnectionId, remote: &Multiaddr) -> Result<(), Exceeded> {
        match self.inbound.get_mut(&connection) {
            Some((address, stage)) => {
                if *stage == Stage::Pending {
                    *stage = Stage::Established;
                    if let Some(counts) = self.per_address.get_mut(address) {
                        counts.pending = counts.pending.saturating_sub(1);
                    }
                }
                Ok(())
            }
            None => {
                let Some(address) = AddressKey::of_multiaddr(remote) else { return Ok(()) };
                let counts = self.per_address.entry(address).or_default();
                if counts.all >= self.max_per_address {
                    if counts.all == 0 {
                        self.per_address.remove(&address);
                    }
                    return Err(Exceeded { limit: self.max_per_address, pending: false, address });
                }
                counts.all += 1;
                self.inbound.insert(connection, (address, Stage::Established));
                Ok(())
            }
        }
    }

    /// Stops counting `connection`.
    fn release(&mut self, connection: ConnectionId) {
        let Some((address, stage)) = self.inbound.remove(&connection) else { return };
        if let Some(counts) = self.per_address.get_mut(&address) {
            counts.all = counts.all.saturating_sub(1);
            if stage == Stage::Pending {
                counts.pending = counts.pending.saturating_sub(1);
            }
            if counts.all == 0 {
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
        self.establish(connection_id, remote_addr).map_err(ConnectionDenied::new)?;
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

    fn id(n: usize) -> ConnectionId {
        ConnectionId::new_unchecked(n)
    }

    #[test]
    fn one_address_gets_its_cap_and_no_more_while_another_still_gets_in() {
        let mut limits = Behaviour::new(2);
        let attacker = addr("/ip4/10.0.0.1/tcp/4001");
        limits.admit(id(1), &attacker).unwrap();
        limits.admit(id(2), &addr("/ip4/10.0.0.1/tcp/4002")).unwrap();
        let denied = limits.admit(id(3), &addr("/ip4/10.0.0.1/tcp/4003")).unwrap_err();
        assert_eq!(denied.limit, 2);
        assert_eq!(denied.address.to_string(), "10.0.0.1");
        limits.admit(id(4), &addr("/ip4/10.0.0.2/tcp/1")).unwrap();

        // A closed connection frees its slot; releasing twice frees it once.
        limits.release(id(1));
        limits.release(id(1));
        let key = AddressKey::of_multiaddr(&attacker).unwrap();
        assert_eq!(limits.connections_from(&key), 1);
        limits.admit(id(3), &attacker).unwrap();
        // Counted once, pending then established.
        limits.establish(id(3), &attacker).unwrap();
        assert_eq!(limits.connections_from(&key), 2);
        assert!(limits.admit(id(5), &attacker).is_err());
    }

    #[test]
    fn an_address_may_have_only_a_few_connections_in_their_handshake() {
        let mut limits = Behaviour::new(8);
        let host = addr("/ip4/10.0.0.1/tcp/1");
        for n in 0..MAX_PENDING_INBOUND_PER_IP as usize {
            limits.admit(id(n), &host).unwrap();
        }
        let denied = limits.admit(id(100), &host).unwrap_err();
        assert!(denied.pending && denied.limit == MAX_PENDING_INBOUND_PER_IP, "{denied}");
        assert!(denied.to_string().contains("being upgraded"), "{denied}");
        // A finished handshake frees a pending slot, but still counts towards the cap.
        limits.establish(id(0), &host).unwrap();
        limits.admit(id(100), &host).unwrap();
        let key = AddressKey::of_multiaddr(&host).unwrap();
        assert_eq!(limits.connections_from(&key), MAX_PENDING_INBOUND_PER_IP + 1);
        // A handshake that fails frees both.
        limits.release(id(100));
        assert_eq!(limits.per_address[&key], Counts { all: 4, pending: 3 });
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
