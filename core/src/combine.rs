//! Reconciliation, as pure functions: a payee asks the payer to fold its best vouchers on
//! several lanes into one combined voucher, so that one on-chain message redeems them all.
//!
//! The Filecoin actor can only merge lanes that already exist on chain (design.md §3a), so
//! the payer refuses a lane the chain does not hold — a combined voucher over such a lane
//! would let the payee redeem twice. The combined voucher goes on the lowest requested lane
//! with a nonce above every nonce issued or on chain there, merges every other requested
//! lane at a nonce above every nonce issued or on chain for it, and carries `req_val`: the
//! actor subtracts what the merged lanes already redeemed. Afterwards every lane it touches
//! is closed for new vouchers.
//!
//! Only the channel's payee is answered: the caller (the network layer) proves which
//! Filecoin key the requesting peer holds — a signed peer record naming the peer the
//! authenticated connection comes from — and [`plan_combined`] refuses anyone but the
//! channel's `to` ([`ReconcileStatus::NotPayee`]). The payer prices the combined voucher on
//! the latest voucher it issued on each requested lane, never on the amounts it is shown,
//! and refuses a lane whose latest voucher carries a condition (a time lock, a secret hash,
//! an `extra` call, a minimum settle height): an unconditional combined voucher would pay
//! what that voucher only promises under its condition.
//!
//! The payee's side ([`check_combined`]) accepts a combined voucher only when it is exactly
//! the plan above: on the lowest requested lane at a nonce above everything the payee holds
//! or the chain has there, merging exactly the other requested lanes at nonces above
//! everything held there, carrying `req_val`, with no condition of any kind.
//!
//! This module decides; it never stores, signs or sends. The payer's manager records the
//! closed lanes and the combined voucher durably before the answer leaves the process.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{Address, LaneState, Merge, SignedVoucher, TokenAmount};

/// The most vouchers one request may carry, whatever the policy says.
pub const MAX_RECONCILE_VOUCHERS: usize = 1024;

/// Why a reconciliation was refused (or that it succeeded), as carried on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReconcileStatus {
    /// The combined voucher is in the response.
    Success = 0,
    /// The vouchers are for a channel this node does not pay from.
    NotOurChannel = 1,
    /// The vouchers name more than one channel.
    MixedChannels = 2,
    /// A voucher is malformed (unsigned, merging, negative).
    InvalidVoucher = 3,
    /// A voucher is not one this node issued.
    NotIssuedByUs = 4,
    /// Two vouchers are on the same lane.
    DuplicateLane = 5,
    /// A lane has never been redeemed on chain, so the actor cannot merge it.
    LaneNotOnChain = 6,
    /// A lane was already closed by an earlier reconciliation.
    LaneClosed = 7,
    /// `req_val` exceeds the sum of the vouchers' amounts.
    ReqValAboveSum = 8,
    /// The discount (sum − `req_val`) is below the payer's policy.
    DiscountBelowPolicy = 9,
    /// The channel is settling.
    ChannelSettling = 10,
    /// More vouchers than the payer's policy allows.
    TooManyVouchers = 11,
    /// The peer asks too often.
    RateLimited = 12,
    /// The payer failed internally.
    Internal = 13,
    /// The requesting peer has not proved it is the channel's payee: no signed peer record
    /// of the channel's `to` naming the peer the request came from.
    NotPayee = 14,
    /// A lane's latest voucher carries a condition (time lock, secret hash, `extra`,
    /// minimum settle height): folding it would pay unconditionally what it only promises.
    LaneConditional = 15,
}

impl ReconcileStatus {
    /// The status for a wire code, if it is one.
    pub fn from_code(code: u8) -> Option<Self> {
        use ReconcileStatus::*;
        [
            Success,
            NotOurChannel,
            MixedChannels,
            InvalidVoucher,
            NotIssuedByUs,
            DuplicateLane,
            LaneNotOnChain,
            LaneClosed,
            ReqValAboveSum,
            DiscountBelowPolicy,
            ChannelSettling,
            TooManyVouchers,
            RateLimited,
            Internal,
            NotPayee,
            LaneConditional,
        ]
        .into_iter()
        .find(|s| *s as u8 == code)
    }
}

/// A refusal: its status and a message for the payee's operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reconciliation refused ({status:?}): {message}")]
pub struct Refusal {
    /// The status sent back.
    pub status: ReconcileStatus,
    /// What was wrong.
    pub message: String,
}

