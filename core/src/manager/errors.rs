//! The manager's errors: one enum per operation (or family of operations), each with only the
//! variants that operation can produce. An operation that calls another carries the other's
//! error whole (`SubmitError::Add`, `NewPaymentError::Funds`, …). The texts are part of the
//! API: JSON-RPC errors and the voucher protocol's messages carry them.
//!
//! Every variant is written once, in `error_enum!`'s table; each error type names the
//! variants it has. Nothing stored changes when an operation fails.

use cid::Cid;

use crate::actor::ActorError;
use crate::chain::{ChainError, PrepareError};
use crate::redemption::{PolicyRefusal, Unredeemable};
use crate::route::RouteRefusal;
use crate::store::{Direction, Lifecycle, StoreError};
use crate::types::{EncodeError, TokenAmount};
use crate::wallet::WalletError;

/// Declares an error enum from the names of its variants: each name stands for the variant,
/// its text and its documentation as the table below writes them once. `Name(Type): "doc"`
/// carries another error whole. Variants that carry another error whole come last, each
/// `#[error(transparent)]`; the munching keeps them apart (`[$($whole)*]`), since that
/// attribute must be written by the macro that derives, not passed along.
macro_rules! error_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($body:tt)* }) => {
        error_enum!(@munch [$(#[$meta])* $vis enum $name] [] [] $($body)*);
    };
    (@munch [$($head:tt)*] [$($done:tt)*] [$($doc:literal $whole:ident($ty:ty))*]) => {
        #[derive(Debug, thiserror::Error)]
        $($head)* {
            $($done)*
            $(#[doc = $doc] #[error(transparent)] $whole(#[from] $ty),)*
        }
    };
    (@munch $head:tt $done:tt [$($w:tt)*] $nested:ident($ty:ty): $doc:literal $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head $done [$($w)* $doc $nested($ty)] $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt UnknownChannel $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// No channel with this address (or ID) is known.
            #[error("unknown channel {0}")]
            UnknownChannel(String),
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt WrongDirection $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
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
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt NotOurKey $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// The wallet holds no key for the address.
            #[error("the wallet has no key for {0}")]
            NotOurKey(String),
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt InvalidAmount $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// An amount that must be positive (or non-negative) is not.
            #[error("invalid amount: {0}")]
            InvalidAmount(String),
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt ChannelNotOpen $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// The channel is not in a state that allows the operation.
            #[error("channel {channel} is {lifecycle:?}")]
            ChannelNotOpen {
                /// The channel.
                channel: String,
                /// Where it is in its life.
                lifecycle: Lifecycle,
            },
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt ChannelCollected $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// The channel was collected: its actor is gone from the chain, so nothing on it
            /// can be redeemed or checked any more.
            #[error("channel {0} was collected: its actor is gone from the chain")]
            ChannelCollected(String),
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt LaneClosed $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// The lane was closed by a merge; new vouchers on it would double-count.
            #[error("lane {0} is closed by a merge")]
            LaneClosed(u64),
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt AmountBelowLane $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// A voucher would lower its lane's cumulative amount.
            #[error(
                "lane {lane} already carries {previous} FIL; a voucher cannot lower it to {requested} FIL"
            )]
            AmountBelowLane {
                /// The lane.
                lane: u64,
                /// Its current cumulative amount.
                previous: TokenAmount,
                /// The amount asked for.
                requested: TokenAmount,
            },
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt ReleaseExceedsReserved $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// Releasing more than is reserved.
            #[error("cannot release {requested} FIL: only {reserved} FIL is reserved")]
            ReleaseExceedsReserved {
                /// Asked to release.
                requested: TokenAmount,
                /// Reserved.
                reserved: TokenAmount,
            },
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt InvalidVoucher $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// The chain's actor would refuse the voucher; the error names the rule.
            #[error("invalid voucher: {0}")]
            InvalidVoucher(ActorError),
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt VoucherRefused $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// The payee's intake policy refuses the voucher (time locks, hash locks, `extra`,
            /// merges, a `min_settle_height` too far ahead).
            #[error("voucher refused: {0}")]
            VoucherRefused(PolicyRefusal),
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt Unredeemable $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// The voucher cannot be redeemed in a message sent now (it would be credited for
            /// nothing the chain pays).
            #[error("voucher cannot be redeemed: {0}")]
            Unredeemable(Unredeemable),
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt ForeignVoucher $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// The voucher is for another channel, or not signed by the channel's payer.
            #[error("voucher does not belong to channel {0}")]
            ForeignVoucher(String),
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt ConflictingVoucher $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// A different voucher with the same lane and nonce is already stored.
            #[error("a different voucher with lane {lane} and nonce {nonce} is already stored")]
            ConflictingVoucher {
                /// The lane.
                lane: u64,
                /// The nonce.
                nonce: u64,
            },
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt BelowMinDelta $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// The voucher adds less than the minimum asked for.
            #[error("voucher adds {delta} FIL, below the minimum of {min_delta} FIL")]
            BelowMinDelta {
                /// What it adds.
                delta: TokenAmount,
                /// The minimum.
                min_delta: TokenAmount,
            },
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt AlreadySubmitted $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// The voucher (or a later one on its lane) was already submitted.
            #[error("voucher on lane {lane} with nonce {nonce} was already submitted")]
            AlreadySubmitted {
                /// The lane.
                lane: u64,
                /// The nonce.
                nonce: u64,
            },
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt MessageFailed $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// A chain message landed with a non-zero exit code.
            #[error("message {cid} failed with exit code {exit_code}")]
            MessageFailed {
                /// The message.
                cid: Cid,
                /// Its exit code.
                exit_code: u32,
            },
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt MessageRefused $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// The message pool refused a message.
            #[error("message {cid} was refused: {reason}")]
            MessageRefused {
                /// The message.
                cid: Cid,
                /// What the pool said.
                reason: String,
            },
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt ReservationFailed $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// The add-funds message that was to carry a queued reservation was refused or failed;
            /// the reservation does not hold those funds.
            #[error("the add-funds message carrying this reservation failed: {0}")]
            ReservationFailed(String),
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt NothingToReconcile $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// A channel holds too few vouchers worth folding into a combined one.
            #[error("nothing to reconcile: {0}")]
            NothingToReconcile(String),
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt CombinedRejected $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// The payer's combined voucher does not fold the requested vouchers as asked.
            #[error("combined voucher rejected: {0}")]
            CombinedRejected(String),
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt [$($done:tt)*] $whole:tt ShuttingDown $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head [$($done)*
            /// The manager is shutting down.
            #[error("the manager is shutting down")]
            ShuttingDown,
        ] $whole $($($rest)*)?);
    };
    (@munch $head:tt $done:tt [$($w:tt)*] Chain $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head $done [$($w)* "The chain failed." Chain(ChainError)] $($($rest)*)?);
    };
    (@munch $head:tt $done:tt [$($w:tt)*] Store $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head $done [$($w)* "The store failed." Store(StoreError)] $($($rest)*)?);
    };
    (@munch $head:tt $done:tt [$($w:tt)*] Wallet $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head $done [$($w)* "The wallet failed." Wallet(WalletError)] $($($rest)*)?);
    };
    (@munch $head:tt $done:tt [$($w:tt)*] Encode $(, $($rest:tt)*)?) => {
        error_enum!(@munch $head $done [$($w)* "A value could not be encoded." Encode(EncodeError)] $($($rest)*)?);
    };
}

