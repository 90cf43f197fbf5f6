//! The methods that go through the node's libp2p network: `Filecoin.Net*`, `PaychPay`
//! (a voucher sent to the channel's payee) and `PaychReconcile` (the payer asked for one
//! combined voucher) and `PaychPayInvoice` (an invoice paid through a hub). Each makes one call to the node's [`Payer`](crate::pay::Payer) or
//! network and writes the answer's shape; an API without a libp2p node answers them with
//! an error.

use paych_core::jsonrpc::RpcError;
use paych_core::lotus_json::amount_text;
use paych_core::lotus_json::api::{PaidJson, ReconciledJson};

use super::context::{handlers, method_error, Api};
use super::methods::*;
use super::params::AddrInfo;

handlers! {
    PaychPay(api, (ch, amount, flow)) => {
        let paid = api.payer()?.pay(&ch, amount, flow.map(String::into_bytes)).await;
        let paid = paid.map_err(method_error)?;
        let response = &paid.response;
        let status = response
            .status()
            .map_or_else(|| format!("Unknown({})", response.status), |s| format!("{s:?}"));
        if !response.is_held() {
            return Err(method_error(format!(
                "the payee refused the voucher on lane {}: {status}: {}",
                paid.lane,
                response.message.as_deref().unwrap_or("")
            )));
        }
        Ok(PaidJson {
            voucher: api.shape(&paid.voucher)?,
            lane: paid.lane,
            status,
            delta: amount_text(&response.delta),
            lane_amount: amount_text(&response.lane_amount),
        })
    };
    PaychReconcile(api, (ch,)) => {
        let done = api.payer()?.reconcile_as_payee(&ch).await.map_err(method_error)?;
        let response = &done.response;
        let outcome = if response.status == 0 { "success" } else { "refused" };
        api.metrics.reconciliation("payee", outcome);
        let status = response
            .status()
            .map_or_else(|| format!("Unknown({})", response.status), |s| format!("{s:?}"));
        let text = done.combined.as_ref().map(|v| v.to_base64url()).transpose();
        Ok(ReconciledJson {
            status,
            status_code: response.status,
            combined: done.combined.as_ref().map(|v| api.shape(v)).transpose()?,
            combined_text: text.map_err(method_error)?,
            req_val: amount_text(&done.request.req_val),
            vouchers: done.request.vouchers.len() as u64,
            message: response.message.clone(),
        })
    };
    PaychPayInvoice(api, (invoice, max_fee)) => {
        let routes = api.routes()?;
        let receipt = routes.pay_invoice(&invoice.0, max_fee).await.map_err(method_error)?;
        Ok(receipt.to_json(api.network))
    };
    NetConnect(api, (info,)) => connect(api, info).await;
    NetPeers(api, ()) => {
        let peers = api.net()?.peer_addrs().await.map_err(method_error)?;
        Ok(peers
            .into_iter()
            .map(|(id, addr)| AddrInfo { id, addrs: vec![addr] }.to_json())
            .collect())
    };
    NetAddrsListen(api, ()) => {
        let net = api.net()?;
        let addrs = net.listen_addrs().await.map_err(method_error)?;
        Ok(AddrInfo { id: net.local_peer_id(), addrs }.to_json())
    };
}

/// Connects to the first of `info`'s addresses that answers.
async fn connect(api: &Api, info: AddrInfo) -> Result<(), RpcError> {
    let net = api.net()?;
    let mut last_error = None;
    for addr in info.addrs {
        match net.connect(with_peer_id(addr, info.id)).await {
            Ok(_) => return Ok(()),
            Err(e) => last_error = Some(e),
        }
    }
    Err(method_error(
        last_error
            .map_or_else(|| format!("no addresses to connect to {}", info.id), |e| e.to_string()),
    ))
}

/// `addr` ending in `/p2p/<id>`.
fn with_peer_id(addr: libp2p::Multiaddr, id: libp2p::PeerId) -> libp2p::Multiaddr {
    match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(_)) => addr,
        _ => addr.with(libp2p::multiaddr::Protocol::P2p(id)),
    }
}
