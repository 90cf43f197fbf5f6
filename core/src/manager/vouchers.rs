//! Vouchers: creation (payer), validation and acceptance (payee), spendability, submission.

use std::collections::HashMap;

use cid::Cid;

use super::{
    check_lane_use, funds, mark_lane, pending_lane_rule, replacement_rule, replaces_held,
    AddVoucherError, CheckVoucherError, ConditionalTerms, CreateVoucherError, Creation, Held,
    LaneTip, LookupError, NewPaymentError, PaymentChannelManager, SubmitError,
};
use crate::actor::{self, AccountLookup, ActorEnv, ExtraCallFailure, Invocation, Redemption};
use crate::chain::{ChainError, ChannelOnChain};
use crate::crypto;
use crate::redemption::{self, Situation, Unredeemable};
use crate::route::RouteRefusal;
use crate::store::{
    ChannelId, ChannelRecord, Direction, Lifecycle, StoreError, VoucherOrigin, VoucherRecord, Write,
};
use crate::types::{
    paych_method, ActorID, Address, ChainEpoch, Message, ModVerifyParams, Protocol, SignedVoucher,
    TokenAmount, UpdateChannelStateParams, MAX_LANE,
};

/// The ID of a channel record learned for a check and never stored.
const UNSTORED_CHANNEL: ChannelId = ChannelId::MAX;

/// A voucher older than the held one at `held_nonce` on its lane: Lotus's "nonce too low".
fn stale(voucher: &SignedVoucher, held_nonce: u64) -> AddVoucherError {
    AddVoucherError::InvalidVoucher(actor::ActorError::StaleNonce {
        lane: voucher.lane,
        existing: held_nonce,
        voucher: voucher.nonce,
    })
}

/// Check-valid's answer to an assessment: an older voucher a held one covers is refused as
/// add refuses it in Lotus's terms (its nonce is too low).
fn stale_is_refused(
    voucher: &SignedVoucher,
    assessed: Result<Assessment, AddVoucherError>,
) -> Result<(), AddVoucherError> {
    match assessed? {
        Assessment::Covered { nonce, .. } => Err(stale(voucher, nonce)),
        Assessment::Accept { .. } | Assessment::Hold => Ok(()),
    }
}

/// What `voucher_create` answers: a voucher, or the shortfall that prevented it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherCreateResult {
    /// The signed voucher; `None` when the channel cannot cover it.
    pub voucher: Option<SignedVoucher>,
    /// How much the channel lacks to cover every lane's total with this voucher.
    pub shortfall: TokenAmount,
}

/// What `new_payment` answers: Lotus's `PaymentInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment {
    /// The channel paid on.
    pub channel: Address,
    /// The create or add-funds message the payment's funds came with, if one was sent
    /// (landed by the time the answer is given).
    pub wait_sentinel: Option<Cid>,
    /// One voucher per spec, on one new lane.
    pub vouchers: Vec<SignedVoucher>,
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

/// What a voucher comes in as, and so which checks intake makes of it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Intake<'a> {
    /// A voucher paying on its own: credited what the redemption model says it adds.
    Plain,
    /// A routed payment's conditional voucher, on the route's terms.
    Conditional(&'a ConditionalTerms),
    /// A routed payment's unconditional voucher replacing the conditional one held on its
    /// lane: taken only as that exact replacement, and credited nothing (the route was paid
    /// by the secret); see [`PaymentChannelManager::replacement_add`].
    Replacement,
}

/// What intake decided about a voucher not held yet.
enum Assessment {
    /// Store it and credit `delta` (0: held, answered covered); the channel's credit
    /// becomes `credited`.
    Accept { delta: TokenAmount, credited: TokenAmount },
    /// Store it, crediting nothing and leaving the channel's credited level as it is (it is
    /// already at least everything credited): a route's replacement, or a conditional
    /// voucher no plan can count yet.
    Hold,
    /// An older voucher whose value a held one includes: `nonce` is the held one's.
    Covered { lane_amount: TokenAmount, nonce: u64 },
}

/// What one add did, before it is answered in the payment protocol's terms
/// ([`AddOutcome`]) or Lotus's ([`PaymentChannelManager::voucher_add_lotus`]).
pub(super) enum Added {
    /// Stored, crediting `delta` (positive).
    Credited { delta: TokenAmount },
    /// Stored, adding nothing (a first voucher of 0, say).
    StoredZero { amount: TokenAmount },
    /// Not stored: an older voucher whose value a held one (at `nonce`) includes.
    Covered { lane_amount: TokenAmount, nonce: u64 },
    /// This very voucher is already held.
    AlreadyHeld,
}

/// When an add waits for its voucher to be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flush {
    /// Before it returns: what acknowledges a voucher at once.
    Now,
    /// Not at all: the caller makes the store durable (with writes of its own) before
    /// anything acknowledges the voucher or depends on it leaving the node.
    Caller,
}

/// The chain as validation reads it for one channel.
pub(super) struct ChainView {
    pub(super) head: ChainEpoch,
    pub(super) on_chain: ChannelOnChain,
    pub(super) channel_id: Address,
    pub(super) channel: Address,
}

