//! Vouchers: creation (payer), validation and acceptance (payee), spendability, submission.

use std::collections::HashMap;

use cid::Cid;

use super::{funds, ChannelCache, LaneTip, ManagerError, PaymentChannelManager, Result};
use crate::actor::{self, AccountLookup, ActorEnv, ChannelState, Redemption};
use crate::chain::ChannelOnChain;
use crate::crypto;
use crate::store::{
    ChannelId, ChannelRecord, Direction, Lifecycle, VoucherOrigin, VoucherRecord, Write,
};
use crate::types::{
    paych_method, ActorID, Address, ChainEpoch, ExitCode, Message, ModVerifyParams, Protocol,
    Signature, SignedVoucher, TokenAmount, UpdateChannelStateParams, MAX_LANE,
};

/// What `voucher_create` answers: a voucher, or the shortfall that prevented it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherCreateResult {
    /// The signed voucher; `None` when the channel cannot cover it.
    pub voucher: Option<SignedVoucher>,
    /// How much the channel lacks to cover every lane's total with this voucher.
    pub shortfall: TokenAmount,
}

/// The optional parts of a voucher to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoucherSpec {
    /// The lane's new cumulative amount.
    pub amount: TokenAmount,
    /// Not redeemable before this epoch.
    pub time_lock_min: ChainEpoch,
    /// Not redeemable after this epoch (0: no limit).
    pub time_lock_max: ChainEpoch,
    /// The channel cannot settle before this epoch.
    pub min_settle_height: ChainEpoch,
    /// A call the actor makes before redeeming.
    pub extra: Option<ModVerifyParams>,
    /// blake2b-256 of a secret required to redeem.
    pub secret_hash: Vec<u8>,
}

/// What `voucher_add` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    /// Stored; the voucher raises what the lane pays by `delta`.
    Accepted {
        /// The increase over the lane's previous best voucher.
        delta: TokenAmount,
    },
    /// An older voucher whose amount the lane's accepted amount already includes: nothing
    /// to store, nothing wrong.
    Covered {
        /// The lane's accepted amount.
        lane_amount: TokenAmount,
    },
    /// This very voucher is already held: a re-sent voucher credits nothing again.
    AlreadyHeld,
}

/// What a channel looks like to voucher validation: the chain's state with the vouchers this
/// node holds laid over it, and everything the actor will ask, fetched beforehand.
struct Validation {
    epoch: ChainEpoch,
    balance: TokenAmount,
    caller: Address,
    receiver: Address,
    ids: HashMap<Address, ActorID>,
    keys: HashMap<Address, Address>,
    extra: Option<Result<(), ExitCode>>,
}

impl ActorEnv for Validation {
    fn epoch(&self) -> ChainEpoch {
        self.epoch
    }
    fn balance(&self) -> TokenAmount {
        self.balance.clone()
    }
    fn caller(&self) -> Address {
        self.caller
    }
    fn receiver(&self) -> Address {
        self.receiver
    }
    fn resolve_address(&self, addr: &Address) -> Option<ActorID> {
        addr.id().ok().or_else(|| self.ids.get(addr).copied())
    }
    fn resolve_account(&self, _addr: &Address) -> AccountLookup {
        AccountLookup::NotFound
    }
    fn verify_signature(
        &self,
        signature: &Signature,
        signer: &Address,
        data: &[u8],
    ) -> Result<(), String> {
        let key = self.keys.get(signer).ok_or_else(|| format!("no key known for {signer}"))?;
        crypto::verify(signature, key, data).map_err(|e| e.to_string())
    }
    fn call_extra(&self, _extra: &ModVerifyParams) -> Result<(), ExitCode> {
        self.extra.unwrap_or(Ok(()))
    }
}

impl PaymentChannelManager {
    /// Creates a voucher on `lane` for the lane's new cumulative `amount`, with the lane's
    /// next nonce, signed by the channel's payer, durable before it is returned. When the
    /// channel's confirmed funds cannot cover every lane's total, answers the shortfall and
    /// signs nothing.
    #[tracing::instrument(name = "paych_voucher_create", level = "debug", skip_all)]
    pub async fn voucher_create(
        &self,
        channel: &Address,
        amount: TokenAmount,
        lane: u64,
    ) -> Result<VoucherCreateResult> {
        self.voucher_create_with(channel, lane, VoucherSpec { amount, ..VoucherSpec::default() })
            .await
    }

