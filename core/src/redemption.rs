//! What a payee's vouchers are worth on chain: the one redemption model (design §3b).
//!
//! A payee's answer to a voucher is a promise about the chain, so what it credits must be
//! what it can redeem: the most `to_send` it can reach by submitting vouchers it holds, in
//! a good order, from the chain's channel state, in messages that execute at the next epoch
//! or later and land before `settling_at`, with the secrets it holds. This module computes
//! that as a [`Plan`] — an ordered list of `UpdateChannelState` calls, each run through
//! [`crate::actor::update_channel_state`] on a copy of the state, so that what the plan
//! claims is exactly what the actor would do. Voucher intake, best-spendable, the settler
//! and reconciliation all ask this module; none has its own idea of a voucher's worth.
//!
//! The search is greedy but never optimistic: every plan it returns is a real redemption
//! sequence the actor accepts, so its value is at most the true best. Where lanes overdraw
//! the balance together, the vouchers of the lanes no merging voucher touches are chosen
//! again, one per lane, to fill it (an exhaustive search of at most `MAX_FILL_BRANCHES`
//! branches). For the vouchers an honest payer signs (cumulative amounts per lane within the
//! channel's balance, the combined vouchers of reconciliations over lanes on chain, and
//! payments after a reconciliation with the room its combined voucher leaves, which the
//! folded lanes, redeemed on their own, may overdraw) it is the true best.
//!
//! Vouchers given to the model must carry a signature already verified as the payer's;
//! the model checks everything else the actor checks. A voucher whose worth depends on a
//! call the model cannot predict (`extra`) is worth nothing here. This module never does
//! I/O.

use std::collections::{BTreeMap, HashMap};

use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use fvm_shared::error::ExitCode;
use fvm_shared::ActorID;

use crate::actor::{
    self, AccountLookup, ActorEnv, ActorError, ChannelState, ExtraCallFailure, Invocation,
};
use crate::types::{ModVerifyParams, SignedVoucher};

/// Where a plan starts: the channel as the chain holds it, and when the plan's messages can
/// execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Situation {
    /// The channel's state on chain (parties as ID addresses, lanes, `to_send`, settlement).
    pub state: ChannelState,
    /// The channel's balance on chain.
    pub balance: TokenAmount,
    /// The channel's ID address (the actor's receiver).
    pub channel_id: Address,
    /// The channel's other addresses known to resolve to it (its robust address; vouchers
    /// may name either).
    pub channel_aliases: Vec<Address>,
    /// The first epoch at which a message sent now can execute: the head + 1.
    pub first_epoch: ChainEpoch,
    /// Epochs a message may take to land after `first_epoch`: a voucher counts only if it
    /// can be redeemed at every epoch of `first_epoch ..= first_epoch + landing_window`,
    /// which must all come before `settling_at`.
    pub landing_window: ChainEpoch,
    /// Epochs the message of a conditional voucher (one with a secret hash, its secret held)
    /// may take to land after `first_epoch`: such a voucher counts only if it can be redeemed
    /// at every epoch of `first_epoch ..= first_epoch + conditional_window`, all before
    /// `settling_at` and its `time_lock_max` — the route's `S + conf` (design §9), the margin
    /// by which its holder lands it — where other vouchers need `landing_window`.
    pub conditional_window: ChainEpoch,
    /// Secrets the payee holds, by their blake2b-256 hash.
    pub secrets: HashMap<Vec<u8>, Vec<u8>>,
}

impl Situation {
    /// The last epoch at which the plan's messages may land.
    pub fn last_epoch(&self) -> ChainEpoch {
        self.first_epoch.saturating_add(self.landing_window.max(0))
    }

    /// The last epoch at which `voucher`'s message may land: the end of its window —
    /// [`Situation::conditional_window`] for a conditional voucher, the landing window for any
    /// other. It counts only if redeemable through that epoch, before `settling_at` and its
    /// `time_lock_max`.
    fn last_epoch_for(&self, voucher: &SignedVoucher) -> ChainEpoch {
        match voucher.secret_hash.is_empty() {
            true => self.last_epoch(),
            false => self.first_epoch.saturating_add(self.conditional_window.max(0)),
        }
    }

    /// Whether messages sent now can still land before the channel settles.
    pub fn can_land(&self) -> bool {
        self.state.settling_at == 0 || self.last_epoch() < self.state.settling_at
    }

    /// Why `voucher` cannot count whatever else is held, if it cannot: the checks the
    /// actor makes that depend on time, the channel address or outside calls.
    pub fn unredeemable(&self, voucher: &SignedVoucher) -> Option<Unredeemable> {
        let settling_at = self.state.settling_at;
        if settling_at != 0 && self.last_epoch_for(voucher) >= settling_at {
            return Some(Unredeemable::Settling { settling_at });
        }
        if !self.names_channel(&voucher.channel_addr) {
            return Some(Unredeemable::OtherChannel(voucher.channel_addr));
        }
        if voucher.time_lock_min > self.first_epoch {
            return Some(Unredeemable::TimeLockMin { time_lock_min: voucher.time_lock_min });
        }
        if voucher.time_lock_max != 0 && voucher.time_lock_max < self.last_epoch_for(voucher) {
            return Some(Unredeemable::TimeLockMax { time_lock_max: voucher.time_lock_max });
        }
        if voucher.extra.is_some() {
            return Some(Unredeemable::Extra);
        }
        if !voucher.secret_hash.is_empty() && !self.secrets.contains_key(&voucher.secret_hash) {
            return Some(Unredeemable::SecretUnknown);
        }
        if voucher.signature.is_none() {
            return Some(Unredeemable::Actor(ActorError::MissingSignature));
        }
        None
    }

    /// Whether a plan may use `voucher`: nothing keeps it from counting
    /// ([`Situation::unredeemable`]) and its nonce is above the chain's on its lane.
    pub fn is_candidate(&self, voucher: &SignedVoucher) -> bool {
        self.unredeemable(voucher).is_none()
            && self.state.lanes.get(&voucher.lane).is_none_or(|l| voucher.nonce > l.nonce)
    }

    /// Adds `addr` to the channel's other addresses, unless it is known already (vouchers
    /// name a channel by one or two addresses, however many there are).
    pub fn add_alias(&mut self, addr: Address) {
        if !self.names_channel(&addr) {
            self.channel_aliases.push(addr);
        }
    }

    fn names_channel(&self, addr: &Address) -> bool {
        *addr == self.channel_id || self.channel_aliases.contains(addr)
    }

