//! The payee's side of reconciliation over the wire — asking the payer: [`ask_payer`]
//! drafts a request from
//! the channel's best vouchers ([`PaymentChannelManager::reconcile_draft`]), finds the
//! payer's libp2p peer from the signed peer record it announced with its first payment
//! ([`find_peer`], knowing only the channel's `from`), signs its own peer record with the
//! channel's `to` key ([`payee_record`]: the payer answers no one else), sends the request
//! on `/paych/reconcile/2.0.0` (dialling the payer if not connected), and checks and stores
//! the combined voucher ([`PaymentChannelManager::reconcile_accept`]).
//!
//! The payer's side — answering a payee — is [`crate::inbound::reconcile_as_payer`].
//! This module never answers requests and never touches the swarm: it asks through the
//! node's [`NetworkClient`].

use libp2p::{Multiaddr, PeerId};
use paych_core::combine::ReconcileStatus;
use paych_core::manager::{CombineError, PaymentChannelManager};
use paych_core::types::{format_address, Address, SignedVoucher, TokenAmount};
use paych_protocol::messages::MAX_PEER_RECORD_MULTIADDRS;
use paych_protocol::{PeerRecordError, ReconcileRequest, ReconcileResponse, SignedPeerRecord};
use tracing::Instrument;

use crate::network::{NetworkClient, NetworkError};

/// Why a reconciliation could not be run (a payer's refusal is not an error: it is in
/// [`Reconciled::response`]).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The manager refused: unknown or outbound channel, nothing to reconcile, a combined
    /// voucher that does not fold the request or that the actor would refuse, storage.
    #[error(transparent)]
    Manager(#[from] CombineError),
    /// No peer record of the payer is held: it announces one with its first payment.
    #[error("no peer record is known for the payer {0}; it sends one with its first payment")]
    UnknownPayer(String),
    /// The held peer record no longer decodes or verifies.
    #[error("the peer record held for {address} is unusable: {reason}")]
    BadPeerRecord {
        /// The payer.
        address: String,
        /// Why.
        reason: String,
    },
    /// Asking the payer failed.
    #[error("cannot ask the payer: {0}")]
    Network(#[from] NetworkError),
    /// The payer answered success without a combined voucher (the codec forbids it).
    #[error("the payer answered success without a combined voucher")]
    MissingCombined,
    /// This node's peer record, which proves to the payer that the payee asks, could not be
    /// signed (the channel's `to` key is not in the wallet, say).
    #[error("cannot sign the payee's peer record: {0}")]
    PeerRecord(#[from] PeerRecordError),
}

/// A reconciliation run: what was asked, and what the payer answered.
#[derive(Debug, Clone)]
pub struct Reconciled {
    /// The request sent.
    pub request: ReconcileRequest,
    /// The payer's answer.
    pub response: ReconcileResponse,
    /// The combined voucher, checked and stored, when the payer agreed.
    pub combined: Option<SignedVoucher>,
}

impl Reconciled {
    /// The payer's status, if its code is one this version knows.
    pub fn status(&self) -> Option<ReconcileStatus> {
        self.response.status()
    }
}

/// Where the holder of Filecoin key `address` listens, from the signed peer record it
/// announced (verified again: a stored record is never trusted blindly).
pub fn find_peer(
    manager: &PaymentChannelManager,
    address: &Address,
) -> Result<(PeerId, Vec<Multiaddr>), ReconcileError> {
    let text = || format_address(address, manager.network());
    let held = manager
        .peer_record(address)
        .map_err(CombineError::from)?
        .ok_or_else(|| ReconcileError::UnknownPayer(text()))?;
    let bad = |reason: String| ReconcileError::BadPeerRecord { address: text(), reason };
    let signed = SignedPeerRecord::from_cbor(&held.envelope).map_err(|e| bad(e.to_string()))?;
    let verified = signed.verify().map_err(|e| bad(e.to_string()))?;
    if &verified.address != address {
        return Err(bad("it names another address".to_owned()));
    }
    Ok((verified.peer_id, verified.multiaddrs))
}

/// This node's signed peer record as the payee `to`: `to`'s key (in the wallet) binds this
/// node's PeerId and announced addresses, with the time in milliseconds as its sequence. It
/// proves to the payer that the request comes from the channel's payee; the libp2p
/// connection proves the PeerId, so a copy sent by anyone else proves nothing.
pub async fn payee_record(
    manager: &PaymentChannelManager,
    net: &NetworkClient,
    to: Address,
) -> Result<SignedPeerRecord, ReconcileError> {
    let mut addrs = net.announce_addrs().await?;
    addrs.truncate(MAX_PEER_RECORD_MULTIADDRS);
    let sequence = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let wallet = manager.wallet().clone();
    Ok(SignedPeerRecord::sign_with(to, &net.local_peer_id(), &addrs, sequence, |bytes| {
        wallet.sign(&to, bytes)
    })?)
}

/// Asks the payer of inbound `channel` to fold the channel's best vouchers into one, priced
/// with `fee_per_message` (the fee one redeeming message costs), and stores the combined
/// voucher once checked.
pub async fn ask_payer(
    manager: &PaymentChannelManager,
    net: &NetworkClient,
    channel: &Address,
    fee_per_message: &TokenAmount,
) -> Result<Reconciled, ReconcileError> {
    let channel_text = format_address(channel, manager.network());
    let span = tracing::info_span!("reconcile_outbound", channel = %channel_text);
    async move {
        let draft = manager.reconcile_draft(channel, fee_per_message).await?;
        let (peer, addrs) = find_peer(manager, &draft.payer)?;
        let payee_record = payee_record(manager, net, draft.payee).await?;
        let request =
            ReconcileRequest { vouchers: draft.vouchers, req_val: draft.req_val, payee_record };
        tracing::debug!(%peer, vouchers = request.vouchers.len(), req_val = %request.req_val.atto(), "asking the payer");
        let response = net.ask(peer, addrs, request.clone()).await?;
        let combined = match (response.status(), &response.combined) {
            (Some(ReconcileStatus::Success), Some(combined)) => {
                manager
                    .reconcile_accept(channel, &request.vouchers, &request.req_val, combined)
                    .await?;
                Some(combined.clone())
            }
            (Some(ReconcileStatus::Success), None) => return Err(ReconcileError::MissingCombined),
            _ => None,
        };
        tracing::info!(status = response.status, "reconciliation answered");
        Ok(Reconciled { request, response, combined })
    }
    .instrument(span)
    .await
}