    /// [`Self::voucher_create`] with time locks, a minimum settle height, an extra call or
    /// a secret hash.
    #[tracing::instrument(name = "paych_voucher_create_with", level = "debug", skip_all)]
    pub async fn voucher_create_with(
        &self,
        channel: &Address,
        lane: u64,
        spec: VoucherSpec,
    ) -> Result<VoucherCreateResult> {
        if spec.amount.is_negative() {
            return Err(ManagerError::InvalidAmount(
                "a voucher amount cannot be negative".to_owned(),
            ));
        }
        self.create_on_lane(channel, lane, spec, false).await
    }

    /// Creates a voucher on `lane` paying `delta` more than the lane's latest voucher: the
    /// lane's amount is read and raised under the channel's lock, so concurrent payments on
    /// one lane each add their own `delta` (with rising nonces) and none needs to know the
    /// lane's amount first. Otherwise as [`Self::voucher_create`]; a zero or negative
    /// `delta` is refused. Should a voucher's signature fail after a later payment on its
    /// lane built on it, the later voucher's amount still includes the failed payment's
    /// `delta` (the payee is paid for it; the channel never promises more than it holds).
    #[tracing::instrument(name = "paych_voucher_pay", level = "debug", skip_all)]
    pub async fn voucher_pay(
        &self,
        channel: &Address,
        lane: u64,
        delta: TokenAmount,
    ) -> Result<VoucherCreateResult> {
        if !delta.is_positive() {
            return Err(ManagerError::InvalidAmount("a payment must be positive".to_owned()));
        }
        self.create_on_lane(
            channel,
            lane,
            VoucherSpec { amount: delta, ..VoucherSpec::default() },
            true,
        )
        .await
    }

    /// The one path of voucher creation: `spec.amount` is the lane's new amount, or (when
    /// `add_to_lane`) what the voucher adds to the lane's latest amount.
    async fn create_on_lane(
        &self,
        channel: &Address,
        lane: u64,
        mut spec: VoucherSpec,
        add_to_lane: bool,
    ) -> Result<VoucherCreateResult> {
        if lane > MAX_LANE {
            return Err(ManagerError::InvalidVoucher(actor::ActorError::LaneTooLarge(lane)));
        }
        let id = self.channel_id(channel)?;
        let lock = self.channel_lock(id);
        let mut cache = lock.lock().await;
        let mut record = self.record(id)?;
        self.expect_direction(&record, Direction::Outbound)?;
        self.expect_open(&record)?;
        if record.closed_lanes.contains(&lane) {
            return Err(ManagerError::LaneClosed(lane));
        }
        self.load_cache(record.id, &mut cache)?;
        let previous = cache.lanes.get(&lane).cloned();
        let tip = previous.clone().unwrap_or_default();
        if add_to_lane {
            spec.amount = &tip.amount + &spec.amount;
        }
        if spec.amount < tip.amount {
            return Err(ManagerError::AmountBelowLane {
                lane,
                previous: tip.amount,
                requested: spec.amount,
            });
        }
        let delta = &spec.amount - &tip.amount;
        let shortfall = funds::shortfall(&record, &cache.spent(), &delta);
        if shortfall.is_positive() {
            return Ok(VoucherCreateResult { voucher: None, shortfall });
        }
        let channel_addr =
            record.channel.ok_or_else(|| ManagerError::UnknownChannel(self.describe(&record)))?;
        let mut voucher =
            SignedVoucher::new(channel_addr, lane, tip.nonce + 1, spec.amount.clone());
        voucher.time_lock_min = spec.time_lock_min;
        voucher.time_lock_max = spec.time_lock_max;
        voucher.min_settle_height = spec.min_settle_height;
        voucher.extra = spec.extra;
        voucher.secret_hash = spec.secret_hash;
        let signing = voucher.signing_bytes()?;

        // Under the lock: the voucher's nonce and amount become the lane's tip, and what it
        // draws on the reservation and the lane it opens are written, so the next caller
        // builds on them. Signing and storing the voucher happen outside it, so creates on
        // other lanes of the channel sign in parallel. A crash before the voucher is stored
        // loses a voucher never returned (its nonce may then be given again) and leaves the
        // reservation lower by what it drew: never more money promised than the channel has.
        let drawn = funds::drawn_from_reserve(&record, &delta);
        let next_lane = record.next_lane.max(lane.saturating_add(1));
        if drawn.is_positive() || next_lane != record.next_lane {
            record.reserved -= &drawn;
            record.next_lane = next_lane;
            self.inner.store.apply(vec![Write::Channel(record.clone())])?;
        }
        cache.lanes.insert(lane, LaneTip { nonce: voucher.nonce, amount: spec.amount.clone() });
        let in_flight = super::InFlight::enter(&cache.in_flight);
        drop(cache);
        // When another caller was waiting, releasing the lock handed it over and woke that
        // caller into this worker's next slot, where it would wait for this signature.
        // Yielding lets it take its turn while an idle worker picks this task up, so the two
        // sign in parallel. (The lock still free means no one was waiting: no yield.)
        match lock.try_lock() {
            Ok(free) => drop(free),
            Err(_) => tokio::task::yield_now().await,
        }

        let signature = match self.inner.wallet.sign(&record.from, &signing) {
            Ok(signature) => signature,
            Err(e) => {
                self.undo_create(record.id, lane, previous, voucher.nonce, drawn).await;
                return Err(e.into());
            }
        };
        voucher.signature = Some(signature);
        let id = record.id;
        self.inner.store.apply(vec![Write::Voucher(VoucherRecord {
            channel: id,
            voucher: voucher.clone(),
            origin: VoucherOrigin::Created,
            submitted: false,
            superseded: false,
        })])?;
        drop(in_flight);
        // Made durable outside the lock, so that concurrent callers share one flush; the
        // voucher is returned only once durable.
        self.inner.store.durable().await?;
        self.notify();
        self.maybe_top_up(id);
        Ok(VoucherCreateResult { voucher: Some(voucher), shortfall: TokenAmount::default() })
    }

