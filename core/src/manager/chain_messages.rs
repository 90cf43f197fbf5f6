//! Chain messages: recorded and made durable before they are pushed, tracked until they
//! land, their effects applied to the channel in the same atomic write that records the
//! outcome, and pushed again — the same signed message — after a restart.

use std::time::Duration;

use cid::Cid;

use super::{mark_submitted, ChainMessageError, PaymentChannelManager, WaitError};
use crate::chain::{prepare_message, ActorKind, ChainError, MessageLookup};
use crate::store::{ChannelRecord, Lifecycle, MessagePurpose, MessageRecord, MessageState, Write};
use crate::types::{
    decode, paych_method, Address, ConstructorParams, ExecParams, ExecReturn, Message, TokenAmount,
    UpdateChannelStateParams, INIT_ACTOR_ID, INIT_EXEC_METHOD, METHOD_SEND,
};

/// How a tracked message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    /// It executed.
    Landed {
        /// Its exit code.
        exit_code: u32,
        /// The epoch it executed at.
        epoch: i64,
        /// Its return value.
        return_data: Vec<u8>,
    },
    /// The message pool refused it.
    Refused {
        /// What the pool said.
        reason: String,
    },
}

impl PaymentChannelManager {
    /// Records a create message with the channel, makes both durable, pushes it.
    pub(super) async fn send_create(
        &self,
        mut record: ChannelRecord,
        amount: TokenAmount,
        reserve: TokenAmount,
    ) -> Result<Cid, ChainMessageError> {
        let code = self.inner.chain.actor_code(ActorKind::PaymentChannel).await?;
        let ctor =
            fvm_ipld_encoding::to_vec(&ConstructorParams { from: record.from, to: record.to })
                .map_err(|e| ChainMessageError::Encode(e.into()))?;
        let params =
            fvm_ipld_encoding::to_vec(&ExecParams { code_cid: code, constructor_params: ctor })
                .map_err(|e| ChainMessageError::Encode(e.into()))?;
        let message = Message::new(
            record.from,
            Address::new_id(INIT_ACTOR_ID),
            0,
            amount.clone(),
            INIT_EXEC_METHOD,
            params,
        );
        let purpose = MessagePurpose::Create { channel: record.id, amount, reserve };
        self.send(message, purpose, |cid| {
            record.pending_message = Some(cid);
            vec![Write::Channel(record)]
        })
        .await
    }

    /// Records an add-funds message (with the channel's queue folded in), pushes it.
    pub(super) async fn send_add_funds(
        &self,
        mut record: ChannelRecord,
        amount: TokenAmount,
        reserve: TokenAmount,
    ) -> Result<Cid, ChainMessageError> {
        let channel = record
            .channel
            .ok_or_else(|| ChainMessageError::UnknownChannel(format!("#{}", record.id)))?;
        let folds_queue = !record.queued.is_zero();
        let amount = amount + std::mem::take(&mut record.queued);
        let reserve = reserve + std::mem::take(&mut record.queued_reserve);
        let message =
            Message::new(record.from, channel, 0, amount.clone(), METHOD_SEND, Vec::new());
        let purpose =
            MessagePurpose::AddFunds { channel: record.id, amount: amount.clone(), reserve };
        self.send(message, purpose, |cid| {
            if folds_queue {
                self.record_fold(record.id, cid);
            }
            record.pending += &amount;
            record.pending_message = Some(cid);
            vec![Write::Channel(record)]
        })
        .await
    }

    /// Records a settle, collect or submit message from our key on the channel, pushes it.
    pub(super) async fn send_channel_method(
        &self,
        record: &ChannelRecord,
        purpose: MessagePurpose,
    ) -> Result<Cid, ChainMessageError> {
        let channel = record
            .channel
            .ok_or_else(|| ChainMessageError::UnknownChannel(format!("#{}", record.id)))?;
        let method = match &purpose {
            MessagePurpose::Settle { .. } => paych_method::SETTLE,
            MessagePurpose::Collect { .. } => paych_method::COLLECT,
            MessagePurpose::Submit { .. } => paych_method::UPDATE_CHANNEL_STATE,
            MessagePurpose::Create { .. } | MessagePurpose::AddFunds { .. } => METHOD_SEND,
        };
        let message =
            Message::new(record.control, channel, 0, TokenAmount::default(), method, Vec::new());
        let settling = matches!(purpose, MessagePurpose::Settle { .. });
        let mut record = record.clone();
        self.send(message, purpose, move |_| {
            // A channel being settled takes no new payments: the next `get` makes a new one.
            match settling.then(|| record.begin_settling()) {
                Some(Ok(())) => vec![Write::Channel(record)],
                Some(Err(e)) => {
                    tracing::warn!(channel = record.id, error = %e, "settle sent on a channel not open");
                    Vec::new()
                }
                None => Vec::new(),
            }
        })
        .await
    }

