//! Conditional vouchers: the hash- and time-locked vouchers of routed payments (design §9),
//! on both sides of a channel.
//!
//! Payer (P on P→H, the hub on H→R): [`PaymentChannelManager::conditional_offer`] signs a
//! conditional voucher on a lane with nothing pending, counted as spent as if its secret were
//! revealed (a payer never signs what its channel cannot cover); the lane then takes no other
//! voucher until [`PaymentChannelManager::conditional_replace`] (with the secret) or
//! [`PaymentChannelManager::conditional_expire`] (once its lock has passed by the confirmation
//! depth, unredeemed) resolves it. Nonces are never reused: an expired voucher keeps its nonce.
//!
//! Holder (the hub on P→H, the payee on H→R): [`PaymentChannelManager::conditional_accept`]
//! takes a conditional voucher of an exact shape, on a lane with nothing pending, only if the
//! channel's balance covers every pending conditional voucher on it as if all were revealed;
//! it is credited (design §3b) only once the secret is known
//! ([`PaymentChannelManager::learn_secret`]) and while it can still land before its lock. The
//! settler lands a held conditional voucher with its secret before its lock. Ordinary intake
//! refuses every voucher on a lane with a pending conditional one but its exact replacement.
//!
//! Every change is durable before the call returns. This module owns those rules; the route
//! module owns the pure checks they use.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use cid::Cid;

use super::{
    AddVoucherError, Added, ChainView, ChannelCache, CreateVoucherError, Flush, Held, LaneError,
    LookupError, PaymentChannelManager, SubmitError, VoucherCreateResult, VoucherSpec,
};
use crate::chain::ChainError;
use crate::invoice::SECRET_LEN;
use crate::redemption::{self, Situation};
use crate::route::{self, RouteRefusal};
use crate::store::{
    ChannelRecord, Direction, SecretRecord, StoreError, VoucherOrigin, VoucherRecord, Write,
};
use crate::types::{Address, ChainEpoch, SignedVoucher, TokenAmount};

/// The most distinct secret hashes a plan looks up at once: a channel's held vouchers are
/// bounded per lane, and this bounds the lookups whatever they hold.
const MAX_SECRET_LOOKUPS: usize = 4096;

/// A conditional voucher this node signed that is neither replaced nor expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pending {
    nonce: u64,
    amount: TokenAmount,
    hash: Vec<u8>,
    lock: ChainEpoch,
}

/// How a voucher is created on a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Creation {
    /// The spec's amount is the lane's new amount.
    Set,
    /// The spec's amount is added to the lane's amount.
    Add,
    /// A conditional voucher adding the spec's amount: the lane becomes pending.
    Conditional,
    /// The unconditional replacement of the lane's pending conditional voucher.
    Replace,
}

impl Creation {
    /// Whether the spec's amount is added to the lane's.
    pub(super) fn adds_to_lane(self) -> bool {
        matches!(self, Creation::Add | Creation::Conditional)
    }
}

/// Whether a voucher carries a secret hash.
fn is_conditional(voucher: &SignedVoucher) -> bool {
    !voucher.secret_hash.is_empty()
}

/// Follows a channel's stored vouchers (in lane then nonce order) to find the lanes pending
/// with a conditional voucher this node signed.
pub(super) fn track(pending: &mut BTreeMap<u64, Pending>, record: &VoucherRecord) {
    if record.origin != VoucherOrigin::Created {
        return;
    }
    let v = &record.voucher;
    if is_conditional(v) && !record.superseded && !record.submitted {
        let entry = Pending {
            nonce: v.nonce,
            amount: v.amount.clone(),
            hash: v.secret_hash.clone(),
            lock: v.time_lock_max,
        };
        pending.insert(v.lane, entry);
    } else {
        pending.remove(&v.lane);
    }
}

/// Whether a stored voucher is a conditional one of ours that expired unredeemed: it keeps
/// its nonce but no longer counts in its lane's amount.
pub(super) fn expired_unredeemed(record: &VoucherRecord) -> bool {
    record.origin == VoucherOrigin::Created && is_conditional(&record.voucher) && record.superseded
}

/// Refuses a voucher on a lane with a pending conditional voucher, but its replacement; a
/// replacement needs a pending voucher to replace.
pub(super) fn check_lane_use(
    pending: &BTreeMap<u64, Pending>,
    lane: u64,
    how: Creation,
) -> Result<(), CreateVoucherError> {
    match (pending.contains_key(&lane), how) {
        (true, Creation::Replace)
        | (false, Creation::Set | Creation::Add | Creation::Conditional) => Ok(()),
        (true, _) => Err(RouteRefusal::LanePending(lane).into()),
        (false, Creation::Replace) => {
            Err(RouteRefusal::BadReplacement(format!("lane {lane} has nothing pending")).into())
        }
    }
}

