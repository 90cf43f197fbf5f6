//! A payer and a payee with a channel between them, and what honest parties do on it.

use paych_core::manager::{ManagerError, PaymentChannelManager, ReconcileDraft};
use paych_core::reconcile::ReconcilePolicy;
use paych_core::types::{Address, SignedVoucher, TokenAmount};

/// One reconciliation as honest parties run it: the payee drafts a request on `channel`
/// (asking `fee_per_message` of the saving), the payer answers it as the request
/// `request_hash` from the payee, and the payee accepts the combined voucher. Answers the
/// draft and the combined voucher, or the draft's refusal (nothing worth folding).
pub async fn fold_lanes(
    payer: &PaymentChannelManager,
    payee: &PaymentChannelManager,
    channel: &Address,
    fee_per_message: &TokenAmount,
    request_hash: &[u8],
) -> Result<(ReconcileDraft, SignedVoucher), ManagerError> {
    let draft = payee.reconcile_draft(channel, fee_per_message).await?;
    let answer = payer
        .reconcile_as_payer(
            Some(&draft.payee),
            request_hash,
            &draft.vouchers,
            &draft.req_val,
            &ReconcilePolicy::default(),
            |v| v.to_cbor(),
        )
        .await
        .unwrap();
    let combined = SignedVoucher::from_cbor(&answer).unwrap();
    payee.reconcile_accept(channel, &draft.vouchers, &draft.req_val, &combined).await.unwrap();
    Ok((draft, combined))
}
