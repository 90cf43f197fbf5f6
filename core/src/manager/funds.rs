//! Funds of outbound channels: creating a channel and adding to it, reservations (held
//! now, or queued behind the message in flight and coalesced into one add-funds message),
//! releases, the top-up policy, Lotus's `PaychGet` / `PaychFund` / `PaychAvailableFunds`
//! family, and the accounting rules beneath them as pure functions of a channel's record
//! and the amount its vouchers already commit.
//!
//! `available = confirmed − spent − reserved`, where `spent` is the sum over lanes of the
//! highest cumulative voucher amount issued. Reservations are only ever made against
//! confirmed funds; a reservation that needs more funds holds what is available and queues
//! the rest, which becomes reserved when the add-funds message carrying it lands. So
//! `reserved + spent ≤ confirmed` always, and `available` is never negative.

use cid::Cid;
use tokio::sync::OwnedMutexGuard;

use super::chain_messages::MessageOutcome;
use super::{AvailableFunds, ChannelHandle, FundsError, PaymentChannelManager, TopUpPolicy};
use crate::store::{
    ChannelId, ChannelRecord, Direction, Lifecycle, MessagePurpose, MessageState, StoreError, Write,
};
use crate::types::{Address, TokenAmount};

/// Funds of a channel not spent by vouchers nor reserved.
pub fn available(record: &ChannelRecord, spent: &TokenAmount) -> TokenAmount {
    let free = &record.confirmed - spent - &record.reserved;
    if free.is_negative() {
        TokenAmount::default()
    } else {
        free
    }
}

/// How a reservation of `amount` is met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservePlan {
    /// Reserved now, from available funds.
    pub now: TokenAmount,
    /// Still needed: to be added to the channel, reserved when it lands.
    pub shortfall: TokenAmount,
}

/// Splits a reservation into what available funds cover now and the shortfall.
pub fn plan_reservation(
    record: &ChannelRecord,
    spent: &TokenAmount,
    amount: &TokenAmount,
) -> ReservePlan {
    let free = available(record, spent);
    if &free >= amount {
        ReservePlan { now: amount.clone(), shortfall: TokenAmount::default() }
    } else {
        ReservePlan { shortfall: amount - &free, now: free }
    }
}

/// How much a voucher raising the lane total by `delta` lacks: zero when the channel's
/// confirmed funds cover every lane's total, otherwise the excess.
pub fn shortfall(record: &ChannelRecord, spent: &TokenAmount, delta: &TokenAmount) -> TokenAmount {
    let lacking = spent + delta - &record.confirmed;
    if lacking.is_positive() {
        lacking
    } else {
        TokenAmount::default()
    }
}

/// What a voucher raising the lane total by `delta` takes from the reservation: as much of
/// `delta` as is reserved.
pub fn drawn_from_reserve(record: &ChannelRecord, delta: &TokenAmount) -> TokenAmount {
    if &record.reserved < delta {
        record.reserved.clone()
    } else {
        delta.clone()
    }
}

/// The smaller of two amounts.
fn smaller(a: &TokenAmount, b: &TokenAmount) -> TokenAmount {
    if a < b {
        a.clone()
    } else {
        b.clone()
    }
}

/// How a reservation was met under the channel's lock.
enum Reservation {
    /// Complete: nothing sent, or the add-funds message sent for it.
    Done(Option<Cid>),
    /// Partly queued behind a message in flight; undone if dropped before it is awaited.
    Queued(CancelOnDrop),
}

/// A reservation whose `shortfall` waits in the channel's queue behind `in_flight`, having
/// reserved `now` at once; `folds` is how many queues the channel had sent when it joined.
struct QueuedReservation {
    id: ChannelId,
    in_flight: Option<Cid>,
    now: TokenAmount,
    shortfall: TokenAmount,
    folds: u64,
}

/// Cancels a queued reservation when its caller's future is dropped before the answer.
struct CancelOnDrop {
    manager: PaymentChannelManager,
    queued: Option<QueuedReservation>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(queued) = self.queued.take() else { return };
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let manager = self.manager.clone();
        tokio::spawn(async move {
            let id = queued.id;
            if let Err(e) = manager.cancel_reservation(queued).await {
                tracing::warn!(channel = id, error = %e, "could not release a cancelled reservation");
            }
        });
    }
}

