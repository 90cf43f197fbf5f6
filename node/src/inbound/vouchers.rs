//! The payee's answer to an inbound voucher: the announce it may carry is checked against
//! the channel's payer ([`check_announce`]), the voucher is added through the manager (which
//! stores it durably before the answer leaves), the announced peer record is kept once the
//! voucher is held, and the manager's outcome becomes the wire status
//! ([`voucher_response`], [`rejection_status`]). A voucher naming a retrieval flow credits
//! that flow before its answer leaves (see [`super::retrieval`]).
//!
//! A voucher request may carry an announce: the payer's signed peer record. It is checked
//! against the channel's payer (`from`) before the voucher is added, refused as
//! `InvalidSignature` when it is not signed by that key, and kept (the highest sequence
//! number per address) once the voucher is held — so the payee can reach the payer later
//! knowing only the channel's `from`.
//!
//! Never touches the swarm: the answer goes back through the network's
//! [`crate::network::Responder`].

use libp2p::PeerId;
use paych_core::actor::ActorError;
use paych_core::chain::ChainError;
use paych_core::manager::{AddOutcome, AddVoucherError, PaymentChannelManager};
use paych_core::redemption::{PolicyRefusal, Unredeemable};
use paych_core::store::PeerRecord as StoredPeerRecord;
use paych_core::types::{format_address, TokenAmount};
use paych_protocol::{Announce, VoucherRequest, VoucherResponse, VoucherStatus};

use super::Context;
use crate::metrics::status_label;
use crate::network::InboundId;
use crate::refusals::Refusal;

/// The span a voucher request from `peer` is answered in.
pub(super) fn span(peer: PeerId, request: &VoucherRequest) -> tracing::Span {
    tracing::debug_span!(
        "voucher_inbound",
        %peer,
        lane = request.voucher.lane,
        nonce = request.voucher.nonce,
        announce = request.announce.is_some()
    )
}

/// Answers voucher request `id` from `peer` (the node runs it on a task of its own, so that
/// validating and storing a voucher never holds up other requests); counts the answer and
/// any refusal, and credits the retrieval flow the voucher names before the answer leaves.
pub(super) async fn answer(context: Context, id: InboundId, peer: PeerId, request: VoucherRequest) {
    let (channel, flow) = (request.voucher.channel_addr, request.flow.clone());
    let (manager, metrics) = (&context.manager, &context.config.metrics);
    let min_delta = context.config.min_delta.clone();
    let response = answer_voucher(manager, peer, request, min_delta).await;
    let status = response.status().map_or("unknown", status_label);
    metrics.voucher_received(status, &response.delta);
    if !response.is_held() {
        let message = response.message.as_deref().unwrap_or("");
        metrics.refused(
            Refusal::VoucherRefused,
            format_args!("voucher from {peer}: {status}: {message}"),
        );
    }
    if let Some(flow) = &flow {
        // Credited before the answer leaves, so the payer's next chunk request finds the
        // payment; only an accepted delta from the channel's payer.
        let credit = context.crediting.credit(manager, peer, channel, flow, &response).await;
        tracing::debug!(?credit, "retrieval credit");
    }
    context.responder.voucher(id, response).await;
}

/// Handles one inbound voucher request: checks its announce (if any) against the channel's
/// payer, adds the voucher, and keeps the announced peer record once the voucher is held.
async fn answer_voucher(
    manager: &PaymentChannelManager,
    peer: PeerId,
    request: VoucherRequest,
    min_delta: TokenAmount,
) -> VoucherResponse {
    let voucher = request.voucher;
    let announced = match request.announce {
        Some(announce) => {
            match check_announce(manager, peer, &voucher.channel_addr, &announce).await {
                Ok(record) => Some(record),
                Err(refusal) => {
                    tracing::debug!(message = ?refusal.message, "announce refused");
                    return refusal;
                }
            }
        }
        None => None,
    };
    let result = manager.voucher_add(&voucher.channel_addr, &voucher, min_delta).await;
    if let Err(error) = &result {
        tracing::debug!(%error, "voucher refused");
    }
    let response = voucher_response(result, &voucher.amount);
    if let (Some(record), true) = (announced, response.is_held()) {
        let address = format_address(&record.address, manager.network());
        match manager.record_peer(record).await {
            Ok(stored) => tracing::debug!(%address, stored, "peer record announced"),
            Err(error) => tracing::warn!(%address, %error, "cannot keep the peer record"),
        }
    }
    response
}

