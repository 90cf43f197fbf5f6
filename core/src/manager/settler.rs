//! The settler: a watchtower over every channel with an address.
//!
//! Inbound: once the chain shows `settling_at`, submit the redemption model's plan — the
//! held vouchers that redeem the most, in order, falling back to lower vouchers where a
//! lane's highest cannot redeem (design §3b) — before `settling_at`, and collect after it if
//! configured, `collect_inbound_delay` epochs after, leaving the payer the first chance.
//! Outbound: collect after `settling_at` to recover the unspent funds. Where the intake
//! policy takes time-locked vouchers, or a conditional voucher is held whose secret is known
//! (design §9), an open inbound channel's plan — the conditional voucher with its secret, if
//! no replacement superseded it — is submitted once one of its vouchers nears its
//! `time_lock_max`. One channel's failure is logged and never stops
//! the pass over the others.

use super::{PaymentChannelManager, SettlerError};
use crate::chain::ChainError;
use crate::store::{ChannelRecord, Direction, Lifecycle, MessagePurpose, Write};
use crate::types::{ChainEpoch, SignedVoucher};

/// Runs the settler until the manager shuts down.
pub(super) fn spawn(manager: PaymentChannelManager) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    // Subscribed before the task first runs: a shutdown sent before then is still seen
    // (a receiver made after it would wait for a change that never comes).
    let mut shutdown = manager.inner.shutdown.subscribe();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(manager.inner.config.settler_interval);
        loop {
            if *shutdown.borrow() {
                return;
            }
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
    /// immediately. A channel whose turn fails is logged and skipped (the next pass tries
    /// it again); the pass answers the first such failure once every channel has had its
    /// turn.
    #[tracing::instrument(name = "paych_settler_pass", level = "debug", skip_all)]
    pub async fn settler_pass(&self) -> Result<(), SettlerError> {
        let head = self.inner.chain.head().await?;
        let mut first_failure = None;
        for record in self.inner.store.channels()? {
            if record.channel.is_none()
                || !matches!(
                    record.lifecycle,
                    Lifecycle::Open | Lifecycle::Settling | Lifecycle::Settled
                )
            {
                continue;
            }
            if let Err(e) = self.settle_channel(record.clone(), head).await {
                tracing::warn!(channel = record.id, error = %e, "settler: channel skipped this pass");
                first_failure.get_or_insert(e);
            }
        }
        match first_failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The settler's turn at one channel.
    async fn settle_channel(
        &self,
        record: ChannelRecord,
        head: ChainEpoch,
    ) -> Result<(), SettlerError> {
        let Some(addr) = record.channel else { return Ok(()) };
        let on_chain = match self.inner.chain.channel(&addr).await {
            Ok(c) => c,
            // Collected by the other side.
            Err(ChainError::NotFound(_)) => return Ok(self.mark_gone(record.id).await?),
            Err(e) => return Err(e.into()),
        };
        let settling_at = on_chain.state.settling_at;
        if settling_at == 0 {
            // Only a payee redeems; the conditional vouchers are looked for (a read of every
            // voucher held) on inbound channels only.
            let watch_locks = record.direction == Direction::Inbound
                && (self.inner.config.intake.accept_time_locks
                    || self.holds_redeemable_conditional(&record, head)?);
            if watch_locks {
                self.redeem_before_locks(&record, head).await?;
            }
            return Ok(());
        }
        let mut updated = record.clone();
        if let Err(e) = updated.settling_seen(settling_at, head) {
            tracing::warn!(channel = record.id, error = %e, "settler: channel settling");
            return Ok(());
        }
        let lifecycle = updated.lifecycle;
        if updated != record {
            self.commit(vec![Write::Channel(updated)]).await?;
        }
        let in_flight = self.in_flight(record.id)?;
        match (record.direction, lifecycle) {
            (Direction::Inbound, Lifecycle::Settling) => {
                // Submits in flight change what the plan starts from: wait for them to land.
                if in_flight.iter().any(|p| matches!(p, MessagePurpose::Submit { .. })) {
                    return Ok(());
                }
                let record = self.record(record.id)?;
                for step in self.settlement_plan(&record).await?.steps {
                    tracing::info!(
                        lane = step.voucher.lane,
                        nonce = step.voucher.nonce,
                        delta = %step.delta.atto(),
                        "settler submits"
                    );
                    self.voucher_submit(&addr, &step.voucher, &step.secret).await?;
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
        Ok(())
    }

    /// Where time-locked vouchers are taken, or conditional vouchers are held with their
    /// secrets: submits the channel's plan once a voucher in it would expire within twice
    /// the landing margin (a conditional one: within the route's redeem margin), so that what
    /// was credited for it is redeemed before its lock.
    async fn redeem_before_locks(
        &self,
        record: &ChannelRecord,
        head: ChainEpoch,
    ) -> Result<(), SettlerError> {
        let in_flight = self.in_flight(record.id)?;
        if in_flight.iter().any(|p| matches!(p, MessagePurpose::Submit { .. })) {
            return Ok(());
        }
        let Some(addr) = record.channel else { return Ok(()) };
        // Twice the landing margin before a time lock; before the lock of a conditional
        // voucher with its secret, the route's `S + conf` and the holder's downtime (design
        // §9): until then the holder waits for its unconditional replacement, and the message
        // still lands, final, before the lock.
        let time_locked = self.inner.config.intake.landing_margin.saturating_mul(2);
        let conditional = self.inner.config.route.redeem_margin();
        let urgent = |v: &SignedVoucher| {
            let margin = if v.secret_hash.is_empty() { time_locked } else { conditional };
            v.time_lock_max != 0 && v.time_lock_max <= head.saturating_add(margin)
        };
        let plan = self.settlement_plan(record).await?;
        if !plan.steps.iter().any(|s| urgent(&s.voucher)) {
            return Ok(());
        }
        for step in plan.steps {
            tracing::info!(
                lane = step.voucher.lane,
                nonce = step.voucher.nonce,
                time_lock_max = step.voucher.time_lock_max,
                "settler submits before a time lock runs out"
            );
            self.voucher_submit(&addr, &step.voucher, &step.secret).await?;
        }
        Ok(())
    }
}