impl PaymentChannelManager {
    /// Creates an outbound channel from `from` (a key in the wallet) to `to` with `amount`,
    /// returning at once with the create message's CID; `reserve` of the amount is reserved
    /// for payments when the channel is confirmed.
    #[tracing::instrument(name = "paych_create", level = "debug", skip_all)]
    pub async fn create(
        &self,
        from: Address,
        to: Address,
        amount: TokenAmount,
        reserve: TokenAmount,
    ) -> Result<ChannelHandle, FundsError> {
        if !amount.is_positive() {
            return Err(FundsError::InvalidAmount(
                "a channel is created with a positive amount".to_owned(),
            ));
        }
        if reserve.is_negative() || reserve > amount {
            return Err(FundsError::InvalidAmount(
                "the reservation must lie between zero and the amount".to_owned(),
            ));
        }
        if !self.inner.wallet.has(&from) {
            return Err(FundsError::NotOurKey(self.fmt(&from)));
        }
        let id = self.inner.store.next_channel_id()?;
        let record = ChannelRecord {
            pending: amount.clone(),
            ..ChannelRecord::new(id, Direction::Outbound, from, to, Lifecycle::Creating)
        };
        let cid = self.send_create(record, amount, reserve).await?;
        Ok(ChannelHandle { id, channel: None, wait_sentinel: Some(cid) })
    }

    /// Adds `amount` to an outbound channel with one message, returning its CID at once.
    #[tracing::instrument(name = "paych_add_funds", level = "debug", skip_all)]
    pub async fn add_funds(
        &self,
        channel: &Address,
        amount: TokenAmount,
    ) -> Result<Cid, FundsError> {
        if !amount.is_positive() {
            return Err(FundsError::InvalidAmount("funds added must be positive".to_owned()));
        }
        let (_guard, record) = self.locked(channel, Direction::Outbound).await?;
        self.expect_open(&record)?;
        Ok(self.send_add_funds(record, amount, TokenAmount::default()).await?)
    }

    /// Reserves `amount` on an outbound channel. With enough available funds this sends no
    /// message and answers `None`. Otherwise what is available is held, the rest goes into
    /// one add-funds message — coalesced with every request queued while an earlier
    /// message is in flight — and the answer is that message's CID; the reservation is
    /// complete when it lands.
    #[tracing::instrument(name = "paych_reserve_funds", level = "debug", skip_all)]
    pub async fn reserve_funds(
        &self,
        channel: &Address,
        amount: TokenAmount,
    ) -> Result<Option<Cid>, FundsError> {
        let record = self.record_by_address(channel)?;
        self.reserve_by_id(record.id, amount).await
    }

    async fn reserve_by_id(
        &self,
        id: ChannelId,
        amount: TokenAmount,
    ) -> Result<Option<Cid>, FundsError> {
        match self.begin_reservation(id, amount).await? {
            Reservation::Done(cid) => Ok(cid),
            Reservation::Queued(queued) => self.await_queued(queued).await,
        }
    }