fn refuse<T>(status: ReconcileStatus, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal { status, message: message.into() })
}

/// The payer's terms for reconciling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcilePolicy {
    /// The least discount (sum of the vouchers − `req_val`) accepted for any request.
    pub min_discount: TokenAmount,
    /// The least discount per voucher folded in.
    pub min_discount_per_voucher: TokenAmount,
    /// The most vouchers one request may fold.
    pub max_vouchers: usize,
}

impl Default for ReconcilePolicy {
    fn default() -> Self {
        ReconcilePolicy {
            min_discount: TokenAmount::default(),
            min_discount_per_voucher: TokenAmount::default(),
            max_vouchers: 256,
        }
    }
}

/// What the payer knows of one of its channels when a request arrives.
#[derive(Debug, Clone)]
pub struct PayerView<'a> {
    /// The addresses the channel goes by (robust and ID).
    pub addresses: &'a [Address],
    /// The channel's payee (`to`), as a key address: the only party answered.
    pub payee: Option<Address>,
    /// Whether the channel is settling.
    pub settling: bool,
    /// Every voucher this node issued on the channel, by (lane, nonce).
    pub issued: &'a BTreeMap<(u64, u64), SignedVoucher>,
    /// Lanes already closed by a merge.
    pub closed: &'a BTreeSet<u64>,
    /// The chain's lane states.
    pub chain_lanes: &'a BTreeMap<u64, LaneState>,
}

/// The combined voucher to issue (unsigned), and the lanes it closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CombinedPlan {
    /// The voucher, without its signature.
    pub voucher: SignedVoucher,
    /// Every lane it touches (its own and the merged ones): closed from now on.
    pub closes: Vec<u64>,
}

/// Whether a voucher carries no condition at all: no time lock, no secret hash, no `extra`
/// call, no minimum settle height, no merges. Only such vouchers are priced or accepted
/// in a reconciliation.
pub fn is_unconditional(v: &SignedVoucher) -> bool {
    v.time_lock_min == 0
        && v.time_lock_max == 0
        && v.secret_hash.is_empty()
        && v.extra.is_none()
        && v.min_settle_height == 0
        && v.merges.is_empty()
}

/// The first checks of a request, which need only the channel's addresses and payee: the
/// request's size and channel, then who asks. `requester` is the key address the
/// requesting peer proved it holds (`None`: it proved none). Answers the channel named.
/// The manager runs these before anything else — before looking up an earlier answer —
/// so that nobody but the payee learns anything of a channel's vouchers.
pub fn check_requester(
    addresses: &[Address],
    payee: Option<&Address>,
    requester: Option<&Address>,
    vouchers: &[SignedVoucher],
    policy: &ReconcilePolicy,
) -> Result<Address, Refusal> {
    use ReconcileStatus::*;
    let max = policy.max_vouchers.min(MAX_RECONCILE_VOUCHERS);
    let Some(first) = vouchers.first() else {
        return refuse(InvalidVoucher, "no vouchers to reconcile");
    };
    if vouchers.len() > max {
        return refuse(TooManyVouchers, format!("{} vouchers; at most {max}", vouchers.len()));
    }
    let channel = first.channel_addr;
    if vouchers.iter().any(|v| v.channel_addr != channel) {
        return refuse(MixedChannels, "the vouchers name more than one channel");
    }
    if !addresses.contains(&channel) {
        return refuse(NotOurChannel, format!("this node pays from no channel {channel}"));
    }
    match (payee, requester) {
        (Some(payee), Some(requester)) if payee == requester => Ok(channel),
        (_, Some(requester)) => refuse(
            NotPayee,
            format!("the requesting peer proved key {requester}, not the channel's payee"),
        ),
        (_, None) => refuse(NotPayee, "the requesting peer proved no key of the channel's payee"),
    }
}