/// What a channel looks like to voucher validation: the chain's state with the vouchers this
/// node holds laid over it, and everything the actor will ask, fetched beforehand.
struct Validation {
    call: Invocation,
    ids: HashMap<Address, ActorID>,
    keys: HashMap<Address, Address>,
    /// How the dry run of the voucher's `extra` call ended.
    extra: Option<Result<(), ExtraCallFailure>>,
    /// Whether the voucher's signature was verified before (a conditional voucher checked
    /// without its secret runs with its hash cleared, which its signature does not cover).
    signature_checked: bool,
}

impl ActorEnv for Validation {
    fn invocation(&self) -> &Invocation {
        &self.call
    }
    fn resolve_address(&self, addr: &Address) -> Option<ActorID> {
        actor::id_or_lookup(addr, |a| self.ids.get(a).copied())
    }
    fn resolve_account(&self, _addr: &Address) -> AccountLookup {
        AccountLookup::NotFound
    }
    fn verify_signature(
        &self,
        signature: &[u8],
        signer: &Address,
        data: &[u8],
    ) -> Result<(), String> {
        let key = self.keys.get(signer).ok_or_else(|| format!("no key known for {signer}"))?;
        crypto::verify_as_account(signature, key, data).map_err(|e| e.to_string())
    }
    fn call_extra(&self, _extra: &ModVerifyParams) -> Result<(), ExtraCallFailure> {
        self.extra.unwrap_or(Ok(()))
    }
    fn signatures_verified(&self) -> bool {
        self.signature_checked
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
    ) -> Result<VoucherCreateResult, CreateVoucherError> {
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
    ) -> Result<VoucherCreateResult, CreateVoucherError> {
        if spec.amount.is_negative() {
            return Err(CreateVoucherError::InvalidAmount(
                "a voucher amount cannot be negative".to_owned(),
            ));
        }
        self.create_on_lane(channel, lane, spec, Creation::Set).await
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
    ) -> Result<VoucherCreateResult, CreateVoucherError> {
        if !delta.is_positive() {
            return Err(CreateVoucherError::InvalidAmount("a payment must be positive".to_owned()));
        }
        self.create_on_lane(
            channel,
            lane,
            VoucherSpec { amount: delta, ..VoucherSpec::default() },
            Creation::Add,
        )
        .await
    }