/// The announced peer record, verified: signed by the key of `from`, which is the payer of
/// the voucher's channel (and `to` its payee), naming the peer the request came from. A
/// refusal otherwise.
pub async fn check_announce(
    manager: &PaymentChannelManager,
    peer: PeerId,
    voucher_channel: &paych_core::types::Address,
    announce: &Announce,
) -> Result<StoredPeerRecord, VoucherResponse> {
    let refuse = |status: VoucherStatus, message: String| {
        VoucherResponse::rejected(status, TokenAmount::default(), message)
    };
    if &announce.channel != voucher_channel {
        return Err(refuse(
            VoucherStatus::Malformed,
            "the announce names another channel than the voucher".to_owned(),
        ));
    }
    let verified = match announce.peer_record.verify() {
        Ok(verified) => verified,
        Err(e) => return Err(refuse(VoucherStatus::InvalidSignature, e.to_string())),
    };
    if verified.address != announce.from {
        return Err(refuse(
            VoucherStatus::InvalidSignature,
            "the peer record is not signed by the announced payer".to_owned(),
        ));
    }
    if verified.peer_id != peer {
        return Err(refuse(
            VoucherStatus::Malformed,
            "the peer record names another peer than the sender".to_owned(),
        ));
    }
    match manager.channel_parties(voucher_channel).await {
        Ok((from, to)) if from == announce.from && to == announce.to => {}
        Ok(_) => {
            return Err(refuse(
                VoucherStatus::InvalidSignature,
                "the announce does not name the channel's parties: the peer record is not \
                 signed by the channel's payer"
                    .to_owned(),
            ))
        }
        Err(e) => return Err(voucher_response(Err(e.into()), &TokenAmount::default())),
    }
    let envelope = announce
        .peer_record
        .to_cbor()
        .map_err(|e| refuse(VoucherStatus::Malformed, e.to_string()))?;
    Ok(StoredPeerRecord { address: verified.address, sequence: verified.sequence, envelope })
}

/// The key address `peer` proves it holds with `record`: the record's signature verifies
/// and it names `peer`, the PeerId the authenticated connection comes from. A record that
/// does not verify, or that names another peer (a replay of someone else's record), proves
/// nothing.
/// The answer to a voucher the manager added (or refused). `voucher_amount` is the lane's
/// amount after an accepted voucher. Refusals carry a zero `lane_amount`: the payee does not
/// look the lane up again to answer a refusal.
pub fn voucher_response(
    result: Result<AddOutcome, AddVoucherError>,
    voucher_amount: &TokenAmount,
) -> VoucherResponse {
    match result {
        Ok(AddOutcome::Accepted { delta }) => {
            VoucherResponse::accepted(delta, voucher_amount.clone())
        }
        Ok(AddOutcome::Covered { lane_amount }) => VoucherResponse::covered(lane_amount),
        Ok(AddOutcome::AlreadyHeld) => VoucherResponse::already_held(voucher_amount.clone()),
        Err(error) => {
            let status = rejection_status(&error);
            if status == VoucherStatus::Internal {
                tracing::warn!(%error, "voucher refused on an internal error");
            }
            VoucherResponse::rejected(status, TokenAmount::default(), error.to_string())
        }
    }
}

/// The wire status of a manager error.
pub fn rejection_status(error: &AddVoucherError) -> VoucherStatus {
    use AddVoucherError as E;
    use VoucherStatus as S;
    match error {
        E::UnknownChannel(_) | E::ChannelCollected(_) | E::WrongDirection { .. } => {
            S::UnknownChannel
        }
        E::Chain(ChainError::NotFound(_)) => S::UnknownChannel,
        E::InvalidVoucher(e) => actor_status(e),
        E::VoucherRefused(refusal) => policy_status(refusal),
        E::Unredeemable(why) => unredeemable_status(why),
        E::AmountBelowLane { .. } | E::ConflictingVoucher { .. } => S::StaleNonce,
        E::BelowMinDelta { .. } => S::BelowMinimum,
        E::InvalidAmount(_) | E::ForeignVoucher(_) => S::Malformed,
        E::Chain(_) | E::Store(_) | E::Encode(_) => S::Internal,
        // A lane with a pending conditional voucher (design §9) takes only its exact
        // replacement: anything else on it is refused as hash-locked.
        E::Route(_) => S::HashLocked,
    }
}

/// The wire status of an intake policy refusal.
pub fn policy_status(refusal: &PolicyRefusal) -> VoucherStatus {
    use VoucherStatus as S;
    match refusal {
        PolicyRefusal::TimeLocked { .. } => S::TimeLock,
        PolicyRefusal::HashLocked => S::HashLocked,
        PolicyRefusal::MessageLocked(_) => S::MessageLocked,
        PolicyRefusal::Merges => S::Merges,
        PolicyRefusal::SettleHeightTooFar { .. } => S::SettleHeight,
    }
}