/// Marks the lane pending after a conditional voucher, free after its replacement.
pub(super) fn mark_lane(
    pending: &mut BTreeMap<u64, Pending>,
    voucher: &SignedVoucher,
    how: Creation,
) {
    match how {
        Creation::Conditional => {
            let entry = Pending {
                nonce: voucher.nonce,
                amount: voucher.amount.clone(),
                hash: voucher.secret_hash.clone(),
                lock: voucher.time_lock_max,
            };
            pending.insert(voucher.lane, entry);
        }
        Creation::Replace => {
            pending.remove(&voucher.lane);
        }
        Creation::Set | Creation::Add => {}
    }
}

/// The highest held voucher on a lane that can still land after `view`'s head and is above
/// the chain's nonce there: a conditional one counts until its lock passes.
fn live_top<'a>(held: &'a Held, lane: u64, view: &ChainView) -> Option<&'a SignedVoucher> {
    let chain_nonce = view.on_chain.lane(lane).map(|l| l.nonce);
    held.lane(lane)
        .iter()
        .filter(|v| chain_nonce.is_none_or(|n| v.nonce > n))
        .find(|v| !is_conditional(v) || v.time_lock_max > view.head)
}

/// The held conditional voucher pending on a lane: the lane's highest voucher, conditional,
/// still able to land, and above the chain's nonce there.
fn pending_held<'a>(held: &'a Held, lane: u64, view: &ChainView) -> Option<&'a SignedVoucher> {
    let top = held.top(lane)?;
    let chain_nonce = view.on_chain.lane(lane).map(|l| l.nonce);
    let live = top.time_lock_max > view.head && chain_nonce.is_none_or(|n| top.nonce > n);
    (is_conditional(top) && live).then_some(top)
}

/// Ordinary intake's rule (design §9): a lane with a pending conditional voucher takes no
/// voucher above it but its exact replacement — same lane, higher nonce, same amount, no
/// conditions. Older vouchers pass on to intake's own answer (covered or stale).
pub(super) fn pending_lane_rule(
    held: &Held,
    voucher: &SignedVoucher,
    view: &ChainView,
) -> Result<(), AddVoucherError> {
    let Some(pending) = pending_held(held, voucher.lane, view) else { return Ok(()) };
    if voucher.nonce <= pending.nonce {
        return Ok(());
    }
    if !is_plain(voucher) {
        return Err(RouteRefusal::LanePending(voucher.lane).into());
    }
    if voucher.amount != pending.amount {
        return Err(RouteRefusal::BadReplacement(format!(
            "amount {} attoFIL is not the pending voucher's {} attoFIL",
            voucher.amount.atto(),
            pending.amount.atto()
        ))
        .into());
    }
    Ok(())
}

/// Whether `voucher` is the exact replacement of a conditional voucher held on its lane:
/// a higher nonce, the same amount, no conditions.
pub(super) fn replaces_held(held: &Held, voucher: &SignedVoucher) -> bool {
    // Of the vouchers held, only those on the voucher's lane: its plain ones and any merging
    // one on that lane.
    let mut on_lane = held.lane(voucher.lane).iter().chain(&held.merging);
    is_plain(voucher)
        && on_lane.any(|h| {
            is_conditional(h)
                && h.lane == voucher.lane
                && h.nonce < voucher.nonce
                && h.amount == voucher.amount
        })
}

/// A routed payment's replacement against the vouchers held on its lane. `Ok(None)`: it is
/// the exact replacement of the lane's top, a conditional voucher — a higher nonce, the same
/// amount, no conditions. `Ok(Some(top))`: the lane's top is already an unconditional voucher
/// with a higher nonce and at least its amount (the replacement sent again after the lane
/// moved on), which covers it. Anything else is `BadReplacement`: below a conditional voucher
/// still pending, say, or the amount of an older conditional voucher of the lane (reused by
/// a later route) rather than its top's, which would put a smaller amount above the top.
pub(super) fn replacement_rule<'a>(
    held: &'a Held,
    voucher: &SignedVoucher,
) -> Result<Option<&'a SignedVoucher>, AddVoucherError> {
    let bad = |why: String| Err(RouteRefusal::BadReplacement(why).into());
    let Some(top) = held.top(voucher.lane) else {
        return bad(format!("lane {} holds no conditional voucher", voucher.lane));
    };
    if is_plain(top) && top.nonce > voucher.nonce && voucher.amount <= top.amount {
        return Ok(Some(top));
    }
    if top.nonce >= voucher.nonce {
        return bad(format!("nonce {} is not above the lane's {}", voucher.nonce, top.nonce));
    }
    if !is_conditional(top) || top.amount != voucher.amount || !is_plain(voucher) {
        return bad(
            "not the exact replacement (a higher nonce, the same amount, no conditions) of the \
             conditional voucher on top of its lane"
                .into(),
        );
    }
    Ok(None)
}

/// Whether a voucher carries no condition at all.
fn is_plain(voucher: &SignedVoucher) -> bool {
    !is_conditional(voucher)
        && voucher.time_lock_min == 0
        && voucher.time_lock_max == 0
        && voucher.min_settle_height == 0
        && voucher.extra.is_none()
        && voucher.merges.is_empty()
}