    /// The one path of voucher creation: `spec.amount` is the lane's new amount, or (when
    /// `how` adds to the lane) what the voucher adds to the lane's latest amount. A lane with
    /// a pending conditional voucher takes only that voucher's replacement (design §9).
    pub(super) async fn create_on_lane(
        &self,
        channel: &Address,
        lane: u64,
        mut spec: VoucherSpec,
        how: Creation,
    ) -> Result<VoucherCreateResult, CreateVoucherError> {
        if lane > MAX_LANE {
            return Err(CreateVoucherError::InvalidVoucher(actor::ActorError::LaneTooLarge(lane)));
        }
        let id = self.channel_id(channel)?;
        let lock = self.channel_lock(id);
        let mut cache = lock.lock().await;
        let mut record = self.record(id)?;
        self.expect_direction(&record, Direction::Outbound)?;
        self.expect_open(&record)?;
        if record.closed_lanes.contains(&lane) {
            return Err(CreateVoucherError::LaneClosed(lane));
        }
        self.load_cache(record.id, &mut cache)?;
        check_lane_use(&cache.pending, lane, how)?;
        if how == Creation::Conditional && cache.hashes.contains(&spec.secret_hash) {
            return Err(CreateVoucherError::Route(RouteRefusal::HashSeen));
        }
        let previous = cache.lanes.get(&lane).cloned();
        let tip = previous.clone().unwrap_or_default();
        if how.adds_to_lane() {
            spec.amount = &tip.amount + &spec.amount;
        }
        if spec.amount < tip.amount {
            return Err(CreateVoucherError::AmountBelowLane {
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
        let channel_addr = record
            .channel
            .ok_or_else(|| CreateVoucherError::UnknownChannel(self.describe(&record)))?;
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
        mark_lane(&mut cache.pending, &voucher, how);
        if how == Creation::Conditional {
            cache.hashes.insert(voucher.secret_hash.clone());
        }
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

    /// Checks a voucher as intake would take it — the actor's rules against the chain, the
    /// intake policy, and what it would add to what this node can redeem — without storing
    /// anything. It refuses what Lotus's `PaychVoucherAdd` ([`Self::voucher_add_lotus`])
    /// refuses, through the same assessment: an older voucher, even one whose value a held
    /// voucher includes, and one already held, have a stale nonce ("nonce too low" in
    /// Lotus). An inbound channel this node has not seen is learned from the chain for the
    /// check (as Lotus's `CheckVoucherValid` does), its payee a key of this wallet, and not
    /// stored. The error names the rule broken.
    #[tracing::instrument(name = "paych_voucher_check_valid", level = "debug", skip_all)]
    pub async fn voucher_check_valid(
        &self,
        channel: &Address,
        voucher: &SignedVoucher,
    ) -> Result<(), AddVoucherError> {
        self.locks_first(voucher)?;
        let Some(record) = self.inbound_record(channel).await? else {
            // Never stored: the ID is only a name for this check.
            let record = self.learn_inbound(channel, UNSTORED_CHANNEL).await?;
            return stale_is_refused(
                voucher,
                self.assess(&record, &Held::default(), voucher, Intake::Plain).await,
            );
        };
        let lock = self.channel_lock(record.id);
        let mut cache = lock.lock().await;
        self.load_cache(record.id, &mut cache)?;
        if record.direction == Direction::Outbound {
            // The payer's cache follows what it issued, not what intake plans with: plan
            // with every voucher issued and stored.
            cache.in_flight.clone().settle().await;
            let mut issued = Held::default();
            for r in self.inner.store.vouchers(record.id)? {
                issued.insert(r.voucher);
            }
            let assessed = self.assess(&record, &issued, voucher, Intake::Plain).await;
            return stale_is_refused(voucher, assessed);
        }
        stale_is_refused(voucher, self.assess(&record, &cache.held, voucher, Intake::Plain).await)
    }

    /// The intake policy's refusals that need no chain (locks, `extra`, merges), checked
    /// before anything about the channel, in Lotus's order of checks
    /// (`checkVoucherValidUnlocked`): the API's add and check-valid refuse such a voucher
    /// for its lock, as Lotus does, whatever else is wrong with it.
    fn locks_first(&self, voucher: &SignedVoucher) -> Result<(), AddVoucherError> {
        // At the last epoch every settle height is near: only the chain-free rules refuse.
        self.inner
            .config
            .intake
            .check(voucher, ChainEpoch::MAX)
            .map_err(AddVoucherError::VoucherRefused)
    }

    /// The chain's view of a channel for validation: the head, the channel's state at that
    /// head with the balance it had `confidence` epochs deeper if lower (funds a short
    /// reorganisation could take away are not counted), and its ID address. A channel whose
    /// actor is gone is recorded collected and answered `ChannelCollected`.
    pub(super) async fn chain_view(
        &self,
        record: &ChannelRecord,
    ) -> Result<ChainView, CheckVoucherError> {
        let channel = record
            .channel
            .ok_or_else(|| CheckVoucherError::UnknownChannel(self.describe(record)))?;
        let chain = &self.inner.chain;
        let at = match chain.channel_at_depth(&channel, self.inner.config.confidence).await {
            Ok(at) => at,
            Err(ChainError::NotFound(_)) => {
                self.mark_gone(record.id).await?;
                return Err(CheckVoucherError::ChannelCollected(self.fmt(&channel)));
            }
            Err(e) => return Err(e.into()),
        };
        let head = at.head;
        let mut on_chain = at.channel;
        on_chain.balance = at.confirmed_balance;
        let channel_id = match record.id_address {
            Some(id) => id,
            None => chain
                .lookup_id(&channel)
                .await?
                .ok_or_else(|| CheckVoucherError::UnknownChannel(self.fmt(&channel)))?,
        };
        Ok(ChainView { head, on_chain, channel_id, channel })
    }

    /// Runs the actor's `UpdateChannelState` for `voucher` alone on the chain's state, as the
    /// payee submitting it now: every rule, the payer's signature included.
    pub(super) async fn validate(
        &self,
        record: &ChannelRecord,
        voucher: &SignedVoucher,
        secret: &[u8],
    ) -> Result<Redemption, CheckVoucherError> {
        let view = self.chain_view(record).await?;
        self.validate_on(&view, voucher, secret, false).await
    }

    /// Runs the actor's `UpdateChannelState` for `voucher` alone on `view`'s state, the
    /// signature verified too unless `signature_checked` says it was before.
    pub(super) async fn validate_on(
        &self,
        view: &ChainView,
        voucher: &SignedVoucher,
        secret: &[u8],
        signature_checked: bool,
    ) -> Result<Redemption, CheckVoucherError> {
        let chain = &self.inner.chain;
        let on_chain = &view.on_chain;
        let mut ids = HashMap::new();
        if voucher.channel_addr == view.channel {
            if let Ok(id) = view.channel_id.id() {
                ids.insert(voucher.channel_addr, id);
            }
        } else if let Some(id) = chain.lookup_id(&voucher.channel_addr).await? {
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
                // The actor makes the call itself: the callee sees the channel as its caller.
                let probe = Message::new(
                    view.channel_id,
                    extra.actor,
                    0,
                    TokenAmount::default(),
                    extra.method,
                    extra.data.clone(),
                );
                let receipt = chain.call(&probe).await?;
                Some(ExtraCallFailure::from_dry_run(receipt.exit_code).map_or(Ok(()), Err))
            }
            None => None,
        };
        let env = Validation {
            call: Invocation {
                epoch: view.head,
                balance: on_chain.balance.clone(),
                caller: on_chain.state.to,
                receiver: view.channel_id,
            },
            ids,
            keys,
            extra,
            signature_checked,
        };
        let mut state = on_chain.state.clone();
        let params = UpdateChannelStateParams { sv: voucher.clone(), secret: secret.to_vec() };
        actor::update_channel_state(&mut state, &env, &params)
            .map_err(CheckVoucherError::InvalidVoucher)
    }

    /// Where the redemption model starts for a channel: the chain's state, messages
    /// executing from the next epoch with `landing_window` epochs to land —
    /// `conditional_window` for a conditional voucher against its lock.
    pub(super) fn situation(
        &self,
        record: &ChannelRecord,
        view: &ChainView,
        landing_window: ChainEpoch,
        conditional_window: ChainEpoch,
    ) -> Situation {
        Situation {
            state: view.on_chain.state.clone(),
            balance: view.on_chain.balance.clone(),
            channel_id: view.channel_id,
            channel_aliases: record.channel.into_iter().collect(),
            first_epoch: view.head.saturating_add(1),
            landing_window,
            conditional_window,
            secrets: Default::default(),
        }
    }

    /// Where intake's redemption model starts: messages land within the landing margin — a
    /// conditional voucher's within the route's `S + conf` before its lock, the margin by
    /// which the settler lands it (design §9) — with the secrets known.
    fn intake_situation(
        &self,
        record: &ChannelRecord,
        view: &ChainView,
        held: &Held,
        voucher: &SignedVoucher,
        secrets: HashMap<Vec<u8>, Vec<u8>>,
    ) -> Situation {
        let config = &self.inner.config;
        let landing = config.intake.landing_margin;
        let mut situation = self.situation(record, view, landing, config.route.submit_margin());
        situation.secrets = secrets;
        // The actor resolved the voucher's address to this channel; so it did for every
        // voucher held.
        situation.add_alias(voucher.channel_addr);
        held.channel_addrs().iter().for_each(|addr| situation.add_alias(*addr));
        situation
    }

    /// Intake's decision on a voucher not held yet, without storing anything: refused (the
    /// policy, the actor, or nothing the chain would pay), covered (an older voucher whose
    /// value a held one includes), or accepted for what the redemption model says it adds
    /// to what this node has credited (design §3b).
    async fn assess(
        &self,
        record: &ChannelRecord,
        held: &Held,
        voucher: &SignedVoucher,
        intake: Intake<'_>,
    ) -> Result<Assessment, AddVoucherError> {
        if record.lifecycle == Lifecycle::Collected {
            return Err(AddVoucherError::ChannelCollected(self.describe(record)));
        }
        let terms = match intake {
            Intake::Plain => None,
            Intake::Conditional(terms) => Some(terms),
            Intake::Replacement => return self.assess_replacement(record, held, voucher).await,
        };
        if let Some(top) = held.top(voucher.lane) {
            if top.nonce > voucher.nonce && voucher.amount <= top.amount {
                return self.covered_by(record, voucher, top).await;
            }
        }
        let policy = &self.inner.config.intake;
        let view = self.chain_view(record).await?;
        // The voucher's own secret decides its checks and whether any plan runs; the held
        // vouchers' are looked up only for a plan (a hub holding a conditional voucher for
        // its secret runs none).
        let secrets = self.known_secrets(std::iter::once(voucher))?;
        match terms {
            // The routed payment's checks, the actor's verdict among them.
            Some(terms) => {
                self.check_conditional_intake(record, held, voucher, terms, &view, &secrets).await?
            }
            None => {
                pending_lane_rule(held, voucher, &view)?;
                // The actor's own verdict on the voucher alone (its signature checked for
                // real): a voucher it refuses against the chain never counts in any plan.
                self.validate_on(&view, voucher, &[], false).await?;
                policy.check(voucher, view.head).map_err(AddVoucherError::VoucherRefused)?;
            }
        }
        let mut situation = self.intake_situation(record, &view, held, voucher, secrets);
        if let Some(why) = situation.unredeemable(voucher) {
            // A conditional voucher is held without its secret, or with a lock nearer than the
            // landing margin (the route's own margin was checked): held, and credited only
            // what the model counts.
            let held_anyway =
                matches!(why, Unredeemable::SecretUnknown | Unredeemable::TimeLockMax { .. });
            if terms.is_none() || !held_anyway {
                return Err(AddVoucherError::Unredeemable(why));
            }
        }
        if let Some(top) = held.top(voucher.lane) {
            if top.nonce >= voucher.nonce {
                return Err(AddVoucherError::InvalidVoucher(actor::ActorError::StaleNonce {
                    lane: voucher.lane,
                    existing: top.nonce,
                    voucher: voucher.nonce,
                }));
            }
        }
        if terms.is_some() && situation.unredeemable(voucher).is_some() {
            // Held for its secret, or with its lock within the landing margin: it adds
            // nothing to any plan now, so no plan is run and nothing is credited.
            return Ok(Assessment::Hold);
        }
        situation.secrets.extend(self.known_secrets(held.live_conditionals())?);
        let levelled = self.levels_credit(held, voucher);
        // What the vouchers held are worth now. It moves only with the chain: up when the
        // balance grows, down when this node redeems a combined voucher carrying the discount
        // it agreed to (or, where time locks are taken, when a lock runs out unredeemed).
        let base = held.best_state(&situation, None);
        let mut credited = base.to_send.clone();
        if levelled {
            // A lock that ran out took value already credited: never credit it again.
            if let Some(level) = record.credited.as_ref().filter(|level| **level > credited) {
                credited = level.clone();
            }
        }
        // Every voucher the model cannot count was refused or held above.
        let with = held.best_state(&situation, Some(voucher)).to_send;
        let delta = &with - &credited;
        if delta.is_positive() {
            return Ok(Assessment::Accept { delta, credited: with });
        }
        if terms.is_some() {
            // Held for its secret: credited nothing now.
            return Ok(Assessment::Accept { delta: TokenAmount::default(), credited });
        }
        // Why it adds nothing: the voucher on top of the best plan without it.
        let lane_top = held.lane(voucher.lane).iter().map(|v| v.amount.clone()).max();
        let mut state = base;
        match situation.redeem(&mut state, voucher) {
            Err(e) => Err(AddVoucherError::InvalidVoucher(e)),
            Ok(r) if r.delta.is_negative() => Err(AddVoucherError::AmountBelowLane {
                lane: voucher.lane,
                previous: lane_top.unwrap_or_default(),
                requested: voucher.amount.clone(),
            }),
            // A valid voucher worth exactly what is held (a first voucher of 0, say): held,
            // credited nothing.
            Ok(r) if r.delta.is_zero() => Ok(Assessment::Accept { delta: r.delta, credited }),
            // The replacement of a conditional voucher whose lock came too close: what pays
            // the payee now, kept, but its value was credited with the conditional one.
            Ok(_) if replaces_held(held, voucher) => {
                Ok(Assessment::Accept { delta: TokenAmount::default(), credited })
            }
            // Worth something on top of the plan, but not beyond what was already credited
            // (the plan's value fell since): nothing more to credit.
            Ok(_) => Err(AddVoucherError::BelowMinDelta {
                delta: TokenAmount::default(),
                min_delta: TokenAmount::from_atto(1u8),
            }),
        }
    }

    /// Adds a voucher received from the payer of an inbound channel (learning the channel
    /// from the chain if it is new). Durable before it returns. A voucher is credited only
    /// what it adds to what this node can redeem (design §3b): the same voucher again is
    /// *already held*, an older one whose value a held voucher includes is *covered*, and
    /// one the policy, the actor or the chain's timing would not pay is refused, as is one
    /// adding less than `min_delta`.
    #[tracing::instrument(name = "paych_voucher_add", level = "debug", skip_all)]
    pub async fn voucher_add(
        &self,
        channel: &Address,
        voucher: &SignedVoucher,
        min_delta: TokenAmount,
    ) -> Result<AddOutcome, AddVoucherError> {
        Ok(match self.add(channel, voucher, min_delta, Intake::Plain, Flush::Now).await? {
            Added::Credited { delta } => AddOutcome::Accepted { delta },
            // Held, but it adds nothing: not a credit.
            Added::StoredZero { amount } => AddOutcome::Covered { lane_amount: amount },
            Added::Covered { lane_amount, .. } => AddOutcome::Covered { lane_amount },
            Added::AlreadyHeld => AddOutcome::AlreadyHeld,
        })
    }

    /// Lotus's `PaychVoucherAdd` (`paychmgr/paych.go`, `addVoucherUnlocked`): the delta
    /// credited, `0` for a voucher already held ("voucher re-added"), and an error for an
    /// older voucher — its nonce is too low, even where a held voucher includes its value
    /// (where [`Self::voucher_add`] answers *covered* for pipelined payments). Otherwise
    /// exactly [`Self::voucher_add`]: one assessment, one store.
    #[tracing::instrument(name = "paych_voucher_add_lotus", level = "debug", skip_all)]
    pub async fn voucher_add_lotus(
        &self,
        channel: &Address,
        voucher: &SignedVoucher,
        min_delta: TokenAmount,
    ) -> Result<TokenAmount, AddVoucherError> {
        self.locks_first(voucher)?;
        match self.add(channel, voucher, min_delta, Intake::Plain, Flush::Now).await? {
            Added::Credited { delta } => Ok(delta),
            Added::StoredZero { .. } | Added::AlreadyHeld => Ok(TokenAmount::default()),
            Added::Covered { nonce, .. } => Err(stale(voucher, nonce)),
        }
    }

    /// An older voucher that `top`, held on its lane, covers: answered covered once it names
    /// this channel (another channel's lane covers nothing here) and carries the payer's
    /// signature.
    async fn covered_by(
        &self,
        record: &ChannelRecord,
        voucher: &SignedVoucher,
        top: &SignedVoucher,
    ) -> Result<Assessment, AddVoucherError> {
        if Some(voucher.channel_addr) != record.channel
            && Some(voucher.channel_addr) != record.id_address
        {
            return Err(AddVoucherError::ForeignVoucher(self.describe(record)));
        }
        self.verify_payer_signature(record, voucher).await?;
        Ok(Assessment::Covered { lane_amount: top.amount.clone(), nonce: top.nonce })
    }

    /// Intake of a routed payment's replacement ([`Self::replacement_add`]): the lane's rule
    /// ([`replacement_rule`]), the actor's verdict on the voucher alone (its signature checked
    /// for real), the intake policy, and a landing before the channel settles. No plan: it
    /// credits nothing, and holding it can only raise what the vouchers held are worth.
    async fn assess_replacement(
        &self,
        record: &ChannelRecord,
        held: &Held,
        voucher: &SignedVoucher,
    ) -> Result<Assessment, AddVoucherError> {
        if let Some(top) = replacement_rule(held, voucher)? {
            return self.covered_by(record, voucher, top).await;
        }
        // `pending_lane_rule` needs no asking: `replacement_rule` took only the exact
        // replacement of the lane's top, which is what it lets through.
        let view = self.chain_view(record).await?;
        self.validate_on(&view, voucher, &[], false).await?;
        let policy = &self.inner.config.intake;
        policy.check(voucher, view.head).map_err(AddVoucherError::VoucherRefused)?;
        let situation = self.intake_situation(record, &view, held, voucher, HashMap::new());
        if let Some(why) = situation.unredeemable(voucher) {
            return Err(AddVoucherError::Unredeemable(why));
        }
        Ok(Assessment::Hold)
    }

    /// The one path of voucher intake, answered by [`Self::voucher_add`],
    /// [`Self::voucher_add_lotus`], (with the route's `terms`) `conditional_accept` and
    /// `replacement_add`.
    /// With [`Flush::Now`] it returns once the voucher is durable; with [`Flush::Caller`]
    /// once it is written, the caller making it durable before anything acknowledges it.
    pub(super) async fn add(
        &self,
        channel: &Address,
        voucher: &SignedVoucher,
        min_delta: TokenAmount,
        intake: Intake<'_>,
        flush: Flush,
    ) -> Result<Added, AddVoucherError> {
        let span = tracing::debug_span!("paych_voucher_add", channel = %self.fmt(channel), lane = voucher.lane, nonce = voucher.nonce);
        let _entered = span.enter();
        if voucher.amount.is_negative() {
            return Err(AddVoucherError::InvalidAmount(
                "a voucher amount cannot be negative".to_owned(),
            ));
        }
        drop(_entered);
        // A channel first seen in this voucher is stored with the voucher or not at all;
        // first adds on unknown channels take turns, so that each is learned once.
        let (record, learning) = match self.inbound_record(channel).await? {
            Some(record) => (record, None),
            None => {
                let turn = self.inner.learning.lock().await;
                match self.inbound_record(channel).await? {
                    Some(record) => (record, None),
                    None => {
                        let mut record = self.learn_inbound(channel, UNSTORED_CHANNEL).await?;
                        // An ID only for a channel the chain and the wallet let in.
                        record.id = self.inner.store.next_channel_id()?;
                        (record, Some(turn))
                    }
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
                return Err(AddVoucherError::ConflictingVoucher {
                    lane: voucher.lane,
                    nonce: voucher.nonce,
                });
            }
            drop(cache);
            // Written by an add whose flush may not be over yet: held means durable.
            if flush == Flush::Now {
                self.inner.store.durable().await?;
            }
            return Ok(Added::AlreadyHeld);
        }
        let (delta, credited) = match self.assess(&record, &cache.held, voucher, intake).await? {
            Assessment::Covered { lane_amount, nonce } => {
                return Ok(Added::Covered { lane_amount, nonce })
            }
            Assessment::Accept { delta, credited } => (delta, Some(credited)),
            Assessment::Hold => (TokenAmount::default(), None),
        };
        if delta < min_delta {
            return Err(AddVoucherError::BelowMinDelta { delta, min_delta });
        }
        let mut updated = record.clone();
        if let Some(credited) = credited.filter(|_| self.levels_credit(&cache.held, voucher)) {
            // The level time locks and conditional vouchers need (see `assess`): value a
            // lock took away is never credited twice. Kept only where they occur, so that a
            // plain payment writes no channel record. A replacement leaves it as it is.
            updated.credited = Some(credited);
        }
        updated.next_lane = updated.next_lane.max(voucher.lane.saturating_add(1));
        // A channel learned by its ID address keeps the robust address it is also named by
        // (`inbound_record` found it through the chain), so that both find it from now on.
        if record.channel == record.id_address && channel.protocol() != Protocol::ID {
            updated.channel = Some(*channel);
        }
        let mut writes = vec![Write::Voucher(VoucherRecord {
            channel: record.id,
            voucher: voucher.clone(),
            origin: VoucherOrigin::Received,
            submitted: false,
            superseded: false,
        })];
        // A learned channel is stored with its first voucher.
        if learning.is_some() || updated != record {
            writes.push(Write::Channel(updated));
        }
        self.inner.store.apply(writes)?;
        drop(learning);
        cache
            .lanes
            .insert(voucher.lane, LaneTip { nonce: voucher.nonce, amount: voucher.amount.clone() });
        cache.held.insert(voucher.clone());
        drop(cache);
        // Acknowledged only once durable; concurrent adds share the flush.
        if flush == Flush::Now {
            self.inner.store.durable().await?;
        }
        self.notify();
        tracing::debug!(parent: &span, delta = %delta.atto(), "voucher accepted");
        if delta.is_zero() {
            return Ok(Added::StoredZero { amount: voucher.amount.clone() });
        }
        Ok(Added::Credited { delta })
    }

    /// The stored record of a channel by either of its addresses: one learned under its ID
    /// address is found by its robust address too (through the chain's resolution).
    async fn inbound_record(
        &self,
        channel: &Address,
    ) -> Result<Option<ChannelRecord>, AddVoucherError> {
        if let Some(record) = self.inner.store.channel_by_address(channel)? {
            return Ok(Some(record));
        }
        if channel.id().is_ok() {
            return Ok(None);
        }
        match self.inner.chain.lookup_id(channel).await {
            Ok(Some(id)) if id != *channel => Ok(self.inner.store.channel_by_address(&id)?),
            Ok(_) | Err(ChainError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn verify_payer_signature(
        &self,
        record: &ChannelRecord,
        voucher: &SignedVoucher,
    ) -> Result<(), AddVoucherError> {
        let key = self.inner.chain.account_key(&record.from).await?;
        let signature = voucher
            .signature
            .as_ref()
            .ok_or(AddVoucherError::InvalidVoucher(actor::ActorError::MissingSignature))?;
        crypto::verify_as_account(&signature.bytes, &key, &voucher.signing_bytes()?).map_err(|e| {
            AddVoucherError::InvalidVoucher(actor::ActorError::InvalidSignature(e.to_string()))
        })
    }

    /// The record (with the ID `id`) of an inbound channel first seen in a voucher, not yet
    /// stored, as Lotus's `trackInboundChannel` loads it from the chain: the chain must know
    /// it, and its payee must be a key of this wallet.
    async fn learn_inbound(
        &self,
        channel: &Address,
        id: ChannelId,
    ) -> Result<ChannelRecord, AddVoucherError> {
        let chain = &self.inner.chain;
        let on_chain = match chain.channel(channel).await {
            Ok(c) => c,
            Err(ChainError::NotFound(_)) => {
                return Err(AddVoucherError::UnknownChannel(self.fmt(channel)))
            }
            Err(e) => return Err(e.into()),
        };
        let to_key = chain.account_key(&on_chain.state.to).await?;
        if !self.inner.wallet.has(&to_key) {
            return Err(AddVoucherError::ForeignVoucher(self.fmt(channel)));
        }
        let from_key = chain.account_key(&on_chain.state.from).await?;
        let lifecycle = match on_chain.state.settling_at {
            0 => Lifecycle::Open,
            _ => Lifecycle::Settling,
        };
        let record = ChannelRecord {
            channel: Some(*channel),
            id_address: chain.lookup_id(channel).await?,
            confirmed: on_chain.balance.clone(),
            settling_at: on_chain.state.settling_at,
            credited: Some(on_chain.state.to_send.clone()),
            ..ChannelRecord::new(id, Direction::Inbound, from_key, to_key, lifecycle)
        };
        Ok(record)
    }

    /// Whether submitting the voucher now would succeed: `false` — not an error — when it
    /// was already submitted or superseded, its channel was collected (its actor is gone),
    /// or a dry run on the chain fails. The dry run is
    /// `UpdateChannelState` sent from the channel's recipient (its `to` on chain), as Lotus's
    /// `checkVoucherSpendable` makes it, so that a payer can ask it of its own vouchers too.
    #[tracing::instrument(name = "paych_voucher_check_spendable", level = "debug", skip_all)]
    pub async fn voucher_check_spendable(
        &self,
        channel: &Address,
        voucher: &SignedVoucher,
        secret: &[u8],
    ) -> Result<bool, CheckVoucherError> {
        let record = self.record_by_address(channel)?;
        if self.already_submitted(&record, voucher)?.is_some() {
            return Ok(false);
        }
        if let Some(stored) = self.inner.store.voucher(record.id, voucher.lane, voucher.nonce)? {
            if stored.superseded {
                return Ok(false);
            }
        }
        if record.lifecycle == Lifecycle::Collected {
            return Ok(false);
        }
        let channel_addr = record
            .channel
            .ok_or_else(|| CheckVoucherError::UnknownChannel(self.describe(&record)))?;
        let recipient = match self.inner.chain.channel(&channel_addr).await {
            Ok(on_chain) => on_chain.state.to,
            Err(ChainError::NotFound(_)) => {
                self.mark_gone(record.id).await?;
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        let params = UpdateChannelStateParams { sv: voucher.clone(), secret: secret.to_vec() };
        let params =
            fvm_ipld_encoding::to_vec(&params).map_err(|e| CheckVoucherError::Encode(e.into()))?;
        let probe = Message::new(
            recipient,
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
    ) -> Result<Option<(u64, u64)>, StoreError> {
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
    pub fn voucher_list(&self, channel: &Address) -> Result<Vec<SignedVoucher>, LookupError> {
        let record = self.record_by_address(channel)?;
        Ok(self.inner.store.vouchers(record.id)?.into_iter().map(|r| r.voucher).collect())
    }

    /// The vouchers that redeem the most for the channel's payee now, in the order to
    /// submit them: the redemption model's plan (design §3b) over the vouchers held that
    /// are neither submitted nor superseded, from the chain's current state. A lane whose
    /// highest voucher cannot redeem falls back to a lower one. On an outbound channel the
    /// payer plans its own vouchers as their recipient would redeem them (Lotus's
    /// `best-spendable` asks `PaychVoucherCheckSpendable` of each, a dry run as the
    /// recipient). A collected channel (its actor gone) has nothing spendable: empty.
    #[tracing::instrument(name = "paych_voucher_best_spendable", level = "debug", skip_all)]
    pub async fn voucher_best_spendable(
        &self,
        channel: &Address,
    ) -> Result<Vec<SignedVoucher>, CheckVoucherError> {
        let record = self.record_by_address(channel)?;
        if record.lifecycle == Lifecycle::Collected {
            return Ok(Vec::new());
        }
        match self.plan_for_payee(&record, record.direction == Direction::Outbound).await {
            Ok(plan) => Ok(plan.steps.into_iter().map(|s| s.voucher).collect()),
            // Nothing on a collected channel can be spent.
            Err(CheckVoucherError::ChannelCollected(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The plan the settler submits for an inbound channel: every held voucher that is
    /// neither submitted nor superseded, planned from the chain's state with no landing
    /// margin (it is sent now, whatever time is left).
    pub(super) async fn settlement_plan(
        &self,
        record: &ChannelRecord,
    ) -> Result<redemption::Plan, CheckVoucherError> {
        self.plan_for_payee(record, false).await
    }

    /// The redemption plan over the vouchers held that are neither submitted nor
    /// superseded, the ones this node created among them only when `own_vouchers`.
    async fn plan_for_payee(
        &self,
        record: &ChannelRecord,
        own_vouchers: bool,
    ) -> Result<redemption::Plan, CheckVoucherError> {
        let view = self.chain_view(record).await?;
        let mut situation = self.situation(record, &view, 0, 0);
        let held: Vec<SignedVoucher> = self
            .inner
            .store
            .vouchers(record.id)?
            .into_iter()
            .filter(|r| {
                !r.submitted
                    && !r.superseded
                    && (own_vouchers || r.origin != VoucherOrigin::Created)
            })
            .map(|r| r.voucher)
            .collect();
        // Every voucher held was validated against this channel, under whichever address.
        held.iter().for_each(|v| situation.add_alias(v.channel_addr));
        situation.secrets = self.known_secrets(held.iter())?;
        Ok(redemption::best_plan(&situation, &held.iter().collect::<Vec<_>>()))
    }

    /// Submits a voucher to the chain (adding it first if this node does not hold it),
    /// marking it and every lower nonce on its lane submitted. A voucher already submitted
    /// (or below one that was) is refused; so is one on a collected channel
    /// (`ChannelCollected`: its actor is gone, the message could only fail).
    #[tracing::instrument(name = "paych_voucher_submit", level = "debug", skip_all)]
    pub async fn voucher_submit(
        &self,
        channel: &Address,
        voucher: &SignedVoucher,
        secret: &[u8],
    ) -> Result<Cid, SubmitError> {
        let record = self.record_by_address(channel)?;
        if let Some((lane, nonce)) = self.already_submitted(&record, voucher)? {
            return Err(SubmitError::AlreadySubmitted { lane, nonce });
        }
        self.expect_actor(&record).await?;
        if self.inner.store.voucher(record.id, voucher.lane, voucher.nonce)?.is_none() {
            if record.direction == Direction::Inbound {
                self.voucher_add(channel, voucher, TokenAmount::default()).await?;
            } else {
                return Err(SubmitError::ForeignVoucher(self.fmt(channel)));
            }
        }
        let lock = self.channel_lock(record.id);
        let _guard = lock.lock().await;
        let record = self.record(record.id)?;
        let params = UpdateChannelStateParams { sv: voucher.clone(), secret: secret.to_vec() };
        Ok(self.send_submit(&record, &params).await?)
    }

    /// Refuses a channel that was collected — recorded so, or its actor gone from the chain
    /// (then recorded so). A look only: when the chain cannot be read, the message about to
    /// be sent meets the chain's failure itself.
    async fn expect_actor(&self, record: &ChannelRecord) -> Result<(), SubmitError> {
        let collected = || SubmitError::ChannelCollected(self.describe(record));
        if record.lifecycle == Lifecycle::Collected {
            return Err(collected());
        }
        let Some(addr) = record.channel else { return Ok(()) };
        match self.inner.chain.channel(&addr).await {
            Err(ChainError::NotFound(_)) => {
                self.mark_gone(record.id).await?;
                Err(collected())
            }
            Ok(_) | Err(_) => Ok(()),
        }
    }

    /// Lotus's `PaychNewPayment`: gets (or creates) the channel from `from` to `to` with
    /// the last spec's amount, waits until it is ready, allocates a lane and creates one
    /// voucher per spec on it. The answer names the create or add-funds message `get` sent
    /// (its wait sentinel, as Lotus answers it), if any.
    #[tracing::instrument(name = "paych_new_payment", level = "debug", skip_all)]
    pub async fn new_payment(
        &self,
        from: Address,
        to: Address,
        specs: Vec<VoucherSpec>,
    ) -> Result<NewPayment, NewPaymentError> {
        let total = specs.last().map(|s| s.amount.clone()).unwrap_or_default();
        let handle = self.get(from, to, total).await?;
        let channel = match (handle.channel, handle.wait_sentinel) {
            (_, Some(sentinel)) => self.get_wait_ready(&sentinel).await?,
            (Some(channel), None) => channel,
            (None, None) => return Err(NewPaymentError::UnknownChannel(format!("#{}", handle.id))),
        };
        let lane = self.allocate_lane(&channel).await?;
        let mut vouchers = Vec::with_capacity(specs.len());
        for spec in specs {
            let created = self.voucher_create_with(&channel, lane, spec).await?;
            match created.voucher {
                Some(v) => vouchers.push(v),
                None => {
                    return Err(NewPaymentError::InvalidAmount(format!(
                        "the channel lacks {} attoFIL for this payment",
                        created.shortfall.atto()
                    )))
                }
            }
        }
        Ok(NewPayment { channel, wait_sentinel: handle.wait_sentinel, vouchers })
    }
}