    /// Records a submit message carrying `params`, marking the vouchers it supersedes.
    pub(super) async fn send_submit(
        &self,
        record: &ChannelRecord,
        params: &UpdateChannelStateParams,
    ) -> Result<Cid, ChainMessageError> {
        let channel = record
            .channel
            .ok_or_else(|| ChainMessageError::UnknownChannel(format!("#{}", record.id)))?;
        let bytes =
            fvm_ipld_encoding::to_vec(params).map_err(|e| ChainMessageError::Encode(e.into()))?;
        let message = Message::new(
            record.control,
            channel,
            0,
            TokenAmount::default(),
            paych_method::UPDATE_CHANNEL_STATE,
            bytes,
        );
        let (lane, nonce) = (params.sv.lane, params.sv.nonce);
        let marks = mark_submitted(self.inner.store.vouchers(record.id)?, lane, nonce);
        let marked = marks
            .iter()
            .filter_map(|w| match w {
                Write::Voucher(v) => Some(v.voucher.nonce),
                _ => None,
            })
            .collect();
        let purpose = MessagePurpose::Submit { channel: record.id, lane, nonce, marked };
        self.send(message, purpose, move |_| marks).await
    }

    /// The one path of every message: under the sender's turn, give it a nonce and gas and
    /// sign it; record it with the writes `with` makes (given its CID) and make them durable;
    /// push it; track it.
    async fn send(
        &self,
        message: Message,
        purpose: MessagePurpose,
        with: impl FnOnce(Cid) -> Vec<Write>,
    ) -> Result<Cid, ChainMessageError> {
        if self.is_shutting_down() {
            return Err(ChainMessageError::ShuttingDown);
        }
        let sender = self.sender_lock(message.from);
        let turn = sender.lock().await;
        let signed =
            prepare_message(self.inner.chain.as_ref(), self.inner.wallet.as_ref(), message).await?;
        let cid = signed.cid()?;
        let span = tracing::info_span!("chain_message", %cid, purpose = ?purpose);
        let _entered = span.enter();
        let mut batch = with(cid);
        batch.push(Write::Message(MessageRecord {
            cid,
            signed: signed.clone(),
            purpose,
            state: MessageState::Recorded,
        }));
        self.inner.store.apply(batch)?;
        drop(_entered);
        self.inner.store.durable().await?;
        let pushed = self.inner.chain.push(&signed).await;
        drop(turn);
        match pushed {
            Ok(_) => {
                self.pushed(&cid)?;
                tracing::info!(parent: &span, "pushed");
                self.track(cid);
                Ok(cid)
            }
            Err(ChainError::Rejected { message, .. }) => {
                self.refused(&cid, message.clone()).await?;
                Err(ChainMessageError::MessageRefused { cid, reason: message })
            }
            Err(other) => {
                // Not known to be refused: keep it recorded; recovery pushes it again.
                tracing::warn!(parent: &span, error = %other, "push failed; will retry");
                self.track(cid);
                Err(other.into())
            }
        }
    }

    /// Records that the message pool took the message.
    fn pushed(&self, cid: &Cid) -> Result<(), ChainMessageError> {
        if let Some(mut record) = self.inner.store.message(cid)? {
            if record.mark_pushed().is_ok() {
                self.inner.store.apply(vec![Write::Message(record)])?;
                // Reservations queued behind an earlier message wait for this one to be
                // known pushed.
                self.notify();
            }
        }
        Ok(())
    }