    /// Takes back a voucher whose signing failed: its lane's tip goes back to `previous`
    /// (none: the lane had no voucher) unless a later voucher already builds on it, and what
    /// it drew returns to the reservation.
    async fn undo_create(
        &self,
        id: ChannelId,
        lane: u64,
        previous: Option<LaneTip>,
        nonce: u64,
        drawn: TokenAmount,
    ) {
        let lock = self.channel_lock(id);
        let mut cache = lock.lock().await;
        if cache.lanes.get(&lane).is_some_and(|tip| tip.nonce == nonce) {
            match previous {
                Some(tip) => cache.lanes.insert(lane, tip),
                None => cache.lanes.remove(&lane),
            };
        }
        if drawn.is_positive() {
            let restored = self.record(id).and_then(|mut record| {
                record.reserved += drawn;
                Ok(self.inner.store.apply(vec![Write::Channel(record)])?)
            });
            if let Err(e) = restored {
                tracing::warn!(channel = id, error = %e, "could not return a failed voucher's draw to the reservation");
            }
        }
    }

    /// Checks a voucher against every rule of the actor — as if the payee submitted it now,
    /// to the chain's state with this node's stored vouchers laid over it. The error names
    /// the rule broken.
    #[tracing::instrument(name = "paych_voucher_check_valid", level = "debug", skip_all)]
    pub async fn voucher_check_valid(
        &self,
        channel: &Address,
        voucher: &SignedVoucher,
    ) -> Result<()> {
        let record = self.record_by_address(channel)?;
        let lock = self.channel_lock(record.id);
        let mut cache = lock.lock().await;
        self.load_cache(record.id, &mut cache)?;
        self.validate(&record, &cache, voucher, &[]).await.map(|_| ())
    }