    /// Reserves what is available at once and sends or queues the rest, under the
    /// channel's lock; a part queued behind a message in flight is left to wait for.
    async fn begin_reservation(
        &self,
        id: ChannelId,
        amount: TokenAmount,
    ) -> Result<Reservation, FundsError> {
        if !amount.is_positive() {
            return Err(FundsError::InvalidAmount("a reservation must be positive".to_owned()));
        }
        let lock = self.channel_lock(id);
        let mut cache = lock.lock().await;
        let mut record = self.record(id)?;
        self.expect_direction(&record, Direction::Outbound)?;
        if !matches!(record.lifecycle, Lifecycle::Open | Lifecycle::Creating) {
            return Err(FundsError::ChannelNotOpen {
                channel: self.describe(&record),
                lifecycle: record.lifecycle,
            });
        }
        self.load_cache(id, &mut cache)?;
        let plan = plan_reservation(&record, &cache.spent(), &amount);
        record.reserved += &plan.now;
        if plan.shortfall.is_zero() {
            self.commit(vec![Write::Channel(record)]).await?;
            drop(cache);
            self.maybe_top_up(id);
            return Ok(Reservation::Done(None));
        }
        if record.lifecycle == Lifecycle::Open && record.pending_message.is_none() {
            let cid = self.send_add_funds(record, plan.shortfall.clone(), plan.shortfall).await?;
            return Ok(Reservation::Done(Some(cid)));
        }
        // A message is in flight: queue behind it, and answer with the next message's CID.
        let queued = QueuedReservation {
            id,
            in_flight: record.pending_message,
            now: plan.now,
            shortfall: plan.shortfall.clone(),
            folds: self.folds(id).0,
        };
        if record.queued.is_zero() {
            record.queue_failure = None;
        }
        record.queued += &plan.shortfall;
        record.queued_reserve += &plan.shortfall;
        self.inner.store.apply(vec![Write::Channel(record)])?;
        // Armed once the queue is written: a caller gone while it is flushed is undone too.
        let cancel = CancelOnDrop { manager: self.clone(), queued: Some(queued) };
        self.inner.store.durable().await?;
        self.notify();
        Ok(Reservation::Queued(cancel))
    }

    /// Waits for the message that carries a queued reservation. Should the caller go away
    /// first (its future dropped, as Lotus's request cancelled through its context), what
    /// it reserved is released and its queued part taken out of the queue, unsent.
    async fn await_queued(&self, mut cancel: CancelOnDrop) -> Result<Option<Cid>, FundsError> {
        let Some((id, in_flight)) = cancel.queued.as_ref().map(|q| (q.id, q.in_flight)) else {
            return Ok(None);
        };
        let answer = self.wait_next_message(id, in_flight).await;
        cancel.queued = None;
        answer
    }

    /// Undoes a queued reservation whose caller went away: releases what it reserved at
    /// once; takes its queued part out of the queue if no message carries it yet, or
    /// releases it once the one message that carries it lands.
    async fn cancel_reservation(&self, queued: QueuedReservation) -> Result<(), FundsError> {
        let lock = self.channel_lock(queued.id);
        let guard = lock.lock().await;
        let mut record = self.record(queued.id)?;
        let (folds, last_fold) = self.folds(queued.id);
        let mut carried_by = None;
        if folds == queued.folds {
            // Still queued (or dropped with a failed create, which emptied the queue).
            if record.queued >= queued.shortfall && record.queued_reserve >= queued.shortfall {
                record.queued -= &queued.shortfall;
                record.queued_reserve -= &queued.shortfall;
            }
        } else if folds == queued.folds + 1 {
            carried_by = last_fold;
        } else {
            tracing::warn!(channel = queued.id, "a cancelled reservation's message is unknown; its queued part stays reserved when it lands");
        }
        record.reserved -= smaller(&queued.now, &record.reserved);
        self.commit(vec![Write::Channel(record)]).await?;
        drop(guard);
        let Some(cid) = carried_by else { return Ok(()) };
        if let MessageOutcome::Landed { exit_code: 0, .. } = self.wait_message(&cid).await? {
            let _guard = lock.lock().await;
            let mut record = self.record(queued.id)?;
            record.reserved -= smaller(&queued.shortfall, &record.reserved);
            self.commit(vec![Write::Channel(record)]).await?;
        }
        Ok(())
    }