    /// Runs one voucher through the actor on `state`, as the payee at the plan's first
    /// epoch. Does not look at [`Situation::unredeemable`]'s checks beyond the actor's.
    pub fn redeem(
        &self,
        state: &mut ChannelState,
        voucher: &SignedVoucher,
    ) -> Result<actor::Redemption, ActorError> {
        self.redeem_in(&PlanEnv::new(self, state.to), state, voucher)
    }

    /// [`Situation::redeem`] in `env`, made once for the steps of a plan.
    fn redeem_in(
        &self,
        env: &PlanEnv<'_>,
        state: &mut ChannelState,
        voucher: &SignedVoucher,
    ) -> Result<actor::Redemption, ActorError> {
        actor::redeem(state, env, voucher, self.secret_of(voucher))
    }

    /// The secret submitted with `voucher`: its hash's, if held (empty otherwise).
    fn secret_of(&self, voucher: &SignedVoucher) -> &[u8] {
        self.secrets.get(&voucher.secret_hash).map_or(&[], Vec::as_slice)
    }
}

/// Why a voucher is worth nothing to the payee whatever else it holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unredeemable {
    /// Messages sent now cannot land before the channel settles.
    #[error("the channel settles at epoch {settling_at}: nothing sent now lands before it")]
    Settling {
        /// The channel's settling epoch.
        settling_at: ChainEpoch,
    },
    /// The voucher names another channel.
    #[error("the voucher names channel {0}, not this one")]
    OtherChannel(Address),
    /// The voucher cannot be redeemed at the next epoch.
    #[error("the voucher cannot be redeemed before epoch {time_lock_min}")]
    TimeLockMin {
        /// The voucher's lower time lock.
        time_lock_min: ChainEpoch,
    },
    /// The voucher's upper time lock leaves no time for a message to land.
    #[error(
        "the voucher expires at epoch {time_lock_max}, before a message sent now surely lands"
    )]
    TimeLockMax {
        /// The voucher's upper time lock.
        time_lock_max: ChainEpoch,
    },
    /// The voucher's worth depends on a call whose outcome, made by the channel, cannot be
    /// known beforehand.
    #[error("the voucher's worth depends on an extra call")]
    Extra,
    /// The voucher needs a secret the payee does not hold.
    #[error("the voucher needs a secret the payee does not hold")]
    SecretUnknown,
    /// The actor refuses it.
    #[error(transparent)]
    Actor(ActorError),
}

/// What a payee takes on the payment path, beyond what the actor checks: the one place
/// that decides about vouchers whose worth depends on the future (design §3b).
///
/// By default it refuses what Lotus refuses on the payee side — time locks, secret hashes,
/// `extra` calls and merges (a combined voucher comes only through a reconciliation the
/// payee asked for, not through intake) — takes `min_settle_height` only up to
/// [`IntakePolicy::max_settle_delay`] epochs ahead of the head, and keeps
/// [`IntakePolicy::landing_margin`] epochs before `settling_at` free for its messages to
/// land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakePolicy {
    /// Whether vouchers with `time_lock_min` / `time_lock_max` are taken. Such a voucher is
    /// credited only for what it is sure to be worth: redeemable at every epoch from the
    /// next one through the landing margin, and the settler submits it before its lock.
    pub accept_time_locks: bool,
    /// The furthest a voucher's `min_settle_height` may lie beyond the head: a voucher
    /// setting it further would keep the channel's funds from being collected for that long.
    pub max_settle_delay: ChainEpoch,
    /// Epochs a message may take to land: a voucher counts only if it can still be redeemed
    /// that many epochs after the next one, before `settling_at` and its `time_lock_max`.
    pub landing_margin: ChainEpoch,
}

/// A default landing margin: 20 epochs (10 minutes of 30-second epochs).
pub const DEFAULT_LANDING_MARGIN: ChainEpoch = 20;

impl Default for IntakePolicy {
    fn default() -> Self {
        IntakePolicy {
            accept_time_locks: false,
            max_settle_delay: crate::types::SETTLE_DELAY,
            landing_margin: DEFAULT_LANDING_MARGIN,
        }
    }
}

/// Why the intake policy refuses a voucher.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    /// The voucher is time-locked and the policy takes no time locks.
    #[error(
        "voucher is time locked (time_lock_min {time_lock_min}, time_lock_max {time_lock_max})"
    )]
    TimeLocked {
        /// The voucher's lower lock.
        time_lock_min: ChainEpoch,
        /// The voucher's upper lock.
        time_lock_max: ChainEpoch,
    },
    /// The voucher is hash-locked.
    #[error("voucher is hash locked")]
    HashLocked,
    /// The voucher makes an `extra` call.
    #[error("voucher is message locked (extra call to {0})")]
    MessageLocked(Address),
    /// The voucher merges lanes outside a reconciliation.
    #[error("voucher merges lanes: combined vouchers come only from a reconciliation")]
    Merges,
    /// The voucher's `min_settle_height` lies too far ahead.
    #[error("min_settle_height {min_settle_height} lies beyond epoch {limit}")]
    SettleHeightTooFar {
        /// The voucher's minimum settle height.
        min_settle_height: ChainEpoch,
        /// The furthest epoch the policy takes.
        limit: ChainEpoch,
    },
}

impl IntakePolicy {
    /// Checks a voucher offered on the payment path against the policy, with the chain at
    /// `head`.
    pub fn check(&self, voucher: &SignedVoucher, head: ChainEpoch) -> Result<(), PolicyRefusal> {
        if !voucher.merges.is_empty() {
            return Err(PolicyRefusal::Merges);
        }
        if let Some(extra) = &voucher.extra {
            return Err(PolicyRefusal::MessageLocked(extra.actor));
        }
        if !voucher.secret_hash.is_empty() {
            return Err(PolicyRefusal::HashLocked);
        }
        if !self.accept_time_locks && (voucher.time_lock_min != 0 || voucher.time_lock_max != 0) {
            return Err(PolicyRefusal::TimeLocked {
                time_lock_min: voucher.time_lock_min,
                time_lock_max: voucher.time_lock_max,
            });
        }
        let limit = head.saturating_add(self.max_settle_delay.max(0));
        if voucher.min_settle_height > limit {
            return Err(PolicyRefusal::SettleHeightTooFar {
                min_settle_height: voucher.min_settle_height,
                limit,
            });
        }
        Ok(())
    }
}

/// One message of a plan: a voucher (with its secret) and what it adds to `to_send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The voucher to submit.
    pub voucher: SignedVoucher,
    /// The secret to submit with it (empty when it has no secret hash).
    pub secret: Vec<u8>,
    /// How much `to_send` grows when it executes after the steps before it.
    pub delta: TokenAmount,
}

