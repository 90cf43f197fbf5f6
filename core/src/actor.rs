//! The payment-channel actor's rules, as pure functions over an in-memory channel state.
//!
//! This is the only implementation of these rules in paych: the devnet chain executes
//! `UpdateChannelState`, `Settle` and `Collect` through it, and voucher validation asks it
//! whether the chain would accept a voucher. The checks run in the actor's order and fail
//! with the actor's exit codes ([`ActorError::exit_code`]). A failing call changes nothing.
//!
//! Everything the actor learns from the chain — the epoch, the channel's balance, the
//! caller, address resolution, signature checks and the voucher's `extra` call — comes
//! through the [`ActorEnv`] the caller provides. This module never does I/O.

use std::collections::BTreeMap;

use fvm_shared::address::{Address, Protocol};
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use fvm_shared::error::ExitCode;
use fvm_shared::ActorID;

use crate::types::{
    ConstructorParams, LaneState, ModVerifyParams, SignedVoucher, UpdateChannelStateParams,
    INIT_ACTOR_ID, MAX_LANE, MAX_SECRET_SIZE, SETTLE_DELAY,
};

/// Exit code of an `UpdateChannelState` after the channel has settled.
pub const ERR_CHANNEL_STATE_UPDATE_AFTER_SETTLED: ExitCode = ExitCode::new(32);

/// What an address resolves to, for the constructor's parties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountLookup {
    /// An account actor with this ID.
    Account(ActorID),
    /// An actor with this ID that is not an account. The constructor accepts it, as the
    /// chain does: any actor able to answer `AuthenticateMessage` can sign vouchers.
    NotAccount(ActorID),
    /// No actor has this address.
    NotFound,
}

/// The facts of one call to the actor: when it runs, what the channel holds, who calls and
/// which channel is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The current epoch.
    pub epoch: ChainEpoch,
    /// The channel's current balance.
    pub balance: TokenAmount,
    /// The immediate caller, as an ID address.
    pub caller: Address,
    /// The channel's own ID address.
    pub receiver: Address,
}

/// The ID `addr` resolves to when an ID address is its own ID (as in the FVM's state tree)
/// and any other address is looked up with `lookup`.
pub fn id_or_lookup(
    addr: &Address,
    lookup: impl FnOnce(&Address) -> Option<ActorID>,
) -> Option<ActorID> {
    match addr.id() {
        Ok(id) => Some(id),
        Err(_) => lookup(addr),
    }
}

/// What the actor sees of the chain while it runs.
pub trait ActorEnv {
    /// The facts of this call: epoch, balance, caller and receiver.
    fn invocation(&self) -> &Invocation;
    /// The current epoch.
    fn epoch(&self) -> ChainEpoch {
        self.invocation().epoch
    }
    /// The channel's current balance.
    fn balance(&self) -> TokenAmount {
        self.invocation().balance.clone()
    }
    /// The immediate caller, as an ID address.
    fn caller(&self) -> Address {
        self.invocation().caller
    }
    /// The channel's own ID address.
    fn receiver(&self) -> Address {
        self.invocation().receiver
    }
    /// The ID an address resolves to, if any actor has it.
    fn resolve_address(&self, addr: &Address) -> Option<ActorID>;
    /// Resolves `addr` to an account actor (creating one for an unknown key address, as
    /// the chain does when funds are sent to it).
    fn resolve_account(&self, addr: &Address) -> AccountLookup;
    /// Checks the signature bytes `signature` over `data` as the account of `signer` (an ID
    /// address, resolved to its key address by the environment) authenticates them
    /// (`AuthenticateMessage`): as a signature of the key's own kind — the type a voucher's
    /// signature names plays no part. The error says why it failed.
    fn verify_signature(
        &self,
        signature: &[u8],
        signer: &Address,
        data: &[u8],
    ) -> Result<(), String>;
    /// Whether every voucher this environment is asked about carries a signature already
    /// verified as the signer's (the redemption model's vouchers were, at intake): the
    /// signature check — and the encoding it needs — is then skipped. The chain and voucher
    /// validation always verify.
    fn signatures_verified(&self) -> bool {
        false
    }
    /// Makes the voucher's `extra` call (from the channel, with no value); `Err` says how it
    /// failed. The actor turns that into its own exit code with
    /// [`ExtraCallFailure::exit_code`].
    fn call_extra(&self, extra: &ModVerifyParams) -> Result<(), ExtraCallFailure>;
}

