//! Paying over the wire: [`Payer::pay`] creates a voucher on the lane of a payment flow and
//! sends it to the channel's payee through the node's [`NetworkClient`].
//!
//! A flow (an opaque reference of at most [`MAX_FLOW_BYTES`] bytes, or none) gets a lane
//! leased from the channel's pool on its first payment ([`PaymentChannelManager::lease_lane`])
//! and keeps it while the daemon runs; each payment adds its amount to the lane's current
//! cumulative amount. The flow-to-lane map lives in memory, bounded by [`MAX_FLOWS`]. The
//! payee's libp2p address comes from the peer book (`--peer` or `peer.<address>` in the
//! repo's config).

use std::collections::{BTreeMap, HashMap};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use paych_core::manager::{ManagerError, PaymentChannelManager};
use paych_core::types::{format_address, Address, Network, SignedVoucher, TokenAmount};
use paych_protocol::messages::MAX_FLOW_BYTES;
use paych_protocol::{VoucherRequest, VoucherResponse};
use tokio::sync::Mutex;

use crate::network::{NetworkClient, NetworkError};

/// Flows with a lane at once, at most.
pub const MAX_FLOWS: usize = 4096;

/// Why a payment failed.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// The manager refused (unknown channel, insufficient funds, …).
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// The channel cannot cover the voucher.
    #[error("the channel lacks {0} attoFIL to cover the voucher")]
    Shortfall(TokenAmount),
    /// The payee's address is not in the peer book.
    #[error("no libp2p address known for the payee {0}: add one with --peer or peer.<address> in config.toml")]
    UnknownPeer(String),
    /// The flow reference is too long.
    #[error("the flow reference is {0} bytes; at most {MAX_FLOW_BYTES}")]
    FlowTooLong(usize),
    /// Too many flows hold lanes.
    #[error("too many payment flows (at most {MAX_FLOWS})")]
    TooManyFlows,
    /// The amount is not positive.
    #[error("a payment must be positive")]
    NotPositive,
    /// Sending failed; the voucher is stored and may be sent again.
    #[error("cannot send the voucher: {0}")]
    Network(#[from] NetworkError),
}

/// A payment sent: the voucher, its lane and the payee's answer (which may be a refusal).
#[derive(Debug, Clone)]
pub struct Paid {
    /// The voucher sent.
    pub voucher: SignedVoucher,
    /// Its lane.
    pub lane: u64,
    /// The payee's answer.
    pub response: VoucherResponse,
}

/// Parses `ADDRESS=MULTIADDR`, the multiaddr ending in `/p2p/<peer id>`.
pub fn parse_peer(text: &str) -> Result<(Address, Multiaddr), String> {
    let (addr, maddr) =
        text.split_once('=').ok_or_else(|| format!("{text:?}: expected ADDRESS=MULTIADDR"))?;
    let (addr, _) =
        paych_core::types::parse_address(addr.trim()).map_err(|e| format!("{addr:?}: {e}"))?;
    let maddr: Multiaddr = maddr.trim().parse().map_err(|e| format!("{maddr:?}: {e}"))?;
    peer_of(&maddr).ok_or_else(|| format!("{maddr}: must end in /p2p/<peer id>"))?;
    Ok((addr, maddr))
}

/// The peer id at the end of `addr`.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// Pays through channels the manager holds, to payees in its peer book.
pub struct Payer {
    manager: PaymentChannelManager,
    net: NetworkClient,
    peers: BTreeMap<Address, Multiaddr>,
    /// (channel, flow) → lane; also serializes creating vouchers, so that two payments on
    /// one flow never read the same lane amount.
    flows: Mutex<HashMap<(Address, Vec<u8>), u64>>,
}

impl Payer {
    /// A payer over `manager` and `net`, reaching payee `a` at `peers[a]` (each ending in
    /// `/p2p/<peer id>`).
    pub fn new(
        manager: PaymentChannelManager,
        net: NetworkClient,
        peers: BTreeMap<Address, Multiaddr>,
    ) -> Self {
        Payer { manager, net, peers, flows: Mutex::new(HashMap::new()) }
    }

    /// The node's network client.
    pub fn network(&self) -> &NetworkClient {
        &self.net
    }

    /// Pays `amount` more on `flow`'s lane of `channel` and sends the voucher to the payee.
    pub async fn pay(
        &self,
        channel: &Address,
        amount: TokenAmount,
        flow: Option<Vec<u8>>,
    ) -> Result<Paid, PayError> {
        if !amount.is_positive() {
            return Err(PayError::NotPositive);
        }
        if let Some(flow) = &flow {
            if flow.len() > MAX_FLOW_BYTES {
                return Err(PayError::FlowTooLong(flow.len()));
            }
        }
        let status = self.manager.status(channel).await?;
        let target = self
            .peers
            .get(&status.to)
            .ok_or_else(|| PayError::UnknownPeer(format_address(&status.to, Network::Testnet)))?;
        let peer = peer_of(target)
            .ok_or_else(|| PayError::UnknownPeer(format_address(&status.to, Network::Testnet)))?;
        let (voucher, lane) = {
            let mut flows = self.flows.lock().await;
            let key = (*channel, flow.clone().unwrap_or_default());
            let lane = match flows.get(&key) {
                Some(lane) => *lane,
                None => {
                    if flows.len() >= MAX_FLOWS {
                        return Err(PayError::TooManyFlows);
                    }
                    let lane = self.manager.lease_lane(channel).await?;
                    flows.insert(key, lane);
                    lane
                }
            };
            let status = self.manager.status(channel).await?;
            let current = status
                .lanes
                .iter()
                .find(|l| l.lane == lane)
                .map(|l| l.amount.clone())
                .unwrap_or_default();
            let created = self.manager.voucher_create(channel, current + amount, lane).await?;
            let voucher = created.voucher.ok_or(PayError::Shortfall(created.shortfall))?;
            (voucher, lane)
        };
        let request = VoucherRequest { voucher: voucher.clone(), flow, announce: None };
        let response = self.net.send_voucher(peer, vec![target.clone()], request).await?;
        Ok(Paid { voucher, lane, response })
    }
}

impl Payer {
    /// The manager payments go through.
    pub fn manager(&self) -> &PaymentChannelManager {
        &self.manager
    }

    /// Ends `flow` on `channel`: its lane goes back to the channel's pool, so that the next
    /// flow continues that lane's cumulative amount instead of opening a new lane.
    pub async fn end_flow(&self, channel: &Address, flow: &[u8]) -> Result<(), PayError> {
        let lane = self.flows.lock().await.remove(&(*channel, flow.to_vec()));
        if let Some(lane) = lane {
            self.manager.return_lane(channel, lane).await?;
        }
        Ok(())
    }

    /// The libp2p peer of `channel`'s payee and where to reach it, from the peer book.
    pub async fn payee_peer(
        &self,
        channel: &Address,
    ) -> Result<(PeerId, Vec<Multiaddr>), PayError> {
        let status = self.manager.status(channel).await?;
        let unknown = || PayError::UnknownPeer(format_address(&status.to, Network::Testnet));
        let target = self.peers.get(&status.to).ok_or_else(unknown)?;
        let peer = peer_of(target).ok_or_else(unknown)?;
        Ok((peer, vec![target.clone()]))
    }
}
