//! Paying over the wire: [`Payer::pay`] creates a voucher on the lane of a payment flow and
//! sends it to the channel's payee through the node's [`NetworkClient`].
//!
//! A flow (an opaque reference of at most [`MAX_FLOW_BYTES`] bytes, or none) gets a lane
//! leased from the channel's pool on its first payment ([`PaymentChannelManager::lease_lane`])
//! and keeps it while the daemon runs; each payment adds its amount to the lane's current
//! cumulative amount ([`PaymentChannelManager::voucher_pay`], under the channel's lock, so
//! payments on one flow may overlap). The flow-to-lane map lives in memory, bounded by [`MAX_FLOWS`]; a
//! flow whose lane a reconciliation closed leases a new one. The payee's libp2p address
//! comes from the peer book (`--peer` or `peer.<address>` in the repo's config).
//!
//! The first payment on a channel to a peer carries an announce: the channel, its parties
//! and a peer record — this node's PeerId and listen addresses, signed by the channel's
//! `from` key — so that the payee can reach this node later (to reconcile) knowing only
//! `from`. [`Payer::reconcile_as_payee`] is the payee's side of reconciliation (asking the
//! payer) through the same network client.
//!
//! This module only sends: answering the vouchers peers send is
//! [`crate::inbound::vouchers`], and it never touches the swarm but through the client.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use paych_core::manager::{CreateVoucherError, LaneError, PaymentChannelManager};
use paych_core::store::ChannelRecord;
use paych_core::types::{format_address, Address, SignedVoucher, TokenAmount};
use paych_protocol::messages::MAX_FLOW_BYTES;
use paych_protocol::messages::MAX_PEER_RECORD_MULTIADDRS;
use paych_protocol::{
    Announce, PeerRecordError, SignedPeerRecord, VoucherRequest, VoucherResponse,
};
use tokio::sync::Mutex;
use tracing::Instrument;

use crate::network::{NetworkClient, NetworkError};
use crate::reconcile_as_payee::{self, ReconcileError, Reconciled};

/// Flows with a lane at once, at most.
pub const MAX_FLOWS: usize = 4096;