/// How a voucher's `extra` call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExtraCallFailure {
    /// No actor has the callee's address and none is created for it (an ID or actor address
    /// without an actor): the send itself fails, the callee never runs.
    #[error("the callee does not exist")]
    CalleeMissing,
    /// The callee ran and exited with this non-zero code.
    #[error("the callee exited with {0}")]
    Exited(ExitCode),
    /// The call would nest deeper than the chain allows (`ErrorNumber::LimitExceeded`).
    #[error("calls nest too deep")]
    CallDepthExceeded,
}

impl ExtraCallFailure {
    /// The exit code the payment-channel actor fails with, as the built-in actors' runtime
    /// maps a failed send (`extract_send_result`): a missing callee is `USR_UNSPECIFIED`
    /// (23); a callee's system exit code (below 16) is not passed through — 4, 9 and 11
    /// (illegal instruction, illegal exit code, missing return) become `USR_UNSPECIFIED`
    /// (23), the others `USR_ASSERTION_FAILED` (24) (`ActorError::checked`); a user exit code
    /// is passed through; calls nested too deep are `USR_ASSERTION_FAILED` (24).
    pub fn exit_code(self) -> ExitCode {
        match self {
            ExtraCallFailure::CalleeMissing => ExitCode::USR_UNSPECIFIED,
            ExtraCallFailure::CallDepthExceeded => ExitCode::USR_ASSERTION_FAILED,
            ExtraCallFailure::Exited(code) => match code {
                ExitCode::SYS_ILLEGAL_INSTRUCTION
                | ExitCode::SYS_ILLEGAL_EXIT_CODE
                | ExitCode::SYS_MISSING_RETURN => ExitCode::USR_UNSPECIFIED,
                code if code.is_system_error() => ExitCode::USR_ASSERTION_FAILED,
                code => code,
            },
        }
    }

    /// How the `extra` call failed, from the exit code of the same call dry-run as a
    /// top-level message (`StateCall`): `None` on success. At top level the FVM reports a
    /// receiver that does not exist as `SYS_INVALID_RECEIVER` (5) — a code a callee that ran
    /// cannot exit with — so that code is a missing callee; any other is the callee's own.
    pub fn from_dry_run(exit_code: ExitCode) -> Option<Self> {
        if exit_code.is_success() {
            None
        } else if exit_code == ExitCode::SYS_INVALID_RECEIVER {
            Some(ExtraCallFailure::CalleeMissing)
        } else {
            Some(ExtraCallFailure::Exited(exit_code))
        }
    }
}

/// A payment channel's state with its lanes, as the actor sees it while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelState {
    /// The payer (an ID address).
    pub from: Address,
    /// The payee (an ID address).
    pub to: Address,
    /// The amount redeemed so far.
    pub to_send: TokenAmount,
    /// The epoch at which the channel settles; 0 while not settling.
    pub settling_at: ChainEpoch,
    /// The lowest epoch at which the channel may settle.
    pub min_settle_height: ChainEpoch,
    /// The lanes that exist on chain.
    pub lanes: BTreeMap<u64, LaneState>,
}

impl ChannelState {
    /// A new channel between two ID addresses, with no lanes.
    pub fn new(from: Address, to: Address) -> Self {
        ChannelState {
            from,
            to,
            to_send: TokenAmount::default(),
            settling_at: 0,
            min_settle_height: 0,
            lanes: BTreeMap::new(),
        }
    }

    /// Whether `Settle` has been called.
    pub fn is_settling(&self) -> bool {
        self.settling_at != 0
    }
}

