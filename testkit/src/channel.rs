//! A payer and a payee with a channel between them, and what honest parties do on it.

use paych_core::combine::ReconcilePolicy;
use paych_core::manager::{PaymentChannelManager, ReconcileDraft};
use paych_core::types::{Address, SignedVoucher, TokenAmount};

use crate::devnet::{Net, Node};

/// One reconciliation as honest parties run it: the payee drafts a request on `channel`
/// (asking `fee_per_message` of the saving), the payer answers it as the request
/// `request_hash` from the payee, and the payee accepts the combined voucher. Answers the
/// draft and the combined voucher, or the draft's refusal (nothing worth folding) as
/// text.
pub async fn fold_lanes(
    payer: &PaymentChannelManager,
    payee: &PaymentChannelManager,
    channel: &Address,
    fee_per_message: &TokenAmount,
    request_hash: &[u8],
) -> Result<(ReconcileDraft, SignedVoucher), String> {
    let draft = payee.reconcile_draft(channel, fee_per_message).await.map_err(|e| e.to_string())?;
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

impl Node {
    /// The voucher this node's manager creates for `amount` on `lane` of the outbound
    /// channel `ch`; the channel must cover it.
    pub async fn create_voucher(
        &self,
        ch: &Address,
        amount: TokenAmount,
        lane: u64,
    ) -> SignedVoucher {
        self.m().voucher_create(ch, amount, lane).await.unwrap().voucher.unwrap()
    }
}

impl Net {
    /// A payer whose key holds `payer_fil` FIL and a payee whose key holds `payee_fil` FIL,
    /// started in that order.
    pub async fn pair(&self, payer_fil: u64, payee_fil: u64) -> (Node, Node) {
        let payer = self.node(payer_fil).await;
        let payee = self.node(payee_fil).await;
        (payer, payee)
    }

    /// A payer and a payee as [`Net::pair`] makes them, and a channel from the payer to the
    /// payee holding `balance`, open (its robust address).
    pub async fn channel(
        &self,
        payer_fil: u64,
        payee_fil: u64,
        balance: TokenAmount,
    ) -> (Node, Node, Address) {
        let (payer, payee) = self.pair(payer_fil, payee_fil).await;
        let ch = payer.open_channel(payee.addr, balance).await;
        (payer, payee, ch)
    }
}