/// Why a payment failed.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// The manager refused (unknown channel, insufficient funds, …).
    #[error(transparent)]
    Manager(#[from] CreateVoucherError),
    /// The manager could not lease or return the flow's lane.
    #[error(transparent)]
    Lane(#[from] LaneError),
    /// The channel cannot cover the voucher.
    #[error("the channel lacks {} attoFIL to cover the voucher", .0.atto())]
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
    /// The peer record announcing this node could not be signed.
    #[error("cannot sign the peer record: {0}")]
    PeerRecord(#[from] PeerRecordError),
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
    /// (channel, flow) → lane, held only to find or lease a flow's lane.
    flows: Mutex<HashMap<(Address, Vec<u8>), u64>>,
    /// (channel, payee peer) pairs this node has announced itself to, at most
    /// [`MAX_FLOWS`] (beyond, announces are simply sent again).
    announced: Mutex<HashSet<(Address, PeerId)>>,
    /// The sequence number of the last peer record signed.
    sequence: AtomicU64,
    /// The fee of one redeeming message, which reconciliation saves and shares.
    fee_per_message: TokenAmount,
}

impl Payer {
    /// A payer over `manager` and `net`, reaching payee `a` at `peers[a]` (each ending in
    /// `/p2p/<peer id>`).
    pub fn new(
        manager: PaymentChannelManager,
        net: NetworkClient,
        peers: BTreeMap<Address, Multiaddr>,
    ) -> Self {
        Payer {
            manager,
            net,
            peers,
            flows: Mutex::new(HashMap::new()),
            announced: Mutex::new(HashSet::new()),
            sequence: AtomicU64::new(0),
            fee_per_message: TokenAmount::default(),
        }
    }

    /// The same payer, pricing reconcile requests with `fee` per redeeming message.
    pub fn with_fee_per_message(mut self, fee: TokenAmount) -> Self {
        self.fee_per_message = fee;
        self
    }

    /// The payee's side of reconciliation on inbound `channel`: asks its payer (see
    /// [`reconcile_as_payee::ask_payer`]).
    pub async fn reconcile_as_payee(
        &self,
        channel: &Address,
    ) -> Result<Reconciled, ReconcileError> {
        reconcile_as_payee::ask_payer(&self.manager, &self.net, channel, &self.fee_per_message)
            .await
    }

    /// A sequence number above every one this payer signed before, in this process or an
    /// earlier one (milliseconds since the epoch, raised past the last one used).
    fn next_sequence(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let mut last = self.sequence.load(Ordering::Relaxed);
        loop {
            let next = now.max(last.saturating_add(1));
            match self.sequence.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// This node's announce for `channel`: a peer record binding `from` to this node's
    /// PeerId and announced addresses ([`NetworkClient::announce_addrs`]), signed by `from`'s
    /// key in the wallet.
    pub async fn announce(
        &self,
        channel: Address,
        from: Address,
        to: Address,
    ) -> Result<Announce, PayError> {
        let mut addrs = self.net.announce_addrs().await?;
        addrs.truncate(MAX_PEER_RECORD_MULTIADDRS);
        let wallet = self.manager.wallet().clone();
        let peer_record = SignedPeerRecord::sign_with(
            from,
            &self.net.local_peer_id(),
            &addrs,
            self.next_sequence(),
            |bytes| wallet.sign(&from, bytes),
        )?;
        Ok(Announce { channel, from, to, peer_record })
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
        let record = self.outbound(channel)?;
        let (peer, target) = self.payee_of(&record)?;
        let key = (*channel, flow.clone().unwrap_or_default());
        // The lane's amount is raised by `amount` inside the manager, under the channel's
        // lock: payments on one flow may run concurrently, each adding its own amount.
        let mut lane = self.flow_lane(&key, &record.closed_lanes).await?;
        let created = match self.manager.voucher_pay(channel, lane, amount.clone()).await {
            // A reconciliation closed the lane since it was looked at: lease another, once.
            Err(CreateVoucherError::LaneClosed(closed)) => {
                lane = self.flow_lane(&key, &[closed]).await?;
                self.manager.voucher_pay(channel, lane, amount).await?
            }
            other => other?,
        };
        let voucher = created.voucher.ok_or(PayError::Shortfall(created.shortfall))?;
        let first = !self.announced.lock().await.contains(&(*channel, peer));
        let announce = match first {
            true => Some(Box::new(self.announce(*channel, record.from, record.to).await?)),
            false => None,
        };
        let request = VoucherRequest { voucher: voucher.clone(), flow, announce };
        let span = tracing::debug_span!("voucher_outbound", %peer, lane, nonce = voucher.nonce, announce = first);
        let response = self.net.ask(peer, vec![target], request).instrument(span).await?;
        if first && response.is_held() {
            let mut announced = self.announced.lock().await;
            if announced.len() < MAX_FLOWS {
                announced.insert((*channel, peer));
            }
        }
        Ok(Paid { voucher, lane, response })
    }
}

impl Payer {
    /// The manager payments go through.
    pub fn manager(&self) -> &PaymentChannelManager {
        &self.manager
    }

    /// The stored record of outbound `channel` (no chain read).
    fn outbound(&self, channel: &Address) -> Result<ChannelRecord, PayError> {
        self.manager
            .store()
            .channel_by_address(channel)
            .map_err(CreateVoucherError::from)?
            .ok_or_else(|| {
                CreateVoucherError::UnknownChannel(format_address(channel, self.manager.network()))
                    .into()
            })
    }

    /// The lane of flow `key`, leased from the channel's pool on its first payment or when
    /// its lane is among `closed` (closed lanes take no more vouchers).
    async fn flow_lane(&self, key: &(Address, Vec<u8>), closed: &[u64]) -> Result<u64, PayError> {
        let mut flows = self.flows.lock().await;
        let held = flows.get(key).copied();
        if let Some(lane) = held.filter(|lane| !closed.contains(lane)) {
            return Ok(lane);
        }
        if held.is_none() && flows.len() >= MAX_FLOWS {
            return Err(PayError::TooManyFlows);
        }
        let lane = self.manager.lease_lane(&key.0).await?;
        flows.insert(key.clone(), lane);
        Ok(lane)
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
        let (peer, target) = self.payee_of(&self.outbound(channel)?)?;
        Ok((peer, vec![target]))
    }

    /// The libp2p peer of the payee of the channel `record` and where to reach it, from the
    /// peer book.
    fn payee_of(&self, record: &ChannelRecord) -> Result<(PeerId, Multiaddr), PayError> {
        let unknown = || PayError::UnknownPeer(format_address(&record.to, self.manager.network()));
        let target = self.peers.get(&record.to).ok_or_else(unknown)?;
        let peer = peer_of(target).ok_or_else(unknown)?;
        Ok((peer, target.clone()))
    }
}