/// Why the actor refused a call. Each variant is one of the actor's checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActorError {
    /// The constructor was not called by the Init actor.
    #[error("the constructor must be called by the Init actor, not {0}")]
    ConstructorCallerNotInit(Address),
    /// A constructor party has no actor and none is created for it. The exit code follows
    /// the built-in actors' `resolve_to_actor_id`: an ID address without an actor is
    /// `USR_NOT_FOUND` (17); for any other address the zero send meant to create its actor
    /// fails with `ErrorNumber::NotFound`, which the runtime maps to `USR_UNSPECIFIED` (23).
    #[error("no actor for address {0}")]
    PartyNotFound(Address),
    /// The caller is neither `from` nor `to`.
    #[error("caller {caller} is not a party of the channel")]
    CallerNotParty {
        /// The caller.
        caller: Address,
    },
    /// The voucher carries no signature.
    #[error("voucher has no signature")]
    MissingSignature,
    /// The channel has settled: no voucher is processed at or after `settling_at`.
    #[error("no vouchers can be processed after settling at epoch {settling_at} (now {epoch})")]
    UpdateAfterSettled {
        /// The current epoch.
        epoch: ChainEpoch,
        /// The epoch the channel settled at.
        settling_at: ChainEpoch,
    },
    /// The secret is longer than 256 bytes.
    #[error("secret of {0} bytes exceeds the {MAX_SECRET_SIZE}-byte limit")]
    SecretTooLong(usize),
    /// The voucher could not be encoded to check its signature.
    #[error("voucher cannot be serialized: {0}")]
    Serialization(String),
    /// The voucher's signature is not the other party's.
    #[error("voucher signature invalid: {0}")]
    InvalidSignature(String),
    /// The voucher's channel address resolves to no actor.
    #[error("voucher channel address {0} does not resolve to an ID address")]
    UnresolvableChannel(Address),
    /// The voucher is for another channel.
    #[error("voucher channel address {voucher_channel} does not match receiver {receiver}")]
    WrongChannel {
        /// The channel the voucher names.
        voucher_channel: Address,
        /// This channel.
        receiver: Address,
    },
    /// The epoch is before the voucher's `time_lock_min`.
    #[error("cannot use this voucher yet: epoch {epoch} < time_lock_min {time_lock_min}")]
    TimeLockMinNotReached {
        /// The current epoch.
        epoch: ChainEpoch,
        /// The voucher's lower time lock.
        time_lock_min: ChainEpoch,
    },
    /// The epoch is after the voucher's `time_lock_max`.
    #[error("this voucher has expired: epoch {epoch} > time_lock_max {time_lock_max}")]
    TimeLockMaxPassed {
        /// The current epoch.
        epoch: ChainEpoch,
        /// The voucher's upper time lock.
        time_lock_max: ChainEpoch,
    },
    /// The voucher's amount is negative.
    #[error("voucher amount must be non-negative, was {0} FIL")]
    NegativeAmount(TokenAmount),
    /// blake2b-256 of the secret is not the voucher's secret hash.
    #[error("incorrect secret")]
    IncorrectSecret,
    /// The voucher's `extra` call failed.
    #[error("spend voucher verification failed: {0}")]
    ExtraCallFailed(ExtraCallFailure),
    /// A lane number above 2^63 − 1.
    #[error("maximum lane ID is 2^63-1, got {0}")]
    LaneTooLarge(u64),
    /// The voucher's nonce does not exceed its lane's.
    #[error(
        "voucher has an outdated nonce on lane {lane}: existing {existing}, voucher {voucher}"
    )]
    StaleNonce {
        /// The lane.
        lane: u64,
        /// The lane's nonce on chain.
        existing: u64,
        /// The voucher's nonce.
        voucher: u64,
    },
    /// The voucher merges its own lane.
    #[error("voucher cannot merge lane {0} into itself")]
    MergeIntoOwnLane(u64),
    /// A merged lane does not exist on chain.
    #[error("voucher specifies invalid merge lane {0}")]
    MergeLaneMissing(u64),
    /// A merge's nonce does not exceed the merged lane's.
    #[error("merged lane {lane} has outdated nonce: existing {existing}, merge {merge}")]
    MergeStaleNonce {
        /// The merged lane.
        lane: u64,
        /// Its nonce on chain.
        existing: u64,
        /// The merge's nonce.
        merge: u64,
    },
    /// Redeeming would make `to_send` negative.
    #[error("voucher would leave channel balance negative")]
    NegativeToSend,
    /// Redeeming would make `to_send` exceed the channel's balance.
    #[error(
        "not enough funds in channel to cover voucher: to_send {to_send} FIL > balance {balance} FIL"
    )]
    InsufficientFunds {
        /// What `to_send` would become.
        to_send: TokenAmount,
        /// The channel's balance.
        balance: TokenAmount,
    },
    /// `Settle` on a channel that is already settling.
    #[error("channel already settling")]
    AlreadySettling,
    /// `Collect` on a channel whose balance does not cover `to_send` (or whose `to_send` is
    /// negative): the send of `to_send` to `to` fails, so nothing is paid.
    #[error("cannot collect: to_send {to_send} FIL is not payable from balance {balance} FIL")]
    CollectUnpayable {
        /// What the payee is owed.
        to_send: TokenAmount,
        /// The channel's balance.
        balance: TokenAmount,
    },
    /// `Collect` before the channel has settled.
    #[error("payment channel not settling or settled (settling_at {settling_at}, now {epoch})")]
    NotSettled {
        /// The current epoch.
        epoch: ChainEpoch,
        /// The channel's settling epoch (0 when not settling).
        settling_at: ChainEpoch,
    },
}

