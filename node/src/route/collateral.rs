//! Auto-collateral: a hub keeps each outbound channel to a payee funded for the flow it
//! routes, as Connext's hub does — when a channel's available funds fall below what the
//! recent *completed* flow through it needs for the next window, one add-funds message
//! brings them up, bounded per message.
//!
//! Only completed routes count ([`FlowLedger::completed`]): a payer who opens routes and
//! never finishes them (jamming) moves no collateral. [`top_up`] is the pure sizing rule;
//! [`CollateralTask`] runs it once per interval over the channels with flow, through the
//! manager's `available_funds` and `add_funds`. This module never signs a voucher.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paych_core::manager::PaymentChannelManager;
use paych_core::types::{Address, ChainEpoch, TokenAmount};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// The most completed payments remembered per channel (the oldest are dropped first).
pub const MAX_FLOW_SAMPLES: usize = 4096;
/// The most channels whose flow is remembered (the least recently paid are dropped first).
pub const MAX_FLOW_CHANNELS: usize = 4096;
/// How many windows of need a top-up provides for: after one, steady flow needs no other
/// message for this many windows.
pub const WINDOWS_PER_TOP_UP: u64 = 2;

/// When and how much to top up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollateralPolicy {
    /// The window, in epochs: the flow completed over the last `window` epochs is what the
    /// next `window` epochs are expected to need.
    pub window: u64,
    /// The least a top-up adds (no message for less).
    pub min_top_up: TokenAmount,
    /// The most one top-up adds.
    pub max_top_up: TokenAmount,
}

impl Default for CollateralPolicy {
    fn default() -> Self {
        CollateralPolicy {
            window: 120,
            min_top_up: TokenAmount::default(),
            max_top_up: TokenAmount::from_atto(10_000_000_000_000_000_000u128),
        }
    }
}

/// What one channel looks like to the sizing rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelFunds {
    /// Confirmed funds neither reserved nor spent by vouchers (conditional ones included).
    pub available: TokenAmount,
    /// Funds in a message that has not landed, or queued for the next: while there are
    /// any, no other message is sent.
    pub in_flight: TokenAmount,
}

/// The add-funds amount for a channel whose completed flow over the last window was
/// `recent_flow`, or `None`: nothing while a message is in flight, nothing while the
/// available funds cover the next window's need, else enough for [`WINDOWS_PER_TOP_UP`]
/// windows, at most `max_top_up` and nothing below `min_top_up`.
pub fn top_up(
    funds: &ChannelFunds,
    recent_flow: &TokenAmount,
    policy: &CollateralPolicy,
) -> Option<TokenAmount> {
    if funds.in_flight.is_positive() || !recent_flow.is_positive() {
        return None;
    }
    if funds.available >= *recent_flow {
        return None;
    }
    let target = recent_flow * WINDOWS_PER_TOP_UP;
    let wanted = (&target - &funds.available).min(policy.max_top_up.clone());
    (wanted.is_positive() && wanted >= policy.min_top_up).then_some(wanted)
}

/// The completed flow per outbound channel: `(epoch, amount)` of each route fulfilled
/// through it, bounded by [`MAX_FLOW_SAMPLES`] per channel and [`MAX_FLOW_CHANNELS`].
#[derive(Debug, Default)]
pub struct FlowLedger {
    channels: Mutex<BTreeMap<Address, VecDeque<(ChainEpoch, TokenAmount)>>>,
}

impl FlowLedger {
    /// Records a route completed (its secret known) that moved `amount` over `channel`.
    pub fn completed(&self, channel: Address, epoch: ChainEpoch, amount: TokenAmount) {
        let Ok(mut channels) = self.channels.lock() else { return };
        if !channels.contains_key(&channel) && channels.len() >= MAX_FLOW_CHANNELS {
            let stalest = channels
                .iter()
                .min_by_key(|(_, samples)| samples.back().map_or(ChainEpoch::MIN, |s| s.0))
                .map(|(addr, _)| *addr);
            if let Some(stalest) = stalest {
                channels.remove(&stalest);
            }
        }
        let samples = channels.entry(channel).or_default();
        samples.push_back((epoch, amount));
        while samples.len() > MAX_FLOW_SAMPLES {
            samples.pop_front();
        }
    }

    /// The flow completed over `channel` in the `window` epochs up to `head`; older samples
    /// are forgotten.
    pub fn recent(&self, channel: &Address, head: ChainEpoch, window: u64) -> TokenAmount {
        let Ok(mut channels) = self.channels.lock() else { return TokenAmount::default() };
        let Some(samples) = channels.get_mut(channel) else { return TokenAmount::default() };
        let since = head.saturating_sub(ChainEpoch::try_from(window).unwrap_or(ChainEpoch::MAX));
        while samples.front().is_some_and(|(epoch, _)| *epoch <= since) {
            samples.pop_front();
        }
        samples.iter().map(|(_, amount)| amount.clone()).sum()
    }