error_enum! {
    /// Why a channel could not be looked up: `status`, `voucher_list`.
    pub enum LookupError { UnknownChannel, Store }
}

error_enum! {
    /// Why a channel's parties could not be found: `channel_parties`.
    pub enum PartiesError { UnknownChannel, Chain, Store }
}

error_enum! {
    /// Why a lane could not be handed out or returned: `allocate_lane`, `lease_lane`, `return_lane`.
    pub enum LaneError { UnknownChannel, WrongDirection, Store }
}

error_enum! {
    /// Why waiting for a chain message failed: `wait_message`.
    pub enum WaitError { ShuttingDown, Chain, Store }
}

error_enum! {
    /// Why a chain message could not be sent or followed: the messages the manager sends, `start` (restart recovery).
    pub enum ChainMessageError { UnknownChannel, MessageRefused, ShuttingDown, Chain, Store, Wallet, Encode }
}

error_enum! {
    /// Why a funds operation failed: `create`, `add_funds`, `reserve_funds`, `release_funds`, `get`, `fund`, `get_wait_ready`, `available_funds`, `available_funds_by_from_to`.
    pub enum FundsError { UnknownChannel, WrongDirection, NotOurKey, InvalidAmount, ChannelNotOpen, ReleaseExceedsReserved, MessageFailed, MessageRefused, ReservationFailed, ShuttingDown, Chain, Store, Wallet, Encode }
}

