//! The manager's errors: one enum per operation (or family of operations), each with only the
//! variants that operation can produce. An operation that calls another carries the other's
//! error whole (`SubmitError::Add`, `NewPaymentError::Funds`, …). The texts are part of the
//! API: JSON-RPC errors and the voucher protocol's messages carry them.
//!
//! Nothing stored changes when an operation fails.

use cid::Cid;

use crate::actor::ActorError;
use crate::chain::{ChainError, PrepareError};
use crate::redemption::{PolicyRefusal, Unredeemable};
use crate::store::{Direction, Lifecycle, StoreError};
use crate::types::{EncodeError, TokenAmount};
use crate::wallet::WalletError;

/// Why a channel could not be looked up: `status`, `voucher_list`.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No channel with this address (or ID) is known.
    #[error("unknown channel {0}")]
    UnknownChannel(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a channel's parties could not be found: `channel_parties`.
#[derive(Debug, thiserror::Error)]
pub enum PartiesError {
    /// No channel with this address (or ID) is known.
    #[error("unknown channel {0}")]
    UnknownChannel(String),
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a lane could not be handed out or returned: `allocate_lane`, `lease_lane`, `return_lane`.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    /// No channel with this address (or ID) is known.
    #[error("unknown channel {0}")]
    UnknownChannel(String),
    /// The operation needs the other direction (e.g. creating a voucher on an inbound channel).
    #[error("channel {channel} is {actual:?}; this needs an {expected:?} channel")]
    WrongDirection {
        /// The channel.
        channel: String,
        /// The direction it has.
        actual: Direction,
        /// The direction the operation needs.
        expected: Direction,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why waiting for a chain message failed: `wait_message`.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The manager is shutting down.
    #[error("the manager is shutting down")]
    ShuttingDown,
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a chain message could not be sent or followed: the messages the manager sends, `start` (restart recovery).
#[derive(Debug, thiserror::Error)]
pub enum ChainMessageError {
    /// No channel with this address (or ID) is known.
    #[error("unknown channel {0}")]
    UnknownChannel(String),
    /// The message pool refused a message.
    #[error("message {cid} was refused: {reason}")]
    MessageRefused {
        /// The message.
        cid: Cid,
        /// What the pool said.
        reason: String,
    },
    /// The manager is shutting down.
    #[error("the manager is shutting down")]
    ShuttingDown,
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The wallet failed.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// A value could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Why a funds operation failed: `create`, `add_funds`, `reserve_funds`, `release_funds`, `get`, `fund`, `get_wait_ready`, `available_funds`, `available_funds_by_from_to`.
#[derive(Debug, thiserror::Error)]
pub enum FundsError {
    /// No channel with this address (or ID) is known.
    #[error("unknown channel {0}")]
    UnknownChannel(String),
    /// The operation needs the other direction (e.g. creating a voucher on an inbound channel).
    #[error("channel {channel} is {actual:?}; this needs an {expected:?} channel")]
    WrongDirection {
        /// The channel.
        channel: String,
        /// The direction it has.
        actual: Direction,
        /// The direction the operation needs.
        expected: Direction,
    },
    /// The wallet holds no key for the address.
    #[error("the wallet has no key for {0}")]
    NotOurKey(String),
    /// An amount that must be positive (or non-negative) is not.
    #[error("invalid amount: {0}")]
    InvalidAmount(String),
    /// The channel is not in a state that allows the operation.
    #[error("channel {channel} is {lifecycle:?}")]
    ChannelNotOpen {
        /// The channel.
        channel: String,
        /// Where it is in its life.
        lifecycle: Lifecycle,
    },
    /// Releasing more than is reserved.
    #[error("cannot release {requested} attoFIL: only {reserved} attoFIL is reserved")]
    ReleaseExceedsReserved {
        /// Asked to release.
        requested: TokenAmount,
        /// Reserved.
        reserved: TokenAmount,
    },
    /// A chain message landed with a non-zero exit code.
    #[error("message {cid} failed with exit code {exit_code}")]
    MessageFailed {
        /// The message.
        cid: Cid,
        /// Its exit code.
        exit_code: u32,
    },
    /// The message pool refused a message.
    #[error("message {cid} was refused: {reason}")]
    MessageRefused {
        /// The message.
        cid: Cid,
        /// What the pool said.
        reason: String,
    },
    /// The add-funds message that was to carry a queued reservation was refused or failed;
    /// the reservation does not hold those funds.
    #[error("the add-funds message carrying this reservation failed: {0}")]
    ReservationFailed(String),
    /// The manager is shutting down.
    #[error("the manager is shutting down")]
    ShuttingDown,
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The wallet failed.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// A value could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Why a settle or a collect failed: `settle`, `collect`.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// No channel with this address (or ID) is known.
    #[error("unknown channel {0}")]
    UnknownChannel(String),
    /// The channel is not in a state that allows the operation.
    #[error("channel {channel} is {lifecycle:?}")]
    ChannelNotOpen {
        /// The channel.
        channel: String,
        /// Where it is in its life.
        lifecycle: Lifecycle,
    },
    /// The message pool refused a message.
    #[error("message {cid} was refused: {reason}")]
    MessageRefused {
        /// The message.
        cid: Cid,
        /// What the pool said.
        reason: String,
    },
    /// The manager is shutting down.
    #[error("the manager is shutting down")]
    ShuttingDown,
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The wallet failed.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// A value could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Why a voucher could not be checked against the chain: `voucher_check_spendable`, `voucher_best_spendable`.
#[derive(Debug, thiserror::Error)]
pub enum CheckVoucherError {
    /// No channel with this address (or ID) is known.
    #[error("unknown channel {0}")]
    UnknownChannel(String),
    /// The chain's actor would refuse the voucher; the error names the rule.
    #[error("invalid voucher: {0}")]
    InvalidVoucher(ActorError),
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Why a voucher could not be created: `voucher_create`, `voucher_create_with`, `voucher_pay`.
#[derive(Debug, thiserror::Error)]
pub enum CreateVoucherError {
    /// No channel with this address (or ID) is known.
    #[error("unknown channel {0}")]
    UnknownChannel(String),
    /// The operation needs the other direction (e.g. creating a voucher on an inbound channel).
    #[error("channel {channel} is {actual:?}; this needs an {expected:?} channel")]
    WrongDirection {
        /// The channel.
        channel: String,
        /// The direction it has.
        actual: Direction,
        /// The direction the operation needs.
        expected: Direction,
    },
    /// An amount that must be positive (or non-negative) is not.
    #[error("invalid amount: {0}")]
    InvalidAmount(String),
    /// The channel is not in a state that allows the operation.
    #[error("channel {channel} is {lifecycle:?}")]
    ChannelNotOpen {
        /// The channel.
        channel: String,
        /// Where it is in its life.
        lifecycle: Lifecycle,
    },
    /// The lane was closed by a merge; new vouchers on it would double-count.
    #[error("lane {0} is closed by a merge")]
    LaneClosed(u64),
    /// A voucher would lower its lane's cumulative amount.
    #[error(
        "lane {lane} already carries {previous} attoFIL; a voucher cannot lower it to {requested}"
    )]
    AmountBelowLane {
        /// The lane.
        lane: u64,
        /// Its current cumulative amount.
        previous: TokenAmount,
        /// The amount asked for.
        requested: TokenAmount,
    },
    /// The chain's actor would refuse the voucher; the error names the rule.
    #[error("invalid voucher: {0}")]
    InvalidVoucher(ActorError),
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The wallet failed.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// A value could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Why a payee refused a voucher, or could not take it: `voucher_add` (voucher intake) and `voucher_check_valid` (the same checks, storing nothing).
#[derive(Debug, thiserror::Error)]
pub enum AddVoucherError {
    /// No channel with this address (or ID) is known.
    #[error("unknown channel {0}")]
    UnknownChannel(String),
    /// The operation needs the other direction (e.g. creating a voucher on an inbound channel).
    #[error("channel {channel} is {actual:?}; this needs an {expected:?} channel")]
    WrongDirection {
        /// The channel.
        channel: String,
        /// The direction it has.
        actual: Direction,
        /// The direction the operation needs.
        expected: Direction,
    },
    /// An amount that must be positive (or non-negative) is not.
    #[error("invalid amount: {0}")]
    InvalidAmount(String),
    /// The chain's actor would refuse the voucher; the error names the rule.
    #[error("invalid voucher: {0}")]
    InvalidVoucher(ActorError),
    /// The payee's intake policy refuses the voucher (time locks, hash locks, `extra`,
    /// merges, a `min_settle_height` too far ahead).
    #[error("voucher refused: {0}")]
    VoucherRefused(PolicyRefusal),
    /// The voucher cannot be redeemed in a message sent now (it would be credited for
    /// nothing the chain pays).
    #[error("voucher cannot be redeemed: {0}")]
    Unredeemable(Unredeemable),
    /// The voucher is for another channel, or not signed by the channel's payer.
    #[error("voucher does not belong to channel {0}")]
    ForeignVoucher(String),
    /// A different voucher with the same lane and nonce is already stored.
    #[error("a different voucher with lane {lane} and nonce {nonce} is already stored")]
    ConflictingVoucher {
        /// The lane.
        lane: u64,
        /// The nonce.
        nonce: u64,
    },
    /// The voucher adds less than the minimum asked for.
    #[error("voucher adds {delta} attoFIL, below the minimum of {min_delta}")]
    BelowMinDelta {
        /// What it adds.
        delta: TokenAmount,
        /// The minimum.
        min_delta: TokenAmount,
    },
    /// A voucher would lower its lane's cumulative amount.
    #[error(
        "lane {lane} already carries {previous} attoFIL; a voucher cannot lower it to {requested}"
    )]
    AmountBelowLane {
        /// The lane.
        lane: u64,
        /// Its current cumulative amount.
        previous: TokenAmount,
        /// The amount asked for.
        requested: TokenAmount,
    },
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Why a voucher could not be submitted: `voucher_submit`.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// No channel with this address (or ID) is known.
    #[error("unknown channel {0}")]
    UnknownChannel(String),
    /// The voucher is for another channel, or not signed by the channel's payer.
    #[error("voucher does not belong to channel {0}")]
    ForeignVoucher(String),
    /// The voucher (or a later one on its lane) was already submitted.
    #[error("voucher on lane {lane} with nonce {nonce} was already submitted")]
    AlreadySubmitted {
        /// The lane.
        lane: u64,
        /// The nonce.
        nonce: u64,
    },
    /// The message pool refused a message.
    #[error("message {cid} was refused: {reason}")]
    MessageRefused {
        /// The message.
        cid: Cid,
        /// What the pool said.
        reason: String,
    },
    /// The manager is shutting down.
    #[error("the manager is shutting down")]
    ShuttingDown,
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The wallet failed.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// A value could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A voucher not held yet was refused on its way in.
    #[error(transparent)]
    Add(#[from] AddVoucherError),
}

/// Why a payment of several vouchers could not be prepared: `new_payment`.
#[derive(Debug, thiserror::Error)]
pub enum NewPaymentError {
    /// No channel with this address (or ID) is known.
    #[error("unknown channel {0}")]
    UnknownChannel(String),
    /// An amount that must be positive (or non-negative) is not.
    #[error("invalid amount: {0}")]
    InvalidAmount(String),
    /// The channel could not be got or funded.
    #[error(transparent)]
    Funds(#[from] FundsError),
    /// No lane could be allocated.
    #[error(transparent)]
    Lane(#[from] LaneError),
    /// A voucher could not be created.
    #[error(transparent)]
    Voucher(#[from] CreateVoucherError),
}

/// Why a payee's side of reconciliation failed: `reconcile_draft`, `reconcile_accept`.
#[derive(Debug, thiserror::Error)]
pub enum CombineError {
    /// No channel with this address (or ID) is known.
    #[error("unknown channel {0}")]
    UnknownChannel(String),
    /// The operation needs the other direction (e.g. creating a voucher on an inbound channel).
    #[error("channel {channel} is {actual:?}; this needs an {expected:?} channel")]
    WrongDirection {
        /// The channel.
        channel: String,
        /// The direction it has.
        actual: Direction,
        /// The direction the operation needs.
        expected: Direction,
    },
    /// The channel is not in a state that allows the operation.
    #[error("channel {channel} is {lifecycle:?}")]
    ChannelNotOpen {
        /// The channel.
        channel: String,
        /// Where it is in its life.
        lifecycle: Lifecycle,
    },
    /// A channel holds too few vouchers worth folding into a combined one.
    #[error("nothing to reconcile: {0}")]
    NothingToReconcile(String),
    /// The payer's combined voucher does not fold the requested vouchers as asked.
    #[error("combined voucher rejected: {0}")]
    CombinedRejected(String),
    /// A different voucher with the same lane and nonce is already stored.
    #[error("a different voucher with lane {lane} and nonce {nonce} is already stored")]
    ConflictingVoucher {
        /// The lane.
        lane: u64,
        /// The nonce.
        nonce: u64,
    },
    /// The chain's actor would refuse the voucher; the error names the rule.
    #[error("invalid voucher: {0}")]
    InvalidVoucher(ActorError),
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Why the settler's turn at a channel failed: `settler_pass`.
#[derive(Debug, thiserror::Error)]
pub enum SettlerError {
    /// No channel with this address (or ID) is known.
    #[error("unknown channel {0}")]
    UnknownChannel(String),
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The redemption plan could not be made.
    #[error(transparent)]
    Plan(#[from] CheckVoucherError),
    /// A voucher could not be submitted.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The channel could not be collected.
    #[error(transparent)]
    Collect(#[from] SettleError),
}

/// The channel has the other direction than the operation needs (see
/// [`LaneError::WrongDirection`]); carried over to each operation's own variant.
#[derive(Debug)]
pub(super) enum DirectionMismatch {
    WrongDirection { channel: String, actual: Direction, expected: Direction },
}

/// The channel is not in a state that allows the operation (see
/// [`FundsError::ChannelNotOpen`]); carried over to each operation's own variant.
#[derive(Debug)]
pub(super) enum NotOpen {
    ChannelNotOpen { channel: String, lifecycle: Lifecycle },
}

impl From<PrepareError> for ChainMessageError {
    fn from(e: PrepareError) -> Self {
        match e {
            PrepareError::Chain(e) => ChainMessageError::Chain(e),
            PrepareError::Wallet(e) => ChainMessageError::Wallet(e),
            PrepareError::Encode(e) => ChainMessageError::Encode(e),
        }
    }
}

/// Carries each variant of a narrower error over to the same-named variant of a wider one.
macro_rules! widen {
    ($from:ident => $to:ident { $($v:ident $(($a:ident))? $({ $($f:ident),+ })?),+ $(,)? }) => {
        impl From<$from> for $to {
            fn from(e: $from) -> Self {
                match e {
                    $($from::$v $(($a))? $({ $($f),+ })? => $to::$v $(($a))? $({ $($f),+ })?,)+
                }
            }
        }
    };
}

widen!(DirectionMismatch => LaneError { WrongDirection { channel, actual, expected } });
widen!(DirectionMismatch => FundsError { WrongDirection { channel, actual, expected } });
widen!(DirectionMismatch => CreateVoucherError { WrongDirection { channel, actual, expected } });
widen!(DirectionMismatch => AddVoucherError { WrongDirection { channel, actual, expected } });
widen!(DirectionMismatch => CombineError { WrongDirection { channel, actual, expected } });

widen!(NotOpen => FundsError { ChannelNotOpen { channel, lifecycle } });
widen!(NotOpen => SettleError { ChannelNotOpen { channel, lifecycle } });
widen!(NotOpen => CreateVoucherError { ChannelNotOpen { channel, lifecycle } });
widen!(NotOpen => CombineError { ChannelNotOpen { channel, lifecycle } });

widen!(LookupError => PartiesError { UnknownChannel(a), Store(a) });
widen!(LookupError => LaneError { UnknownChannel(a), Store(a) });
widen!(LookupError => ChainMessageError { UnknownChannel(a), Store(a) });
widen!(LookupError => FundsError { UnknownChannel(a), Store(a) });
widen!(LookupError => SettleError { UnknownChannel(a), Store(a) });
widen!(LookupError => CheckVoucherError { UnknownChannel(a), Store(a) });
widen!(LookupError => CreateVoucherError { UnknownChannel(a), Store(a) });
widen!(LookupError => AddVoucherError { UnknownChannel(a), Store(a) });
widen!(LookupError => SubmitError { UnknownChannel(a), Store(a) });
widen!(LookupError => CombineError { UnknownChannel(a), Store(a) });
widen!(LookupError => SettlerError { UnknownChannel(a), Store(a) });

widen!(PartiesError => ChainMessageError { UnknownChannel(a), Chain(a), Store(a) });
widen!(PartiesError => FundsError { UnknownChannel(a), Chain(a), Store(a) });
widen!(PartiesError => SettleError { UnknownChannel(a), Chain(a), Store(a) });
widen!(PartiesError => CheckVoucherError { UnknownChannel(a), Chain(a), Store(a) });
widen!(PartiesError => CreateVoucherError { UnknownChannel(a), Chain(a), Store(a) });
widen!(PartiesError => AddVoucherError { UnknownChannel(a), Chain(a), Store(a) });
widen!(PartiesError => SubmitError { UnknownChannel(a), Chain(a), Store(a) });
widen!(PartiesError => CombineError { UnknownChannel(a), Chain(a), Store(a) });
widen!(PartiesError => SettlerError { UnknownChannel(a), Chain(a), Store(a) });

widen!(LaneError => FundsError { UnknownChannel(a), WrongDirection { channel, actual, expected }, Store(a) });
widen!(LaneError => CreateVoucherError { UnknownChannel(a), WrongDirection { channel, actual, expected }, Store(a) });
widen!(LaneError => AddVoucherError { UnknownChannel(a), WrongDirection { channel, actual, expected }, Store(a) });
widen!(LaneError => CombineError { UnknownChannel(a), WrongDirection { channel, actual, expected }, Store(a) });

widen!(WaitError => ChainMessageError { ShuttingDown, Chain(a), Store(a) });
widen!(WaitError => FundsError { ShuttingDown, Chain(a), Store(a) });
widen!(WaitError => SettleError { ShuttingDown, Chain(a), Store(a) });
widen!(WaitError => SubmitError { ShuttingDown, Chain(a), Store(a) });

widen!(ChainMessageError => FundsError { UnknownChannel(a), MessageRefused { cid, reason }, ShuttingDown, Chain(a), Store(a), Wallet(a), Encode(a) });
widen!(ChainMessageError => SettleError { UnknownChannel(a), MessageRefused { cid, reason }, ShuttingDown, Chain(a), Store(a), Wallet(a), Encode(a) });
widen!(ChainMessageError => SubmitError { UnknownChannel(a), MessageRefused { cid, reason }, ShuttingDown, Chain(a), Store(a), Wallet(a), Encode(a) });

widen!(CheckVoucherError => CreateVoucherError { UnknownChannel(a), InvalidVoucher(a), Chain(a), Store(a), Encode(a) });
widen!(CheckVoucherError => AddVoucherError { UnknownChannel(a), InvalidVoucher(a), Chain(a), Store(a), Encode(a) });
widen!(CheckVoucherError => CombineError { UnknownChannel(a), InvalidVoucher(a), Chain(a), Store(a), Encode(a) });