    /// The channels with remembered flow.
    pub fn channels(&self) -> Vec<Address> {
        self.channels.lock().map(|c| c.keys().copied().collect()).unwrap_or_default()
    }
}

/// Runs [`top_up`] over the ledger's channels once per interval until shut down.
pub struct CollateralTask {
    /// The manager whose outbound channels are topped up.
    pub manager: PaymentChannelManager,
    /// The completed flow.
    pub ledger: Arc<FlowLedger>,
    /// The sizing policy.
    pub policy: CollateralPolicy,
    /// The node's metrics (top-ups are counted).
    pub metrics: Arc<Metrics>,
    /// How often to look.
    pub interval: Duration,
}

impl CollateralTask {
    /// Spawns the task; it ends when `shutdown` turns true or its sender is dropped.
    pub fn spawn(self, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                self.pass().await;
                tokio::select! {
                    _ = tokio::time::sleep(self.interval) => {}
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            return;
                        }
                    }
                }
            }
        })
    }

    /// One look at every channel with flow; answers the add-funds amounts sent.
    pub async fn pass(&self) -> Vec<(Address, TokenAmount)> {
        let Ok(head) = self.manager.chain().head().await else { return Vec::new() };
        let mut sent = Vec::new();
        for channel in self.ledger.channels() {
            let recent = self.ledger.recent(&channel, head, self.policy.window);
            let Ok(funds) = self.manager.available_funds(&channel).await else { continue };
            let funds = ChannelFunds {
                available: funds.non_reserved,
                in_flight: &funds.pending + &funds.queued,
            };
            let Some(amount) = top_up(&funds, &recent, &self.policy) else { continue };
            match self.manager.add_funds(&channel, amount.clone()).await {
                Ok(cid) => {
                    tracing::info!(%channel, amount = %amount.atto(), %cid, "auto-collateral");
                    self.metrics.collateral_top_up(&amount);
                    sent.push((channel, amount));
                }
                Err(e) => tracing::warn!(%channel, error = %e, "auto-collateral failed"),
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn atto(n: u64) -> TokenAmount {
        TokenAmount::from_atto(n)
    }

    fn funds(available: u64, in_flight: u64) -> ChannelFunds {
        ChannelFunds { available: atto(available), in_flight: atto(in_flight) }
    }

    fn policy(min: u64, max: u64) -> CollateralPolicy {
        CollateralPolicy { window: 10, min_top_up: atto(min), max_top_up: atto(max) }
    }

    #[test]
    fn a_channel_covering_the_next_windows_flow_is_left_alone() {
        assert_eq!(top_up(&funds(100, 0), &atto(100), &policy(0, 1000)), None);
        assert_eq!(top_up(&funds(0, 0), &atto(0), &policy(0, 1000)), None);
    }

    #[test]
    fn a_channel_short_of_the_next_windows_flow_gets_two_windows_in_one_message() {
        assert_eq!(top_up(&funds(40, 0), &atto(100), &policy(0, 1000)), Some(atto(160)));
    }

    #[test]
    fn a_top_up_is_bounded_by_the_policys_maximum_and_skipped_below_its_minimum() {
        assert_eq!(top_up(&funds(0, 0), &atto(1000), &policy(0, 300)), Some(atto(300)));
        assert_eq!(top_up(&funds(99, 0), &atto(100), &policy(200, 1000)), None);
    }

    #[test]
    fn no_second_message_is_sent_while_funds_are_in_flight() {
        assert_eq!(top_up(&funds(0, 5), &atto(100), &policy(0, 1000)), None);
    }

    #[test]
    fn only_the_flow_completed_within_the_window_counts() {
        let ledger = FlowLedger::default();
        let channel = Address::new_id(1000);
        ledger.completed(channel, 5, atto(7));
        ledger.completed(channel, 12, atto(3));
        ledger.completed(channel, 20, atto(4));
        assert_eq!(ledger.recent(&channel, 20, 10), atto(7));
        assert_eq!(ledger.recent(&channel, 21, 1), atto(0));
        assert_eq!(ledger.recent(&Address::new_id(1), 20, 10), atto(0));
    }

    #[test]
    fn the_ledger_forgets_the_oldest_samples_and_the_stalest_channel_past_its_bounds() {
        let ledger = FlowLedger::default();
        let busy = Address::new_id(1);
        for epoch in 0..(MAX_FLOW_SAMPLES as i64 + 10) {
            ledger.completed(busy, epoch, atto(1));
        }
        assert_eq!(
            ledger.recent(&busy, MAX_FLOW_SAMPLES as i64 + 10, u64::MAX / 2),
            atto(MAX_FLOW_SAMPLES as u64)
        );
        for n in 0..MAX_FLOW_CHANNELS as u64 {
            ledger.completed(Address::new_id(1_000_000 + n), 1_000_000, atto(1));
        }
        assert_eq!(ledger.channels().len(), MAX_FLOW_CHANNELS);
        assert!(!ledger.channels().contains(&busy));
    }
}