    /// Runs the actor's `UpdateChannelState` on the merged view of the channel.
    pub(super) async fn validate(
        &self,
        record: &ChannelRecord,
        cache: &ChannelCache,
        voucher: &SignedVoucher,
        secret: &[u8],
    ) -> Result<Redemption> {
        let channel =
            record.channel.ok_or_else(|| ManagerError::UnknownChannel(self.describe(record)))?;
        let chain = &self.inner.chain;
        let (epoch, on_chain) = chain.channel_at_head(&channel).await?;
        let receiver = match record.id_address {
            Some(id) => id,
            None => chain
                .lookup_id(&channel)
                .await?
                .ok_or_else(|| ManagerError::UnknownChannel(self.fmt(&channel)))?,
        };
        let mut ids = HashMap::new();
        if let Some(id) = chain.lookup_id(&voucher.channel_addr).await? {
            if let Ok(id) = id.id() {
                ids.insert(voucher.channel_addr, id);
            }
        }
        let mut keys = HashMap::new();
        for party in [on_chain.state.from, on_chain.state.to] {
            keys.insert(party, chain.account_key(&party).await?);
        }
        let extra = match &voucher.extra {
            Some(extra) => {
                let probe = Message::new(
                    keys.get(&on_chain.state.to).copied().unwrap_or(on_chain.state.to),
                    extra.actor,
                    0,
                    TokenAmount::default(),
                    extra.method,
                    extra.data.clone(),
                );
                let receipt = chain.call(&probe).await?;
                Some(if receipt.is_ok() { Ok(()) } else { Err(receipt.exit_code) })
            }
            None => None,
        };
        let env = Validation {
            epoch,
            balance: on_chain.balance.clone(),
            caller: on_chain.state.to,
            receiver,
            ids,
            keys,
            extra,
        };
        let mut state = merged_state(&on_chain, cache);
        let params = UpdateChannelStateParams { sv: voucher.clone(), secret: secret.to_vec() };
        actor::update_channel_state(&mut state, &env, &params).map_err(ManagerError::InvalidVoucher)
    }

    /// Adds a voucher received from the payer of an inbound channel (learning the channel
    /// from the chain if it is new). Idempotent; durable before it returns; refused if the
    /// actor would refuse it now or it adds less than `min_delta`. An older voucher whose
    /// amount the lane already includes is *covered*, not an error.
    #[tracing::instrument(name = "paych_voucher_add", level = "debug", skip_all)]
    pub async fn voucher_add(
        &self,
        channel: &Address,
        voucher: &SignedVoucher,
        min_delta: TokenAmount,
    ) -> Result<AddOutcome> {
        let span = tracing::debug_span!("paych_voucher_add", channel = %self.fmt(channel), lane = voucher.lane, nonce = voucher.nonce);
        let _entered = span.enter();
        if voucher.amount.is_negative() {
            return Err(ManagerError::InvalidAmount(
                "a voucher amount cannot be negative".to_owned(),
            ));
        }
        drop(_entered);
        // A channel first seen in this voucher is stored with the voucher or not at all;
        // first adds on unknown channels take turns, so that each is learned once.
        let (record, learning) = match self.stored_channel(channel).await? {
            Some(record) => (record, None),
            None => {
                let turn = self.inner.learning.lock().await;
                match self.stored_channel(channel).await? {
                    Some(record) => (record, None),
                    None => (self.learn_inbound(channel).await?, Some(turn)),
                }
            }
        };
        self.expect_direction(&record, Direction::Inbound)?;
        // A channel being learned is reachable by no one else yet: it needs no lock of its own
        // (and a refused first voucher leaves none behind).
        let lock = match learning {
            Some(_) => std::sync::Arc::default(),
            None => self.channel_lock(record.id),
        };
        let mut cache = lock.lock().await;
        let record = if learning.is_some() { record } else { self.record(record.id)? };
        self.load_cache(record.id, &mut cache)?;

        if let Some(stored) = self.inner.store.voucher(record.id, voucher.lane, voucher.nonce)? {
            if &stored.voucher != voucher {
                return Err(ManagerError::ConflictingVoucher {
                    lane: voucher.lane,
                    nonce: voucher.nonce,
                });
            }
            return Ok(AddOutcome::AlreadyHeld);
        }
        if let Some(tip) = cache.lanes.get(&voucher.lane) {
            if tip.nonce > voucher.nonce
                && voucher.amount <= tip.amount
                && voucher.merges.is_empty()
            {
                // Only this channel's lane covers it: a voucher naming another channel is not.
                if Some(voucher.channel_addr) != record.channel
                    && Some(voucher.channel_addr) != record.id_address
                {
                    return Err(ManagerError::ForeignVoucher(self.fmt(channel)));
                }
                self.verify_payer_signature(&record, voucher).await?;
                return Ok(AddOutcome::Covered { lane_amount: tip.amount.clone() });
            }
        }
        let redemption = self.validate(&record, &cache, voucher, &[]).await?;
        if redemption.delta < min_delta {
            return Err(ManagerError::BelowMinDelta { delta: redemption.delta, min_delta });
        }
        let mut writes = vec![Write::Voucher(VoucherRecord {
            channel: record.id,
            voucher: voucher.clone(),
            origin: VoucherOrigin::Received,
            submitted: false,
            superseded: false,
        })];
        // A voucher that merges lanes supersedes what this node holds on them.
        writes.extend(self.supersede_merged(&record, voucher)?);
        let mut updated = record.clone();
        if voucher.lane >= record.next_lane {
            updated.next_lane = voucher.lane.saturating_add(1);
        }
        // A channel learned by its ID address keeps the robust address it is also named by
        // (`stored_channel` found it through the chain), so that both find it from now on.
        if record.channel == record.id_address && channel.protocol() != Protocol::ID {
            updated.channel = Some(*channel);
        }
        if updated != record {
            writes.push(Write::Channel(updated));
        }
        // A learned channel is in `writes` (its next lane is raised to the voucher's).
        self.inner.store.apply(writes)?;
        drop(learning);
        cache
            .lanes
            .insert(voucher.lane, LaneTip { nonce: voucher.nonce, amount: voucher.amount.clone() });
        for merge in &voucher.merges {
            let tip = cache.lanes.entry(merge.lane).or_default();
            if merge.nonce > tip.nonce {
                // Its amount is folded into the merging voucher's.
                *tip = LaneTip { nonce: merge.nonce, amount: TokenAmount::default() };
            }
        }
        drop(cache);
        // Acknowledged only once durable; concurrent adds share the flush.
        self.inner.store.durable().await?;
        self.notify();
        tracing::debug!(parent: &span, delta = %redemption.delta.atto(), "voucher accepted");
        Ok(AddOutcome::Accepted { delta: redemption.delta })
    }