/// The wire status of a voucher the chain would not pay for.
pub fn unredeemable_status(why: &Unredeemable) -> VoucherStatus {
    use VoucherStatus as S;
    match why {
        Unredeemable::Settling { .. } => S::Settling,
        Unredeemable::OtherChannel(_) => S::Malformed,
        Unredeemable::TimeLockMin { .. } | Unredeemable::TimeLockMax { .. } => S::TimeLock,
        Unredeemable::Extra => S::MessageLocked,
        Unredeemable::SecretUnknown => S::HashLocked,
        Unredeemable::Actor(e) => actor_status(e),
    }
}

/// The wire status of an actor rule a voucher breaks.
pub fn actor_status(error: &ActorError) -> VoucherStatus {
    use ActorError as A;
    use VoucherStatus as S;
    match error {
        A::MissingSignature | A::InvalidSignature(_) => S::InvalidSignature,
        A::StaleNonce { .. } | A::MergeStaleNonce { .. } => S::StaleNonce,
        A::InsufficientFunds { .. } => S::InsufficientFunds,
        A::TimeLockMinNotReached { .. } | A::TimeLockMaxPassed { .. } => S::TimeLock,
        A::UpdateAfterSettled { .. }
        | A::AlreadySettling
        | A::NotSettled { .. }
        | A::CollectUnpayable { .. } => S::Settling,
        A::UnresolvableChannel(_) | A::WrongChannel { .. } => S::UnknownChannel,
        A::SecretTooLong(_)
        | A::Serialization(_)
        | A::NegativeAmount(_)
        | A::IncorrectSecret
        | A::ExtraCallFailed(_)
        | A::LaneTooLarge(_)
        | A::MergeIntoOwnLane(_)
        | A::MergeLaneMissing(_)
        | A::NegativeToSend
        | A::ConstructorCallerNotInit(_)
        | A::PartyNotFound(_)
        | A::CallerNotParty { .. } => S::Malformed,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use paych_core::store::StoreError;
    use paych_core::types::Address;

    /// An internal failure of intake: the store failed.
    fn store_failure() -> AddVoucherError {
        AddVoucherError::Store(StoreError::Backend("disk unavailable".into()))
    }

    #[test]
    fn manager_errors_map_to_wire_statuses() {
        use VoucherStatus as S;
        let invalid = |e: ActorError| rejection_status(&AddVoucherError::InvalidVoucher(e));
        assert_eq!(invalid(ActorError::MissingSignature), S::InvalidSignature);
        assert_eq!(invalid(ActorError::InvalidSignature("x".into())), S::InvalidSignature);
        assert_eq!(
            invalid(ActorError::StaleNonce { lane: 0, existing: 2, voucher: 1 }),
            S::StaleNonce
        );
        assert_eq!(
            invalid(ActorError::InsufficientFunds { to_send: atto(2), balance: atto(1) }),
            S::InsufficientFunds
        );
        assert_eq!(
            invalid(ActorError::TimeLockMinNotReached { epoch: 1, time_lock_min: 2 }),
            S::TimeLock
        );
        assert_eq!(
            invalid(ActorError::TimeLockMaxPassed { epoch: 3, time_lock_max: 2 }),
            S::TimeLock
        );
        assert_eq!(
            invalid(ActorError::UpdateAfterSettled { settling_at: 1, epoch: 2 }),
            S::Settling
        );
        assert_eq!(invalid(ActorError::MergeIntoOwnLane(1)), S::Malformed);
        assert_eq!(invalid(ActorError::UnresolvableChannel(Address::new_id(1))), S::UnknownChannel);
        assert_eq!(
            rejection_status(&AddVoucherError::UnknownChannel("t2x".into())),
            S::UnknownChannel
        );
        assert_eq!(
            rejection_status(&AddVoucherError::BelowMinDelta {
                delta: atto(1),
                min_delta: atto(2)
            }),
            S::BelowMinimum
        );
        assert_eq!(
            rejection_status(&AddVoucherError::ConflictingVoucher { lane: 0, nonce: 1 }),
            S::StaleNonce
        );
        assert_eq!(rejection_status(&store_failure()), S::Internal);
    }

    #[test]
    fn answers_carry_the_outcome() {
        let accepted = voucher_response(Ok(AddOutcome::Accepted { delta: atto(5) }), &atto(15));
        assert_eq!(accepted, VoucherResponse::accepted(atto(5), atto(15)));
        let covered =
            voucher_response(Ok(AddOutcome::Covered { lane_amount: atto(15) }), &atto(10));
        assert_eq!(covered, VoucherResponse::covered(atto(15)));
        let refused = voucher_response(Err(store_failure()), &atto(10));
        assert_eq!(refused.status(), Some(VoucherStatus::Internal));
        assert!(refused.delta.is_zero() && refused.message.is_some());
    }

    fn atto(n: u64) -> TokenAmount {
        TokenAmount::from_atto(n)
    }
}