impl ActorError {
    /// The exit code the actor fails with.
    pub fn exit_code(&self) -> ExitCode {
        use ActorError::*;
        match self {
            ConstructorCallerNotInit(_) | CallerNotParty { .. } => ExitCode::USR_FORBIDDEN,
            PartyNotFound(addr) if addr.protocol() == Protocol::ID => ExitCode::USR_NOT_FOUND,
            PartyNotFound(_) => ExitCode::USR_UNSPECIFIED,
            NotSettled { .. } => ExitCode::USR_FORBIDDEN,
            UpdateAfterSettled { .. } => ERR_CHANNEL_STATE_UPDATE_AFTER_SETTLED,
            AlreadySettling => ExitCode::USR_ILLEGAL_STATE,
            // The runtime's mapping of the failed send: the FVM refuses a transfer above the
            // balance with `InsufficientFunds` (→ 19) and a negative one with
            // `IllegalArgument` (→ 24, "unexpected error").
            CollectUnpayable { to_send, .. } if to_send.is_negative() => {
                ExitCode::USR_ASSERTION_FAILED
            }
            CollectUnpayable { .. } => ExitCode::USR_INSUFFICIENT_FUNDS,
            Serialization(_) => ExitCode::USR_SERIALIZATION,
            ExtraCallFailed(failure) => failure.exit_code(),
            MissingSignature
            | SecretTooLong(_)
            | InvalidSignature(_)
            | UnresolvableChannel(_)
            | WrongChannel { .. }
            | TimeLockMinNotReached { .. }
            | TimeLockMaxPassed { .. }
            | NegativeAmount(_)
            | IncorrectSecret
            | LaneTooLarge(_)
            | StaleNonce { .. }
            | MergeIntoOwnLane(_)
            | MergeLaneMissing(_)
            | MergeStaleNonce { .. }
            | NegativeToSend
            | InsufficientFunds { .. } => ExitCode::USR_ILLEGAL_ARGUMENT,
        }
    }
}

/// What a successful `UpdateChannelState` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redemption {
    /// The voucher's lane.
    pub lane: u64,
    /// How much `to_send` grew (the voucher's amount less what its lane and the merged
    /// lanes had already redeemed).
    pub delta: TokenAmount,
    /// The channel's `to_send` afterwards.
    pub to_send: TokenAmount,
}

/// What `Collect` pays out before the channel is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    /// Paid to `to`: the channel's `to_send`.
    pub to: TokenAmount,
    /// Returned to `from`: the rest of the balance.
    pub from: TokenAmount,
}

/// The constructor: resolves both parties (the payee first) to the IDs of existing actors —
/// creating the account of a key address that has none — and creates an empty channel. As
/// on the chain since the built-in actors moved to `resolve_to_actor_id`, a party may be an
/// actor of any kind.
pub fn construct(
    env: &(impl ActorEnv + ?Sized),
    params: &ConstructorParams,
) -> Result<ChannelState, ActorError> {
    let caller = env.caller();
    if caller != Address::new_id(INIT_ACTOR_ID) {
        return Err(ActorError::ConstructorCallerNotInit(caller));
    }
    let to = resolve_party(env, &params.to)?;
    let from = resolve_party(env, &params.from)?;
    Ok(ChannelState::new(from, to))
}

fn resolve_party(env: &(impl ActorEnv + ?Sized), addr: &Address) -> Result<Address, ActorError> {
    match env.resolve_account(addr) {
        AccountLookup::Account(id) | AccountLookup::NotAccount(id) => Ok(Address::new_id(id)),
        AccountLookup::NotFound => Err(ActorError::PartyNotFound(*addr)),
    }
}

