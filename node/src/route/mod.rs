//! Routed payments through a hub (docs/hub.md, the design's §9): the node's side of
//! `/paych/route/1.0.0` as payer, hub and payee, and the hub's operation.
//!
//! - [`config`]: the `[hub]` section of `config.toml` — on or off, fee, caps, capacity,
//!   auto-collateral — and its checks;
//! - [`caps`]: the hub's caps on pending routes per payer, per payee and per channel;
//! - [`collateral`]: auto-collateral of the hub's outbound channels, sized on completed flow;
//! - [`payer`]: the payer's checks of an invoice and its choice of hub;
//! - [`receipt`]: what paying an invoice answers.
//!
//! The rules every party checks (voucher shapes, locks, deadlines, secrets) are
//! `paych_core`'s; this module drives them over the network and the manager. It is off the
//! payment path unless the node pays an invoice or `[hub] enabled = 1`.

pub mod caps;
pub mod collateral;
pub mod config;
pub mod payer;
pub mod receipt;

pub use collateral::{CollateralPolicy, CollateralTask, FlowLedger};
pub use config::{HubConfig, HubConfigError};
pub use receipt::RouteReceipt;

use std::sync::Arc;

use paych_core::invoice::{unix_now, Invoice};
use paych_core::manager::PaymentChannelManager;
use paych_core::store::{Direction, Lifecycle};
use paych_core::types::{Address, TokenAmount};

use crate::metrics::Metrics;
use crate::network::NetworkClient;
use payer::{check_invoice, choose_hub, ChosenHub, PayInvoiceError};

/// A node's routed payments: it pays invoices through hubs, and (with `[hub] enabled = 1`)
/// routes others' payments.
pub struct Routes {
    manager: PaymentChannelManager,
    #[allow(dead_code)]
    network: NetworkClient,
    #[allow(dead_code)]
    hub: HubConfig,
    #[allow(dead_code)]
    metrics: Arc<Metrics>,
}

impl Routes {
    /// Routing over `manager` and `network`, as a hub if `hub.enabled`.
    pub fn new(
        manager: PaymentChannelManager,
        network: NetworkClient,
        hub: HubConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Routes { manager, network, hub, metrics }
    }

    /// Pays the invoice `text` through one of its hubs, the hub's fee at most `max_fee`.
    pub async fn pay_invoice(
        &self,
        text: &str,
        max_fee: Option<TokenAmount>,
    ) -> Result<RouteReceipt, PayInvoiceError> {
        let invoice = Invoice::from_text(text)?;
        check_invoice(&invoice, unix_now())?;
        let _chosen: ChosenHub = choose_hub(&invoice, &self.open_outbound_channels().await)?;
        let _ = max_fee;
        Err(PayInvoiceError::NoHub("routing is not available in this build".into()))
    }

    /// This node's open outbound channels, as `(payee, channel)`.
    async fn open_outbound_channels(&self) -> Vec<(Address, Address)> {
        let mut open = Vec::new();
        for channel in self.manager.list().unwrap_or_default() {
            let Ok(status) = self.manager.status(&channel).await else { continue };
            if status.direction == Direction::Outbound && status.lifecycle == Lifecycle::Open {
                open.push((status.to, channel));
            }
        }
        open
    }
}