error_enum! {
    /// Why a settle or a collect failed: `settle`, `collect`.
    pub enum SettleError { UnknownChannel, ChannelNotOpen, MessageRefused, ShuttingDown, Chain, Store, Wallet, Encode }
}

error_enum! {
    /// Why a voucher could not be checked against the chain: `voucher_check_spendable`, `voucher_best_spendable`.
    pub enum CheckVoucherError { UnknownChannel, ChannelCollected, InvalidVoucher, Chain, Store, Encode }
}

error_enum! {
    /// Why a voucher could not be created: `voucher_create`, `voucher_create_with`, `voucher_pay`.
    pub enum CreateVoucherError { UnknownChannel, WrongDirection, InvalidAmount, ChannelNotOpen, ChannelCollected, LaneClosed, AmountBelowLane, InvalidVoucher, Chain, Store, Wallet, Encode, Route(RouteRefusal): "A rule of routed payments refused the voucher: a lane with a pending conditional voucher takes no other." }
}

error_enum! {
    /// Why a payee refused a voucher, or could not take it: `voucher_add` (voucher intake) and `voucher_check_valid` (the same checks, storing nothing).
    pub enum AddVoucherError { UnknownChannel, ChannelCollected, WrongDirection, InvalidAmount, InvalidVoucher, VoucherRefused, Unredeemable, ForeignVoucher, ConflictingVoucher, BelowMinDelta, AmountBelowLane, Chain, Store, Encode, Route(RouteRefusal): "A rule of routed payments refused the voucher (design §9): its conditional shape, deadline or cover, or a lane with a pending conditional voucher." }
}

error_enum! {
    /// Why a voucher could not be submitted: `voucher_submit`.
    pub enum SubmitError { UnknownChannel, ChannelCollected, ForeignVoucher, AlreadySubmitted, MessageRefused, ShuttingDown, Chain, Store, Wallet, Encode, Add(AddVoucherError): "A voucher not held yet was refused on its way in." }
}

error_enum! {
    /// Why a payment of several vouchers could not be prepared: `new_payment`.
    pub enum NewPaymentError { UnknownChannel, InvalidAmount, Funds(FundsError): "The channel could not be got or funded.", Lane(LaneError): "No lane could be allocated.", Voucher(CreateVoucherError): "A voucher could not be created." }
}

error_enum! {
    /// Why a payee's side of reconciliation failed: `reconcile_draft`, `reconcile_accept`.
    pub enum CombineError { UnknownChannel, WrongDirection, ChannelNotOpen, ChannelCollected, NothingToReconcile, CombinedRejected, ConflictingVoucher, InvalidVoucher, Chain, Store, Encode }
}

error_enum! {
    /// Why the settler's turn at a channel failed: `settler_pass`.
    pub enum SettlerError { UnknownChannel, Chain, Store, Plan(CheckVoucherError): "The redemption plan could not be made.", Submit(SubmitError): "A voucher could not be submitted.", Collect(SettleError): "The channel could not be collected." }
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

widen!(CheckVoucherError => CreateVoucherError { UnknownChannel(a), ChannelCollected(a), InvalidVoucher(a), Chain(a), Store(a), Encode(a) });
widen!(CheckVoucherError => AddVoucherError { UnknownChannel(a), ChannelCollected(a), InvalidVoucher(a), Chain(a), Store(a), Encode(a) });
widen!(CheckVoucherError => CombineError { UnknownChannel(a), ChannelCollected(a), InvalidVoucher(a), Chain(a), Store(a), Encode(a) });