/// What the channel's lanes would pay with `voucher` and every pending conditional voucher
/// revealed, whatever its balance: the most of two measures. Per lane, the chain's `to_send`
/// plus what each lane's live top adds over what it redeemed; and the redemption model's best
/// plan over every voucher held — combined vouchers of reconciliation included, which may
/// carry the value of a conditional voucher whose lock has passed — with each conditional
/// voucher counted as revealed and no balance to stop it.
fn committed(
    held: &Held,
    voucher: &SignedVoucher,
    view: &ChainView,
    situation: &Situation,
) -> TokenAmount {
    let per_lane = committed_per_lane(held, voucher, view);
    let mut unbounded = situation.clone();
    unbounded.balance = TokenAmount::from_whole(UNBOUNDED_FIL);
    unbounded.landing_window = 0;
    unbounded.conditional_window = 0;
    let plan = match revealed_tops_plan(held, voucher, &unbounded) {
        Some(value) => value,
        None => revealed_searched_plan(held, voucher, &unbounded),
    };
    per_lane.max(plan)
}

/// A copy of `voucher` as if its secret were revealed: without its hash.
fn revealed(voucher: &SignedVoucher) -> Cow<'_, SignedVoucher> {
    match is_conditional(voucher) {
        false => Cow::Borrowed(voucher),
        true => {
            let mut copy = voucher.clone();
            copy.secret_hash.clear();
            Cow::Owned(copy)
        }
    }
}

/// [`committed`]'s plan from each lane's highest voucher the model counts once revealed
/// (the held one, or `voucher` above it), when those tops are the model's best plan over
/// every voucher held ([`redemption::tops_state`]): no voucher merges lanes, and the tops
/// redeem in turn. It copies those tops, not every conditional voucher held. `None` leaves
/// the plan to [`revealed_searched_plan`].
fn revealed_tops_plan(
    held: &Held,
    voucher: &SignedVoucher,
    unbounded: &Situation,
) -> Option<TokenAmount> {
    if !held.merging.is_empty() || !voucher.merges.is_empty() {
        return None;
    }
    let mut tops: Vec<Cow<'_, SignedVoucher>> = Vec::with_capacity(held.lanes.len() + 1);
    let mut voucher_lane_seen = false;
    for (lane, vouchers) in &held.lanes {
        // Held highest nonce first: the first that counts is the lane's top among them.
        let top = vouchers.iter().map(revealed).find(|v| unbounded.is_candidate(v));
        let top = match *lane == voucher.lane {
            false => top,
            true => {
                voucher_lane_seen = true;
                // `voucher` comes after every held one: above the held top only by its nonce.
                let new = Some(revealed(voucher)).filter(|v| unbounded.is_candidate(v));
                match (top, new) {
                    (Some(top), Some(new)) if new.nonce > top.nonce => Some(new),
                    (Some(top), _) => Some(top),
                    (None, new) => new,
                }
            }
        };
        tops.extend(top);
    }
    if !voucher_lane_seen {
        tops.extend(Some(revealed(voucher)).filter(|v| unbounded.is_candidate(v)));
    }
    let refs: Vec<&SignedVoucher> = tops.iter().map(|v| v.as_ref()).collect();
    redemption::tops_state(unbounded, &refs).map(|state| state.to_send)
}

/// [`committed`]'s plan by the model's search over every voucher held, each conditional
/// one copied as if revealed.
fn revealed_searched_plan(
    held: &Held,
    voucher: &SignedVoucher,
    unbounded: &Situation,
) -> TokenAmount {
    // The conditional vouchers as if revealed: copies without their hashes; the others as
    // they are.
    let all: Vec<&SignedVoucher> = held.iter().chain([voucher]).collect();
    let revealed: Vec<SignedVoucher> = all
        .iter()
        .filter(|v| is_conditional(v))
        .map(|v| {
            let mut v = (*v).clone();
            v.secret_hash.clear();
            v
        })
        .collect();
    // In the order held.
    let mut copies = revealed.iter();
    let vouchers: Vec<&SignedVoucher> = all
        .into_iter()
        .filter_map(|v| if is_conditional(v) { copies.next() } else { Some(v) })
        .collect();
    redemption::best_state(unbounded, &vouchers).to_send
}

/// A balance no channel reaches (more than all the FIL there will ever be), for measuring
/// what vouchers would pay regardless of the balance.
const UNBOUNDED_FIL: u64 = 1 << 40;

/// [`committed`]'s per-lane measure: the chain's `to_send` plus what each lane's live top
/// adds over what it redeemed.
fn committed_per_lane(held: &Held, voucher: &SignedVoucher, view: &ChainView) -> TokenAmount {
    let state = &view.on_chain.state;
    let mut lanes: BTreeSet<u64> = held.lanes().collect();
    lanes.insert(voucher.lane);
    let mut total = state.to_send.clone();
    for lane in lanes {
        let top = match lane == voucher.lane {
            true => Some(&voucher.amount),
            false => live_top(held, lane, view).map(|v| &v.amount),
        };
        let redeemed = state.lanes.get(&lane).map(|l| l.redeemed.clone()).unwrap_or_default();
        if let Some(top) = top.filter(|top| **top > redeemed) {
            total += top - &redeemed;
        }
    }
    total
}