    /// Waits until the channel's pending message is no longer `in_flight`, and answers the
    /// one that replaced it (the coalesced add-funds message).
    async fn wait_next_message(
        &self,
        id: ChannelId,
        in_flight: Option<Cid>,
    ) -> Result<Option<Cid>, FundsError> {
        let mut changed = self.inner.changed.subscribe();
        loop {
            let record = self.record(id)?;
            let next = record.pending_message.filter(|cid| Some(*cid) != in_flight);
            if let Some(cid) = next {
                // Recorded but not yet known pushed, it may still be refused: wait.
                let pushed = self
                    .inner
                    .store
                    .message(&cid)?
                    .is_some_and(|m| m.state != MessageState::Recorded);
                if pushed {
                    return Ok(Some(cid));
                }
            } else if record.pending_message != in_flight {
                if record.queued.is_zero() {
                    // The queue was folded into a message that already landed, refused, or
                    // dropped with a failed create.
                    if let Some(reason) = record.queue_failure {
                        return Err(FundsError::ReservationFailed(reason));
                    }
                    return match record.lifecycle {
                        Lifecycle::CreateFailed => Err(FundsError::ChannelNotOpen {
                            channel: self.describe(&record),
                            lifecycle: record.lifecycle,
                        }),
                        _ => Ok(None),
                    };
                }
                // Queued funds go out only on an open channel; one that started settling
                // never sends them.
                if !matches!(record.lifecycle, Lifecycle::Open | Lifecycle::Creating) {
                    return Err(FundsError::ChannelNotOpen {
                        channel: self.describe(&record),
                        lifecycle: record.lifecycle,
                    });
                }
            }
            if self.is_shutting_down() {
                return Err(FundsError::ShuttingDown);
            }
            if changed.changed().await.is_err() {
                return Err(FundsError::ShuttingDown);
            }
        }
    }

    /// Returns reserved funds of an outbound channel to its available funds.
    #[tracing::instrument(name = "paych_release_funds", level = "debug", skip_all)]
    pub async fn release_funds(
        &self,
        channel: &Address,
        amount: TokenAmount,
    ) -> Result<(), FundsError> {
        if !amount.is_positive() {
            return Err(FundsError::InvalidAmount("a release must be positive".to_owned()));
        }
        let (_guard, mut record) = self.locked(channel, Direction::Outbound).await?;
        if record.reserved < amount {
            return Err(FundsError::ReleaseExceedsReserved {
                requested: amount,
                reserved: record.reserved,
            });
        }
        record.reserved -= &amount;
        Ok(self.commit(vec![Write::Channel(record)]).await?)
    }

    /// The top-up policy of a channel.
    fn top_up_policy(&self, record: &ChannelRecord) -> Option<TopUpPolicy> {
        record
            .channel
            .as_ref()
            .and_then(|c| self.inner.config.top_up_per_channel.get(c))
            .or(self.inner.config.top_up.as_ref())
            .cloned()
    }