/// The caller must be `from` or `to`.
fn check_caller_is_party(
    state: &ChannelState,
    env: &(impl ActorEnv + ?Sized),
) -> Result<Address, ActorError> {
    let caller = env.caller();
    if caller != state.from && caller != state.to {
        return Err(ActorError::CallerNotParty { caller });
    }
    Ok(caller)
}

/// `UpdateChannelState`: redeems a voucher. On success the state is updated and the
/// redemption described; on failure the state is untouched.
pub fn update_channel_state(
    state: &mut ChannelState,
    env: &(impl ActorEnv + ?Sized),
    params: &UpdateChannelStateParams,
) -> Result<Redemption, ActorError> {
    redeem(state, env, &params.sv, &params.secret)
}

/// [`update_channel_state`] on the parameters' two parts, borrowed: the voucher `sv` and
/// the `secret` submitted with it.
pub fn redeem(
    state: &mut ChannelState,
    env: &(impl ActorEnv + ?Sized),
    sv: &SignedVoucher,
    secret: &[u8],
) -> Result<Redemption, ActorError> {
    let caller = check_caller_is_party(state, env)?;
    let signer = if caller == state.from { state.to } else { state.from };
    let epoch = env.epoch();

    let signature = sv.signature.as_ref().ok_or(ActorError::MissingSignature)?;
    if state.settling_at != 0 && epoch >= state.settling_at {
        return Err(ActorError::UpdateAfterSettled { epoch, settling_at: state.settling_at });
    }
    if secret.len() > MAX_SECRET_SIZE {
        return Err(ActorError::SecretTooLong(secret.len()));
    }
    if !env.signatures_verified() {
        let signing_bytes =
            sv.signing_bytes().map_err(|e| ActorError::Serialization(e.to_string()))?;
        // The actor hands the signer's account only the signature's bytes.
        env.verify_signature(&signature.bytes, &signer, &signing_bytes)
            .map_err(ActorError::InvalidSignature)?;
    }

    let receiver = env.receiver();
    let channel_id = env
        .resolve_address(&sv.channel_addr)
        .ok_or(ActorError::UnresolvableChannel(sv.channel_addr))?;
    if Address::new_id(channel_id) != receiver {
        return Err(ActorError::WrongChannel {
            voucher_channel: Address::new_id(channel_id),
            receiver,
        });
    }
    if epoch < sv.time_lock_min {
        return Err(ActorError::TimeLockMinNotReached { epoch, time_lock_min: sv.time_lock_min });
    }
    if sv.time_lock_max != 0 && epoch > sv.time_lock_max {
        return Err(ActorError::TimeLockMaxPassed { epoch, time_lock_max: sv.time_lock_max });
    }
    if sv.amount.is_negative() {
        return Err(ActorError::NegativeAmount(sv.amount.clone()));
    }
    if !sv.secret_hash.is_empty()
        && crate::crypto::blake2b_256(secret).as_slice() != sv.secret_hash.as_slice()
    {
        return Err(ActorError::IncorrectSecret);
    }
    if let Some(extra) = &sv.extra {
        env.call_extra(extra).map_err(ActorError::ExtraCallFailed)?;
    }

    // Lane updates are staged and committed only when every check has passed.
    let mut staged: BTreeMap<u64, LaneState> = BTreeMap::new();
    let mut lane_state = match find_lane(state, &staged, sv.lane)? {
        Some(existing) if existing.nonce >= sv.nonce => {
            return Err(ActorError::StaleNonce {
                lane: sv.lane,
                existing: existing.nonce,
                voucher: sv.nonce,
            })
        }
        Some(existing) => existing,
        None => LaneState::default(),
    };

    let mut redeemed_from_others = TokenAmount::default();
    for merge in &sv.merges {
        if merge.lane == sv.lane {
            return Err(ActorError::MergeIntoOwnLane(merge.lane));
        }
        let mut other = find_lane(state, &staged, merge.lane)?
            .ok_or(ActorError::MergeLaneMissing(merge.lane))?;
        if other.nonce >= merge.nonce {
            return Err(ActorError::MergeStaleNonce {
                lane: merge.lane,
                existing: other.nonce,
                merge: merge.nonce,
            });
        }
        redeemed_from_others += &other.redeemed;
        other.nonce = merge.nonce;
        staged.insert(merge.lane, other);
    }

    lane_state.nonce = sv.nonce;
    let delta = &sv.amount - (redeemed_from_others + &lane_state.redeemed);
    lane_state.redeemed = sv.amount.clone();

    let new_to_send = &state.to_send + &delta;
    if new_to_send.is_negative() {
        return Err(ActorError::NegativeToSend);
    }
    let balance = env.balance();
    if new_to_send > balance {
        return Err(ActorError::InsufficientFunds { to_send: new_to_send, balance });
    }

    // Commit.
    state.to_send = new_to_send;
    if sv.min_settle_height != 0 {
        if state.settling_at != 0 && state.settling_at < sv.min_settle_height {
            state.settling_at = sv.min_settle_height;
        }
        if state.min_settle_height < sv.min_settle_height {
            state.min_settle_height = sv.min_settle_height;
        }
    }
    staged.insert(sv.lane, lane_state);
    state.lanes.extend(staged);
    Ok(Redemption { lane: sv.lane, delta, to_send: state.to_send.clone() })
}