/// A redemption sequence and where it leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The messages to send, in order.
    pub steps: Vec<Step>,
    /// The channel's state after the last step.
    pub state: ChannelState,
}

impl Plan {
    /// The `to_send` the plan reaches: what the payee is paid at collect.
    pub fn value(&self) -> &TokenAmount {
        &self.state.to_send
    }

    /// The plan that submits nothing.
    pub fn empty(situation: &Situation) -> Plan {
        Plan { steps: Vec::new(), state: situation.state.clone() }
    }
}

/// The best plan this model finds for `held` from `situation`: a sequence the actor accepts
/// step by step, reaching the highest `to_send` found, and among equal ones the fewest
/// messages. Vouchers must carry verified signatures (see the module's doc).
pub fn best_plan(situation: &Situation, held: &[&SignedVoucher]) -> Plan {
    best_draft(situation, held).into_plan(situation)
}

/// The channel's state after [`best_plan`]'s steps (its `to_send` is the plan's value),
/// without copying the steps: what intake needs of a plan.
pub fn best_state(situation: &Situation, held: &[&SignedVoucher]) -> ChannelState {
    best_draft(situation, held).state
}

/// [`best_plan`] before its steps are copied.
fn best_draft<'a>(situation: &Situation, held: &[&'a SignedVoucher]) -> Draft<'a> {
    match tops_draft(situation, held) {
        Some(draft) => draft,
        None => searched_draft(situation, held),
    }
}

/// The channel's state after the plan of each lane's highest candidate, when that plan is
/// [`best_plan`]'s: no voucher held merges lanes, and those tops, in the order of their
/// lanes, each redeem on the state the ones before leave. `None` otherwise (a lane must fall
/// back, or a merging voucher must be tried), for the search to find.
///
/// The search gives the same plan in that case: it starts from each lane's highest candidate
/// in lane order (exactly this sequence), needs no fallback, so that no lane is chosen again
/// to fill the balance, and has no merging voucher to try. This finds those tops in one pass,
/// asking [`Situation::unredeemable`] only of a voucher above its lane's top so far, where the
/// search sorts and checks every voucher held.
pub fn tops_state(situation: &Situation, held: &[&SignedVoucher]) -> Option<ChannelState> {
    tops_draft(situation, held).map(|draft| draft.state)
}

/// [`best_state`] over vouchers held by lane, with `extra` held after all of them (the
/// state [`best_state`] gives for the groups flattened, then `extra`). The groups must be in
/// ascending lane order, each one lane's vouchers, highest nonce first, no two with one nonce,
/// none merging lanes (as a payee holds them): each lane's top is then the first voucher of
/// its group the model counts, found without looking at the vouchers below it.
pub fn best_state_by_lane(
    situation: &Situation,
    lanes: &[&[SignedVoucher]],
    extra: Option<&SignedVoucher>,
) -> ChannelState {
    debug_assert!(grouped_by_lane(lanes), "vouchers not grouped by lane, highest nonce first");
    match tops_by_lane(situation, lanes, extra) {
        Some(draft) => draft.state,
        None => {
            let all: Vec<&SignedVoucher> =
                lanes.iter().flat_map(|lane| lane.iter()).chain(extra).collect();
            best_state(situation, &all)
        }
    }
}

/// Whether `lanes` keeps [`best_state_by_lane`]'s order.
fn grouped_by_lane(lanes: &[&[SignedVoucher]]) -> bool {
    let lane_of = |group: &&[SignedVoucher]| group.first().map(|v| v.lane);
    let ascending =
        lanes.iter().filter_map(lane_of).collect::<Vec<_>>().windows(2).all(|w| w[0] < w[1]);
    ascending
        && lanes.iter().all(|group| {
            group
                .iter()
                .all(|v| v.merges.is_empty() && Some(v.lane) == group.first().map(|f| f.lane))
                && group.windows(2).all(|w| w[0].nonce > w[1].nonce)
        })
}

/// [`tops_draft`] over vouchers grouped by lane (see [`best_state_by_lane`]).
fn tops_by_lane<'a>(
    situation: &Situation,
    lanes: &[&'a [SignedVoucher]],
    extra: Option<&'a SignedVoucher>,
) -> Option<Draft<'a>> {
    if extra.is_some_and(|v| !v.merges.is_empty()) {
        return None;
    }
    let step = |v: &'a SignedVoucher| (v, Origin::Plain { lane: v.lane, creates_lane: false });
    let mut extra = extra.filter(|v| situation.is_candidate(v));
    let mut sequence: Vec<(&'a SignedVoucher, Origin)> = Vec::with_capacity(lanes.len() + 1);
    for group in lanes {
        let Some(lane) = group.first().map(|v| v.lane) else { continue };
        // `extra` alone on a lane below this one comes first.
        if let Some(v) = extra.filter(|v| v.lane < lane) {
            sequence.push(step(v));
            extra = None;
        }
        let mut top = group.iter().find(|v| situation.is_candidate(v));
        if let Some(v) = extra.filter(|v| v.lane == lane) {
            extra = None;
            // Held after the group: above its top only by a higher nonce.
            if top.is_none_or(|top| v.nonce > top.nonce) {
                top = Some(v);
            }
        }
        sequence.extend(top.map(step));
    }
    sequence.extend(extra.map(step));
    simulate(situation, &sequence).ok()
}

/// [`tops_state`]'s plan, its steps borrowing their vouchers.
fn tops_draft<'a>(situation: &Situation, held: &[&'a SignedVoucher]) -> Option<Draft<'a>> {
    let mut tops: BTreeMap<u64, &'a SignedVoucher> = BTreeMap::new();
    for voucher in held.iter().copied() {
        if !voucher.merges.is_empty() {
            return None;
        }
        // Of two candidates with one lane and nonce, the first held counts (as in the search).
        if tops.get(&voucher.lane).is_some_and(|top| top.nonce >= voucher.nonce) {
            continue;
        }
        if situation.is_candidate(voucher) {
            tops.insert(voucher.lane, voucher);
        }
    }
    let sequence: Vec<(&'a SignedVoucher, Origin)> = tops
        .into_iter()
        .map(|(lane, voucher)| (voucher, Origin::Plain { lane, creates_lane: false }))
        .collect();
    simulate(situation, &sequence).ok()
}

