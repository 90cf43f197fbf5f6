//! The `Filecoin.Paych*` methods the manager answers: channels, funds, lanes, vouchers, and
//! the payee's invoices.
//! Each reads its parameters, makes one call to the [`PaymentChannelManager`] and writes the
//! answer in its Lotus JSON shape; it decides nothing itself.
//!
//! [`PaymentChannelManager`]: paych_core::manager::PaymentChannelManager

use paych_core::actor::ActorError;
use paych_core::invoice::{issue, payee_margin, unix_now, InvoiceTerms, MAX_EXPIRY_SECS};
use paych_core::jsonrpc::RpcError;
use paych_core::lotus_json::amount_text;
use paych_core::lotus_json::api::{
    self as shapes, ChannelAvailableFunds, ChannelInfo, ChannelStatusJson, InvoiceJson,
    PaymentInfo, VoucherCreateResult,
};
use paych_core::manager::AddVoucherError;
use paych_core::redemption::PolicyRefusal;
use paych_core::types::{Address, TokenAmount};

use super::context::{handlers, internal_error, manager_error, method_error, Api};
use super::methods::*;
use super::params::{Bytes, GetOptions};

/// Lotus's refusal of proof bytes (`paychmgr/manager.go`, `errProofNotSupported`).
pub const PROOF_NOT_SUPPORTED: &str = "payment channel proof parameter is not supported";

/// Lotus's refusal of a voucher whose nonce is not above its lane's (`paychmgr/paych.go`,
/// `checkVoucherValidUnlocked`).
pub const NONCE_TOO_LOW: &str = "nonce too low";

/// Lotus's refusal of a voucher whose amount is below its lane's (`paychmgr/paych.go`,
/// `checkVoucherValidUnlocked`).
pub const AMOUNT_TOO_LOW: &str = "voucher amount is lower than amount for voucher with lower nonce";

handlers! {
    PaychGet(api, (from, to, amount, options)) => {
        if options.is_some_and(|o: GetOptions| o.off_chain) {
            check_off_chain(api, &from, &to, &amount).await?;
        }
        let handle = api.manager.get(from, to, amount).await.map_err(manager_error)?;
        Ok(ChannelInfo::new(&handle, api.network))
    };
    PaychFund(api, (from, to, amount)) => {
        let handle = api.manager.fund(from, to, amount).await.map_err(manager_error)?;
        Ok(ChannelInfo::new(&handle, api.network))
    };
    PaychCreate(api, (from, to, amount)) => {
        let handle = api
            .manager
            .create(from, to, amount, TokenAmount::default())
            .await
            .map_err(manager_error)?;
        Ok(ChannelInfo::new(&handle, api.network))
    };
    PaychAddFunds(api, (ch, amount)) => {
        api.shape(&api.manager.add_funds(&ch, amount).await.map_err(manager_error)?)
    };
    PaychReserveFunds(api, (ch, amount)) => {
        let cid = api.manager.reserve_funds(&ch, amount).await.map_err(manager_error)?;
        cid.map(|cid| api.shape(&cid)).transpose()
    };
    PaychReleaseFunds(api, (ch, amount)) => {
        api.manager.release_funds(&ch, amount).await.map_err(manager_error)
    };
    PaychGetWaitReady(api, (sentinel,)) => {
        let channel = api.manager.get_wait_ready(&sentinel).await.map_err(manager_error)?;
        Ok(api.address_text(&channel))
    };
    PaychAvailableFunds(api, (ch,)) => {
        let funds = api.manager.available_funds(&ch).await.map_err(manager_error)?;
        Ok(ChannelAvailableFunds::new(&funds, api.network))
    };
    PaychAvailableFundsByFromTo(api, (from, to)) => {
        let funds =
            api.manager.available_funds_by_from_to(&from, &to).await.map_err(manager_error)?;
        Ok(ChannelAvailableFunds::new(&funds, api.network))
    };
    PaychStatus(api, (ch,)) => {
        let status = api.manager.status(&ch).await.map_err(manager_error)?;
        Ok(ChannelStatusJson::new(&status, api.network))
    };
    PaychList(api, ()) => {
        let channels = api.manager.list().map_err(manager_error)?;
        Ok(channels.iter().map(|c| api.address_text(c)).collect())
    };
    PaychLookup(api, (from, to)) => {
        let handle = api.manager.lookup(&from, &to).map_err(manager_error)?;
        Ok(handle.map(|h| ChannelInfo::new(&h, api.network)))
    };
    PaychAllocateLane(api, (ch,)) => api.manager.allocate_lane(&ch).await.map_err(manager_error);
    PaychSettle(api, (ch,)) => api.shape(&api.manager.settle(&ch).await.map_err(manager_error)?);
    PaychCollect(api, (ch,)) => api.shape(&api.manager.collect(&ch).await.map_err(manager_error)?);
    PaychNewPayment(api, (from, to, specs)) => {
        let payment = api.manager.new_payment(from, to, specs.0).await.map_err(manager_error)?;
        Ok(PaymentInfo {
            channel: api.address_text(&payment.channel),
            wait_sentinel: payment.wait_sentinel.map(|cid| api.shape(&cid)).transpose()?,
            vouchers: shapes::vouchers(&payment.vouchers, api.network).map_err(internal_error)?,
        })
    };
    PaychVoucherCreate(api, (ch, amount, lane)) => {
        let created = api.manager.voucher_create(&ch, amount, lane).await.map_err(manager_error)?;
        Ok(VoucherCreateResult {
            voucher: created.voucher.map(|v| api.shape(&v)).transpose()?,
            shortfall: amount_text(&created.shortfall),
        })
    };
    PaychVoucherCheckValid(api, (ch, voucher)) => {
        api.manager.voucher_check_valid(&ch, &voucher).await.map_err(voucher_error)
    };
    PaychVoucherCheckSpendable(api, (ch, voucher, secret, proof)) => {
        refuse_proof(&proof)?;
        api.manager.voucher_check_spendable(&ch, &voucher, &secret.0).await.map_err(manager_error)
    };
    PaychVoucherAdd(api, (ch, voucher, proof, min_delta)) => {
        refuse_proof(&proof)?;
        let delta =
            api.manager.voucher_add_lotus(&ch, &voucher, min_delta).await.map_err(voucher_error)?;
        Ok(amount_text(&delta))
    };
    PaychVoucherList(api, (ch,)) => {
        let vouchers = api.manager.voucher_list(&ch).map_err(manager_error)?;
        shapes::vouchers(&vouchers, api.network).map_err(internal_error)
    };
    PaychVoucherBestSpendable(api, (ch,)) => {
        let vouchers = api.manager.voucher_best_spendable(&ch).await.map_err(manager_error)?;
        shapes::vouchers(&vouchers, api.network).map_err(internal_error)
    };
    PaychInvoice(api, (payee, amount, expiry_secs, hubs)) => {
        if !(1..=MAX_EXPIRY_SECS).contains(&expiry_secs) {
            return Err(method_error(format!(
                "the expiry must be 1 to {MAX_EXPIRY_SECS} seconds away"
            )));
        }
        let terms = InvoiceTerms {
            payee,
            amount,
            expiry: unix_now().saturating_add(expiry_secs),
            payee_margin: payee_margin(api.preset.confidence),
            hubs: hubs.0,
        };
        let invoice = issue(api.manager.store().as_ref(), api.wallet.as_ref(), terms)
            .await
            .map_err(method_error)?;
        InvoiceJson::new(&invoice, api.network).map_err(internal_error)
    };
    PaychVoucherSubmit(api, (ch, voucher, secret, proof)) => {
        refuse_proof(&proof)?;
        let cid =
            api.manager.voucher_submit(&ch, &voucher, &secret.0).await.map_err(manager_error)?;
        api.shape(&cid)
    };
}

