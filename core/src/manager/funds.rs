//! Funds accounting of an outbound channel, as pure functions of its record and the amount
//! its vouchers already commit.
//!
//! `available = confirmed − spent − reserved`, where `spent` is the sum over lanes of the
//! highest cumulative voucher amount issued. Reservations are only ever made against
//! confirmed funds; a reservation that needs more funds holds what is available and queues
//! the rest, which becomes reserved when the add-funds message carrying it lands. So
//! `reserved + spent ≤ confirmed` always, and `available` is never negative.

use crate::store::ChannelRecord;
use crate::types::TokenAmount;

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