/// [`best_plan`] by the search: each lane's tops, falling back where the actor refuses a
/// step, filling the balance again, and each merging voucher tried in turn.
fn searched_draft<'a>(situation: &Situation, held: &[&'a SignedVoucher]) -> Draft<'a> {
    // A voucher whose message cannot land before settlement is no candidate (see
    // `Situation::unredeemable`): none left, the plan is empty.
    let candidates = Candidates::new(situation, held);
    // Every alternative starts from each lane's highest voucher: a fallback one
    // alternative needed (a lane lowered to fit the balance) may not be needed by another.
    let mut best_merging: Vec<&SignedVoucher> = Vec::new();
    let mut best = realize(situation, &candidates, &mut Choice::tops(&candidates, Vec::new()));
    for merging in &candidates.merging {
        let mut with = best_merging.clone();
        with.push(merging);
        let mut choice = Choice::tops(&candidates, with);
        let plan = realize(situation, &candidates, &mut choice);
        let better = plan.value() > best.value()
            || (plan.value() == best.value() && plan.steps.len() < best.steps.len());
        if better {
            best = plan;
            best_merging = choice.merging;
        }
    }
    best
}

/// The best plan for `held` with `voucher` added: intake credits a new voucher the value of
/// this plan less that of [`best_plan`] for `held` alone.
pub fn plan_with(situation: &Situation, held: &[&SignedVoucher], voucher: &SignedVoucher) -> Plan {
    let mut all: Vec<&SignedVoucher> = Vec::with_capacity(held.len() + 1);
    all.extend_from_slice(held);
    all.push(voucher);
    best_plan(situation, &all)
}

/// The vouchers a plan may use, sorted for the search.
struct Candidates<'a> {
    /// Plain vouchers (no merges) per lane, highest nonce first, each above the chain's
    /// nonce on its lane.
    plain: BTreeMap<u64, Vec<&'a SignedVoucher>>,
    /// Vouchers that merge lanes, by lane then nonce.
    merging: Vec<&'a SignedVoucher>,
}

impl<'a> Candidates<'a> {
    fn new(situation: &Situation, held: &[&'a SignedVoucher]) -> Self {
        let mut sorted: Vec<&'a SignedVoucher> = Vec::with_capacity(held.len());
        let mut merging = Vec::new();
        for voucher in held.iter().copied() {
            if !situation.is_candidate(voucher) {
                continue;
            }
            if voucher.merges.is_empty() {
                sorted.push(voucher);
            } else {
                merging.push(voucher);
            }
        }
        // Two vouchers with one (lane, nonce): the chain takes one; so does the plan — the
        // first held (the sorts are stable, so it leads its run).
        sorted.sort_by_key(|v| (v.lane, std::cmp::Reverse(v.nonce)));
        sorted.dedup_by_key(|v| (v.lane, v.nonce));
        let mut plain: BTreeMap<u64, Vec<&'a SignedVoucher>> = BTreeMap::new();
        for run in sorted.chunk_by(|a, b| a.lane == b.lane) {
            if let Some(first) = run.first() {
                plain.insert(first.lane, run.to_vec());
            }
        }
        merging.sort_by_key(|v| (v.lane, v.nonce));
        merging.dedup_by_key(|v| (v.lane, v.nonce));
        Candidates { plain, merging }
    }
}

/// Which candidates a plan uses: per lane the index of its plain voucher, and the merging
/// vouchers.
#[derive(Clone)]
struct Choice<'a> {
    plain: BTreeMap<u64, usize>,
    merging: Vec<&'a SignedVoucher>,
}

impl<'a> Choice<'a> {
    fn tops(candidates: &Candidates<'a>, merging: Vec<&'a SignedVoucher>) -> Self {
        Choice { plain: candidates.plain.keys().map(|lane| (*lane, 0)).collect(), merging }
    }
}

/// Where a step came from, to fall back when it fails.
#[derive(Clone, Copy)]
enum Origin {
    Plain { lane: u64, creates_lane: bool },
    Merging(usize),
}

/// Turns a choice into a plan, falling back (to the next lower voucher of a lane, or
/// without a merging voucher) whenever the actor refuses a step, then choosing the vouchers
/// of the lanes no merging voucher touches again to fill the balance (see [`fill`]) if a
/// fallback lowered one of them.
fn realize<'a>(
    situation: &Situation,
    candidates: &Candidates<'a>,
    choice: &mut Choice<'a>,
) -> Draft<'a> {
    let greedy = fall_back(situation, candidates, choice);
    fill(situation, candidates, choice, greedy)
}

/// Turns a choice into a plan, falling back (to the next lower voucher of a lane, or
/// without a merging voucher) whenever the actor refuses a step.
fn fall_back<'a>(
    situation: &Situation,
    candidates: &Candidates<'a>,
    choice: &mut Choice<'a>,
) -> Draft<'a> {
    loop {
        let sequence = sequence(situation, candidates, choice);
        match simulate(situation, &sequence) {
            Ok(plan) => return plan,
            Err(origin) => match origin {
                Origin::Plain { lane, .. } => {
                    let next = choice.plain.get(&lane).map_or(usize::MAX, |i| i.saturating_add(1));
                    if candidates.plain.get(&lane).is_some_and(|v| next < v.len()) {
                        choice.plain.insert(lane, next);
                    } else {
                        choice.plain.remove(&lane);
                    }
                }
                Origin::Merging(index) => {
                    choice.merging.remove(index);
                }
            },
        }
    }
}

/// The most branches [`fill`] explores: beyond them it keeps the best combination found so
/// far (every plan is still one the actor accepts, so a cut search only values less).
const MAX_FILL_BRANCHES: usize = 4096;