/// The payer's side: checks a request from `requester` (the key address the requesting
/// peer proved it holds) against its own records, the chain's lanes and its policy, in a
/// fixed order (so the same request always gets the same status), and plans the combined
/// voucher. The vouchers shown only name the lanes and must each be exactly one the payer
/// issued; the price is checked against the latest voucher issued on each lane.
pub fn plan_combined(
    view: &PayerView<'_>,
    requester: Option<&Address>,
    vouchers: &[SignedVoucher],
    req_val: &TokenAmount,
    policy: &ReconcilePolicy,
) -> Result<CombinedPlan, Refusal> {
    use ReconcileStatus::*;
    let channel =
        check_requester(view.addresses, view.payee.as_ref(), requester, vouchers, policy)?;
    if view.settling {
        return refuse(ChannelSettling, "the channel is settling");
    }
    let mut lanes = BTreeSet::new();
    let mut sum = TokenAmount::default();
    for v in vouchers {
        if v.signature.is_none() || v.amount.is_negative() || !v.merges.is_empty() {
            return refuse(
                InvalidVoucher,
                format!("voucher on lane {} is unsigned, negative or merging", v.lane),
            );
        }
        if view.issued.get(&(v.lane, v.nonce)) != Some(v) {
            return refuse(
                NotIssuedByUs,
                format!(
                    "no voucher with lane {} and nonce {} was issued like this",
                    v.lane, v.nonce
                ),
            );
        }
        if !lanes.insert(v.lane) {
            return refuse(DuplicateLane, format!("lane {} appears twice", v.lane));
        }
        if view.closed.contains(&v.lane) {
            return refuse(LaneClosed, format!("lane {} is already closed", v.lane));
        }
        if !view.chain_lanes.contains_key(&v.lane) {
            return refuse(
                LaneNotOnChain,
                format!("lane {} has never been redeemed on chain", v.lane),
            );
        }
        // The shown voucher was issued here, so the lane has a latest voucher.
        let Some((_, latest)) = view.issued.range((v.lane, 0)..=(v.lane, u64::MAX)).next_back()
        else {
            return refuse(NotIssuedByUs, format!("no voucher was issued on lane {}", v.lane));
        };
        if !is_unconditional(latest) {
            return refuse(
                LaneConditional,
                format!(
                    "the latest voucher on lane {} (nonce {}) carries a condition",
                    v.lane, latest.nonce
                ),
            );
        }
        sum += &latest.amount;
    }
    if req_val > &sum {
        return refuse(
            ReqValAboveSum,
            format!(
                "req_val {} exceeds {}, the latest vouchers issued on those lanes",
                req_val.atto(),
                sum.atto()
            ),
        );
    }
    let discount = &sum - req_val;
    let per_voucher = &policy.min_discount_per_voucher * vouchers.len() as u64;
    let needed =
        if policy.min_discount > per_voucher { policy.min_discount.clone() } else { per_voucher };
    if discount < needed {
        return refuse(
            DiscountBelowPolicy,
            format!("discount {} below the {} this payer asks", discount.atto(), needed.atto()),
        );
    }

    let next_nonce = |lane: u64| -> u64 {
        let issued = view
            .issued
            .range((lane, 0)..=(lane, u64::MAX))
            .map(|((_, n), _)| *n)
            .max()
            .unwrap_or(0);
        let on_chain = view.chain_lanes.get(&lane).map(|l| l.nonce).unwrap_or(0);
        issued.max(on_chain).saturating_add(1)
    };
    let mut ordered = lanes.into_iter();
    let Some(target) = ordered.next() else {
        return refuse(InvalidVoucher, "no vouchers to reconcile");
    };
    let merges: Vec<Merge> = ordered.map(|lane| Merge { lane, nonce: next_nonce(lane) }).collect();
    let mut voucher = SignedVoucher::new(channel, target, next_nonce(target), req_val.clone());
    voucher.merges = merges;
    let mut closes = vec![target];
    closes.extend(voucher.merges.iter().map(|m| m.lane));
    Ok(CombinedPlan { voucher, closes })
}

/// The payee's side: the best voucher per lane worth folding — lanes that exist on chain,
/// whose best voucher adds to what the chain has redeemed there.
pub fn choose_vouchers(
    best_per_lane: &BTreeMap<u64, SignedVoucher>,
    chain_lanes: &BTreeMap<u64, LaneState>,
) -> Vec<SignedVoucher> {
    best_per_lane
        .iter()
        .filter(|(lane, v)| {
            chain_lanes.get(lane).is_some_and(|l| v.nonce > l.nonce && v.amount > l.redeemed)
        })
        .map(|(_, v)| v.clone())
        .collect()
}

/// The payee's price: the vouchers' sum less half of the fees it saves by redeeming them in
/// one message instead of one each (`fee_per_message` each).
pub fn price_request(vouchers: &[SignedVoucher], fee_per_message: &TokenAmount) -> TokenAmount {
    let sum: TokenAmount = vouchers.iter().map(|v| v.amount.clone()).sum();
    let saved = fee_per_message * vouchers.len().saturating_sub(1) as u64;
    let discount = saved.div_floor(2);
    if discount > sum {
        TokenAmount::default()
    } else {
        sum - discount
    }
}