/// The amount a lane carries before a new conditional voucher: its live top's, or what the
/// chain redeemed on it if more.
fn lane_amount(held: &Held, lane: u64, view: &ChainView) -> TokenAmount {
    let redeemed = view.on_chain.lane(lane).map(|l| l.redeemed.clone()).unwrap_or_default();
    match live_top(held, lane, view) {
        Some(top) if top.amount > redeemed => top.amount.clone(),
        _ => redeemed,
    }
}

/// A pending conditional voucher's lane, nonce, amount, hash and lock.
type PendingTuple = (u64, u64, TokenAmount, Vec<u8>, ChainEpoch);

/// What a holder expects of a conditional voucher: the payment hash, the lock, what it adds
/// to its lane, and the margin its deadline must leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionalTerms {
    /// The payment hash `h`.
    pub hash: Vec<u8>,
    /// The voucher's `time_lock_max`: `T1` for the hub, `T2` for the payee.
    pub lock: ChainEpoch,
    /// What the voucher adds to its lane's amount: the amount plus the fee for the hub, the
    /// amount for the payee.
    pub delta: TokenAmount,
    /// The epochs the deadline — the lock, or the channel's `settling_at − 1` if earlier —
    /// must lie beyond the head: `D_R` for the payee, `Δ + D_R` for the hub.
    pub margin: ChainEpoch,
}

/// A conditional voucher signed by [`PaymentChannelManager::conditional_offer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionalVoucher {
    /// The lane it went on, leased from the channel's pool until it resolves.
    pub lane: u64,
    /// The signed voucher.
    pub voucher: SignedVoucher,
}

/// A conditional voucher pending on a channel, as status and metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingConditional {
    /// Its lane.
    pub lane: u64,
    /// Its nonce.
    pub nonce: u64,
    /// Its lane's cumulative amount with it.
    pub amount: TokenAmount,
    /// Its payment hash.
    pub hash: Vec<u8>,
    /// Its `time_lock_max`.
    pub lock: ChainEpoch,
    /// Whether this node knows the secret.
    pub secret_known: bool,
}

/// How a payer's conditional voucher resolved once its lock passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpireOutcome {
    /// It was never redeemed: the lane is free again at its amount before the voucher.
    Expired {
        /// The lane's amount from now on.
        amount: TokenAmount,
    },
    /// The holder redeemed it on chain: the lane is free again and keeps its amount (the
    /// secret is in that message).
    RedeemedOnChain,
}

