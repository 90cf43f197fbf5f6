//! The settler: a watchtower over every channel with an address.
//!
//! Inbound: once the chain shows `settling_at`, submit the best spendable voucher of every
//! lane (a combined voucher where one is held) before `settling_at`, and collect after it if
//! configured — `collect_inbound_delay` epochs after, leaving the payer the first chance. Outbound: collect after `settling_at` to recover the unspent funds.

use super::{PaymentChannelManager, Result};
use crate::chain::ChainError;
use crate::store::{Direction, Lifecycle, MessagePurpose, MessageState, Write};

/// Runs the settler until the manager shuts down.
pub(super) fn spawn(manager: PaymentChannelManager) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    tokio::spawn(async move {
        let mut shutdown = manager.inner.shutdown.subscribe();
        let mut ticker = tokio::time::interval(manager.inner.config.settler_interval);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = manager.settler_pass().await {
                tracing::warn!(error = %e, "settler pass failed");
            }
        }
    });
}

impl PaymentChannelManager {
    /// One look at every live channel; public so that tests and operators can run one
    /// immediately.
    #[tracing::instrument(name = "paych_settler_pass", level = "debug", skip_all)]
    pub async fn settler_pass(&self) -> Result<()> {
        let head = self.inner.chain.head().await?;
        for record in self.inner.store.channels()? {
            let Some(addr) = record.channel else { continue };
            if !matches!(
                record.lifecycle,
                Lifecycle::Open | Lifecycle::Settling | Lifecycle::Settled
            ) {
                continue;
            }
            let on_chain = match self.inner.chain.channel(&addr).await {
                Ok(c) => c,
                Err(ChainError::NotFound(_)) => {
                    // Collected by the other side.
                    let mut record = record;
                    record.lifecycle = Lifecycle::Collected;
                    self.commit(vec![Write::Channel(record)]).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let settling_at = on_chain.state.settling_at;
            if settling_at == 0 {
                continue;
            }
            let lifecycle =
                if head >= settling_at { Lifecycle::Settled } else { Lifecycle::Settling };
            if record.lifecycle != lifecycle || record.settling_at != settling_at {
                let mut updated = record.clone();
                updated.lifecycle = lifecycle;
                updated.settling_at = settling_at;
                self.commit(vec![Write::Channel(updated)]).await?;
            }
            let in_flight = self.in_flight(record.id)?;
            match (record.direction, lifecycle) {
                (Direction::Inbound, Lifecycle::Settling) => {
                    for voucher in self.voucher_best_spendable(&addr).await? {
                        let submitting = in_flight.iter().any(|p| matches!(p, MessagePurpose::Submit { lane, .. } if *lane == voucher.lane));
                        if submitting {
                            continue;
                        }
                        tracing::info!(
                            lane = voucher.lane,
                            nonce = voucher.nonce,
                            "settler submits"
                        );
                        self.voucher_submit(&addr, &voucher, &[]).await?;
                    }
                }
                (Direction::Inbound, Lifecycle::Settled)
                    if !self.inner.config.collect_inbound
                        || head
                            < settling_at.saturating_add(
                                i64::try_from(self.inner.config.collect_inbound_delay)
                                    .unwrap_or(i64::MAX),
                            ) => {}
                (_, Lifecycle::Settled)
                    if !in_flight.iter().any(|p| matches!(p, MessagePurpose::Collect { .. })) =>
                {
                    tracing::info!("settler collects");
                    self.collect(&addr).await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Purposes of this channel's messages that have not landed.
    fn in_flight(&self, id: u64) -> Result<Vec<MessagePurpose>> {
        Ok(self
            .inner
            .store
            .messages()?
            .into_iter()
            .filter(|m| matches!(m.state, MessageState::Recorded | MessageState::Pushed))
            .map(|m| m.purpose)
            .filter(|p| p.channel() == id)
            .collect())
    }
}