/// `OffChain`: the channel must exist and cover `amount` without a message.
async fn check_off_chain(
    api: &Api,
    from: &Address,
    to: &Address,
    amount: &TokenAmount,
) -> Result<(), RpcError> {
    let funds = api.manager.available_funds_by_from_to(from, to).await.map_err(manager_error)?;
    if funds.channel.is_none() || &funds.non_reserved < amount {
        return Err(method_error(format!(
            "OffChain: the channel from {} to {} cannot cover {} attoFIL without a message",
            api.address_text(from),
            api.address_text(to),
            amount_text(amount)
        )));
    }
    Ok(())
}

/// Refuses proof bytes as Lotus does: a voucher check, add or submit never drops them.
fn refuse_proof(proof: &Bytes) -> Result<(), RpcError> {
    if proof.0.is_empty() {
        Ok(())
    } else {
        Err(method_error(PROOF_NOT_SUPPORTED))
    }
}

/// A voucher refusal of check-valid or add, in Lotus's words where Lotus has them.
fn voucher_error(e: AddVoucherError) -> RpcError {
    match e {
        AddVoucherError::InvalidVoucher(ActorError::StaleNonce { .. })
        | AddVoucherError::ConflictingVoucher { .. } => method_error(NONCE_TOO_LOW),
        AddVoucherError::AmountBelowLane { .. } => method_error(AMOUNT_TOO_LOW),
        AddVoucherError::VoucherRefused(refusal) => method_error(lotus_refusal(&refusal)),
        other => manager_error(other),
    }
}

/// An intake policy refusal in Lotus's words (`paychmgr/paych.go`,
/// `checkVoucherValidUnlocked`) where Lotus refuses the same voucher; ours otherwise.
fn lotus_refusal(refusal: &PolicyRefusal) -> String {
    match refusal {
        PolicyRefusal::MessageLocked(_) => "voucher is Message Locked".to_owned(),
        PolicyRefusal::TimeLocked { time_lock_max, .. } if *time_lock_max != 0 => {
            "voucher is Max Time Locked".to_owned()
        }
        PolicyRefusal::TimeLocked { .. } => "voucher is Min Time Locked".to_owned(),
        PolicyRefusal::HashLocked => "voucher is Hash Locked".to_owned(),
        PolicyRefusal::Merges => "don't currently support paych lane merges".to_owned(),
        PolicyRefusal::SettleHeightTooFar { .. } => refusal.to_string(),
    }
}
