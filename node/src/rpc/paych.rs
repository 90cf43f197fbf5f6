//! The `Filecoin.Paych*` methods the manager answers: channels, funds, lanes and vouchers.
//! Each reads its parameters, makes one call to the [`PaymentChannelManager`] and writes the
//! answer in its Lotus JSON shape; it decides nothing itself.
//!
//! [`PaymentChannelManager`]: paych_core::manager::PaymentChannelManager

use paych_core::jsonrpc::RpcError;
use paych_core::lotus_json::amount_text;
use paych_core::lotus_json::api::{
    self as shapes, ChannelAvailableFunds, ChannelInfo, ChannelStatusJson, PaymentInfo,
    VoucherCreateResult,
};
use paych_core::manager::AddOutcome;
use paych_core::types::{Address, TokenAmount};

use super::context::{handlers, internal_error, manager_error, method_error, Api};
use super::methods::*;
use super::params::GetOptions;

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
        let (channel, vouchers) =
            api.manager.new_payment(from, to, specs.0).await.map_err(manager_error)?;
        Ok(PaymentInfo {
            channel: api.address_text(&channel),
            wait_sentinel: None,
            vouchers: shapes::vouchers(&vouchers, api.network).map_err(internal_error)?,
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
        api.manager.voucher_check_valid(&ch, &voucher).await.map_err(manager_error)
    };
    PaychVoucherCheckSpendable(api, (ch, voucher, secret, _proof)) => api
        .manager
        .voucher_check_spendable(&ch, &voucher, &secret.0)
        .await
        .map_err(manager_error);
    PaychVoucherAdd(api, (ch, voucher, _proof, min_delta)) => {
        let delta = match api.manager.voucher_add(&ch, &voucher, min_delta).await {
            Ok(AddOutcome::Accepted { delta }) => delta,
            Ok(AddOutcome::Covered { .. } | AddOutcome::AlreadyHeld) => TokenAmount::default(),
            Err(e) => return Err(manager_error(e)),
        };
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
    PaychVoucherSubmit(api, (ch, voucher, secret, _proof)) => {
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