/// Chooses again, when the greedy fallback lowered or dropped one of them, the vouchers of
/// the lanes no merging voucher of `choice` touches: the combination of one voucher (or
/// none) per lane that adds the most within the balance the rest of the plan leaves.
///
/// Falling back on the lane whose step overdraws the balance drops that lane whatever it
/// holds: after a reconciliation, say, a payer pays on a new lane with the room the combined
/// voucher leaves, and the lanes it folded, redeemed on their own, overdraw the balance
/// together with the new one; the most the payee can reach then leaves out some of the old
/// lanes, not the new one. This is a choice of one option per lane within a budget, searched
/// exhaustively up to [`MAX_FILL_BRANCHES`]; the plan it gives is run through the actor and
/// taken only if it is worth more than `greedy` (or as much in fewer messages).
fn fill<'a>(
    situation: &Situation,
    candidates: &Candidates<'a>,
    choice: &mut Choice<'a>,
    greedy: Draft<'a>,
) -> Draft<'a> {
    let touched = touched_lanes(choice);
    let free: Vec<u64> =
        candidates.plain.keys().filter(|lane| !touched.contains_key(lane)).copied().collect();
    if free.iter().all(|lane| choice.plain.get(lane) == Some(&0)) {
        return greedy;
    }
    let mut rest = choice.clone();
    for lane in &free {
        rest.plain.remove(lane);
    }
    let Ok(base) = simulate(situation, &sequence(situation, candidates, &rest)) else {
        return greedy;
    };
    let room = &situation.balance - base.value();
    if !room.is_positive() {
        return greedy;
    }
    // Each free lane's vouchers that add something alone from the chain's state, by what they
    // add, largest first (of equal ones, the highest nonce).
    let mut options: Vec<(u64, Vec<(usize, TokenAmount)>)> = Vec::with_capacity(free.len());
    for lane in free {
        let Some(vouchers) = candidates.plain.get(&lane) else { continue };
        let mut adds: Vec<(usize, TokenAmount)> = Vec::new();
        for (index, voucher) in vouchers.iter().enumerate() {
            let mut state = situation.state.clone();
            if let Ok(redemption) = situation.redeem(&mut state, voucher) {
                if redemption.delta.is_positive() && redemption.delta <= room {
                    adds.push((index, redemption.delta));
                }
            }
        }
        adds.sort_by(|a, b| b.1.cmp(&a.1));
        adds.dedup_by(|later, earlier| later.1 == earlier.1);
        if !adds.is_empty() {
            options.push((lane, adds));
        }
    }
    let mut search = FillSearch::new(&options, room);
    search.explore(0, TokenAmount::default());
    for (lane, pick) in options.iter().map(|(lane, _)| *lane).zip(search.best_pick) {
        if let Some(index) = pick {
            rest.plain.insert(lane, index);
        }
    }
    match simulate(situation, &sequence(situation, candidates, &rest)) {
        Ok(plan)
            if plan.value() > greedy.value()
                || (plan.value() == greedy.value() && plan.steps.len() < greedy.steps.len()) =>
        {
            *choice = rest;
            plan
        }
        _ => greedy,
    }
}

/// The exhaustive search of [`fill`]: one option (or none) per lane, the most they add
/// together within `room`.
struct FillSearch<'o> {
    options: &'o [(u64, Vec<(usize, TokenAmount)>)],
    /// For each lane, the most the lanes from it on can add.
    most_from: Vec<TokenAmount>,
    room: TokenAmount,
    pick: Vec<Option<usize>>,
    best: TokenAmount,
    best_pick: Vec<Option<usize>>,
    branches: usize,
}

impl<'o> FillSearch<'o> {
    fn new(options: &'o [(u64, Vec<(usize, TokenAmount)>)], room: TokenAmount) -> Self {
        let mut most_from = vec![TokenAmount::default(); options.len() + 1];
        for (k, (_, adds)) in options.iter().enumerate().rev() {
            let most = adds.first().map(|(_, add)| add.clone()).unwrap_or_default();
            most_from[k] = &most_from[k + 1] + most;
        }
        FillSearch {
            options,
            most_from,
            room,
            pick: vec![None; options.len()],
            best: TokenAmount::default(),
            best_pick: vec![None; options.len()],
            branches: 0,
        }
    }

    fn explore(&mut self, k: usize, sum: TokenAmount) {
        if sum > self.best {
            self.best = sum.clone();
            self.best_pick = self.pick.clone();
        }
        let Some((_, adds)) = self.options.get(k) else { return };
        let bound = self.most_from.get(k).cloned().unwrap_or_default();
        if &sum + bound <= self.best || self.best == self.room {
            return;
        }
        for (index, add) in adds {
            if self.branches >= MAX_FILL_BRANCHES {
                return;
            }
            self.branches += 1;
            let next = &sum + add;
            if next <= self.room {
                self.pick[k] = Some(*index);
                self.explore(k + 1, next);
                self.pick[k] = None;
            }
        }
        self.explore(k + 1, sum);
    }
}

/// For each lane a merging voucher of `choice` touches, the first such voucher and its
/// threshold (the voucher's own nonce on its lane, the merge's nonce on a merged lane).
fn touched_lanes(choice: &Choice<'_>) -> BTreeMap<u64, (usize, u64)> {
    let mut touched: BTreeMap<u64, (usize, u64)> = BTreeMap::new();
    for (index, m) in choice.merging.iter().enumerate() {
        touched.entry(m.lane).or_insert((index, m.nonce));
        for merge in &m.merges {
            touched.entry(merge.lane).or_insert((index, merge.nonce));
        }
    }
    touched
}

/// Orders a choice, by lane: plain vouchers on lanes no merging voucher touches, and each
/// merging voucher preceded by the plain vouchers that must create the lanes it merges
/// (lanes not on chain) and followed by the plain vouchers above it on the lanes it
/// touches. A plain voucher below a merge on a lane the chain holds adds nothing the merge
/// does not take back, and is left out.
fn sequence<'a>(
    situation: &Situation,
    candidates: &Candidates<'a>,
    choice: &Choice<'a>,
) -> Vec<(&'a SignedVoucher, Origin)> {
    let touched = touched_lanes(choice);
    let mut first = Vec::new();
    let mut before: Vec<Vec<(&SignedVoucher, Origin)>> = vec![Vec::new(); choice.merging.len()];
    let mut after: Vec<Vec<(&SignedVoucher, Origin)>> = vec![Vec::new(); choice.merging.len()];
    for (lane, index) in &choice.plain {
        let Some(voucher) = candidates.plain.get(lane).and_then(|v| v.get(*index)).copied() else {
            continue;
        };
        match touched.get(lane) {
            None => first.push((voucher, Origin::Plain { lane: *lane, creates_lane: false })),
            Some((m, threshold)) if voucher.nonce > *threshold => {
                after[*m].push((voucher, Origin::Plain { lane: *lane, creates_lane: false }))
            }
            Some((m, _)) => {
                let own_lane = choice.merging[*m].lane == *lane;
                if !own_lane && !situation.state.lanes.contains_key(lane) {
                    before[*m].push((voucher, Origin::Plain { lane: *lane, creates_lane: true }));
                }
            }
        }
    }
    // Independent groups — a lane no merging voucher touches, or a merging voucher with
    // what must come before and after it — go in the order of their lanes.
    if choice.merging.is_empty() {
        // No merging voucher: every step is a plain one, in the order of its lane (the order
        // of `choice.plain`).
        return first;
    }
    let mut groups: Vec<(u64, Vec<(&SignedVoucher, Origin)>)> =
        first.into_iter().map(|step| (step.0.lane, vec![step])).collect();
    for (index, m) in choice.merging.iter().enumerate() {
        let mut group = std::mem::take(&mut before[index]);
        group.push((m, Origin::Merging(index)));
        group.append(&mut after[index]);
        groups.push((m.lane, group));
    }
    groups.sort_by_key(|(lane, _)| *lane);
    let sequence: Vec<_> = groups.into_iter().flat_map(|(_, group)| group).collect();
    sequence
}