    /// Adds funds in the background when available funds are below the low-water mark and
    /// nothing is already on its way.
    pub(super) fn maybe_top_up(&self, id: ChannelId) {
        let config = &self.inner.config;
        if config.top_up.is_none() && config.top_up_per_channel.is_empty() {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let manager = self.clone();
        tokio::spawn(async move {
            if let Err(e) = manager.top_up(id).await {
                tracing::warn!(channel = id, error = %e, "top-up failed");
            }
        });
    }

    async fn top_up(&self, id: ChannelId) -> Result<(), FundsError> {
        let lock = self.channel_lock(id);
        let mut cache = lock.lock().await;
        let record = self.record(id)?;
        let Some(policy) = self.top_up_policy(&record) else { return Ok(()) };
        if record.direction != Direction::Outbound
            || record.lifecycle != Lifecycle::Open
            || record.pending_message.is_some()
        {
            return Ok(());
        }
        self.load_cache(id, &mut cache)?;
        let available = available(&record, &cache.spent());
        if available >= policy.low_water || policy.high_water <= available {
            return Ok(());
        }
        let amount = &policy.high_water - &available;
        tracing::info!(channel = id, amount = %amount.atto(), "topping up");
        self.send_add_funds(record, amount, TokenAmount::default()).await?;
        Ok(())
    }

    /// Lotus's `PaychGet`: the open outbound channel from `from` to `to`, created with
    /// `amount` if there is none, with `amount` reserved on it (adding funds if needed).
    #[tracing::instrument(name = "paych_get", level = "debug", skip_all)]
    pub async fn get(
        &self,
        from: Address,
        to: Address,
        amount: TokenAmount,
    ) -> Result<ChannelHandle, FundsError> {
        let (turn, active) = self.active_outbound_in_turn(from, to).await?;
        match active {
            Some(record) => {
                let reservation = if amount.is_positive() {
                    self.begin_reservation(record.id, amount).await?
                } else {
                    Reservation::Done(None)
                };
                // A reservation waiting for a message holds no turn: the gets arriving
                // meanwhile queue beside it and go out in the same message (as Lotus's
                // merged funds requests do).
                drop(turn);
                let wait_sentinel = match reservation {
                    Reservation::Done(cid) => cid,
                    Reservation::Queued(queued) => self.await_queued(queued).await?,
                };
                let record = self.record(record.id)?;
                let wait_sentinel = wait_sentinel.or(match record.lifecycle {
                    Lifecycle::Creating => record.pending_message,
                    _ => None,
                });
                Ok(ChannelHandle { id: record.id, channel: record.channel, wait_sentinel })
            }
            None => self.create(from, to, amount.clone(), amount).await,
        }
    }

    /// Lotus's `PaychFund`: like [`Self::get`], but the funds are added for later use
    /// rather than reserved.
    #[tracing::instrument(name = "paych_fund", level = "debug", skip_all)]
    pub async fn fund(
        &self,
        from: Address,
        to: Address,
        amount: TokenAmount,
    ) -> Result<ChannelHandle, FundsError> {
        let (_turn, active) = self.active_outbound_in_turn(from, to).await?;
        match active {
            Some(record) if record.lifecycle == Lifecycle::Open => {
                let addr = record
                    .channel
                    .ok_or_else(|| FundsError::UnknownChannel(format!("#{}", record.id)))?;
                let cid = self.add_funds(&addr, amount).await?;
                Ok(ChannelHandle {
                    id: record.id,
                    channel: record.channel,
                    wait_sentinel: Some(cid),
                })
            }
            Some(record) => {
                // Still being created: the funds go into the queue, sent (unreserved) in one
                // message once the create lands.
                let record = self.queue_funds(record.id, amount).await?;
                Ok(ChannelHandle {
                    id: record.id,
                    channel: record.channel,
                    wait_sentinel: record.pending_message,
                })
            }
            None => self.create(from, to, amount, TokenAmount::default()).await,
        }
    }

    /// Adds `amount` to a channel's queue without reserving it; the queue goes out as one
    /// add-funds message when the message in flight lands.
    async fn queue_funds(
        &self,
        id: ChannelId,
        amount: TokenAmount,
    ) -> Result<ChannelRecord, FundsError> {
        if !amount.is_positive() {
            return Err(FundsError::InvalidAmount("funds added must be positive".to_owned()));
        }
        let lock = self.channel_lock(id);
        let _guard = lock.lock().await;
        let mut record = self.record(id)?;
        if record.lifecycle == Lifecycle::Open && record.pending_message.is_none() {
            // The create landed meanwhile: nothing to queue behind.
            self.send_add_funds(record, amount, TokenAmount::default()).await?;
            return Ok(self.record(id)?);
        }
        if record.queued.is_zero() {
            record.queue_failure = None;
        }
        record.queued += amount;
        self.commit(vec![Write::Channel(record.clone())]).await?;
        Ok(record)
    }

    /// The pair's turn, held by the answer, and its active outbound channel: one `get` or
    /// `fund` at a time per pair, so that two never create a channel each.
    async fn active_outbound_in_turn(
        &self,
        from: Address,
        to: Address,
    ) -> Result<(OwnedMutexGuard<()>, Option<ChannelRecord>), StoreError> {
        let turn = self.pair_lock(from, to).lock_owned().await;
        Ok((turn, self.active_outbound(&from, &to)?))
    }

    /// The outbound channel from `from` to `to` that takes new payments: creating or open.
    fn active_outbound(
        &self,
        from: &Address,
        to: &Address,
    ) -> Result<Option<ChannelRecord>, StoreError> {
        Ok(self.inner.store.channels()?.into_iter().rev().find(|c| {
            c.direction == Direction::Outbound
                && &c.from == from
                && &c.to == to
                && matches!(c.lifecycle, Lifecycle::Creating | Lifecycle::Open)
        }))
    }

    /// The open (or creating) outbound channel from `from` to `to`, if any.
    #[tracing::instrument(name = "paych_lookup", level = "debug", skip_all)]
    pub fn lookup(
        &self,
        from: &Address,
        to: &Address,
    ) -> Result<Option<ChannelHandle>, StoreError> {
        Ok(self.active_outbound(from, to)?.map(|c| ChannelHandle {
            id: c.id,
            channel: c.channel,
            wait_sentinel: c.pending_message,
        }))
    }

    /// Every channel's robust address (channels still being created have none yet).
    #[tracing::instrument(name = "paych_list", level = "debug", skip_all)]
    pub fn list(&self) -> Result<Vec<Address>, StoreError> {
        Ok(self.inner.store.channels()?.into_iter().filter_map(|c| c.channel).collect())
    }

    /// Waits until the message `sentinel` (a create or add-funds) has landed, and answers
    /// the channel's address; a failed message is an error with its exit code.
    #[tracing::instrument(name = "paych_get_wait_ready", level = "debug", skip_all)]
    pub async fn get_wait_ready(&self, sentinel: &Cid) -> Result<Address, FundsError> {
        match self.wait_message(sentinel).await? {
            MessageOutcome::Landed { exit_code: 0, .. } => {}
            MessageOutcome::Landed { exit_code, .. } => {
                return Err(FundsError::MessageFailed { cid: *sentinel, exit_code })
            }
            MessageOutcome::Refused { reason } => {
                return Err(FundsError::MessageRefused { cid: *sentinel, reason })
            }
        }
        let record = self
            .inner
            .store
            .message(sentinel)?
            .ok_or_else(|| FundsError::UnknownChannel(format!("message {sentinel}")))?;
        let id = record.purpose.channel();
        self.record(id)?.channel.ok_or_else(|| FundsError::UnknownChannel(format!("#{id}")))
    }

    /// A channel's funds, in Lotus's shape.
    #[tracing::instrument(name = "paych_available_funds", level = "debug", skip_all)]
    pub async fn available_funds(&self, channel: &Address) -> Result<AvailableFunds, FundsError> {
        let record = self.record_by_address(channel)?;
        self.available_funds_of(record).await
    }

    /// The funds of the active outbound channel from `from` to `to`.
    #[tracing::instrument(name = "paych_available_funds_by_from_to", level = "debug", skip_all)]
    pub async fn available_funds_by_from_to(
        &self,
        from: &Address,
        to: &Address,
    ) -> Result<AvailableFunds, FundsError> {
        match self.active_outbound(from, to)? {
            Some(record) => self.available_funds_of(record).await,
            None => Ok(AvailableFunds {
                channel: None,
                from: *from,
                to: *to,
                confirmed: TokenAmount::default(),
                pending: TokenAmount::default(),
                non_reserved: TokenAmount::default(),
                pending_available: TokenAmount::default(),
                pending_wait_sentinel: None,
                queued: TokenAmount::default(),
                voucher_redeemed: TokenAmount::default(),
            }),
        }
    }

    async fn available_funds_of(
        &self,
        record: ChannelRecord,
    ) -> Result<AvailableFunds, FundsError> {
        let lock = self.channel_lock(record.id);
        let mut cache = lock.lock().await;
        self.load_cache(record.id, &mut cache)?;
        let record = self.record(record.id)?;
        let spent = cache.spent();
        let non_reserved = available(&record, &spent);
        // Funds in flight or queued that reservations wait for will not be available.
        let pending_available = &non_reserved + &record.pending + &record.queued
            - &record.queued_reserve
            - self.in_flight_reserve(record.id)?;
        Ok(AvailableFunds {
            channel: record.channel,
            from: record.from,
            to: record.to,
            confirmed: record.confirmed.clone(),
            pending: record.pending.clone(),
            non_reserved,
            pending_available,
            pending_wait_sentinel: record.pending_message,
            queued: record.queued.clone(),
            voucher_redeemed: spent,
        })
    }

    /// What the channel's create and add-funds messages in flight reserve when they land.
    fn in_flight_reserve(&self, id: ChannelId) -> Result<TokenAmount, StoreError> {
        Ok(self
            .in_flight(id)?
            .into_iter()
            .filter_map(|purpose| match purpose {
                MessagePurpose::Create { reserve, .. }
                | MessagePurpose::AddFunds { reserve, .. } => Some(reserve),
                _ => None,
            })
            .sum())
    }
}