    /// The writes marking vouchers on lanes a voucher merges as superseded.
    fn supersede_merged(
        &self,
        record: &ChannelRecord,
        voucher: &SignedVoucher,
    ) -> Result<Vec<Write>> {
        if voucher.merges.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .inner
            .store
            .vouchers(record.id)?
            .into_iter()
            .filter(|r| {
                voucher.merges.iter().any(|m| m.lane == r.voucher.lane && r.voucher.nonce < m.nonce)
                    && !r.superseded
            })
            .map(|mut r| {
                r.superseded = true;
                Write::Voucher(r)
            })
            .collect())
    }

    async fn verify_payer_signature(
        &self,
        record: &ChannelRecord,
        voucher: &SignedVoucher,
    ) -> Result<()> {
        let key = self.inner.chain.account_key(&record.from).await?;
        let signature = voucher
            .signature
            .as_ref()
            .ok_or(ManagerError::InvalidVoucher(actor::ActorError::MissingSignature))?;
        crypto::verify(signature, &key, &voucher.signing_bytes()?).map_err(|e| {
            ManagerError::InvalidVoucher(actor::ActorError::InvalidSignature(e.to_string()))
        })
    }

    /// The record of an inbound channel first seen in a voucher, not yet stored: the chain
    /// must know it, and its payee must be a key of this wallet.
    /// The channel stored under `channel`, or under the ID address the chain resolves it to:
    /// a channel first learned by its ID address is the same channel when a voucher names it
    /// by its robust one (learning it again would give one channel two records).
    async fn stored_channel(&self, channel: &Address) -> Result<Option<ChannelRecord>> {
        if let Some(record) = self.inner.store.channel_by_address(channel)? {
            return Ok(Some(record));
        }
        let id = match self.inner.chain.lookup_id(channel).await {
            Ok(Some(id)) if id != *channel => id,
            Ok(_) | Err(crate::chain::ChainError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(self.inner.store.channel_by_address(&id)?)
    }

    async fn learn_inbound(&self, channel: &Address) -> Result<ChannelRecord> {
        let chain = &self.inner.chain;
        let on_chain = match chain.channel(channel).await {
            Ok(c) => c,
            Err(crate::chain::ChainError::NotFound(_)) => {
                return Err(ManagerError::UnknownChannel(self.fmt(channel)))
            }
            Err(e) => return Err(e.into()),
        };
        let to_key = chain.account_key(&on_chain.state.to).await?;
        if !self.inner.wallet.has(&to_key) {
            return Err(ManagerError::ForeignVoucher(self.fmt(channel)));
        }
        let from_key = chain.account_key(&on_chain.state.from).await?;
        let record = ChannelRecord {
            id: self.inner.store.next_channel_id()?,
            direction: Direction::Inbound,
            channel: Some(*channel),
            id_address: chain.lookup_id(channel).await?,
            from: from_key,
            to: to_key,
            control: to_key,
            lifecycle: if on_chain.state.settling_at != 0 {
                Lifecycle::Settling
            } else {
                Lifecycle::Open
            },
            confirmed: on_chain.balance.clone(),
            pending: TokenAmount::default(),
            pending_message: None,
            queued: TokenAmount::default(),
            queued_reserve: TokenAmount::default(),
            reserved: TokenAmount::default(),
            next_lane: 0,
            free_lanes: Vec::new(),
            closed_lanes: Vec::new(),
            settling_at: on_chain.state.settling_at,
            create_error: None,
            queue_failure: None,
        };
        Ok(record)
    }

    /// Whether submitting the voucher now would succeed: `false` — not an error — when it
    /// was already submitted or superseded, or a dry run on the chain fails.
    #[tracing::instrument(name = "paych_voucher_check_spendable", level = "debug", skip_all)]
    pub async fn voucher_check_spendable(
        &self,
        channel: &Address,
        voucher: &SignedVoucher,
        secret: &[u8],
    ) -> Result<bool> {
        let record = self.record_by_address(channel)?;
        if self.already_submitted(&record, voucher)?.is_some() {
            return Ok(false);
        }
        if let Some(stored) = self.inner.store.voucher(record.id, voucher.lane, voucher.nonce)? {
            if stored.superseded {
                return Ok(false);
            }
        }
        let channel_addr =
            record.channel.ok_or_else(|| ManagerError::UnknownChannel(self.describe(&record)))?;
        let params = UpdateChannelStateParams { sv: voucher.clone(), secret: secret.to_vec() };
        let params =
            fvm_ipld_encoding::to_vec(&params).map_err(|e| ManagerError::Encode(e.into()))?;
        let probe = Message::new(
            record.control,
            channel_addr,
            0,
            TokenAmount::default(),
            paych_method::UPDATE_CHANNEL_STATE,
            params,
        );
        Ok(self.inner.chain.call(&probe).await?.is_ok())
    }

    /// The voucher, or a later one on its lane, that was already submitted.
    fn already_submitted(
        &self,
        record: &ChannelRecord,
        voucher: &SignedVoucher,
    ) -> Result<Option<(u64, u64)>> {
        Ok(self
            .inner
            .store
            .vouchers(record.id)?
            .into_iter()
            .find(|r| {
                r.submitted && r.voucher.lane == voucher.lane && r.voucher.nonce >= voucher.nonce
            })
            .map(|r| (r.voucher.lane, r.voucher.nonce)))
    }

    /// Every voucher held for a channel, by lane then nonce.
    #[tracing::instrument(name = "paych_voucher_list", level = "debug", skip_all)]
    pub fn voucher_list(&self, channel: &Address) -> Result<Vec<SignedVoucher>> {
        let record = self.record_by_address(channel)?;
        Ok(self.inner.store.vouchers(record.id)?.into_iter().map(|r| r.voucher).collect())
    }

    /// The best voucher per lane that could be submitted now: the highest nonce not
    /// submitted nor superseded, that a dry run accepts.
    #[tracing::instrument(name = "paych_voucher_best_spendable", level = "debug", skip_all)]
    pub async fn voucher_best_spendable(&self, channel: &Address) -> Result<Vec<SignedVoucher>> {
        let record = self.record_by_address(channel)?;
        let mut best: std::collections::BTreeMap<u64, SignedVoucher> =
            std::collections::BTreeMap::new();
        for r in self.inner.store.vouchers(record.id)? {
            if r.submitted || r.superseded {
                continue;
            }
            best.insert(r.voucher.lane, r.voucher);
        }
        let mut spendable = Vec::new();
        for voucher in best.into_values() {
            if self.voucher_check_spendable(channel, &voucher, &[]).await? {
                spendable.push(voucher);
            }
        }
        Ok(spendable)
    }

    /// Submits a voucher to the chain (adding it first if this node does not hold it),
    /// marking it and every lower nonce on its lane submitted. A voucher already submitted
    /// (or below one that was) is refused.
    #[tracing::instrument(name = "paych_voucher_submit", level = "debug", skip_all)]
    pub async fn voucher_submit(
        &self,
        channel: &Address,
        voucher: &SignedVoucher,
        secret: &[u8],
    ) -> Result<Cid> {
        let record = self.record_by_address(channel)?;
        if let Some((lane, nonce)) = self.already_submitted(&record, voucher)? {
            return Err(ManagerError::AlreadySubmitted { lane, nonce });
        }
        if self.inner.store.voucher(record.id, voucher.lane, voucher.nonce)?.is_none() {
            if record.direction == Direction::Inbound {
                self.voucher_add(channel, voucher, TokenAmount::default()).await?;
            } else {
                return Err(ManagerError::ForeignVoucher(self.fmt(channel)));
            }
        }
        let lock = self.channel_lock(record.id);
        let _guard = lock.lock().await;
        let record = self.record(record.id)?;
        let params = UpdateChannelStateParams { sv: voucher.clone(), secret: secret.to_vec() };
        self.send_submit(&record, &params).await
    }

    /// Lotus's `PaychNewPayment`: gets (or creates) the channel from `from` to `to` with
    /// the last spec's amount, waits until it is ready, allocates a lane and creates one
    /// voucher per spec on it.
    #[tracing::instrument(name = "paych_new_payment", level = "debug", skip_all)]
    pub async fn new_payment(
        &self,
        from: Address,
        to: Address,
        specs: Vec<VoucherSpec>,
    ) -> Result<(Address, Vec<SignedVoucher>)> {
        let total = specs.last().map(|s| s.amount.clone()).unwrap_or_default();
        let handle = self.get(from, to, total).await?;
        let channel = match (handle.channel, handle.wait_sentinel) {
            (_, Some(sentinel)) => self.get_wait_ready(&sentinel).await?,
            (Some(channel), None) => channel,
            (None, None) => return Err(ManagerError::UnknownChannel(format!("#{}", handle.id))),
        };
        let lane = self.allocate_lane(&channel).await?;
        let mut vouchers = Vec::with_capacity(specs.len());
        for spec in specs {
            let created = self.voucher_create_with(&channel, lane, spec).await?;
            match created.voucher {
                Some(v) => vouchers.push(v),
                None => {
                    return Err(ManagerError::InvalidAmount(format!(
                        "the channel lacks {} attoFIL for this payment",
                        created.shortfall.atto()
                    )))
                }
            }
        }
        Ok((channel, vouchers))
    }
}

/// The chain's channel state with the tips of this node's stored vouchers laid over its
/// lanes (a stored voucher above the chain's nonce counts as redeemed), `to_send` raised by
/// what they add.
fn merged_state(on_chain: &ChannelOnChain, cache: &ChannelCache) -> ChannelState {
    let mut state = on_chain.state.clone();
    for (lane, tip) in &cache.lanes {
        let chain_lane = state.lanes.entry(*lane).or_default();
        if tip.nonce > chain_lane.nonce {
            let added = &tip.amount - &chain_lane.redeemed;
            if added.is_positive() {
                state.to_send += added;
            }
            chain_lane.nonce = tip.nonce;
            chain_lane.redeemed = tip.amount.clone();
        }
    }
    state
}