/// Runs a sequence through the actor. A plain step that would lower `to_send` fails it; a
/// plain step that adds nothing and creates no lane is left out.
fn simulate<'a>(
    situation: &Situation,
    sequence: &[(&'a SignedVoucher, Origin)],
) -> Result<Draft<'a>, Origin> {
    let env = PlanEnv::new(situation, situation.state.to);
    let mut state = situation.state.clone();
    let mut steps = Vec::with_capacity(sequence.len());
    for (voucher, origin) in sequence {
        // The actor commits a call whole or not at all, so a refused step leaves `state` as
        // it was; a plain step left out is undone from what it can change (its own lane, and
        // the channel's amounts and settling epochs), not from a copy of every lane.
        let undo = Undo::of(&state, voucher.lane);
        let redemption = situation.redeem_in(&env, &mut state, voucher).map_err(|_| *origin)?;
        if let Origin::Plain { creates_lane, .. } = origin {
            if redemption.delta.is_negative() {
                return Err(*origin);
            }
            if redemption.delta.is_zero() && !creates_lane {
                undo.restore(&mut state);
                continue;
            }
        }
        steps.push((*voucher, redemption.delta));
    }
    Ok(Draft { steps, state })
}

/// A plan while the search runs: its steps borrow the vouchers, copied only into the
/// [`Plan`] chosen.
struct Draft<'a> {
    /// The vouchers to submit, in order, each with what it adds to `to_send`.
    steps: Vec<(&'a SignedVoucher, TokenAmount)>,
    /// The channel's state after the last step.
    state: ChannelState,
}

impl Draft<'_> {
    fn value(&self) -> &TokenAmount {
        &self.state.to_send
    }

    /// The plan, each step with the secret it is submitted with.
    fn into_plan(self, situation: &Situation) -> Plan {
        let steps = self
            .steps
            .into_iter()
            .map(|(voucher, delta)| Step {
                voucher: voucher.clone(),
                secret: situation.secret_of(voucher).to_vec(),
                delta,
            })
            .collect();
        Plan { steps, state: self.state }
    }
}

/// What a plain voucher's redemption (no merges) that adds nothing can change in a channel's
/// state, to put back when the plan leaves the step out: its lane's nonce (the lane itself,
/// if the step created it) and the settling epochs. Adding nothing, it left `to_send` and
/// what its lane redeemed as they were.
struct Undo {
    lane: u64,
    nonce: Option<u64>,
    settling_at: ChainEpoch,
    min_settle_height: ChainEpoch,
}

impl Undo {
    fn of(state: &ChannelState, lane: u64) -> Self {
        Undo {
            lane,
            nonce: state.lanes.get(&lane).map(|l| l.nonce),
            settling_at: state.settling_at,
            min_settle_height: state.min_settle_height,
        }
    }

    fn restore(self, state: &mut ChannelState) {
        match self.nonce {
            Some(nonce) => {
                if let Some(lane) = state.lanes.get_mut(&self.lane) {
                    lane.nonce = nonce;
                }
            }
            None => {
                state.lanes.remove(&self.lane);
            }
        }
        state.settling_at = self.settling_at;
        state.min_settle_height = self.min_settle_height;
    }
}

/// The actor's view while a plan runs: signatures were verified before, the channel's two
/// addresses resolve to it, and an `extra` call never passes (such vouchers do not count).
struct PlanEnv<'a> {
    situation: &'a Situation,
    call: Invocation,
}

impl<'a> PlanEnv<'a> {
    /// The plan's view of `situation`, called by `caller`.
    fn new(situation: &'a Situation, caller: Address) -> Self {
        let call = Invocation {
            epoch: situation.first_epoch,
            balance: situation.balance.clone(),
            caller,
            receiver: situation.channel_id,
        };
        PlanEnv { situation, call }
    }
}