/// Why a payee refuses the payer's combined voucher: it is not exactly the payee's plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CombinedDefect {
    /// Nothing was requested.
    #[error("no vouchers were requested")]
    NothingRequested,
    /// The combined voucher names another channel than the requested vouchers.
    #[error("the combined voucher is for another channel")]
    WrongChannel,
    /// The amount is not `req_val`.
    #[error("the combined voucher carries {found}, not req_val {expected}")]
    WrongAmount {
        /// `req_val`.
        expected: TokenAmount,
        /// What it carries.
        found: TokenAmount,
    },
    /// It is not on the lowest requested lane.
    #[error("the combined voucher is on lane {found}, not on lane {expected}")]
    WrongLane {
        /// The lowest requested lane.
        expected: u64,
        /// Its lane.
        found: u64,
    },
    /// It does not merge exactly the other requested lanes, each once.
    #[error("the combined voucher does not merge exactly the other requested lanes, each once")]
    WrongMerges,
    /// Its nonce, or a merge's, is not above every nonce held or on chain on that lane: an
    /// older voucher there could still be redeemed after it.
    #[error("nonce {nonce} on lane {lane} is not above {held}, held or on chain there")]
    NonceNotAbove {
        /// The lane.
        lane: u64,
        /// The nonce the combined voucher gives it.
        nonce: u64,
        /// The highest nonce held or on chain there.
        held: u64,
    },
    /// It carries a condition (time lock, secret hash, `extra`, minimum settle height).
    #[error("the combined voucher carries a condition: {0}")]
    Conditional(&'static str),
}

/// The payee's check of the payer's answer: the combined voucher must be exactly the
/// payee's plan — for the requested channel, on the lowest requested lane at a nonce above
/// `held[lane]` (the highest nonce the payee holds or the chain has on it), merging every
/// other requested lane exactly once at a nonce above `held` there, carrying exactly
/// `req_val`, with no time lock, secret hash, `extra` or minimum settle height. (The actor's
/// rules — signature, balance — are checked by the manager's validation.)
pub fn check_combined(
    requested: &[SignedVoucher],
    req_val: &TokenAmount,
    held: &BTreeMap<u64, u64>,
    combined: &SignedVoucher,
) -> Result<(), CombinedDefect> {
    let Some(first) = requested.first() else {
        return Err(CombinedDefect::NothingRequested);
    };
    if requested.iter().any(|v| v.channel_addr != combined.channel_addr)
        || combined.channel_addr != first.channel_addr
    {
        return Err(CombinedDefect::WrongChannel);
    }
    if &combined.amount != req_val {
        return Err(CombinedDefect::WrongAmount {
            expected: req_val.clone(),
            found: combined.amount.clone(),
        });
    }
    let conditions = [
        (combined.time_lock_min != 0, "time_lock_min"),
        (combined.time_lock_max != 0, "time_lock_max"),
        (!combined.secret_hash.is_empty(), "secret hash"),
        (combined.extra.is_some(), "extra"),
        (combined.min_settle_height != 0, "min_settle_height"),
    ];
    if let Some((_, what)) = conditions.iter().find(|(present, _)| *present) {
        return Err(CombinedDefect::Conditional(what));
    }
    let lanes: BTreeSet<u64> = requested.iter().map(|v| v.lane).collect();
    let mut others = lanes.iter().copied();
    let Some(expected) = others.next() else {
        return Err(CombinedDefect::NothingRequested);
    };
    if combined.lane != expected {
        return Err(CombinedDefect::WrongLane { expected, found: combined.lane });
    }
    let others: BTreeSet<u64> = others.collect();
    let merged: BTreeSet<u64> = combined.merges.iter().map(|m| m.lane).collect();
    if merged != others || combined.merges.len() != others.len() {
        return Err(CombinedDefect::WrongMerges);
    }
    let above = |lane: u64, nonce: u64| {
        let held = held.get(&lane).copied().unwrap_or(0);
        if nonce > held {
            Ok(())
        } else {
            Err(CombinedDefect::NonceNotAbove { lane, nonce, held })
        }
    };
    above(combined.lane, combined.nonce)?;
    for merge in &combined.merges {
        above(merge.lane, merge.nonce)?;
    }
    Ok(())
}