/// Why a conditional voucher operation failed. Nothing stored changes when it does.
#[derive(Debug, thiserror::Error)]
pub enum ConditionalError {
    /// A rule of routed payments refused it.
    #[error(transparent)]
    Refused(#[from] RouteRefusal),
    /// The channel cannot cover the voucher with every pending one revealed.
    #[error("the channel lacks {} attoFIL for this conditional voucher", .0.atto())]
    Shortfall(TokenAmount),
    /// The lane has no pending conditional voucher.
    #[error("lane {0} has no pending conditional voucher")]
    NotPending(u64),
    /// The voucher's lock has not passed by the confirmation depth.
    #[error(
        "lane {lane}'s conditional voucher is final only at epoch {final_at}; the head is {head}"
    )]
    NotExpired {
        /// The lane.
        lane: u64,
        /// The epoch from which it is final.
        final_at: ChainEpoch,
        /// The head.
        head: ChainEpoch,
    },
    /// The payer knows the secret: the voucher is paid, replace it rather than expire it.
    #[error("the secret of lane {0}'s conditional voucher is known: replace it instead")]
    SecretKnown(u64),
    /// The holder does not know the secret the voucher needs.
    #[error("the secret of lane {0}'s conditional voucher is not known")]
    SecretUnknown(u64),
    /// A lane could not be leased or returned.
    #[error(transparent)]
    Lane(#[from] LaneError),
    /// The voucher could not be created.
    #[error(transparent)]
    Create(#[from] CreateVoucherError),
    /// The channel is not known.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The voucher could not be submitted.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PaymentChannelManager {
    /// Payer: signs a conditional voucher adding `delta` on a lane leased from the channel's
    /// pool, locked by `hash` until `lock`; durable before it returns. It counts as spent as
    /// if revealed: refused with `Shortfall` (the lane back in the pool) when the channel
    /// cannot cover it. The lane takes no other voucher until it resolves.
    #[tracing::instrument(name = "paych_conditional_offer", level = "debug", skip_all)]
    pub async fn conditional_offer(
        &self,
        channel: &Address,
        delta: TokenAmount,
        hash: &[u8],
        lock: ChainEpoch,
    ) -> Result<ConditionalVoucher, ConditionalError> {
        if hash.len() != SECRET_LEN {
            return Err(
                RouteRefusal::BadShape(format!("a {}-byte payment hash", hash.len())).into()
            );
        }
        if lock <= 0 {
            return Err(RouteRefusal::BadShape(format!("lock {lock}")).into());
        }
        if !delta.is_positive() {
            let why = "a conditional payment must be positive".to_owned();
            return Err(CreateVoucherError::InvalidAmount(why).into());
        }
        let lane = self.lease_lane(channel).await?;
        let spec = VoucherSpec {
            amount: delta,
            time_lock_max: lock,
            secret_hash: hash.to_vec(),
            ..VoucherSpec::default()
        };
        let created = self.create_on_lane(channel, lane, spec, Creation::Conditional).await;
        match created {
            Ok(VoucherCreateResult { voucher: Some(voucher), .. }) => {
                Ok(ConditionalVoucher { lane, voucher })
            }
            Ok(VoucherCreateResult { shortfall, .. }) => {
                self.return_lane(channel, lane).await?;
                Err(ConditionalError::Shortfall(shortfall))
            }
            Err(CreateVoucherError::Route(refusal)) => {
                self.return_lane(channel, lane).await?;
                Err(ConditionalError::Refused(refusal))
            }
            Err(e) => {
                self.return_lane(channel, lane).await?;
                Err(e.into())
            }
        }
    }

    /// Payer: the secret came (the payer's receipt): keeps it, and signs the unconditional
    /// replacement of the lane's pending conditional voucher — same amount, next nonce —
    /// durable before it returns; the lane goes back to the pool.
    #[tracing::instrument(name = "paych_conditional_replace", level = "debug", skip_all)]
    pub async fn conditional_replace(
        &self,
        channel: &Address,
        lane: u64,
        secret: &[u8],
    ) -> Result<SignedVoucher, ConditionalError> {
        let voucher = self.conditional_replace_leased(channel, lane, secret).await?;
        self.return_lane(channel, lane).await?;
        Ok(voucher)
    }

    /// [`PaymentChannelManager::conditional_replace`], the lane kept leased: the caller
    /// returns it ([`PaymentChannelManager::return_lane`]) once the receiver acknowledged the
    /// replacement, so that no other voucher on the lane can reach it first.
    #[tracing::instrument(name = "paych_conditional_replace_leased", level = "debug", skip_all)]
    pub async fn conditional_replace_leased(
        &self,
        channel: &Address,
        lane: u64,
        secret: &[u8],
    ) -> Result<SignedVoucher, ConditionalError> {
        let pending = self.pending_outbound(channel, lane).await?;
        route::check_secret(secret, &pending.hash)?;
        self.learn_secret(&pending.hash, secret).await?;
        let spec = VoucherSpec { amount: pending.amount, ..VoucherSpec::default() };
        let created = self.create_on_lane(channel, lane, spec, Creation::Replace).await?;
        created.voucher.ok_or(ConditionalError::Shortfall(created.shortfall))
    }

    /// Payer: resolves a lane whose conditional voucher's lock has passed by the confirmation
    /// depth. Unredeemed on chain, the voucher no longer counts and the lane resumes at its
    /// amount before it; redeemed, the lane keeps the amount. Either way the lane goes back to
    /// the pool, its next voucher on a fresh nonce. Refused while the lock is not final, and
    /// when the secret is known (the voucher is paid: replace it).
    #[tracing::instrument(name = "paych_conditional_expire", level = "debug", skip_all)]
    pub async fn conditional_expire(
        &self,
        channel: &Address,
        lane: u64,
    ) -> Result<ExpireOutcome, ConditionalError> {
        let pending = self.pending_outbound(channel, lane).await?;
        if self.known_secret(&pending.hash)?.is_some() {
            return Err(ConditionalError::SecretKnown(lane));
        }
        let head = self.inner.chain.head().await?;
        let final_at = pending.lock.saturating_add(self.inner.config.route.conf_epochs());
        if head < final_at {
            return Err(ConditionalError::NotExpired { lane, final_at, head });
        }
        let record = self.record_by_address(channel)?;
        let addr =
            record.channel.ok_or_else(|| LookupError::UnknownChannel(self.describe(&record)))?;
        let on_chain = self.inner.chain.channel(&addr).await?;
        let redeemed = on_chain.lane(lane).is_some_and(|l| l.nonce >= pending.nonce);
        let lock = self.channel_lock(record.id);
        let mut cache = lock.lock().await;
        cache.in_flight.clone().settle().await;
        // Replaced (or expired) meanwhile: nothing left to expire.
        if cache.pending.get(&lane) != Some(&pending) {
            return Err(ConditionalError::NotPending(lane));
        }
        let mut stored = self
            .inner
            .store
            .voucher(record.id, lane, pending.nonce)?
            .ok_or(ConditionalError::NotPending(lane))?;
        match redeemed {
            true => stored.submitted = true,
            false => stored.superseded = true,
        }
        self.commit(vec![Write::Voucher(stored)]).await?;
        // The lane's amount is derived again from the store, without the expired voucher.
        *cache = ChannelCache::default();
        self.load_cache(record.id, &mut cache)?;
        let amount = cache.lanes.get(&lane).map(|t| t.amount.clone()).unwrap_or_default();
        drop(cache);
        self.return_lane(channel, lane).await?;
        Ok(match redeemed {
            true => ExpireOutcome::RedeemedOnChain,
            false => ExpireOutcome::Expired { amount },
        })
    }

    /// The pending conditional voucher this node signed on an outbound channel's lane.
    async fn pending_outbound(
        &self,
        channel: &Address,
        lane: u64,
    ) -> Result<Pending, ConditionalError> {
        let (mut cache, record) = self.locked(channel, Direction::Outbound).await?;
        self.load_cache(record.id, &mut cache)?;
        cache.pending.get(&lane).cloned().ok_or(ConditionalError::NotPending(lane))
    }

    /// Holder: takes a conditional voucher from the payer of an inbound channel — on the terms
    /// the route set, on a lane with nothing pending, only if the channel covers every pending
    /// conditional voucher on it as if all were revealed — durable before it returns. Answers
    /// what it credits now (design §3b): nothing without the secret; with it (a payee's own
    /// invoice), what it adds while it can still land. The same voucher again credits nothing.
    #[tracing::instrument(name = "paych_conditional_accept", level = "debug", skip_all)]
    pub async fn conditional_accept(
        &self,
        voucher: &SignedVoucher,
        terms: &ConditionalTerms,
    ) -> Result<TokenAmount, AddVoucherError> {
        self.accept_with(voucher, terms, Flush::Now).await
    }

    /// [`PaymentChannelManager::conditional_accept`], the voucher written but not yet
    /// durable: the caller writes what goes with it (its route record, the voucher it signs
    /// downstream) and makes the store durable — one flush for all — before anything
    /// acknowledges it or leaves the node.
    #[tracing::instrument(name = "paych_conditional_accept", level = "debug", skip_all)]
    pub async fn conditional_accept_unflushed(
        &self,
        voucher: &SignedVoucher,
        terms: &ConditionalTerms,
    ) -> Result<TokenAmount, AddVoucherError> {
        self.accept_with(voucher, terms, Flush::Caller).await
    }

    /// Holder: takes a routed payment's unconditional voucher replacing the conditional one
    /// held on its lane (design §9 step 5) — only as that exact replacement (a higher nonce,
    /// the same amount, no conditions; else `BadReplacement`), valid for the actor against
    /// the chain with its signature checked, within the intake policy and landing before the
    /// channel settles — durable before it returns. It credits nothing: the route was paid
    /// by the secret that made the conditional voucher count, and the replacement, redeemable
    /// whenever that voucher is and without the secret or its lock, can only raise what the
    /// channel's vouchers are worth, so intake plans nothing for it. The same replacement again
    /// (or one a later unconditional voucher on the lane covers) is acknowledged again.
    #[tracing::instrument(name = "paych_replacement_add", level = "debug", skip_all)]
    pub async fn replacement_add(
        &self,
        channel: &Address,
        voucher: &SignedVoucher,
    ) -> Result<(), AddVoucherError> {
        let intake = super::vouchers::Intake::Replacement;
        self.add(channel, voucher, TokenAmount::default(), intake, Flush::Now).await.map(drop)
    }

    async fn accept_with(
        &self,
        voucher: &SignedVoucher,
        terms: &ConditionalTerms,
        flush: Flush,
    ) -> Result<TokenAmount, AddVoucherError> {
        let channel = &voucher.channel_addr;
        let intake = super::vouchers::Intake::Conditional(terms);
        let added = self.add(channel, voucher, TokenAmount::default(), intake, flush).await?;
        match added {
            Added::Credited { delta } => Ok(delta),
            Added::StoredZero { .. } | Added::AlreadyHeld => Ok(TokenAmount::default()),
            Added::Covered { nonce, .. } => {
                Err(AddVoucherError::InvalidVoucher(crate::actor::ActorError::StaleNonce {
                    lane: voucher.lane,
                    existing: nonce,
                    voucher: voucher.nonce,
                }))
            }
        }
    }

    /// The routed payment's checks of a conditional voucher on intake: a payment hash the
    /// channel has not carried before, its exact shape on its lane, a deadline leaving the margin, a lane with nothing pending, a channel covering
    /// every pending conditional voucher as if revealed, and the actor's verdict (with the
    /// secret if known; without it, on the voucher with its hash cleared, its signature
    /// verified first).
    pub(super) async fn check_conditional_intake(
        &self,
        record: &ChannelRecord,
        held: &Held,
        voucher: &SignedVoucher,
        terms: &ConditionalTerms,
        view: &ChainView,
        secrets: &HashMap<Vec<u8>, Vec<u8>>,
    ) -> Result<(), AddVoucherError> {
        // One conditional voucher per payment hash on a channel.
        if held.iter().any(|v| v.secret_hash == terms.hash) {
            return Err(RouteRefusal::HashSeen.into());
        }
        let expected = lane_amount(held, voucher.lane, view) + &terms.delta;
        route::check_conditional_shape(voucher, &terms.hash, terms.lock, &expected)?;
        let settling_at = view.on_chain.state.settling_at;
        route::check_payee_lock(terms.lock, settling_at, view.head, terms.margin)?;
        if pending_held(held, voucher.lane, view).is_some() {
            return Err(RouteRefusal::LanePending(voucher.lane).into());
        }
        let mut situation = self.situation(record, view, 0, 0);
        situation.add_alias(voucher.channel_addr);
        held.channel_addrs().iter().for_each(|addr| situation.add_alias(*addr));
        let committed = committed(held, voucher, view, &situation);
        if committed > view.on_chain.balance {
            let balance = view.on_chain.balance.clone();
            return Err(RouteRefusal::OverCommitted { committed, balance }.into());
        }
        match secrets.get(&voucher.secret_hash) {
            Some(secret) => self.validate_on(view, voucher, secret, false).await?,
            None => {
                self.verify_payer_signature(record, voucher).await?;
                let mut bare = voucher.clone();
                bare.secret_hash.clear();
                self.validate_on(view, &bare, &[], true).await?
            }
        };
        Ok(())
    }

    /// Whether intake keeps a channel's credited level: where time locks are taken, or where
    /// conditional vouchers are held (a lock that runs out must not let their value be
    /// credited twice).
    pub(super) fn levels_credit(&self, held: &Held, voucher: &SignedVoucher) -> bool {
        self.inner.config.intake.accept_time_locks
            || is_conditional(voucher)
            || held.iter().any(is_conditional)
    }

    /// Learns a payment secret — exactly 32 bytes hashing to `hash`, else `BadSecret` — and
    /// keeps it, durable before it returns. From then on the redemption model counts the
    /// conditional vouchers on `hash` while they can still land, and the settler lands them.
    #[tracing::instrument(name = "paych_learn_secret", level = "debug", skip_all)]
    pub async fn learn_secret(&self, hash: &[u8], secret: &[u8]) -> Result<(), ConditionalError> {
        route::check_secret(secret, hash)?;
        if self.inner.store.secret(hash)?.is_none() {
            let record = SecretRecord { payment_hash: hash.to_vec(), secret: secret.to_vec() };
            self.commit(vec![Write::Secret(record)]).await?;
        }
        Ok(())
    }

    /// The secret of `hash`, if this node knows it: its own invoice's, or learned. (A payee
    /// holds its invoices' secrets: looked up first, a payee's intake finds each in one read.)
    pub fn known_secret(&self, hash: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(record) = self.inner.store.invoice_secret(hash)? {
            return Ok(Some(record.secret));
        }
        Ok(self.inner.store.secret(hash)?.map(|r| r.secret))
    }

    /// The secrets known for the vouchers' hashes, for the redemption model.
    pub(super) fn known_secrets<'a>(
        &self,
        vouchers: impl Iterator<Item = &'a SignedVoucher>,
    ) -> Result<HashMap<Vec<u8>, Vec<u8>>, StoreError> {
        let hashes: BTreeSet<&[u8]> = vouchers
            .filter(|v| is_conditional(v))
            .map(|v| v.secret_hash.as_slice())
            .take(MAX_SECRET_LOOKUPS)
            .collect();
        let mut secrets = HashMap::new();
        for hash in hashes {
            if let Some(secret) = self.known_secret(hash)? {
                secrets.insert(hash.to_vec(), secret);
            }
        }
        Ok(secrets)
    }

    /// Holder: submits the lane's conditional voucher with its secret now.
    #[tracing::instrument(name = "paych_conditional_redeem", level = "debug", skip_all)]
    pub async fn conditional_redeem(
        &self,
        channel: &Address,
        lane: u64,
    ) -> Result<Cid, ConditionalError> {
        let record = self.record_by_address(channel)?;
        let voucher = self
            .inner
            .store
            .lane_vouchers(record.id, lane, 0)?
            .into_iter()
            .filter(|r| r.origin == VoucherOrigin::Received)
            .map(|r| r.voucher)
            .next_back()
            .filter(is_conditional)
            .ok_or(ConditionalError::NotPending(lane))?;
        let secret = self
            .known_secret(&voucher.secret_hash)?
            .ok_or(ConditionalError::SecretUnknown(lane))?;
        Ok(self.voucher_submit(channel, &voucher, &secret).await?)
    }

    /// The conditional vouchers pending on a channel: on an outbound one, those this node
    /// signed that are neither replaced nor expired; on an inbound one, those held on top of
    /// their lanes that can still land and that the chain has not redeemed.
    #[tracing::instrument(name = "paych_pending_conditionals", level = "debug", skip_all)]
    pub async fn pending_conditionals(
        &self,
        channel: &Address,
    ) -> Result<Vec<PendingConditional>, ConditionalError> {
        let record = self.record_by_address(channel)?;
        let found = if record.direction == Direction::Outbound {
            let (mut cache, record) = self.locked(channel, Direction::Outbound).await?;
            self.load_cache(record.id, &mut cache)?;
            let pending = cache.pending.iter();
            pending
                .map(|(lane, p)| (*lane, p.nonce, p.amount.clone(), p.hash.clone(), p.lock))
                .collect()
        } else {
            self.pending_held_conditionals(&record).await?
        };
        let mut pending = Vec::with_capacity(found.len());
        for (lane, nonce, amount, hash, lock) in found {
            let secret_known = self.known_secret(&hash)?.is_some();
            pending.push(PendingConditional { lane, nonce, amount, hash, lock, secret_known });
        }
        Ok(pending)
    }

    /// The conditional vouchers on top of their lanes of an inbound channel that can still
    /// land: neither submitted nor superseded here, their lock ahead of the head, and above
    /// the chain's nonce on their lane (a voucher the chain redeemed, by whatever message, is
    /// no longer pending).
    async fn pending_held_conditionals(
        &self,
        record: &ChannelRecord,
    ) -> Result<Vec<PendingTuple>, ConditionalError> {
        let live = |r: &VoucherRecord| !r.submitted && !r.superseded;
        let mut tops: BTreeMap<u64, SignedVoucher> = BTreeMap::new();
        for r in self.inner.store.lane_tops(record.id, &live)? {
            tops.insert(r.voucher.lane, r.voucher);
        }
        tops.retain(|_, v| is_conditional(v));
        let Some(addr) = record.channel.filter(|_| !tops.is_empty()) else {
            return Ok(Vec::new());
        };
        let (head, on_chain) = match self.inner.chain.channel_at_head(&addr).await {
            Ok(at) => at,
            // The channel's actor is gone: nothing on it can land.
            Err(ChainError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let redeemed =
            |v: &SignedVoucher| on_chain.lane(v.lane).is_some_and(|l| l.nonce >= v.nonce);
        Ok(tops
            .into_iter()
            .filter(|(_, v)| v.time_lock_max > head && !redeemed(v))
            .map(|(lane, v)| (lane, v.nonce, v.amount, v.secret_hash, v.time_lock_max))
            .collect())
    }

    /// Whether an inbound channel holds a conditional voucher, not yet submitted, whose
    /// secret this node knows and whose lock has not passed: the settler watches its lock.
    pub(super) fn holds_redeemable_conditional(
        &self,
        record: &ChannelRecord,
        head: ChainEpoch,
    ) -> Result<bool, StoreError> {
        for r in self.inner.store.vouchers(record.id)? {
            let v = &r.voucher;
            let live = is_conditional(v) && !r.submitted && !r.superseded && v.time_lock_max > head;
            if live && self.known_secret(&v.secret_hash)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redemption::tests::CHANNEL;
    use crate::types::{LaneState, Merge};
    use proptest::prelude::*;

    fn voucher(lane: u64, nonce: u64, amount: u64, kind: u8) -> SignedVoucher {
        let amount = TokenAmount::from_atto(amount);
        let mut v = SignedVoucher::new(Address::new_id(CHANNEL), lane, nonce, amount);
        v.signature = Some(fvm_shared::crypto::signature::Signature::new_secp256k1(vec![0; 65]));
        match kind {
            0 | 1 => {
                v.secret_hash = vec![kind; 32];
                v.time_lock_max = 30;
            }
            2 => v.time_lock_max = 5,
            3 => v.merges = vec![Merge { lane: (lane + 1) % 4, nonce: nonce + 1 }],
            _ => {}
        }
        v
    }

    fn unbounded(chain: &[(u64, u64, u64)]) -> Situation {
        let mut situation = crate::redemption::tests::situation(0);
        situation.balance = TokenAmount::from_whole(UNBOUNDED_FIL);
        for (lane, nonce, redeemed) in chain {
            let redeemed = TokenAmount::from_atto(*redeemed);
            situation.state.to_send += &redeemed;
            situation.state.lanes.insert(*lane, LaneState { redeemed, nonce: *nonce });
        }
        situation
    }

    proptest! {
        /// What the channel would pay with every conditional voucher revealed: the plan from
        /// the lanes' tops, whenever it answers, is the search's over every voucher held.
        #[test]
        fn the_revealed_tops_plan_is_the_searched_plan(
            held in proptest::collection::vec((0u64..4, 0u64..8, 0u64..80, 0u8..10), 0..16),
            new in (0u64..5, 0u64..9, 0u64..80, 0u8..10),
            chain in proptest::collection::vec((0u64..4, 0u64..4, 0u64..30), 0..3),
        ) {
            let mut vouchers = Held::default();
            for (lane, nonce, amount, kind) in held {
                vouchers.insert(voucher(lane, nonce, amount, kind));
            }
            let new = voucher(new.0, new.1, new.2, new.3);
            let situation = unbounded(&chain);
            if let Some(tops) = revealed_tops_plan(&vouchers, &new, &situation) {
                prop_assert_eq!(tops, revealed_searched_plan(&vouchers, &new, &situation));
            }
        }
    }

    #[test]
    fn the_revealed_tops_plan_counts_pending_conditional_vouchers_as_revealed() {
        let mut held = Held::default();
        held.insert(voucher(0, 1, 10, 0));
        held.insert(voucher(0, 2, 10, 9));
        held.insert(voucher(1, 1, 25, 1));
        let situation = unbounded(&[]);
        let new = voucher(2, 1, 5, 0);
        let value = revealed_tops_plan(&held, &new, &situation);
        assert_eq!(value, Some(TokenAmount::from_atto(40)));
        assert_eq!(revealed_searched_plan(&held, &new, &situation), TokenAmount::from_atto(40));
    }
}