impl ActorEnv for PlanEnv<'_> {
    fn invocation(&self) -> &Invocation {
        &self.call
    }
    fn resolve_address(&self, addr: &Address) -> Option<ActorID> {
        if self.situation.names_channel(addr) {
            return self.situation.channel_id.id().ok();
        }
        addr.id().ok()
    }
    fn resolve_account(&self, _addr: &Address) -> AccountLookup {
        AccountLookup::NotFound
    }
    fn signatures_verified(&self) -> bool {
        true
    }
    fn verify_signature(&self, _: &[u8], _: &Address, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn call_extra(&self, _extra: &ModVerifyParams) -> Result<(), ExtraCallFailure> {
        Err(ExtraCallFailure::Exited(ExitCode::USR_FORBIDDEN))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::types::{LaneState, Merge};

    const PAYER: u64 = 100;
    const PAYEE: u64 = 101;
    /// The channel's actor ID.
    pub(crate) const CHANNEL: u64 = 102;

    fn atto(n: u64) -> TokenAmount {
        TokenAmount::from_atto(n)
    }

    /// A channel from payer 100 to payee 101 holding `balance`, nothing redeemed, at epoch 10.
    pub(crate) fn situation(balance: u64) -> Situation {
        Situation {
            state: ChannelState::new(Address::new_id(PAYER), Address::new_id(PAYEE)),
            balance: atto(balance),
            channel_id: Address::new_id(CHANNEL),
            channel_aliases: Vec::new(),
            first_epoch: 11,
            landing_window: 0,
            conditional_window: 0,
            secrets: HashMap::new(),
        }
    }

    fn voucher(lane: u64, nonce: u64, amount: u64) -> SignedVoucher {
        let mut v = SignedVoucher::new(Address::new_id(CHANNEL), lane, nonce, atto(amount));
        v.signature = Some(fvm_shared::crypto::signature::Signature::new_secp256k1(vec![0; 65]));
        v
    }

    fn value(situation: &Situation, held: &[SignedVoucher]) -> TokenAmount {
        best_plan(situation, &held.iter().collect::<Vec<_>>()).value().clone()
    }

    #[test]
    fn lanes_count_their_tops_within_the_balance() {
        // What each case shows, the vouchers held, and their value with 100 in the channel.
        let cases = [
            (
                "lanes add up to their tops",
                [voucher(0, 0, 10), voucher(0, 1, 30), voucher(1, 4, 20)],
                50,
            ),
            (
                "several lanes never count beyond the balance",
                [voucher(0, 0, 100), voucher(1, 0, 100), voucher(2, 0, 100)],
                100,
            ),
            (
                "a lane falls back to a lower voucher that fits",
                [voucher(0, 1, 60), voucher(1, 1, 30), voucher(1, 2, 60)],
                90,
            ),
        ];
        for (shows, held, expected) in cases {
            assert_eq!(value(&situation(100), &held), atto(expected), "{shows}");
        }
    }

    #[test]
    fn a_merged_lane_keeps_what_it_redeemed() {
        // Lane 3 redeemed 10 on chain; lane 5 merges it at nonce 2; a later voucher on lane 3
        // pays only what it adds over lane 3's 10.
        let mut s = situation(100);
        s.state.lanes.insert(3, LaneState { redeemed: atto(10), nonce: 1 });
        s.state.to_send = atto(10);
        let mut merging = voucher(5, 1, 10);
        merging.merges = vec![Merge { lane: 3, nonce: 2 }];
        assert_eq!(value(&s, &[merging.clone(), voucher(3, 3, 10)]), atto(10));
        assert_eq!(value(&s, &[merging, voucher(3, 3, 25)]), atto(25));
    }

    #[test]
    fn a_combined_voucher_is_chosen_when_it_pays_as_much_in_fewer_messages() {
        let mut s = situation(100);
        s.state.lanes.insert(0, LaneState { redeemed: atto(5), nonce: 1 });
        s.state.lanes.insert(1, LaneState { redeemed: atto(5), nonce: 1 });
        s.state.to_send = atto(10);
        let mut combined = voucher(0, 10, 50);
        combined.merges = vec![Merge { lane: 1, nonce: 10 }];
        let held = [voucher(0, 2, 20), voucher(1, 2, 30), combined.clone()];
        let plan = best_plan(&s, &held.iter().collect::<Vec<_>>());
        assert_eq!(plan.value(), &atto(50));
        assert_eq!(plan.steps.len(), 1);
        assert_eq!(plan.steps[0].voucher, combined);
    }

    #[test]
    fn a_voucher_the_model_cannot_count_leaves_the_plan_as_it_is() {
        // Intake runs no plan with such a voucher: the plan with it must be the plan without.
        let s = situation(100);
        let held = [voucher(0, 1, 30), voucher(1, 1, 50), voucher(1, 2, 60)];
        let refs: Vec<&SignedVoucher> = held.iter().collect();
        let mut secret_unknown = voucher(2, 1, 40);
        secret_unknown.secret_hash = vec![9; 32];
        let mut lock_passed = voucher(0, 2, 45);
        lock_passed.time_lock_max = 5;
        let mut other_channel = voucher(3, 1, 10);
        other_channel.channel_addr = Address::new_id(CHANNEL + 1);
        for v in [secret_unknown, lock_passed, other_channel] {
            assert!(s.unredeemable(&v).is_some());
            assert_eq!(plan_with(&s, &refs, &v), best_plan(&s, &refs));
        }
    }

    #[test]
    fn of_two_vouchers_with_one_lane_and_nonce_the_first_held_counts() {
        let (low, high) = (voucher(0, 1, 30), voucher(0, 1, 60));
        assert_eq!(value(&situation(100), &[low.clone(), high.clone()]), atto(30));
        assert_eq!(value(&situation(100), &[high, low]), atto(60));
    }

    #[test]
    fn lanes_that_overdraw_the_balance_together_are_chosen_to_fill_it() {
        // Tops of 60, 50 and 45 on three lanes of a channel holding 100: dropping the lane
        // that overdraws in lane order leaves 60; lanes 1 and 2 together reach 95.
        let held = [voucher(0, 1, 60), voucher(1, 1, 50), voucher(2, 1, 45)];
        assert_eq!(value(&situation(100), &held), atto(95));
    }

    #[test]
    fn old_lanes_and_a_new_lane_paid_after_a_reconciliation_fill_the_balance() {
        // Lanes 0 to 3 each redeemed 1 on chain, then rose to 2, 18, 2 and 2; a
        // reconciliation folded them into a combined voucher of 12 on lane 0, and the payer
        // paid 978 on lane 4 from the 988 it then had left. The combined voucher and lane 4
        // reach 990; leaving out the combined voucher, lanes 0, 1 and 4 reach the 1000 the
        // channel holds (lanes 2 and 3 would overdraw it).
        let mut s = situation(1000);
        for lane in 0..4 {
            s.state.lanes.insert(lane, LaneState { redeemed: atto(1), nonce: 1 });
        }
        s.state.to_send = atto(4);
        let mut combined = voucher(0, 3, 12);
        combined.merges = (1..4).map(|lane| Merge { lane, nonce: 3 }).collect();
        let mut held = vec![voucher(0, 2, 2), voucher(1, 2, 18), voucher(2, 2, 2)];
        held.extend([voucher(3, 2, 2), combined]);
        assert_eq!(value(&s, &held), atto(24));
        held.push(voucher(4, 1, 978));
        let plan = best_plan(&s, &held.iter().collect::<Vec<_>>());
        assert_eq!(plan.value(), &atto(1000));
        let lanes: Vec<u64> = plan.steps.iter().map(|step| step.voucher.lane).collect();
        assert_eq!(lanes, [0, 1, 4]);
    }

    #[test]
    fn nothing_counts_once_a_message_cannot_land_before_settlement() {
        let mut s = situation(100);
        s.state.settling_at = 11;
        assert_eq!(value(&s, &[voucher(0, 1, 10)]), atto(0));
        s.state.settling_at = 12;
        assert_eq!(value(&s, &[voucher(0, 1, 10)]), atto(10));
        s.landing_window = 1;
        assert_eq!(value(&s, &[voucher(0, 1, 10)]), atto(0));
    }

    #[test]
    fn time_locked_extra_and_secret_vouchers_count_only_when_sure() {
        let s = situation(100);
        let mut locked = voucher(0, 1, 10);
        locked.time_lock_max = 10;
        assert_eq!(value(&s, &[locked.clone()]), atto(0));
        locked.time_lock_max = 11;
        assert_eq!(value(&s, &[locked]), atto(10));
        let mut later = voucher(0, 1, 10);
        later.time_lock_min = 12;
        assert_eq!(value(&s, &[later]), atto(0));
        let mut extra = voucher(0, 1, 10);
        extra.extra =
            Some(ModVerifyParams { actor: Address::new_id(PAYER), method: 2, data: Vec::new() });
        assert_eq!(value(&s, &[extra]), atto(0));
        let mut hashed = voucher(0, 1, 10);
        hashed.secret_hash = crate::crypto::blake2b_256(b"s").to_vec();
        assert_eq!(value(&s, &[hashed.clone()]), atto(0));
        let mut knowing = s.clone();
        knowing.secrets.insert(hashed.secret_hash.clone(), b"s".to_vec());
        assert_eq!(value(&knowing, &[hashed]), atto(10));
    }

    #[test]
    fn a_conditional_voucher_counts_within_the_routes_window_others_within_the_landing_margin() {
        let mut s = situation(100);
        s.landing_window = 20;
        s.conditional_window = 4;
        let mut hashed = voucher(0, 1, 10);
        hashed.secret_hash = crate::crypto::blake2b_256(b"s").to_vec();
        hashed.time_lock_max = 15;
        s.secrets.insert(hashed.secret_hash.clone(), b"s".to_vec());
        let mut locked = voucher(1, 1, 10);
        locked.time_lock_max = 15;
        // Lock 15 from epoch 11: the conditional voucher's window (11..=15) fits, the landing
        // margin's (11..=31) does not.
        assert_eq!(value(&s, &[hashed.clone(), locked.clone()]), atto(10));
        hashed.time_lock_max = 14;
        assert_eq!(value(&s, &[hashed.clone()]), atto(0));
        // Before settlement alike: settling at 16, only the conditional voucher lands in time.
        hashed.time_lock_max = 0;
        s.state.settling_at = 16;
        assert_eq!(value(&s, &[hashed.clone(), voucher(1, 1, 10)]), atto(10));
        s.state.settling_at = 15;
        assert_eq!(value(&s, &[hashed]), atto(0));
    }

    /// Random held sets over a few lanes: plain, conditional (secret known or not), time
    /// locked (either lock), merging, `min_settle_height` and `extra` vouchers, nonces that
    /// repeat, amounts that overdraw the balance, on a channel whose lanes may be on chain
    /// already.
    fn held_sets() -> impl proptest::strategy::Strategy<Value = (Situation, Vec<SignedVoucher>)> {
        use proptest::prelude::*;
        let one = (0u64..4, 0u64..6, 0u64..80, 0u8..12, 0u64..4, 0u64..6);
        let chain = proptest::collection::vec((0u64..4, 0u64..4, 0u64..30), 0..3);
        (proptest::collection::vec(one, 0..12), chain, 20u64..150).prop_map(
            |(vouchers, chain, balance)| {
                let mut s = situation(balance);
                s.secrets.insert(vec![1; 32], vec![7; 32]);
                for (lane, nonce, redeemed) in chain {
                    s.state.lanes.insert(lane, LaneState { redeemed: atto(redeemed), nonce });
                }
                let on_chain: u64 = s
                    .state
                    .lanes
                    .values()
                    .map(|l| u64::try_from(l.redeemed.atto()).unwrap_or(0))
                    .sum();
                s.state.to_send = atto(on_chain);
                let held = vouchers
                    .into_iter()
                    .map(|(lane, nonce, amount, kind, other_lane, other_nonce)| {
                        let mut v = voucher(lane, nonce, amount);
                        match kind {
                            0 => v.secret_hash = vec![1; 32],
                            1 => v.secret_hash = vec![2; 32],
                            2 => v.time_lock_max = 5,
                            3 => v.merges = vec![Merge { lane: other_lane, nonce: other_nonce }],
                            4 => v.min_settle_height = 20 + other_nonce as i64,
                            5 => {
                                v.extra = Some(ModVerifyParams {
                                    actor: Address::new_id(9),
                                    method: 2,
                                    data: Vec::new(),
                                })
                            }
                            6 => v.time_lock_min = 12,
                            _ => {}
                        }
                        v
                    })
                    .collect();
                (s, held)
            },
        )
    }

    proptest::proptest! {
        /// The tops plan, whenever it answers, is the search's plan, so that `best_plan` (and
        /// `best_state`) is the search's always.
        #[test]
        fn the_tops_plan_is_the_searched_plan((s, held) in held_sets()) {
            let refs: Vec<&SignedVoucher> = held.iter().collect();
            let searched = searched_draft(&s, &refs).into_plan(&s);
            if let Some(tops) = tops_draft(&s, &refs) {
                proptest::prop_assert_eq!(&tops.into_plan(&s), &searched);
            }
            proptest::prop_assert_eq!(&best_state(&s, &refs), &searched.state);
            proptest::prop_assert_eq!(best_plan(&s, &refs), searched);
        }
    }

    proptest::proptest! {
        /// Vouchers grouped by lane (as a payee holds them) give the state of the same vouchers
        /// in one list, with and without one more voucher held after them.
        #[test]
        fn the_state_by_lane_is_the_state_of_the_list(
            (s, held) in held_sets(),
            extra in proptest::option::of((0u64..5, 0u64..7, 0u64..80, 0u8..6)),
        ) {
            let mut plain: Vec<SignedVoucher> =
                held.into_iter().filter(|v| v.merges.is_empty()).collect();
            plain.sort_by_key(|v| (v.lane, std::cmp::Reverse(v.nonce)));
            plain.dedup_by_key(|v| (v.lane, v.nonce));
            let lanes: Vec<&[SignedVoucher]> = plain.chunk_by(|a, b| a.lane == b.lane).collect();
            let extra = extra.map(|(lane, nonce, amount, kind)| {
                let mut v = voucher(lane, nonce, amount);
                match kind {
                    0 => v.secret_hash = vec![1; 32],
                    1 => v.secret_hash = vec![2; 32],
                    2 => v.merges = vec![Merge { lane: (lane + 1) % 4, nonce: nonce + 1 }],
                    _ => {}
                }
                v
            });
            let all: Vec<&SignedVoucher> = plain.iter().chain(extra.as_ref()).collect();
            proptest::prop_assert_eq!(
                best_state_by_lane(&s, &lanes, extra.as_ref()),
                best_state(&s, &all)
            );
        }
    }

    #[test]
    fn the_tops_plan_answers_for_plain_lanes_within_the_balance_only() {
        let s = situation(100);
        let fits = [voucher(0, 1, 30), voucher(0, 2, 40), voucher(1, 1, 50)];
        let refs: Vec<&SignedVoucher> = fits.iter().collect();
        assert_eq!(tops_state(&s, &refs).map(|state| state.to_send), Some(atto(90)));
        // Together over the balance: lane 0 must fall back, which only the search does.
        let over = [voucher(0, 1, 30), voucher(0, 2, 60), voucher(1, 1, 50)];
        let refs: Vec<&SignedVoucher> = over.iter().collect();
        assert_eq!(tops_state(&s, &refs), None);
        assert_eq!(best_plan(&s, &refs).value(), &atto(80));
        // A merging voucher is the search's to try.
        let mut merging = voucher(2, 1, 10);
        merging.merges = vec![Merge { lane: 0, nonce: 3 }];
        let refs: Vec<&SignedVoucher> = fits.iter().chain([&merging]).collect();
        assert_eq!(tops_state(&s, &refs), None);
    }
}