/// A lane's state as the running call sees it: staged updates first, then the chain's.
fn find_lane(
    state: &ChannelState,
    staged: &BTreeMap<u64, LaneState>,
    lane: u64,
) -> Result<Option<LaneState>, ActorError> {
    if lane > MAX_LANE {
        return Err(ActorError::LaneTooLarge(lane));
    }
    Ok(staged.get(&lane).or_else(|| state.lanes.get(&lane)).cloned())
}

/// `Settle`: starts the settlement period. Returns the epoch the channel settles at.
pub fn settle(
    state: &mut ChannelState,
    env: &(impl ActorEnv + ?Sized),
) -> Result<ChainEpoch, ActorError> {
    check_caller_is_party(state, env)?;
    if state.settling_at != 0 {
        return Err(ActorError::AlreadySettling);
    }
    state.settling_at = (env.epoch() + SETTLE_DELAY).max(state.min_settle_height);
    Ok(state.settling_at)
}

/// `Collect`: after settlement, pays `to_send` to `to` and the rest of the balance to
/// `from`. The caller then deletes the actor.
///
/// The actor sends `to_send` to `to` first; when the balance cannot cover it (or it is
/// negative) that send fails and so does `Collect` — nothing is paid to anyone, and `from`
/// is never paid a negative amount.
pub fn collect(state: &ChannelState, env: &(impl ActorEnv + ?Sized)) -> Result<Payout, ActorError> {
    check_caller_is_party(state, env)?;
    let epoch = env.epoch();
    if state.settling_at == 0 || epoch < state.settling_at {
        return Err(ActorError::NotSettled { epoch, settling_at: state.settling_at });
    }
    let balance = env.balance();
    if state.to_send.is_negative() || state.to_send > balance {
        return Err(ActorError::CollectUnpayable { to_send: state.to_send.clone(), balance });
    }
    let to = state.to_send.clone();
    let from = balance - &to;
    Ok(Payout { to, from })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exit code a voucher fails with when the `StateCall` dry run of its `extra` call
    /// ended with `code` (`None`: it redeems).
    fn after_dry_run(code: u32) -> Option<u32> {
        ExtraCallFailure::from_dry_run(ExitCode::new(code)).map(|f| f.exit_code().value())
    }

    #[test]
    fn a_dry_run_of_the_extra_call_maps_to_the_code_the_chain_fails_the_voucher_with() {
        assert_eq!(after_dry_run(0), None);
        // At top level a missing receiver is SYS_INVALID_RECEIVER: a missing callee.
        assert_eq!(
            ExtraCallFailure::from_dry_run(ExitCode::SYS_INVALID_RECEIVER),
            Some(ExtraCallFailure::CalleeMissing)
        );
        assert_eq!(after_dry_run(5), Some(23));
        for code in [4, 9, 11] {
            assert_eq!(after_dry_run(code), Some(23), "{code}");
        }
        for code in [1, 2, 3, 6, 7, 8, 10, 12, 13, 14, 15] {
            assert_eq!(after_dry_run(code), Some(24), "{code}");
        }
        for code in [16, 17, 18, 19, 20, 21, 22, 23, 24, 32, 0x1000, u32::MAX] {
            assert_eq!(after_dry_run(code), Some(code), "{code}");
        }
    }
}
