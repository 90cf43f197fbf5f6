//! [`RouteReceipt`]: what a payer holds once a routed payment is fulfilled — the payee's
//! secret (proof of payment: only the payee could have revealed it), what was paid and
//! through which hub, channel and lane.

use paych_core::lotus_json::amount_text;
use paych_core::lotus_json::api::RouteReceiptJson;
use paych_core::types::{format_address, Address, Network, TokenAmount};

/// A fulfilled routed payment, as the payer records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteReceipt {
    /// The invoice's payment hash.
    pub payment_hash: [u8; 32],
    /// The secret the payee revealed: blake2b-256 of it is the payment hash.
    pub secret: [u8; 32],
    /// The amount the payee asked for.
    pub amount: TokenAmount,
    /// The hub's fee.
    pub fee: TokenAmount,
    /// The hub's address.
    pub hub: Address,
    /// The payer's channel to the hub.
    pub channel: Address,
    /// The lane of the payer's conditional voucher.
    pub lane: u64,
}

impl RouteReceipt {
    /// Its shape in the API, addresses written for `network`.
    pub fn to_json(&self, network: Network) -> RouteReceiptJson {
        RouteReceiptJson {
            payment_hash: hex::encode(self.payment_hash),
            secret: hex::encode(self.secret),
            amount: amount_text(&self.amount),
            fee: amount_text(&self.fee),
            hub: format_address(&self.hub, network),
            channel: format_address(&self.channel, network),
            lane: self.lane,
        }
    }
}