    /// Follows a message in the background until it lands, then applies its effects.
    pub(super) fn track(&self, cid: Cid) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let manager = self.clone();
        tokio::spawn(async move {
            let mut shutdown = manager.inner.shutdown.subscribe();
            loop {
                if *shutdown.borrow() {
                    return;
                }
                let wait = manager.inner.chain.wait(
                    &cid,
                    manager.inner.config.confidence,
                    manager.inner.config.wait_timeout,
                );
                let result = tokio::select! {
                    r = wait => r,
                    _ = shutdown.changed() => return,
                };
                match result {
                    Ok(lookup) => match manager.landed(&cid, lookup).await {
                        Ok(()) => return,
                        Err(e) => {
                            // A transient chain or store failure while applying its effects:
                            // ask again rather than leave its funds pending until a restart.
                            tracing::warn!(%cid, error = %e, "cannot record a landed message yet; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    },
                    Err(ChainError::Timeout(_)) => continue,
                    Err(ChainError::NotFound(_)) => {
                        // The pool lost it (or never had it): push the same message again.
                        if let Err(e) = manager.repush(&cid).await {
                            tracing::warn!(%cid, error = %e, "push again failed");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%cid, error = %e, "waiting for a message failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    async fn repush(&self, cid: &Cid) -> Result<(), ChainMessageError> {
        let Some(record) = self.inner.store.message(cid)? else { return Ok(()) };
        if !record.is_open() {
            return Ok(());
        }
        if self.inner.chain.search(cid).await?.is_some() {
            return Ok(());
        }
        match self.inner.chain.push(&record.signed).await {
            Ok(_) => self.pushed(cid),
            Err(ChainError::Rejected { message, .. }) => self.refused(cid, message).await,
            Err(e) => Err(e.into()),
        }
    }

    /// A message the pool refused: it will never land; undo what it carried.
    async fn refused(&self, cid: &Cid, reason: String) -> Result<(), ChainMessageError> {
        let Some(mut record) = self.inner.store.message(cid)? else { return Ok(()) };
        if let Err(e) = record.mark_refused(reason.clone()) {
            tracing::debug!(%cid, error = %e, "refusal of a message already resolved");
            return Ok(());
        }
        let mut batch = self.undo(&record, &reason)?;
        batch.push(Write::Message(record));
        Ok(self.commit(batch).await?)
    }

    /// The channel writes that undo a message that failed or was refused.
    fn undo(&self, message: &MessageRecord, reason: &str) -> Result<Vec<Write>, ChainMessageError> {
        let mut batch = Vec::new();
        match &message.purpose {
            MessagePurpose::Create { channel, amount, .. } => {
                if let Some(mut record) = self.inner.store.channel(*channel)? {
                    if let Err(e) = record.create_failed(reason) {
                        tracing::warn!(channel, error = %e, "failed create of a channel not being created");
                        return Ok(batch);
                    }
                    record.pending -= amount;
                    record.pending_message = None;
                    record.queued = TokenAmount::default();
                    record.queued_reserve = TokenAmount::default();
                    batch.push(Write::Channel(record));
                }
            }
            MessagePurpose::AddFunds { channel, amount, reserve } => {
                if let Some(mut record) = self.inner.store.channel(*channel)? {
                    record.pending -= amount;
                    if record.pending_message == Some(message.cid) {
                        record.pending_message = None;
                    }
                    if reserve.is_positive() {
                        record.queue_failure = Some(reason.to_owned());
                    }
                    batch.push(Write::Channel(record));
                }
            }
            MessagePurpose::Submit { channel, lane, nonce, marked } => {
                // Exactly what the submit marked (a record from before `marked` was kept
                // names only its own voucher).
                let own = [*nonce];
                let nonces = if marked.is_empty() { &own[..] } else { &marked[..] };
                for n in nonces {
                    if let Some(mut v) = self.inner.store.voucher(*channel, *lane, *n)? {
                        if v.unmark_submitted() {
                            batch.push(Write::Voucher(v));
                        }
                    }
                }
            }
            MessagePurpose::Settle { channel } => {
                if let Some(mut record) = self.inner.store.channel(*channel)? {
                    if record.settle_undone() {
                        batch.push(Write::Channel(record));
                    }
                }
            }
            MessagePurpose::Collect { .. } => {}
        }
        Ok(batch)
    }

    /// Records a landed message and applies its effects, atomically and durably; then
    /// sends the channel's queued funds, if any.
    pub(super) async fn landed(
        &self,
        cid: &Cid,
        lookup: MessageLookup,
    ) -> Result<(), ChainMessageError> {
        let Some(mut message) = self.inner.store.message(cid)? else { return Ok(()) };
        let exit_code = lookup.receipt.exit_code.value();
        if message.mark_landed(exit_code, lookup.epoch, lookup.receipt.return_data.clone()).is_err()
        {
            return Ok(());
        }
        tracing::info!(%cid, exit_code, epoch = lookup.epoch, "chain message landed");
        let channel_id = message.purpose.channel();
        let lock = self.channel_lock(channel_id);
        let _guard = lock.lock().await;
        let mut batch = if exit_code == 0 {
            self.effects(&message, &lookup).await?
        } else {
            self.undo(&message, &format!("exit code {exit_code}"))?
        };
        batch.push(Write::Message(message));
        self.commit(batch).await?;
        drop(_guard);
        self.send_queued(channel_id).await
    }

    /// The channel writes of a message that succeeded.
    async fn effects(
        &self,
        message: &MessageRecord,
        lookup: &MessageLookup,
    ) -> Result<Vec<Write>, ChainMessageError> {
        let mut batch = Vec::new();
        match &message.purpose {
            MessagePurpose::Create { channel, amount, reserve } => {
                let ret: ExecReturn = decode::decode(&lookup.receipt.return_data).map_err(|e| {
                    ChainMessageError::Chain(ChainError::Transport(format!("bad Exec return: {e}")))
                })?;
                if let Some(mut record) = self.inner.store.channel(*channel)? {
                    if let Err(e) = record.created(ret.robust_address, ret.id_address) {
                        tracing::warn!(channel, error = %e, "create landed for a channel not being created");
                        return Ok(batch);
                    }
                    record.confirmed += amount;
                    record.pending -= amount;
                    record.reserved += reserve;
                    record.pending_message = None;
                    batch.push(Write::Channel(record));
                }
            }
            MessagePurpose::AddFunds { channel, amount, reserve } => {
                if let Some(mut record) = self.inner.store.channel(*channel)? {
                    record.confirmed += amount;
                    record.pending -= amount;
                    record.reserved += reserve;
                    if record.pending_message == Some(message.cid) {
                        record.pending_message = None;
                    }
                    batch.push(Write::Channel(record));
                }
            }
            MessagePurpose::Submit { .. } => {}
            MessagePurpose::Settle { channel } => {
                if let Some(mut record) = self.inner.store.channel(*channel)? {
                    if let Some(addr) = record.channel {
                        record.settling_at =
                            self.inner.chain.channel(&addr).await?.state.settling_at;
                    }
                    match record.begin_settling() {
                        Ok(()) => batch.push(Write::Channel(record)),
                        Err(e) => tracing::warn!(channel, error = %e, "settle landed"),
                    }
                }
            }
            MessagePurpose::Collect { channel } => {
                if let Some(mut record) = self.inner.store.channel(*channel)? {
                    match record.mark_collected() {
                        Ok(()) => batch.push(Write::Channel(record)),
                        Err(e) => tracing::warn!(channel, error = %e, "collect landed"),
                    }
                }
            }
        }
        Ok(batch)
    }

    /// Sends the funds queued on a channel while a message was in flight, as one message.
    async fn send_queued(&self, id: u64) -> Result<(), ChainMessageError> {
        let lock = self.channel_lock(id);
        let _guard = lock.lock().await;
        let Some(record) = self.inner.store.channel(id)? else { return Ok(()) };
        if record.queued.is_zero()
            || record.pending_message.is_some()
            || record.lifecycle != Lifecycle::Open
        {
            return Ok(());
        }
        self.send_add_funds(record, TokenAmount::default(), TokenAmount::default()).await?;
        Ok(())
    }

    /// Waits until a recorded message has landed or been refused.
    #[tracing::instrument(name = "paych_wait_message", level = "debug", skip_all)]
    pub async fn wait_message(&self, cid: &Cid) -> Result<MessageOutcome, WaitError> {
        let mut changed = self.inner.changed.subscribe();
        loop {
            let record =
                self.inner.store.message(cid)?.ok_or_else(|| {
                    WaitError::Chain(ChainError::NotFound(format!("message {cid}")))
                })?;
            if let Some(outcome) = record.state.outcome() {
                return Ok(outcome);
            }
            if self.is_shutting_down() {
                return Err(WaitError::ShuttingDown);
            }
            if changed.changed().await.is_err() {
                return Err(WaitError::ShuttingDown);
            }
        }
    }

    /// Finds every recorded message again: pushes those never pushed (unchanged), and
    /// tracks every one that has not landed.
    pub(super) async fn recover(&self) -> Result<(), ChainMessageError> {
        for record in self.inner.store.messages()? {
            match record.state {
                MessageState::Recorded => {
                    tracing::info!(cid = %record.cid, "recovering a message recorded but not known pushed");
                    match self.inner.chain.search(&record.cid).await? {
                        Some(lookup) => {
                            self.landed(&record.cid, lookup).await?;
                            continue;
                        }
                        None => match self.inner.chain.push(&record.signed).await {
                            Ok(_) => self.pushed(&record.cid)?,
                            Err(ChainError::Rejected { message, .. }) => {
                                self.refused(&record.cid, message).await?;
                                continue;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "push on recovery failed; tracking")
                            }
                        },
                    }
                    self.track(record.cid);
                }
                MessageState::Pushed => self.track(record.cid),
                MessageState::Landed { .. } | MessageState::Refused { .. } => {}
            }
        }
        Ok(())
    }
}
